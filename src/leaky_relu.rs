//! The LeakyReLU op: [`LeakyRelu`] (forward, in place, layer), [`LeakyReluBackward`] (the fused
//! gradient, itself differentiable) and the candle-nn drop-in. Each entry point validates through [`crate::base`] and dispatches to a backend.

use crate::base::{self, Op, Slope};
use candle_core::Tensor;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, InplaceOp1, Layout, Result, Shape};

/// LeakyReLU with slope `alpha` (`self.0`) for non-positive inputs: `y = x` for `x > 0`, else
/// `alpha * x`, bit for bit as the [numerics contract](crate::numerics) says.
///
/// `alpha` must be finite; any finite value (negative, zero, above one) is valid for f64 tensors.
/// f16, bf16 and f32 tensors use `alpha as f32`, which must be finite too: `|alpha| >= 2^128 -
/// 2^103` (about 3.4028235678e38) is refused when the op is applied to such a tensor, since only
/// then is the dtype known. The field is public, so any slope can be built by hand: every entry
/// point checks it again and returns an error before any kernel runs.
///
/// As a [`CustomOp1`] it has a fused backward ([`LeakyReluBackward`]), which records itself for
/// second-order gradients. As an [`InplaceOp1`] it overwrites the view's elements: see
/// [`LeakyReluExt::leaky_relu_`](crate::LeakyReluExt::leaky_relu_) for what in-place writes mean for autograd.
///
/// Two values are equal when their slopes have the same bits (`Eq` and `Hash` follow): `-0.0`
/// and `0.0` compute different signs of zero, so they are different ops.
#[derive(Clone, Copy, Debug)]
pub struct LeakyRelu(pub f64);

impl Default for LeakyRelu {
    /// The conventional slope, `0.01` (PyTorch's default).
    fn default() -> Self {
        Self(0.01)
    }
}

/// The fused gradient of [`LeakyRelu`]: `apply_op2(x, dy)` gives `dx`, with `dy` where `x > 0`
/// and `alpha * dy` elsewhere (NaN `x` included), as the contract's backward table says.
///
/// It is differentiable itself (the contract's "Second-order gradients"): `dx` is linear in `dy`
/// with a fixed mask, so its gradient for `dy` given an upstream `u` is this op applied to
/// `(x, u)`, and its gradient for `x` is zero (no gradient is returned for `x`). A gradient
/// penalty (R1, WGAN-GP) through [`LeakyRelu`] therefore sees every term when candle keeps the
/// backward graph (`CANDLE_GRAD_DO_NOT_DETACH=1`).
///
/// Equality compares the slopes' bits, as for [`LeakyRelu`].
#[derive(Clone, Copy, Debug)]
pub struct LeakyReluBackward(pub f64);

/// Equality and hashing by the slope's bits, for both ops.
macro_rules! by_bits {
    ($($t:ty),*) => {$(
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.0.to_bits() == other.0.to_bits()
            }
        }
        impl Eq for $t {}
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
                self.0.to_bits().hash(h)
            }
        }
    )*};
}
by_bits!(LeakyRelu, LeakyReluBackward);

impl LeakyRelu {
    /// A LeakyReLU with slope `alpha`; refuses a NaN or infinite slope. A finite slope beyond the
    /// f32 range is accepted here and refused when applied to an f16, bf16 or f32 tensor.
    pub fn new(alpha: f64) -> Result<Self> {
        Slope::new(alpha, Op::Fwd)?;
        Ok(Self(alpha))
    }
}

impl LeakyReluBackward {
    /// The backward op for slope `alpha`; refuses a NaN or infinite slope.
    pub fn new(alpha: f64) -> Result<Self> {
        Slope::new(alpha, Op::Bwd)?;
        Ok(Self(alpha))
    }
}

/// Validates one operand and the slope for its dtype; returns the slope and the element count.
fn check<B: base::Backend>(alpha: f64, s: &B, l: &Layout, op: Op) -> Result<(Slope, usize)> {
    let n = base::check_operand(s, l, op)?;
    Ok((Slope::for_dtype(alpha, s.dtype(), op)?, n))
}

/// Validates the backward's operands `(x, dy)`; returns the slope and the element count.
fn check_bwd<B: base::Backend>(
    alpha: f64,
    x: (&B, &Layout),
    dy: (&B, &Layout),
) -> Result<(Slope, usize)> {
    let checked = check(alpha, x.0, x.1, Op::Bwd)?;
    base::check_pair(x, dy, Op::Bwd)?;
    Ok(checked)
}

