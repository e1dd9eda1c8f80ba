//! PReLU on Metal: the dispatches of `kernels/prelu.metal` over validated layouts (see its header
//! for the kernels, `prelu/plan.rs` for the arguments, threadgroups and tree passes).
//!
//! - Forward: one dispatch of `prelu_fwd_{dtype}`.
//! - Backward: `prelu_bwd_{dtype}` writes dx and the block sums of every channel (or dweight
//!   itself when each channel has one block), then `prelu_bwd_tree_{dtype}` passes reduce the
//!   block sums, 32 to one, the last pass writing dweight. The scratch buffers of block sums (f32
//!   bits) are allocated per call; candle's encoder orders the dispatches by their buffers (each
//!   scratch buffer and the output are bound as outputs where written, as inputs where read).
//! - The weight is read in place through its own layout (no copy).

pub(crate) mod plan;

use super::{at_offset, output, pipeline};
use crate::base::{Channels, Op};
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{DType, Error, Layout, MetalDevice, MetalStorage, Result, Shape};
use candle_metal_kernels::metal::{Buffer, ComputeCommandEncoder};
use candle_metal_kernels::utils::Input;
use candle_metal_kernels::{set_params, Output};
use objc2_metal::MTLSize;
use std::sync::Arc;

/// Encodes kernel `name` for `threads` threads' work (grid-stride loops cover the rest); `bind`
/// sets its arguments.
fn encode(
    device: &MetalDevice,
    name: &str,
    op: Op,
    threads: usize,
    bind: impl FnOnce(&ComputeCommandEncoder),
) -> Result<()> {
    let pipeline = pipeline(device, name, op)?;
    let width = plan::width(pipeline.max_total_threads_per_threadgroup(), op)?;
    let groups = plan::groups(threads, width);
    let guard = device.command_encoder()?;
    let encoder: &ComputeCommandEncoder = guard.as_ref();
    encoder.set_compute_pipeline_state(&pipeline);
    candle_metal_kernels::debug_group!(encoder, "{name} threads={threads}");
    bind(encoder);
    let size = |width| MTLSize {
        width,
        height: 1,
        depth: 1,
    };
    encoder.dispatch_thread_groups(size(groups), size(width));
    Ok(())
}

/// A scratch buffer of `len` block sums (f32 bits), written in full before it is read.
fn scratch(device: &MetalDevice, len: usize) -> Result<Arc<Buffer>> {
    (device.new_buffer_builder())
        .with_size_for(len, DType::F32)
        .with_label(Op::PreluBwd.name())
        .build()
}

/// `y = prelu(x, w)`: a new contiguous storage of x's `n` elements.
pub(crate) fn forward(
    (x, lx): (&MetalStorage, &Layout),
    (w, lw): (&MetalStorage, &Layout),
    ch: Channels,
    n: usize,
) -> Result<MetalStorage> {
    let y = output(x, n, Op::Prelu)?;
    if n == 0 {
        return Ok(y);
    }
    let (nd, wd, info) = plan::info(lx, None, lw);
    let name = super::plan::kernel_name(Op::Prelu, x.dtype());
    encode(x.device(), &name, Op::Prelu, n, |e| {
        let (xb, wb) = (at_offset(x, lx), at_offset(w, lw));
        let (channels, inner, info) = (ch.channels, ch.inner, info.as_slice());
        set_params!(
            e,
            (
                n,
                channels,
                inner,
                nd,
                wd,
                info,
                &xb,
                &wb,
                Output::new(y.buffer())
            )
        );
    })?;
    Ok(y)
}

/// PReLU's gradients from `(x, w, dy)`: one new contiguous storage of `n + channels` elements,
/// dx (x's `n` elements in logical order) followed by dweight (the weight's elements in its
/// logical order).
pub(crate) fn backward(
    (x, lx): (&MetalStorage, &Layout),
    (w, lw): (&MetalStorage, &Layout),
    (dy, ldy): (&MetalStorage, &Layout),
    ch: Channels,
    n: usize,
) -> Result<MetalStorage> {
    let device = x.device();
    let dtype = x.dtype();
    if n == 0 {
        // Every channel is empty: dweight is +0.0, whose bits are all zero in every dtype.
        return device.zeros_impl(&Shape::from(ch.channels), dtype);
    }
    let out = output(x, n + ch.channels, Op::PreluBwd)?;
    let passes = plan::tree_passes(n, ch);
    let part = match passes.first() {
        Some(&m) => Some(scratch(device, ch.channels * m)?),
        None => None,
    };
    let (nd, wd, info) = plan::info(lx, Some(ldy), lw);
    let name = super::plan::kernel_name(Op::PreluBwd, dtype);
    encode(device, &name, Op::PreluBwd, plan::bwd_threads(n, ch), |e| {
        let (xb, wb, gb) = (at_offset(x, lx), at_offset(w, lw), at_offset(dy, ldy));
        let (channels, inner, info) = (ch.channels, ch.inner, info.as_slice());
        // With one block per channel the kernel writes dweight itself (`direct`) and never
        // touches `part`, which is then bound to the output.
        let direct = u32::from(part.is_none());
        let part = part.as_deref().unwrap_or(out.buffer());
        let (dx, part) = (Output::new(out.buffer()), Output::new(part));
        set_params!(
            e,
            (n, channels, inner, nd, wd, info, direct, &xb, &wb, &gb, dx, part)
        );
    })?;
    let tree = plan::tree_name(dtype);
    let dw_offset = n * dtype.size_in_bytes();
    let mut src = part;
    for &count in &passes {
        let groups = count.div_ceil(plan::GROUP);
        let dst = if groups > 1 {
            Some(scratch(device, ch.channels * groups)?)
        } else {
            None
        };
        let Some(input) = src.as_deref() else {
            // `part` exists whenever there is a pass, and each pass but the last has a `dst`.
            return Err(Error::msg(format!(
                "{}: internal error: a tree pass without input",
                Op::PreluBwd.name()
            )));
        };
        let threads = plan::tree_threads(ch.channels, count);
        encode(device, &tree, Op::PreluBwd, threads, |e| {
            let channels = ch.channels;
            // The last pass writes dweight and not `sums`, then bound to the output.
            let sums = Output::new(dst.as_deref().unwrap_or(out.buffer()));
            let dw = Output::with_offset(out.buffer(), dw_offset);
            set_params!(e, (channels, count, Input::new(input), sums, dw));
        })?;
        src = dst;
    }
    Ok(out)
}
