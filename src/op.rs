//! The op itself: validation, dispatch to the backends, autograd, the layer, the extension trait
//! and the candle-nn drop-in. Every backend receives an already validated [`Slope`], a supported
//! dtype and layouts that stay inside their storage ([`check_layout`]): nothing is validated twice
//! and nothing is read or written before every check has passed.

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
/// `alpha` must be finite; any finite value (negative, zero, above one) is valid for f64 tensors.
/// f16, bf16 and f32 tensors use `alpha as f32`, so for them `|alpha|` must also be at most
/// `f32::MAX` (about 3.4028235e38): a larger slope is refused when the op is applied to such a
/// tensor, since only then is the dtype known. The field is public, so any slope can be built by
/// hand: every entry point checks it again and returns an error before any kernel runs.
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

/// The fused gradient of [`LeakyRelu`]: `apply_op2_no_bwd(x, dy)` gives `dx`, with `dy` where
/// `x > 0` and `alpha * dy` elsewhere (NaN `x` included), as the contract's backward table says.
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
    /// Checks that `alpha` is finite; `op` names the op in the error. The dtype-dependent check
    /// (an `alpha` that overflows f32) is [`check_slope`]'s.
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

/// The slope for a tensor of `dtype`: finite, a contract dtype, and for f16, bf16 and f32
/// tensors an `alpha as f32` that is finite too (`1e39` or `f64::MAX` would make it infinite).
fn check_slope(alpha: f64, dtype: DType, op: &'static str) -> Result<Slope> {
    let slope = Slope::new(alpha, op)?;
    check_dtype(dtype, op)?;
    if dtype != DType::F64 && !slope.f32.is_finite() {
        return Err(Error::msg(format!(
            "{op}: alpha {alpha:e} overflows f32, the slope type of {} tensors (|alpha| must be \
             at most {:e} for them; f64 tensors take any finite alpha)",
            dtype.as_str(),
            f32::MAX
        ))
        .bt());
    }
    Ok(slope)
}

/// A backend storage's length in elements, the bound every layout is checked against.
pub(crate) trait Elems: BackendStorage {
    /// How many elements of its dtype the storage holds.
    fn elems(&self) -> usize;
}

/// Checks that `l` is a view that stays inside a storage of `len` elements: one stride per dim,
/// an element count that fits `usize`, and the highest offset it addresses
/// (`start_offset + sum((dim - 1) * stride)`, in checked arithmetic) below `len`. An empty view
/// is valid wherever it starts. Candle's own shape arithmetic is unchecked (a broadcast's element
/// count can wrap), and the trait methods take hand-built layouts: every backend relies on this.
pub(crate) fn check_layout(l: &Layout, len: usize, op: &'static str) -> Result<()> {
    let (dims, strides, start) = (l.dims(), l.stride(), l.start_offset());
    let bad = |why: &str| {
        Error::msg(format!(
            "{op}: invalid layout, {why} (dims {dims:?}, strides {strides:?}, start offset \
             {start}, storage of {len} elements)"
        ))
        .bt()
    };
    if strides.len() != dims.len() {
        return Err(bad("not one stride per dim"));
    }
    let n = (dims.iter()).try_fold(1usize, |n, &d| n.checked_mul(d));
    match n {
        None => return Err(bad("the element count overflows usize")),
        Some(0) => return Ok(()),
        Some(_) => {}
    }
    // Every dim is at least 1 here.
    let last = (dims.iter().zip(strides)).try_fold(start, |off, (&d, &s)| {
        off.checked_add((d - 1).checked_mul(s)?)
    });
    match last {
        Some(last) if last < len => Ok(()),
        Some(_) => Err(bad("it addresses elements past the end of the storage")),
        None => Err(bad("its highest offset overflows usize")),
    }
}

/// Validates everything a backend relies on for one operand; runs before any kernel or write.
fn check<S: Elems>(alpha: f64, s: &S, l: &Layout, op: &'static str) -> Result<Slope> {
    let slope = check_slope(alpha, s.dtype(), op)?;
    check_layout(l, s.elems(), op)?;
    Ok(slope)
}

/// Validates the operands of the backward op: each as [`check`], same dtype, same shape.
fn check2<S: Elems>(alpha: f64, (s1, l1): (&S, &Layout), (s2, l2): (&S, &Layout)) -> Result<Slope> {
    let slope = check(alpha, s1, l1, BWD)?;
    if s1.dtype() != s2.dtype() {
        return Err(Error::DTypeMismatchBinaryOp {
            lhs: s1.dtype(),
            rhs: s2.dtype(),
            op: BWD,
        }
        .bt());
    }
    check_layout(l2, s2.elems(), BWD)?;
    if l1.dims() != l2.dims() {
        return Err(Error::ShapeMismatchBinaryOp {
            lhs: l1.shape().clone(),
            rhs: l2.shape().clone(),
            op: BWD,
        }
        .bt());
    }
    Ok(slope)
}

