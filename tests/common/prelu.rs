//! Test-side reference of PReLU, written from `NUMERICS.md` (contract section "PReLU" and the
//! crate's section "PReLU weight gradient: summation order"), independently of the crate's code:
//! the per-element forward and `dx` from bits, the channel of every element, the weight gradient
//! in the contract's summation order, and an exact sum to check that order's error bound.
//!
//! Values of the compute type C travel as f64: an f32 widens to f64 exactly (NaN-ness, signs of
//! zeros and subnormals included), and f32 additions are done in f32 on the narrowed operands.

use super::{canonical_nan, ref_bwd, ref_fwd};
use candle_core::DType;
use half::{bf16, f16};

/// Whether the contract computes `dtype` in f64 (else f32).
pub fn computes_in_f64(dtype: DType) -> bool {
    dtype == DType::F64
}

/// `C(v)` of one element given as bits of `dtype`, widened exactly to f64.
pub fn value(dtype: DType, b: u64) -> f64 {
    match dtype {
        DType::F16 => f16::from_bits(b as u16).to_f64(),
        DType::BF16 => bf16::from_bits(b as u16).to_f64(),
        DType::F32 => f32::from_bits(b as u32) as f64,
        DType::F64 => f64::from_bits(b),
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// PReLU forward of one element: the LeakyReLU forward table with the slope `C(w)`.
pub fn prelu_fwd(dtype: DType, x: u64, w: u64) -> u64 {
    // The slope is exact in f64, and `as f32` gives it back exactly for the f32-computed dtypes.
    ref_fwd(dtype, x, value(dtype, w))
}

/// PReLU `dx` of one element: the LeakyReLU backward table with the slope `C(w)`.
pub fn prelu_dx(dtype: DType, x: u64, dy: u64, w: u64) -> u64 {
    ref_bwd(dtype, x, dy, value(dtype, w))
}

/// How a weight maps to the elements of x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// One element: one slope, one channel, for all of x (any rank of x).
    Scalar,
    /// `x.dim(1)` elements, x of rank >= 2: the channel is the index along dim 1.
    PerChannel,
    /// x's own shape: every element its own slope and channel.
    Elementwise,
}

/// Which kind of weight `w_dims` is for x of `x_dims`; `None` where the contract refuses it.
pub fn weight_kind(x_dims: &[usize], w_dims: &[usize]) -> Option<WeightKind> {
    let nw: usize = w_dims.iter().product();
    if nw == 1 {
        Some(WeightKind::Scalar)
    } else if x_dims.len() >= 2 && nw == x_dims[1] {
        Some(WeightKind::PerChannel)
    } else if w_dims == x_dims {
        Some(WeightKind::Elementwise)
    } else {
        None
    }
}

/// The channel (= the index of the element's weight) of every element of x, in logical
/// row-major order, and the number of channels; `None` where the contract refuses the weight.
pub fn channels(x_dims: &[usize], w_dims: &[usize]) -> Option<(usize, Vec<usize>)> {
    let n: usize = x_dims.iter().product();
    Some(match weight_kind(x_dims, w_dims)? {
        WeightKind::Scalar => (1, vec![0; n]),
        WeightKind::PerChannel => {
            let inner: usize = x_dims[2..].iter().product();
            let c = x_dims[1];
            (c, (0..n).map(|i| (i / inner) % c).collect())
        }
        WeightKind::Elementwise => (n, (0..n).collect()),
    })
}

/// One weight-gradient term: `+0.0` for `x > 0`, else `R_C(C(x) * C(dy))` (NaN x included).
pub fn term(dtype: DType, x: u64, dy: u64) -> f64 {
    let (xv, gv) = (value(dtype, x), value(dtype, dy));
    if xv > 0.0 {
        0.0
    } else if computes_in_f64(dtype) {
        xv * gv
    } else {
        ((xv as f32) * (gv as f32)) as f64
    }
}

/// One addition in the compute type.
fn add(f64_compute: bool, a: f64, b: f64) -> f64 {
    if f64_compute {
        a + b
    } else {
        ((a as f32) + (b as f32)) as f64
    }
}

/// The adjacent-pairs tree over a power-of-two number of values, level by level, exactly as
/// NUMERICS.md words it: each level adds element `2i` and element `2i + 1` of the level before.
fn pairs_level_by_level(f64_compute: bool, mut v: Vec<f64>) -> f64 {
    assert!(v.len().is_power_of_two());
    while v.len() > 1 {
        v = v.chunks(2).map(|p| add(f64_compute, p[0], p[1])).collect();
    }
    v[0]
}

/// The channel sum `S` of the contract's order over `terms` (values of C as f64): blocks of 256
/// padded with `-0.0`, 16 lanes each summed left to right over a stride of 16, the lane tree,
/// then the tree over the block sums padded with `-0.0` to a power of two; `+0.0` for no terms.
pub fn order_sum(f64_compute: bool, terms: &[f64]) -> f64 {
    if terms.is_empty() {
        return 0.0;
    }
    let m = terms.len().div_ceil(256);
    let t = |i: usize| terms.get(i).copied().unwrap_or(-0.0);
    let mut block_sums = Vec::with_capacity(m.next_power_of_two());
    for b in 0..m {
        let lanes: Vec<f64> = (0..16)
            .map(|j| {
                let mut l = t(256 * b + j);
                for k in 1..16 {
                    l = add(f64_compute, l, t(256 * b + j + 16 * k));
                }
                l
            })
            .collect();
        block_sums.push(pairs_level_by_level(f64_compute, lanes));
    }
    block_sums.resize(m.next_power_of_two(), -0.0);
    pairs_level_by_level(f64_compute, block_sums)
}

/// The number `d` of additions a term takes part in at most, for `n` terms: 15 in its lane, 4
/// in the lane tree, `log2 M` in the block tree (NUMERICS.md, "Error bound").
pub fn order_depth(n: usize) -> u32 {
    let m = n.div_ceil(256).max(1);
    19 + m.next_power_of_two().trailing_zeros()
}

/// `R_T(s)` for a sum `s` of C given as f64: round once to T (nearest, ties to even), a NaN sum
/// giving the canonical NaN of T.
pub fn round_to(dtype: DType, s: f64) -> u64 {
    if s.is_nan() {
        return canonical_nan(dtype);
    }
    match dtype {
        DType::F16 => f16::from_f32(s as f32).to_bits() as u64,
        DType::BF16 => bf16::from_f32(s as f32).to_bits() as u64,
        DType::F32 => (s as f32).to_bits() as u64,
        DType::F64 => s.to_bits(),
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// Every channel's terms, in logical row-major order.
pub fn channel_terms(
    dtype: DType,
    x: &[u64],
    dy: &[u64],
    x_dims: &[usize],
    w_dims: &[usize],
) -> Option<Vec<Vec<f64>>> {
    let (c, chan) = channels(x_dims, w_dims)?;
    assert_eq!(x.len(), chan.len(), "x has the element count of its dims");
    assert_eq!(dy.len(), chan.len(), "dy has x's element count");
    let mut terms = vec![Vec::new(); c];
    for (i, &ch) in chan.iter().enumerate() {
        terms[ch].push(term(dtype, x[i], dy[i]));
    }
    Some(terms)
}

/// The channel sums `S` (C values as f64) before the rounding to T.
pub fn prelu_dweight_sums(
    dtype: DType,
    x: &[u64],
    dy: &[u64],
    x_dims: &[usize],
    w_dims: &[usize],
) -> Option<Vec<f64>> {
    let f64c = computes_in_f64(dtype);
    Some(
        channel_terms(dtype, x, dy, x_dims, w_dims)?
            .iter()
            .map(|t| order_sum(f64c, t))
            .collect(),
    )
}

/// `dweight` as bits of T, one per weight element; `None` where the contract refuses the weight.
pub fn prelu_dweight(
    dtype: DType,
    x: &[u64],
    dy: &[u64],
    x_dims: &[usize],
    w_dims: &[usize],
) -> Option<Vec<u64>> {
    Some(
        prelu_dweight_sums(dtype, x, dy, x_dims, w_dims)?
            .into_iter()
            .map(|s| round_to(dtype, s))
            .collect(),
    )
}

/// Digits of [`Exact`]: base 2^32, from 2^-1074 (the least f64 subnormal) up; 72 digits hold
/// 2^1024 (beyond f64) times 2^53 (a shift) times 2^150 of headroom for sums of many terms.
const DIGITS: usize = 72;
/// The weight of digit 0 is 2^-1074.
const LSB_EXP: i32 = -1074;

/// An exact sum of finite f64 values (f32 values widen exactly): a fixed-point integer in units
/// of 2^-1074, held as signed base-2^32 digits whose carries are propagated lazily.
#[derive(Clone, Debug)]
pub struct Exact {
    d: Vec<i64>,
    /// Additions since the last carry propagation (each adds less than 2^32 to a digit).
    pending: u32,
}

impl Default for Exact {
    fn default() -> Self {
        Self::new()
    }
}

impl Exact {
    /// Zero.
    pub fn new() -> Self {
        Exact {
            d: vec![0; DIGITS],
            pending: 0,
        }
    }

    /// The exact sum of `values` (all finite).
    pub fn sum(values: impl IntoIterator<Item = f64>) -> Self {
        let mut e = Exact::new();
        for v in values {
            e.add(v);
        }
        e
    }

    /// The exact sum of the magnitudes of `values` (all finite).
    pub fn sum_abs(values: impl IntoIterator<Item = f64>) -> Self {
        Self::sum(values.into_iter().map(f64::abs))
    }

    /// Adds a finite value exactly (panics on inf or NaN: the caller handles those).
    pub fn add(&mut self, v: f64) {
        assert!(v.is_finite(), "Exact::add({v}): finite values only");
        if v == 0.0 {
            return;
        }
        let bits = v.to_bits();
        let biased = ((bits >> 52) & 0x7FF) as i64;
        let frac = bits & ((1 << 52) - 1);
        // v = mant * 2^(shift - 1074), shift >= 0.
        let (mant, shift) = if biased == 0 {
            (frac, 0)
        } else {
            (frac | (1 << 52), (biased - 1) as u32)
        };
        let neg = v < 0.0;
        let (q, r) = ((shift / 32) as usize, shift % 32);
        let wide = (mant as u128) << r; // at most 84 bits: three digits
        for k in 0..3 {
            let digit = ((wide >> (32 * k)) & 0xFFFF_FFFF) as i64;
            if digit != 0 {
                self.d[q + k] += if neg { -digit } else { digit };
            }
        }
        self.pending += 1;
        if self.pending >= 1 << 30 {
            self.normalize();
        }
    }

    /// Adds another exact sum.
    pub fn add_exact(&mut self, o: &Exact) {
        let mut o = o.clone();
        o.normalize();
        self.normalize();
        for (a, b) in self.d.iter_mut().zip(&o.d) {
            *a += b;
        }
        self.normalize();
    }

    /// Multiplies by a small non-negative integer.
    pub fn mul_small(&mut self, k: u32) {
        self.normalize();
        for a in &mut self.d {
            *a *= k as i64;
        }
        self.normalize();
    }

    /// Multiplies by 2^bits.
    pub fn shl(&mut self, bits: u32) {
        self.normalize();
        for _ in 0..bits / 16 {
            self.mul_small(1 << 16);
        }
        self.mul_small(1 << (bits % 16));
    }

    /// Negates.
    pub fn neg(&mut self) {
        for a in &mut self.d {
            *a = -*a;
        }
    }

    /// Propagates carries: digits 0..DIGITS-1 in `0 .. 2^32`, the sign in the top digit.
    fn normalize(&mut self) {
        for k in 0..DIGITS - 1 {
            let carry = self.d[k] >> 32;
            self.d[k] -= carry << 32;
            self.d[k + 1] += carry;
        }
        assert!(
            self.d[DIGITS - 1].unsigned_abs() < 1 << 40,
            "Exact: out of range"
        );
        self.pending = 0;
    }

    /// -1, 0 or 1.
    pub fn signum(&self) -> i32 {
        let mut n = self.clone();
        n.normalize();
        if n.d[DIGITS - 1] < 0 {
            -1
        } else if n.d.iter().any(|&x| x != 0) {
            1
        } else {
            0
        }
    }

    /// The absolute value.
    pub fn abs(&self) -> Exact {
        let mut n = self.clone();
        if n.signum() < 0 {
            n.neg();
        }
        n.normalize();
        n
    }

    /// Bit `i` of the magnitude (the value is non-negative and normalised).
    fn bit(&self, i: usize) -> bool {
        (self.d[i / 32] >> (i % 32)) & 1 == 1
    }

    /// The value rounded once to a binary format with `p` significand bits and least normal
    /// exponent `emin` (an overflow gives an infinity), returned as f64 (exact: p <= 53 and the
    /// result lies in f64's range or is infinite). Round to nearest, ties to even.
    fn round(&self, p: u32, emin: i32, emax: i32) -> f64 {
        let sign = self.signum();
        if sign == 0 {
            return 0.0;
        }
        let m = self.abs();
        let top = (0..32 * DIGITS)
            .rev()
            .find(|&i| m.bit(i))
            .expect("non-zero") as i32;
        // The quantum: p bits below the top bit, never below the least subnormal of the format.
        let q_min = emin - (p as i32 - 1) - LSB_EXP;
        let q = (top - (p as i32 - 1)).max(q_min).max(0);
        let mut mant: u64 = 0;
        for i in (q..=top).rev() {
            mant = (mant << 1) | m.bit(i as usize) as u64;
        }
        if q > 0 {
            let half = m.bit(q as usize - 1);
            let sticky = (0..q as usize - 1).any(|i| m.bit(i));
            if half && (sticky || mant & 1 == 1) {
                mant += 1;
            }
        }
        let e = q + LSB_EXP; // value = mant * 2^e
        let magnitude = if mant == 0 {
            0.0
        } else if (64 - mant.leading_zeros()) as i32 - 1 + e > emax {
            f64::INFINITY
        } else {
            mant as f64 * pow2(e)
        };
        if sign < 0 {
            -magnitude
        } else {
            magnitude
        }
    }

    /// The value rounded once to f64.
    pub fn to_f64(&self) -> f64 {
        self.round(53, -1022, 1023)
    }

    /// The value rounded once to f32 (directly, not through f64).
    pub fn to_f32(&self) -> f32 {
        self.round(24, -126, 127) as f32
    }
}

/// 2^e for e in f64's range (subnormal powers included), exact.
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// Whether `|value - sum terms| <= gamma_d * sum |terms| + slack`, decided exactly, with
/// `gamma_d = d*u / (1 - d*u)` and `u = 2^-p` (p = 24 for f32, 53 for f64). All finite.
/// Multiplied out by `2^p - d`: `err * (2^p - d) <= d * A + slack * (2^p - d)`.
pub fn within_gamma(terms: &[f64], value: f64, d: u32, p: u32, slack: f64) -> bool {
    let mut err = Exact::sum(terms.iter().copied());
    err.add(-value);
    let err = err.abs();
    let a = Exact::sum_abs(terms.iter().copied());
    // Left: err * 2^p - err * d - slack * (2^p - d).
    let mut left = err.clone();
    left.shl(p);
    let mut e_d = err;
    e_d.mul_small(d);
    e_d.neg();
    left.add_exact(&e_d);
    let mut s = Exact::sum([slack]);
    let mut s_d = s.clone();
    s.shl(p);
    s_d.mul_small(d);
    s_d.neg();
    s.add_exact(&s_d);
    s.neg();
    left.add_exact(&s);
    // Right: d * A.
    let mut right = a;
    right.mul_small(d);
    right.neg();
    left.add_exact(&right);
    left.signum() <= 0
}

/// `|value - sum terms| / (gamma_d * sum |terms|)`, approximately (for messages and figures).
pub fn bound_ratio(terms: &[f64], value: f64, d: u32, p: u32) -> f64 {
    let mut err = Exact::sum(terms.iter().copied());
    err.add(-value);
    let u = 2f64.powi(-(p as i32));
    let gamma = d as f64 * u / (1.0 - d as f64 * u);
    err.abs().to_f64() / (gamma * Exact::sum_abs(terms.iter().copied()).to_f64())
}

/// One golden file of `tests/golden/prelu/` (format: `tests/golden/README.md`).
pub struct GoldenFile {
    pub name: String,
    pub dtype: DType,
    pub x_dims: Vec<usize>,
    pub w_dims: Vec<usize>,
    pub w: Vec<u64>,
    pub dweight: Vec<u64>,
    /// x, c, y, dy, dx, gw.
    pub cols: [Vec<u64>; 6],
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex string"), 16).expect("hex")
}

fn dims(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .expect("dims")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect()
}

fn load(path: &std::path::Path) -> GoldenFile {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut lines = text.lines();
    let meta: serde_json::Value = serde_json::from_str(lines.next().expect("header")).unwrap();
    let dtype = match meta["dtype"].as_str().unwrap() {
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "float32" => DType::F32,
        "float64" => DType::F64,
        d => panic!("{d}"),
    };
    let mut cols: [Vec<u64>; 6] = Default::default();
    for line in lines.filter(|l| !l.is_empty()) {
        for (k, (c, w)) in cols.iter_mut().zip(line.split(' ')).enumerate() {
            c.push(if k == 1 {
                w.parse().expect("channel")
            } else {
                u64::from_str_radix(w, 16).expect("hex word")
            });
        }
    }
    let n = meta["n"].as_u64().unwrap() as usize;
    assert!(cols.iter().all(|c| c.len() == n), "{path:?}: {n} rows");
    GoldenFile {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        dtype,
        x_dims: dims(&meta["x_dims"]),
        w_dims: dims(&meta["w_dims"]),
        w: meta["w_bits"].as_array().unwrap().iter().map(hex).collect(),
        dweight: meta["dweight_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex)
            .collect(),
        cols,
    }
}

pub fn golden_files() -> Vec<GoldenFile> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/prelu");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 32, "4 dtypes x 8 cases in {dir:?}");
    paths.iter().map(|p| load(p)).collect()
}
