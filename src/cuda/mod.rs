//! CUDA backend: the kernels of `kernels/leaky_relu.cu` and `kernels/prelu.cu`, compiled to PTX
//! by `build.rs` (one PTX module per source). This module holds what every op's launches share
//! (grid, index width, outputs, the storage's length); one module per op loads its PTX and
//! dispatches over the dtypes (`prelu.rs` for PReLU, which has its own launches).
//!
//! - Each PTX module is loaded once per device through candle's cache of custom modules, under a
//!   name unique to this crate and its version (LeakyReLU's: [`MODULE`]).
//! - Contiguous operands (any start offset) are passed as flat pointers: the kernel stores the
//!   output in 16-byte vectors and reads each input in 16-byte vectors, a misaligned one (a
//!   narrowed view) as the aligned vectors around its elements. Other layouts pass
//!   `dims ++ strides` (backward: `dims ++ x strides ++ dy strides`) and are walked in place,
//!   never copied: with 32-bit index arithmetic when the walk fits in 32 bits ([`IndexWidth::of`]),
//!   else 64-bit.
//! - Empty tensors launch nothing; the grid is sized from the device's multiprocessor count
//!   (asked once per device) and the kernels' grid-stride loops cover the rest.

pub(crate) mod leaky_relu;
pub(crate) mod prelu;

use crate::base::{Backend, Op, Slope};
use crate::index_width::IndexWidth;
use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as Attr;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, LaunchArgs,
    LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaStorageSlice as Slice, SlicePtrOrNull, WrapErr};
use candle_core::{CudaDevice, CudaStorage, DType, Error, Layout, Result};
use half::{bf16, f16};
use std::sync::{Arc, Mutex};

/// The PTX of `kernels/leaky_relu.cu`.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/leaky_relu.ptx"));
/// The key of our module in candle's per-device cache of custom modules: with the version, so that
/// two versions of this crate in one process each load their own PTX.
const MODULE: &str = concat!(
    "candle_leaky_relu-",
    env!("CARGO_PKG_VERSION"),
    "::leaky_relu"
);
/// Threads per block.
const BLOCK: u32 = 256;

/// A dtype the kernels take: its entry-point suffix and the type of its slope argument.
trait DeviceType: DeviceRepr {
    const SUFFIX: &'static str;
    type SlopeArg: DeviceRepr;
    fn slope(a: Slope) -> Self::SlopeArg;
}

macro_rules! device_type {
    ($($t:ty: $suffix:literal, $slope:ident;)*) => {$(
        impl DeviceType for $t {
            const SUFFIX: &'static str = $suffix;
            type SlopeArg = $slope;
            fn slope(a: Slope) -> $slope {
                a.$slope
            }
        }
    )*};
}

device_type! {
    f16: "f16", f32;
    bf16: "bf16", f32;
    f32: "f32", f32;
    f64: "f64", f64;
}

/// The number of blocks of [`BLOCK`] threads that fill `dev` (multiprocessors times resident
/// blocks each), asked of the driver once per device ordinal.
fn resident_blocks(dev: &CudaDevice) -> Result<usize> {
    static CACHE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
    let ctx = dev.cuda_stream().context().clone();
    let ordinal = ctx.ordinal();
    // A poisoned lock still holds complete entries: each is pushed whole.
    let cached = (CACHE.lock().unwrap_or_else(|e| e.into_inner()).iter())
        .find(|e| e.0 == ordinal)
        .map(|e| e.1);
    if let Some(b) = cached {
        return Ok(b);
    }
    let sms = ctx
        .attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .w()?;
    let per_sm = ctx
        .attribute(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)
        .w()?;
    let blocks = sms.max(1) as usize * (per_sm.max(0) as usize / BLOCK as usize).max(1);
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((ordinal, blocks));
    Ok(blocks)
}

/// One prepared launch of `{op kernel}_{suffix}_u{32,64}`: the function, the grid, and the
/// leading arguments `(n, nd, info)`; the caller adds the pointers and the slope.
struct Launch<T: DeviceType> {
    func: CudaFunction,
    stream: Arc<CudaStream>,
    cfg: LaunchConfig,
    n: usize,
    nd: usize,
    info: SlicePtrOrNull<usize>,
    a: T::SlopeArg,
}

