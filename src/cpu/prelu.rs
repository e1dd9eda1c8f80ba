//! PReLU on the CPU: the forward and the fused backward (`dx` and the weight gradient) over any
//! validated layout of x and dy and any layout of the weight.
//!
//! The weight is first read into one slope per channel in the compute type (`C(w[c])`, exact).
//! x (and dy) are then walked in logical order as for LeakyReLU, and each run is cut where the
//! slope changes: a run of one channel goes through the same slice kernels as LeakyReLU with that
//! channel's slope. The weight gradient sums each channel's terms in the order of `tree.rs`,
//! fed run by run; the work is split across threads only at boundaries where every channel's
//! terms start a new block, so the sums have the same bits for any thread count.

use super::rule::Rule;
use super::simd::SliceKernel;
use super::tree::{tree, Blocks, BLOCK};
use super::walk::Walk;
use super::{alloc_with, split_runs, PAR_MIN, TASK};
use crate::base::{unsupported, Channels, Op};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The slopes of one segment of consecutive elements: one for all, or one each.
#[derive(Clone, Copy)]
enum Slopes<'a, C> {
    One(C),
    Each(&'a [C]),
}

/// Calls `f(k, len, slopes)` for the segments of the logical elements `i0 .. i0 + len`: the
/// pieces in which the slope is one value (`inner > 1`, or a single channel), or, for one slope
/// per element (`inner == 1`), the pieces within one row of `channels` elements. `k` is the
/// segment's start relative to `i0`.
#[inline]
fn segments<C: Copy>(
    i0: usize,
    len: usize,
    ch: Channels,
    slopes: &[C],
    mut f: impl FnMut(usize, usize, Slopes<'_, C>),
) {
    if ch.channels == 1 {
        return f(0, len, Slopes::One(slopes[0]));
    }
    let mut k = 0;
    while k < len {
        let i = i0 + k;
        if ch.inner == 1 {
            let c = i % ch.channels;
            let seg = (ch.channels - c).min(len - k);
            f(k, seg, Slopes::Each(&slopes[c..c + seg]));
            k += seg;
        } else {
            let c = (i / ch.inner) % ch.channels;
            let seg = (ch.inner - i % ch.inner).min(len - k);
            f(k, seg, Slopes::One(slopes[c]));
            k += seg;
        }
    }
}

/// `C(w[c])` for every weight element, in the weight's logical order.
fn slopes<T: Rule>(w: &[T], lw: &Layout, wn: usize) -> Vec<T::C> {
    let mut out = Vec::with_capacity(wn);
    if wn == 0 {
        return out;
    }
    let walk = Walk::new([lw]);
    let ([s], len) = (walk.inner, walk.len);
    for [o] in walk.runs(0) {
        out.extend((0..len).map(|i| w[o + i * s].up()));
    }
    out
}

/// `dst[q] = op(src[q * stride], slope)` for one segment.
#[inline]
fn fwd_segment<T: SliceKernel>(
    src: &[T],
    o: usize,
    s: usize,
    d: &mut [MaybeUninit<T>],
    slopes: Slopes<'_, T::C>,
) {
    match slopes {
        Slopes::One(a) if s == 1 => T::fwd_run(&src[o..o + d.len()], d, a),
        Slopes::One(a) => {
            for (q, d) in d.iter_mut().enumerate() {
                d.write(src[o + q * s].fwd(a));
            }
        }
        Slopes::Each(a) => {
            for (q, (d, &a)) in d.iter_mut().zip(a).enumerate() {
                d.write(src[o + q * s].fwd(a));
            }
        }
    }
}

#[inline]
fn bwd_segment<T: SliceKernel>(
    (x, ox, sx): (&[T], usize, usize),
    (dy, og, sg): (&[T], usize, usize),
    d: &mut [MaybeUninit<T>],
    slopes: Slopes<'_, T::C>,
) {
    let len = d.len();
    match slopes {
        Slopes::One(a) if sx == 1 && sg == 1 => {
            T::bwd_run(&x[ox..ox + len], &dy[og..og + len], d, a)
        }
        Slopes::One(a) => {
            for (q, d) in d.iter_mut().enumerate() {
                d.write(x[ox + q * sx].bwd(dy[og + q * sg], a));
            }
        }
        Slopes::Each(a) => {
            for (q, (d, &a)) in d.iter_mut().zip(a).enumerate() {
                d.write(x[ox + q * sx].bwd(dy[og + q * sg], a));
            }
        }
    }
}

fn fwd<T: SliceKernel>(
    x: &[T],
    lx: &Layout,
    slopes: &[T::C],
    ch: Channels,
    n: usize,
) -> Result<Vec<T>> {
    alloc_with(n, Op::Prelu, |dst| {
        if let Some((o, e)) = lx.contiguous_offsets() {
            let x = &x[o..e];
            let body = |t: usize, d: &mut [MaybeUninit<T>]| {
                let i0 = t * TASK;
                segments(i0, d.len(), ch, slopes, |k, len, a| {
                    fwd_segment(x, i0 + k, 1, &mut d[k..k + len], a)
                });
            };
            if n >= PAR_MIN {
                dst.par_chunks_mut(TASK)
                    .enumerate()
                    .for_each(|(t, d)| body(t, d));
            } else {
                dst.chunks_mut(TASK)
                    .enumerate()
                    .for_each(|(t, d)| body(t, d));
            }
            x.len().min(dst.len())
        } else {
            let w = Walk::new([lx]);
            let ([s], len) = (w.inner, w.len);
            split_runs(dst, len, |first, dst| {
                let mut written = 0;
                let runs = dst.chunks_exact_mut(len).zip(w.runs(first));
                for (r, (d, [o])) in runs.enumerate() {
                    let i0 = (first + r) * len;
                    segments(i0, len, ch, slopes, |k, seg, a| {
                        fwd_segment(x, o + k * s, s, &mut d[k..k + seg], a)
                    });
                    written += len;
                }
                written
            })
        }
    })
}

/// `dx` into `dst` (the first `n` elements of the backward's output).
fn dx<T: SliceKernel>(
    (x, lx): (&[T], &Layout),
    (dy, ldy): (&[T], &Layout),
    slopes: &[T::C],
    ch: Channels,
    dst: &mut [MaybeUninit<T>],
) -> usize {
    let n = dst.len();
    match (lx.contiguous_offsets(), ldy.contiguous_offsets()) {
        (Some((xo, xe)), Some((go, ge))) => {
            let (x, dy) = (&x[xo..xe], &dy[go..ge]);
            let body = |t: usize, d: &mut [MaybeUninit<T>]| {
                let i0 = t * TASK;
                segments(i0, d.len(), ch, slopes, |k, len, a| {
                    let i = i0 + k;
                    bwd_segment((x, i, 1), (dy, i, 1), &mut d[k..k + len], a)
                });
            };
            if n >= PAR_MIN {
                dst.par_chunks_mut(TASK)
                    .enumerate()
                    .for_each(|(t, d)| body(t, d));
            } else {
                dst.chunks_mut(TASK)
                    .enumerate()
                    .for_each(|(t, d)| body(t, d));
            }
            x.len().min(dy.len()).min(n)
        }
        _ => {
            let w = Walk::new([lx, ldy]);
            let ([sx, sg], len) = (w.inner, w.len);
            split_runs(dst, len, |first, dst| {
                let mut written = 0;
                let runs = dst.chunks_exact_mut(len).zip(w.runs(first));
                for (r, (d, [ox, og])) in runs.enumerate() {
                    let i0 = (first + r) * len;
                    segments(i0, len, ch, slopes, |k, seg, a| {
                        let xs = (x, ox + k * sx, sx);
                        bwd_segment(xs, (dy, og + k * sg, sg), &mut d[k..k + seg], a)
                    });
                    written += len;
                }
                written
            })
        }
    }
}

/// The weight gradient, `dw[c] = R_T(S_c)` with `S_c` the channel's terms summed in the order of
/// `tree.rs`, into `dst` (`ch.channels` elements).
fn dw<T: SliceKernel>(
    (x, lx): (&[T], &Layout),
    (dy, ldy): (&[T], &Layout),
    ch: Channels,
    n: usize,
    dst: &mut [MaybeUninit<T>],
) -> usize {
    if n == 0 {
        // Every channel is empty: S = +0.0.
        for d in dst.iter_mut() {
            d.write(T::narrow(<T::C as super::tree::Acc>::POS_ZERO));
        }
        return dst.len();
    }
    if ch.outer * ch.inner == 1 {
        // One term per channel (a weight of x's own shape): S is the term itself.
        let w = Walk::new([lx, ldy]);
        let ([sx, sg], len) = (w.inner, w.len);
        let mut i = 0;
        for [ox, og] in w.runs(0) {
            for q in 0..len {
                dst[i].write(T::narrow(x[ox + q * sx].term(dy[og + q * sg])));
                i += 1;
            }
        }
        return i;
    }
    // Threads take whole rows of x (its dim 0), and split only where every channel's terms
    // start a block: before row `a` with `a * terms_per_row` a multiple of BLOCK.
    let rows = lx.dims().first().copied().unwrap_or(1);
    let per_row = n / rows;
    let terms_per_row = if ch.channels == 1 { per_row } else { ch.inner };
    let step = BLOCK / gcd(terms_per_row, BLOCK);
    let rows_per_task = if n >= PAR_MIN {
        (TASK / per_row).max(1).next_multiple_of(step)
    } else {
        rows
    };
    let tasks = rows.div_ceil(rows_per_task);
    // One task: the block sums of every channel over rows `a0 .. a0 + rows_per_task`.
    let task = |t: usize| -> Vec<Vec<T::C>> {
        let a0 = t * rows_per_task;
        let count = rows_per_task.min(rows - a0);
        let (sub_x, sub_dy) = (narrow_rows(lx, a0, count), narrow_rows(ldy, a0, count));
        let w = Walk::new([&sub_x, &sub_dy]);
        let ([sx, sg], len) = (w.inner, w.len);
        let mut blocks: Vec<Blocks<T::C>> = (0..ch.channels).map(|_| Blocks::new()).collect();
        let mut terms: Vec<T::C> = Vec::new();
        for (r, [ox, og]) in w.runs(0).enumerate() {
            let i0 = a0 * per_row + r * len;
            let mut k = 0;
            while k < len {
                let i = i0 + k;
                if ch.inner == 1 {
                    let c = i % ch.channels;
                    blocks[c].push_one(x[ox + k * sx].term(dy[og + k * sg]));
                    k += 1;
                } else {
                    let c = (i / ch.inner) % ch.channels;
                    let seg = (ch.inner - i % ch.inner).min(len - k);
                    terms.clear();
                    terms.extend((k..k + seg).map(|q| x[ox + q * sx].term(dy[og + q * sg])));
                    blocks[c].push(&terms);
                    k += seg;
                }
            }
        }
        blocks.into_iter().map(Blocks::into_sums).collect()
    };
    let parts: Vec<Vec<Vec<T::C>>> = if tasks > 1 {
        (0..tasks).into_par_iter().map(task).collect()
    } else {
        vec![task(0)]
    };
    for (c, d) in dst.iter_mut().enumerate() {
        let mut sums: Vec<T::C> = parts.iter().flat_map(|p| p[c].iter().copied()).collect();
        d.write(T::narrow(tree(&mut sums)));
    }
    dst.len()
}

/// Rows `a0 .. a0 + count` of a view (its dim 0; a rank-0 view is its one row).
fn narrow_rows(l: &Layout, a0: usize, count: usize) -> Layout {
    if l.dims().is_empty() {
        return l.clone();
    }
    let mut dims = l.dims().to_vec();
    dims[0] = count;
    let start = l.start_offset() + a0 * l.stride()[0];
    Layout::new(dims.into(), l.stride().to_vec(), start)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `y = prelu(x, w)`: a new contiguous storage of x's `n` elements.
pub(crate) fn forward(
    (x, lx): (&CpuStorage, &Layout),
    (w, lw): (&CpuStorage, &Layout),
    ch: Channels,
    n: usize,
) -> Result<CpuStorage> {
    use CpuStorage as S;
    let wn = ch.channels;
    Ok(match (x, w) {
        (S::F16(x), S::F16(w)) => S::F16(fwd(x, lx, &slopes(w, lw, wn), ch, n)?),
        (S::BF16(x), S::BF16(w)) => S::BF16(fwd(x, lx, &slopes(w, lw, wn), ch, n)?),
        (S::F32(x), S::F32(w)) => S::F32(fwd(x, lx, &slopes(w, lw, wn), ch, n)?),
        (S::F64(x), S::F64(w)) => S::F64(fwd(x, lx, &slopes(w, lw, wn), ch, n)?),
        (x, _) => return Err(unsupported(x.dtype(), Op::Prelu)),
    })
}

fn bwd<T: SliceKernel>(
    x: (&[T], &Layout),
    (w, lw): (&[T], &Layout),
    dy: (&[T], &Layout),
    ch: Channels,
    n: usize,
) -> Result<Vec<T>> {
    let slopes = slopes(w, lw, ch.channels);
    alloc_with(n + ch.channels, Op::PreluBwd, |out| {
        let (out_dx, out_dw) = out.split_at_mut(n);
        dx(x, dy, &slopes, ch, out_dx) + dw(x, dy, ch, n, out_dw)
    })
}

/// PReLU's gradients from `(x, w, dy)`: one new contiguous storage of `n + channels` elements,
/// `dx` (x's `n` elements in logical order) followed by `dweight` (the weight's elements in its
/// logical order).
pub(crate) fn backward(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    dy: (&CpuStorage, &Layout),
    ch: Channels,
    n: usize,
) -> Result<CpuStorage> {
    use CpuStorage as S;
    Ok(match (x.0, w.0, dy.0) {
        (S::F16(a), S::F16(b), S::F16(c)) => S::F16(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n)?),
        (S::BF16(a), S::BF16(b), S::BF16(c)) => S::BF16(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n)?),
        (S::F32(a), S::F32(b), S::F32(c)) => S::F32(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n)?),
        (S::F64(a), S::F64(b), S::F64(c)) => S::F64(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n)?),
        (s, _, _) => return Err(unsupported(s.dtype(), Op::PreluBwd)),
    })
}
