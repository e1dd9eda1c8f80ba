//! Slice kernels over the scalar rule of `rule.rs`, in three tiers picked at run time:
//!
//! - `scalar`: the rule mapped over the slices, compiled for the baseline target (the reference;
//!   the compiler may vectorise it with SSE2).
//! - `avx2`: AVX2 + F16C registers (`simd/avx2.rs`).
//! - `avx512`: AVX-512 F/BW/VL registers with masked tails (`simd/avx512.rs`).
//!
//! Each op is written once, generic over [`Lanes`] (`fwd`, `bwd`, `terms`, `block_sums` below);
//! a tier only says how its registers load, convert, compare, multiply, round, add, blend and
//! store one dtype.
//! Every tier gives the rule's bits, element for element (tested per tier in `simd/tests.rs` and
//! `tests/tiers.rs`).
//!
//! The tier is the best one the CPU has, unless the environment variable
//! `CANDLE_LEAKY_RELU_CPU_TIER` (`scalar`, `avx2` or `avx512`), read once per process, caps it
//! lower; a tier the CPU lacks is never run.

use super::rule::{Compute, Rule};
use super::tree::{block_sum, lanes_tree, Acc, BLOCK, LANES};
use half::{bf16, f16};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;

/// The environment variable that caps the CPU tier.
pub(crate) const TIER_VAR: &str = "CANDLE_LEAKY_RELU_CPU_TIER";

/// An instruction-set tier of the CPU kernels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// The scalar rule, baseline target.
    Scalar,
    /// AVX2 and F16C.
    Avx2,
    /// AVX-512 F, BW and VL.
    Avx512,
}

impl Tier {
    /// Every tier, lowest first.
    pub(crate) const ALL: [Tier; 3] = [Tier::Scalar, Tier::Avx2, Tier::Avx512];

    /// The tier's name, as `CANDLE_LEAKY_RELU_CPU_TIER` spells it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The CPU features this tier needs that this CPU lacks (empty: the tier can run).
    pub(crate) fn missing(self) -> Vec<&'static str> {
        #[cfg(target_arch = "x86_64")]
        {
            let need: &[&'static str] = match self {
                Tier::Scalar => &[],
                Tier::Avx2 => &["avx2", "f16c"],
                Tier::Avx512 => &["avx512f", "avx512bw", "avx512vl"],
            };
            need.iter().copied().filter(|f| !detected(f)).collect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self {
            Tier::Scalar => vec![],
            _ => vec!["an x86-64 CPU"],
        }
    }

    /// The best tier this CPU runs.
    fn best() -> Tier {
        *Tier::ALL
            .iter()
            .rev()
            .find(|t| t.missing().is_empty())
            .unwrap_or(&Tier::Scalar)
    }
}

#[cfg(target_arch = "x86_64")]
fn detected(feature: &str) -> bool {
    match feature {
        "avx2" => std::arch::is_x86_feature_detected!("avx2"),
        "f16c" => std::arch::is_x86_feature_detected!("f16c"),
        "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
        "avx512bw" => std::arch::is_x86_feature_detected!("avx512bw"),
        "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
        _ => false,
    }
}

/// The tier the kernels run: the best the CPU has, capped by `CANDLE_LEAKY_RELU_CPU_TIER` when
/// it is set. Decided once per process; an unknown value, or a tier the CPU lacks, is reported
/// once on stderr and the best available tier (at most the one asked for) is used.
pub(crate) fn tier() -> Tier {
    static TIER: OnceLock<Tier> = OnceLock::new();
    *TIER.get_or_init(|| {
        let best = Tier::best();
        let Some(v) = std::env::var_os(TIER_VAR) else {
            return best;
        };
        let v = v.to_string_lossy();
        match Tier::parse(&v) {
            Some(t) if t <= best => t,
            Some(t) => {
                eprintln!(
                    "candle-leaky-relu: {TIER_VAR}={v}, but this CPU lacks {}; using {}",
                    t.missing().join(", "),
                    best.name()
                );
                best
            }
            None => {
                eprintln!(
                    "candle-leaky-relu: {TIER_VAR}={v} is not one of scalar, avx2, avx512; \
                     using {}",
                    best.name()
                );
                best
            }
        }
    })
}

