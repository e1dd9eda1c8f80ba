//! LeakyReLU on Metal: binds the arguments of `leaky_relu_{fwd,bwd,inplace}_*` over validated
//! layouts. The slope is passed as its f32 bits: the shader declares it `constant uint &a` (it
//! decides signs and products on the bits, since Apple GPUs flush f32 subnormals).

use super::{at_offset, launch, output, strides};
use crate::base::{Op, Slope};
use candle_core::{Layout, MetalStorage, Result};
use candle_metal_kernels::{set_params, Output};

/// `y = leaky_relu(x)`: a new contiguous storage of the view's `n` elements.
pub(crate) fn forward(
    slope: Slope,
    s: &MetalStorage,
    l: &Layout,
    n: usize,
) -> Result<MetalStorage> {
    let y = output(s, n, Op::Fwd)?;
    launch(Op::Fwd, s, &[l], n, |e, dims, strided| {
        let (x, sx) = (at_offset(s, l), strides(l, strided));
        let y = Output::new(y.buffer());
        // `slope.f32.to_bits()`: the shader's `constant uint &a`.
        let a = slope.f32.to_bits();
        set_params!(e, (n, dims.len(), dims, sx, a, &x, y));
    })?;
    Ok(y)
}

/// `dx` from `x` and `dy` (same dtype and dims, any layouts): a new contiguous storage.
pub(crate) fn backward(
    slope: Slope,
    (x, lx): (&MetalStorage, &Layout),
    (dy, ldy): (&MetalStorage, &Layout),
    n: usize,
) -> Result<MetalStorage> {
    let dx = output(x, n, Op::Bwd)?;
    launch(Op::Bwd, x, &[lx, ldy], n, |e, dims, strided| {
        let (xb, sx) = (at_offset(x, lx), strides(lx, strided));
        let (dyb, sdy) = (at_offset(dy, ldy), strides(ldy, strided));
        let dx = Output::new(dx.buffer());
        let a = slope.f32.to_bits();
        set_params!(e, (n, dims.len(), dims, sx, sdy, a, &xb, &dyb, dx));
    })?;
    Ok(dx)
}

/// `x = leaky_relu(x)` for every element of the view, whose elements do not overlap.
pub(crate) fn forward_inplace(
    slope: Slope,
    s: &mut MetalStorage,
    l: &Layout,
    n: usize,
) -> Result<()> {
    let s = &*s;
    launch(Op::Inplace, s, &[l], n, |e, dims, strided| {
        let (x, sx) = (at_offset(s, l), strides(l, strided));
        let x = Output::from_buffer_offset(&x);
        let a = slope.f32.to_bits();
        set_params!(e, (n, dims.len(), dims, sx, a, x));
    })
}
