//! PReLU on CUDA: the launches of `kernels/prelu.cu` over validated layouts (see its header for
//! the kernels, `plan.rs` for the arguments, grids and tree passes).
//!
//! - Forward: one launch of `prelu_fwd_{dtype}_u{32,64}`.
//! - Backward: `prelu_bwd_{dtype}_u{32,64}` writes dx and the block sums of every channel (or
//!   dweight itself when each channel has one block), then `prelu_bwd_tree_{dtype}` passes reduce
//!   the block sums, 32 to one, the last pass writing dweight. The scratch buffers of block sums
//!   (in the compute type: f32, or f64 for f64) are allocated per call; everything runs in order
//!   on the device's stream, nothing is read back to the host.
//! - The weight is read in place through its own layout (no copy): x, dy and the weight each go
//!   through their strides only when not contiguous.

pub(crate) mod plan;

use super::{output, resident_blocks, view, DeviceType};
use crate::base::{unsupported, Channels, Op};
use crate::index_width::IndexWidth;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaStorageSlice as Slice, SlicePtrOrNull, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result};

/// The PTX of `kernels/prelu.cu`.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/prelu.ptx"));
/// The key of the PReLU module in candle's per-device cache of custom modules (with the crate's
/// version, as for LeakyReLU's module).
const MODULE: &str = concat!("candle_leaky_relu-", env!("CARGO_PKG_VERSION"), "::prelu");

/// The entry point `name` of the PReLU module, loaded once per device.
fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    Ok(dev
        .get_or_load_custom_func(name, MODULE, PTX)?
        .into_cuda_function())
}

