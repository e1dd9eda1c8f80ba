//! The extension trait: the ops as methods on [`Tensor`].

use crate::base::Op;
use crate::leaky_relu::LeakyRelu;
use crate::prelu;
use candle_core::{Error, Result, Tensor};

/// `leaky_relu` and `prelu` methods on [`Tensor`].
pub trait LeakyReluExt {
    /// `self.apply_op1(LeakyRelu(alpha))`: a new tensor, with autograd.
    fn leaky_relu(&self, alpha: f64) -> Result<Tensor>;

    /// `self.inplace_op1(&LeakyRelu(alpha))`: overwrites the elements of this view, after
    /// refusing a tensor that autograd tracks.
    ///
    /// **In-place writes and autograd.** Candle records no in-place writes: a write is invisible
    /// to autograd (a `backward()` through an earlier op that saved this tensor uses the new
    /// values), and it shows through every `clone()` of the tensor and every view of the same
    /// storage, which share it. So this method refuses a tensor that autograd tracks (a `Var`, or
    /// anything computed from one): gradients through it would be silently wrong; use
    /// [`leaky_relu`](LeakyReluExt::leaky_relu) there. The check sees this tensor only. Candle
    /// has no version counters, so other tensors that share its storage are not protected:
    /// writing through a `detach()`ed copy of a `Var` changes the `Var`, and overwriting an
    /// untracked tensor that a graph has already used (say `x` in `(&x * &w)?.sum_all()?`)
    /// changes the gradient that graph's `backward()` gives for `w`. A direct
    /// `inplace_op1(&LeakyRelu(a))` cannot see the tensor and refuses nothing of this. Write in
    /// place only to tensors nothing else will read.
    fn leaky_relu_(&self, alpha: f64) -> Result<()>;

    /// PReLU, as PyTorch's `F.prelu(self, weight)`: [`PreluOp`](crate::PreluOp), a new tensor
    /// with autograd for both. The weight has one element or `self.dim(1)` elements (or
    /// `self`'s own shape); see [`PreluOp`](crate::PreluOp). A channel-last view gives a
    /// channel-last result, as the layer [`PReLU`](crate::PReLU) documents.
    fn prelu(&self, weight: &Tensor) -> Result<Tensor>;
}

impl LeakyReluExt for Tensor {
    fn leaky_relu(&self, alpha: f64) -> Result<Tensor> {
        self.apply_op1(LeakyRelu(alpha))
    }

    fn leaky_relu_(&self, alpha: f64) -> Result<()> {
        if self.track_op() {
            return Err(Error::msg(format!(
                "{}: refused on a tensor tracked by autograd (a Var, or computed from one): \
                 candle does not record in-place writes, so gradients through this tensor would \
                 be silently wrong; use `leaky_relu` (out of place) instead",
                Op::Inplace.name()
            ))
            .bt());
        }
        if self.dims().contains(&0) {
            // Empty: nothing to write, but the slope and dtype are still checked. Candle's own
            // overlap test would refuse some empty views (the zero strides it gives the dims
            // before a zero dim); their flattened form has a unit stride.
            return self.flatten_all()?.inplace_op1(&LeakyRelu(alpha));
        }
        self.inplace_op1(&LeakyRelu(alpha))
    }

    fn prelu(&self, weight: &Tensor) -> Result<Tensor> {
        prelu::apply(self, weight)
    }
}
