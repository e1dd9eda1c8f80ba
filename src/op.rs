//! The op itself: validation, dispatch to the backends, autograd, the layer and the extension
//! trait. Every backend receives an already validated [`Slope`] and a supported dtype.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, InplaceOp1, Layout, Result, Shape};
use candle_core::{Error, Tensor};

/// The op names that every error and kernel label carries: forward, backward, in place.
pub(crate) const FWD: &str = "leaky_relu";
pub(crate) const BWD: &str = "leaky_relu_backward";
pub(crate) const INPLACE: &str = "leaky_relu_";

/// LeakyReLU with slope `alpha` (`self.0`) for non-positive inputs: `y = x` for `x > 0`, else
/// `alpha * x`, bit for bit as the [numerics contract](crate::numerics) says.
///
/// `alpha` must be finite; any finite value (negative, zero, above one) is valid. The field is
/// public, so a non-finite slope can still be built by hand: every entry point checks it again
/// and returns an error before any kernel runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyRelu(pub f64);

impl Default for LeakyRelu {
    /// The conventional slope, `0.01` (PyTorch's default).
    fn default() -> Self {
        Self(0.01)
    }
}

/// The fused gradient of [`LeakyRelu`]: `apply_op2_no_bwd(x, dy)` gives `dx`, with `dy` where
/// `x > 0` and `alpha * dy` elsewhere (NaN `x` included), as the contract's backward table says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyReluBackward(pub f64);

/// A validated slope in the forms the kernels use: `f64` for f64 tensors and `alpha as f32`
/// (round to nearest, ties to even) for f32, f16 and bf16 tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Slope {
    /// The slope applied to f64 tensors.
    pub f64: f64,
    /// The slope applied to f32, f16 and bf16 tensors (`alpha as f32`).
    pub f32: f32,
}

impl Slope {
    /// Checks that `alpha` is finite; `op` names the op in the error.
    pub(crate) fn new(alpha: f64, op: &str) -> Result<Self> {
        if !alpha.is_finite() {
            return Err(Error::msg(format!(
                "{op}: alpha must be finite, got {alpha}"
            )));
        }
        Ok(Self {
            f64: alpha,
            f32: alpha as f32,
        })
    }
}

/// The error for a dtype outside the contract. Backends reach it only in the fallback arm of
/// their storage `match`, for a dtype this module has already refused.
pub(crate) fn unsupported(dtype: DType, op: &'static str) -> Error {
    Error::UnsupportedDTypeForOp(dtype, op)
}

/// The dtypes of the contract; anything else is refused with `UnsupportedDTypeForOp`.
pub(crate) fn check_dtype(dtype: DType, op: &'static str) -> Result<()> {
    match dtype {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Ok(()),
        _ => Err(unsupported(dtype, op)),
    }
}

/// Validates everything a backend relies on; runs before any kernel or write.
fn check(alpha: f64, dtype: DType, op: &'static str) -> Result<Slope> {
    let slope = Slope::new(alpha, op)?;
    check_dtype(dtype, op)?;
    Ok(slope)
}

/// Validates the operands of the backward op: same dtype, same shape.
fn check2(alpha: f64, l1: &Layout, d1: DType, l2: &Layout, d2: DType) -> Result<Slope> {
    let slope = check(alpha, d1, BWD)?;
    if d1 != d2 {
        return Err(Error::DTypeMismatchBinaryOp {
            lhs: d1,
            rhs: d2,
            op: BWD,
        }
        .bt());
    }
    if l1.shape() != l2.shape() {
        return Err(Error::ShapeMismatchBinaryOp {
            lhs: l1.shape().clone(),
            rhs: l2.shape().clone(),
            op: BWD,
        }
        .bt());
    }
    Ok(slope)
}

impl LeakyRelu {
    /// A LeakyReLU with slope `alpha`; refuses a NaN or infinite slope.
    pub fn new(alpha: f64) -> Result<Self> {
        Slope::new(alpha, FWD)?;
        Ok(Self(alpha))
    }
}

