//! LeakyReLU for [candle](https://github.com/huggingface/candle) as one fused custom op.
//!
//! `y = x` for `x > 0`, else `alpha * x`, with one kernel per backend (CPU, CUDA behind the
//! `cuda` feature, Metal behind the `metal` feature) that all produce exactly the bits set out in
//! the [numerics contract](numerics), NaNs and signed zeros included.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use candle_leaky_relu::{LeakyRelu, LeakyReluExt};
//!
//! let xs = Tensor::new(&[-2.0f32, -0.0, 0.5, 3.0], &Device::Cpu)?;
//! let ys = xs.apply_op1(LeakyRelu(0.1))?; // or xs.leaky_relu(0.1)?
//! assert_eq!(ys.to_vec1::<f32>()?, [-0.2, -0.0, 0.5, 3.0]);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! Entry points:
//! - [`LeakyRelu`]: a [`candle_core::CustomOp1`] (with autograd), a [`candle_core::InplaceOp1`]
//!   and a [`candle_nn::Module`], so it works with `apply_op1`, `inplace_op1` and
//!   `candle_nn::seq()`.
//! - [`LeakyReluBackward`]: the fused gradient `dx` from `(x, dy)`, a [`candle_core::CustomOp2`].
//! - [`LeakyReluExt`]: `xs.leaky_relu(alpha)` and `xs.leaky_relu_(alpha)` on [`candle_core::Tensor`]
//!   (the in-place one refuses tensors that autograd tracks: see
//!   [`LeakyReluExt::leaky_relu_`] for in-place writes and autograd).
//! - [`leaky_relu`]: `leaky_relu(xs, negative_slope)`, a drop-in for `candle_nn::ops::leaky_relu`.
//!
//! Every entry point validates the slope, the dtype and the layouts (element counts that overflow,
//! views that reach past their storage) and returns a [`candle_core::Error`] naming the op before
//! anything is read or written. The CPU path assumes Rust's default floating-point environment
//! (no flush-to-zero / denormals-are-zero).

#![deny(missing_docs)]

// The house, bottom to top; no module imports one above it.
// Ground floor: the shared vocabulary and checks; the GPU walks' index width.
mod base;
#[cfg(any(feature = "cuda", feature = "metal"))]
mod index_width;
// Backends: import only the ground floor.
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "metal")]
mod metal;
// Ops: validate through `base`, dispatch to the backends; one module per op.
mod leaky_relu;
mod prelu;
// The extension trait over the ops.
mod ext;

pub use ext::LeakyReluExt;
pub use leaky_relu::{leaky_relu, LeakyRelu, LeakyReluBackward};
pub use prelu::{prelu, PReLU, PreluBackward, PreluOp};

#[doc = include_str!("../NUMERICS.md")]
pub mod numerics {}
