//! Metal backend: the kernels of `kernels/leaky_relu.metal`, compiled from source once per GPU
//! with fast math off, dispatched on candle's command encoder.

mod plan;

use crate::op::{Slope, BWD, FWD, INPLACE};
use candle_core::backend::BackendStorage;
use candle_core::{Layout, MetalDevice, MetalError, MetalStorage, Result};
use candle_metal_kernels::metal::{ComputeCommandEncoder, ComputePipeline, Library};
use candle_metal_kernels::{set_params, BufferOffset, Output};
use objc2_metal::{MTLCompileOptions, MTLMathMode, MTLSize};
use plan::Kind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

const SOURCE: &str = include_str!("../kernels/leaky_relu.metal");

/// The library of one GPU and the pipelines built from it so far, by kernel name.
struct Compiled {
    library: Library,
    pipelines: Mutex<HashMap<String, ComputePipeline>>,
}

/// One [`Compiled`] per GPU, keyed by the Metal registry id (stable across `MetalDevice`s of the
/// same GPU, unlike `MetalDevice::id`).
fn compiled(device: &MetalDevice) -> Result<Arc<Compiled>> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<Compiled>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .map_err(lock_err)?;
    if let Some(c) = cache.get(&device.registry_id()) {
        return Ok(c.clone());
    }
    let options = MTLCompileOptions::new();
    // candle compiles its own kernels with fast math on; the contract needs it off.
    if objc2::available!(macos = 15, ios = 18) {
        options.setMathMode(MTLMathMode::Safe);
    } else {
        #[allow(deprecated)]
        options.setFastMathEnabled(false);
    }
    let library = device
        .new_library_with_source(SOURCE, Some(&options))
        .map_err(MetalError::from)?;
    let c = Arc::new(Compiled {
        library,
        pipelines: Mutex::default(),
    });
    cache.insert(device.registry_id(), c.clone());
    Ok(c)
}

fn lock_err<T>(e: std::sync::PoisonError<T>) -> candle_core::Error {
    MetalError::Message(format!("{FWD}: kernel cache lock poisoned: {e}")).into()
}

/// The pipeline of kernel `name`, built on first use and reused.
fn pipeline(device: &MetalDevice, name: &str) -> Result<ComputePipeline> {
    let c = compiled(device)?;
    let mut pipelines = c.pipelines.lock().map_err(lock_err)?;
    if let Some(p) = pipelines.get(name) {
        return Ok(p.clone());
    }
    let function = c
        .library
        .get_function(name, None)
        .map_err(MetalError::from)?;
    let p = device
        .new_compute_pipeline_state_with_function(&function)
        .map_err(MetalError::from)?;
    pipelines.insert(name.to_string(), p.clone());
    Ok(p)
}

impl crate::op::Elems for MetalStorage {
    /// The buffer's whole length (candle may allocate a buffer larger than the tensor).
    fn elems(&self) -> usize {
        self.buffer().length() / self.dtype().size_in_bytes()
    }
}

/// The storage's buffer bound at the layout's start offset.
fn at_offset<'a>(s: &'a MetalStorage, l: &Layout) -> BufferOffset<'a> {
    BufferOffset {
        buffer: s.buffer(),
        offset_in_bytes: l.start_offset() * s.dtype().size_in_bytes(),
    }
}

