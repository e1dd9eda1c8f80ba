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
use super::simd::{Periodic, SliceKernel};
use super::tree::{tree, Blocks, Columns, BLOCK};
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

/// The weight's `wn` elements in its logical order.
fn logical<T: Copy>(w: &[T], lw: &Layout, wn: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(wn);
    if wn == 0 {
        return out;
    }
    let walk = Walk::new([lw]);
    let ([s], len) = (walk.inner, walk.len);
    for [o] in walk.runs(0) {
        out.extend((0..len).map(|i| w[o + i * s]));
    }
    out
}

/// The slopes of x's elements as the kernels read them: `C(w[c])` per channel, and for one
/// slope per element of a row (`inner == 1`, x of shape `(N, C)` or a weight of x's own shape)
/// the same slopes repeated along a run ([`Periodic`]).
struct ChannelSlopes<T: Rule> {
    each: Vec<T::C>,
    periodic: Option<Periodic<T>>,
}

impl<T: Rule> ChannelSlopes<T> {
    /// `periodic`: whether the caller has a periodic path for this layout (the backward of a
    /// weight of x's own shape has not: one term per channel).
    fn new(w: &[T], lw: &Layout, ch: Channels, periodic: bool) -> Self {
        let w = logical(w, lw, ch.channels);
        let periodic = match periodic && ch.inner == 1 && ch.channels > 1 {
            true => Periodic::new(&w),
            false => None,
        };
        Self {
            each: w.iter().map(|w| w.up()).collect(),
            periodic,
        }
    }
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

/// `dst[q] = bwd(x[q * sx], dy[q * sg], slope)` for one segment of a strided run (the callers
/// hand unit-stride runs of one slope to the slice kernels themselves).
#[inline]
fn bwd_segment<T: SliceKernel>(
    (x, ox, sx): (&[T], usize, usize),
    (dy, og, sg): (&[T], usize, usize),
    d: &mut [MaybeUninit<T>],
    slopes: Slopes<'_, T::C>,
) {
    match slopes {
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
    sl: &ChannelSlopes<T>,
    ch: Channels,
    n: usize,
) -> Result<Vec<T>> {
    let slopes = &sl.each[..];
    alloc_with(n, Op::Prelu, |dst| {
        if channel_last(ch, &[lx]) {
            fwd_channel_last(x, lx, slopes, ch, dst)
        } else if let Some((o, e)) = lx.contiguous_offsets() {
            let x = &x[o..e];
            let body = |t: usize, d: &mut [MaybeUninit<T>]| {
                let i0 = t * TASK;
                if let Some(p) = &sl.periodic {
                    return T::fwd_periodic_run(&x[i0..i0 + d.len()], d, p, i0);
                }
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
                    match &sl.periodic {
                        Some(p) if s == 1 => T::fwd_periodic_run(&x[o..o + len], d, p, i0),
                        _ => segments(i0, len, ch, slopes, |k, seg, a| {
                            fwd_segment(x, o + k * s, s, &mut d[k..k + seg], a)
                        }),
                    }
                    written += len;
                }
                written
            })
        }
    })
}

/// Whether the views keep a row's channels next to each other in memory (dim 1 of stride 1, as a
/// channel-last tensor seen in NCHW order) while the elements of one channel are apart: then the
/// channel-last paths walk memory in order, all channels at once.
fn channel_last(ch: Channels, layouts: &[&Layout]) -> bool {
    ch.channels > 1
        && ch.inner > 1
        && layouts.iter().all(|l| {
            let s = l.stride();
            s.len() >= 3 && s[1] == 1 && !l.is_contiguous()
        })
}

/// Rows of `rows_per_task` rows (dim 0) of x, and a walk of one row's positions (the dims after
/// the channel dim) in logical order, for the views in `layouts` (one shape).
struct RowWalk<const K: usize> {
    rest: Walk<K>,
    row_strides: [usize; K],
    starts: [usize; K],
}

impl<const K: usize> RowWalk<K> {
    fn new(layouts: [&Layout; K]) -> Self {
        let rest: [Layout; K] = std::array::from_fn(|k| {
            let l = layouts[k];
            Layout::new(l.dims()[2..].into(), l.stride()[2..].to_vec(), 0)
        });
        Self {
            rest: Walk::new(std::array::from_fn(|k| &rest[k])),
            row_strides: std::array::from_fn(|k| layouts[k].stride()[0]),
            starts: std::array::from_fn(|k| layouts[k].start_offset()),
        }
    }

