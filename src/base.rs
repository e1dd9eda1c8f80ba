//! The ground floor: the vocabulary every layer shares and every check an op runs before a
//! backend sees its input. It imports nothing of the crate.
//!
//! - [`Op`]: every operation, with the name candle and every error print and the stem of its
//!   kernels' names; the kernel sources mirror it once each.
//! - [`Backend`]: what validation needs to know of a backend's storage (its length in elements,
//!   the dtypes the backend supports).
//! - [`Slope`]: a validated LeakyReLU slope in the forms the kernels use.
//! - The checks: [`check_operand`] (dtype and layout), [`check_pair`] (a second operand of the
//!   same dtype and shape), [`check_inplace`] (a view that reaches each element once),
//!   [`Slope::for_dtype`]. A backend receives only input that passed them: nothing is checked
//!   twice, and nothing is read or written before every check has passed.

use candle_core::backend::BackendStorage;
use candle_core::{DType, Error, Layout, Result};

/// Every operation of the crate. [`Op::name`] is what candle and the errors print;
/// [`Op::kernel`] is the stem of the kernel entry points (`{kernel}_{dtype}...`), mirrored once
/// in each kernel source (`kernels/leaky_relu.cu`, `kernels/leaky_relu.metal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// `y = leaky_relu(x)` into a new tensor.
    Fwd,
    /// `dx` from `(x, dy)` into a new tensor.
    Bwd,
    /// `x = leaky_relu(x)` through the view.
    Inplace,
    /// PReLU: `y = prelu(x, w)` into a new tensor.
    Prelu,
    /// PReLU's gradients: `dx ++ dweight` from `(x, w, dy)` into a new tensor.
    PreluBwd,
}

impl Op {
    /// The op's name, as candle and every error of the crate print it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Op::Fwd => "leaky_relu",
            Op::Bwd => "leaky_relu_backward",
            Op::Inplace => "leaky_relu_",
            Op::Prelu => "prelu",
            Op::PreluBwd => "prelu_backward",
        }
    }

    /// The stem of the op's kernel entry points.
    #[cfg_attr(not(any(feature = "cuda", feature = "metal")), allow(dead_code))]
    pub(crate) const fn kernel(self) -> &'static str {
        match self {
            Op::Fwd => "leaky_relu_fwd",
            Op::Bwd => "leaky_relu_bwd",
            Op::Inplace => "leaky_relu_inplace",
            Op::Prelu => "prelu_fwd",
            Op::PreluBwd => "prelu_bwd",
        }
    }
}

/// What the validation layer needs to know of a backend's storage.
pub(crate) trait Backend: BackendStorage {
    /// The dtypes this backend computes; every other dtype is refused before a kernel runs.
    const DTYPES: &'static [DType];
    /// How many elements of its dtype the storage holds: the bound every layout is checked
    /// against.
    fn elem_len(&self) -> usize;
}

/// The error for a dtype outside the contract or the backend: candle's
/// `UnsupportedDTypeForOp`, naming the op.
pub(crate) fn unsupported(dtype: DType, op: Op) -> Error {
    Error::UnsupportedDTypeForOp(dtype, op.name())
}

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
    /// Checks that `alpha` is finite. The dtype-dependent check is [`Slope::for_dtype`]'s.
    pub(crate) fn new(alpha: f64, op: Op) -> Result<Self> {
        if !alpha.is_finite() {
            return Err(Error::msg(format!(
                "{}: alpha must be finite, got {alpha}",
                op.name()
            )));
        }
        Ok(Self {
            f64: alpha,
            f32: alpha as f32,
        })
    }

    /// The slope for a tensor of `dtype`: finite, and for f16, bf16 and f32 tensors an
    /// `alpha as f32` that is finite too. `alpha as f32` is infinite exactly when
    /// `|alpha| >= 2^128 - 2^103` (about 3.4028235678e38): smaller values round to at most
    /// `f32::MAX`.
    pub(crate) fn for_dtype(alpha: f64, dtype: DType, op: Op) -> Result<Self> {
        let slope = Self::new(alpha, op)?;
        if dtype != DType::F64 && !slope.f32.is_finite() {
            return Err(Error::msg(format!(
                "{}: alpha {alpha:e} overflows f32, the slope type of {} tensors (alpha as f32 \
                 is infinite for |alpha| >= 2^128 - 2^103, about 3.4028235678e38; f64 tensors \
                 take any finite alpha)",
                op.name(),
                dtype.as_str(),
            ))
            .bt());
        }
        Ok(slope)
    }
}