/// Slice kernels of one dtype. `a` is the slope in the dtype's compute type. Each runs the
/// highest tier that is at most [`tier()`] and that the CPU has (`*_on` take the tier; the tests
/// force each one). Slices of different lengths are processed up to the shorter length.
pub(crate) trait SliceKernel: Rule<C: Rule> {
    /// `dst[i] = fwd(src[i])`.
    fn fwd_on(tier: Tier, src: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C);
    /// `xs[i] = fwd(xs[i])`.
    fn fwd_inplace_on(tier: Tier, xs: &mut [Self], a: Self::C);
    /// `dst[i] = bwd(x[i], dy[i])`.
    fn bwd_on(tier: Tier, x: &[Self], dy: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C);
    /// `out[i] = term(x[i], dy[i])`: PReLU's weight-gradient terms (`Rule::term`).
    fn terms_on(tier: Tier, x: &[Self], dy: &[Self], out: &mut [Self::C]);
    /// `sums[b]` = the block sum (`tree.rs`) of the terms of elements `b * BLOCK .. (b + 1) *
    /// BLOCK`, for as many whole blocks as `sums` holds and x and dy cover.
    fn block_sums_on(tier: Tier, x: &[Self], dy: &[Self], sums: &mut [Self::C]);
    /// `dst[i] = fwd(src[i])` with element `i`'s slope `p.slope(c0 + i)`.
    fn fwd_periodic_on(
        tier: Tier,
        src: &[Self],
        dst: &mut [MaybeUninit<Self>],
        p: &Periodic<Self>,
        c0: usize,
    );
    /// `dst[i] = bwd(x[i], dy[i])` with element `i`'s slope `p.slope(c0 + i)`.
    fn bwd_periodic_on(
        tier: Tier,
        x: &[Self],
        dy: &[Self],
        dst: &mut [MaybeUninit<Self>],
        p: &Periodic<Self>,
        c0: usize,
    );

    /// `dst[i] = fwd(src[i])`; the slices have the same length.
    fn fwd_run(src: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
        Self::fwd_on(tier(), src, dst, a)
    }
    /// `xs[i] = fwd(xs[i])`.
    fn fwd_run_inplace(xs: &mut [Self], a: Self::C) {
        Self::fwd_inplace_on(tier(), xs, a)
    }
    /// `dst[i] = bwd(x[i], dy[i])`; the slices have the same length.
    fn bwd_run(x: &[Self], dy: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
        Self::bwd_on(tier(), x, dy, dst, a)
    }
    /// `out[i] = term(x[i], dy[i])`, the terms of PReLU's weight gradient in the compute type
    /// (`Rule::term`: `+0.0` where `x > 0`, else `R_C(C(x) * C(dy))`, no FMA); the slices have
    /// the same length.
    fn terms_run(x: &[Self], dy: &[Self], out: &mut [Self::C]) {
        Self::terms_on(tier(), x, dy, out)
    }
    /// `sums[b]` = the block sum of the terms of elements `b * BLOCK .. (b + 1) * BLOCK`
    /// ([`block_sum`] of [`SliceKernel::terms_run`]'s output, without storing the terms);
    /// x and dy hold `sums.len()` whole blocks.
    fn block_sums_run(x: &[Self], dy: &[Self], sums: &mut [Self::C]) {
        Self::block_sums_on(tier(), x, dy, sums)
    }
    /// `dst[i] = fwd(src[i])`, element `i` with the slope of channel `(c0 + i) % period`: a
    /// PReLU run over rows of one slope per element (x of shape `(N, C)`, channel-last data).
    fn fwd_periodic_run(
        src: &[Self],
        dst: &mut [MaybeUninit<Self>],
        p: &Periodic<Self>,
        c0: usize,
    ) {
        Self::fwd_periodic_on(tier(), src, dst, p, c0)
    }
    /// `dst[i] = bwd(x[i], dy[i])`, element `i` with the slope of channel `(c0 + i) % period`.
    fn bwd_periodic_run(
        x: &[Self],
        dy: &[Self],
        dst: &mut [MaybeUninit<Self>],
        p: &Periodic<Self>,
        c0: usize,
    ) {
        Self::bwd_periodic_on(tier(), x, dy, dst, p, c0)
    }
}

/// Elements past its period that a [`Periodic`] repeats: at least the elements of any tier's
/// step (`Lanes::N`, asserted where the bodies are instantiated).
pub(crate) const PAD: usize = 32;

