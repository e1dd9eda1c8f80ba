//! The AVX2 tier (with F16C): 256-bit registers, 8 f32 or 4 f64 lanes. AVX2 has no 16-bit
//! masked loads or stores (and its 32-bit masked stores are microcoded on some AMD CPUs), so a
//! tail is staged through a zeroed stack buffer: its `n` elements are copied in, the buffer
//! goes through the same step as a full vector, and `n` elements are copied out.
//!
//! - f16: F16C's `vcvtph2ps` / `vcvtps2ph` (round to nearest even), results blended with the
//!   input's own bits so that passed-through elements never go through a conversion.
//! - bf16: 16 elements per step, split into even and odd elements without shuffles and rounded
//!   in integer lanes, as in the AVX-512 tier.

use super::super::rule::{NAN_F32, NAN_F64};
use super::{entry_points, Lanes, Rule};
use half::{bf16, f16};
use std::arch::x86_64::*;
use std::mem::size_of;
use std::ptr::copy_nonoverlapping;

/// Whether the CPU has this tier's features.
#[inline]
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
}

/// The AVX2 tier.
pub(super) struct Avx2;

entry_points!(Avx2, "avx2,f16c");

/// A tail's staging buffer: one register's bytes.
#[repr(C, align(32))]
struct Stage([u8; 32]);

/// The first `n` elements at `p` in a zeroed buffer.
///
/// # Safety
///
/// `p` is valid for reading `n` elements, and `n * size_of::<T>() <= 32`.
#[inline(always)]
unsafe fn stage_in<T>(p: *const T, n: usize) -> Stage {
    let mut s = Stage([0; 32]);
    debug_assert!(n * size_of::<T>() <= 32);
    copy_nonoverlapping(p.cast::<u8>(), s.0.as_mut_ptr(), n * size_of::<T>());
    s
}

/// The first `n` elements of `s` written to `p`.
///
/// # Safety
///
/// `p` is valid for writing `n` elements, and `n * size_of::<T>() <= 32`.
#[inline(always)]
unsafe fn stage_out<T>(s: &Stage, p: *mut T, n: usize) {
    debug_assert!(n * size_of::<T>() <= 32);
    copy_nonoverlapping(s.0.as_ptr(), p.cast::<u8>(), n * size_of::<T>());
}

/// NaN lanes replaced by the canonical f32 NaN.
#[inline(always)]
unsafe fn canon_ps(p: __m256) -> __m256 {
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(p, p);
    _mm256_blendv_ps(
        p,
        _mm256_castsi256_ps(_mm256_set1_epi32(NAN_F32 as i32)),
        nan,
    )
}

/// NaN lanes replaced by the canonical f64 NaN.
#[inline(always)]
unsafe fn canon_pd(p: __m256d) -> __m256d {
    let nan = _mm256_cmp_pd::<_CMP_UNORD_Q>(p, p);
    _mm256_blendv_pd(
        p,
        _mm256_castsi256_pd(_mm256_set1_epi64x(NAN_F64 as i64)),
        nan,
    )
}

#[inline(always)]
unsafe fn le_ps(v: __m256) -> __m256 {
    _mm256_cmp_ps::<_CMP_LE_OQ>(v, _mm256_setzero_ps())
}

#[inline(always)]
unsafe fn gt_ps(v: __m256) -> __m256 {
    _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_setzero_ps())
}

/// [`canon_ps`] when `NAN`; else the lanes unchanged (no NaN to canonicalise).
#[inline(always)]
unsafe fn maybe_canon_ps<const NAN: bool>(p: __m256) -> __m256 {
    if NAN {
        canon_ps(p)
    } else {
        p
    }
}

/// [`canon_pd`] when `NAN`; else the lanes unchanged.
#[inline(always)]
unsafe fn maybe_canon_pd<const NAN: bool>(p: __m256d) -> __m256d {
    if NAN {
        canon_pd(p)
    } else {
        p
    }
}

/// The PReLU term in f32 lanes: `+0.0` (all bits clear) where `x > 0`, else the product.
#[inline(always)]
unsafe fn term_ps(x: __m256, g: __m256) -> __m256 {
    _mm256_andnot_ps(gt_ps(x), canon_ps(_mm256_mul_ps(x, g)))
}

