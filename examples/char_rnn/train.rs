//! Training: AdamW with warm-up and cosine decay, global gradient-norm clipping, truncated
//! BPTT with the hidden state carried across batches, periodic validation that also measures
//! which hidden units are inactive, and the best-validation checkpoint with early stopping.

use crate::data::{Corpus, Streams, Vocab};
use crate::model::{loss, CharRnn, Config};
use anyhow::{ensure, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    /// Seed of the initial weights, the knocked-out units and the dropout masks.
    pub seed: u64,
    /// Share of the hidden units whose bias starts at `knockout_bias` instead of 0.
    pub knockout: f64,
    /// Initial bias of the knocked-out units.
    pub knockout_bias: f64,
    /// Stop after this many evaluations without a better validation loss (`0`: never).
    pub patience: usize,
    /// Dropout on the recurrent output before the read-out (training only).
    pub dropout: f64,
}

/// One validation point.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Steps done (`0`: the initial weights).
    pub step: usize,
    /// Mean training loss since the previous point (`None` at step 0).
    pub train_loss: Option<f64>,
    /// Validation loss (nats per character).
    pub val_loss: f64,
    /// Share of hidden units inactive on the whole validation set, in percent.
    pub inactive_pct: f64,
    /// Share of hidden units whose bias gradient was exactly 0 on every training step since the
    /// previous point, in percent (`None` at step 0). 0 by construction when `alpha != 0`.
    pub zero_grad_pct: Option<f64>,
    /// Units active at the previous point and inactive now.
    pub died: usize,
    /// Units inactive at the previous point and active now.
    pub revived: usize,
    /// Knocked-out units active now.
    pub knocked_alive: usize,
}

/// A finished run.
pub struct Run {
    /// The checkpoint: the weights of the evaluation with the best validation loss.
    pub model: CharRnn,
    /// The corpus vocabulary.
    pub vocab: Vocab,
    /// Validation points, the first at step 0 (before training).
    pub history: Vec<Point>,
    /// Index in `history` of the checkpoint's point.
    pub best: usize,
    /// The knocked-out units (sorted).
    pub knocked: Vec<usize>,
    /// The step whose training loss was not finite, if training diverged there.
    pub diverged: Option<usize>,
    /// Whether training stopped early (`patience` evaluations without improvement).
    pub stopped_early: bool,
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

    /// The checkpoint's validation point.
    pub fn best(&self) -> Point {
        self.history[self.best]
    }

    /// Optimiser steps done.
    pub fn steps(&self) -> usize {
        self.diverged.unwrap_or(self.last().step)
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
        "--val-frac must be in (0, 1), got {}",
        s.val_frac
    );
    ensure!(
        (0.0..=1.0).contains(&s.knockout),
        "--knockout must be a share in [0, 1], got {}",
        s.knockout
    );
    ensure!(
        s.knockout_bias.is_finite(),
        "--knockout-bias must be finite, got {}",
        s.knockout_bias
    );
    ensure!(
        (0.0..1.0).contains(&s.dropout),
        "--dropout must be in [0, 1), got {}",
        s.dropout
    );
    ensure!(
        s.weight_decay >= 0.0 && s.weight_decay.is_finite(),
        "--weight-decay must be non-negative, got {}",
        s.weight_decay
    );
    Ok(())
}

fn tensors(x: &[u32], y: &[u32], rows: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let cols = x.len() / rows;
    let x = Tensor::from_slice(x, (rows, cols), dev)?;
    Ok((x, Tensor::from_slice(y, (rows, cols), dev)?))
}

/// A validation pass.
pub struct Eval {
    /// Mean loss, nats per character.
    pub loss: f64,
    /// Per hidden unit: its pre-activation was `> 0` somewhere in the pass.
    pub active: Vec<bool>,
}

impl Eval {
    /// Share of units inactive (pre-activation `<= 0` at every position), in percent.
    pub fn inactive_pct(&self) -> f64 {
        let n = self.active.iter().filter(|&&a| !a).count();
        100.0 * n as f64 / self.active.len() as f64
    }
}