/// Slopes that repeat along a run, one per element: element `i` of a run that starts at channel
/// `c0` has the slope of channel `(c0 + i) % period`. The slopes are kept in the dtype itself
/// (a weight's own elements: `C(w)` is exact, so nothing is lost) and repeated `PAD` elements
/// past the period, so that a vector of a tier's step starting at any channel finds its slopes
/// in one load, converted by the same `Lanes::up` as x and in the same lane order.
pub(crate) struct Periodic<T> {
    ext: Vec<T>,
    period: usize,
    /// Whether some slope is zero, infinite or NaN, so that a product `x * a` of an `x <= 0` can
    /// be NaN and is canonicalised.
    nan: bool,
}

impl<T: Rule> Periodic<T> {
    /// The slopes of channels `0 .. slopes.len()`; `None` for no slopes.
    pub(crate) fn new(slopes: &[T]) -> Option<Self> {
        if slopes.is_empty() {
            return None;
        }
        let period = slopes.len();
        let ext = slopes.iter().copied().cycle().take(period + PAD).collect();
        let zero = <T::C as Compute>::ZERO;
        let nan = slopes.iter().any(|&w| {
            let a = w.up();
            !(a != zero && a * zero == zero)
        });
        Some(Self { ext, period, nan })
    }

    /// Channels per period.
    pub(crate) fn period(&self) -> usize {
        self.period
    }

    /// The slope of channel `c % period`, in the compute type.
    #[inline]
    pub(crate) fn slope(&self, c: usize) -> T::C {
        self.ext[c % self.period].up()
    }
}