/// The number of elements of `l`'s view: 0 when any dim is 0 (whatever the others), else their
/// product, or `None` when that overflows `usize`. Candle's own `elem_count` is unchecked.
pub(crate) fn elem_count(l: &Layout) -> Option<usize> {
    let dims = l.dims();
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Checks that `l` is a view that stays inside a storage of `len` elements: one stride per dim,
/// an element count that fits `usize`, and the highest offset it addresses
/// (`start_offset + sum((dim - 1) * stride)`, in checked arithmetic) below `len`. An empty view
/// is valid wherever it starts. Candle's own shape arithmetic is unchecked (a broadcast's element
/// count can wrap), and the trait methods take hand-built layouts: every backend relies on this.
/// Returns the view's element count.
fn check_layout(l: &Layout, len: usize, op: Op) -> Result<usize> {
    let (dims, strides, start) = (l.dims(), l.stride(), l.start_offset());
    let bad = |why: &str| {
        Error::msg(format!(
            "{}: invalid layout, {why} (dims {dims:?}, strides {strides:?}, start offset \
             {start}, storage of {len} elements)",
            op.name()
        ))
        .bt()
    };
    if strides.len() != dims.len() {
        return Err(bad("not one stride per dim"));
    }
    let n = match elem_count(l) {
        None => return Err(bad("the element count overflows usize")),
        Some(0) => return Ok(0),
        Some(n) => n,
    };
    // Every dim is at least 1 here.
    let last = (dims.iter().zip(strides)).try_fold(start, |off, (&d, &s)| {
        off.checked_add((d - 1).checked_mul(s)?)
    });
    match last {
        Some(last) if last < len => Ok(n),
        Some(_) => Err(bad("it addresses elements past the end of the storage")),
        None => Err(bad("its highest offset overflows usize")),
    }
}

/// Validates one operand: a dtype its backend computes and a layout inside its storage.
/// Returns the view's element count.
pub(crate) fn check_operand<B: Backend>(s: &B, l: &Layout, op: Op) -> Result<usize> {
    if !B::DTYPES.contains(&s.dtype()) {
        return Err(unsupported(s.dtype(), op));
    }
    check_layout(l, s.elem_len(), op)
}

/// Validates a second operand against a first that passed [`check_operand`]: the same dtype,
/// a layout inside its storage, the same dims (so the same element count).
pub(crate) fn check_pair<B: Backend>(
    (s1, l1): (&B, &Layout),
    (s2, l2): (&B, &Layout),
    op: Op,
) -> Result<()> {
    if s1.dtype() != s2.dtype() {
        return Err(Error::DTypeMismatchBinaryOp {
            lhs: s1.dtype(),
            rhs: s2.dtype(),
            op: op.name(),
        }
        .bt());
    }
    check_layout(l2, s2.elem_len(), op)?;
    if l1.dims() != l2.dims() {
        return Err(Error::ShapeMismatchBinaryOp {
            lhs: l1.shape().clone(),
            rhs: l2.shape().clone(),
            op: op.name(),
        }
        .bt());
    }
    Ok(())
}

/// Validates PReLU's weight against an x that passed [`check_operand`]: x's dtype and a layout
/// inside its storage (its shape is [`check_prelu`]'s). Returns the weight's element count.
pub(crate) fn check_weight<B: Backend>(
    (x, _): (&B, &Layout),
    (w, lw): (&B, &Layout),
    op: Op,
) -> Result<usize> {
    if x.dtype() != w.dtype() {
        return Err(Error::msg(format!(
            "{}: the weight's dtype {} differs from x's {}; convert it with to_dtype",
            op.name(),
            w.dtype().as_str(),
            x.dtype().as_str()
        ))
        .bt());
    }
    check_layout(lw, w.elem_len(), op)
}

/// Validates the target of an in-place op: as [`check_operand`], and a view whose elements
/// cannot overlap in storage (a broadcast would transform the same element more than once).
/// The overlap test is candle's own (`Tensor::inplace_op1` applies it first; this covers direct
/// calls of the `InplaceOp1` methods) and, like candle, conservative: a hand-built view whose
/// elements are distinct but whose strides candle cannot prove so (`dims [3, 2]`,
/// `strides [2, 3]`) is refused too. An empty view has no elements to overlap and is accepted
/// wherever it starts, before that test (which sees the zero strides candle gives after a zero
/// dim).
/// Returns the view's element count.
pub(crate) fn check_inplace<B: Backend>(s: &B, l: &Layout, op: Op) -> Result<usize> {
    let n = check_operand(s, l, op)?;
    if n != 0 && l.has_internal_overlap() {
        return Err(Error::msg(format!(
            "{}: the view's elements may overlap in storage (dims {:?}, strides {:?}); in place \
             needs a view that reaches each element once",
            op.name(),
            l.dims(),
            l.stride()
        ))
        .bt());
    }
    Ok(n)
}

/// How PReLU's weight maps onto x: x's elements, in logical row-major order, seen as
/// `(outer, channels, inner)`; the element at logical index `i` takes the slope of weight element
/// `(i / inner) % channels` (in the weight's own logical order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Channels {
    /// Blocks of `channels * inner` elements (x's dim 0 for per-channel weights, else 1).
    pub outer: usize,
    /// Weight elements: 1 (one slope), x's dim 1, or x's element count (x's own shape).
    pub channels: usize,
    /// Consecutive elements that share a slope.
    pub inner: usize,
}

