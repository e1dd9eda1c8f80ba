//! Slice kernels over the scalar rule of `rule.rs`: loops the compiler vectorises, compiled twice
//! (baseline x86-64 and AVX2, picked at run time), and an explicit F16C kernel for f16 (`half`'s
//! per-element conversion does not vectorise). Same bits as the rule, element for element.

use super::rule::Rule;
use half::{bf16, f16};
use std::mem::MaybeUninit;

/// Slice kernels of one dtype; the defaults map the scalar rule over the slices. `a` is the
/// slope in the dtype's compute type.
pub(crate) trait SliceKernel: Rule {
    /// `dst[i] = fwd(src[i])`; the slices have the same length.
    fn fwd_run(src: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
        map_fwd(src, dst, a)
    }
    /// `xs[i] = fwd(xs[i])`.
    fn fwd_run_inplace(xs: &mut [Self], a: Self::C) {
        map_fwd_inplace(xs, a)
    }
    /// `dst[i] = bwd(x[i], dy[i])`; the slices have the same length.
    fn bwd_run(x: &[Self], dy: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
        map_bwd(x, dy, dst, a)
    }
}

impl SliceKernel for f32 {}
impl SliceKernel for f64 {}

impl SliceKernel for bf16 {
    /// AVX2 has no 16-bit masked stores, so the plain loop has nothing to avoid here, and
    /// staging only costs (measured: BENCHMARKS.md, bf16 in place).
    fn fwd_run_inplace(xs: &mut [Self], a: Self::C) {
        map_fwd_inplace_direct(xs, a)
    }
}

impl SliceKernel for f16 {
    fn fwd_run(src: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX2 and F16C (checked just above).
            return unsafe { f16c::fwd(src, dst, a) };
        }
        map_fwd(src, dst, a)
    }

    fn fwd_run_inplace(xs: &mut [Self], a: Self::C) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX2 and F16C (checked just above).
            return unsafe { f16c::fwd_inplace(xs, a) };
        }
        map_fwd_inplace(xs, a)
    }

    fn bwd_run(x: &[Self], dy: &[Self], dst: &mut [MaybeUninit<Self>], a: Self::C) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX2 and F16C (checked just above).
            return unsafe { f16c::bwd(x, dy, dst, a) };
        }
        map_bwd(x, dy, dst, a)
    }
}