/// `blocks` blocks of [`plan::THREADS`] threads.
fn config(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        // `plan::blocks` caps the count at the device's resident blocks, far below 2^32.
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (plan::THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The layout arguments on the device: null when every operand is contiguous.
fn info_arg(dev: &CudaDevice, info: Vec<usize>) -> Result<SlicePtrOrNull<usize>> {
    if info.is_empty() {
        Ok(SlicePtrOrNull::Null)
    } else {
        SlicePtrOrNull::params_from_vec(dev, info)
    }
}

fn fwd<T: DeviceType>(
    (x, lx): (&CudaSlice<T>, &Layout),
    (w, lw): (&CudaSlice<T>, &Layout),
    ch: Channels,
    n: usize,
    dev: &CudaDevice,
) -> Result<CudaSlice<T>> {
    let mut y = output::<T>(dev, n)?;
    if n == 0 {
        return Ok(y);
    }
    let (nd, wd, info) = plan::info(lx, None, lw);
    // The index width of every offset of x's and the weight's walks (used even when x is
    // contiguous: the kernel indexes x's n elements with it).
    let width = IndexWidth::of(n, &[lx, lw]);
    let name = format!("{}_{}{}", Op::Prelu.kernel(), T::SUFFIX, width.suffix());
    let func = function(dev, &name)?;
    let info = info_arg(dev, info)?;
    let (x, w) = (view(x, lx, Op::Prelu)?, view(w, lw, Op::Prelu)?);
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&func);
    b.arg(&n).arg(&ch.channels).arg(&ch.inner).arg(&nd).arg(&wd);
    info.builder_arg(&mut b);
    b.arg(&x).arg(&w).arg(&mut y);
    let cfg = config(plan::blocks(n, resident_blocks(dev)?));
    // SAFETY: the arguments match `prelu_fwd_*(n, channels, inner, nd, wd, info, x, w, y)`; x and
    // the weight reach every element of their validated layouts, whose dims and strides `info`
    // holds when they are walked; `channels` and `inner` come from `base::check_prelu` for these
    // layouts (every channel index is below the weight's element count); y has n elements.
    unsafe { b.launch(cfg) }.w()?;
    Ok(y)
}

fn bwd<T: DeviceType + ValidAsZeroBits>(
    (x, lx): (&CudaSlice<T>, &Layout),
    (w, lw): (&CudaSlice<T>, &Layout),
    (dy, ldy): (&CudaSlice<T>, &Layout),
    ch: Channels,
    n: usize,
    dev: &CudaDevice,
) -> Result<CudaSlice<T>> {
    if n == 0 {
        // Every channel is empty: dweight is +0.0, whose bits are all zero in every dtype.
        return dev.alloc_zeros::<T>(ch.channels);
    }
    let mut out = output::<T>(dev, n + ch.channels)?;
    let (nd, wd, info) = plan::info(lx, Some(ldy), lw);
    let width = IndexWidth::of(n, &[lx, ldy, lw]);
    let name = format!("{}_{}{}", Op::PreluBwd.kernel(), T::SUFFIX, width.suffix());
    let func = function(dev, &name)?;
    let info = info_arg(dev, info)?;
    let resident = resident_blocks(dev)?;
    let passes = plan::tree_passes(n, ch);
    // The block sums of every channel, channel-major: written in full by the first kernel.
    let mut part = match passes.first() {
        // SAFETY: the first kernel writes part[c * m + b] for every channel c and block b < m
        // (m = passes[0]) before the first tree pass, later on the same stream, reads it.
        Some(&m) => Some(unsafe { dev.alloc::<T::SlopeArg>(ch.channels * m) }?),
        None => None,
    };
    let (xv, wv, gv) = (
        view(x, lx, Op::PreluBwd)?,
        view(w, lw, Op::PreluBwd)?,
        view(dy, ldy, Op::PreluBwd)?,
    );
    let stream = dev.cuda_stream();
    let null = 0usize;
    {
        let mut b = stream.launch_builder(&func);
        b.arg(&n).arg(&ch.channels).arg(&ch.inner).arg(&nd).arg(&wd);
        info.builder_arg(&mut b);
        b.arg(&xv).arg(&wv).arg(&gv).arg(&mut out);
        match &mut part {
            Some(p) => b.arg(p),
            None => b.arg(&null),
        };
        let cfg = config(plan::blocks(plan::bwd_threads(n, ch), resident));
        // SAFETY: the arguments match `prelu_bwd_*(n, channels, inner, nd, wd, info, x, w, dy,
        // out, part)`; x, dy and the weight reach every element of their validated layouts (x
        // and dy of the same dims), walked through `info` where not contiguous; `channels` and
        // `inner` are `base::check_prelu`'s; out has n + channels elements; part is null exactly
        // when every channel has one block (no tree pass), else it has channels * m elements.
        unsafe { b.launch(cfg) }.w()?;
    }
    let tree = function(
        dev,
        &format!("{}_tree_{}", Op::PreluBwd.kernel(), T::SUFFIX),
    )?;
    let mut src = part;
    for &count in &passes {
        let groups = count.div_ceil(plan::GROUP);
        let mut dst = if groups > 1 {
            // SAFETY: this pass writes dst[c * groups + g] for every channel c and group g
            // before the next pass, later on the same stream, reads it.
            Some(unsafe { dev.alloc::<T::SlopeArg>(ch.channels * groups) }?)
        } else {
            None
        };
        let Some(input) = &src else {
            // `part` exists whenever there is a pass, and each pass but the last has a `dst`.
            return Err(candle_core::Error::msg(format!(
                "{}: internal error: a tree pass without input",
                Op::PreluBwd.name()
            )));
        };
        let mut dw = out.slice_mut(n..);
        let mut b = stream.launch_builder(&tree);
        b.arg(&ch.channels).arg(&count).arg(input);
        match &mut dst {
            Some(d) => b.arg(d),
            None => b.arg(&null),
        };
        b.arg(&mut dw);
        let cfg = config(plan::blocks(
            plan::tree_threads(ch.channels, count),
            resident,
        ));
        // SAFETY: the arguments match `prelu_bwd_tree_*(channels, count, in, sums, dw)`; `in`
        // holds channels * count sums (the previous kernel's output), `sums` channels * groups
        // elements or null when groups == 1 (the pass then writes dw), dw the channels elements
        // of out after dx.
        unsafe { b.launch(cfg) }.w()?;
        src = dst;
    }
    Ok(out)
}

/// `y = prelu(x, w)`: a new contiguous storage of x's `n` elements.
pub(crate) fn forward(
    (x, lx): (&CudaStorage, &Layout),
    (w, lw): (&CudaStorage, &Layout),
    ch: Channels,
    n: usize,
) -> Result<CudaStorage> {
    let dev = &x.device;
    let slice = match (&x.slice, &w.slice) {
        (Slice::F16(x), Slice::F16(w)) => Slice::F16(fwd((x, lx), (w, lw), ch, n, dev)?),
        (Slice::BF16(x), Slice::BF16(w)) => Slice::BF16(fwd((x, lx), (w, lw), ch, n, dev)?),
        (Slice::F32(x), Slice::F32(w)) => Slice::F32(fwd((x, lx), (w, lw), ch, n, dev)?),
        (Slice::F64(x), Slice::F64(w)) => Slice::F64(fwd((x, lx), (w, lw), ch, n, dev)?),
        _ => return Err(unsupported(x.dtype(), Op::Prelu)),
    };
    Ok(CudaStorage {
        slice,
        device: dev.clone(),
    })
}

/// PReLU's gradients from `(x, w, dy)`: one new contiguous storage of `n + channels` elements,
/// dx (x's `n` elements in logical order) followed by dweight (the weight's elements in its
/// logical order).
pub(crate) fn backward(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    ch: Channels,
    n: usize,
) -> Result<CudaStorage> {
    let dev = &x.0.device;
    let slice = match (&x.0.slice, &w.0.slice, &dy.0.slice) {
        (Slice::F16(a), Slice::F16(b), Slice::F16(c)) => {
            Slice::F16(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n, dev)?)
        }
        (Slice::BF16(a), Slice::BF16(b), Slice::BF16(c)) => {
            Slice::BF16(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n, dev)?)
        }
        (Slice::F32(a), Slice::F32(b), Slice::F32(c)) => {
            Slice::F32(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n, dev)?)
        }
        (Slice::F64(a), Slice::F64(b), Slice::F64(c)) => {
            Slice::F64(bwd((a, x.1), (b, w.1), (c, dy.1), ch, n, dev)?)
        }
        _ => return Err(unsupported(x.0.dtype(), Op::PreluBwd)),
    };
    Ok(CudaStorage {
        slice,
        device: dev.clone(),
    })
}