/// The PReLU term in f64 lanes.
#[inline(always)]
unsafe fn term_pd(x: __m256d, g: __m256d) -> __m256d {
    let gt = _mm256_cmp_pd::<_CMP_GT_OQ>(x, _mm256_setzero_pd());
    _mm256_andnot_pd(gt, canon_pd(_mm256_mul_pd(x, g)))
}

// SAFETY (every impl below): each method only uses AVX, AVX2 and F16C intrinsics, which the
// trait's contract lets it run; full loads and stores touch `N` (or `TN`) elements from `p`,
// and the `_part` forms copy exactly `n` elements (at most one register's 32 bytes) through a
// stack buffer.

unsafe impl Lanes<f32> for Avx2 {
    const N: usize = 8;
    type Bits = __m256;
    type Vals = __m256;
    type Mask = __m256;
    type Out = __m256;

    #[inline(always)]
    unsafe fn splat(a: f32) -> __m256 {
        _mm256_set1_ps(a)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize) -> __m256 {
        <Self as Lanes<f32>>::load(stage_in(p, n).0.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, o: __m256) {
        _mm256_storeu_ps(p, o)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, o: __m256) {
        let mut s = Stage([0; 32]);
        <Self as Lanes<f32>>::store(s.0.as_mut_ptr().cast(), o);
        stage_out(&s, p, n)
    }
    #[inline(always)]
    unsafe fn up(b: __m256) -> __m256 {
        b
    }
    #[inline(always)]
    unsafe fn keep(b: __m256) -> __m256 {
        b
    }
    #[inline(always)]
    unsafe fn le_zero(v: __m256) -> __m256 {
        le_ps(v)
    }
    #[inline(always)]
    unsafe fn gt_zero(v: __m256) -> __m256 {
        gt_ps(v)
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(v: __m256, a: __m256) -> __m256 {
        maybe_canon_ps::<NAN>(_mm256_mul_ps(v, a))
    }
    #[inline(always)]
    unsafe fn select(m: __m256, yes: __m256, no: __m256) -> __m256 {
        _mm256_blendv_ps(no, yes, m)
    }

    const TN: usize = 8;
    type Terms = __m256;
    #[inline(always)]
    unsafe fn load_up(p: *const f32) -> __m256 {
        <Self as Lanes<f32>>::load(p)
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const f32, n: usize) -> __m256 {
        <Self as Lanes<f32>>::load_part(p, n)
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f32, t: __m256) {
        <Self as Lanes<f32>>::store(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f32, n: usize, t: __m256) {
        <Self as Lanes<f32>>::store_part(p, n, t)
    }
    #[inline(always)]
    unsafe fn term(x: __m256, dy: __m256) -> __m256 {
        term_ps(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
}

unsafe impl Lanes<f64> for Avx2 {
    const N: usize = 4;
    type Bits = __m256d;
    type Vals = __m256d;
    type Mask = __m256d;
    type Out = __m256d;

    #[inline(always)]
    unsafe fn splat(a: f64) -> __m256d {
        _mm256_set1_pd(a)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> __m256d {
        _mm256_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f64, n: usize) -> __m256d {
        <Self as Lanes<f64>>::load(stage_in(p, n).0.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, o: __m256d) {
        _mm256_storeu_pd(p, o)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f64, n: usize, o: __m256d) {
        let mut s = Stage([0; 32]);
        <Self as Lanes<f64>>::store(s.0.as_mut_ptr().cast(), o);
        stage_out(&s, p, n)
    }
    #[inline(always)]
    unsafe fn up(b: __m256d) -> __m256d {
        b
    }
    #[inline(always)]
    unsafe fn keep(b: __m256d) -> __m256d {
        b
    }
    #[inline(always)]
    unsafe fn le_zero(v: __m256d) -> __m256d {
        _mm256_cmp_pd::<_CMP_LE_OQ>(v, _mm256_setzero_pd())
    }
    #[inline(always)]
    unsafe fn gt_zero(v: __m256d) -> __m256d {
        _mm256_cmp_pd::<_CMP_GT_OQ>(v, _mm256_setzero_pd())
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(v: __m256d, a: __m256d) -> __m256d {
        maybe_canon_pd::<NAN>(_mm256_mul_pd(v, a))
    }
    #[inline(always)]
    unsafe fn select(m: __m256d, yes: __m256d, no: __m256d) -> __m256d {
        _mm256_blendv_pd(no, yes, m)
    }

    const TN: usize = 4;
    type Terms = __m256d;
    #[inline(always)]
    unsafe fn load_up(p: *const f64) -> __m256d {
        <Self as Lanes<f64>>::load(p)
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const f64, n: usize) -> __m256d {
        <Self as Lanes<f64>>::load_part(p, n)
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f64, t: __m256d) {
        <Self as Lanes<f64>>::store(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f64, n: usize, t: __m256d) {
        <Self as Lanes<f64>>::store_part(p, n, t)
    }
    #[inline(always)]
    unsafe fn term(x: __m256d, dy: __m256d) -> __m256d {
        term_pd(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m256d, b: __m256d) -> __m256d {
        _mm256_add_pd(a, b)
    }
}

/// Narrows an f32 lane mask to 16-bit lanes (all-ones stays all-ones).
#[inline(always)]
unsafe fn narrow(m: __m256) -> __m128i {
    let m = _mm256_castps_si256(m);
    _mm_packs_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m))
}

unsafe impl Lanes<f16> for Avx2 {
    const N: usize = 8;
    type Bits = __m128i;
    type Vals = __m256;
    type Mask = __m256;
    type Out = __m128i;

    #[inline(always)]
    unsafe fn splat(a: f32) -> __m256 {
        _mm256_set1_ps(a)
    }
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m128i {
        _mm_loadu_si128(p.cast())
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f16, n: usize) -> __m128i {
        <Self as Lanes<f16>>::load(stage_in(p, n).0.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn store(p: *mut f16, o: __m128i) {
        _mm_storeu_si128(p.cast(), o)
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f16, n: usize, o: __m128i) {
        let mut s = Stage([0; 32]);
        <Self as Lanes<f16>>::store(s.0.as_mut_ptr().cast(), o);
        stage_out(&s, p, n)
    }
    #[inline(always)]
    unsafe fn up(b: __m128i) -> __m256 {
        _mm256_cvtph_ps(b)
    }
    #[inline(always)]
    unsafe fn keep(b: __m128i) -> __m128i {
        b
    }
    #[inline(always)]
    unsafe fn le_zero(v: __m256) -> __m256 {
        le_ps(v)
    }
    #[inline(always)]
    unsafe fn gt_zero(v: __m256) -> __m256 {
        gt_ps(v)
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(v: __m256, a: __m256) -> __m128i {
        _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(maybe_canon_ps::<NAN>(_mm256_mul_ps(v, a)))
    }
    #[inline(always)]
    unsafe fn select(m: __m256, yes: __m128i, no: __m128i) -> __m128i {
        _mm_blendv_epi8(no, yes, narrow(m))
    }

    const TN: usize = 8;
    type Terms = __m256;
    #[inline(always)]
    unsafe fn load_up(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(<Self as Lanes<f16>>::load(p))
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const f16, n: usize) -> __m256 {
        _mm256_cvtph_ps(<Self as Lanes<f16>>::load_part(p, n))
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f32, t: __m256) {
        <Self as Lanes<f32>>::store(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f32, n: usize, t: __m256) {
        <Self as Lanes<f32>>::store_part(p, n, t)
    }
    #[inline(always)]
    unsafe fn term(x: __m256, dy: __m256) -> __m256 {
        term_ps(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
}

/// `R_bf16` of 8 f32 lanes in integer arithmetic (the rule's formula), a NaN giving the
/// canonical NaN (when `NAN`; else there is none); the result is in the high 16 bits of each lane.
#[inline(always)]
unsafe fn round_bf16<const NAN: bool>(p: __m256) -> __m256i {
    let b = _mm256_castps_si256(p);
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(b), _mm256_set1_epi32(1));
    let r = _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
    if !NAN {
        return r;
    }
    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(p, p));
    _mm256_blendv_epi8(r, _mm256_set1_epi32(NAN_F32 as i32), nan)
}

/// The even and odd elements' results (each in the high half of a 32-bit lane) merged back into
/// 16 bf16 in order.
#[inline(always)]
unsafe fn merge_bf16((even, odd): (__m256i, __m256i)) -> __m256i {
    _mm256_blend_epi16::<0xAA>(_mm256_srli_epi32::<16>(even), odd)
}

unsafe impl Lanes<bf16> for Avx2 {
    const N: usize = 16;
    type Bits = __m256i;
    /// The even elements, then the odd ones.
    type Vals = (__m256, __m256);
    type Mask = (__m256, __m256);
    /// Even and odd results, each in the high half of a 32-bit lane.
    type Out = (__m256i, __m256i);

    #[inline(always)]
    unsafe fn splat(a: f32) -> (__m256, __m256) {
        (_mm256_set1_ps(a), _mm256_set1_ps(a))
    }
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m256i {
        _mm256_loadu_si256(p.cast())
    }
    #[inline(always)]
    unsafe fn load_part(p: *const bf16, n: usize) -> __m256i {
        <Self as Lanes<bf16>>::load(stage_in(p, n).0.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn store(p: *mut bf16, o: (__m256i, __m256i)) {
        _mm256_storeu_si256(p.cast(), merge_bf16(o))
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut bf16, n: usize, o: (__m256i, __m256i)) {
        let mut s = Stage([0; 32]);
        <Self as Lanes<bf16>>::store(s.0.as_mut_ptr().cast(), o);
        stage_out(&s, p, n)
    }
    #[inline(always)]
    unsafe fn up(b: __m256i) -> (__m256, __m256) {
        let (e, o) = <Self as Lanes<bf16>>::keep(b);
        (_mm256_castsi256_ps(e), _mm256_castsi256_ps(o))
    }
    #[inline(always)]
    unsafe fn keep(b: __m256i) -> (__m256i, __m256i) {
        let high = _mm256_set1_epi32(0xFFFF_0000_u32 as i32);
        (_mm256_slli_epi32::<16>(b), _mm256_and_si256(b, high))
    }
    #[inline(always)]
    unsafe fn le_zero((e, o): (__m256, __m256)) -> (__m256, __m256) {
        (le_ps(e), le_ps(o))
    }
    #[inline(always)]
    unsafe fn gt_zero((e, o): (__m256, __m256)) -> (__m256, __m256) {
        (gt_ps(e), gt_ps(o))
    }
    #[inline(always)]
    unsafe fn scaled<const NAN: bool>(
        (e, o): (__m256, __m256),
        (ae, ao): (__m256, __m256),
    ) -> Self::Out {
        (
            round_bf16::<NAN>(_mm256_mul_ps(e, ae)),
            round_bf16::<NAN>(_mm256_mul_ps(o, ao)),
        )
    }
    #[inline(always)]
    unsafe fn select(
        (me, mo): (__m256, __m256),
        (ye, yo): Self::Out,
        (ne, no): Self::Out,
    ) -> Self::Out {
        (
            _mm256_blendv_epi8(ne, ye, _mm256_castps_si256(me)),
            _mm256_blendv_epi8(no, yo, _mm256_castps_si256(mo)),
        )
    }

    const TN: usize = 8;
    type Terms = __m256;
    #[inline(always)]
    unsafe fn load_up(p: *const bf16) -> __m256 {
        let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
    }
    #[inline(always)]
    unsafe fn load_up_part(p: *const bf16, n: usize) -> __m256 {
        <Self as Lanes<bf16>>::load_up(stage_in(p, n).0.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn store_terms(p: *mut f32, t: __m256) {
        <Self as Lanes<f32>>::store(p, t)
    }
    #[inline(always)]
    unsafe fn store_terms_part(p: *mut f32, n: usize, t: __m256) {
        <Self as Lanes<f32>>::store_part(p, n, t)
    }
    #[inline(always)]
    unsafe fn term(x: __m256, dy: __m256) -> __m256 {
        term_ps(x, dy)
    }
    #[inline(always)]
    unsafe fn add_terms(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
}
