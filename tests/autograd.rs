//! Autograd through `apply_op1`: the fused backward op inside candle's graph, the gradient at
//! exactly zero, a finite-difference check, and a tiny model trained with AdamW.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_leaky_relu::{LeakyRelu, LeakyReluExt};
use candle_nn::{Module, Optimizer, VarBuilder, VarMap};
use common::*;

/// d/dx sum(w * leaky_relu(x)) is `w` where x > 0 and `alpha * w` elsewhere, through candle's
/// graph, matching the reference bits (candle adds the gradient into a zero tensor, which turns
/// a -0.0 gradient into +0.0, so the reference gets the same treatment).
#[test]
fn gradient_through_graph_matches_reference() -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            let alpha = 0.3;
            let xv = [-3.0, -0.5, -0.0, 0.0, 0.25, 2.0, -7.5, 1e-3];
            let x = Var::from_tensor(&Tensor::new(&xv, &dev)?.to_dtype(dtype)?)?;
            let w = Tensor::new(&[1.0, -2.0, 0.5, 4.0, 3.0, -1.0, 0.125, 8.0], &dev)?
                .to_dtype(dtype)?;
            let loss = (x.apply_op1(LeakyRelu(alpha))? * &w)?.sum_all()?;
            let grads = loss.backward()?;
            let got = to_bits(grads.get(&x).expect("gradient of x"))?;
            let zero = to_bits(&Tensor::zeros(1, dtype, &Device::Cpu)?)?[0];
            let want: Vec<u64> = (to_bits(&x)?.iter().zip(to_bits(&w)?))
                .map(|(&x, w)| ref_bwd(dtype, x, w, alpha))
                .map(|b| if b == zero | sign_bit(dtype) { zero } else { b })
                .collect();
            assert_bits_eq(&format!("{dev:?} {dtype:?}"), &got, &want);
        }
    }
    Ok(())
}

fn sign_bit(dtype: DType) -> u64 {
    1 << (dtype.size_in_bytes() * 8 - 1)
}

/// At x == 0 (either sign) the gradient is alpha: PyTorch's choice, not candle-nn's (1 + a) / 2.
#[test]
fn gradient_at_zero_is_alpha() -> Result<()> {
    for dev in devices() {
        for alpha in [0.01, 0.2, -0.5, 1.5] {
            let x = Var::new(&[0.0f64, -0.0], &dev)?;
            let grads = x.leaky_relu(alpha)?.sum_all()?.backward()?;
            let g = grads.get(&x).expect("gradient").to_dtype(DType::F64)?;
            assert_eq!(g.to_vec1::<f64>()?, [alpha, alpha], "{dev:?}");
        }
    }
    Ok(())
}