/// Validates PReLU's weight against x (both layouts already checked, `n` and `wn` their element
/// counts, the same dtype): one element (one slope for every element), x's own dims (a slope per
/// element, as candle-nn's `PReLU` accepts), or, for x of rank >= 2, `x.dim(1)` elements (a slope
/// per channel along dim 1, whatever the weight's shape). Anything else is refused with an error
/// naming the op, x's dims and the weight's shape.
pub(crate) fn check_prelu(x: &Layout, n: usize, w: &Layout, wn: usize, op: Op) -> Result<Channels> {
    let dims = x.dims();
    if wn == 1 {
        return Ok(Channels {
            outer: 1,
            channels: 1,
            inner: n,
        });
    }
    if w.dims() == dims {
        return Ok(Channels {
            outer: 1,
            channels: n,
            inner: 1,
        });
    }
    if dims.len() >= 2 && wn == dims[1] {
        // The product of dims that passed `check_operand` fits usize; with a zero dim the
        // whole view is empty.
        let inner = if n == 0 {
            0
        } else {
            dims[2..].iter().product()
        };
        return Ok(Channels {
            outer: dims[0],
            channels: wn,
            inner,
        });
    }
    Err(Error::msg(format!(
        "{}: a weight of shape {:?} does not fit x of dims {dims:?}: the weight must have one \
         element, x.dim(1) elements (x of rank 2 or more), or x's own shape",
        op.name(),
        w.dims()
    ))
    .bt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Shape;

    #[test]
    fn op_names_are_distinct_and_kernels_share_a_stem() {
        let ops = [Op::Fwd, Op::Bwd, Op::Inplace, Op::Prelu, Op::PreluBwd];
        for (i, a) in ops.iter().enumerate() {
            for b in &ops[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(a.kernel(), b.kernel());
            }
        }
        assert_eq!(
            ops.map(|o| (o.name(), o.kernel())),
            [
                ("leaky_relu", "leaky_relu_fwd"),
                ("leaky_relu_backward", "leaky_relu_bwd"),
                ("leaky_relu_", "leaky_relu_inplace"),
                ("prelu", "prelu_fwd"),
                ("prelu_backward", "prelu_bwd"),
            ]
        );
    }

    #[test]
    fn elem_count_is_zero_with_a_zero_dim_even_when_the_rest_overflows() {
        let l = |dims: &[usize]| Layout::new(Shape::from(dims), vec![1; dims.len()], 0);
        assert_eq!(elem_count(&l(&[usize::MAX, 2, 0])), Some(0));
        assert_eq!(elem_count(&l(&[1 << 40, 1 << 40, 0])), Some(0));
        assert_eq!(elem_count(&l(&[1 << 40, 1 << 40])), None);
        assert_eq!(elem_count(&l(&[])), Some(1));
        assert_eq!(elem_count(&l(&[3, 5])), Some(15));
    }
}