    /// Calls `f(p0, offsets)` for the positions of row `a` in order, up to [`TILE`] at a time:
    /// `p0` is the first position, `offsets` the storage offset of each position's first
    /// channel in each view.
    fn tiles(&self, a: usize, mut f: impl FnMut(usize, &[[usize; K]])) {
        let (len, inner) = (self.rest.len, self.rest.inner);
        let mut offs: Vec<[usize; K]> = Vec::with_capacity(TILE);
        let mut p0 = 0;
        for run in self.rest.runs(0) {
            for q in 0..len {
                offs.push(std::array::from_fn(|k| {
                    self.starts[k] + a * self.row_strides[k] + run[k] + q * inner[k]
                }));
                if offs.len() == TILE {
                    f(p0, &offs);
                    p0 += TILE;
                    offs.clear();
                }
            }
        }
        if !offs.is_empty() {
            f(p0, &offs);
        }
    }
}

/// Positions per tile of the channel-last paths: a tile's channels are transposed through a
/// small buffer, so that each channel's outputs are written as one contiguous run (not one
/// scattered element per channel and position, a different page each).
const TILE: usize = 64;

/// The forward of a channel-last view, tile by tile: each tile's positions read with all their
/// channels, transposed, and each channel's run of outputs written through the slice kernel.
/// Rows split across threads. Returns the elements written.
fn fwd_channel_last<T: SliceKernel>(
    x: &[T],
    lx: &Layout,
    slopes: &[T::C],
    ch: Channels,
    dst: &mut [MaybeUninit<T>],
) -> usize {
    let (c_count, inner) = (ch.channels, ch.inner);
    let per_row = c_count * inner;
    let walk = RowWalk::new([lx]);
    let body = |a0: usize, out: &mut [MaybeUninit<T>]| {
        let mut tile = Tile::new(c_count, x[0]);
        let mut written = 0;
        for (r, row) in out.chunks_exact_mut(per_row).enumerate() {
            walk.tiles(a0 + r, |p0, offs| {
                let xs = tile.load(x, offs.iter().map(|o| o[0]));
                for (c, &s) in slopes.iter().enumerate() {
                    let d = &mut row[c * inner + p0..][..offs.len()];
                    T::fwd_run(&xs[c * TILE..][..offs.len()], d, s);
                    written += d.len();
                }
            });
        }
        written
    };
    let rows_per_task = (TASK / per_row).max(1);
    if dst.len() >= PAR_MIN && dst.len() > rows_per_task * per_row {
        (dst.par_chunks_mut(rows_per_task * per_row).enumerate())
            .map(|(t, d)| body(t * rows_per_task, d))
            .sum()
    } else {
        body(0, dst)
    }
}

/// A tile of `TILE` positions by C channels, stored channel by channel.
struct Tile<T> {
    buf: Vec<T>,
    c_count: usize,
}

impl<T: Copy> Tile<T> {
    fn new(c_count: usize, fill: T) -> Self {
        Self {
            buf: vec![fill; TILE * c_count],
            c_count,
        }
    }

    /// The channels of the positions whose first channel is at `offs`, transposed: channel `c`
    /// of position `j` at `c * TILE + j`.
    fn load(&mut self, src: &[T], offs: impl Iterator<Item = usize>) -> &[T] {
        for (j, o) in offs.enumerate() {
            for (c, &v) in src[o..o + self.c_count].iter().enumerate() {
                self.buf[c * TILE + j] = v;
            }
        }
        &self.buf
    }
}

