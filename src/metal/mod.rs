//! Metal backend: the kernels of `kernels/leaky_relu.metal` and `kernels/prelu.metal`, each
//! compiled from source once per GPU (one library per source) with fast math off, dispatched on
//! candle's command encoder. This module holds what every op's dispatches share (library and
//! pipeline cache, encoding, outputs, the storage's length); one module per op binds its
//! arguments.

pub(crate) mod leaky_relu;
mod plan;
pub(crate) mod prelu;

use crate::base::{Backend, Op};
use candle_core::backend::BackendStorage;
use candle_core::{DType, Layout, MetalDevice, MetalError, MetalStorage, Result};
use candle_metal_kernels::metal::{ComputeCommandEncoder, ComputePipeline, Library};
use candle_metal_kernels::BufferOffset;
use objc2_metal::{MTLCompileOptions, MTLMathMode, MTLSize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

const SOURCE: &str = include_str!("../../kernels/leaky_relu.metal");
const PRELU_SOURCE: &str = include_str!("../../kernels/prelu.metal");

/// The shader source of `op`'s kernels and its index among the libraries.
fn source(op: Op) -> (&'static str, usize) {
    match op {
        Op::Prelu | Op::PreluBwd => (PRELU_SOURCE, 1),
        Op::Fwd | Op::Bwd | Op::Inplace => (SOURCE, 0),
    }
}

/// The library of one GPU and the pipelines built from it so far, by kernel name.
struct Compiled {
    library: Library,
    pipelines: Mutex<HashMap<String, ComputePipeline>>,
}

/// One [`Compiled`] per GPU and source (the one of `op`'s kernels), keyed by the Metal registry
/// id (stable across `MetalDevice`s of the same GPU, unlike `MetalDevice::id`).
fn compiled(device: &MetalDevice, op: Op) -> Result<Arc<Compiled>> {
    /// (registry id, index of the source) -> its library.
    type Libraries = HashMap<(u64, usize), Arc<Compiled>>;
    static CACHE: OnceLock<Mutex<Libraries>> = OnceLock::new();
    let (source, index) = source(op);
    let key = (device.registry_id(), index);
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .map_err(|e| lock_err(e, op))?;
    if let Some(c) = cache.get(&key) {
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
        .new_library_with_source(source, Some(&options))
        .map_err(MetalError::from)?;
    let c = Arc::new(Compiled {
        library,
        pipelines: Mutex::default(),
    });
    cache.insert(key, c.clone());
    Ok(c)
}

fn lock_err<T>(e: std::sync::PoisonError<T>, op: Op) -> candle_core::Error {
    MetalError::Message(format!("{}: kernel cache lock poisoned: {e}", op.name())).into()
}

/// The pipeline of kernel `name`, built on first use and reused.
fn pipeline(device: &MetalDevice, name: &str, op: Op) -> Result<ComputePipeline> {
    let c = compiled(device, op)?;
    let mut pipelines = c.pipelines.lock().map_err(|e| lock_err(e, op))?;
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

impl Backend for MetalStorage {
    /// Metal has no f64.
    const DTYPES: &'static [DType] = &[DType::F16, DType::BF16, DType::F32];

    /// The buffer's whole length (candle may allocate a buffer larger than the tensor).
    fn elem_len(&self) -> usize {
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

/// Encodes kernel `op` over the `n` elements of `layouts` (the operands' validated layouts, one
/// shape; the first is the output's) on `s`'s device: the contiguous kernel when every layout is
/// contiguous, else the strided one with the walk's index width. `bind` sets all arguments from
/// the dims to bind (the layout's for strided kernels, else `[n]`) and whether the kernel is
/// strided. Nothing is encoded for an empty tensor.
fn launch(
    op: Op,
    s: &MetalStorage,
    layouts: &[&Layout],
    n: usize,
    bind: impl FnOnce(&ComputeCommandEncoder, &[usize], bool),
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let device = s.device();
    let strided = !layouts.iter().all(|l| l.is_contiguous());
    let name = plan::launch_kernel_name(op, s.dtype(), layouts, n);
    let pipeline = pipeline(device, &name, op)?;
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
    bind(
        encoder,
        if strided { layouts[0].dims() } else { &one },
        strided,
    );
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

/// A new contiguous storage of `n` elements of `s`'s dtype.
fn output(s: &MetalStorage, n: usize, op: Op) -> Result<MetalStorage> {
    let dtype = s.dtype();
    let device = s.device();
    let buffer = (device.new_buffer_builder())
        .with_size_for(n, dtype)
        .with_label(op.name())
        .build()?;
    Ok(MetalStorage::new(buffer, device.clone(), n, dtype))
}
