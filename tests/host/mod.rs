//! Host runs of GPU kernel sources: cases built through the crate's CPU path (the expected bits)
//! and written as a text file for a native driver that runs the kernel source on the CPU.
//! Backend-neutral; the backend adds one `launch ...` line per case (its kernel name and grid).
//!
//! Case file, whitespace separated:
//! `case OP DTYPE ALPHA_F64_HEX ALPHA_F32_HEX NDIMS DIMS...`, then per operand (x; dy for `bwd`)
//! `operand OFFSET STRIDES... LEN HEX...` (the operand's whole storage), then the backend's line.
//! The driver answers one line per case: `COUNT HEX...` (fwd/bwd: the contiguous result;
//! inplace: x's whole storage afterwards).
#![allow(dead_code)]

use crate::common::{from_bits, to_bits};
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward};
use std::fmt::Write as _;

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
pub type Input<'a> = (&'a [u64], &'a [usize], ViewFn);

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

/// The case of `op` with slope `alpha` on fresh CPU views `x` (and `dy`); `want` comes from the
/// crate's CPU path through the Tensor API.
pub fn case(op: Op, alpha: f64, dtype: DType, x: Input, dy: Option<Input>) -> Result<Case> {
    let build = |(bits, shape, view): Input| -> Result<Tensor> {
        let n = shape.iter().product();
        let bits: Vec<u64> = bits.iter().copied().cycle().take(n).collect();
        view(&from_bits(dtype, &bits, shape, &Device::Cpu)?)
    };
    let x = build(x)?;
    let x_in = operand(&x);
    let (dy, want) = match op {
        Op::Fwd => (None, to_bits(&x.apply_op1(LeakyRelu(alpha))?)?),
        Op::Bwd => {
            let dy = build(dy.expect("bwd needs dy"))?;
            let dx = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?;
            (Some(operand(&dy)), to_bits(&dx)?)
        }
        Op::Inplace => {
            x.inplace_op1(&LeakyRelu(alpha))?;
            (None, operand(&x).storage)
        }
    };
    Ok(Case {
        op,
        dtype,
        alpha,
        x: x_in,
        dy,
        want,
    })
}

/// 64-bit xorshift, for reproducible random bit patterns.
pub fn random_bits(seed: u64, n: usize, width: u32) -> Vec<u64> {
    let mut s = seed | 1;
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    };
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s & mask
        })
        .collect()
}

