//! Runs the PReLU GPU kernel sources on the host and compares every output bit (y; dx and
//! dweight) with the crate's CPU path through the Tensor API (`x.apply_op2(&w, PreluOp)`,
//! `x.apply_op3(&w, &dy, PreluBackward)`).
//!
//! - CUDA: `kernels/prelu.cu`, unchanged, compiled as C++ (`CXX`, default `c++`) with the shim of
//!   `tests/cuda_host/` and `tests/prelu_host/cuda_sim.h` (warp shuffles between simulated
//!   threads that run as cooperating fibers), under AddressSanitizer with every byte outside each
//!   view, output, info array and scratch buffer poisoned, and UBSan's alignment check. Launched
//!   as `src/cuda/prelu/plan.rs` plans it (that file is compiled in here), over several block
//!   sizes, grids smaller than the work, both index widths and both thread orders.
//! - Metal: `kernels/prelu.metal`, unchanged, compiled as C++ with the shim of
//!   `tests/metal_host/` and `tests/prelu_host/metal_sim.h` (SIMD-group shuffles between
//!   cooperating simulated threads), run with the CPU's flush-to-zero and denormals-are-zero
//!   modes on (checked in every simulated thread), as Apple GPUs flush f32 subnormals, under
//!   AddressSanitizer. Launched as `src/metal/prelu/plan.rs` plans it (compiled in here) for
//!   several pipeline limits (threadgroups of 32 to 256 threads), grids smaller than the work,
//!   both thread orders. The shader's subnormal-safe addition is also checked against IEEE
//!   addition on 250 million pairs (every subnormal against edge values, edge pairs, random).
//! - Deliberately wrong kernels (mutants) must fail.
//!
//! The cases (`tests/prelu_host/cases.rs`) are real candle views: NCHW, a channel-last permute, a
//! step-2 narrow, broadcast x and weights, rank 0 to 5, a weight of one element, of `x.dim(1)`
//! elements in several shapes and layouts, of x's own shape (transposed too); channels of up to
//! 262,145 terms (1,025 blocks of 256: three tree passes); specials (NaN with payloads,
//! infinities, signed zeros) in x, dy and the weight; subnormal x, dy, slopes, products and sums;
//! all-`-0.0` sums; every dtype.
mod common;

// The crate's ground floor and the CUDA plan that uses it, compiled as they are.
#[allow(dead_code)]
#[path = "../src/base.rs"]
mod base;
#[path = "../src/cuda/prelu/plan.rs"]
mod cuda_plan;
#[allow(dead_code)]
#[path = "../src/index_width.rs"]
mod index_width;
#[allow(dead_code)]
#[path = "../src/metal/plan.rs"]
mod metal_names;
#[path = "../src/metal/prelu/plan.rs"]
mod metal_plan;

#[path = "prelu_host/cases.rs"]
mod cases;

use base::Channels;
use candle_core::{DType, Device};
use cases::Case;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The case's channels, as `base::check_prelu` gives them to the launches.
fn ch(c: &Case) -> Channels {
    let (x, w) = (&c.x.layout, &c.w.layout);
    let wn = w.shape().elem_count();
    base::check_prelu(x, c.n(), w, wn, base::Op::Prelu).unwrap()
}

/// Writes the case file (see `tests/prelu_host/case.h`); `launches` gives each case's `launch`
/// lines.
fn write_cases(cases: &[Case], launches: &dyn Fn(&Case) -> Vec<String>) -> String {
    let mut s = String::new();
    for c in cases {
        let op = if c.bwd { "bwd" } else { "fwd" };
        let (dt, n, ch) = (c.dtype.as_str(), c.n(), ch(c));
        write!(s, "case {op} {dt} {n} {} {}", ch.channels, ch.inner).unwrap();
        for o in [Some(&c.x), Some(&c.w), c.dy.as_ref()]
            .into_iter()
            .flatten()
        {
            let l = &o.layout;
            write!(s, "\noperand {}", l.dims().len()).unwrap();
            l.dims().iter().for_each(|d| write!(s, " {d}").unwrap());
            write!(s, " {}", l.start_offset()).unwrap();
            l.stride().iter().for_each(|d| write!(s, " {d}").unwrap());
            write!(s, " {}", o.storage.len()).unwrap();
            o.storage.iter().for_each(|b| write!(s, " {b:x}").unwrap());
        }
        for l in launches(c) {
            write!(s, "\nlaunch {l}").unwrap();
        }
        s.push('\n');
    }
    s
}