/// f64 central differences away from the kink agree with the analytic gradient.
#[test]
fn finite_differences_f64() -> Result<()> {
    let dev = Device::Cpu;
    let alpha = 0.07;
    let xv = [-2.0, -0.7, -0.1, 0.3, 1.1, 4.0];
    let x = Var::new(&xv, &dev)?;
    let f = |t: &Tensor| -> Result<Tensor> { t.leaky_relu(alpha)?.sqr()?.sum_all() };
    let grad = f(&x)?
        .backward()?
        .get(&x)
        .expect("gradient")
        .to_vec1::<f64>()?;
    let h = 1e-6;
    for i in 0..xv.len() {
        let at = |d: f64| -> Result<f64> {
            let mut v = xv;
            v[i] += d;
            f(&Tensor::new(&v, &dev)?)?.to_scalar::<f64>()
        };
        let fd = (at(h)? - at(-h)?) / (2.0 * h);
        assert!(
            (fd - grad[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "x={}: {fd} vs {}",
            xv[i],
            grad[i]
        );
    }
    Ok(())
}

/// Linear -> LeakyRelu -> Linear, built with `candle_nn::seq()`, learns a piecewise-linear
/// target with AdamW; the loss must fall by well over an order of magnitude.
#[test]
fn tiny_model_trains_with_adamw() -> Result<()> {
    for dev in devices() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let model = candle_nn::seq()
            .add(candle_nn::linear(1, 32, vb.pp("l1"))?)
            .add(LeakyRelu(0.1))
            .add(candle_nn::linear(32, 1, vb.pp("l2"))?);
        let xs = Tensor::arange(-32i64, 32, &dev)?
            .to_dtype(DType::F32)?
            .affine(1.0 / 16.0, 0.0)?;
        let xs = xs.unsqueeze(D::Minus1)?;
        // |x| - 0.5 * x, a kinked target a ReLU-family net fits well.
        let ys = (xs.abs()? - (&xs * 0.5)?)?;
        let mut opt = candle_nn::AdamW::new(
            varmap.all_vars(),
            candle_nn::ParamsAdamW {
                lr: 0.02,
                ..Default::default()
            },
        )?;
        let loss = |m: &candle_nn::Sequential| -> Result<Tensor> {
            candle_nn::loss::mse(&m.forward(&xs)?, &ys)
        };
        let first = loss(&model)?.to_scalar::<f32>()?;
        for _ in 0..300 {
            opt.backward_step(&loss(&model)?)?;
        }
        let last = loss(&model)?.to_scalar::<f32>()?;
        assert!(
            last < first / 50.0 && last < 2e-3,
            "{dev:?}: loss {first} -> {last}"
        );
    }
    Ok(())
}

/// Gradients flow through a strided input (a transposed view) as well.
#[test]
fn gradient_of_transposed_input() -> Result<()> {
    for dev in devices() {
        let x = Var::new(&[[-1.0f32, 2.0, -3.0], [4.0, -5.0, 0.0]], &dev)?;
        let y = x.t()?.leaky_relu(0.5)?;
        let w = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &dev)?;
        let g = (y * w)?.sum_all()?.backward()?;
        let g = g.get(&x).expect("gradient").to_vec2::<f32>()?;
        assert_eq!(g, [[0.5, 3.0, 2.5], [2.0, 2.0, 3.0]], "{dev:?}");
    }
    Ok(())
}

/// In place and autograd: candle records no in-place writes, so `leaky_relu_` refuses a tensor
/// that autograd tracks (a `Var`, or anything computed from one) and writes nothing; an
/// untracked tensor is still overwritten. Both cases the refusal exists for are spelled out: a
/// forward that saved `x` before `x` was overwritten, and an in-place step on a computed tensor.
#[test]
fn inplace_refuses_tracked_tensors() -> Result<()> {
    for dev in devices() {
        let alpha = 0.25;
        let x = Var::new(&[-2.0f32, 3.0], &dev)?;
        let h = (x.as_tensor() * 2.0)?;
        let y = x.leaky_relu(alpha)?;
        for (what, t) in [("Var", x.as_tensor()), ("computed", &h), ("output", &y)] {
            let before = to_bits(t)?;
            let e = t.leaky_relu_(alpha).unwrap_err().to_string();
            assert!(
                e.contains("leaky_relu_:") && e.contains("autograd") && e.contains("`leaky_relu`"),
                "{dev:?} {what}: {e}"
            );
            assert_eq!(
                to_bits(t)?,
                before,
                "{dev:?} {what}: written despite the error"
            );
        }
        // The gradient is still the right one: nothing was overwritten behind autograd's back.
        let g = y.sum_all()?.backward()?;
        let g = g.get(&x).expect("gradient").to_vec1::<f32>()?;
        assert_eq!(g, [alpha as f32, 1.0], "{dev:?}");
        // An untracked tensor is overwritten as before.
        let d = Tensor::new(&[-2.0f32, 3.0], &dev)?;
        d.leaky_relu_(alpha)?;
        assert_eq!(d.to_vec1::<f32>()?, [-0.5, 3.0], "{dev:?}");
    }
    Ok(())
}
