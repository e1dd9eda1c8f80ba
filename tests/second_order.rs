//! The contract's "Second-order gradients": a backward pass through `LeakyRelu` records itself,
//! so a second backward (a gradient penalty) sees every term. Candle keeps the backward graph
//! only with `CANDLE_GRAD_DO_NOT_DETACH=1`, read once per thread: every test here sets it before
//! its first backward (this file is its own test binary, so no other test reads it first).

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, LeakyReluExt};
use common::*;

fn keep_backward_graph() {
    // Every test of this binary sets the same value, before any backward.
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
}

/// The gradient penalty `P(w) = sum((d/dx sum(y^2))^2)` with `y = act(x * w)`: `dL/dx` depends
/// on `w` through `dy = 2y`, so `dP/dw` needs the backward op's gradient for `dy`.
fn penalty(act: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Var, w: &Var) -> Result<Tensor> {
    let y = act(&(x.as_tensor() * w.as_tensor())?)?;
    let loss = y.sqr()?.sum_all()?;
    let grads = loss.backward()?;
    let dx = grads.get(x).expect("dL/dx").clone();
    dx.sqr()?.sum_all()
}

fn inputs(dev: &Device) -> Result<(Var, Var)> {
    // No product x * w is zero: the composites' gradient differs from the contract only there.
    let x = Var::new(&[-1.5f64, -0.4, 0.3, 2.0, -0.9, 1.2, -2.2, 0.7], dev)?;
    let w = Var::new(&[0.8f64, -1.1, 1.7, 0.5, 1.3, -0.6, 0.9, -1.4], dev)?;
    Ok((x, w))
}

/// dP/dw through this crate's op: against candle-nn's composite (the same function away from
/// x * w == 0) and against f64 central differences of P itself.
#[test]
fn gradient_penalty_matches_composite_and_finite_differences() -> Result<()> {
    keep_backward_graph();
    let alpha = 0.2;
    for dev in devices() {
        let (x, w) = inputs(&dev)?;
        let ours = |t: &Tensor| t.leaky_relu(alpha);
        let theirs = |t: &Tensor| candle_nn::ops::leaky_relu(t, alpha);
        let p = penalty(&ours, &x, &w)?;
        let g = p.backward()?;
        let got = g.get(&w).expect("dP/dw: a second-order term was dropped");
        let got = got.to_vec1::<f64>()?;
        let p_c = penalty(&theirs, &x, &w)?;
        let want = p_c
            .backward()?
            .get(&w)
            .expect("composite dP/dw")
            .to_vec1::<f64>()?;
        assert_eq!(p.to_scalar::<f64>()?, p_c.to_scalar::<f64>()?, "{dev:?}");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{dev:?} w[{i}]: {a} vs {b}"
            );
        }
        // Central differences of P in each w[i].
        let wv = w.to_vec1::<f64>()?;
        for i in 0..wv.len() {
            let h = 1e-6;
            let at = |d: f64| -> Result<f64> {
                let mut v = wv.clone();
                v[i] += d;
                let wi = Var::new(v.as_slice(), &dev)?;
                penalty(&ours, &x, &wi)?.to_scalar::<f64>()
            };
            let fd = (at(h)? - at(-h)?) / (2.0 * h);
            assert!(
                (fd - got[i]).abs() <= 1e-5 * fd.abs().max(1.0),
                "{dev:?} w[{i}]: analytic {} vs finite difference {fd}",
                got[i]
            );
        }
    }
    Ok(())
}

/// The backward op's own gradients: for `dy`, the backward table applied to `(x, upstream)`, bit
/// for bit; for `x`, none (zero), as the contract says.
#[test]
fn backward_op_gradient_for_dy_is_the_backward_table() -> Result<()> {
    keep_backward_graph();
    let alpha = -0.35;
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            let xs = [-3.0, -0.0, 0.0, 0.5, 2.0, -1e-3, 7.0, -2.5];
            let x = Var::from_tensor(&Tensor::new(&xs, &dev)?.to_dtype(dtype)?)?;
            let dy = Var::from_tensor(
                &Tensor::new(&[1.0, -2.0, 0.25, 3.0, -0.5, 4.0, 1.5, -8.0], &dev)?
                    .to_dtype(dtype)?,
            )?;
            let u = Tensor::new(&[0.5, 1.5, -2.0, -1.0, 0.75, 3.0, -0.25, 2.0], &dev)?
                .to_dtype(dtype)?;
            let dx = x.apply_op2(&dy, LeakyReluBackward(alpha))?;
            let grads = (dx * &u)?.sum_all()?.backward()?;
            assert!(
                grads.get(&x).is_none(),
                "{dev:?} {dtype:?}: x gets no gradient"
            );
            let got = to_bits(grads.get(&dy).expect("gradient for dy"))?;
            let zero = to_bits(&Tensor::zeros(1, dtype, &Device::Cpu)?)?[0];
            let sign = 1u64 << (dtype.size_in_bytes() * 8 - 1);
            let want: Vec<u64> = (to_bits(&x)?.iter().zip(to_bits(&u)?))
                .map(|(&x, u)| ref_bwd(dtype, x, u, alpha))
                // candle adds the gradient into a zero tensor: -0.0 becomes +0.0.
                .map(|b| if b == zero | sign { zero } else { b })
                .collect();
            assert_bits_eq(&format!("{dev:?} {dtype:?}"), &got, &want);
        }
    }
    Ok(())
}

/// Through a `Module`: a penalty over `LeakyRelu` as a layer, f32, against the composite.
#[test]
fn penalty_through_the_layer_f32() -> Result<()> {
    keep_backward_graph();
    use candle_nn::Module;
    let dev = Device::Cpu;
    let x = Var::new(&[-1.0f32, 0.5, -2.0, 3.0], &dev)?;
    let w = Var::new(&[1.5f32, -0.5, 0.25, 2.0], &dev)?;
    let layer = LeakyRelu(0.2);
    let f = |t: &Tensor| layer.forward(t);
    let g = penalty(&f, &x, &w)?.backward()?;
    let got = g
        .get(&w)
        .expect("dP/dw")
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let c = |t: &Tensor| candle_nn::ops::leaky_relu(t, 0.2);
    let gc = penalty(&c, &x, &w)?.backward()?;
    let want = gc
        .get(&w)
        .expect("composite")
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    Ok(())
}