/// The backward of channel-last views of x and dy, tile by tile: `dx` as the forward writes `y`,
/// and each channel's run of terms pushed to its running sum. Threads split rows where every
/// channel's terms start a block. Returns the elements written.
fn bwd_channel_last<T: SliceKernel>(
    (x, lx): (&[T], &Layout),
    (dy, ldy): (&[T], &Layout),
    slopes: &[T::C],
    ch: Channels,
    out_dx: &mut [MaybeUninit<T>],
    out_dw: &mut [MaybeUninit<T>],
) -> usize {
    let (c_count, inner) = (ch.channels, ch.inner);
    let per_row = c_count * inner;
    let n = out_dx.len();
    let rows = n / per_row;
    let rows_per_task = rows_per_task(n, rows, per_row, inner);
    let walk = RowWalk::new([lx, ldy]);
    // One task: dx of its rows and the block sums of every channel.
    let task = |a0: usize, out: &mut [MaybeUninit<T>]| -> (usize, Vec<Vec<T::C>>) {
        let (mut tx, mut tg) = (Tile::new(c_count, x[0]), Tile::new(c_count, dy[0]));
        let mut written = 0;
        let mut blocks: Vec<Blocks<T::C>> = (0..c_count).map(|_| Blocks::new()).collect();
        let mut terms: Vec<T::C> = Vec::with_capacity(TILE);
        for (r, row) in out.chunks_exact_mut(per_row).enumerate() {
            walk.tiles(a0 + r, |p0, offs| {
                let m = offs.len();
                let xs = tx.load(x, offs.iter().map(|o| o[0]));
                let gs = tg.load(dy, offs.iter().map(|o| o[1]));
                for (c, (&s, b)) in slopes.iter().zip(&mut blocks).enumerate() {
                    let (xc, gc) = (&xs[c * TILE..][..m], &gs[c * TILE..][..m]);
                    T::bwd_run(xc, gc, &mut row[c * inner + p0..][..m], s);
                    written += m;
                    terms.clear();
                    terms.resize(m, <T::C as super::tree::Acc>::POS_ZERO);
                    T::terms_run(xc, gc, &mut terms);
                    b.push(&terms);
                }
            });
        }
        (written, blocks.into_iter().map(Blocks::into_sums).collect())
    };
    let chunk = rows_per_task * per_row;
    let parts: Vec<(usize, Vec<Vec<T::C>>)> = if chunk < n {
        (out_dx.par_chunks_mut(chunk).enumerate())
            .map(|(t, d)| task(t * rows_per_task, d))
            .collect()
    } else {
        vec![task(0, out_dx)]
    };
    let mut written: usize = parts.iter().map(|p| p.0).sum();
    for (c, d) in out_dw.iter_mut().enumerate() {
        let mut sums: Vec<T::C> = parts.iter().flat_map(|p| p.1[c].iter().copied()).collect();
        d.write(T::narrow(tree(&mut sums)));
        written += 1;
    }
    written
}

/// The backward for a weight of x's own shape (one term per channel): `dx[i]` and
/// `dw[i] = R_T(t_i)` (a single term is its own sum) in one walk. Returns the elements written.
fn bwd_each<T: SliceKernel>(
    (x, lx): (&[T], &Layout),
    (dy, ldy): (&[T], &Layout),
    slopes: &[T::C],
    out_dx: &mut [MaybeUninit<T>],
    out_dw: &mut [MaybeUninit<T>],
) -> usize {
    let w = Walk::new([lx, ldy]);
    let ([sx, sg], len) = (w.inner, w.len);
    let mut i = 0;
    for [ox, og] in w.runs(0) {
        for q in 0..len {
            let (x, dy) = (x[ox + q * sx], dy[og + q * sg]);
            out_dx[i].write(x.bwd(dy, slopes[i]));
            out_dw[i].write(T::narrow(x.term(dy)));
            i += 1;
        }
    }
    2 * i
}

