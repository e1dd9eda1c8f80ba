//! The dispatch plan of the Metal kernels (names, tiling, grid), free of Metal types so that the
//! host harness (`tests/metal_host.rs`) runs exactly this code against the shader on any machine.
//! It imports only the ground floor (`crate::base`), which the harness compiles alongside.

use crate::base::Op;
use candle_core::{DType, Error, Result};

/// The exported kernel name, e.g. `leaky_relu_bwd_bf16_strided`: the op's kernel stem, the
/// dtype (one the op has validated for Metal: f32, f16 or bf16) and the layout kind.
pub(crate) fn kernel_name(op: Op, dtype: DType, strided: bool) -> String {
    let strided = if strided { "_strided" } else { "" };
    format!("{}_{}{strided}", op.kernel(), dtype.as_str())
}

/// Elements per thread, the shader's `work_per_thread<T>()` (candle's `get_tile_size`).
pub(crate) fn work_per_thread(dtype_size: usize) -> usize {
    (8 / dtype_size).max(1)
}

/// `(threadgroups, threads per threadgroup)` for `n` elements, as candle's `linear_split` over
/// `div_ceil(n, W)` tiles; `(0, 0)` for `n = 0`: nothing to dispatch (`linear_split` would divide
/// by zero). Thread ids are 32-bit in Metal: more than 2^32 - 1 tiles are refused.
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
            "{}: {n} elements exceed the Metal grid (at most 2^32 threads of {} elements)",
            op.name(),
            work_per_thread(dtype_size)
        )));
    }
    let width = max_threads.min(tiles);
    Ok((tiles.div_ceil(width), width))
}
