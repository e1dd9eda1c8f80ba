//! Host runs of the GPU kernel sources, shared by `tests/cuda_host.rs` and `tests/metal_host.rs`
//! (whose case set `tests/cuda.rs` and `tests/metal.rs` also run on the devices): cases built
//! from real candle views, their expected bits from the crate's CPU path through the Tensor API,
//! a text case file that a native driver (the kernel source compiled for the host with a shim)
//! runs, and the comparison. A backend only names its kernels, grids and compiler flags.
//!
//! Case file (the driver's stdin), whitespace separated:
//! `case OP DTYPE ALPHA_F64_HEX ALPHA_F32_HEX NDIMS DIMS...`, then per operand (x; dy for `bwd`)
//! `operand OFFSET STRIDES... LEN HEX...` (the operand's whole storage), then one or more
//! `launch ...` lines in the backend's words (kernel, grid, thread order), each ending in the
//! operands' layouts (`near`: as given; `far` and strides: see [`far_layouts`]). The driver answers
//! one line per launch: `COUNT HEX...` (fwd/bwd: the contiguous result, unwritten elements keep
//! a 0xA5 fill; inplace: x's whole storage afterwards).
#![allow(dead_code)]

use crate::common::{from_bits, to_bits};
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The three entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Fwd,
    Bwd,
    Inplace,
}

/// A view as the kernel receives it: its layout and its storage's bits.
pub struct Operand {
    pub layout: Layout,
    pub storage: Vec<u64>,
}

/// One kernel run and the bits the CPU path produced for it.
pub struct Case {
    pub op: Op,
    pub dtype: DType,
    pub alpha: f64,
    pub x: Operand,
    pub dy: Option<Operand>,
    pub want: Vec<u64>,
    /// The same run through the op on a GPU device (see [`case`]); `None` on the CPU.
    pub device_got: Option<Vec<u64>>,
}

impl Case {
    /// Elements of the output.
    pub fn n(&self) -> usize {
        self.x.layout.shape().elem_count()
    }

    /// Whether every operand is contiguous (the kernel then ignores dims and strides).
    pub fn contiguous(&self) -> bool {
        self.x.layout.is_contiguous() && self.dy.iter().all(|d| d.layout.is_contiguous())
    }
}

fn operand(t: &Tensor) -> Operand {
    let (s, l) = t.storage_and_layout();
    let storage = match &*s {
        Storage::Cpu(CpuStorage::F16(v)) => v.iter().map(|e| e.to_bits() as u64).collect(),
        Storage::Cpu(CpuStorage::BF16(v)) => v.iter().map(|e| e.to_bits() as u64).collect(),
        Storage::Cpu(CpuStorage::F32(v)) => v.iter().map(|e| e.to_bits() as u64).collect(),
        Storage::Cpu(CpuStorage::F64(v)) => v.iter().map(|e| e.to_bits()).collect(),
        _ => panic!("host cases are built from CPU tensors of a contract dtype"),
    };
    Operand {
        layout: l.clone(),
        storage,
    }
}

/// How a view is taken from its base tensor.
pub type ViewFn = fn(&Tensor) -> Result<Tensor>;

/// An operand to build: bit patterns (cycled to the base's size), the base's shape, the view.
pub type Input<'a> = (
    &'a [u64],
    &'a [usize],
    &'a dyn Fn(&Tensor) -> Result<Tensor>,
);

fn whole(t: &Tensor) -> Result<Tensor> {
    Ok(t.clone())
}