/// The slice kernels of every dtype: one dispatch over the tiers, the same for each.
macro_rules! tiered {
    ($($t:ty),*) => {$(
        impl SliceKernel for $t {
            fn fwd_on(tier: Tier, src: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
                let n = src.len().min(dst.len());
                let (s, d) = (src.as_ptr(), dst.as_mut_ptr().cast::<Self>());
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `s` is
                        // valid for reading and `d` for writing `n` elements (both slices are
                        // at least `n` long), and a `&` and a `&mut` slice never overlap.
                        return unsafe { avx512::fwd::<Self>(s, d, n, a) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::fwd::<Self>(s, d, n, a) };
                    }
                }
                let _ = (tier, s, d);
                scalar_fwd(&src[..n], &mut dst[..n], a)
            }

            fn fwd_inplace_on(tier: Tier, xs: &mut [Self], a: Self::C) {
                let (n, p) = (xs.len(), xs.as_mut_ptr());
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `p` is
                        // valid for reading and writing `n` elements, and source and
                        // destination are the same memory (each step loads a block before it
                        // stores the same block).
                        return unsafe { avx512::fwd::<Self>(p, p, n, a) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::fwd::<Self>(p, p, n, a) };
                    }
                }
                let _ = (tier, n, p);
                for x in xs {
                    *x = x.fwd(a);
                }
            }

            fn bwd_on(
                tier: Tier,
                x: &[Self],
                dy: &[Self],
                dst: &mut [MaybeUninit<Self>],
                a: Self::C,
            ) {
                let n = x.len().min(dy.len()).min(dst.len());
                let (px, pg, d) = (x.as_ptr(), dy.as_ptr(), dst.as_mut_ptr().cast::<Self>());
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `px`
                        // and `pg` are valid for reading and `d` for writing `n` elements, and
                        // `&` slices never overlap a `&mut` one.
                        return unsafe { avx512::bwd::<Self>(px, pg, d, n, a) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::bwd::<Self>(px, pg, d, n, a) };
                    }
                }
                let _ = (tier, px, pg, d);
                scalar_bwd(&x[..n], &dy[..n], &mut dst[..n], a)
            }

            fn terms_on(tier: Tier, x: &[Self], dy: &[Self], out: &mut [Self::C]) {
                let n = x.len().min(dy.len()).min(out.len());
                let (px, pg, o) = (x.as_ptr(), dy.as_ptr(), out.as_mut_ptr());
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `px`
                        // and `pg` are valid for reading and `o` for writing `n` elements, and
                        // `&` slices never overlap a `&mut` one.
                        return unsafe { avx512::terms::<Self>(px, pg, o, n) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::terms::<Self>(px, pg, o, n) };
                    }
                }
                let _ = (tier, px, pg, o);
                for ((o, &x), &g) in out[..n].iter_mut().zip(x).zip(dy) {
                    *o = x.term(g);
                }
            }

            fn block_sums_on(tier: Tier, x: &[Self], dy: &[Self], sums: &mut [Self::C]) {
                let blocks = sums.len().min(x.len().min(dy.len()) / BLOCK);
                let (px, pg, o) = (x.as_ptr(), dy.as_ptr(), sums.as_mut_ptr());
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `px`
                        // and `pg` are valid for reading `blocks * BLOCK` elements and `o` for
                        // writing `blocks` (the slices are at least that long), and `&` slices
                        // never overlap a `&mut` one.
                        return unsafe { avx512::block_sums::<Self>(px, pg, o, blocks) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::block_sums::<Self>(px, pg, o, blocks) };
                    }
                }
                let _ = (tier, px, pg, o);
                let mut t = [<Self::C as Acc>::POS_ZERO; BLOCK];
                let pairs = x.chunks_exact(BLOCK).zip(dy.chunks_exact(BLOCK));
                for (s, (xb, gb)) in sums[..blocks].iter_mut().zip(pairs) {
                    for ((t, &x), &g) in t.iter_mut().zip(xb).zip(gb) {
                        *t = x.term(g);
                    }
                    *s = block_sum(&t);
                }
            }

            fn fwd_periodic_on(
                tier: Tier,
                src: &[Self],
                dst: &mut [MaybeUninit<Self>],
                p: &Periodic<Self>,
                c0: usize,
            ) {
                let (n, c0) = (src.len().min(dst.len()), c0 % p.period);
                let (s, d) = (src.as_ptr(), dst.as_mut_ptr().cast::<Self>());
                let e = (p.ext.as_ptr(), p.period, p.nan);
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `s` is
                        // valid for reading and `d` for writing `n` elements, which do not
                        // overlap; `p.ext` holds `period + PAD` elements (`Periodic::new`) and
                        // `c0 < period`.
                        return unsafe { avx512::fwd_periodic::<Self>(s, d, n, e, c0) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::fwd_periodic::<Self>(s, d, n, e, c0) };
                    }
                }
                let _ = (tier, s, d, e);
                for (i, (d, &x)) in dst[..n].iter_mut().zip(src).enumerate() {
                    d.write(x.fwd(p.slope(c0 + i)));
                }
            }

            fn bwd_periodic_on(
                tier: Tier,
                x: &[Self],
                dy: &[Self],
                dst: &mut [MaybeUninit<Self>],
                p: &Periodic<Self>,
                c0: usize,
            ) {
                let (n, c0) = (x.len().min(dy.len()).min(dst.len()), c0 % p.period);
                let (px, pg, d) = (x.as_ptr(), dy.as_ptr(), dst.as_mut_ptr().cast::<Self>());
                let e = (p.ext.as_ptr(), p.period);
                #[cfg(target_arch = "x86_64")]
                {
                    if tier >= Tier::Avx512 && avx512::available() {
                        // SAFETY: the CPU has the tier's features (checked just above); `px`
                        // and `pg` are valid for reading and `d` for writing `n` elements, and
                        // `&` slices never overlap a `&mut` one; `p.ext` holds `period + PAD`
                        // elements (`Periodic::new`) and `c0 < period`.
                        return unsafe { avx512::bwd_periodic::<Self>(px, pg, d, n, e, c0) };
                    }
                    if tier >= Tier::Avx2 && avx2::available() {
                        // SAFETY: as for the AVX-512 call above, with the AVX2 tier's features.
                        return unsafe { avx2::bwd_periodic::<Self>(px, pg, d, n, e, c0) };
                    }
                }
                let _ = (tier, px, pg, d, e);
                for (i, ((d, &x), &g)) in dst[..n].iter_mut().zip(x).zip(dy).enumerate() {
                    d.write(x.bwd(g, p.slope(c0 + i)));
                }
            }
        }
    )*};
}

tiered!(f16, bf16, f32, f64);

/// The scalar tier's forward: the rule, element by element.
fn scalar_fwd<T: Rule>(src: &[T], dst: &mut [MaybeUninit<T>], a: T::C) {
    for (d, &x) in dst.iter_mut().zip(src) {
        d.write(x.fwd(a));
    }
}

/// The scalar tier's backward: the rule, element by element.
fn scalar_bwd<T: Rule>(x: &[T], dy: &[T], dst: &mut [MaybeUninit<T>], a: T::C) {
    for ((d, &x), &g) in dst.iter_mut().zip(x).zip(dy) {
        d.write(x.bwd(g, a));
    }
}

