//! The PReLU op: LeakyReLU with a learned slope per channel. [`PreluOp`] (the forward, over
//! `(x, weight)`), [`PreluBackward`] (the fused gradients, over `(x, weight, dy)`, itself
//! differentiable), the layer [`PReLU`] and its constructor [`prelu`], drop-ins for
//! `candle_nn::{PReLU, prelu}`. Each entry point validates through [`crate::base`] and
//! dispatches to a backend.

use crate::base::{self, Channels, Op};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// PReLU as a candle op over `(x, weight)`: `y = x` where `x > 0` (and NaN), else
/// `weight[c] * x`, with `c` the element's channel, bit for bit as the
/// [numerics contract](crate::numerics)'s PReLU section says.
///
/// The weight has x's dtype and one element (one slope for all of x), `x.dim(1)` elements (a
/// slope per channel along dim 1, for x of rank 2 or more; any weight shape with that many
/// elements), or x's own shape (a slope per element). Anything else is refused with an error
/// naming the op, x's dims and the weight's shape. Weights are used as they are: never read on
/// the host, so a GPU never waits for them; a NaN or infinite slope gives what the contract's
/// tables give for it.
///
/// Its backward is [`PreluBackward`]: `dx` and the weight gradient in one pass over x and dy,
/// the weight gradient summed in the fixed order of the contract (the same bits on every
/// backend and for any thread count).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use candle_leaky_relu::PreluOp;
///
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[-2.0f32, 3.0], [-4.0, -1.0]], &dev)?; // (batch 2, channels 2)
/// let w = Tensor::new(&[0.5f32, 0.25], &dev)?;
/// let y = x.apply_op2(&w, PreluOp)?;
/// assert_eq!(y.to_vec2::<f32>()?, [[-1.0, 3.0], [-2.0, -0.25]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PreluOp;

/// PReLU's fused gradients as a candle op over `(x, weight, dy)`: one tensor of
/// `x.elem_count() + weight.elem_count()` elements, `dx` (x's shape, in row-major order)
/// followed by `dweight` (the weight's shape, in row-major order).
///
/// `dx = dy` where `x > 0`, else `weight[c] * dy` (the gradient at `x == 0` is the slope).
/// `dweight[c]` sums `x * dy` over the channel's elements with `x > 0` false (NaN `x` included),
/// in the fixed order of NUMERICS.md ("PReLU weight gradient: summation order"), rounded once to
/// the weight's dtype.
///
/// It is differentiable itself (the contract's "Second-order gradients"): `dx` is linear in `dy`
/// and in the weight, `dweight` in `x` and in `dy`, and its backward gives those terms through
/// this op and candle's ops. [`PreluOp`]'s backward calls it and splits the result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PreluBackward;

/// Validates `(x, w)`: x's dtype and layout, a weight of x's dtype inside its storage, and a
/// weight shape that fits x. Returns x's element count and the channel layout.
fn check<B: base::Backend>(
    x: (&B, &Layout),
    w: (&B, &Layout),
    op: Op,
) -> Result<(usize, Channels)> {
    let n = base::check_operand(x.0, x.1, op)?;
    let wn = base::check_weight(x, w, op)?;
    Ok((n, base::check_prelu(x.1, n, w.1, wn, op)?))
}

/// Validates `(x, w, dy)`: as [`check`], and `dy` of x's dtype and dims.
fn check_bwd<B: base::Backend>(
    x: (&B, &Layout),
    w: (&B, &Layout),
    dy: (&B, &Layout),
) -> Result<(usize, Channels)> {
    let checked = check(x, w, Op::PreluBwd)?;
    base::check_pair(x, dy, Op::PreluBwd)?;
    Ok(checked)
}

