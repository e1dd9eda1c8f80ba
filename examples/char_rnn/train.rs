//! Training: AdamW with warm-up and cosine decay, global gradient-norm clipping, truncated
//! BPTT with the hidden state carried across batches, and periodic validation that also
//! measures the dead-unit share.

use crate::data::{Corpus, Streams, Vocab};
use crate::model::{loss, CharRnn, Config};
use anyhow::{bail, ensure, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// Everything a training run needs besides the text and the device.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per batch (parallel streams).
    pub batch: usize,
    /// Characters per sequence (the BPTT truncation length).
    pub seq_len: usize,
    /// Embedding width.
    pub embed: usize,
    /// Hidden units.
    pub hidden: usize,
    /// LeakyReLU slope (`0` is ReLU).
    pub alpha: f64,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// Global gradient-norm bound.
    pub clip: f64,
    /// Recurrent matrix at init: `irnn_scale * I`.
    pub irnn_scale: f64,
    /// Validate every this many steps (and at the end).
    pub eval_every: usize,
    /// Fraction of the text held out for validation (its end).
    pub val_frac: f64,
    /// Seed of the initial weights.
    pub seed: u64,
}

/// One validation point.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Steps done.
    pub step: usize,
    /// Mean training loss since the previous point.
    pub train_loss: f64,
    /// Validation loss (nats per character).
    pub val_loss: f64,
    /// Share of hidden units dead on the fixed validation batch, in percent.
    pub dead_pct: f64,
}

/// A finished run.
pub struct Run {
    /// The trained model.
    pub model: CharRnn,
    /// The corpus vocabulary.
    pub vocab: Vocab,
    /// Validation points; the last one is the final state.
    pub history: Vec<Point>,
    /// Wall time of the training loop (validation included), seconds.
    pub secs: f64,
    /// Training characters per second of wall time.
    pub chars_per_s: f64,
}

impl Run {
    /// The last validation point.
    pub fn last(&self) -> Point {
        self.history[self.history.len() - 1]
    }
}

/// The learning rate at `step`: linear warm-up to `lr`, then cosine decay to `lr / 10`.
pub fn learning_rate(s: &Settings, step: usize) -> f64 {
    if step < s.warmup {
        return s.lr * (step + 1) as f64 / s.warmup as f64;
    }
    let span = s.steps.saturating_sub(s.warmup).max(1) as f64;
    let progress = ((step - s.warmup) as f64 / span).min(1.0);
    s.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

fn check(s: &Settings) -> Result<()> {
    ensure!(s.steps > 0, "--steps must be positive");
    ensure!(
        s.embed > 0 && s.hidden > 0,
        "--embed and --hidden must be positive"
    );
    ensure!(s.eval_every > 0, "--eval-every must be positive");
    ensure!(
        s.alpha.is_finite(),
        "--alpha must be finite, got {}",
        s.alpha
    );
    ensure!(
        s.lr > 0.0 && s.lr.is_finite(),
        "--lr must be positive, got {}",
        s.lr
    );
    ensure!(
        s.val_frac > 0.0 && s.val_frac < 1.0,
        "--val-frac must be in (0, 1)"
    );
    Ok(())
}

fn tensors(x: &[u32], y: &[u32], rows: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let cols = x.len() / rows;
    let x = Tensor::from_slice(x, (rows, cols), dev)?;
    Ok((x, Tensor::from_slice(y, (rows, cols), dev)?))
}

/// Validation loss over one full pass of `val` (hidden state carried from a zero start) and
/// the share of units whose pre-activation is `<= 0` at every position of its first batch.
pub fn evaluate(model: &CharRnn, val: &Streams) -> Result<(f64, f64)> {
    let model = model.detached();
    let dev = model_device(&model)?;
    let (mut h, mut total, mut dead) = (model.zero_state(val.rows())?, 0.0, 0.0);
    let n = val.batches_per_pass();
    for i in 0..n {
        let b = val.batch_at(i);
        let (x, y) = tensors(&b.x, &b.y, b.rows, &dev)?;
        let out = model.forward(&x, &h, i == 0)?;
        if let Some(m) = out.pre_max {
            let m = m.to_vec1::<f32>()?;
            dead = 100.0 * m.iter().filter(|&&v| v <= 0.0).count() as f64 / m.len() as f64;
        }
        total += loss(&out.logits, &y)?.to_scalar::<f32>()? as f64;
        h = out.h;
    }
    Ok((total / n as f64, dead))
}

fn model_device(model: &CharRnn) -> Result<Device> {
    Ok(model.zero_state(1)?.device().clone())
}

/// Scales the gradients of `vars` so that their global L2 norm is at most `clip`.
fn clip_grads(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[candle_core::Var],
    clip: f64,
) -> Result<()> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if norm > clip {
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * (clip / norm))?);
            }
        }
    }
    Ok(())
}

