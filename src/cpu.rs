//! CPU backend.
//!
//! - Contiguous inputs run as flat slices through loops the compiler vectorises, compiled twice
//!   (baseline x86-64 and AVX2, picked at run time); f16 uses F16C conversions when the CPU has
//!   them (`half`'s per-element conversion does not vectorise).
//! - Strided inputs (offsets, transposes, narrows, broadcasts) are walked in place, never copied
//!   to a contiguous buffer first: the view is folded to its fewest dims and each innermost run is
//!   handed to the same slice kernels when it is unit-stride.
//! - Work is split across rayon only from [`PAR_MIN`] elements on.
//! - Large outputs are advised into transparent huge pages before they are first written, which
//!   removes most of the page-fault cost of a fresh buffer.

use crate::op::{self, Slope};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};
use half::{bf16, f16};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Below this many elements everything runs on the calling thread: waking rayon's workers costs
/// 10–25 µs here, more than the whole op (see BENCHMARKS.md).
const PAR_MIN: usize = 1 << 18;
/// Elements per rayon task.
const TASK: usize = 1 << 16;
/// Outputs of at least this many bytes are advised into transparent huge pages.
#[cfg(target_os = "linux")]
const HUGE_MIN_BYTES: usize = 32 << 20;

/// The canonical positive quiet NaNs of the contract.
const NAN_F16: u16 = 0x7E00;
const NAN_BF16: u16 = 0x7FC0;
const NAN_F32: u32 = 0x7FC0_0000;
const NAN_F64: u64 = 0x7FF8_0000_0000_0000;

/// One element type of the contract: the scalar rules, and slice kernels built on them.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// The forward table of the contract for one element.
    fn fwd(self, a: Slope) -> Self;
    /// The backward table of the contract for one element (`self` is `x`).
    fn bwd(self, dy: Self, a: Slope) -> Self;

    /// `dst[i] = fwd(src[i])`; the slices have the same length.
    fn fwd_run(src: &[Self], dst: &mut [MaybeUninit<Self>], a: Slope) {
        map_fwd(src, dst, a)
    }
    /// `xs[i] = fwd(xs[i])`.
    fn fwd_run_inplace(xs: &mut [Self], a: Slope) {
        map_fwd_inplace(xs, a)
    }
    /// `dst[i] = bwd(x[i], dy[i])`; the slices have the same length.
    fn bwd_run(x: &[Self], dy: &[Self], dst: &mut [MaybeUninit<Self>], a: Slope) {
        map_bwd(x, dy, dst, a)
    }
}

macro_rules! float_elem {
    ($t:ty, $slope:ident, $nan:expr) => {
        impl Elem for $t {
            #[inline(always)]
            fn fwd(self, a: Slope) -> Self {
                let p = self * a.$slope;
                let p = if p.is_nan() { <$t>::from_bits($nan) } else { p };
                // `<=` is false for NaN: a NaN input takes the `else` arm, bits unchanged.
                if self <= 0.0 {
                    p
                } else {
                    self
                }
            }

            #[inline(always)]
            fn bwd(self, dy: Self, a: Slope) -> Self {
                let p = dy * a.$slope;
                let p = if p.is_nan() { <$t>::from_bits($nan) } else { p };
                if self > 0.0 {
                    dy
                } else {
                    p
                }
            }
        }
    };
}

float_elem!(f32, f32, NAN_F32);
float_elem!(f64, f64, NAN_F64);

/// bf16 -> f32 is exact: the bits move up 16 places.
#[inline(always)]
fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 -> bf16, round to nearest, ties to even; NaN becomes the canonical bf16 NaN.
#[inline(always)]
fn f32_to_bf16(p: f32) -> u16 {
    let b = p.to_bits();
    let r = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if p.is_nan() {
        NAN_BF16
    } else {
        r
    }
}

impl Elem for bf16 {
    #[inline(always)]
    fn fwd(self, a: Slope) -> Self {
        let x = bf16_to_f32(self.to_bits());
        let r = f32_to_bf16(x * a.f32);
        bf16::from_bits(if x <= 0.0 { r } else { self.to_bits() })
    }

    #[inline(always)]
    fn bwd(self, dy: Self, a: Slope) -> Self {
        let r = f32_to_bf16(bf16_to_f32(dy.to_bits()) * a.f32);
        bf16::from_bits(if self.to_f32() > 0.0 { dy.to_bits() } else { r })
    }