/// `L::N` elements of dtype `T` in the registers of one SIMD tier: the steps the generic kernel
/// bodies below are written in. Every method is `#[inline(always)]` and is only called, inlined,
/// from a function compiled with the tier's target features.
///
/// # Safety
///
/// Every method may only be called on a CPU that has the tier's features. `load*` need `p`
/// valid for reading, `store*` valid for writing, `N` elements (the `*_part` forms: `n < N`
/// elements; nothing past them is read or written).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) unsafe trait Lanes<T: Rule> {
    /// Elements per step of `fwd` and `bwd`.
    const N: usize;
    /// `N` elements as stored.
    type Bits: Copy;
    /// `N` values in the compute type, in whatever lane order the tier prefers.
    type Vals: Copy;
    /// A condition per element of `Vals`.
    type Mask: Copy;
    /// `N` results, ready to store.
    type Out: Copy;

    unsafe fn splat(a: T::C) -> Self::Vals;
    unsafe fn load(p: *const T) -> Self::Bits;
    unsafe fn load_part(p: *const T, n: usize) -> Self::Bits;
    unsafe fn store(p: *mut T, o: Self::Out);
    unsafe fn store_part(p: *mut T, n: usize, o: Self::Out);
    /// `C(x)`, exact.
    unsafe fn up(b: Self::Bits) -> Self::Vals;
    /// The elements unchanged, bit for bit.
    unsafe fn keep(b: Self::Bits) -> Self::Out;
    /// `x <= 0` (false for NaN).
    unsafe fn le_zero(v: Self::Vals) -> Self::Mask;
    /// `x > 0` (false for NaN).
    unsafe fn gt_zero(v: Self::Vals) -> Self::Mask;
    /// `R_T(v * a)`, a NaN product giving the canonical NaN of T. With `NAN = false` the caller
    /// knows that no product it keeps is NaN, and the canonicalisation is left out.
    unsafe fn scaled<const NAN: bool>(v: Self::Vals, a: Self::Vals) -> Self::Out;
    /// `yes` where `m`, else `no`.
    unsafe fn select(m: Self::Mask, yes: Self::Out, no: Self::Out) -> Self::Out;

    /// Elements per step of `terms`.
    const TN: usize;
    /// `TN` values of the compute type, in element order.
    type Terms: Copy;
    /// `C(x)` of `TN` elements, in order.
    unsafe fn load_up(p: *const T) -> Self::Terms;
    unsafe fn load_up_part(p: *const T, n: usize) -> Self::Terms;
    unsafe fn store_terms(p: *mut T::C, t: Self::Terms);
    unsafe fn store_terms_part(p: *mut T::C, n: usize, t: Self::Terms);
    /// `Rule::term` of `TN` elements given `C(x)` and `C(dy)`.
    unsafe fn term(x: Self::Terms, dy: Self::Terms) -> Self::Terms;
    /// `a + b` per lane: one IEEE addition in the compute type, rounded to nearest even.
    unsafe fn add_terms(a: Self::Terms, b: Self::Terms) -> Self::Terms;
}

/// How many elements of `n` to handle first (with a partial step) so that the full steps of
/// `per_step` elements store to `dst` at multiples of their own size: a store that straddles two
/// cache lines costs two. Less than `per_step`, and at most `n`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
fn head<T>(dst: *const T, per_step: usize, n: usize) -> usize {
    let bytes = per_step * std::mem::size_of::<T>();
    let misaligned = dst as usize % bytes;
    if misaligned == 0 || !misaligned.is_multiple_of(std::mem::size_of::<T>()) {
        return 0;
    }
    ((bytes - misaligned) / std::mem::size_of::<T>()).min(n)
}

/// The forward table on `n` elements from `src` to `dst`, which are the same memory or do not
/// overlap.
///
/// # Safety
///
/// The CPU has `L`'s features; `src` is valid for reading and `dst` for writing `n` elements.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn fwd<T: Rule, L: Lanes<T>>(src: *const T, dst: *mut T, n: usize, a: T::C) {
    // `x * a` for `x <= 0` (never NaN) is NaN only for a slope that is zero, infinite or NaN
    // (PReLU's weights are used as they are); any other slope skips the canonicalisation.
    let zero = <T::C as Compute>::ZERO;
    if a != zero && a * zero == zero {
        fwd_with::<T, L, false>(src, dst, n, a)
    } else {
        fwd_with::<T, L, true>(src, dst, n, a)
    }
}