/// Validates an in-place call; returns the slope and the element count.
fn check_inplace<B: base::Backend>(alpha: f64, s: &B, l: &Layout) -> Result<(Slope, usize)> {
    let n = base::check_inplace(s, l, Op::Inplace)?;
    Ok((Slope::for_dtype(alpha, s.dtype(), Op::Inplace)?, n))
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        Op::Fwd.name()
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (slope, n) = check(self.0, s, l, Op::Fwd)?;
        let y = crate::cpu::leaky_relu::forward(slope, s, l, n)?;
        Ok((y, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (slope, n) = check(self.0, s, l, Op::Fwd)?;
        let y = crate::cuda::leaky_relu::forward(slope, s, l, n)?;
        Ok((y, l.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s: &candle_core::MetalStorage,
        l: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let (slope, n) = check(self.0, s, l, Op::Fwd)?;
        let y = crate::metal::leaky_relu::forward(slope, s, l, n)?;
        Ok((y, l.shape().clone()))
    }

    /// `dx = LeakyReluBackward(alpha)(x, dy)`, one fused op on the forward's device, recorded
    /// for a second backward.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2(grad_res, LeakyReluBackward(self.0))?))
    }
}

impl CustomOp2 for LeakyReluBackward {
    fn name(&self) -> &'static str {
        Op::Bwd.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (slope, n) = check_bwd(self.0, (s1, l1), (s2, l2))?;
        let dx = crate::cpu::leaky_relu::backward(slope, (s1, l1), (s2, l2), n)?;
        Ok((dx, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (slope, n) = check_bwd(self.0, (s1, l1), (s2, l2))?;
        let dx = crate::cuda::leaky_relu::backward(slope, (s1, l1), (s2, l2), n)?;
        Ok((dx, l1.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s1: &candle_core::MetalStorage,
        l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let (slope, n) = check_bwd(self.0, (s1, l1), (s2, l2))?;
        let dx = crate::metal::leaky_relu::backward(slope, (s1, l1), (s2, l2), n)?;
        Ok((dx, l1.shape().clone()))
    }

    /// The contract's second-order terms: for `dy`, this op applied to `(x, upstream)` (itself
    /// recorded, so higher orders work too); for `x`, zero, so nothing is returned.
    fn bwd(
        &self,
        x: &Tensor,
        _dy: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(x.apply_op2(grad_res, *self)?)))
    }
}

/// In place: `x = leaky_relu(x)` over the elements of the view, with the forward op's bits. A
/// view whose elements overlap (a broadcast) is refused. Candle records no in-place writes: see
/// [`LeakyReluExt::leaky_relu_`](crate::LeakyReluExt::leaky_relu_) for what that means; this trait method cannot see the tensor and
/// refuses nothing on autograd's behalf.
impl InplaceOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        Op::Inplace.name()
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let (slope, n) = check_inplace(self.0, &*s, l)?;
        crate::cpu::leaky_relu::forward_inplace(slope, s, l, n)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        let (slope, n) = check_inplace(self.0, &*s, l)?;
        crate::cuda::leaky_relu::forward_inplace(slope, s, l, n)
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(&self, s: &mut candle_core::MetalStorage, l: &Layout) -> Result<()> {
        let (slope, n) = check_inplace(self.0, &*s, l)?;
        crate::metal::leaky_relu::forward_inplace(slope, s, l, n)
    }
}

impl candle_nn::Module for LeakyRelu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply_op1(*self)
    }
}

/// A drop-in for `candle_nn::ops::leaky_relu` with the same signature: migrating a model is a
/// change of `use`. It is `xs.apply_op1(LeakyRelu(negative_slope))`: one fused kernel instead of
/// four, and the bits of the [numerics contract](crate::numerics), which differ from candle-nn's
/// composite in three places: the gradient at `x == 0` is `negative_slope` (candle-nn gives
/// `(1 + negative_slope) / 2`), `-0.0` stays `-0.0` for a positive slope (candle-nn gives `+0.0`),
/// and NaN inputs pass through unchanged on every backend. For f16/bf16 the slope is applied as
/// an f32 with one rounding of the product (candle-nn rounds the slope to the dtype first).
///
/// ```
/// use candle_core::{Device, Tensor};
/// // was: use candle_nn::ops::leaky_relu;
/// use candle_leaky_relu::leaky_relu;
///
/// let xs = Tensor::new(&[-2.0f32, 0.5], &Device::Cpu)?;
/// assert_eq!(leaky_relu(&xs, 0.1)?.to_vec1::<f32>()?, [-0.2, 0.5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn leaky_relu(xs: &Tensor, negative_slope: f64) -> Result<Tensor> {
    xs.apply_op1(LeakyRelu(negative_slope))
}
