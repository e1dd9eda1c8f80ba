//! AdamW whose state can be saved and restored: candle-nn 0.11.1's `AdamW` step (the same
//! tensor operations in the same order, so the same bits; `tests.rs` checks it against
//! `candle_nn::AdamW`), with the moments and the step count readable and settable, which
//! candle-nn keeps private.

use anyhow::{ensure, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::ParamsAdamW;

/// One variable and its first and second moments.
struct Slot {
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW with decoupled weight decay, as `candle_nn::AdamW`: per step `t` (counted from 1),
/// `m = beta1 m + (1 - beta1) g`, `v = beta2 v + (1 - beta2) g^2`,
/// `theta = theta (1 - lr lambda) - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)`.
pub struct AdamW {
    slots: Vec<Slot>,
    step_t: usize,
    params: ParamsAdamW,
}

impl AdamW {
    /// Zero moments for the floating-point variables of `vars` (the others are left out, as
    /// candle-nn does).
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let slots = (vars.into_iter())
            .filter(|var| var.dtype().is_float())
            .map(|var| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                Ok(Slot { var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            step_t: 0,
            params,
        })
    }

    /// Sets the learning rate of the next steps.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One step on the variables that have a gradient in `grads` (the step count advances
    /// even when none has, as in candle-nn).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let lr = self.params.lr;
        let lambda = self.params.weight_decay;
        let lr_lambda = lr * lambda;
        let beta1 = self.params.beta1;
        let beta2 = self.params.beta2;
        let scale_m = 1f64 / (1f64 - beta1.powi(self.step_t as i32));
        let scale_v = 1f64 / (1f64 - beta2.powi(self.step_t as i32));
        for slot in self.slots.iter_mut() {
            let theta = &slot.var;
            if let Some(g) = grads.get(theta) {
                let next_m = ((&slot.m * beta1)? + (g * (1.0 - beta1))?)?;
                let next_v = ((&slot.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                let m_hat = (&next_m * scale_m)?;
                let v_hat = (&next_v * scale_v)?;
                let next_theta = (theta.as_tensor() * (1f64 - lr_lambda))?;
                let adjusted_grad = (m_hat / (v_hat.sqrt()? + self.params.eps)?)?;
                let next_theta = (next_theta - (adjusted_grad * lr)?)?;
                slot.m = next_m;
                slot.v = next_v;
                theta.set(&next_theta)?;
            }
        }
        Ok(())
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step_t
    }

    /// The first and second moments, in the order of the variables given to [`AdamW::new`].
    pub fn moments(&self) -> Vec<(Tensor, Tensor)> {
        (self.slots.iter())
            .map(|s| (s.m.clone(), s.v.clone()))
            .collect()
    }

    /// Restores the state [`AdamW::steps`] and [`AdamW::moments`] gave: the moments must have
    /// their variables' shapes and dtypes (and are moved to their devices).
    pub fn restore(&mut self, steps: usize, moments: Vec<(Tensor, Tensor)>) -> Result<()> {
        ensure!(
            moments.len() == self.slots.len(),
            "{} pairs of moments for {} variables",
            moments.len(),
            self.slots.len()
        );
        let mut restored = Vec::with_capacity(moments.len());
        for (i, (slot, (m, v))) in self.slots.iter().zip(moments).enumerate() {
            let var = &slot.var;
            for (name, t) in [("first", &m), ("second", &v)] {
                ensure!(
                    t.dims() == var.dims() && t.dtype() == var.dtype(),
                    "the {name} moment of variable {i} is {:?} {:?}, the variable {:?} {:?}",
                    t.dtype(),
                    t.dims(),
                    var.dtype(),
                    var.dims()
                );
            }
            restored.push((m.to_device(var.device())?, v.to_device(var.device())?));
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(restored) {
            (slot.m, slot.v) = (m, v);
        }
        self.step_t = steps;
        Ok(())
    }
}