/// One full pass over `val` with the hidden state carried from a zero start, as in training:
/// the mean loss and which units were active (pre-activation `> 0`) at any position.
pub fn evaluate(model: &CharRnn, val: &Streams) -> Result<Eval> {
    let model = model.detached();
    let dev = model_device(&model)?;
    let (mut h, mut total, mut pre_max) = (model.zero_state(val.rows())?, 0.0, None);
    let n = val.batches_per_pass();
    for i in 0..n {
        let b = val.batch_at(i);
        let (x, y) = tensors(&b.x, &b.y, b.rows, &dev)?;
        let out = model.forward(&x, &h, true)?;
        if let Some(m) = out.pre_max {
            pre_max = Some(match pre_max {
                None => m,
                Some(p) => m.maximum(&p)?,
            });
        }
        total += loss(&out.logits, &y)?.to_scalar::<f32>()? as f64;
        h = out.h;
    }
    let m = pre_max
        .context("an empty validation pass")?
        .to_vec1::<f32>()?;
    Ok(Eval {
        loss: total / n as f64,
        active: m.iter().map(|&v| v > 0.0).collect(),
    })
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

/// The knocked-out units of a run: `round(knockout * hidden)` units drawn from the seed (the
/// same for every slope).
pub fn knocked_units(s: &Settings) -> Vec<usize> {
    let k = (s.knockout * s.hidden as f64).round() as usize;
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x6b6e_6f63_6b6f_7574);
    let mut units = rand::seq::index::sample(&mut rng, s.hidden, k.min(s.hidden)).into_vec();
    units.sort_unstable();
    units
}

/// A dropout mask for `n` activations: 0 with probability `p`, else `1 / (1 - p)`.
fn dropout_mask(rng: &mut StdRng, shape: (usize, usize), p: f64, dev: &Device) -> Result<Tensor> {
    let keep = (1.0 / (1.0 - p)) as f32;
    let m: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
        .collect();
    Ok(Tensor::from_vec(m, shape, dev)?)
}

