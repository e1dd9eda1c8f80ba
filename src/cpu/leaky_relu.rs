//! LeakyReLU on the CPU: forward, backward and in place over any validated layout. Contiguous
//! views run as flat slices (on rayon tasks when large); other views are walked in place, never
//! copied, each unit-stride run handed to the same slice kernels.

use super::rule::{Compute, Rule};
use super::simd::SliceKernel;
use super::walk::Walk;
use super::{alloc_with, split_runs, PAR_MIN, TASK};
use crate::base::{unsupported, Op, Slope};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};
use rayon::prelude::*;

fn fwd<T: SliceKernel>(src: &[T], l: &Layout, n: usize, a: T::C) -> Result<Vec<T>> {
    alloc_with(n, Op::Fwd, |dst| {
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

fn bwd<T: SliceKernel>(
    (x, lx): (&[T], &Layout),
    (dy, ldy): (&[T], &Layout),
    n: usize,
    a: T::C,
) -> Result<Vec<T>> {
    alloc_with(n, Op::Bwd, |dst| {
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

/// In place over the view `l`, whose elements do not overlap (`base::check_inplace`). An empty
/// view may start past the end of its storage: nothing is touched.
fn fwd_inplace<T: SliceKernel>(xs: &mut [T], l: &Layout, n: usize, a: T::C) {
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
        for [o] in w.runs(0) {
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

/// The slope of the contract's Types table for dtype `T`.
fn slope<T: Rule>(a: Slope) -> T::C {
    T::C::slope(a)
}

/// `y = leaky_relu(x)`: a new contiguous storage of the view's `n` elements.
pub(crate) fn forward(a: Slope, s: &CpuStorage, l: &Layout, n: usize) -> Result<CpuStorage> {
    use CpuStorage as S;
    Ok(match s {
        S::F16(v) => S::F16(fwd(v, l, n, slope::<half::f16>(a))?),
        S::BF16(v) => S::BF16(fwd(v, l, n, slope::<half::bf16>(a))?),
        S::F32(v) => S::F32(fwd(v, l, n, slope::<f32>(a))?),
        S::F64(v) => S::F64(fwd(v, l, n, slope::<f64>(a))?),
        s => return Err(unsupported(s.dtype(), Op::Fwd)),
    })
}

/// `dx` from `x` and `dy` (same dtype and dims): a new contiguous storage of `n` elements.
pub(crate) fn backward(
    a: Slope,
    (x, lx): (&CpuStorage, &Layout),
    (dy, ldy): (&CpuStorage, &Layout),
    n: usize,
) -> Result<CpuStorage> {
    use CpuStorage as S;
    Ok(match (x, dy) {
        (S::F16(x), S::F16(g)) => S::F16(bwd((x, lx), (g, ldy), n, slope::<half::f16>(a))?),
        (S::BF16(x), S::BF16(g)) => S::BF16(bwd((x, lx), (g, ldy), n, slope::<half::bf16>(a))?),
        (S::F32(x), S::F32(g)) => S::F32(bwd((x, lx), (g, ldy), n, slope::<f32>(a))?),
        (S::F64(x), S::F64(g)) => S::F64(bwd((x, lx), (g, ldy), n, slope::<f64>(a))?),
        (x, _) => return Err(unsupported(x.dtype(), Op::Bwd)),
    })
}

/// `x = leaky_relu(x)` over the view's `n` elements, which do not overlap.
pub(crate) fn forward_inplace(a: Slope, s: &mut CpuStorage, l: &Layout, n: usize) -> Result<()> {
    use CpuStorage as S;
    match s {
        S::F16(v) => fwd_inplace(v, l, n, slope::<half::f16>(a)),
        S::BF16(v) => fwd_inplace(v, l, n, slope::<half::bf16>(a)),
        S::F32(v) => fwd_inplace(v, l, n, slope::<f32>(a)),
        S::F64(v) => fwd_inplace(v, l, n, slope::<f64>(a)),
        s => return Err(unsupported(s.dtype(), Op::Inplace)),
    }
    Ok(())
}