/// Trains on `text` on `dev`. `label` prefixes the progress bar; a hidden bar when `None`.
pub fn train(text: &str, s: &Settings, dev: &Device, label: Option<&str>) -> Result<Run> {
    check(s)?;
    let corpus = Corpus::new(text, s.val_frac, s.seq_len)?;
    let mut stream = Streams::new(&corpus.train, s.batch, s.seq_len)?;
    let val = Streams::new(&corpus.val, s.batch, s.seq_len)?;
    let cfg = Config {
        vocab: corpus.vocab.len(),
        embed: s.embed,
        hidden: s.hidden,
        alpha: s.alpha,
    };
    let (model, vars) = CharRnn::init(cfg, s.irnn_scale, s.seed, dev)?;
    let params = ParamsAdamW {
        lr: s.lr,
        weight_decay: s.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars.clone(), params)?;
    let bar = match label {
        Some(label) => {
            let bar = ProgressBar::new(s.steps as u64);
            let style = ProgressStyle::with_template(&format!(
                "{label} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}"
            ))?;
            bar.set_style(style);
            bar
        }
        None => ProgressBar::hidden(),
    };
    let (start, mut history) = (Instant::now(), Vec::new());
    let (mut h, mut window, mut window_n) = (model.zero_state(stream.rows())?, 0.0, 0);
    let chars_per_step = (stream.rows() * s.seq_len) as f64;
    for step in 0..s.steps {
        let b = stream.next_batch();
        if b.restart {
            h = model.zero_state(b.rows)?;
        }
        let (x, y) = tensors(&b.x, &b.y, b.rows, dev)?;
        let out = model.forward(&x, &h, false)?;
        let l = loss(&out.logits, &y)?;
        let lv = l.to_scalar::<f32>()? as f64;
        if !lv.is_finite() {
            bail!("training diverged at step {step} (loss {lv}); try a lower --lr");
        }
        let mut grads = out.backward(&l)?;
        clip_grads(&mut grads, &vars, s.clip)?;
        opt.set_learning_rate(learning_rate(s, step));
        opt.step(&grads)?;
        h = out.h.detach();
        (window, window_n) = (window + lv, window_n + 1);
        let done = step + 1;
        let rate = chars_per_step * done as f64 / start.elapsed().as_secs_f64();
        bar.set_position(done as u64);
        bar.set_message(format!("loss {lv:.3} | {:.0} chars/s", rate));
        if done % s.eval_every == 0 || done == s.steps {
            let (val_loss, dead_pct) = evaluate(&model, &val)?;
            let train_loss = window / window_n as f64;
            (window, window_n) = (0.0, 0);
            history.push(Point {
                step: done,
                train_loss,
                val_loss,
                dead_pct,
            });
            let tag = label.map(|l| format!("{l} ")).unwrap_or_default();
            let line = format!(
                "{tag}step {done:>5}: train {train_loss:.4} val {val_loss:.4} dead {dead_pct:.1}% \
                 ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            if label.is_some() {
                bar.suspend(|| println!("{line}"));
            }
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let chars_per_s = chars_per_step * s.steps as f64 / secs;
    Ok(Run {
        model,
        vocab: corpus.vocab,
        history,
        secs,
        chars_per_s,
    })
}
