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
//! The cases are real candle views: NCHW, a channel-last permute, a step-2 narrow, broadcast x
//! and weights, rank 0 to 5, a weight of one element, of `x.dim(1)` elements in several shapes
//! and layouts, of x's own shape (transposed too); channels of up to 262,145 terms (1,025 blocks
//! of 256: three tree passes); specials (NaN with payloads, infinities, signed zeros) in x, dy
//! and the weight; subnormal x, dy, slopes, products and sums; every dtype.
mod common;

// The crate's ground floor and the CUDA plan that uses it, compiled as they are.
#[allow(dead_code)]
#[path = "../src/base.rs"]
mod base;
#[path = "../src/cuda/prelu/plan.rs"]
mod cuda_plan;
#[allow(dead_code)]
#[path = "../src/metal/plan.rs"]
mod metal_names;
#[path = "../src/metal/prelu/plan.rs"]
mod metal_plan;

use base::Channels;
use candle_core::{DType, Device, Layout, Result, Tensor};
use candle_leaky_relu::{PreluBackward, PreluOp};
use common::{from_bits, random_words, storage_bits, to_bits};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A view as the kernel receives it: its layout and its storage's bits.
struct Operand {
    layout: Layout,
    storage: Vec<u64>,
}

fn operand(t: &Tensor) -> Operand {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        panic!("host cases are built from CPU tensors")
    };
    Operand {
        layout: l.clone(),
        storage: storage_bits(s),
    }
}

/// One kernel run and the bits the CPU path produced for it.
struct Case {
    /// `fwd` or `bwd`.
    bwd: bool,
    dtype: DType,
    what: String,
    x: Operand,
    w: Operand,
    dy: Option<Operand>,
    ch: Channels,
    want: Vec<u64>,
}

impl Case {
    fn n(&self) -> usize {
        self.x.layout.shape().elem_count()
    }
}

/// How a view is taken from its base tensor.
type ViewFn = fn(&Tensor) -> Result<Tensor>;

fn whole(t: &Tensor) -> Result<Tensor> {
    Ok(t.clone())
}

/// Value families for x and dy.
#[derive(Clone, Copy, Debug)]
enum Values {
    /// Finite values over a wide exponent range (sums that depend on their order), mostly
    /// negative x, and no specials.
    Wide,
    /// As `Wide` with specials mixed in: NaNs with payloads and both signs, infinities, signed
    /// zeros, subnormals, extremes.
    Specials,
    /// Magnitudes whose products lie around the smallest normal of the compute type: subnormal
    /// products and sums (f32 and bf16: around 2^-126; f64: 2^-1022; f16 cannot reach them).
    Tiny,
    /// x negative or -0.0 and dy +0.0: every term is -0.0, so every sum is -0.0, which a +0.0
    /// anywhere in the order (padding, a first value) would turn into +0.0.
    Zeros,
}

/// `n` reproducible bit patterns of `dtype` (x when `neg`, mostly negative: their terms count).
fn values(dtype: DType, v: Values, n: usize, seed: u64, neg: bool) -> Vec<u64> {
    let (bits, mant, bias) = match dtype {
        DType::F16 => (16u32, 10u32, 15i64),
        DType::BF16 => (16, 7, 127),
        DType::F32 => (32, 23, 127),
        _ => (64, 52, 1023),
    };
    let sign = 1u64 << (bits - 1);
    let emax = (1i64 << (bits - 1 - mant)) - 1;
    let specials = [
        0,
        sign,
        (emax as u64) << mant,                          // +inf
        sign | (emax as u64) << mant,                   // -inf
        (emax as u64) << mant | 1 << (mant - 1) | 0x5,  // NaN with a payload
        sign | (emax as u64) << mant | 1 << (mant - 1), // negative NaN
        (emax as u64) << mant | 1,                      // signalling NaN
        1,                                              // least subnormal
        sign | 1,
        sign | ((1 << mant) - 1),                   // largest subnormal
        sign | (((emax - 1) as u64) << mant) | 0x3, // near the largest finite
        ((bias as u64) << mant),                    // 1
    ];
    let mut r = random_words(seed);
    (0..n)
        .map(|_| {
            let w = r.next().unwrap();
            let negative = if neg { w % 8 < 6 } else { w.is_multiple_of(2) };
            let s = if negative { sign } else { 0 };
            let m = (w >> 8) & ((1 << mant) - 1);
            let e = match v {
                Values::Zeros if !neg => return 0,
                Values::Zeros if w.is_multiple_of(4) => return sign,
                Values::Zeros => return sign | (bias as u64) << mant | m,
                Values::Specials if w.is_multiple_of(13) => {
                    return specials[(w >> 40) as usize % 12]
                }
                Values::Tiny => match dtype {
                    // Products of two of these straddle 2^-126 (f32) and 2^-1022 (f64).
                    DType::F32 | DType::BF16 => bias - 60 - (w >> 50) as i64 % 12,
                    DType::F64 => bias - 508 - (w >> 50) as i64 % 12,
                    _ => bias - 6 - (w >> 50) as i64 % 8,
                },
                _ => {
                    let spread = if dtype == DType::F16 { 12 } else { 40 };
                    bias - spread / 2 + (w >> 50) as i64 % spread
                }
            };
            s | (e as u64) << mant | m
        })
        .collect()
}

