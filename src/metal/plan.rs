//! The dispatch plan of the Metal kernels (names, tiling, grid), free of Metal types so that the
//! host harness (`tests/metal_host.rs`) runs exactly this code against the shader on any machine.

use candle_core::{DType, Error, Result};

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
/// by zero). Thread ids are 32-bit in Metal: more than 2^32 - 1 tiles are refused.
pub fn grid(n: usize, dtype_size: usize, max_threads: usize, op: &str) -> Result<(usize, usize)> {
    if n == 0 {
        return Ok((0, 0));
    }
    let tiles = n.div_ceil(work_per_thread(dtype_size));
    if tiles > u32::MAX as usize {
        return Err(Error::msg(format!(
            "{op}: {n} elements exceed the Metal grid (at most 2^32 threads of {} elements)",
            work_per_thread(dtype_size)
        )));
    }
    let width = max_threads.min(tiles);
    Ok((tiles.div_ceil(width), width))
}
