//! The AVX-512 tier (F, BW, VL): 512-bit registers, 16 f32 or 8 f64 lanes, and masked loads and
//! stores for the tails (a masked-off lane is neither read nor written, and cannot fault).
//!
//! - f16: `vcvtph2ps` / `vcvtps2ph` (round to nearest even; subnormals kept, since the CPU path
//!   runs without DAZ/FTZ); the result is blended with the input's own bits in 16-bit lanes, so
//!   passed-through elements (NaN payloads included) never go through a conversion.
//! - bf16: 32 elements per step with no shuffles: the even elements are the register shifted
//!   left by 16 bits, the odd ones the register with its low halves cleared; each is rounded in
//!   integer lanes (the rule's formula) and the two are merged back with one 16-bit blend.
//!   AVX512_BF16's `vcvtne2ps2bf16` is not used: it flushes subnormal inputs to zero and passes
//!   NaN payloads through (tested in `simd/tests.rs`), neither of which is the contract.

use super::super::rule::{NAN_F32, NAN_F64};
use super::{entry_points, Lanes, Rule};
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Whether the CPU has this tier's features.
#[inline]
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

/// The AVX-512 tier.
pub(super) struct Avx512;

entry_points!(Avx512, "avx512f,avx512bw,avx512vl");

/// The mask of the first `n` of 8 lanes (`n < 8`).
#[inline(always)]
fn k8(n: usize) -> __mmask8 {
    debug_assert!(n < 8);
    ((1u32 << n) - 1) as __mmask8
}

/// The mask of the first `n` of 16 lanes (`n < 16`).
#[inline(always)]
fn k16(n: usize) -> __mmask16 {
    debug_assert!(n < 16);
    ((1u32 << n) - 1) as __mmask16
}

/// The mask of the first `n` of 32 lanes (`n < 32`).
#[inline(always)]
fn k32(n: usize) -> __mmask32 {
    debug_assert!(n < 32);
    ((1u64 << n) - 1) as __mmask32
}

/// NaN lanes replaced by the canonical f32 NaN.
#[inline(always)]
unsafe fn canon_ps(p: __m512) -> __m512 {
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p, p);
    _mm512_mask_mov_ps(
        p,
        nan,
        _mm512_castsi512_ps(_mm512_set1_epi32(NAN_F32 as i32)),
    )
}

/// NaN lanes replaced by the canonical f64 NaN.
#[inline(always)]
unsafe fn canon_pd(p: __m512d) -> __m512d {
    let nan = _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(p, p);
    _mm512_mask_mov_pd(
        p,
        nan,
        _mm512_castsi512_pd(_mm512_set1_epi64(NAN_F64 as i64)),
    )
}

/// [`canon_ps`] when `NAN`; else the lanes unchanged (no NaN to canonicalise).
#[inline(always)]
unsafe fn maybe_canon_ps<const NAN: bool>(p: __m512) -> __m512 {
    if NAN {
        canon_ps(p)
    } else {
        p
    }
}

/// [`canon_pd`] when `NAN`; else the lanes unchanged.
#[inline(always)]
unsafe fn maybe_canon_pd<const NAN: bool>(p: __m512d) -> __m512d {
    if NAN {
        canon_pd(p)
    } else {
        p
    }
}

/// The PReLU term in f32 lanes: `+0.0` where `x > 0`, else the canonical product.
#[inline(always)]
unsafe fn term_ps(x: __m512, g: __m512) -> __m512 {
    let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps());
    _mm512_maskz_mov_ps(!gt, canon_ps(_mm512_mul_ps(x, g)))
}

/// The PReLU term in f64 lanes.
#[inline(always)]
unsafe fn term_pd(x: __m512d, g: __m512d) -> __m512d {
    let gt = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, _mm512_setzero_pd());
    _mm512_maskz_mov_pd(!gt, canon_pd(_mm512_mul_pd(x, g)))
}

#[inline(always)]
unsafe fn le_ps(v: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_setzero_ps())
}

#[inline(always)]
unsafe fn gt_ps(v: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps())
}

// SAFETY (every impl below): each method only uses AVX-512 F/BW/VL intrinsics, which the
// trait's contract lets it run; loads and stores touch `N` (or `TN`) elements from `p`, the
// `_part` forms only the first `n` through a lane mask, as the contract allows.

unsafe impl Lanes<f32> for Avx512 {
    const N: usize = 16;
    type Bits = __m512;
    type Vals = __m512;
    type Mask = __mmask16;
    type Out = __m512;