/// The backward in one pass over x and dy: `dx` into `out_dx` (x's `n` elements) and the
/// weight gradient `dw[c] = R_T(S_c)` into `out_dw`, `S_c` the channel's terms summed in the
/// order of `tree.rs`. Threads take whole rows of x (its dim 0) and the matching rows of `dx`,
/// splitting only where every channel's terms start a block (before row `a` with
/// `a * terms_per_row` a multiple of BLOCK), so the sums are the same for any thread count.
/// Returns the elements written.
fn bwd_rows<T: SliceKernel>(
    (x, lx): (&[T], &Layout),
    (dy, ldy): (&[T], &Layout),
    sl: &ChannelSlopes<T>,
    ch: Channels,
    out_dx: &mut [MaybeUninit<T>],
    out_dw: &mut [MaybeUninit<T>],
) -> usize {
    let slopes = &sl.each[..];
    let n = out_dx.len();
    let rows = lx.dims().first().copied().unwrap_or(1);
    let per_row = n / rows;
    let terms_per_row = if ch.channels == 1 { per_row } else { ch.inner };
    let rows_per_task = rows_per_task(n, rows, per_row, terms_per_row);
    // One task: dx of rows `a0 ..` (its chunk of `out_dx`) and every channel's block sums.
    let task = |t: usize, out: &mut [MaybeUninit<T>]| -> (usize, Vec<Vec<T::C>>) {
        let a0 = t * rows_per_task;
        let count = out.len() / per_row;
        let (sub_x, sub_dy) = (narrow_rows(lx, a0, count), narrow_rows(ldy, a0, count));
        let w = Walk::new([&sub_x, &sub_dy]);
        let ([sx, sg], len) = (w.inner, w.len);
        if let Some(p) = &sl.periodic {
            if sx == 1 && sg == 1 && len.is_multiple_of(p.period()) {
                return rows_periodic((x, dy), w.runs(0), len, p, out);
            }
        }
        let mut blocks: Vec<Blocks<T::C>> = (0..ch.channels).map(|_| Blocks::new()).collect();
        let mut terms: Vec<T::C> = Vec::new();
        let mut piece = [<T::C as super::tree::Acc>::POS_ZERO; PIECE];
        let mut piece_sums = [<T::C as super::tree::Acc>::POS_ZERO; PIECE / BLOCK];
        let mut written = 0;
        for (r, [ox, og]) in w.runs(0).enumerate() {
            let (i0, base) = (a0 * per_row + r * len, r * len);
            segments(i0, len, ch, slopes, |k, seg, a| {
                let (xk, gk) = (ox + k * sx, og + k * sg);
                let d = &mut out[base + k..base + k + seg];
                written += seg;
                if let (Slopes::One(a), 1, 1) = (a, sx, sg) {
                    // One channel's unit-stride run: dx and then the block sums a piece at a
                    // time, so that the sums read x and dy while they are still in the cache.
                    let c = ((i0 + k) / ch.inner) % ch.channels;
                    for p in (0..seg).step_by(PIECE) {
                        let m = PIECE.min(seg - p);
                        let (xs, gs) = (&x[xk + p..xk + p + m], &dy[gk + p..gk + p + m]);
                        T::bwd_run(xs, gs, &mut d[p..p + m], a);
                        // Whole blocks from a block start are summed without storing their
                        // terms; the rest go through the channel's partial block.
                        let whole = match blocks[c].at_block_start() {
                            true => m / BLOCK,
                            false => 0,
                        };
                        if whole > 0 {
                            let sums = &mut piece_sums[..whole];
                            T::block_sums_run(xs, gs, sums);
                            blocks[c].push_sums(sums);
                        }
                        let (xs, gs) = (&xs[whole * BLOCK..], &gs[whole * BLOCK..]);
                        T::terms_run(xs, gs, &mut piece[..xs.len()]);
                        blocks[c].push(&piece[..xs.len()]);
                    }
                    return;
                }
                bwd_segment((x, xk, sx), (dy, gk, sg), d, a);
                if ch.inner == 1 && ch.channels > 1 {
                    // One element per channel here: the segment runs across a row.
                    let c0 = (i0 + k) % ch.channels;
                    for q in 0..seg {
                        let t = x[xk + q * sx].term(dy[gk + q * sg]);
                        blocks[c0 + q].push_one(t);
                    }
                } else {
                    // A strided run of one channel.
                    let c = ((i0 + k) / ch.inner) % ch.channels;
                    terms.clear();
                    let pairs = (0..seg).map(|q| (x[xk + q * sx], dy[gk + q * sg]));
                    terms.extend(pairs.map(|(x, g)| x.term(g)));
                    blocks[c].push(&terms);
                }
            });
        }
        (written, blocks.into_iter().map(Blocks::into_sums).collect())
    };
    let chunk = rows_per_task * per_row;
    let parts: Vec<(usize, Vec<Vec<T::C>>)> = if chunk < n {
        out_dx
            .par_chunks_mut(chunk)
            .enumerate()
            .map(|(t, d)| task(t, d))
            .collect()
    } else {
        vec![task(0, out_dx)]
    };
    let mut written: usize = parts.iter().map(|p| p.0).sum();
    for (c, d) in out_dw.iter_mut().enumerate() {
        let mut sums: Vec<T::C> = parts.iter().flat_map(|p| p.1[c].iter().copied()).collect();
        d.write(T::narrow(tree(&mut sums)));
        written += 1;
    }
    written
}

