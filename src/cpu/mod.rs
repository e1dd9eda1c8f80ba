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

mod rule;
mod simd;
mod walk;

use crate::op::{self, Slope};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Error, Layout, Result};
use rayon::prelude::*;
use simd::Kernel;
use std::mem::MaybeUninit;
use walk::Walk;

/// Below this many elements everything runs on the calling thread: waking rayon's workers costs
/// 10–25 µs here, more than the whole op (see BENCHMARKS.md).
const PAR_MIN: usize = 1 << 18;
/// Elements per rayon task.
const TASK: usize = 1 << 16;
/// Outputs of at least this many bytes are advised into transparent huge pages.
#[cfg(target_os = "linux")]
const HUGE_MIN_BYTES: usize = 32 << 20;

/// Calls `body(first_run, chunk)` over `dst` cut into whole runs of `len`, on rayon tasks when
/// the output is large; returns the sum of what the bodies return (the elements they wrote).
fn split_runs<T: Send>(
    dst: &mut [T],
    len: usize,
    body: impl Fn(usize, &mut [T]) -> usize + Sync,
) -> usize {
    let per_task = (TASK / len).max(1);
    if dst.len() >= PAR_MIN && dst.len() > len {
        dst.par_chunks_mut(per_task * len)
            .enumerate()
            .map(|(t, chunk)| body(t * per_task, chunk))
            .sum()
    } else {
        body(0, dst)
    }
}

/// A fresh `Vec` of `n` elements written by `fill`, which returns how many it wrote from the
/// start. The count is checked before the length is set: a fill that fell short (a layout whose
/// runs do not cover `n`) is an error, never uninitialised memory. An allocation that fails is an
/// error too, not an abort.
fn alloc_with<T>(
    n: usize,
    op: &str,
    fill: impl FnOnce(&mut [MaybeUninit<T>]) -> usize,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|e| {
        Error::msg(format!(
            "{op}: cannot allocate an output of {n} elements: {e}"
        ))
    })?;
    let spare = &mut v.spare_capacity_mut()[..n];
    advise_huge(spare);
    let written = fill(spare);
    if written != n {
        return Err(Error::msg(format!(
            "{op}: the kernel wrote {written} of {n} output elements; nothing is returned"
        ))
        .bt());
    }
    // SAFETY: `fill` wrote the first `written` elements (each kernel reports what it wrote) and
    // `written == n` was checked just above, whatever the layout.
    unsafe { v.set_len(n) };
    Ok(v)
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

fn fwd<T: Kernel>(src: &[T], l: &Layout, a: Slope) -> Result<Vec<T>> {
    let n = l.shape().elem_count();
    if n == 0 {
        // An empty view may start past the end of its storage: touch nothing.
        return Ok(Vec::new());
    }
    alloc_with(n, op::FWD, |dst| {
        if let Some((o, e)) = l.contiguous_offsets() {
            let src = &src[o..e];
            if n >= PAR_MIN {
                (dst.par_chunks_mut(TASK).zip(src.par_chunks(TASK)))
                    .for_each(|(d, s)| T::fwd_run(s, d, a));
            } else {
                T::fwd_run(src, dst, a);
            }
            src.len().min(dst.len())
        } else {
            let w = Walk::new([l]);
            let ([s], len) = (w.inner, w.len);
            split_runs(dst, len, |first, dst| {
                let mut written = 0;
                for (d, [o]) in dst.chunks_exact_mut(len).zip(w.runs(first)) {
                    if s == 1 {
                        T::fwd_run(&src[o..o + len], d, a);
                    } else {
                        for (i, d) in d.iter_mut().enumerate() {
                            d.write(src[o + i * s].fwd(a));
                        }
                    }
                    written += len;
                }
                written
            })
        }
    })
}

fn bwd<T: Kernel>(x: &[T], lx: &Layout, dy: &[T], ldy: &Layout, a: Slope) -> Result<Vec<T>> {
    let n = lx.shape().elem_count();
    if n == 0 {
        return Ok(Vec::new());
    }
    alloc_with(n, op::BWD, |dst| {
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
                x.len().min(dy.len()).min(dst.len())
            }
            _ => {
                let w = Walk::new([lx, ldy]);
                let ([sx, sg], len) = (w.inner, w.len);
                split_runs(dst, len, |first, dst| {
                    let mut written = 0;
                    for (d, [ox, og]) in dst.chunks_exact_mut(len).zip(w.runs(first)) {
                        if sx == 1 && sg == 1 {
                            T::bwd_run(&x[ox..ox + len], &dy[og..og + len], d, a);
                        } else {
                            for (i, d) in d.iter_mut().enumerate() {
                                d.write(x[ox + i * sx].bwd(dy[og + i * sg], a));
                            }
                        }
                        written += len;
                    }
                    written
                })
            }
        }
    })
}

/// In place over the view `l`, whose elements do not overlap (see `op::check_inplace`).
fn fwd_inplace<T: Kernel>(xs: &mut [T], l: &Layout, a: Slope) {
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

impl op::Elems for CpuStorage {
    fn elems(&self) -> usize {
        match self {
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            // Other dtypes are refused before any layout is checked.
            _ => 0,
        }
    }
}

pub(crate) fn forward(a: Slope, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F16(v) => CpuStorage::F16(fwd(v, l, a)?),
        CpuStorage::BF16(v) => CpuStorage::BF16(fwd(v, l, a)?),
        CpuStorage::F32(v) => CpuStorage::F32(fwd(v, l, a)?),
        CpuStorage::F64(v) => CpuStorage::F64(fwd(v, l, a)?),
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
        (S::F16(x), S::F16(g)) => S::F16(bwd(x, lx, g, ldy, a)?),
        (S::BF16(x), S::BF16(g)) => S::BF16(bwd(x, lx, g, ldy, a)?),
        (S::F32(x), S::F32(g)) => S::F32(bwd(x, lx, g, ldy, a)?),
        (S::F64(x), S::F64(g)) => S::F64(bwd(x, lx, g, ldy, a)?),
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

#[cfg(test)]
mod tests {
    use super::alloc_with;

    /// A fill that reports fewer elements than asked for is an error, never a short-written Vec.
    #[test]
    fn alloc_with_refuses_a_short_fill() {
        let short = alloc_with::<f32>(4, "t", |d| {
            d[0].write(1.0);
            1
        });
        assert!(short.unwrap_err().to_string().contains("wrote 1 of 4"));
        let full = alloc_with::<f32>(3, "t", |d| {
            d.iter_mut().for_each(|x| _ = x.write(2.0));
            d.len()
        });
        assert_eq!(full.unwrap(), [2.0; 3]);
    }
}