/// Defines a generic slice kernel twice, for the baseline target and for AVX2, and picks one at
/// run time. The body is the same source: only the instructions the compiler may use differ.
macro_rules! multiversion {
    ($(fn $name:ident<$t:ident>($($arg:ident: $ty:ty),*) $body:block)*) => {$(
        fn $name<$t: SliceKernel>($($arg: $ty),*) {
            #[inline(always)]
            fn base<$t: SliceKernel>($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2<$t: SliceKernel>($($arg: $ty),*) {
                base($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            base($($arg),*)
        }
    )*};
}

multiversion! {
    fn map_fwd<T>(src: &[T], dst: &mut [MaybeUninit<T>], a: T::C) {
        debug_assert_eq!(src.len(), dst.len());
        for (d, &x) in dst.iter_mut().zip(src) {
            d.write(x.fwd(a));
        }
    }

    fn map_fwd_inplace<T>(xs: &mut [T], a: T::C) {
        // Written as `*x = x.fwd(a)`, this loop becomes masked stores (`vmaskmovps`: only the
        // lanes that change are written back), which AMD CPUs microcode: 4x slower than the
        // out-of-place kernel here. Each block is copied out first, and `black_box` hides from
        // the optimiser that the copy still equals the block, so every lane is stored plainly.
        const BLOCK: usize = 256;
        let Some(&first) = xs.first() else { return };
        let mut stage = [first; BLOCK];
        for block in xs.chunks_mut(BLOCK) {
            let src = &mut stage[..block.len()];
            src.copy_from_slice(block);
            let src = std::hint::black_box(src);
            for (d, &x) in block.iter_mut().zip(&*src) {
                *d = x.fwd(a);
            }
        }
    }

    fn map_fwd_inplace_direct<T>(xs: &mut [T], a: T::C) {
        for x in xs {
            *x = x.fwd(a);
        }
    }

    fn map_bwd<T>(x: &[T], dy: &[T], dst: &mut [MaybeUninit<T>], a: T::C) {
        debug_assert!(x.len() == dst.len() && dy.len() == dst.len());
        for ((d, &x), &g) in dst.iter_mut().zip(x).zip(dy) {
            d.write(x.bwd(g, a));
        }
    }
}

/// f16 with the F16C conversion instructions, eight lanes at a time; the tail goes through the
/// scalar rule. Same contract: the result is blended from the input bits where they pass
/// through, so NaN payloads survive untouched.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use super::super::rule::NAN_F32;
    use super::Rule;
    use half::f16;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
    }

    /// `R_f16(p)` for eight f32 products, a NaN product giving the canonical NaN.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn round(p: __m256) -> __m128i {
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(p, p);
        let canon = _mm256_castsi256_ps(_mm256_set1_epi32(NAN_F32 as i32));
        _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_blendv_ps(p, canon, nan))
    }

    /// Narrows an f32 lane mask to 16-bit lanes (all-ones stays all-ones).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn narrow(m: __m256) -> __m128i {
        let m = _mm256_castps_si256(m);
        _mm_packs_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m))
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn fwd8(h: __m128i, a: __m256) -> __m128i {
        let x = _mm256_cvtph_ps(h);
        let r = round(_mm256_mul_ps(x, a));
        let le = narrow(_mm256_cmp_ps::<_CMP_LE_OQ>(x, _mm256_setzero_ps()));
        _mm_blendv_epi8(h, r, le)
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn bwd8(hx: __m128i, hg: __m128i, a: __m256) -> __m128i {
        let x = _mm256_cvtph_ps(hx);
        let r = round(_mm256_mul_ps(_mm256_cvtph_ps(hg), a));
        let gt = narrow(_mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps()));
        _mm_blendv_epi8(r, hg, gt)
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn fwd(src: &[f16], dst: &mut [MaybeUninit<f16>], a: f32) {
        let va = _mm256_set1_ps(a);
        let mut d8 = dst.chunks_exact_mut(8);
        let mut s8 = src.chunks_exact(8);
        for (d, s) in (&mut d8).zip(&mut s8) {
            // SAFETY: `s` and `d` each hold exactly eight 2-byte elements (16 bytes); the
            // loads and stores are unaligned.
            unsafe {
                let y = fwd8(_mm_loadu_si128(s.as_ptr().cast()), va);
                _mm_storeu_si128(d.as_mut_ptr().cast(), y);
            }
        }
        for (d, &x) in d8.into_remainder().iter_mut().zip(s8.remainder()) {
            d.write(x.fwd(a));
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn fwd_inplace(xs: &mut [f16], a: f32) {
        let va = _mm256_set1_ps(a);
        let mut c8 = xs.chunks_exact_mut(8);
        for c in &mut c8 {
            // SAFETY: `c` holds exactly eight 2-byte elements (16 bytes); unaligned access.
            unsafe {
                let y = fwd8(_mm_loadu_si128(c.as_ptr().cast()), va);
                _mm_storeu_si128(c.as_mut_ptr().cast(), y);
            }
        }
        for x in c8.into_remainder() {
            *x = x.fwd(a);
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn bwd(x: &[f16], dy: &[f16], dst: &mut [MaybeUninit<f16>], a: f32) {
        let va = _mm256_set1_ps(a);
        let mut d8 = dst.chunks_exact_mut(8);
        let mut x8 = x.chunks_exact(8);
        let mut g8 = dy.chunks_exact(8);
        for ((d, x), g) in (&mut d8).zip(&mut x8).zip(&mut g8) {
            // SAFETY: `x`, `g` and `d` each hold exactly eight 2-byte elements (16 bytes);
            // unaligned access.
            unsafe {
                let hx = _mm_loadu_si128(x.as_ptr().cast());
                let hg = _mm_loadu_si128(g.as_ptr().cast());
                _mm_storeu_si128(d.as_mut_ptr().cast(), bwd8(hx, hg, va));
            }
        }
        let tail = d8.into_remainder().iter_mut().zip(x8.remainder());
        for ((d, &x), &g) in tail.zip(g8.remainder()) {
            d.write(x.bwd(g, a));
        }
    }
}