/// Validates an in-place call: as [`check`], and a view whose elements cannot overlap in storage
/// (a broadcast would transform the same element more than once). The overlap test is candle's
/// own (`Tensor::inplace_op1` applies it first; this covers direct calls of the `InplaceOp1`
/// methods) and, like candle, conservative: a hand-built view whose elements are distinct but
/// whose strides candle cannot prove so (`dims [3, 2]`, `strides [2, 3]`) is refused too. An
/// empty view has no elements to overlap and is accepted wherever it starts.
fn check_inplace<S: Elems>(alpha: f64, s: &S, l: &Layout) -> Result<Slope> {
    let slope = check(alpha, s, l, INPLACE)?;
    if !l.dims().contains(&0) && l.has_internal_overlap() {
        return Err(Error::msg(format!(
            "{INPLACE}: the view's elements may overlap in storage (dims {:?}, strides {:?}); \
             in place needs a view that reaches each element once",
            l.dims(),
            l.stride()
        ))
        .bt());
    }
    Ok(slope)
}

impl LeakyRelu {
    /// A LeakyReLU with slope `alpha`; refuses a NaN or infinite slope. A finite slope beyond the
    /// f32 range is accepted here and refused when applied to an f16, bf16 or f32 tensor.
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
        let slope = check(self.0, s, l, FWD)?;
        Ok((crate::cpu::forward(slope, s, l)?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let slope = check(self.0, s, l, FWD)?;
        Ok((crate::cuda::forward(slope, s, l)?, l.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s: &candle_core::MetalStorage,
        l: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let slope = check(self.0, s, l, FWD)?;
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
        let slope = check2(self.0, (s1, l1), (s2, l2))?;
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
        let slope = check2(self.0, (s1, l1), (s2, l2))?;
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
        let slope = check2(self.0, (s1, l1), (s2, l2))?;
        Ok((
            crate::metal::backward(slope, s1, l1, s2, l2)?,
            l1.shape().clone(),
        ))
    }
}

/// In place: `x = leaky_relu(x)` over the elements of the view, with the forward op's bits.
///
/// Candle records no in-place writes: the write is invisible to autograd (a `backward()` through
/// an earlier op that saved this tensor uses the new values), and it shows through every
/// `clone()` of the tensor and every view of the same storage, which share it.
/// [`LeakyReluExt::leaky_relu_`] therefore refuses tensors that autograd tracks; a direct
/// `inplace_op1(&LeakyRelu(..))` cannot see the tensor and does not. A view whose elements
/// overlap (a broadcast) is refused.
impl InplaceOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        INPLACE
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let slope = check_inplace(self.0, &*s, l)?;
        crate::cpu::forward_inplace(slope, s, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        let slope = check_inplace(self.0, &*s, l)?;
        crate::cuda::forward_inplace(slope, s, l)
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(&self, s: &mut candle_core::MetalStorage, l: &Layout) -> Result<()> {
        let slope = check_inplace(self.0, &*s, l)?;
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
    /// `self.inplace_op1(&LeakyRelu(alpha))`: overwrites the elements of this view, after
    /// refusing a tensor that autograd tracks (a `Var`, or anything computed from one): candle
    /// would not see the write, and gradients through it would be silently wrong. Use
    /// [`leaky_relu`](LeakyReluExt::leaky_relu) there.
    ///
    /// The check sees this tensor only. Candle has no version counters, so other tensors that
    /// share its storage are not protected: writing through a `detach()`ed copy of a `Var`
    /// changes the `Var`, and overwriting an untracked tensor that a graph has already used
    /// (say `x` in `(&x * &w)?.sum_all()?`) changes the gradient that graph's `backward()`
    /// gives for `w`. Write in place only to tensors nothing else will read.
    fn leaky_relu_(&self, alpha: f64) -> Result<()>;
}

impl LeakyReluExt for Tensor {
    fn leaky_relu(&self, alpha: f64) -> Result<Tensor> {
        self.apply_op1(LeakyRelu(alpha))
    }

    fn leaky_relu_(&self, alpha: f64) -> Result<()> {
        if self.track_op() {
            return Err(Error::msg(format!(
                "{INPLACE}: refused on a tensor tracked by autograd (a Var, or computed from one): \
                 candle does not record in-place writes, so gradients through this tensor would \
                 be silently wrong; use `leaky_relu` (out of place) instead"
            ))
            .bt());
        }
        self.inplace_op1(&LeakyRelu(alpha))
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