/// One backend's host run: its kernel source, compiler arguments, dtypes and launches.
struct Harness {
    name: &'static str,
    kernel: &'static str,
    /// The file name the (possibly mutated) copy of the kernel is written as.
    copy: &'static str,
    /// Compiler arguments after the common ones; `{dir}` is the scratch directory (holding the
    /// copy), `{root}` the crate root.
    args: &'static [&'static str],
    dtypes: &'static [DType],
    launches: fn(&Case) -> Vec<String>,
}

impl Harness {
    fn source(&self) -> String {
        std::fs::read_to_string(Path::new(ROOT).join(self.kernel)).unwrap()
    }

    /// The cases, their case file and launches per case, built once per harness.
    fn prepared(&self) -> &'static (String, Vec<usize>) {
        static CUDA: OnceLock<(String, Vec<usize>)> = OnceLock::new();
        static METAL: OnceLock<(String, Vec<usize>)> = OnceLock::new();
        let cell = if self.name == "cuda" { &CUDA } else { &METAL };
        cell.get_or_init(|| {
            let cases = self.cases();
            let counts = cases.iter().map(|c| (self.launches)(c).len()).collect();
            (write_cases(cases, &self.launches), counts)
        })
    }

    fn cases(&self) -> &'static [Case] {
        static CUDA: OnceLock<Vec<Case>> = OnceLock::new();
        static METAL: OnceLock<Vec<Case>> = OnceLock::new();
        let cell = if self.name == "cuda" { &CUDA } else { &METAL };
        cell.get_or_init(|| cases::case_set(self.dtypes, &Device::Cpu))
    }

    /// Compiles `source` (warnings are errors unless `mutant`) with the backend's shim and
    /// driver in a scratch directory, runs every case and compares; stops at the first mismatch.
    fn run(&self, source: &str, tag: &str, mutant: bool) -> std::result::Result<(), String> {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prelu_{}-{tag}", self.name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(self.copy), source).unwrap();
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let exe = dir.join("driver");
        let fill = |a: &&str| {
            a.replace("{dir}", dir.to_str().unwrap())
                .replace("{root}", ROOT)
        };
        let out = Command::new(&cxx)
            .args(["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra"])
            .args((!mutant).then_some("-Werror"))
            .args(self.args.iter().map(fill))
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C++ compiler `{cxx}` (set CXX): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            // A mutant that does not compile has not been caught by the comparison.
            panic!("{cxx} failed ({tag}):\n{stderr}");
        }
        let verdict = self.compare(&exe);
        std::fs::remove_dir_all(&dir).unwrap();
        verdict
    }

    /// Runs the driver `exe` on the case file and compares its answers as they come.
    fn compare(&self, exe: &Path) -> std::result::Result<(), String> {
        let cases = self.cases();
        let (text, counts) = self.prepared();
        let mut child = (Command::new(exe).stdin(Stdio::piped()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // A driver that stops early (or is stopped) closes the pipe: judged below.
        std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut bad = None;
        'cases: for (i, (c, &k)) in cases.iter().zip(counts).enumerate() {
            for launch in 0..k {
                let Some(Ok(line)) = lines.next() else {
                    bad = Some(format!(
                        "no answer for case {i} ({}) launch {launch}",
                        c.what
                    ));
                    break 'cases;
                };
                let got: Vec<u64> = (line.split(' ').skip(1))
                    .map(|h| u64::from_str_radix(h, 16).unwrap_or(u64::MAX))
                    .collect();
                let n = c.want.len().max(got.len());
                if let Some(e) = (0..n).find(|&e| got.get(e) != c.want.get(e)) {
                    let part = if c.bwd && e >= c.n() {
                        format!("dweight[{}]", e - c.n())
                    } else {
                        format!("element {e}")
                    };
                    bad = Some(format!(
                        "case {i} ({}, launch `{}`): {part}: got {:x?}, want {:x?}",
                        c.what,
                        (self.launches)(c)[launch],
                        got.get(e),
                        c.want.get(e)
                    ));
                    break 'cases;
                }
            }
        }
        if bad.is_some() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match bad {
            Some(b) => Err(format!("{b}\n{stderr}")),
            None if !out.status.success() => Err(format!("driver failed: {stderr}")),
            None => Ok(()),
        }
    }

    /// Every mutant `(what, exact text in the kernel, replacement)` must change the kernel (every
    /// occurrence of the text is replaced) and fail the comparison. Two at a time.
    fn check_mutants(&self, mutants: &[(&str, &str, &str)]) {
        let source = self.source();
        self.prepared();
        for chunk in mutants.chunks(2).enumerate() {
            let (k, chunk) = chunk;
            std::thread::scope(|s| {
                for (i, (what, from, to)) in chunk.iter().enumerate() {
                    let source = &source;
                    let tag = format!("mutant{}", 2 * k + i);
                    s.spawn(move || {
                        assert!(source.contains(from), "mutant `{what}`: no `{from}`");
                        let verdict = self.run(&source.replace(from, to), &tag, true);
                        let why =
                            verdict.expect_err(&format!("mutant `{what}` passed the harness"));
                        eprintln!("mutant `{what}` caught: {}", why.trim());
                    });
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA

const CUDA: Harness = Harness {
    name: "cuda",
    kernel: "kernels/prelu.cu",
    copy: "prelu.cu",
    args: &[
        "-fsanitize=address,alignment",
        "-fno-sanitize-recover=alignment",
        "-I",
        "{root}/tests/prelu_host/cuda",
        "-I",
        "{root}/tests/prelu_host",
        "-x",
        "c++",
        "{dir}/prelu.cu",
        "{root}/tests/prelu_host/cuda_driver.cpp",
    ],
    dtypes: &[DType::F16, DType::BF16, DType::F32, DType::F64],
    launches: cuda_launches,
};

/// Blocks the device is taken to hold at once when the plan caps the grid (an H100: 132
/// multiprocessors of 8 blocks of 256 threads).
const RESIDENT: usize = 1056;

/// `WIDTH ORDER ND WD NINFO INFO... THREADS GRID NPASS (COUNT GRID)*`: the plan's arguments and
/// passes, on the plan's grid (256 threads, grids up to [`RESIDENT`]), on one block of 256
/// (every grid-stride loop wraps), and, for cases below 5000 elements, on odd grids of blocks of
/// 16, 48 and 96 threads; both index widths and both thread orders.
fn cuda_launches(c: &Case) -> Vec<String> {
    let (n, ch) = (c.n(), ch(c));
    let (nd, wd, info) =
        cuda_plan::info(&c.x.layout, c.dy.as_ref().map(|d| &d.layout), &c.w.layout);
    let info: Vec<String> = info.iter().map(|v| v.to_string()).collect();
    let head = format!("{nd} {wd} {} {}", info.len(), info.join(" "));
    let first = if c.bwd {
        cuda_plan::bwd_threads(n, ch)
    } else {
        n
    };
    let passes = if c.bwd {
        cuda_plan::tree_passes(n, ch)
    } else {
        vec![]
    };
    // (threads per block, grid of `threads` wanted) for every launch of the case.
    let line = |width: u32, order: &str, tpb: usize, cap: usize| {
        let grid = |t: usize| {
            if tpb == cuda_plan::THREADS {
                cuda_plan::blocks(t, cap)
            } else {
                t.div_ceil(tpb).clamp(1, cap)
            }
        };
        let mut s = format!(
            "{width} {order} {head} {tpb} {} {}",
            grid(first),
            passes.len()
        );
        for &count in &passes {
            write!(
                s,
                " {count} {}",
                grid(cuda_plan::tree_threads(ch.channels, count))
            )
            .unwrap();
        }
        s
    };
    let mut v = vec![
        line(32, "up", cuda_plan::THREADS, RESIDENT),
        line(64, "down", cuda_plan::THREADS, 1),
    ];
    if n < 5000 {
        v.extend([
            line(64, "up", 16, 3),
            line(32, "down", 48, 2),
            line(64, "up", 96, 1000),
        ]);
    }
    v
}

#[test]
fn cuda_kernel_matches_cpu_bit_for_bit() {
    let cases = CUDA.cases();
    // The case set reaches what it claims to.
    let most = |f: &dyn Fn(&Case) -> usize| cases.iter().map(f).max().unwrap();
    assert!(most(&|c| c.bwd as usize * cuda_plan::tree_passes(c.n(), ch(c)).len()) == 3);
    assert!(cases
        .iter()
        .any(|c| ch(c).channels == c.n() && c.n() > 1 && c.bwd));
    assert!(
        cases
            .iter()
            .filter(|c| !c.x.layout.is_contiguous() && c.bwd)
            .count()
            >= 8 * 4
    );
    assert!(cases.iter().filter(|c| !c.w.layout.is_contiguous()).count() >= 6 * 4);
    CUDA.run(&CUDA.source(), "unchanged", false).unwrap();
}

/// Wrong kernels: (name, exact text in the kernel, replacement).
#[rustfmt::skip]
const CUDA_MUTANTS: &[(&str, &str, &str)] = &[
    ("lane summed right to left",
     "const size_t t = b * BLOCK + k * LANES + j;",
     "const size_t t = b * BLOCK + (BLOCK / LANES - 1 - k) * LANES + j;"),
    ("lanes of consecutive terms",
     "const size_t t = b * BLOCK + k * LANES + j;",
     "const size_t t = b * BLOCK + j * LANES + k;"),
    ("block padded with +0.0",
     "C v = (C)-0.0;",
     "C v = (C)0;"),
    ("channel tree padded with +0.0",
     "? p[A] : (C)-0.0;",
     "? p[A] : (C)0;"),
    ("term fused into the lane sum (fma)",
     "v = term(xv, E<T>::up(g));",
     "v = term(xv, E<T>::up(g)); if (k > 0 && !(xv > 0)) { lane = fma(xv, E<T>::up(g), lane); v = (C)-0.0; }"),
    ("lane tree from offset 8 down",
     "for (unsigned o = 1; o < LANES; o *= 2)",
     "for (unsigned o = LANES / 2; o > 0; o /= 2)"),
    ("channel tree left to right",
     "pairs<GROUP, 0>(in + c * count + q * GROUP, avail)",
     "[&] { const auto* p = in + c * count + q * GROUP; auto s = p[0]; for (size_t k = 1; k < GROUP; ++k) s = s + (k < avail ? p[k] : -0.0); return s; }()"),
    ("wrong channel of a term",
     "+ (I)c * (I)inner +",
     "+ (I)((c + 1) % channels) * (I)inner +"),
    ("wrong channel in the forward",
     "(I)i / (I)inner % (I)channels",
     "(I)i % (I)channels"),
    ("block sums stored block-major",
     "part[c * m + b] = lane;",
     "part[b * channels + c] = lane;"),
    ("tree input read with the output's stride",
     "in + c * count + q * GROUP",
     "in + c * groups * GROUP + q * GROUP"),
    ("NaN dweight not canonical",
     "return v != v ? E<T>::nan() : E<T>::down(v);",
     "return E<T>::down(v);"),
    ("gradient at x == 0 is dy",
     "return xv > 0 ? dy :",
     "return xv >= 0 ? dy :"),
    ("term of a positive x counted",
     "return xv > 0 ? (C)0 : xv * gv;",
     "return xv * gv;"),
    ("strides applied innermost-first",
     "for (size_t d = nd; d-- > 0;)",
     "for (size_t d = 0; d < nd; ++d)"),
    ("dy walked with x's strides",
     "og += r * (I)info[2 * nd + d];",
     "og += r * (I)info[nd + d];"),
    ("weight read as contiguous",
     "w[offset<I>((I)c, wd, winfo, winfo + wd)]",
     "w[c]"),
    ("backward weight layout read from the forward's place",
     "const size_t* winfo = info + 3 * nd;",
     "const size_t* winfo = info + 2 * nd;"),
    ("own-shape dweight from x's offsets of dy",
     "out[n + i] = narrow<T>(term(xv, E<T>::up(dy[og])));",
     "out[n + i] = narrow<T>(term(xv, E<T>::up(dy[ox])));"),
    ("shuffle mask of the lower half-warp for all",
     "0xFFFFu << (threadIdx.x & 16)",
     "0xFFFFu"),
    ("half-warps skip items",
     "item += step / LANES",
     "item += step"),
    ("terms past the channel read",
     "if (t < nc) {",
     "if (t <= nc) {"),
    ("own-shape dx with the first slope",
     "out[i] = dx_one(xv, dy[og], slope<I>(i, wd, winfo, w));",
     "out[i] = dx_one(xv, dy[og], slope<I>(0, wd, winfo, w));"),
    ("last tree pass one pass early",
     "if (groups == 1) {",
     "if (groups <= 2) {"),
    ("pass sums stored group-major",
     "sums[c * groups + q] = s;",
     "sums[q * channels + c] = s;"),
    ("tree group read past its channel",
     "const size_t avail = count - q * GROUP < GROUP ? count - q * GROUP : GROUP;",
     "const size_t avail = GROUP;"),
    ("lane starts at +0.0",
     "lane = k == 0 ? v : lane + v;",
     "lane = lane + v;"),
    ("forward zero passes through",
     "return v <= 0 ? narrow<T>(v * s) : x;",
     "return v < 0 ? narrow<T>(v * s) : x;"),
];

#[test]
fn cuda_mutants_fail() {
    CUDA.check_mutants(CUDA_MUTANTS);
}

// ---------------------------------------------------------------------------------------------
// Metal

const METAL: Harness = Harness {
    name: "metal",
    kernel: "kernels/prelu.metal",
    copy: "prelu.metal",
    // The Metal Shading Language is C++14-based: C++17 in the shader fails here too.
    args: &[
        "-std=c++14",
        "-fsanitize=address",
        "-I",
        "{root}/tests/metal_host/include",
        "-I",
        "{root}/tests/prelu_host",
        "-I",
        "{dir}",
        "{root}/tests/prelu_host/metal_driver.cpp",
    ],
    dtypes: &[DType::F16, DType::BF16, DType::F32],
    launches: metal_launches,
};

/// `KERNEL ORDER WIDTH GROUPS ND WD NINFO INFO... NPASS (TREE COUNT GROUPS)*`: the plan's kernel,
/// arguments and passes for a pipeline of up to 1024 threads (threadgroups of 256), and of 32
/// threads with one threadgroup (every grid-stride loop wraps); for cases below 5000 elements
/// also pipelines of 100 threads (threadgroups of 96) on at most 3 threadgroups and of 64 on at
/// most 2; both thread orders.
fn metal_launches(c: &Case) -> Vec<String> {
    let (n, ch) = (c.n(), ch(c));
    let op = if c.bwd {
        base::Op::PreluBwd
    } else {
        base::Op::Prelu
    };
    let name = metal_names::kernel_name(op, c.dtype);
    let tree = metal_plan::tree_name(c.dtype);
    let dy = c.dy.as_ref().map(|d| &d.layout);
    let (nd, wd, info) = metal_plan::info(&c.x.layout, dy, &c.w.layout);
    let info: Vec<String> = info.iter().map(|v| v.to_string()).collect();
    let first = if c.bwd {
        metal_plan::bwd_threads(n, ch)
    } else {
        n
    };
    let passes = if c.bwd {
        metal_plan::tree_passes(n, ch)
    } else {
        vec![]
    };
    let line = |max: usize, order: &str, cap: usize| {
        let width = metal_plan::width(max, op).unwrap();
        let groups = |t: usize| metal_plan::groups(t, width).min(cap);
        let mut s = format!(
            "{name} {order} {width} {} {nd} {wd} {} {} {}",
            groups(first),
            info.len(),
            info.join(" "),
            passes.len()
        );
        for &count in &passes {
            let g = groups(metal_plan::tree_threads(ch.channels, count));
            write!(s, " {tree} {count} {g}").unwrap();
        }
        s
    };
    let mut v = vec![line(1024, "up", usize::MAX), line(32, "down", 1)];
    if n < 5000 {
        v.extend([line(100, "up", 3), line(64, "down", 2)]);
    }
    v
}

#[test]
fn metal_plan_makes_whole_simd_groups() {
    let op = base::Op::PreluBwd;
    for (max, want) in [
        (1024, 256),
        (256, 256),
        (255, 224),
        (100, 96),
        (64, 64),
        (32, 32),
    ] {
        assert_eq!(
            metal_plan::width(max, op).unwrap(),
            want,
            "pipeline max {max}"
        );
    }
    let err = metal_plan::width(31, op).unwrap_err().to_string();
    assert!(
        err.contains("prelu_backward") && err.contains("31"),
        "{err}"
    );
    assert_eq!(metal_plan::groups(0, 256), 1);
    assert_eq!(metal_plan::groups(257, 256), 2);
    assert_eq!(metal_plan::groups(usize::MAX, 256), metal_plan::MAX_GROUPS);
}

#[test]
fn metal_shader_matches_cpu_bit_for_bit() {
    let cases = METAL.cases();
    let most = |f: &dyn Fn(&Case) -> usize| cases.iter().map(f).max().unwrap();
    assert!(most(&|c| c.bwd as usize * metal_plan::tree_passes(c.n(), ch(c)).len()) == 3);
    METAL.run(&METAL.source(), "unchanged", false).unwrap();
}

/// Compiles `tests/prelu_host/add_check.cpp` with `shader` and runs it: its stdout, and whether
/// it succeeded.
fn add_check(shader: &str, tag: &str) -> (String, bool) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prelu_add-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prelu.metal"), shader).unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let exe = dir.join("add_check");
    let out = Command::new(&cxx)
        .args(["-std=c++14", "-O2", "-ffp-contract=off", "-Wall", "-Wextra"])
        .arg(format!("-I{ROOT}/tests/metal_host/include"))
        .arg(format!("-I{ROOT}/tests/prelu_host"))
        .arg(format!("-I{}", dir.display()))
        .arg(format!("{ROOT}/tests/prelu_host/add_check.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler `{cxx}` (set CXX): {e}"));
    assert!(
        out.status.success(),
        "{cxx} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (
        String::from_utf8_lossy(&run.stdout).into_owned(),
        run.status.success(),
    )
}

/// The shader's `add` under flushing equals IEEE addition (with subnormals) on every pair the
/// check tries; the same check fails for a shader that adds in hardware whatever the operands.
#[test]
fn metal_add_is_ieee_under_flushing() {
    let source = METAL.source();
    let (out, ok) = add_check(&source, "unchanged");
    assert!(ok, "{out}");
    let count: u64 = out.trim().strip_prefix("ok ").unwrap().parse().unwrap();
    assert!(count > 250_000_000, "{out}");
    let from = "if (ea >= 27u || eb >= 27u) {";
    assert!(source.contains(from));
    let (out, ok) = add_check(&source.replace(from, "if (true) {"), "hardware");
    assert!(!ok && out.contains("IEEE"), "{out}");
}

/// Wrong shaders: (name, exact text in the shader, replacement). Several are right under IEEE
/// arithmetic and wrong only where subnormals are flushed, as on the GPU.
#[rustfmt::skip]
const METAL_MUTANTS: &[(&str, &str, &str)] = &[
    ("x > 0 by a float compare",
     "return c - 1u < 0x7F800000u;",
     "return as_type<float>(c) > 0.0f;"),
    ("hardware add for subnormal operands",
     "if (ea >= 27u || eb >= 27u) {",
     "if (true) {"),
    ("hardware add for small normal operands (subnormal results)",
     "if (ea >= 27u || eb >= 27u) {",
     "if (ea >= 27u || eb >= 27u || (ea != 0u && eb != 0u)) {"),
    ("subnormal scaled up one binade off",
     "return sign | ((65u - s) << 23) | ((ax << s) & 0x7FFFFFu);",
     "return sign | ((64u - s) << 23) | ((ax << s) & 0x7FFFFFu);"),
    ("subnormal sum scaled back one bit off",
     ">> (65u - e));",
     ">> (66u - e));"),
    ("sum stored through a float register",
     "return D::store(is_nan(s) ? 0x7FC00000u : s);",
     "return D::store(is_nan(s) ? 0x7FC00000u : as_type<uint>(as_type<float>(s)));"),
    ("NaN dweight not canonical",
     "return D::store(is_nan(s) ? 0x7FC00000u : s);",
     "return D::store(s);"),
    ("term fused into the lane sum (fma)",
     "v = term(xc, D::load(g));",
     "v = term(xc, D::load(g)); if (k > 0 && !positive(xc)) { lane = as_type<uint>(fmaf(as_type<float>(xc), as_type<float>(D::load(g)), as_type<float>(lane))); v = NEG_ZERO; }"),
    ("lane summed right to left",
     "const ulong t = b * BLOCK + k * LANES + j;",
     "const ulong t = b * BLOCK + (BLOCK / LANES - 1 - k) * LANES + j;"),
    ("lanes of consecutive terms",
     "const ulong t = b * BLOCK + k * LANES + j;",
     "const ulong t = b * BLOCK + j * LANES + k;"),
    ("block padded with +0.0",
     "uint v = NEG_ZERO;",
     "uint v = 0u;"),
    ("channel tree padded with +0.0",
     "v[k] = k < avail ? p[k] : NEG_ZERO;",
     "v[k] = k < avail ? p[k] : 0u;"),
    ("lane tree from offset 8 down",
     "for (ushort o = 1; o < LANES; o *= 2) {",
     "for (ushort o = LANES / 2; o > 0; o /= 2) {"),
    ("channel tree left to right",
     "for (uint pairs = GROUP / 2; pairs > 0; pairs /= 2) {\n            for (uint k = 0; k < pairs; ++k) {",
     "for (uint pairs = 1; pairs > 0; pairs = 0) {\n            for (uint k = 1; k < GROUP; ++k) {\n                v[0] = add(v[0], v[k]);\n            }\n            for (uint k = 0; k < 0; ++k) {"),
    ("rounds counted per thread (shuffles without the whole SIMD-group)",
     "first < items; first += ulong(groups) * per) {",
     "first + lid / LANES < items; first += ulong(groups) * per) {"),
    ("wrong channel of a term",
     "+ c * inner +",
     "+ ((c + 1) % channels) * inner +"),
    ("wrong channel in the forward",
     "const ulong c = i / inner % channels;",
     "const ulong c = i % channels;"),
    ("block sums stored block-major",
     "part[c * m + b] = lane;",
     "part[b * channels + c] = lane;"),
    ("tree input read with the output's stride",
     "in + c * count + q * GROUP",
     "in + c * groups * GROUP + q * GROUP"),
    ("direct dweight and block sums swapped",
     "if (direct != 0) {",
     "if (direct == 0) {"),
    ("gradient at x == 0 is dy",
     "return positive(xc) ? dy :",
     "return (positive(xc) || xc == 0) ? dy :"),
    ("forward passes x = +0 through",
     "(positive(xc) || is_nan(xc)) ? xv",
     "(positive(xc) || xc == 0 || is_nan(xc)) ? xv"),
    ("term of a positive x counted",
     "return positive(xc) ? 0u : mul(xc, gc);",
     "return mul(xc, gc);"),
    ("strides applied innermost-first",
     "for (ulong d = nd; d-- > 0;)",
     "for (ulong d = 0; d < nd; d++)"),
    ("dy walked with x's strides",
     "dy[offset(i, nd, info, info + 2 * nd)]",
     "dy[offset(i, nd, info, info + nd)]"),
    ("weight read as contiguous",
     "w[offset(c, wd, winfo, winfo + wd)]",
     "w[c]"),
    ("backward weight layout read from the forward's place",
     "constant size_t *winfo = info + 3 * nd;",
     "constant size_t *winfo = info + 2 * nd;"),
];

#[test]
fn metal_mutants_fail() {
    METAL.check_mutants(METAL_MUTANTS);
}
