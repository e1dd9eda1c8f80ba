//! Shared test harness: the devices to run on, tensors built from and read back as raw bits,
//! and a scalar reference of the numerics contract written from `NUMERICS.md` (independently of
//! the crate's kernels).
#![allow(dead_code)]

pub mod prelu;

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, InplaceOp1, Layout};
use candle_core::{Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward};
use half::{bf16, f16};

/// The four dtypes of the contract.
pub const DTYPES: [DType; 4] = [DType::F16, DType::BF16, DType::F32, DType::F64];

/// Every device this build can reach: the CPU, plus CUDA and Metal when their feature is on and
/// a device exists. Every cross-backend test body runs once per entry.
///
/// With `CANDLE_LEAKY_RELU_REQUIRE_GPU` set (the GPU run of `scripts/gpu-bundle.sh` sets it), a
/// GPU that is built in but cannot be opened is a failure instead of a silent CPU-only run.
pub fn devices() -> Vec<Device> {
    #[allow(unused_mut)]
    let mut v = vec![Device::Cpu];
    #[cfg(feature = "cuda")]
    v.extend(gpu("CUDA", || Device::new_cuda(0)));
    #[cfg(feature = "metal")]
    v.extend(gpu("Metal", || Device::new_metal(0)));
    v
}

/// Opens a GPU: `None` when there is none, unless `CANDLE_LEAKY_RELU_REQUIRE_GPU` is set, in
/// which case a failure to open it panics with candle's error.
pub fn gpu(name: &str, open: impl FnOnce() -> Result<Device>) -> Option<Device> {
    match open() {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("CANDLE_LEAKY_RELU_REQUIRE_GPU").is_some() => {
            panic!("CANDLE_LEAKY_RELU_REQUIRE_GPU is set but no {name} device opens: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED on {name}: no device ({e})");
            None
        }
    }
}

/// Whether `dtype` exists on `dev` (Metal has no f64).
pub fn supports(dev: &Device, dtype: DType) -> bool {
    !(dev.is_metal() && dtype == DType::F64)
}

/// A deterministic stream of 64-bit words, for reproducible test inputs.
pub fn random_words(seed: u64) -> impl Iterator<Item = u64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    std::iter::repeat_with(move || rng.random::<u64>())
}

/// The mask of a dtype's bit patterns.
pub fn bit_mask(dtype: DType) -> u64 {
    u64::MAX >> (64 - 8 * dtype.size_in_bytes())
}

