//! The dispatch plan of the PReLU shader (`kernels/prelu.metal`): the layout arguments, the
//! threadgroups and the backward's tree passes. Free of Metal types, so that the host harness
//! (`tests/prelu_host.rs`) runs exactly this code against the shader. It imports only the ground
//! floor (`crate::base`); the kernel names are `super::super::plan::kernel_name`'s.

use crate::base::{Channels, Op};
use candle_core::{DType, Error, Layout, Result};

/// Terms per block of the summation order.
pub(crate) const BLOCK: usize = 256;
/// Lanes per block: the threads of one backward work item.
pub(crate) const LANES: usize = 16;
/// Block sums one thread of a tree pass reduces (a power of two).
pub(crate) const GROUP: usize = 32;
/// Threads of a SIMD-group on Apple GPUs: threadgroups are made of whole SIMD-groups, so that
/// every thread of a SIMD-group takes part in each shuffle.
pub(crate) const SIMD: usize = 32;
/// The widest threadgroup the plan uses.
pub(crate) const MAX_WIDTH: usize = 256;
/// The most threadgroups of a dispatch: the grid-stride loops cover any element count, and thread
/// ids (32-bit in Metal) stay far below 2^32.
pub(crate) const MAX_GROUPS: usize = 1 << 16;

/// The exported name of the backward's tree pass for `dtype`, e.g. `prelu_bwd_tree_f16`.
pub(crate) fn tree_name(dtype: DType) -> String {
    format!("{}_tree_{}", Op::PreluBwd.kernel(), dtype.as_str())
}

/// Threads per threadgroup: whole SIMD-groups, at most [`MAX_WIDTH`] and the pipeline's maximum
/// `max_threads`; an error if that is below one SIMD-group.
pub(crate) fn width(max_threads: usize, op: Op) -> Result<usize> {
    let width = max_threads.min(MAX_WIDTH) / SIMD * SIMD;
    if width == 0 {
        return Err(Error::msg(format!(
            "{}: the pipeline allows {max_threads} threads per threadgroup, fewer than the \
             {SIMD} the kernel needs",
            op.name()
        )));
    }
    Ok(width)
}

/// Threadgroups of `width` threads for `threads` threads' work: at least one, at most
/// [`MAX_GROUPS`].
pub(crate) fn groups(threads: usize, width: usize) -> usize {
    threads.div_ceil(width.max(1)).clamp(1, MAX_GROUPS)
}

/// The layout arguments `(nd, wd, info)`: `nd` is x's rank when x (or dy) must be walked through
/// its strides, else 0 (contiguous from the bound offset on); `wd` the same of the weight. `info`
/// holds x's dims and strides (and dy's strides) when `nd > 0`, then the weight's dims and
/// strides when `wd > 0`; a single 0 when both are contiguous (Metal binds no empty array).
pub(crate) fn info(x: &Layout, dy: Option<&Layout>, w: &Layout) -> (usize, usize, Vec<usize>) {
    let mut info = Vec::new();
    let strided = !x.is_contiguous() || dy.is_some_and(|l| !l.is_contiguous());
    let nd = if strided {
        info.extend_from_slice(x.dims());
        info.extend_from_slice(x.stride());
        if let Some(dy) = dy {
            info.extend_from_slice(dy.stride());
        }
        x.dims().len()
    } else {
        0
    };
    let wd = if w.is_contiguous() {
        0
    } else {
        info.extend_from_slice(w.dims());
        info.extend_from_slice(w.stride());
        w.dims().len()
    };
    if info.is_empty() {
        info.push(0);
    }
    (nd, wd, info)
}

/// Terms per channel of x's `n > 0` elements.
fn per_channel(n: usize, ch: Channels) -> usize {
    n / ch.channels.max(1)
}

/// Threads the backward's first kernel wants for `n > 0` elements: [`LANES`] per (channel, block)
/// item, or one per element when every channel has one term (a weight of x's shape).
pub(crate) fn bwd_threads(n: usize, ch: Channels) -> usize {
    let nc = per_channel(n, ch);
    if nc == 1 {
        n
    } else {
        (ch.channels)
            .saturating_mul(nc.div_ceil(BLOCK))
            .saturating_mul(LANES)
    }
}

/// The tree passes of the backward for `n > 0` elements: the number of sums per channel each
/// pass reads, in order (`m` block sums first, then `ceil(m / GROUP)`, ...), the last reading at
/// most [`GROUP`] and writing dweight. Empty when every channel has one block: the first kernel
/// writes dweight itself.
pub(crate) fn tree_passes(n: usize, ch: Channels) -> Vec<usize> {
    let mut count = per_channel(n, ch).div_ceil(BLOCK);
    let mut passes = Vec::new();
    while count > 1 {
        passes.push(count);
        count = count.div_ceil(GROUP);
    }
    passes
}

/// Threads of a tree pass over `count` sums of each of `channels` channels.
pub(crate) fn tree_threads(channels: usize, count: usize) -> usize {
    channels.saturating_mul(count.div_ceil(GROUP))
}