/// Views of shape [6, 7] (base shape, view) over differently laid out storage: offset,
/// transposed, narrowed, stepped, narrowed-squeezed-transposed, broadcast rows and columns; any
/// two can be paired in the backward op. The last two overlap (no in-place).
pub const VIEWS: [(&[usize], ViewFn); 8] = [
    (&[6, 7], whole),
    (&[50], |t| t.narrow(0, 5, 42)?.reshape((6, 7))),
    (&[7, 6], |t| t.t()),
    (&[6, 11], |t| t.narrow(1, 3, 7)),
    (&[6, 14], |t| {
        t.reshape((6, 7, 2))?.narrow(2, 1, 1)?.squeeze(2)
    }),
    (&[7, 2, 6], |t| t.narrow(1, 1, 1)?.squeeze(1)?.t()),
    (&[1, 7], |t| t.broadcast_as((6, 7))),
    (&[6, 1], |t| t.broadcast_as((6, 7))),
];

/// More views over 64 elements, of other shapes: a square and its transpose, a narrow at an
/// offset, a 3-d permute, a broadcast at an offset and unit dims.
const MORE_VIEWS: [(&[usize], ViewFn); 7] = [
    (&[64], |t| t.reshape((8, 8))),
    (&[64], |t| t.reshape((8, 8))?.t()),
    (&[64], |t| t.reshape((8, 8))?.narrow(1, 1, 5)),
    (&[64], |t| {
        t.narrow(0, 3, 40)?.reshape((5, 8))?.narrow(1, 2, 6)
    }),
    (&[64], |t| {
        t.narrow(0, 0, 60)?.reshape((3, 4, 5))?.permute((2, 0, 1))
    }),
    (&[64], |t| {
        t.narrow(0, 5, 7)?.reshape((1, 7))?.broadcast_as((6, 7))
    }),
    (&[64], |t| {
        t.narrow(0, 1, 60)?.reshape((1, 6, 1, 10))?.narrow(3, 0, 9)
    }),
];

/// The case of `op` with slope `alpha` on fresh views `x` (and `dy`); `want` comes from the
/// crate's CPU path through the Tensor API, and when `dev` is a GPU the op runs there too.
pub fn case(
    op: Op,
    alpha: f64,
    dtype: DType,
    x: Input,
    dy: Option<Input>,
    dev: &Device,
) -> Result<Case> {
    // (x's base, x, dy) on `dev`.
    let build = |dev: &Device| -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let make = |(bits, shape, view): Input| -> Result<(Tensor, Tensor)> {
            let n = shape.iter().product();
            let bits: Vec<u64> = bits.iter().copied().cycle().take(n).collect();
            let base = from_bits(dtype, &bits, shape, dev)?;
            Ok((base.clone(), view(&base)?))
        };
        let (base, x) = make(x)?;
        Ok((base, x, dy.map(make).transpose()?.map(|d| d.1)))
    };
    let run = |(base, x, dy): (Tensor, Tensor, Option<Tensor>)| -> Result<Vec<u64>> {
        match (op, dy) {
            (Op::Fwd, _) => to_bits(&x.apply_op1(LeakyRelu(alpha))?),
            (Op::Bwd, Some(dy)) => to_bits(&x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?),
            (Op::Bwd, None) => panic!("bwd needs dy"),
            (Op::Inplace, _) => {
                x.inplace_op1(&LeakyRelu(alpha))?;
                to_bits(&base)
            }
        }
    };
    let cpu = build(&Device::Cpu)?;
    let (x_in, dy_in) = (operand(&cpu.1), cpu.2.as_ref().map(operand));
    Ok(Case {
        op,
        dtype,
        alpha,
        x: x_in,
        dy: dy_in,
        want: run(cpu)?,
        device_got: (!dev.is_cpu())
            .then(|| build(dev).and_then(&run))
            .transpose()?,
    })
}

/// Reproducible random bit patterns of `width` bits (the harness's shared generator).
pub fn random_bits(seed: u64, n: usize, width: u32) -> Vec<u64> {
    let mask = u64::MAX >> (64 - width);
    (crate::common::random_words(seed).take(n))
        .map(|s| s & mask)
        .collect()
}