impl<T: DeviceType> Launch<T> {
    /// `None` for an empty tensor: nothing to launch. `layouts` are the operands' validated
    /// layouts (one shape of `n` elements); the info buffer is null when all are contiguous.
    fn new(
        dev: &CudaDevice,
        op: Op,
        a: Slope,
        layouts: &[&Layout],
        n: usize,
    ) -> Result<Option<Self>> {
        let shape = layouts[0].shape();
        if n == 0 {
            return Ok(None);
        }
        let contiguous = layouts.iter().all(|l| l.is_contiguous());
        let info = if contiguous {
            SlicePtrOrNull::Null
        } else {
            let mut v = shape.dims().to_vec();
            layouts.iter().for_each(|l| v.extend_from_slice(l.stride()));
            SlicePtrOrNull::params_from_vec(dev, v)?
        };
        // Contiguous threads handle 16 bytes per step, strided ones one element.
        let work = if contiguous {
            n.div_ceil(16 / size_of::<T>())
        } else {
            n
        };
        let blocks = work.div_ceil(BLOCK as usize).min(resident_blocks(dev)?);
        // Contiguous launches ignore the index width; they take the 32-bit entry point.
        let width = if contiguous {
            IndexWidth::U32
        } else {
            IndexWidth::of(n, layouts)
        };
        let name = format!("{}_{}{}", op.kernel(), T::SUFFIX, width.suffix());
        Ok(Some(Self {
            func: dev
                .get_or_load_custom_func(&name, MODULE, PTX)?
                .into_cuda_function(),
            stream: dev.cuda_stream(),
            cfg: LaunchConfig {
                grid_dim: (blocks as u32, 1, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            },
            n,
            nd: shape.rank(),
            info,
            a: T::slope(a),
        }))
    }

    /// A builder holding `(n, nd, info)`.
    fn args(&self) -> LaunchArgs<'_> {
        let mut b = self.stream.launch_builder(&self.func);
        b.arg(&self.n).arg(&self.nd);
        self.info.builder_arg(&mut b);
        b
    }
}

/// The storage from the layout's start offset on. The layout passed `base::check_operand`, so
/// the offset is inside the storage whenever the view has elements (the only time this runs);
/// `try_slice` still answers with an `Option`, turned into an error rather than a panic.
fn view<'a, T>(s: &'a CudaSlice<T>, l: &Layout, op: Op) -> Result<CudaView<'a, T>> {
    s.try_slice(l.start_offset()..)
        .ok_or_else(|| past_storage(op, l.start_offset(), s.len()))
}

/// As [`view`], writable.
fn view_mut<'a, T>(s: &'a mut CudaSlice<T>, l: &Layout, op: Op) -> Result<CudaViewMut<'a, T>> {
    let len = s.len();
    s.try_slice_mut(l.start_offset()..)
        .ok_or_else(|| past_storage(op, l.start_offset(), len))
}

fn past_storage(op: Op, offset: usize, len: usize) -> Error {
    Error::msg(format!(
        "{}: layout offset {offset} is past the storage ({len} elements)",
        op.name()
    ))
}

/// A fresh output of `n` elements, written in full by the caller's launch.
fn output<T: DeviceRepr>(dev: &CudaDevice, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: the kernel launched right after writes all `n` elements before anything reads
    // them (for n = 0 there is nothing to read).
    unsafe { dev.alloc::<T>(n) }
}

impl Backend for CudaStorage {
    const DTYPES: &'static [DType] = &[DType::F16, DType::BF16, DType::F32, DType::F64];

    fn elem_len(&self) -> usize {
        match &self.slice {
            Slice::F16(x) => x.len(),
            Slice::BF16(x) => x.len(),
            Slice::F32(x) => x.len(),
            Slice::F64(x) => x.len(),
            // Other dtypes are refused (DTYPES) before any layout is checked.
            _ => 0,
        }
    }
}