/// Slopes: ordinary ones and NaN, infinities, signed zeros, a subnormal (with `specials`).
fn slopes(dtype: DType, n: usize, seed: usize, specials: bool) -> Vec<u64> {
    let to_bits = |v: f64| -> u64 {
        match dtype {
            DType::F16 => half::f16::from_f64(v).to_bits() as u64,
            DType::BF16 => half::bf16::from_f64(v).to_bits() as u64,
            DType::F32 => (v as f32).to_bits() as u64,
            _ => v.to_bits(),
        }
    };
    let ordinary = [0.25, -0.5, 0.01, 1.5, 0.0, -0.0, 3.0, 1e-3, -7.25];
    let odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    (0..n)
        .map(|i| match (i + seed) % 13 {
            k @ 0..=8 => to_bits(ordinary[k]),
            k @ 9..=11 if specials => to_bits(odd[k - 9]),
            12 if specials => 1, // the least subnormal
            k => to_bits(ordinary[k % 9]),
        })
        .collect()
}

/// An operand to build: the base's shape and the view taken of it.
type Spec = (&'static [usize], ViewFn);

/// The case of `(x, w, dy)` views; `want` from the crate's CPU path through the Tensor API.
fn case(bwd: bool, dtype: DType, v: Values, seed: u64, x: Spec, w: Spec, dy: Spec) -> Case {
    let make = |(shape, view): Spec, bits: Vec<u64>| -> Tensor {
        let base = from_bits(dtype, &bits, shape, &Device::Cpu).unwrap();
        view(&base).unwrap()
    };
    let count = |s: &[usize]| s.iter().product::<usize>();
    let xt = make(x, values(dtype, v, count(x.0), seed, true));
    let wt = make(
        w,
        slopes(
            dtype,
            count(w.0),
            seed as usize,
            matches!(v, Values::Specials),
        ),
    );
    let dyt = make(dy, values(dtype, v, count(dy.0), seed ^ 0xD1, false));
    let n = xt.elem_count();
    let ch = base::check_prelu(
        xt.layout(),
        n,
        wt.layout(),
        wt.elem_count(),
        base::Op::Prelu,
    )
    .unwrap();
    let want = if bwd {
        to_bits(&xt.apply_op3(&wt, &dyt, PreluBackward).unwrap()).unwrap()
    } else {
        to_bits(&xt.apply_op2(&wt, PreluOp).unwrap()).unwrap()
    };
    Case {
        bwd,
        dtype,
        what: format!(
            "{} {dtype:?} {v:?} x {:?}/{:?}+{} w {:?}/{:?} dy {:?}/{:?}",
            if bwd { "bwd" } else { "fwd" },
            xt.dims(),
            xt.stride(),
            xt.layout().start_offset(),
            wt.dims(),
            wt.stride(),
            dyt.dims(),
            dyt.stride()
        ),
        x: operand(&xt),
        w: operand(&wt),
        dy: bwd.then(|| operand(&dyt)),
        ch,
        want,
    }
}

/// (x, weight, dy) views of the case set; dy has x's dims.
#[rustfmt::skip]
const VIEWS: &[(Spec, Spec, Spec)] = &[
    // NCHW, a weight per channel.
    ((&[2, 3, 5, 7], whole), (&[3], whole), (&[2, 3, 5, 7], whole)),
    // Channel-last x (a permute), contiguous dy.
    ((&[2, 5, 7, 3], |t| t.permute((0, 3, 1, 2))), (&[3], whole), (&[2, 3, 5, 7], whole)),
    // Step-2 narrow of x, a (1, C, 1) weight, dy narrowed at an offset.
    ((&[2, 3, 10, 2], |t| t.narrow(3, 1, 1)?.squeeze(3)), (&[1, 3, 1], whole),
     (&[2, 3, 12], |t| t.narrow(2, 1, 10))),
    // Broadcast x, a strided weight, channel-last dy.
    ((&[1, 4, 1], |t| t.broadcast_as((3, 4, 6))), (&[4, 2], |t| t.narrow(1, 1, 1)?.squeeze(1)),
     (&[3, 6, 4], |t| t.permute((0, 2, 1)))),
    // (N, C) with inner 1: 700 terms per channel (3 blocks), x transposed.
    ((&[3, 700], |t| t.t()), (&[3], whole), (&[700, 3], whole)),
    // 600 terms per channel, a broadcast weight (stride 0).
    ((&[2, 5, 300], whole), (&[1], |t| t.broadcast_as(5)), (&[2, 5, 300], |t| t.contiguous())),
    // Rank 5, permuted; a (C, 1) weight.
    ((&[3, 2, 2, 5, 2], |t| t.permute((1, 4, 0, 3, 2))), (&[2, 1], whole), (&[2, 2, 3, 5, 2], whole)),
    // (1, C): one term per channel through the per-channel path.
    ((&[1, 5], whole), (&[5], whole), (&[1, 5], whole)),
    // One slope: rank 0, 7 elements, a (1, 1) weight over a permuted x.
    ((&[], whole), (&[], whole), (&[], whole)),
    ((&[9], |t| t.narrow(0, 2, 7)), (&[1], whole), (&[7], whole)),
    ((&[4, 100, 3], |t| t.permute((2, 0, 1))), (&[1, 1], whole), (&[3, 4, 100], whole)),
    // A weight of x's shape: contiguous, transposed, permuted.
    ((&[4, 6], whole), (&[4, 6], whole), (&[4, 6], whole)),
    ((&[4, 6], whole), (&[6, 4], |t| t.t()), (&[4, 12], |t| t.narrow(1, 3, 6))),
    ((&[4, 3, 2], |t| t.permute((2, 1, 0))), (&[3, 4, 2], |t| t.permute((2, 0, 1))),
     (&[2, 3, 4], whole)),
];

/// One slope over n elements: block edges (255, 256, 257, 511 terms), several block sums (4097),
/// two tree passes (8193 terms, 33 blocks), a strided x.
#[rustfmt::skip]
const SIZES: &[(Spec, Spec)] = &[
    ((&[255], whole), (&[255], whole)),
    ((&[256], whole), (&[256], whole)),
    ((&[258], |t| t.narrow(0, 1, 257)), (&[257], whole)),
    ((&[511], whole), (&[511], whole)),
    ((&[2, 4097], |t| t.narrow(0, 1, 1)?.squeeze(0)), (&[4097], whole)),
    ((&[8193], whole), (&[8193], whole)),
];

/// Per channel: 8200 terms in each of 4 channels (33 blocks: two tree passes).
#[rustfmt::skip]
const WIDE: (Spec, Spec, Spec) =
    ((&[2, 4, 4100], whole), (&[4], whole), (&[2, 4, 4100], whole));

/// 262,145 terms under one slope: 1025 blocks, three tree passes.
const HUGE: usize = 262_145;

fn case_set(dtypes: &[DType]) -> Vec<Case> {
    let mut cases = vec![];
    for &dtype in dtypes {
        let mut seed = 1u64;
        let mut next = || {
            seed += 1;
            seed
        };
        for &(x, w, dy) in VIEWS {
            for v in [Values::Wide, Values::Specials, Values::Tiny] {
                for bwd in [false, true] {
                    cases.push(case(bwd, dtype, v, next(), x, w, dy));
                }
            }
            cases.push(case(true, dtype, Values::Zeros, next(), x, w, dy));
        }
        for &(x, dy) in SIZES {
            for v in [Values::Wide, Values::Tiny, Values::Zeros] {
                cases.push(case(true, dtype, v, next(), x, (&[1], whole), dy));
            }
        }
        let (x, w, dy) = WIDE;
        cases.push(case(true, dtype, Values::Wide, next(), x, w, dy));
        cases.push(case(true, dtype, Values::Zeros, next(), x, w, dy));
        cases.push(case(false, dtype, Values::Specials, next(), x, w, dy));
    }
    for &dtype in dtypes {
        let spec: Spec = (&[HUGE], whole);
        cases.push(case(
            true,
            dtype,
            Values::Wide,
            99,
            spec,
            (&[1], whole),
            spec,
        ));
    }
    cases
}

/// Writes the case file (see `tests/prelu_host/case.h`); `launches` gives each case's `launch`
/// lines.
fn write_cases(cases: &[Case], launches: &dyn Fn(&Case) -> Vec<String>) -> String {
    let mut s = String::new();
    for c in cases {
        let op = if c.bwd { "bwd" } else { "fwd" };
        let (dt, n, ch) = (c.dtype.as_str(), c.n(), c.ch);
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
        cell.get_or_init(|| case_set(self.dtypes))
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
    let (n, ch) = (c.n(), c.ch);
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
    assert!(most(&|c| c.bwd as usize * cuda_plan::tree_passes(c.n(), c.ch).len()) == 3);
    assert!(cases
        .iter()
        .any(|c| c.ch.channels == c.n() && c.n() > 1 && c.bwd));
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
    args: &[
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
    let (n, ch) = (c.n(), c.ch);
    let op = if c.bwd {
        base::Op::PreluBwd
    } else {
        base::Op::Prelu
    };
    let name = metal_names::kernel_name(op, c.dtype, false);
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
    assert!(most(&|c| c.bwd as usize * metal_plan::tree_passes(c.n(), c.ch).len()) == 3);
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
        .args(["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra"])
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
     "if (ea >= 1u && eb >= 1u) {"),
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