/// Elements per piece of a unit-stride channel run in the backward: its dx and then its block
/// sums are formed a piece at a time (x and dy of a piece, 32 KiB in f32, are still in the cache
/// for the second pass); a multiple of BLOCK, so whole blocks are summed straight from x and dy.
/// Larger than the L1 on purpose: 4096 measured faster than 1024 and 256 (BENCHMARKS.md).
const PIECE: usize = 4096;

/// Terms per `Columns` batch: `terms_run` forms this many (whole rows, at least one) at a time.
const TERMS_BATCH: usize = 4096;

/// The backward of rows of one slope per element (x of shape `(N, C)`), unit-stride runs of whole
/// rows (`len` a multiple of C, each run starting a row): `dx` of each run in one call, and the
/// terms a batch of rows at a time, each row one term of every channel, summed by [`Columns`].
/// Returns the elements written and every channel's block sums.
fn rows_periodic<T: SliceKernel>(
    (x, dy): (&[T], &[T]),
    runs: impl Iterator<Item = [usize; 2]>,
    len: usize,
    p: &Periodic<T>,
    out: &mut [MaybeUninit<T>],
) -> (usize, Vec<Vec<T::C>>) {
    let c = p.period();
    let batch = (TERMS_BATCH / c).max(1) * c;
    let mut cols = Columns::new(c);
    let mut terms = vec![<T::C as super::tree::Acc>::POS_ZERO; batch.min(len)];
    let mut written = 0;
    for (r, [ox, og]) in runs.enumerate() {
        let (xr, gr) = (&x[ox..ox + len], &dy[og..og + len]);
        let d = &mut out[r * len..(r + 1) * len];
        T::bwd_periodic_run(xr, gr, d, p, 0);
        written += d.len();
        for (xb, gb) in xr.chunks(batch).zip(gr.chunks(batch)) {
            let t = &mut terms[..xb.len()];
            T::terms_run(xb, gb, t);
            t.chunks_exact(c).for_each(|row| cols.push_row(row));
        }
    }
    (written, cols.into_sums())
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

/// Rows of x per thread in the backward: all `rows` below the threading threshold, else about
/// `TASK` elements' worth, rounded up so that every task's first row starts a block of every
/// channel's terms (`rows_per_task * terms_per_row` a multiple of BLOCK). Then the block sums
/// of the tasks, concatenated, are those of one sequential pass: the same bits for any thread
/// count.
fn rows_per_task(n: usize, rows: usize, per_row: usize, terms_per_row: usize) -> usize {
    if n < PAR_MIN {
        return rows;
    }
    let step = BLOCK / gcd(terms_per_row, BLOCK);
    (TASK / per_row).max(1).next_multiple_of(step)
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
    Ok(match (x, w) {
        (S::F16(x), S::F16(w)) => S::F16(fwd(x, lx, &ChannelSlopes::new(w, lw, ch, true), ch, n)?),
        (S::BF16(x), S::BF16(w)) => {
            S::BF16(fwd(x, lx, &ChannelSlopes::new(w, lw, ch, true), ch, n)?)
        }
        (S::F32(x), S::F32(w)) => S::F32(fwd(x, lx, &ChannelSlopes::new(w, lw, ch, true), ch, n)?),
        (S::F64(x), S::F64(w)) => S::F64(fwd(x, lx, &ChannelSlopes::new(w, lw, ch, true), ch, n)?),
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
    let sl = ChannelSlopes::new(w, lw, ch, ch.outer * ch.inner != 1);
    let slopes = &sl.each[..];
    alloc_with(n + ch.channels, Op::PreluBwd, |out| {
        let (out_dx, out_dw) = out.split_at_mut(n);
        if n == 0 {
            // Every channel is empty: S = +0.0.
            for d in out_dw.iter_mut() {
                d.write(T::narrow(<T::C as super::tree::Acc>::POS_ZERO));
            }
            out_dw.len()
        } else if ch.outer * ch.inner == 1 {
            bwd_each(x, dy, slopes, out_dx, out_dw)
        } else if channel_last(ch, &[x.1, dy.1]) {
            bwd_channel_last(x, dy, slopes, ch, out_dx, out_dw)
        } else {
            bwd_rows(x, dy, &sl, ch, out_dx, out_dw)
        }
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