/// The input bit patterns of `dtype`: every pattern of a 16-bit type; otherwise the specials
/// (signed zeros and infinities, NaNs with payloads and signs, subnormals, extremes, ±1, values
/// whose products round near the subnormal and overflow edges, among them products with a slope
/// of [`ALPHAS`] whose exact value lies below 2^-126 and that round up to it) and 65,536 random
/// patterns.
pub fn patterns(dtype: DType) -> Vec<u64> {
    let specials_f32 = [
        0x0000_0000u64,
        0x8000_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0xFFC0_0000,
        0x7F80_0001,
        0xFF80_0001,
        0xFFA0_0001,
        0x7FBF_FFFF,
        0x7FC1_2345,
        0x0000_0001,
        0x8000_0001,
        0x007F_FFFF,
        0x807F_FFFF,
        0x0080_0000,
        0x8080_0000,
        0x8040_0000,
        0x7F7F_FFFF,
        0xFF7F_FFFF,
        0x3F80_0000,
        0xBF80_0000,
        0xBF80_0001,
        0xC2C8_0000,
        0xA000_0000,
        0x3380_0000,
        0xB380_0001,
        0xC77F_F000,
        0xC77F_EFFF,
        0x0080_0001,
        0x8080_0001,
        0x80FF_FFFE,
        0x80FF_FFFF,
        0x8055_5554,
        0x8055_5555,
        0x83C7_FFFF,
        0x83C8_0000,
        0x83C8_0001,
    ];
    let specials_f64 = [
        0x7FF0_0000_0000_0001,
        0xFFF4_0000_0000_0001,
        0x0000_0000_0000_0001,
        0x8000_0000_0000_0001,
        0x000F_FFFF_FFFF_FFFF,
        0x800F_FFFF_FFFF_FFFF,
        0x0010_0000_0000_0000,
        0x8010_0000_0000_0000,
        0x7FEF_FFFF_FFFF_FFFF,
        0xFFEF_FFFF_FFFF_FFFF,
        0x8000_0000_0000_1000,
    ];
    match dtype {
        DType::F16 | DType::BF16 => (0..1 << 16).collect(),
        DType::F32 => [&specials_f32[..], &random_bits(0x5EED, 1 << 16, 32)].concat(),
        DType::F64 => {
            let widened = specials_f32.map(|b| (f32::from_bits(b as u32) as f64).to_bits());
            [
                &widened[..],
                &specials_f64,
                &random_bits(0x5EED, 1 << 16, 64)[..],
            ]
            .concat()
        }
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// Slopes covering the usual (0.01), ReLU (0, `-0.0` kept), negative, above one, ones so small
/// that `alpha as f32` is subnormal (1e-40, the smallest 2^-149, negative), the smallest normal
/// 2^-126 and 1 - 2^-23 (whose product with -(1 + 2^-23) * 2^-126 rounds up to -2^-126).
pub const ALPHAS: [f64; 9] = [
    0.01,
    0.0,
    -0.5,
    1.5,
    1e-40,
    1e-45,
    -1e-40,
    f32::MIN_POSITIVE as f64,
    1.0 - 1.0 / 8_388_608.0,
];

/// The standard case set for `dtypes` (with a GPU `dev`, every case also runs there), cheap
/// families first: sizes 0-33 at offsets 0-7 (every element position in 16 bytes, for every
/// dtype), dy at every offset 0-7 against each (across the sizes) and through the same view,
/// and a 0-d scalar; every view of [`VIEWS`] and `MORE_VIEWS`
/// with every slope, backward with every view of the same shape; every pattern through every
/// op and slope (contiguous, dy permuted) and every dy against x = +1, -1, +0, -0, NaN
/// (contiguous; +1 and -0 also broadcast); large sizes and a large transpose.
pub fn standard_cases(dtypes: &[DType], dev: &Device) -> Result<Vec<Case>> {
    let mut cases = vec![];
    let ops = [Op::Fwd, Op::Inplace, Op::Bwd];
    let dims = |(s, v): (&[usize], ViewFn)| -> Result<Vec<usize>> {
        Ok(v(&Tensor::zeros(s, DType::U8, &Device::Cpu)?)?
            .dims()
            .to_vec())
    };
    for &dtype in dtypes {
        let all = patterns(dtype);
        let n = all.len();
        let perm: Vec<u64> = (0..n).map(|i| all[(i * 40503 + 12345) % n]).collect();
        let mixed: Vec<u64> = random_bits(7, 1 << 17, 32)
            .iter()
            .map(|&r| all[r as usize % n])
            .collect();
        let mut push = |op, alpha, x: Input, dy: Input| -> Result<()> {
            if op != Op::Inplace
                || !x.2(&Tensor::zeros(x.1, DType::U8, &Device::Cpu)?)?
                    .layout()
                    .has_internal_overlap()
            {
                let dy = Some(dy).filter(|_| op == Op::Bwd);
                cases.push(case(op, alpha, dtype, x, dy, dev)?);
            }
            Ok(())
        };
        let sizes = (0..=33).map(|n| (n, &[0, 1, 2, 3, 4, 5, 6, 7][..]));
        let larger = [(1000, &[0, 1][..]), (4099, &[0, 1][..])];
        for (i, (len, offs)) in sizes.chain(larger).enumerate() {
            for &off in offs {
                let (a, base) = (ALPHAS[(i + off) % ALPHAS.len()], [len + 8]);
                let (xv, dv) = (
                    |t: &Tensor| t.narrow(0, off, len),
                    |t: &Tensor| t.narrow(0, (len + off) % 8, len),
                );
                let x: Input = (&mixed[i * 17..], &base, &xv);
                for op in ops {
                    push(op, a, x, (&mixed[i * 5 + 3..], &base, &dv))?;
                }
                push(Op::Bwd, a, x, (&mixed[i * 7..], &base, &xv))?;
            }
        }
        for op in ops {
            push(
                op,
                ALPHAS[2],
                (&mixed, &[], &whole),
                (&mixed[1..], &[], &whole),
            )?;
        }
        let views: Vec<(&[usize], ViewFn)> = VIEWS.iter().chain(&MORE_VIEWS).copied().collect();
        for (i, &(shape, view)) in views.iter().enumerate() {
            for alpha in ALPHAS {
                for op in [Op::Fwd, Op::Inplace] {
                    push(
                        op,
                        alpha,
                        (&mixed[i * 5..], shape, &view),
                        (&[], &[], &whole),
                    )?;
                }
            }
            for (j, &(dshape, dview)) in views.iter().enumerate() {
                if dims(views[i])? != dims(views[j])? {
                    continue;
                }
                let alphas = if i == j {
                    &ALPHAS[..]
                } else {
                    &ALPHAS[(i + j) % ALPHAS.len()..][..1]
                };
                for &alpha in alphas {
                    let x: Input = (&mixed[i..], shape, &view);
                    push(Op::Bwd, alpha, x, (&mixed[j * 3..], dshape, &dview))?;
                }
            }
        }
        let class = |v: f32| -> Result<u64> {
            Ok(to_bits(&Tensor::new(&[v], &Device::Cpu)?.to_dtype(dtype)?)?[0])
        };
        let bcast = |t: &Tensor| t.narrow(0, 1, 1)?.broadcast_as(n);
        for alpha in ALPHAS {
            for op in ops {
                push(op, alpha, (&all, &[n], &whole), (&perm, &[n], &whole))?;
            }
            for v in [1.0, -1.0, 0.0, -0.0, f32::NAN] {
                let x = [class(v)?];
                push(Op::Bwd, alpha, (&x, &[n], &whole), (&all, &[n], &whole))?;
                if v == 1.0 || (v == 0.0 && v.is_sign_negative()) {
                    push(Op::Bwd, alpha, (&x, &[2], &bcast), (&all, &[n], &whole))?;
                }
            }
        }
        let (big, big_t) = (|t: &Tensor| t.narrow(0, 1, 100_003), |t: &Tensor| t.t());
        let (n1, n5, nt) = (&[100_003][..], &[100_008][..], &[300, 301][..]);
        for op in ops {
            push(op, ALPHAS[2], (&all, n5, &big), (&perm, n1, &whole))?;
            push(op, ALPHAS[0], (&mixed, n1, &whole), (&perm, n5, &big))?;
            push(op, ALPHAS[3], (&mixed, nt, &big_t), (&perm, nt, &big_t))?;
        }
    }
    Ok(cases)
}

/// Case `c`'s operands laid out past 2^32 elements (views no test could allocate; a driver
/// relays the same logical values out in reserved, mostly untouched address space, see
/// `case_file.h`'s `Far`): each operand's strides from offset 0 with 2^32 added to the stride of
/// the smallest dim of 2 to 16 elements (which keeps the reserved span to a few hundred GiB), so
/// that only a 64-bit index walk addresses them. `None` where no dim qualifies.
pub fn far_layouts(c: &Case) -> Option<Vec<Layout>> {
    let dims = c.x.layout.dims();
    let d = (0..dims.len())
        .filter(|&d| (2..=16).contains(&dims[d]))
        .min_by_key(|&d| dims[d])?;
    let far = |o: &Operand| {
        let mut stride = o.layout.stride().to_vec();
        stride[d] += 1 << 32;
        Layout::new(o.layout.shape().clone(), stride, 0)
    };
    Some(std::iter::once(&c.x).chain(&c.dy).map(far).collect())
}

/// The end of a launch line: `near` (the case's own layouts), or `far` and the strides of
/// `layouts` (from [`far_layouts`]).
pub fn layouts_word(layouts: Option<&[Layout]>) -> String {
    match layouts {
        None => "near".into(),
        Some(ls) => {
            (ls.iter().flat_map(|l| l.stride())).fold("far".into(), |w, s| format!("{w} {s}"))
        }
    }
}

/// Writes the case file; `launches` gives the backend's `launch` lines for case number `i`.
pub fn write_cases(cases: &[Case], launches: impl Fn(usize, &Case) -> Vec<String>) -> String {
    let mut s = String::new();
    for (i, c) in cases.iter().enumerate() {
        let dims = c.x.layout.dims();
        let (a64, a32) = (c.alpha.to_bits(), (c.alpha as f32).to_bits());
        let op = format!("{:?}", c.op).to_lowercase();
        write!(
            s,
            "case {op} {} {a64:x} {a32:x} {}",
            c.dtype.as_str(),
            dims.len()
        )
        .unwrap();
        dims.iter().for_each(|d| write!(s, " {d}").unwrap());
        for o in std::iter::once(&c.x).chain(&c.dy) {
            write!(s, "\noperand {}", o.layout.start_offset()).unwrap();
            o.layout
                .stride()
                .iter()
                .for_each(|d| write!(s, " {d}").unwrap());
            write!(s, " {}", o.storage.len()).unwrap();
            o.storage.iter().for_each(|b| write!(s, " {b:x}").unwrap());
        }
        launches(i, c)
            .iter()
            .for_each(|l| write!(s, "\nlaunch {l}").unwrap());
        s.push('\n');
    }
    s
}

/// One backend's host harness: how to compile its kernel source with the shared driver
/// protocol, and how each case is launched.
pub struct Harness {
    /// Scratch directory prefix and label.
    pub name: &'static str,
    /// The kernel source, relative to the crate root.
    pub kernel: &'static str,
    /// The file name the (possibly mutated) copy of the kernel is written as.
    pub copy: &'static str,
    /// Compiler arguments after the common ones (include dirs, sources); `{dir}` is the scratch
    /// directory (holding the copy), `{root}` the crate root.
    pub args: &'static [&'static str],
    /// The dtypes the backend's kernels take.
    pub dtypes: &'static [DType],
    /// The `launch` lines of case number `i`.
    pub launches: fn(usize, &Case) -> Vec<String>,
}

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

impl Harness {
    /// The standard cases, their case file and launches per case, built once per test process
    /// (a test binary holds one harness).
    pub fn cases(&self) -> &'static (Vec<Case>, String, Vec<usize>) {
        static CASES: OnceLock<(Vec<Case>, String, Vec<usize>)> = OnceLock::new();
        CASES.get_or_init(|| {
            let cases = standard_cases(self.dtypes, &Device::Cpu).unwrap();
            let counts = (cases.iter().enumerate())
                .map(|(i, c)| (self.launches)(i, c).len())
                .collect();
            let text = write_cases(&cases, self.launches);
            (cases, text, counts)
        })
    }

    /// The kernel source as in the repository.
    pub fn source(&self) -> String {
        std::fs::read_to_string(Path::new(ROOT).join(self.kernel)).unwrap()
    }

    /// Compiles `source` (warnings are errors unless `mutant`) with the backend's shim and
    /// driver in a scratch directory, runs every case and compares; stops at the first
    /// mismatch. The directory is removed afterwards.
    pub fn run(&self, source: &str, tag: &str, mutant: bool) -> std::result::Result<(), String> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{tag}", self.name));
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
        assert!(out.status.success(), "{cxx} failed ({tag}):\n{stderr}");
        let verdict = self.compare(&exe);
        std::fs::remove_dir_all(&dir).unwrap();
        verdict
    }

    /// Runs the driver `exe` on the case file and compares its answers as they come.
    fn compare(&self, exe: &Path) -> std::result::Result<(), String> {
        let (cases, text, counts) = self.cases();
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
                    bad = Some(format!("no answer for case {i} launch {launch}"));
                    break 'cases;
                };
                let got: Vec<u64> = (line.split(' ').skip(1))
                    .map(|h| u64::from_str_radix(h, 16).unwrap_or(u64::MAX))
                    .collect();
                let n = c.want.len().max(got.len());
                if let Some(e) = (0..n).find(|&e| got.get(e) != c.want.get(e)) {
                    let (l, launch) = (&c.x.layout, (self.launches)(i, c)[launch].clone());
                    bad = Some(format!(
                        "case {i} ({:?} {:?} alpha {} dims {:?} x strides {:?} offset {}, \
                         launch {launch}): element {e}: got {:x?}, want {:x?}",
                        c.op,
                        c.dtype,
                        c.alpha,
                        l.dims(),
                        l.stride(),
                        l.start_offset(),
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

    /// The unchanged kernel must match the CPU path on every case.
    pub fn check_unchanged(&self) {
        let strided = |op| {
            let cases = &self.cases().0;
            cases
                .iter()
                .filter(|c| c.op == op && !c.contiguous())
                .count()
        };
        assert!([Op::Fwd, Op::Bwd, Op::Inplace]
            .iter()
            .all(|&op| strided(op) >= 5));
        self.run(&self.source(), "unchanged", false).unwrap();
    }

    /// Every mutant `(what, exact text in the kernel, replacement)` must change the kernel (every
    /// occurrence of the text is replaced) and fail the comparison. One thread per mutant.
    pub fn check_mutants(&self, mutants: &[(&str, &str, &str)]) {
        let source = self.source();
        self.cases();
        std::thread::scope(|s| {
            for (i, (what, from, to)) in mutants.iter().enumerate() {
                let source = &source;
                s.spawn(move || {
                    assert!(source.contains(from), "mutant `{what}`: no `{from}`");
                    let verdict = self.run(&source.replace(from, to), &format!("mutant{i}"), true);
                    let why = verdict.expect_err(&format!("mutant `{what}` passed the harness"));
                    eprintln!("mutant `{what}` caught: {}", why.trim());
                });
            }
        });
    }
}