/// [`fwd`], with the NaN products canonicalised (`NAN`) or known not to occur.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn fwd_with<T: Rule, L: Lanes<T>, const NAN: bool>(
    src: *const T,
    dst: *mut T,
    n: usize,
    a: T::C,
) {
    #[inline(always)]
    unsafe fn step<T: Rule, L: Lanes<T>, const NAN: bool>(b: L::Bits, a: L::Vals) -> L::Out {
        let v = L::up(b);
        L::select(L::le_zero(v), L::scaled::<NAN>(v, a), L::keep(b))
    }
    let a = L::splat(a);
    let mut i = head::<T>(dst, L::N, n);
    if i > 0 {
        L::store_part(dst, i, step::<T, L, NAN>(L::load_part(src, i), a));
    }
    while n - i >= L::N {
        L::store(dst.add(i), step::<T, L, NAN>(L::load(src.add(i)), a));
        i += L::N;
    }
    if i < n {
        let b = L::load_part(src.add(i), n - i);
        L::store_part(dst.add(i), n - i, step::<T, L, NAN>(b, a));
    }
}

/// The backward table on `n` elements.
///
/// # Safety
///
/// The CPU has `L`'s features; `x` and `dy` are valid for reading and `dst` for writing `n`
/// elements, and `dst` overlaps neither.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn bwd<T: Rule, L: Lanes<T>>(x: *const T, dy: *const T, dst: *mut T, n: usize, a: T::C) {
    #[inline(always)]
    unsafe fn step<T: Rule, L: Lanes<T>>(bx: L::Bits, bg: L::Bits, a: L::Vals) -> L::Out {
        let gt = L::gt_zero(L::up(bx));
        L::select(gt, L::keep(bg), L::scaled::<true>(L::up(bg), a))
    }
    let a = L::splat(a);
    let mut i = head::<T>(dst, L::N, n);
    if i > 0 {
        let y = step::<T, L>(L::load_part(x, i), L::load_part(dy, i), a);
        L::store_part(dst, i, y);
    }
    while n - i >= L::N {
        let y = step::<T, L>(L::load(x.add(i)), L::load(dy.add(i)), a);
        L::store(dst.add(i), y);
        i += L::N;
    }
    if i < n {
        let k = n - i;
        let y = step::<T, L>(L::load_part(x.add(i), k), L::load_part(dy.add(i), k), a);
        L::store_part(dst.add(i), k, y);
    }
}

/// PReLU's weight-gradient terms of `n` elements.
///
/// # Safety
///
/// The CPU has `L`'s features; `x` and `dy` are valid for reading and `out` for writing `n`
/// elements, and `out` overlaps neither.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn terms<T: Rule, L: Lanes<T>>(x: *const T, dy: *const T, out: *mut T::C, n: usize) {
    let mut i = head::<T::C>(out, L::TN, n);
    if i > 0 {
        let t = L::term(L::load_up_part(x, i), L::load_up_part(dy, i));
        L::store_terms_part(out, i, t);
    }
    while n - i >= L::TN {
        let t = L::term(L::load_up(x.add(i)), L::load_up(dy.add(i)));
        L::store_terms(out.add(i), t);
        i += L::TN;
    }
    if i < n {
        let k = n - i;
        let t = L::term(L::load_up_part(x.add(i), k), L::load_up_part(dy.add(i), k));
        L::store_terms_part(out.add(i), k, t);
    }
}