/// Encodes kernel `name` over `l`'s elements on `s`'s device; `bind` sets all arguments from
/// the element count and the dims to bind (the layout's for strided kernels, else `[n]`).
/// Nothing is encoded for an empty tensor.
fn launch(
    name: &str,
    op: &'static str,
    s: &MetalStorage,
    l: &Layout,
    strided: bool,
    bind: impl FnOnce(&ComputeCommandEncoder, usize, &[usize]),
) -> Result<()> {
    let device = s.device();
    let n = l.shape().elem_count();
    if n == 0 {
        return Ok(());
    }
    let pipeline = pipeline(device, name)?;
    let max = pipeline.max_total_threads_per_threadgroup();
    let (groups, width) = plan::grid(n, s.dtype().size_in_bytes(), max, op)?;
    let guard = device.command_encoder()?;
    let encoder: &ComputeCommandEncoder = guard.as_ref();
    encoder.set_compute_pipeline_state(&pipeline);
    // As candle's own kernels: a debug group around the dispatch (candle-core's feature
    // `metal-debug-labels`; nothing otherwise), never a label on the shared encoder.
    candle_metal_kernels::debug_group!(encoder, "{name} elems={n}");
    // Contiguous kernels ignore dims/strides: one-element arrays (no zero-length bytes).
    let one = [n];
    bind(encoder, n, if strided { l.dims() } else { &one });
    let size = |width| MTLSize {
        width,
        height: 1,
        depth: 1,
    };
    encoder.dispatch_thread_groups(size(groups), size(width));
    Ok(())
}

/// The strides argument of a kernel: the layout's, or a placeholder for contiguous kernels.
fn strides(l: &Layout, strided: bool) -> &[usize] {
    if strided {
        l.stride()
    } else {
        &[1]
    }
}

/// A new contiguous storage of `l`'s element count and `s`'s dtype.
fn output(s: &MetalStorage, l: &Layout, label: &str) -> Result<MetalStorage> {
    let (n, dtype) = (l.shape().elem_count(), s.dtype());
    let device = s.device();
    let buffer = (device.new_buffer_builder())
        .with_size_for(n, dtype)
        .with_label(label)
        .build()?;
    Ok(MetalStorage::new(buffer, device.clone(), n, dtype))
}

/// `y = leaky_relu(x)` as a new contiguous storage of `l`'s shape.
pub fn forward(slope: Slope, s: &MetalStorage, l: &Layout) -> Result<MetalStorage> {
    let strided = !l.is_contiguous();
    let name = plan::launch_kernel_name(Kind::Fwd, s.dtype(), &[l], FWD)?;
    let y = output(s, l, FWD)?;
    launch(&name, FWD, s, l, strided, |e, n, dims| {
        let (x, sx) = (at_offset(s, l), strides(l, strided));
        let y = Output::new(y.buffer());
        set_params!(e, (n, dims.len(), dims, sx, slope.f32, &x, y));
    })?;
    Ok(y)
}

/// `dx` from `x` and `dy` (same dtype and shape, any layouts) as a new contiguous storage.
pub fn backward(
    slope: Slope,
    x: &MetalStorage,
    lx: &Layout,
    dy: &MetalStorage,
    ldy: &Layout,
) -> Result<MetalStorage> {
    let strided = !(lx.is_contiguous() && ldy.is_contiguous());
    let name = plan::launch_kernel_name(Kind::Bwd, x.dtype(), &[lx, ldy], BWD)?;
    let dx = output(x, lx, BWD)?;
    launch(&name, BWD, x, lx, strided, |e, n, dims| {
        let (xb, sx) = (at_offset(x, lx), strides(lx, strided));
        let (dyb, sdy) = (at_offset(dy, ldy), strides(ldy, strided));
        let dx = Output::new(dx.buffer());
        set_params!(e, (n, dims.len(), dims, sx, sdy, slope.f32, &xb, &dyb, dx));
    })?;
    Ok(dx)
}

/// `x = leaky_relu(x)` for every element of `l` (the op has refused views whose elements overlap).
pub fn forward_inplace(slope: Slope, s: &mut MetalStorage, l: &Layout) -> Result<()> {
    let strided = !l.is_contiguous();
    let name = plan::launch_kernel_name(Kind::Inplace, s.dtype(), &[l], INPLACE)?;
    let s = &*s;
    launch(&name, INPLACE, s, l, strided, |e, n, dims| {
        let (x, sx) = (at_offset(s, l), strides(l, strided));
        let x = Output::from_buffer_offset(&x);
        set_params!(e, (n, dims.len(), dims, sx, slope.f32, x));
    })
}
