//! The dispatch plan of the Metal kernels (names, tiling, grid), free of Metal types so that the
//! host harness (`tests/metal_host.rs`) runs exactly this code against the shader on any machine.
//! It imports only the ground floor (`crate::base`, `crate::index_width`), which the harness
//! compiles alongside.

use crate::base::Op;
use crate::index_width::IndexWidth;
use candle_core::{DType, Error, Layout, Result};

/// The contiguous kernel's name, e.g. `leaky_relu_bwd_bf16`: the op's kernel stem and the dtype
/// (one the op has validated for Metal: f32, f16 or bf16). The strided kernels add
/// `_strided_u32` / `_strided_u64` ([`strided_kernel_name`]).
pub(crate) fn kernel_name(op: Op, dtype: DType) -> String {
    format!("{}_{}", op.kernel(), dtype.as_str())
}

/// The kernel that runs `op` over `layouts` (the operands' validated layouts, one shape of `n`
/// elements): the contiguous kernel when every layout is contiguous, else the strided kernel
/// with the index width of the walk.
pub(crate) fn launch_kernel_name(op: Op, dtype: DType, layouts: &[&Layout], n: usize) -> String {
    if layouts.iter().all(|l| l.is_contiguous()) {
        return kernel_name(op, dtype);
    }
    strided_kernel_name(op, dtype, IndexWidth::of(n, layouts))
}

/// The strided kernel of `op` and `dtype` walking with `width` index arithmetic, e.g.
/// `leaky_relu_bwd_bf16_strided_u32`.
pub(crate) fn strided_kernel_name(op: Op, dtype: DType, width: IndexWidth) -> String {
    format!("{}_strided{}", kernel_name(op, dtype), width.suffix())
}

/// Elements per thread, the shader's `work_per_thread<T>()` (candle's `get_tile_size`).
pub(crate) fn work_per_thread(dtype_size: usize) -> usize {
    (8 / dtype_size).max(1)
}

/// `(threadgroups, threads per threadgroup)` for `n` elements, as candle's `linear_split` over
/// `div_ceil(n, W)` tiles; `(0, 0)` for `n = 0`: nothing to dispatch (`linear_split` would divide
/// by zero). Thread ids are 32-bit in Metal: more than 2^32 - 1 tiles are refused, and every
/// thread of the grid, the tiles rounded up to whole threadgroups, has an id below 2^32. Where
/// `linear_split`'s width, `min(max_threads, tiles)`, would round past 2^32 threads (a width that
/// is not a power of two, near the limit), the width is the largest power of two at most
/// `max_threads`, which divides 2^32.
pub(crate) fn grid(
    n: usize,
    dtype_size: usize,
    max_threads: usize,
    op: Op,
) -> Result<(usize, usize)> {
    if n == 0 {
        return Ok((0, 0));
    }
    let tiles = n.div_ceil(work_per_thread(dtype_size));
    if tiles > u32::MAX as usize {
        return Err(Error::msg(format!(
            "{}: {n} elements exceed the Metal grid (at most 2^32 - 1 threads of {} elements)",
            op.name(),
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
