//! The PReLU kernel cases of `tests/prelu_host.rs` (which runs the kernel sources on the host),
//! also run through the op on a GPU by `tests/cuda.rs` and `tests/metal.rs`: real candle views of
//! x, the weight and dy, their bits, and the bits of the crate's CPU path through the Tensor API
//! (`x.apply_op2(&w, PreluOp)`, `x.apply_op3(&w, &dy, PreluBackward)`).
//!
//! The views: NCHW, a channel-last permute, a step-2 narrow, broadcast x and weights, rank 0 to 5,
//! a weight of one element, of `x.dim(1)` elements in several shapes and layouts, of x's own
//! shape (transposed too); channels of up to 262,145 terms (1,025 blocks of 256: three tree
//! passes). The values: wide ranges (sums that depend on their order), specials (NaN with
//! payloads, infinities, signed zeros, subnormals) in x, dy and the weight, tiny values
//! (subnormal products and sums), and all-`-0.0` terms.
#![allow(dead_code)]

use crate::common::{from_bits, random_words, storage_bits, to_bits};
use candle_core::{DType, Device, Layout, Result, Tensor};
use candle_leaky_relu::{PreluBackward, PreluOp};

/// A view as the kernel receives it: its layout and its storage's bits.
pub struct Operand {
    pub layout: Layout,
    pub storage: Vec<u64>,
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
pub struct Case {
    /// Backward (`PreluBackward`: dx ++ dweight), else forward (`PreluOp`).
    pub bwd: bool,
    pub dtype: DType,
    /// The op, dtype, values and views, for messages.
    pub what: String,
    pub x: Operand,
    pub w: Operand,
    pub dy: Option<Operand>,
    /// The CPU path's bits.
    pub want: Vec<u64>,
    /// The same run through the op on a GPU device (see [`case_set`]); `None` on the CPU.
    pub device_got: Option<Vec<u64>>,
}

impl Case {
    /// x's element count.
    pub fn n(&self) -> usize {
        self.x.layout.shape().elem_count()
    }
}

/// How a view is taken from its base tensor.
pub type ViewFn = fn(&Tensor) -> Result<Tensor>;

pub fn whole(t: &Tensor) -> Result<Tensor> {
    Ok(t.clone())
}

/// Value families for x and dy.
#[derive(Clone, Copy, Debug)]
pub enum Values {
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
pub type Spec = (&'static [usize], ViewFn);

/// The case of `(x, w, dy)` views; `want` from the crate's CPU path through the Tensor API, and
/// when `dev` is a GPU the op runs there too.
#[allow(clippy::too_many_arguments)]
fn case(
    bwd: bool,
    dtype: DType,
    v: Values,
    seed: u64,
    x: Spec,
    w: Spec,
    dy: Spec,
    dev: &Device,
) -> Case {
    let count = |s: &[usize]| s.iter().product::<usize>();
    let xb = values(dtype, v, count(x.0), seed, true);
    let wb = slopes(
        dtype,
        count(w.0),
        seed as usize,
        matches!(v, Values::Specials),
    );
    let dyb = values(dtype, v, count(dy.0), seed ^ 0xD1, false);
    // (x, w, dy) on `dev`.
    let build = |dev: &Device| -> (Tensor, Tensor, Tensor) {
        let make = |(shape, view): Spec, bits: &[u64]| -> Tensor {
            view(&from_bits(dtype, bits, shape, dev).unwrap()).unwrap()
        };
        (make(x, &xb), make(w, &wb), make(dy, &dyb))
    };
    let run = |(xt, wt, dyt): &(Tensor, Tensor, Tensor)| -> Vec<u64> {
        let out = if bwd {
            xt.apply_op3(wt, dyt, PreluBackward)
        } else {
            xt.apply_op2(wt, PreluOp)
        };
        to_bits(&out.unwrap()).unwrap()
    };
    let cpu = build(&Device::Cpu);
    let want = run(&cpu);
    let device_got = (!dev.is_cpu()).then(|| run(&build(dev)));
    let (xt, wt, dyt) = cpu;
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
        want,
        device_got,
    }
}

/// (x, weight, dy) views of the case set; dy has x's dims.
#[rustfmt::skip]
pub const VIEWS: &[(Spec, Spec, Spec)] = &[
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
    // A broadcast dy (stride 0 in dims 0 and 2).
    ((&[2, 3, 4], whole), (&[3], whole), (&[1, 3, 1], |t| t.broadcast_as((2, 3, 4)))),
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
pub const SIZES: &[(Spec, Spec)] = &[
    ((&[255], whole), (&[255], whole)),
    ((&[256], whole), (&[256], whole)),
    ((&[258], |t| t.narrow(0, 1, 257)), (&[257], whole)),
    ((&[511], whole), (&[511], whole)),
    ((&[2, 4097], |t| t.narrow(0, 1, 1)?.squeeze(0)), (&[4097], whole)),
    ((&[8193], whole), (&[8193], whole)),
];

/// Per channel: 8200 terms in each of 4 channels (33 blocks: two tree passes).
#[rustfmt::skip]
pub const WIDE: (Spec, Spec, Spec) =
    ((&[2, 4, 4100], whole), (&[4], whole), (&[2, 4, 4100], whole));

/// 262,145 terms under one slope: 1025 blocks, three tree passes.
pub const HUGE: usize = 262_145;

/// The case set for `dtypes` (with a GPU `dev`, every case also runs there): every view of
/// [`VIEWS`] forward and backward with wide, special and tiny values and backward with zeros;
/// [`SIZES`] and [`WIDE`] backward; [`HUGE`] backward last.
pub fn case_set(dtypes: &[DType], dev: &Device) -> Vec<Case> {
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
                    cases.push(case(bwd, dtype, v, next(), x, w, dy, dev));
                }
            }
            cases.push(case(true, dtype, Values::Zeros, next(), x, w, dy, dev));
        }
        for &(x, dy) in SIZES {
            for v in [Values::Wide, Values::Tiny, Values::Zeros] {
                cases.push(case(true, dtype, v, next(), x, (&[1], whole), dy, dev));
            }
        }
        let (x, w, dy) = WIDE;
        cases.push(case(true, dtype, Values::Wide, next(), x, w, dy, dev));
        cases.push(case(true, dtype, Values::Zeros, next(), x, w, dy, dev));
        cases.push(case(false, dtype, Values::Specials, next(), x, w, dy, dev));
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
            dev,
        ));
    }
    cases
}