impl CustomOp2 for PreluOp {
    fn name(&self) -> &'static str {
        Op::Prelu.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, ch) = check((s1, l1), (s2, l2), Op::Prelu)?;
        let y = crate::cpu::prelu::forward((s1, l1), (s2, l2), ch, n)?;
        Ok((y, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, ch) = check((s1, l1), (s2, l2), Op::Prelu)?;
        let y = crate::cuda::prelu::forward((s1, l1), (s2, l2), ch, n)?;
        Ok((y, l1.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s1: &candle_core::MetalStorage,
        l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let (n, ch) = check((s1, l1), (s2, l2), Op::Prelu)?;
        let y = crate::metal::prelu::forward((s1, l1), (s2, l2), ch, n)?;
        Ok((y, l1.shape().clone()))
    }

    /// `(dx, dweight)` from [`PreluBackward`], one fused op on the forward's device, recorded
    /// for a second backward.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = x.apply_op3(w, grad_res, PreluBackward)?;
        let (dx, dw) = split(&both, x, w)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `[dx ++ dweight]` split into `dx` (x's shape) and `dweight` (w's shape), as views.
fn split(both: &Tensor, x: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = x.elem_count();
    let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
    let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
    Ok((dx, dw))
}

/// A weight-shaped tensor `v` laid over x's shape: each element of x gets its channel's value.
fn per_element(v: &Tensor, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let ch = base::check_prelu(
        x.layout(),
        x.elem_count(),
        w.layout(),
        w.elem_count(),
        Op::PreluBwd,
    )?;
    if ch.channels == 1 {
        v.reshape(())?.broadcast_as(x.shape())
    } else if ch.inner == 1 && ch.outer == 1 && w.dims() == x.dims() {
        Ok(v.clone())
    } else {
        let mut s = vec![1; x.rank()];
        s[1] = ch.channels;
        v.reshape(s)?.broadcast_as(x.shape())
    }
}

/// A tensor of x's shape summed per channel into the weight's shape.
fn per_channel(t: &Tensor, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let ch = base::check_prelu(
        x.layout(),
        x.elem_count(),
        w.layout(),
        w.elem_count(),
        Op::PreluBwd,
    )?;
    let summed = if ch.channels == 1 {
        t.sum_all()?
    } else if ch.inner == 1 && ch.outer == 1 && w.dims() == x.dims() {
        t.clone()
    } else {
        let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        t.sum(dims)?
    };
    summed.reshape(w.shape())
}

impl CustomOp3 for PreluBackward {
    fn name(&self) -> &'static str {
        Op::PreluBwd.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, ch) = check_bwd((s1, l1), (s2, l2), (s3, l3))?;
        let out = crate::cpu::prelu::backward((s1, l1), (s2, l2), (s3, l3), ch, n)?;
        Ok((out, Shape::from(n + ch.channels)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, ch) = check_bwd((s1, l1), (s2, l2), (s3, l3))?;
        let out = crate::cuda::prelu::backward((s1, l1), (s2, l2), (s3, l3), ch, n)?;
        Ok((out, Shape::from(n + ch.channels)))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s1: &candle_core::MetalStorage,
        l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
        s3: &candle_core::MetalStorage,
        l3: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        let (n, ch) = check_bwd((s1, l1), (s2, l2), (s3, l3))?;
        let out = crate::metal::prelu::backward((s1, l1), (s2, l2), (s3, l3), ch, n)?;
        Ok((out, Shape::from(n + ch.channels)))
    }

    /// The second-order terms, given the upstream `[u ++ v]` of `[dx ++ dweight]`, with `m` the
    /// mask of elements whose `x > 0` is false: for `dy`, `dx(x, w, u) + m * x * v[c]`; for the
    /// weight, the per-channel sum of `m * dy * u`; for `x`, `m * dy * v[c]` (the mask's own
    /// derivative is zero, as in PyTorch).
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (u, v) = split(grad_res, x, w)?;
        let m = (1.0 - x.gt(0.0)?.to_dtype(x.dtype())?)?;
        let v_x = per_element(&v, x, w)?;
        let (dx_u, _) = split(&x.apply_op3(w, &u, PreluBackward)?, x, w)?;
        let m_v = (&m * &v_x)?;
        let grad_dy = (dx_u + (&m_v * x)?)?;
        let grad_w = per_channel(&((&m * dy)? * &u)?, x, w)?;
        let grad_x = (m_v * dy)?;
        Ok((Some(grad_x), Some(grad_w), Some(grad_dy)))
    }
}