impl LeakyReluBackward {
    /// The backward op for slope `alpha`; refuses a NaN or infinite slope.
    pub fn new(alpha: f64) -> Result<Self> {
        Slope::new(alpha, BWD)?;
        Ok(Self(alpha))
    }
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        FWD
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let slope = check(self.0, s.dtype(), FWD)?;
        Ok((crate::cpu::forward(slope, s, l)?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let slope = check(self.0, s.dtype(), FWD)?;
        Ok((crate::cuda::forward(slope, s, l)?, l.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s: &candle_core::MetalStorage,
        l: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let slope = check(self.0, s.dtype(), FWD)?;
        Ok((crate::metal::forward(slope, s, l)?, l.shape().clone()))
    }

    /// `dx = LeakyReluBackward(alpha)(x, dy)`, one fused op on the forward's device.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(grad_res, &LeakyReluBackward(self.0))?,
        ))
    }
}

impl CustomOp2 for LeakyReluBackward {
    fn name(&self) -> &'static str {
        BWD
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let slope = check2(self.0, l1, s1.dtype(), l2, s2.dtype())?;
        Ok((
            crate::cpu::backward(slope, s1, l1, s2, l2)?,
            l1.shape().clone(),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let slope = check2(self.0, l1, s1.dtype(), l2, s2.dtype())?;
        Ok((
            crate::cuda::backward(slope, s1, l1, s2, l2)?,
            l1.shape().clone(),
        ))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s1: &candle_core::MetalStorage,
        l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let slope = check2(self.0, l1, s1.dtype(), l2, s2.dtype())?;
        Ok((
            crate::metal::backward(slope, s1, l1, s2, l2)?,
            l1.shape().clone(),
        ))
    }
}

/// Validates an in-place call: slope and dtype as for the forward op, and a view whose elements
/// do not overlap in storage (a broadcast would transform the same element more than once).
/// `Tensor::inplace_op1` refuses overlapping views too; this covers direct calls of the
/// `InplaceOp1` methods.
fn check_inplace(alpha: f64, dtype: DType, l: &Layout) -> Result<Slope> {
    let slope = check(alpha, dtype, INPLACE)?;
    if l.has_internal_overlap() {
        return Err(Error::msg(format!(
            "{INPLACE}: the view's elements overlap in storage (dims {:?}, strides {:?})",
            l.dims(),
            l.stride()
        )));
    }
    Ok(slope)
}

impl InplaceOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        INPLACE
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let slope = check_inplace(self.0, s.dtype(), l)?;
        crate::cpu::forward_inplace(slope, s, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        let slope = check_inplace(self.0, s.dtype(), l)?;
        crate::cuda::forward_inplace(slope, s, l)
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(&self, s: &mut candle_core::MetalStorage, l: &Layout) -> Result<()> {
        let slope = check_inplace(self.0, s.dtype(), l)?;
        crate::metal::forward_inplace(slope, s, l)
    }
}

impl candle_nn::Module for LeakyRelu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply_op1(*self)
    }
}

/// `leaky_relu` methods on [`Tensor`].
pub trait LeakyReluExt {
    /// `self.apply_op1(LeakyRelu(alpha))`: a new tensor, with autograd.
    fn leaky_relu(&self, alpha: f64) -> Result<Tensor>;
    /// `self.inplace_op1(&LeakyRelu(alpha))`: overwrites the elements of this view.
    fn leaky_relu_(&self, alpha: f64) -> Result<()>;
}

impl LeakyReluExt for Tensor {
    fn leaky_relu(&self, alpha: f64) -> Result<Tensor> {
        self.apply_op1(LeakyRelu(alpha))
    }

    fn leaky_relu_(&self, alpha: f64) -> Result<()> {
        self.inplace_op1(&LeakyRelu(alpha))
    }
}