/// The block sums of `blocks` whole blocks of PReLU's weight-gradient terms, in `tree.rs`'s
/// order without storing the terms: the block's row `r` (terms `16r .. 16r + 16`) is
/// `LANES / TN` term vectors, vector `q` of every row added into accumulator `q` (so lane `j` of
/// the block sums terms `j, j + 16, ..` in order, starting from its first), then the lanes'
/// pairwise tree ([`lanes_tree`]).
///
/// # Safety
///
/// The CPU has `L`'s features; `x` and `dy` are valid for reading `blocks * BLOCK` elements and
/// `sums` for writing `blocks`, and `sums` overlaps neither.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn block_sums<T: Rule, L: Lanes<T>>(
    x: *const T,
    dy: *const T,
    sums: *mut T::C,
    blocks: usize,
) {
    // Accumulators per row: every tier's term vector divides a row, in at most 4 pieces.
    const MAX_ACC: usize = 4;
    const { assert!(LANES.is_multiple_of(L::TN) && LANES / L::TN <= MAX_ACC) };
    /// The term vector of elements `i .. i + TN`.
    #[inline(always)]
    unsafe fn term<T: Rule, L: Lanes<T>>(x: *const T, dy: *const T, i: usize) -> L::Terms {
        L::term(L::load_up(x.add(i)), L::load_up(dy.add(i)))
    }
    let per_row = LANES / L::TN;
    let mut lanes = [<T::C as Acc>::POS_ZERO; LANES];
    for b in 0..blocks {
        let (xb, gb) = (x.add(b * BLOCK), dy.add(b * BLOCK));
        let mut acc = [term::<T, L>(xb, gb, 0); MAX_ACC];
        for (q, a) in acc.iter_mut().enumerate().take(per_row).skip(1) {
            *a = term::<T, L>(xb, gb, q * L::TN);
        }
        for r in 1..BLOCK / LANES {
            for (q, a) in acc.iter_mut().enumerate().take(per_row) {
                *a = L::add_terms(*a, term::<T, L>(xb, gb, r * LANES + q * L::TN));
            }
        }
        for (q, &a) in acc.iter().enumerate().take(per_row) {
            L::store_terms(lanes.as_mut_ptr().add(q * L::TN), a);
        }
        *sums.add(b) = lanes_tree(lanes);
    }
}

/// The slopes of a [`Periodic`] as the bodies read them: the repeated slopes, the period, and
/// whether a product can be NaN.
type Ext<T> = (*const T, usize, bool);

/// `c + k` wrapped into `0 .. period` (`c < period`; one subtraction when `k <= period`).
#[inline(always)]
fn advance(c: usize, k: usize, period: usize) -> usize {
    let c = c + k;
    if c < period {
        c
    } else if c - period < period {
        c - period
    } else {
        c % period
    }
}