/// The canonical positive quiet NaN of the contract, as bits.
pub fn canonical_nan(dtype: DType) -> u64 {
    match dtype {
        DType::F16 => 0x7E00,
        DType::BF16 => 0x7FC0,
        DType::F32 => 0x7FC0_0000,
        DType::F64 => 0x7FF8_0000_0000_0000,
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// A tensor of `dtype` holding exactly these bit patterns.
pub fn from_bits(dtype: DType, bits: &[u64], shape: &[usize], dev: &Device) -> Result<Tensor> {
    match dtype {
        DType::F16 => Tensor::from_vec(
            bits.iter().map(|&b| f16::from_bits(b as u16)).collect(),
            shape,
            dev,
        ),
        DType::BF16 => Tensor::from_vec(
            bits.iter().map(|&b| bf16::from_bits(b as u16)).collect(),
            shape,
            dev,
        ),
        DType::F32 => Tensor::from_vec(
            bits.iter().map(|&b| f32::from_bits(b as u32)).collect(),
            shape,
            dev,
        ),
        DType::F64 => Tensor::from_vec(
            bits.iter().map(|&b| f64::from_bits(b)).collect(),
            shape,
            dev,
        ),
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// The bit patterns of every element, in logical (row-major) order.
pub fn to_bits(t: &Tensor) -> Result<Vec<u64>> {
    if t.elem_count() == 0 {
        // candle 0.11.1's to_vec1 panics on an empty view whose offset lies past the storage.
        return Ok(Vec::new());
    }
    let t = t.to_device(&Device::Cpu)?.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let (candle_core::Storage::Cpu(s), Some((o, e))) = (&*s, l.contiguous_offsets()) else {
        panic!("a contiguous CPU tensor")
    };
    Ok(storage_bits(s)[o..e].to_vec())
}

/// The value of the bits in the contract's compute type, widened to f64 (exact), and whether
/// that compute type is f64.
fn compute(dtype: DType, b: u64) -> (f64, bool) {
    match dtype {
        DType::F16 => (f16::from_bits(b as u16).to_f64(), false),
        DType::BF16 => (bf16::from_bits(b as u16).to_f64(), false),
        DType::F32 => (f32::from_bits(b as u32) as f64, false),
        DType::F64 => (f64::from_bits(b), true),
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// `R_T(C(v) * a)`: the product in the compute type, rounded to `dtype`, a NaN product giving
/// the canonical NaN.
fn scaled(dtype: DType, b: u64, alpha: f64) -> u64 {
    let (v, is_f64) = compute(dtype, b);
    if is_f64 {
        let p = v * alpha;
        return if p.is_nan() {
            canonical_nan(dtype)
        } else {
            p.to_bits()
        };
    }
    // f32 compute: both factors are exact f32 values, the f32 product rounds once.
    let p = (v as f32) * (alpha as f32);
    if p.is_nan() {
        return canonical_nan(dtype);
    }
    match dtype {
        DType::F16 => f16::from_f32(p).to_bits() as u64,
        DType::BF16 => bf16::from_f32(p).to_bits() as u64,
        _ => p.to_bits() as u64,
    }
}

/// Forward table of the contract for one element given as bits.
pub fn ref_fwd(dtype: DType, x: u64, alpha: f64) -> u64 {
    let (v, _) = compute(dtype, x);
    if v.is_nan() || v > 0.0 {
        x
    } else {
        scaled(dtype, x, alpha)
    }
}

/// Backward table of the contract for one element (`x`, upstream `dy`) given as bits.
pub fn ref_bwd(dtype: DType, x: u64, dy: u64, alpha: f64) -> u64 {
    let (v, _) = compute(dtype, x);
    if v > 0.0 {
        dy
    } else {
        scaled(dtype, dy, alpha)
    }
}

/// Asserts two bit vectors are equal, naming the first differing element.
#[track_caller]
pub fn assert_bits_eq(what: &str, got: &[u64], want: &[u64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: element {i} of {}: got {:#x}, want {:#x}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// The backend storage of one device, as the op's trait methods take it: the way to hand them
/// layouts that candle itself would never build.
pub enum Raw {
    /// CPU storage.
    Cpu(CpuStorage),
    /// CUDA storage (a stand-in type without the `cuda` feature, never built then).
    Cuda(candle_core::CudaStorage),
    /// Metal storage (a stand-in type without the `metal` feature, never built then).
    Metal(candle_core::MetalStorage),
}

/// CPU storage holding exactly these bit patterns.
pub fn storage_from_bits(dtype: DType, bits: &[u64]) -> CpuStorage {
    match dtype {
        DType::F16 => CpuStorage::F16(bits.iter().map(|&b| f16::from_bits(b as u16)).collect()),
        DType::BF16 => CpuStorage::BF16(bits.iter().map(|&b| bf16::from_bits(b as u16)).collect()),
        DType::F32 => CpuStorage::F32(bits.iter().map(|&b| f32::from_bits(b as u32)).collect()),
        DType::F64 => CpuStorage::F64(bits.iter().map(|&b| f64::from_bits(b)).collect()),
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// The bit patterns of every element of a CPU storage, in storage order.
pub fn storage_bits(s: &CpuStorage) -> Vec<u64> {
    match s {
        CpuStorage::F16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        CpuStorage::BF16(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        CpuStorage::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        CpuStorage::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
        s => panic!("not a contract dtype: {:?}", s.dtype()),
    }
}

impl Raw {
    /// `bits` of `dtype` as a storage on `dev`.
    pub fn new(dev: &Device, dtype: DType, bits: &[u64]) -> Result<Self> {
        let cpu = storage_from_bits(dtype, bits);
        Ok(match dev {
            Device::Cpu => Raw::Cpu(cpu),
            Device::Cuda(d) => Raw::Cuda(d.storage_from_cpu_storage(&cpu)?),
            Device::Metal(d) => Raw::Metal(d.storage_from_cpu_storage(&cpu)?),
        })
    }

    /// The storage's bits, read back to the host.
    pub fn bits(&self) -> Result<Vec<u64>> {
        Ok(storage_bits(&match self {
            Raw::Cpu(s) => s.clone(),
            Raw::Cuda(s) => s.to_cpu_storage()?,
            Raw::Metal(s) => s.to_cpu_storage()?,
        }))
    }

    /// `CustomOp1::*_fwd` of `op` with layout `l`: the output's bits.
    pub fn fwd(&self, op: &LeakyRelu, l: &Layout) -> Result<Vec<u64>> {
        let out = match self {
            Raw::Cpu(s) => CustomOp1::cpu_fwd(op, s, l)?.0,
            Raw::Cuda(s) => CustomOp1::cuda_fwd(op, s, l)?.0.to_cpu_storage()?,
            Raw::Metal(s) => CustomOp1::metal_fwd(op, s, l)?.0.to_cpu_storage()?,
        };
        Ok(storage_bits(&out))
    }

    /// `CustomOp2::*_fwd` of `op` on `(self, l1)` and `(dy, l2)`: the output's bits.
    pub fn bwd(
        &self,
        l1: &Layout,
        dy: &Raw,
        l2: &Layout,
        op: &LeakyReluBackward,
    ) -> Result<Vec<u64>> {
        let out = match (self, dy) {
            (Raw::Cpu(x), Raw::Cpu(g)) => op.cpu_fwd(x, l1, g, l2)?.0,
            (Raw::Cuda(x), Raw::Cuda(g)) => op.cuda_fwd(x, l1, g, l2)?.0.to_cpu_storage()?,
            (Raw::Metal(x), Raw::Metal(g)) => op.metal_fwd(x, l1, g, l2)?.0.to_cpu_storage()?,
            _ => panic!("operands on different devices"),
        };
        Ok(storage_bits(&out))
    }

    /// `InplaceOp1::*_fwd` of `op` with layout `l`.
    pub fn inplace(&mut self, op: &LeakyRelu, l: &Layout) -> Result<()> {
        match self {
            Raw::Cpu(s) => InplaceOp1::cpu_fwd(op, s, l),
            Raw::Cuda(s) => InplaceOp1::cuda_fwd(op, s, l),
            Raw::Metal(s) => InplaceOp1::metal_fwd(op, s, l),
        }
    }
}