    /// AVX2 has no 16-bit masked stores, so the plain loop has nothing to avoid here, and
    /// staging only costs: 0.52 ms plain vs 0.70 ms staged at 4M (BENCHMARKS.md).
    fn fwd_run_inplace(xs: &mut [Self], a: Slope) {
        map_fwd_inplace_direct(xs, a)
    }
}

impl Elem for f16 {
    #[inline(always)]
    fn fwd(self, a: Slope) -> Self {
        let x = self.to_f32();
        let p = x * a.f32;
        let r = if p.is_nan() {
            f16::from_bits(NAN_F16)
        } else {
            f16::from_f32(p)
        };
        if x <= 0.0 {
            r
        } else {
            self
        }
    }

    #[inline(always)]
    fn bwd(self, dy: Self, a: Slope) -> Self {
        let p = dy.to_f32() * a.f32;
        let r = if p.is_nan() {
            f16::from_bits(NAN_F16)
        } else {
            f16::from_f32(p)
        };
        if self.to_f32() > 0.0 {
            dy
        } else {
            r
        }
    }

    fn fwd_run(src: &[Self], dst: &mut [MaybeUninit<Self>], a: Slope) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX2 and F16C (checked just above).
            return unsafe { f16c::fwd(src, dst, a) };
        }
        map_fwd(src, dst, a)
    }

    fn fwd_run_inplace(xs: &mut [Self], a: Slope) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX2 and F16C (checked just above).
            return unsafe { f16c::fwd_inplace(xs, a) };
        }
        map_fwd_inplace(xs, a)
    }

    fn bwd_run(x: &[Self], dy: &[Self], dst: &mut [MaybeUninit<Self>], a: Slope) {
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
        fn $name<$t: Elem>($($arg: $ty),*) {
            #[inline(always)]
            fn base<$t: Elem>($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2<$t: Elem>($($arg: $ty),*) {
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
    fn map_fwd<T>(src: &[T], dst: &mut [MaybeUninit<T>], a: Slope) {
        debug_assert_eq!(src.len(), dst.len());
        for (d, &x) in dst.iter_mut().zip(src) {
            d.write(x.fwd(a));
        }
    }

    fn map_fwd_inplace<T>(xs: &mut [T], a: Slope) {
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

    fn map_fwd_inplace_direct<T>(xs: &mut [T], a: Slope) {
        for x in xs {
            *x = x.fwd(a);
        }
    }

    fn map_bwd<T>(x: &[T], dy: &[T], dst: &mut [MaybeUninit<T>], a: Slope) {
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
    use super::{Elem, Slope, NAN_F32};
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
    pub(super) fn fwd(src: &[f16], dst: &mut [MaybeUninit<f16>], a: Slope) {
        let va = _mm256_set1_ps(a.f32);
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
    pub(super) fn fwd_inplace(xs: &mut [f16], a: Slope) {
        let va = _mm256_set1_ps(a.f32);
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
    pub(super) fn bwd(x: &[f16], dy: &[f16], dst: &mut [MaybeUninit<f16>], a: Slope) {
        let va = _mm256_set1_ps(a.f32);
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

/// A view folded to the fewest dims for `K` operands of one shape: dims of size 1 dropped,
/// neighbours merged where every operand's strides allow; the innermost dim is split off as the
/// run length. All indices are `usize` (64-bit).
struct Walk<const K: usize> {
    outer: Vec<usize>,
    strides: [Vec<usize>; K],
    starts: [usize; K],
    len: usize,
    inner: [usize; K],
}

impl<const K: usize> Walk<K> {
    fn new(layouts: [&Layout; K]) -> Self {
        let dims = layouts[0].dims();
        let mut outer: Vec<usize> = Vec::with_capacity(dims.len());
        let mut strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::new());
        for (i, &d) in dims.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let merge = !outer.is_empty()
                && (0..K).all(|k| strides[k].last() == Some(&(layouts[k].stride()[i] * d)));
            if merge {
                *outer.last_mut().expect("non-empty") *= d;
            } else {
                outer.push(d);
            }
            for k in 0..K {
                let s = layouts[k].stride()[i];
                match strides[k].last_mut() {
                    Some(last) if merge => *last = s,
                    _ => strides[k].push(s),
                }
            }
        }
        let len = outer.pop().unwrap_or(1);
        let inner = std::array::from_fn(|k| strides[k].pop().unwrap_or(0));
        let starts = std::array::from_fn(|k| layouts[k].start_offset());
        Self {
            outer,
            strides,
            starts,
            len,
            inner,
        }
    }

    /// The storage offsets of each run, from run number `first` on (endless: zip it).
    fn runs(&self, first: usize) -> Runs<'_, K> {
        let mut idx = vec![0; self.outer.len()];
        let mut offs = self.starts;
        let mut r = first;
        for j in (0..self.outer.len()).rev() {
            idx[j] = r % self.outer[j];
            r /= self.outer[j];
            for (off, strides) in offs.iter_mut().zip(&self.strides) {
                *off += idx[j] * strides[j];
            }
        }
        Runs {
            walk: self,
            idx,
            offs,
        }
    }
}

struct Runs<'a, const K: usize> {
    walk: &'a Walk<K>,
    idx: Vec<usize>,
    offs: [usize; K],
}

impl<const K: usize> Iterator for Runs<'_, K> {
    type Item = [usize; K];

    fn next(&mut self) -> Option<[usize; K]> {
        let here = self.offs;
        let w = self.walk;
        for j in (0..w.outer.len()).rev() {
            self.idx[j] += 1;
            for k in 0..K {
                self.offs[k] += w.strides[k][j];
            }
            if self.idx[j] < w.outer[j] {
                break;
            }
            self.idx[j] = 0;
            for k in 0..K {
                self.offs[k] -= w.strides[k][j] * w.outer[j];
            }
        }
        Some(here)
    }
}

/// Calls `body(first_run, chunk)` over `dst` cut into whole runs of `len`, on rayon tasks when
/// the output is large.
fn split_runs<T: Send>(dst: &mut [T], len: usize, body: impl Fn(usize, &mut [T]) + Sync) {
    let per_task = (TASK / len).max(1);
    if dst.len() >= PAR_MIN && dst.len() > len {
        dst.par_chunks_mut(per_task * len)
            .enumerate()
            .for_each(|(t, chunk)| body(t * per_task, chunk));
    } else {
        body(0, dst)
    }
}

/// A fresh `Vec` of `n` elements, each written by `fill` (which must write all of them).
fn alloc_with<T>(n: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    advise_huge(spare);
    fill(spare);
    // SAFETY: the first `n` elements were all written by `fill`: every caller writes its whole
    // `dst` (contiguous kernels zip it with an input slice of the same length; strided ones cover
    // it with whole runs, and `n` is a multiple of the run length).
    unsafe { v.set_len(n) };
    v
}

/// Asks the kernel to back a large, not yet touched buffer with transparent huge pages, so that
/// writing it costs one fault per 2 MiB instead of one per 4 KiB.
fn advise_huge<T>(buf: &mut [MaybeUninit<T>]) {
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(buf);
        if bytes < HUGE_MIN_BYTES {
            return;
        }
        let lo = buf.as_mut_ptr() as usize;
        let (start, end) = (lo.next_multiple_of(HUGE), (lo + bytes) / HUGE * HUGE);
        if end > start {
            // SAFETY: [start, end) lies inside `buf`, memory this process owns. MADV_HUGEPAGE is
            // advice only: it never changes the contents or validity of the mapping, and a
            // failure (e.g. THP disabled) leaves ordinary pages, so the result is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
}

fn fwd<T: Elem>(src: &[T], l: &Layout, a: Slope) -> Vec<T> {
    let n = l.shape().elem_count();
    if n == 0 {
        // An empty view may start past the end of its storage: touch nothing.
        return Vec::new();
    }
    alloc_with(n, |dst| {
        if let Some((o, e)) = l.contiguous_offsets() {
            let src = &src[o..e];
            if n >= PAR_MIN {
                (dst.par_chunks_mut(TASK).zip(src.par_chunks(TASK)))
                    .for_each(|(d, s)| T::fwd_run(s, d, a));
            } else {
                T::fwd_run(src, dst, a);
            }
        } else {
            let w = Walk::new([l]);
            let ([s], len) = (w.inner, w.len);
            split_runs(dst, len, |first, dst| {
                for (d, [o]) in dst.chunks_exact_mut(len).zip(w.runs(first)) {
                    if s == 1 {
                        T::fwd_run(&src[o..o + len], d, a);
                    } else {
                        for (i, d) in d.iter_mut().enumerate() {
                            d.write(src[o + i * s].fwd(a));
                        }
                    }
                }
            });
        }
    })
}

fn bwd<T: Elem>(x: &[T], lx: &Layout, dy: &[T], ldy: &Layout, a: Slope) -> Vec<T> {
    let n = lx.shape().elem_count();
    if n == 0 {
        return Vec::new();
    }
    alloc_with(n, |dst| {
        match (lx.contiguous_offsets(), ldy.contiguous_offsets()) {
            (Some((xo, xe)), Some((go, ge))) => {
                let (x, dy) = (&x[xo..xe], &dy[go..ge]);
                if n >= PAR_MIN {
                    let inputs = x.par_chunks(TASK).zip(dy.par_chunks(TASK));
                    (dst.par_chunks_mut(TASK).zip(inputs))
                        .for_each(|(d, (x, g))| T::bwd_run(x, g, d, a));
                } else {
                    T::bwd_run(x, dy, dst, a);
                }
            }
            _ => {
                let w = Walk::new([lx, ldy]);
                let ([sx, sg], len) = (w.inner, w.len);
                split_runs(dst, len, |first, dst| {
                    for (d, [ox, og]) in dst.chunks_exact_mut(len).zip(w.runs(first)) {
                        if sx == 1 && sg == 1 {
                            T::bwd_run(&x[ox..ox + len], &dy[og..og + len], d, a);
                        } else {
                            for (i, d) in d.iter_mut().enumerate() {
                                d.write(x[ox + i * sx].bwd(dy[og + i * sg], a));
                            }
                        }
                    }
                });
            }
        }
    })
}

/// In place over the view `l`, whose elements do not overlap (see `op::check_inplace`).
fn fwd_inplace<T: Elem>(xs: &mut [T], l: &Layout, a: Slope) {
    let n = l.shape().elem_count();
    if n == 0 {
        return;
    }
    if let Some((o, e)) = l.contiguous_offsets() {
        let xs = &mut xs[o..e];
        if n >= PAR_MIN {
            xs.par_chunks_mut(TASK)
                .for_each(|c| T::fwd_run_inplace(c, a));
        } else {
            T::fwd_run_inplace(xs, a);
        }
    } else {
        let w = Walk::new([l]);
        let ([s], len) = (w.inner, w.len);
        for [o] in w.runs(0).take(n / len) {
            if s == 1 {
                T::fwd_run_inplace(&mut xs[o..o + len], a);
            } else {
                for i in 0..len {
                    xs[o + i * s] = xs[o + i * s].fwd(a);
                }
            }
        }
    }
}

pub(crate) fn forward(a: Slope, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F16(v) => CpuStorage::F16(fwd(v, l, a)),
        CpuStorage::BF16(v) => CpuStorage::BF16(fwd(v, l, a)),
        CpuStorage::F32(v) => CpuStorage::F32(fwd(v, l, a)),
        CpuStorage::F64(v) => CpuStorage::F64(fwd(v, l, a)),
        s => return Err(op::unsupported(s.dtype(), op::FWD)),
    })
}

pub(crate) fn backward(
    a: Slope,
    x: &CpuStorage,
    lx: &Layout,
    dy: &CpuStorage,
    ldy: &Layout,
) -> Result<CpuStorage> {
    use CpuStorage as S;
    Ok(match (x, dy) {
        (S::F16(x), S::F16(g)) => S::F16(bwd(x, lx, g, ldy, a)),
        (S::BF16(x), S::BF16(g)) => S::BF16(bwd(x, lx, g, ldy, a)),
        (S::F32(x), S::F32(g)) => S::F32(bwd(x, lx, g, ldy, a)),
        (S::F64(x), S::F64(g)) => S::F64(bwd(x, lx, g, ldy, a)),
        (x, _) => return Err(op::unsupported(x.dtype(), op::BWD)),
    })
}

pub(crate) fn forward_inplace(a: Slope, s: &mut CpuStorage, l: &Layout) -> Result<()> {
    match s {
        CpuStorage::F16(v) => fwd_inplace(v, l, a),
        CpuStorage::BF16(v) => fwd_inplace(v, l, a),
        CpuStorage::F32(v) => fwd_inplace(v, l, a),
        CpuStorage::F64(v) => fwd_inplace(v, l, a),
        s => return Err(op::unsupported(s.dtype(), op::INPLACE)),
    }
    Ok(())
}
