//! The launch plan of the PReLU kernels (`kernels/prelu.cu`): the layout arguments, the grids and
//! the backward's tree passes. Free of CUDA types, so that the host harness
//! (`tests/prelu_host.rs`) runs exactly this code against the kernel source. It imports only the
//! ground floor (`crate::base`).

use crate::base::Channels;
use candle_core::Layout;

/// Threads per block (a multiple of [`LANES`]: a half-warp never straddles two blocks).
pub(crate) const THREADS: usize = 256;
/// Terms per block of the summation order.
pub(crate) const BLOCK: usize = 256;
/// Lanes per block: the threads of one backward work item (a half-warp).
pub(crate) const LANES: usize = 16;
/// Block sums one thread of a tree pass reduces (a power of two).
pub(crate) const GROUP: usize = 32;

/// The layout arguments `(nd, wd, info)`: `nd` is x's rank when x (or dy) must be walked through
/// its strides, else 0 (contiguous from the bound pointer on); `wd` the same of the weight.
/// `info` holds x's dims and strides (and dy's strides) when `nd > 0`, then the weight's dims
/// and strides when `wd > 0`; empty (a null pointer) when both are contiguous.
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
/// pass reads, in order (`m` block sums first, then `ceil(m / GROUP)`, ...), the last pass
/// reading at most [`GROUP`] and writing dweight. Empty when every channel has one block: the
/// first kernel writes dweight itself.
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

/// Blocks of [`THREADS`] for `threads` threads, at most `resident` (the grid-stride loops cover
/// the rest), at least one.
pub(crate) fn blocks(threads: usize, resident: usize) -> usize {
    threads.div_ceil(THREADS).min(resident).max(1)
}