/// The input bit patterns of `dtype`: every pattern of a 16-bit type; otherwise the specials
/// (signed zeros and infinities, NaNs with payloads, subnormals, extremes, ±1) and 65,536
/// random patterns.
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
        0x7FBF_FFFF,
        0x7FC1_2345,
        0x0000_0001,
        0x8000_0001,
        0x007F_FFFF,
        0x807F_FFFF,
        0x0080_0000,
        0x8080_0000,
        0x7F7F_FFFF,
        0xFF7F_FFFF,
        0x3F80_0000,
        0xBF80_0000,
        0x3380_0000,
        0xB380_0001,
        0xC77F_F000,
        0xC77F_EFFF,
    ];
    match dtype {
        DType::F16 | DType::BF16 => (0..1 << 16).collect(),
        DType::F32 => [&specials_f32[..], &random_bits(0x5EED, 1 << 16, 32)].concat(),
        DType::F64 => {
            let specials = specials_f32.map(|b| (f32::from_bits(b as u32) as f64).to_bits());
            [&specials[..], &random_bits(0x5EED, 1 << 16, 64)].concat()
        }
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// Slopes covering the usual (0.01), ReLU (0, `-0.0` kept), negative and above one.
pub const ALPHAS: [f64; 4] = [0.01, 0.0, -0.5, 1.5];

/// The standard case set for `dtypes`: every pattern through every op and slope (contiguous;
/// backward with dy permuted, and with dy exhaustive against x = +1, -1, +0, -0, NaN); sizes 0-9,
/// a few large ones and a 0-d scalar; every view of [`VIEWS`] and a large transpose (in place:
/// the non-overlapping ones); every x/dy pair of views in backward.
pub fn standard_cases(dtypes: &[DType]) -> Result<Vec<Case>> {
    let mut cases = vec![];
    for &dtype in dtypes {
        let all = patterns(dtype);
        let n = all.len();
        let perm: Vec<u64> = (0..n).map(|i| all[(i * 40503 + 12345) % n]).collect();
        let mixed: Vec<u64> = random_bits(7, 4096, 16)
            .iter()
            .map(|&r| all[r as usize % n])
            .collect();
        let class = |v: f32| -> Result<u64> {
            Ok(to_bits(&Tensor::new(&[v], &Device::Cpu)?.to_dtype(dtype)?)?[0])
        };
        let mut push = |op, alpha, x: Input, dy: Input| -> Result<()> {
            let ok = op != Op::Inplace
                || !x.2(&Tensor::zeros(x.1, dtype, &Device::Cpu)?)?
                    .layout()
                    .has_internal_overlap();
            if ok {
                cases.push(case(
                    op,
                    alpha,
                    dtype,
                    x,
                    Some(dy).filter(|_| op == Op::Bwd),
                )?);
            }
            Ok(())
        };
        for alpha in ALPHAS {
            for op in [Op::Fwd, Op::Inplace, Op::Bwd] {
                push(op, alpha, (&all, &[n], whole), (&perm, &[n], whole))?;
            }
            for v in [1.0, -1.0, 0.0, -0.0, f32::NAN] {
                push(
                    Op::Bwd,
                    alpha,
                    (&[class(v)?], &[n], whole),
                    (&all, &[n], whole),
                )?;
            }
        }
        let sizes: Vec<Vec<usize>> = (0..=9)
            .chain([1000, 4099, 100_003])
            .map(|s| vec![s])
            .chain([vec![]])
            .collect();
        for (i, shape) in sizes.iter().enumerate() {
            for op in [Op::Fwd, Op::Inplace, Op::Bwd] {
                push(
                    op,
                    ALPHAS[i % 4],
                    (&mixed[i * 17..], shape, whole),
                    (&mixed, shape, whole),
                )?;
            }
        }
        let big_t: (&[usize], ViewFn) = (&[300, 301], |t| t.t());
        for (i, &(shape, view)) in VIEWS.iter().chain([&big_t]).enumerate() {
            for op in [Op::Fwd, Op::Inplace] {
                push(
                    op,
                    ALPHAS[i % 4],
                    (&mixed[i * 5..], shape, view),
                    (&[], &[], whole),
                )?;
            }
            for (j, &(dshape, dview)) in VIEWS.iter().enumerate().filter(|_| i < VIEWS.len()) {
                let dy = (&mixed[j * 3..], dshape, dview);
                push(Op::Bwd, ALPHAS[(i + j) % 4], (&mixed[i..], shape, view), dy)?;
            }
        }
    }
    Ok(cases)
}

/// Writes the case file; `launch` gives the backend's line for case number `i`.
pub fn write_cases(cases: &[Case], mut launch: impl FnMut(usize, &Case) -> String) -> String {
    let mut s = String::new();
    for (i, c) in cases.iter().enumerate() {
        let op = match c.op {
            Op::Fwd => "fwd",
            Op::Bwd => "bwd",
            Op::Inplace => "inplace",
        };
        let dims = c.x.layout.dims();
        let (a64, a32) = (c.alpha.to_bits(), (c.alpha as f32).to_bits());
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
        writeln!(s, "\n{}", launch(i, c)).unwrap();
    }
    s
}

/// Compares the driver's answer with the cases; names the first differing case and element.
pub fn check_output(cases: &[Case], out: &str) -> std::result::Result<(), String> {
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() != cases.len() {
        return Err(format!("{} answers for {} cases", lines.len(), cases.len()));
    }
    for (i, (c, line)) in cases.iter().zip(lines).enumerate() {
        let got: Vec<u64> = line
            .split(' ')
            .skip(1)
            .map(|h| u64::from_str_radix(h, 16).unwrap())
            .collect();
        if let Some(k) = (0..c.want.len().max(got.len())).find(|&k| got.get(k) != c.want.get(k)) {
            return Err(format!(
                "case {i} ({:?} {:?} alpha {} dims {:?} x strides {:?}): element {k}: got {:x?}, want {:x?}",
                c.op, c.dtype, c.alpha, c.x.layout.dims(), c.x.layout.stride(), got.get(k), c.want.get(k)
            ));
        }
    }
    Ok(())
}