/// [`fwd`] with a slope per element from a [`Periodic`]: element `i` uses the slope at
/// `ext[(c0 + i) % period]`, loaded `N` at a time with the elements' own `load` and `up`.
///
/// # Safety
///
/// As [`fwd`] (without overlap of `src` and `dst`), and `ext.0` is valid for reading
/// `period + PAD` elements, `c0 < period`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn fwd_periodic<T: Rule, L: Lanes<T>>(
    src: *const T,
    dst: *mut T,
    n: usize,
    ext: Ext<T>,
    c0: usize,
) {
    if ext.2 {
        fwd_periodic_with::<T, L, true>(src, dst, n, ext, c0)
    } else {
        fwd_periodic_with::<T, L, false>(src, dst, n, ext, c0)
    }
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn fwd_periodic_with<T: Rule, L: Lanes<T>, const NAN: bool>(
    src: *const T,
    dst: *mut T,
    n: usize,
    (slopes, period, _): Ext<T>,
    c0: usize,
) {
    const { assert!(L::N <= PAD) };
    #[inline(always)]
    unsafe fn step<T: Rule, L: Lanes<T>, const NAN: bool>(b: L::Bits, a: L::Vals) -> L::Out {
        let v = L::up(b);
        L::select(L::le_zero(v), L::scaled::<NAN>(v, a), L::keep(b))
    }
    let mut c = c0;
    let mut i = head::<T>(dst, L::N, n);
    if i > 0 {
        let a = L::up(L::load_part(slopes.add(c), i));
        L::store_part(dst, i, step::<T, L, NAN>(L::load_part(src, i), a));
        c = advance(c, i, period);
    }
    while n - i >= L::N {
        let a = L::up(L::load(slopes.add(c)));
        L::store(dst.add(i), step::<T, L, NAN>(L::load(src.add(i)), a));
        c = advance(c, L::N, period);
        i += L::N;
    }
    if i < n {
        let a = L::up(L::load_part(slopes.add(c), n - i));
        let b = L::load_part(src.add(i), n - i);
        L::store_part(dst.add(i), n - i, step::<T, L, NAN>(b, a));
    }
}

/// [`bwd`] with a slope per element from a [`Periodic`].
///
/// # Safety
///
/// As [`bwd`], and `ext.0` is valid for reading `period + PAD` elements, `c0 < period`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
unsafe fn bwd_periodic<T: Rule, L: Lanes<T>>(
    x: *const T,
    dy: *const T,
    dst: *mut T,
    n: usize,
    (slopes, period): (*const T, usize),
    c0: usize,
) {
    const { assert!(L::N <= PAD) };
    #[inline(always)]
    unsafe fn step<T: Rule, L: Lanes<T>>(bx: L::Bits, bg: L::Bits, a: L::Vals) -> L::Out {
        let gt = L::gt_zero(L::up(bx));
        L::select(gt, L::keep(bg), L::scaled::<true>(L::up(bg), a))
    }
    let mut c = c0;
    let mut i = head::<T>(dst, L::N, n);
    if i > 0 {
        let a = L::up(L::load_part(slopes.add(c), i));
        let y = step::<T, L>(L::load_part(x, i), L::load_part(dy, i), a);
        L::store_part(dst, i, y);
        c = advance(c, i, period);
    }
    while n - i >= L::N {
        let a = L::up(L::load(slopes.add(c)));
        let y = step::<T, L>(L::load(x.add(i)), L::load(dy.add(i)), a);
        L::store(dst.add(i), y);
        c = advance(c, L::N, period);
        i += L::N;
    }
    if i < n {
        let (k, a) = (n - i, L::up(L::load_part(slopes.add(c), n - i)));
        let y = step::<T, L>(L::load_part(x.add(i), k), L::load_part(dy.add(i), k), a);
        L::store_part(dst.add(i), k, y);
    }
}

/// The tier entry points: the generic bodies above instantiated inside a function compiled with
/// the tier's target features (`$features`), where every `Lanes` method inlines.
#[cfg(target_arch = "x86_64")]
macro_rules! entry_points {
    ($tier:ty, $features:literal) => {
        /// The forward body of this tier.
        ///
        /// # Safety
        ///
        /// As [`super::fwd`]: the CPU has this tier's features, `src` is valid for reading and
        /// `dst` for writing `n` elements, and they are the same memory or do not overlap.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn fwd<T: Rule>(src: *const T, dst: *mut T, n: usize, a: T::C)
        where
            $tier: Lanes<T>,
        {
            super::fwd::<T, $tier>(src, dst, n, a)
        }

        /// The backward body of this tier.
        ///
        /// # Safety
        ///
        /// As [`super::bwd`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn bwd<T: Rule>(x: *const T, dy: *const T, dst: *mut T, n: usize, a: T::C)
        where
            $tier: Lanes<T>,
        {
            super::bwd::<T, $tier>(x, dy, dst, n, a)
        }

        /// The weight-gradient terms of this tier.
        ///
        /// # Safety
        ///
        /// As [`super::terms`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn terms<T: Rule>(x: *const T, dy: *const T, out: *mut T::C, n: usize)
        where
            $tier: Lanes<T>,
        {
            super::terms::<T, $tier>(x, dy, out, n)
        }

        /// The weight-gradient block sums of this tier.
        ///
        /// # Safety
        ///
        /// As [`super::block_sums`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn block_sums<T: Rule>(
            x: *const T,
            dy: *const T,
            sums: *mut T::C,
            blocks: usize,
        ) where
            $tier: Lanes<T>,
        {
            super::block_sums::<T, $tier>(x, dy, sums, blocks)
        }

        /// The forward with periodic slopes of this tier.
        ///
        /// # Safety
        ///
        /// As [`super::fwd_periodic`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn fwd_periodic<T: Rule>(
            src: *const T,
            dst: *mut T,
            n: usize,
            ext: super::Ext<T>,
            c0: usize,
        ) where
            $tier: Lanes<T>,
        {
            super::fwd_periodic::<T, $tier>(src, dst, n, ext, c0)
        }

        /// The backward with periodic slopes of this tier.
        ///
        /// # Safety
        ///
        /// As [`super::bwd_periodic`].
        #[target_feature(enable = $features)]
        pub(super) unsafe fn bwd_periodic<T: Rule>(
            x: *const T,
            dy: *const T,
            dst: *mut T,
            n: usize,
            ext: (*const T, usize),
            c0: usize,
        ) where
            $tier: Lanes<T>,
        {
            super::bwd_periodic::<T, $tier>(x, dy, dst, n, ext, c0)
        }
    };
}
#[cfg(target_arch = "x86_64")]
use entry_points;