/// PReLU as a layer: a drop-in for `candle_nn::PReLU` (the same constructor and accessors), on
/// this crate's fused [`PreluOp`]. `use candle_leaky_relu::{prelu, PReLU};` in place of
/// `use candle_nn::{prelu, PReLU};` moves a model over, and a PyTorch `nn.PReLU` state dict
/// (`weight` of shape `(C,)` or `(1,)`) loads as it does into candle-nn.
///
/// What changes against candle-nn's composite (five kernels): one kernel forward and one
/// backward; the gradient at `x == 0` is the slope (candle-nn's `maximum`/`minimum` give half
/// of each side); `-0.0` keeps its sign; NaN inputs pass through on every backend; f16/bf16
/// products are formed in f32 and rounded once; the weight gradient has the same bits on every
/// backend. Inputs: every input `candle_nn::PReLU::forward` accepts (a weight of one element, of
/// `x.dim(1)` elements, or of x's own shape).
///
/// **Channel-last views keep their layout.** For x of rank >= 3 whose channels (dim 1) are its
/// innermost dim in memory, the other dims in order before them (`t.permute((0, 3, 1, 2))` of a
/// contiguous NHWC tensor `t`, PyTorch's `channels_last`), and one slope per channel, the op runs
/// on x's own memory seen as a `(rows, channels)` matrix, and the result is returned as the same
/// kind of view: a channel-last tensor of x's shape, not a contiguous one (as PyTorch keeps the
/// memory format). Its values are those of the contiguous result, and the weight gradient has
/// the same bits, since a channel's terms come in the same logical order; without this, the op
/// would transpose every element into a contiguous output. Call `.contiguous()` on the result
/// where a contiguous tensor is needed. `x.apply_op2(&w, PreluOp)` (the op itself) always
/// returns a contiguous tensor.
///
/// ```
/// use candle_core::{DType, Device, Module, Tensor};
/// use candle_leaky_relu::{prelu, PReLU};
/// use candle_nn::{VarBuilder, VarMap};
///
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let layer: PReLU = prelu(Some(3), vb.pp("act"))?; // weight "act.weight", (3,), all 0.25
/// let x = Tensor::new(&[[-4.0f32, 1.0, -8.0]], &Device::Cpu)?;
/// assert_eq!(layer.forward(&x)?.to_vec2::<f32>()?, [[-1.0, 1.0, -2.0]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PReLU {
    weight: Tensor,
    is_scalar: bool,
}

impl PReLU {
    /// A layer with this weight; `is_scalar` says that it is one slope for every element (a
    /// weight of one element), as in candle-nn.
    pub fn new(weight: Tensor, is_scalar: bool) -> Self {
        Self { weight, is_scalar }
    }

    /// The slopes.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Whether the weight is one slope for every element.
    pub fn is_scalar(&self) -> bool {
        self.is_scalar
    }
}

impl candle_nn::Module for PReLU {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.is_scalar && self.weight.elem_count() != 1 {
            return Err(candle_core::Error::msg(format!(
                "{}: a scalar PReLU needs a weight of one element, got shape {:?}",
                Op::Prelu.name(),
                self.weight.dims()
            ))
            .bt());
        }
        apply(xs, &self.weight)
    }
}

/// PReLU on a tensor, as [`PReLU`] and [`LeakyReluExt::prelu`](crate::LeakyReluExt::prelu) run
/// it: [`PreluOp`], with autograd.
///
/// Channel-last views keep their layout: see [`PReLU`].
pub(crate) fn apply(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    match channel_last_order(x, w) {
        Some((to_last, back)) => {
            let c = x.dim(1)?;
            let cl = x.permute(to_last)?;
            let dims = cl.dims().to_vec();
            let rows = cl.reshape((x.elem_count() / c, c))?;
            rows.apply_op2(w, PreluOp)?.reshape(dims)?.permute(back)
        }
        None => x.apply_op2(w, PreluOp),
    }
}

/// For a channel-last view of rank `r >= 3` with a weight of one slope per channel (more than
/// one channel): the permutation that moves dim 1 last (after which the view is contiguous) and
/// the one that moves it back. `None` for anything else (contiguous and empty tensors included).
fn channel_last_order(x: &Tensor, w: &Tensor) -> Option<(Vec<usize>, Vec<usize>)> {
    let r = x.rank();
    let c = *x.dims().get(1)?;
    if r < 3 || c < 2 || x.elem_count() == 0 || x.is_contiguous() {
        return None;
    }
    if w.elem_count() != c || w.dims() == x.dims() {
        return None;
    }
    let to_last: Vec<usize> = std::iter::once(0).chain(2..r).chain([1]).collect();
    let back: Vec<usize> = [0, r - 1].into_iter().chain(1..r - 1).collect();
    x.permute(to_last.clone())
        .ok()?
        .is_contiguous()
        .then_some((to_last, back))
}

/// A [`PReLU`] layer whose weight `weight` is taken from `vb`: `(num_channels,)` slopes, or one
/// slope `(1,)` for `None` (PyTorch's encoding of a shared slope), initialised to 0.25 (PyTorch's
/// default). A drop-in for `candle_nn::prelu`.
pub fn prelu(num_channels: Option<usize>, vb: candle_nn::VarBuilder) -> Result<PReLU> {
    let init = candle_nn::init::Init::Const(0.25);
    let weight = vb.get_with_hints((num_channels.unwrap_or(1),), "weight", init)?;
    Ok(PReLU::new(weight, num_channels.is_none()))
}
