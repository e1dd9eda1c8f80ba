//! The dispatch plan of the Metal kernels (names, tiling, grid), free of Metal types so that the
//! host harness (`tests/metal_host.rs`) runs exactly this code against the shader on any machine.

use crate::index_width::IndexWidth;
use candle_core::{DType, Error, Layout, Result};

/// Which kernel family of `kernels/leaky_relu.metal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `y = leaky_relu(x)` into a new contiguous buffer.
    Fwd,
    /// `dx = leaky_relu_grad(x, dy)` into a new contiguous buffer.
    Bwd,
    /// `x = leaky_relu(x)` through the layout.
    Inplace,
}

/// The exported kernel name, e.g. `leaky_relu_bwd_bf16_strided`; Metal has no f64 and the op
/// knows no other dtype, so anything else is refused with `UnsupportedDTypeForOp` naming `op`.
pub fn kernel_name(kind: Kind, dtype: DType, strided: bool, op: &'static str) -> Result<String> {
    let kind = match kind {
        Kind::Fwd => "fwd",
        Kind::Bwd => "bwd",
        Kind::Inplace => "inplace",
    };
    let dtype = match dtype {
        DType::F32 | DType::F16 | DType::BF16 => dtype.as_str(),
        _ => return Err(Error::UnsupportedDTypeForOp(dtype, op).bt()),
    };
    let strided = if strided { "_strided" } else { "" };
    Ok(format!("leaky_relu_{kind}_{dtype}{strided}"))
}

/// Elements per thread, the shader's `work_per_thread<T>()` (candle's `get_tile_size`).
pub fn work_per_thread(dtype_size: usize) -> usize {
    (8 / dtype_size).max(1)
}

/// `(threadgroups, threads per threadgroup)` for `n` elements, as candle's `linear_split` over
/// `div_ceil(n, W)` tiles; `(0, 0)` for `n = 0`: nothing to dispatch (`linear_split` would divide
/// by zero). Thread ids are 32-bit in Metal: more than 2^32 - 1 tiles are refused, and every
/// thread of the grid, the tiles rounded up to whole threadgroups, has an id below 2^32. Where
/// `linear_split`'s width, `min(max_threads, tiles)`, would round past 2^32 threads (a width that
/// is not a power of two, near the limit), the width is the largest power of two at most
/// `max_threads`, which divides 2^32.
pub fn grid(n: usize, dtype_size: usize, max_threads: usize, op: &str) -> Result<(usize, usize)> {
    if n == 0 {
        return Ok((0, 0));
    }
    let tiles = n.div_ceil(work_per_thread(dtype_size));
    if tiles > u32::MAX as usize {
        return Err(Error::msg(format!(
            "{op}: {n} elements exceed the Metal grid (at most 2^32 - 1 threads of {} elements)",
            work_per_thread(dtype_size)
        )));
    }
    let width = max_threads.clamp(1, tiles);
    let threads = |w: usize| tiles.div_ceil(w) as u64 * w as u64;
    let width = if threads(width) <= 1 << 32 {
        width
    } else {
        1 << width.ilog2()
    };
    Ok((tiles.div_ceil(width), width))
}

/// The kernel that runs `kind` over `layouts` (the operands' layouts, one shape): the contiguous
/// kernel of [`kernel_name`] when every layout is contiguous, else its strided kernel with the
/// index width of the walk (see [`strided_kernel_name`]).
pub fn launch_kernel_name(
    kind: Kind,
    dtype: DType,
    layouts: &[&Layout],
    op: &'static str,
) -> Result<String> {
    if layouts.iter().all(|l| l.is_contiguous()) {
        return kernel_name(kind, dtype, false, op);
    }
    let n = layouts.first().map_or(0, |l| l.shape().elem_count());
    strided_kernel_name(kind, dtype, IndexWidth::of(n, layouts), op)
}

/// The strided kernel of `kind` and `dtype` walking with `width` index arithmetic, e.g.
/// `leaky_relu_bwd_bf16_strided_u32`.
pub fn strided_kernel_name(
    kind: Kind,
    dtype: DType,
    width: IndexWidth,
    op: &'static str,
) -> Result<String> {
    Ok(kernel_name(kind, dtype, true, op)? + width.suffix())
}