/// Trains on `text` on `dev`. `label` prefixes the progress bar and the evaluation lines; all
/// hidden when `None`. A step whose loss is not finite ends the run (`Run::diverged`).
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
    let knocked = knocked_units(s);
    if !knocked.is_empty() {
        let mut b = vec![0f32; s.hidden];
        knocked.iter().for_each(|&u| b[u] = s.knockout_bias as f32);
        vars[2].set(&Tensor::from_vec(b, s.hidden, dev)?)?;
    }
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
    let say = |line: String| {
        if let Some(l) = label {
            bar.suspend(|| println!("{l} {line}"));
        }
    };
    let start = Instant::now();
    let first = evaluate(&model, &val)?;
    let mut history = vec![Point {
        step: 0,
        train_loss: None,
        val_loss: first.loss,
        inactive_pct: first.inactive_pct(),
        zero_grad_pct: None,
        died: 0,
        revived: 0,
        knocked_alive: knocked.iter().filter(|&&u| first.active[u]).count(),
    }];
    say(eval_line(&history[0], knocked.len(), s.alpha));
    let (mut active, mut grad_seen) = (first.active, vec![false; s.hidden]);
    let (mut best, mut best_model, mut diverged, mut stopped_early) = (0, None, None, false);
    let mut drop_rng = StdRng::seed_from_u64(s.seed ^ 0x6472_6f70_6f75_7421);
    let (mut h, mut window, mut window_n) = (model.zero_state(stream.rows())?, 0.0, 0);
    let chars_per_step = (stream.rows() * s.seq_len) as f64;
    for step in 0..s.steps {
        let b = stream.next_batch();
        if b.restart {
            h = model.zero_state(b.rows)?;
        }
        let (x, y) = tensors(&b.x, &b.y, b.rows, dev)?;
        let mask = match s.dropout > 0.0 {
            true => Some(dropout_mask(
                &mut drop_rng,
                (b.x.len(), s.hidden),
                s.dropout,
                dev,
            )?),
            false => None,
        };
        let out = model.forward_masked(&x, &h, false, mask.as_ref())?;
        let l = loss(&out.logits, &y)?;
        let lv = l.to_scalar::<f32>()? as f64;
        if !lv.is_finite() {
            say(format!("training diverged at step {step} (loss {lv})"));
            diverged = Some(step);
            break;
        }
        let mut grads = out.backward(&l)?;
        if let Some(g) = grads.get(&vars[2]) {
            let g = g.to_vec1::<f32>()?;
            (grad_seen.iter_mut().zip(g)).for_each(|(seen, g)| *seen |= g != 0.0);
        }
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
            let e = evaluate(&model, &val)?;
            let (died, revived) = status_changes(&active, &e.active);
            let zero = grad_seen.iter().filter(|&&g| !g).count();
            let p = Point {
                step: done,
                train_loss: Some(window / window_n as f64),
                val_loss: e.loss,
                inactive_pct: e.inactive_pct(),
                zero_grad_pct: Some(100.0 * zero as f64 / s.hidden as f64),
                died,
                revived,
                knocked_alive: knocked.iter().filter(|&&u| e.active[u]).count(),
            };
            (window, window_n, active) = (0.0, 0, e.active);
            grad_seen.iter_mut().for_each(|g| *g = false);
            say(format!(
                "{} ({:.0} s)",
                eval_line(&p, knocked.len(), s.alpha),
                start.elapsed().as_secs_f64()
            ));
            let prev = history[history.len() - 1];
            if overfitting(&prev, &p) {
                say(format!(
                    "warning: validation loss rose ({:.4} -> {:.4}) while training loss fell: \
                     overfitting (see the README on small texts)",
                    prev.val_loss, p.val_loss
                ));
            }
            history.push(p);
            if best == 0 || p.val_loss < history[best].val_loss {
                best = history.len() - 1;
                best_model = Some(model.snapshot()?);
            } else if s.patience > 0 && history.len() - 1 - best >= s.patience && done < s.steps {
                say(format!(
                    "stopping early: no better validation loss in {} evaluations since step {}",
                    s.patience, history[best].step
                ));
                stopped_early = true;
                break;
            }
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let steps = diverged.unwrap_or(history[history.len() - 1].step);
    let chars_per_s = chars_per_step * steps as f64 / secs;
    Ok(Run {
        model: best_model.unwrap_or_else(|| model.detached()),
        vocab: corpus.vocab,
        history,
        best,
        knocked,
        diverged,
        stopped_early,
        secs,
        chars_per_s,
    })
}

/// Units that became inactive (`died`) and active again (`revived`) between two evaluations.
pub fn status_changes(before: &[bool], now: &[bool]) -> (usize, usize) {
    let count =
        |from: bool| (before.iter().zip(now)).filter(move |&(&b, &n)| b == from && n != from);
    (count(true).count(), count(false).count())
}

/// Whether the validation loss rose from `prev` to `p` while the training loss fell.
pub fn overfitting(prev: &Point, p: &Point) -> bool {
    match (prev.train_loss, p.train_loss) {
        (Some(t0), Some(t1)) => p.val_loss > prev.val_loss && t1 < t0,
        _ => false,
    }
}

/// One evaluation as printed during training.
pub fn eval_line(p: &Point, knocked_out: usize, alpha: f64) -> String {
    let train = p.train_loss.map_or("  -   ".into(), |t| format!("{t:.4}"));
    let zero = match (p.zero_grad_pct, alpha == 0.0) {
        (None, _) => "-".into(),
        (Some(z), true) => format!("{z:.1}%"),
        (Some(z), false) => format!("{z:.1}% (0 by construction, alpha > 0)"),
    };
    let mut line = format!(
        "step {:>5}: train {train} val {:.4} inactive {:.1}% zero-grad {zero} died {} revived {}",
        p.step, p.val_loss, p.inactive_pct, p.died, p.revived
    );
    if knocked_out > 0 {
        line += &format!(" knocked-out alive {}/{knocked_out}", p.knocked_alive);
    }
    line
}