    #[inline(always)]
    unsafe fn splat(a: f32) -> __m512 {
        _mm512_set1_ps(a)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(k16(n), p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, o: __m512) {
        _mm512_storeu_ps(p, o)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, o: __m512) {
        _mm512_mask_storeu_ps(p, k16(n), o)
    }
    #[inline(always)]
    unsafe fn up(b: __m512) -> __m512 {
        b
    }
    #[inline(always)]
    unsafe fn keep(b: __m512) -> __m512 {
        b
    }
    #[inline(always)]
    unsafe fn le_zero(v: __m512) -> __mmask16 {
        le_ps(v)
    }
    #[inline(always)]
    unsafe fn gt_zero(v: __m512) -> __mmask16 {
        gt_ps(v)
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(v: __m512, a: __m512) -> __m512 {
        maybe_canon_ps::<NAN>(_mm512_mul_ps(v, a))
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, yes: __m512, no: __m512) -> __m512 {
        _mm512_mask_blend_ps(m, no, yes)
    }

    const TN: usize = 16;
    type Terms = __m512;
    #[inline(always)]
    unsafe fn load_up(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(k16(n), p)
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f32, t: __m512) {
        _mm512_storeu_ps(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f32, n: usize, t: __m512) {
        _mm512_mask_storeu_ps(p, k16(n), t)
    }
    #[inline(always)]
    unsafe fn term(x: __m512, dy: __m512) -> __m512 {
        term_ps(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
}

unsafe impl Lanes<f64> for Avx512 {
    const N: usize = 8;
    type Bits = __m512d;
    type Vals = __m512d;
    type Mask = __mmask8;
    type Out = __m512d;

    #[inline(always)]
    unsafe fn splat(a: f64) -> __m512d {
        _mm512_set1_pd(a)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> __m512d {
        _mm512_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f64, n: usize) -> __m512d {
        _mm512_maskz_loadu_pd(k8(n), p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, o: __m512d) {
        _mm512_storeu_pd(p, o)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f64, n: usize, o: __m512d) {
        _mm512_mask_storeu_pd(p, k8(n), o)
    }
    #[inline(always)]
    unsafe fn up(b: __m512d) -> __m512d {
        b
    }
    #[inline(always)]
    unsafe fn keep(b: __m512d) -> __m512d {
        b
    }
    #[inline(always)]
    unsafe fn le_zero(v: __m512d) -> __mmask8 {
        _mm512_cmp_pd_mask::<_CMP_LE_OQ>(v, _mm512_setzero_pd())
    }
    #[inline(always)]
    unsafe fn gt_zero(v: __m512d) -> __mmask8 {
        _mm512_cmp_pd_mask::<_CMP_GT_OQ>(v, _mm512_setzero_pd())
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(v: __m512d, a: __m512d) -> __m512d {
        maybe_canon_pd::<NAN>(_mm512_mul_pd(v, a))
    }
    #[inline(always)]
    unsafe fn select(m: __mmask8, yes: __m512d, no: __m512d) -> __m512d {
        _mm512_mask_blend_pd(m, no, yes)
    }

    const TN: usize = 8;
    type Terms = __m512d;
    #[inline(always)]
    unsafe fn load_up(p: *const f64) -> __m512d {
        _mm512_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const f64, n: usize) -> __m512d {
        _mm512_maskz_loadu_pd(k8(n), p)
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f64, t: __m512d) {
        _mm512_storeu_pd(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f64, n: usize, t: __m512d) {
        _mm512_mask_storeu_pd(p, k8(n), t)
    }
    #[inline(always)]
    unsafe fn term(x: __m512d, dy: __m512d) -> __m512d {
        term_pd(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m512d, b: __m512d) -> __m512d {
        _mm512_add_pd(a, b)
    }
}

unsafe impl Lanes<f16> for Avx512 {
    const N: usize = 16;
    type Bits = __m256i;
    type Vals = __m512;
    type Mask = __mmask16;
    type Out = __m256i;

    #[inline(always)]
    unsafe fn splat(a: f32) -> __m512 {
        _mm512_set1_ps(a)
    }
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m256i {
        _mm256_loadu_si256(p.cast())
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f16, n: usize) -> __m256i {
        _mm256_maskz_loadu_epi16(k16(n), p.cast())
    }
    #[inline(always)]
    unsafe fn store(p: *mut f16, o: __m256i) {
        _mm256_storeu_si256(p.cast(), o)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f16, n: usize, o: __m256i) {
        _mm256_mask_storeu_epi16(p.cast(), k16(n), o)
    }
    #[inline(always)]
    unsafe fn up(b: __m256i) -> __m512 {
        _mm512_cvtph_ps(b)
    }
    #[inline(always)]
    unsafe fn keep(b: __m256i) -> __m256i {
        b
    }
    #[inline(always)]
    unsafe fn le_zero(v: __m512) -> __mmask16 {
        le_ps(v)
    }
    #[inline(always)]
    unsafe fn gt_zero(v: __m512) -> __mmask16 {
        gt_ps(v)
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(v: __m512, a: __m512) -> __m256i {
        let p = maybe_canon_ps::<NAN>(_mm512_mul_ps(v, a));
        _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p)
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, yes: __m256i, no: __m256i) -> __m256i {
        _mm256_mask_blend_epi16(m, no, yes)
    }

    const TN: usize = 16;
    type Terms = __m512;
    #[inline(always)]
    unsafe fn load_up(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(<Self as Lanes<f16>>::load(p))
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const f16, n: usize) -> __m512 {
        _mm512_cvtph_ps(<Self as Lanes<f16>>::load_part(p, n))
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f32, t: __m512) {
        _mm512_storeu_ps(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f32, n: usize, t: __m512) {
        _mm512_mask_storeu_ps(p, k16(n), t)
    }
    #[inline(always)]
    unsafe fn term(x: __m512, dy: __m512) -> __m512 {
        term_ps(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
}

/// `R_bf16` of 16 f32 lanes in integer arithmetic (the rule's formula), a NaN giving the
/// canonical NaN (when `NAN`; else there is none); the result is in the high 16 bits of each lane.
#[inline(always)]
unsafe fn round_bf16<const NAN: bool>(p: __m512) -> __m512i {
    let b = _mm512_castps_si512(p);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
    if !NAN {
        return r;
    }
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p, p);
    _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(NAN_F32 as i32))
}

/// The even and odd elements' results (each in the high half of a 32-bit lane) merged back into
/// 32 bf16 in order.
#[inline(always)]
unsafe fn merge_bf16((even, odd): (__m512i, __m512i)) -> __m512i {
    _mm512_mask_blend_epi16(0xAAAA_AAAA, _mm512_srli_epi32::<16>(even), odd)
}

unsafe impl Lanes<bf16> for Avx512 {
    const N: usize = 32;
    type Bits = __m512i;
    /// The even elements, then the odd ones.
    type Vals = (__m512, __m512);
    type Mask = (__mmask16, __mmask16);
    /// Even and odd results, each in the high half of a 32-bit lane.
    type Out = (__m512i, __m512i);

    #[inline(always)]
    unsafe fn splat(a: f32) -> (__m512, __m512) {
        (_mm512_set1_ps(a), _mm512_set1_ps(a))
    }
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m512i {
        _mm512_loadu_si512(p.cast())
    }
    #[inline(always)]
    unsafe fn load_part(p: *const bf16, n: usize) -> __m512i {
        _mm512_maskz_loadu_epi16(k32(n), p.cast())
    }
    #[inline(always)]
    unsafe fn store(p: *mut bf16, o: (__m512i, __m512i)) {
        _mm512_storeu_si512(p.cast(), merge_bf16(o))
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut bf16, n: usize, o: (__m512i, __m512i)) {
        _mm512_mask_storeu_epi16(p.cast(), k32(n), merge_bf16(o))
    }
    #[inline(always)]
    unsafe fn up(b: __m512i) -> (__m512, __m512) {
        let (e, o) = <Self as Lanes<bf16>>::keep(b);
        (_mm512_castsi512_ps(e), _mm512_castsi512_ps(o))
    }
    #[inline(always)]
    unsafe fn keep(b: __m512i) -> (__m512i, __m512i) {
        let high = _mm512_set1_epi32(0xFFFF_0000_u32 as i32);
        (_mm512_slli_epi32::<16>(b), _mm512_and_si512(b, high))
    }
    #[inline(always)]
    unsafe fn le_zero((e, o): (__m512, __m512)) -> (__mmask16, __mmask16) {
        (le_ps(e), le_ps(o))
    }
    #[inline(always)]
    unsafe fn gt_zero((e, o): (__m512, __m512)) -> (__mmask16, __mmask16) {
        (gt_ps(e), gt_ps(o))
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(
        (e, o): (__m512, __m512),
        (ae, ao): (__m512, __m512),
    ) -> Self::Out {
        (
            round_bf16::<NAN>(_mm512_mul_ps(e, ae)),
            round_bf16::<NAN>(_mm512_mul_ps(o, ao)),
        )
    }
    #[inline(always)]
    unsafe fn select(
        (me, mo): (__mmask16, __mmask16),
        (ye, yo): Self::Out,
        (ne, no): Self::Out,
    ) -> Self::Out {
        (
            _mm512_mask_blend_epi32(me, ne, ye),
            _mm512_mask_blend_epi32(mo, no, yo),
        )
    }

    const TN: usize = 16;
    type Terms = __m512;
    #[inline(always)]
    unsafe fn load_up(p: *const bf16) -> __m512 {
        let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const bf16, n: usize) -> __m512 {
        let w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k16(n), p.cast()));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f32, t: __m512) {
        _mm512_storeu_ps(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f32, n: usize, t: __m512) {
        _mm512_mask_storeu_ps(p, k16(n), t)
    }
    #[inline(always)]
    unsafe fn term(x: __m512, dy: __m512) -> __m512 {
        term_ps(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
}
