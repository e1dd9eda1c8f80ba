//! Training: AdamW with warm-up and cosine decay, global gradient-norm clipping, truncated
//! BPTT with the hidden state carried across batches, periodic validation that also measures
//! which hidden units are inactive, and the best-validation checkpoint with early stopping.
//! Every step records the gradient norm before clipping; every `probe_every` steps a probe
//! reads the slopes and checks the knocked-out units on a fixed slice of validation data.
//! With [`train_persisted`], a run saves its resume state (`resume.rs`) at every evaluation and
//! can be continued from it to the same result as a run never interrupted.

use crate::data::{Corpus, Streams, Vocab};
use crate::model::{loss, CharRnn, Config, SlopeKind, SlopeStats, Vars};
use crate::optim::AdamW;
use crate::resume::{self, Finish, State, TextPrint};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::ParamsAdamW;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
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
    /// LeakyReLU slope (`0` is ReLU); the initial slope when learned.
    pub alpha: f64,
    /// Fixed or learned slopes.
    pub slopes: SlopeKind,
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
    /// Probe every this many steps (and at step 0); `0`: never.
    pub probe_every: usize,
}

/// Validation batches a probe reads: the first two of a pass, hidden state from zero (with the
/// default 64 streams of 64 characters, 8,192 characters).
pub const PROBE_BATCHES: usize = 2;

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
    /// The slopes now.
    pub slope: SlopeStats,
}

/// A probe: a cheap look between evaluations.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// Steps done.
    pub step: usize,
    /// Knocked-out units whose pre-activation is `> 0` somewhere in the first
    /// [`PROBE_BATCHES`] validation batches (`None` when nothing is knocked out).
    pub knocked_alive: Option<usize>,
    /// The slopes now.
    pub slope: SlopeStats,
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
    /// The steps done when [`Persist::stop_after`] stopped the unfinished run.
    pub stopped_at: Option<usize>,
    /// The steps done when this run was continued from its saved state (`None`: not resumed).
    pub resumed_from: Option<usize>,
    /// Wall time of the training loop (validation included; of every process that ran it),
    /// seconds.
    pub secs: f64,
    /// Training characters per second of wall time.
    pub chars_per_s: f64,
    /// Per step done: the global gradient norm before clipping.
    pub grad_norms: Vec<f64>,
    /// Steps on which clipping scaled the gradients (norm above the bound).
    pub clipped: usize,
    /// The bound (`Settings::clip`).
    pub clip: f64,
    /// The probes, the first at step 0 (empty when `probe_every` is 0).
    pub probes: Vec<Probe>,
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
        (self.diverged.or(self.stopped_at)).unwrap_or(self.last().step)
    }

    /// Share of the steps done on which clipping fired (NaN before the first step).
    pub fn clip_rate(&self) -> f64 {
        self.clipped as f64 / self.grad_norms.len() as f64
    }

    /// Steps until half and until nine tenths of the knocked-out units were alive on the
    /// probes' slice (`None`: not within the run, or nothing knocked out).
    pub fn revival(&self) -> (Option<usize>, Option<usize>) {
        let series: Vec<(usize, usize)> = (self.probes.iter())
            .filter_map(|p| p.knocked_alive.map(|a| (p.step, a)))
            .collect();
        crate::measures::revival_steps(&series, self.knocked.len())
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
        !s.slopes.learned() || (s.alpha as f32).is_finite(),
        "the initial learned slope (--alpha, --learn-init) must be finite as an f32, got {}",
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
    evaluate_first(model, val, val.batches_per_pass())
}

/// [`evaluate`] over the first `n` batches of a pass only (all of them if there are fewer).
pub fn evaluate_first(model: &CharRnn, val: &Streams, n: usize) -> Result<Eval> {
    let model = model.detached();
    let dev = model_device(&model)?;
    let (mut h, mut total, mut pre_max) = (model.zero_state(val.rows())?, 0.0, None);
    let n = n.min(val.batches_per_pass());
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

/// Scales the gradients of `vars` so that their global L2 norm is at most `clip`; returns the
/// norm before scaling (squares summed per tensor in f32, then across tensors in f64).
pub fn clip_grads(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[candle_core::Var],
    clip: f64,
) -> Result<f64> {
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
    Ok(norm)
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

/// The progress bar and the evaluation lines of a run; both hidden without a label.
struct Progress {
    bar: ProgressBar,
    label: Option<String>,
}

impl Progress {
    fn new(label: Option<&str>, steps: usize) -> Result<Self> {
        let bar = match label {
            Some(label) => {
                let bar = ProgressBar::new(steps as u64);
                let style = ProgressStyle::with_template(&format!(
                    "{label} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}"
                ))?;
                bar.set_style(style);
                bar
            }
            None => ProgressBar::hidden(),
        };
        let label = label.map(str::to_string);
        Ok(Self { bar, label })
    }

    /// Prints `line` above the bar, prefixed by the label.
    fn say(&self, line: String) {
        if let Some(l) = &self.label {
            self.bar.suspend(|| out!("{l} {line}"));
        }
    }
}

/// What an evaluation decided.
#[derive(PartialEq)]
enum Verdict {
    /// Go on training.
    Continue,
    /// Stop: `patience` evaluations without a better validation loss.
    StopEarly,
}

/// Where `train` keeps a run's resume state (see `resume.rs`) and what it does with it.
#[derive(Clone, Debug)]
pub struct Persist {
    /// The directory of the state (`train --out`); it must exist.
    pub dir: PathBuf,
    /// Continue the run whose state is in `dir` instead of starting one (which replaces it).
    pub resume: bool,
    /// Stop once this many steps are done, with the state saved there, as an interruption
    /// would (the run is not finished; it continues with `resume`).
    pub stop_after: Option<usize>,
}

/// The model, its trainable variables, both optimisers and the training and validation
/// streams of a fresh run of `s` on `corpus` (the knockout not yet applied).
type Parts = (CharRnn, Vars, AdamW, Option<AdamW>, Streams, Streams);

fn parts(corpus: &Corpus, s: &Settings, dev: &Device) -> Result<Parts> {
    let stream = Streams::new(&corpus.train, s.batch, s.seq_len)?;
    let val = Streams::new(&corpus.val, s.batch, s.seq_len)?;
    let cfg = Config {
        vocab: corpus.vocab.len(),
        embed: s.embed,
        hidden: s.hidden,
        alpha: s.alpha,
        slopes: s.slopes,
    };
    let (model, vars) = CharRnn::init(cfg, s.irnn_scale, s.seed, dev)?;
    let params = ParamsAdamW {
        lr: s.lr,
        weight_decay: s.weight_decay,
        ..Default::default()
    };
    let opt = AdamW::new(vars.weights(), params.clone())?;
    let slope_opt = match &vars.slope {
        Some(v) => {
            let params = ParamsAdamW {
                weight_decay: 0.0,
                ..params
            };
            Some(AdamW::new(vec![v.clone()], params)?)
        }
        None => None,
    };
    Ok((model, vars, opt, slope_opt, stream, val))
}

/// The dropout generator of a run seeded with `seed`.
fn dropout_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x6472_6f70_6f75_7421)
}

/// A run in progress: the model, its optimiser, the data streams and everything measured so far.
struct Trainer<'a> {
    s: &'a Settings,
    dev: &'a Device,
    model: CharRnn,
    vars: Vars,
    opt: AdamW,
    /// The learned slopes' optimiser (AdamW without weight decay), if learned.
    slope_opt: Option<AdamW>,
    stream: Streams,
    val: Streams,
    knocked: Vec<usize>,
    history: Vec<Point>,
    /// Per unit: active at the last evaluation.
    active: Vec<bool>,
    /// Per unit: a non-zero bias gradient since the last evaluation.
    grad_seen: Vec<bool>,
    /// Index in `history` of the best evaluation, and its weights.
    best: usize,
    best_model: Option<CharRnn>,
    drop_rng: StdRng,
    /// Numbers drawn from `drop_rng` so far.
    dropout_draws: u64,
    /// The hidden state carried from batch to batch.
    h: Tensor,
    /// Sum and count of the training losses since the last evaluation.
    window: f64,
    window_n: usize,
    progress: Progress,
    start: Instant,
    /// Wall time of the training loop before `start` (in the runs this one continues).
    elapsed_before: f64,
    /// Steps done when this process took the run over (0, or where it resumed).
    first: usize,
    /// Where the run resumed, if it did; how it had ended, if it had.
    resumed: Option<(usize, Option<Finish>)>,
    grad_norms: Vec<f64>,
    clipped: usize,
    probes: Vec<Probe>,
}

impl<'a> Trainer<'a> {
    /// Fresh weights (with the knockout applied), the optimiser, and the evaluation at step 0.
    fn new(corpus: &Corpus, s: &'a Settings, dev: &'a Device, label: Option<&str>) -> Result<Self> {
        let (model, vars, opt, slope_opt, stream, val) = parts(corpus, s, dev)?;
        let knocked = knocked_units(s);
        if !knocked.is_empty() {
            let mut b = vec![0f32; s.hidden];
            knocked.iter().for_each(|&u| b[u] = s.knockout_bias as f32);
            vars.b.set(&Tensor::from_vec(b, s.hidden, dev)?)?;
        }
        let progress = Progress::new(label, s.steps)?;
        let start = Instant::now();
        let first = evaluate(&model, &val)?;
        let p = Point {
            step: 0,
            train_loss: None,
            val_loss: first.loss,
            inactive_pct: first.inactive_pct(),
            zero_grad_pct: None,
            died: 0,
            revived: 0,
            knocked_alive: knocked.iter().filter(|&&u| first.active[u]).count(),
            slope: model.slope_stats()?,
        };
        progress.say(eval_line(&p, knocked.len(), s));
        let h = model.zero_state(stream.rows())?;
        let mut t = Self {
            s,
            dev,
            model,
            vars,
            opt,
            slope_opt,
            stream,
            val,
            knocked,
            history: vec![p],
            active: first.active,
            grad_seen: vec![false; s.hidden],
            best: 0,
            best_model: None,
            drop_rng: dropout_rng(s.seed),
            dropout_draws: 0,
            h,
            window: 0.0,
            window_n: 0,
            progress,
            start,
            elapsed_before: 0.0,
            first: 0,
            resumed: None,
            grad_norms: Vec::new(),
            clipped: 0,
            probes: Vec::new(),
        };
        if s.probe_every > 0 {
            t.probe(0)?;
        }
        Ok(t)
    }

    /// Numbers one step's dropout mask draws.
    fn draws_per_step(&self) -> u64 {
        match self.s.dropout > 0.0 {
            true => (self.stream.rows() * self.s.seq_len * self.s.hidden) as u64,
            false => 0,
        }
    }

    /// The run `state` saved, continued (its settings and text already checked against these):
    /// refuses a state whose parts do not fit together or do not fit the settings.
    fn resume(
        corpus: &Corpus,
        s: &'a Settings,
        dev: &'a Device,
        label: Option<&str>,
        state: State,
    ) -> Result<Self> {
        let (model, vars, opt, mut slope_opt, mut stream, val) = parts(corpus, s, dev)?;
        let State {
            done,
            finished,
            opt_steps,
            best,
            history,
            probes,
            grad_norms,
            clipped,
            grad_seen,
            active,
            window,
            stream_pos,
            dropout_draws,
            elapsed,
            mut tensors,
            ..
        } = state;
        let last = history.last().context("`history` is empty")?;
        ensure!(
            history[0].step == 0 && history.windows(2).all(|w| w[0].step < w[1].step),
            "`history` does not start at step 0 and rise"
        );
        ensure!(
            last.step <= done && done <= s.steps,
            "`done` {done} is before the last evaluation (step {}) or past --steps {}",
            last.step,
            s.steps
        );
        ensure!(best < history.len(), "`best` {best} is not in `history`");
        ensure!(
            probes.windows(2).all(|w| w[0].step < w[1].step)
                && probes.last().is_none_or(|p| p.step <= done),
            "`probes` do not rise up to step {done}"
        );
        ensure!(
            grad_norms.len() == done && clipped <= done,
            "{} gradient norms and {clipped} clipped steps for {done} steps",
            grad_norms.len()
        );
        ensure!(
            grad_seen.len() == s.hidden && active.len() == s.hidden,
            "unit masks of {} and {} entries for {} hidden units",
            grad_seen.len(),
            active.len(),
            s.hidden
        );
        ensure!(
            window.1 == done - last.step,
            "a training-loss window of {} steps, {} steps after the last evaluation",
            window.1,
            done - last.step
        );
        let want = (done, slope_opt.as_ref().map(|_| done));
        ensure!(
            opt_steps == want,
            "optimiser steps {opt_steps:?}, not {want:?} after {done} steps"
        );
        let finished_ok = match finished {
            None => done < s.steps,
            Some(Finish::Steps) => done == s.steps,
            Some(Finish::StoppedEarly) => done < s.steps && last.step == done,
        };
        ensure!(
            finished_ok,
            "`finished` {finished:?} does not fit {done} of {} steps",
            s.steps
        );
        ensure!(
            elapsed.is_finite() && elapsed >= 0.0,
            "`elapsed_secs` {elapsed}"
        );
        stream
            .seek(stream_pos)
            .context("`stream_position` does not fit the text and settings")?;
        let mut t = Self {
            s,
            dev,
            model,
            vars,
            opt,
            slope_opt: None,
            stream,
            val,
            knocked: knocked_units(s),
            history,
            active,
            grad_seen,
            best,
            best_model: None,
            drop_rng: dropout_rng(s.seed),
            dropout_draws: 0,
            h: Tensor::zeros(1, DType::F32, dev)?,
            window: window.0,
            window_n: window.1,
            progress: Progress::new(label, s.steps)?,
            start: Instant::now(),
            elapsed_before: elapsed,
            first: done,
            resumed: Some((done, finished)),
            grad_norms,
            clipped,
            probes,
        };
        let want = t.draws_per_step() * done as u64;
        ensure!(
            dropout_draws == want,
            "`dropout_draws` {dropout_draws}, not {want} after {done} steps"
        );
        // The generator's state after those draws: the same numbers drawn again.
        for _ in 0..want {
            t.drop_rng.random::<f64>();
        }
        t.dropout_draws = want;
        let mut take = |key: String| {
            (tensors.remove(&key)).with_context(|| format!("the tensors have no `{key}`"))
        };
        let cfg = t.model.cfg;
        let names: Vec<&str> = cfg.weight_shapes().into_iter().map(|(n, _)| n).collect();
        let named = names.iter().zip(t.vars.all());
        for (name, var) in named {
            let w = take(format!("weight.{name}"))?;
            ensure!(
                w.dims() == var.dims() && w.dtype() == var.dtype(),
                "`weight.{name}` is {:?} {:?}, the settings need {:?} {:?}",
                w.dtype(),
                w.dims(),
                var.dtype(),
                var.dims()
            );
            var.set(&w.to_device(dev)?)?;
        }
        let mut moments = |prefix: &str, names: &[&str]| -> Result<Vec<(Tensor, Tensor)>> {
            (names.iter())
                .map(|n| {
                    Ok((
                        take(format!("{prefix}.m.{n}"))?,
                        take(format!("{prefix}.v.{n}"))?,
                    ))
                })
                .collect()
        };
        let (weights, slope) = names.split_at(6);
        (t.opt.restore(done, moments("adamw", weights)?)).context("the weights' optimiser")?;
        if let Some(o) = &mut slope_opt {
            (o.restore(done, moments("slope_adamw", slope)?)).context("the slopes' optimiser")?;
        }
        t.slope_opt = slope_opt;
        let h = take("hidden".into())?;
        let rows = t.stream.rows();
        ensure!(
            h.dims() == [rows, s.hidden] && h.dtype() == DType::F32,
            "`hidden` is {:?} {:?}, not f32 [{rows}, {}]",
            h.dtype(),
            h.dims(),
            s.hidden
        );
        t.h = h.to_device(dev)?;
        if best > 0 {
            let weights = (names.iter())
                .map(|n| {
                    take(format!("best.{n}"))?
                        .to_device(dev)
                        .map_err(Into::into)
                })
                .collect::<Result<Vec<_>>>()?;
            let model = CharRnn::from_weights(cfg, weights).context("the best weights")?;
            t.best_model = Some(model);
        }
        if let Some(key) = tensors.keys().next() {
            bail!("unexpected tensor `{key}` (best evaluation {best})");
        }
        t.progress.bar.set_position(done as u64);
        Ok(t)
    }

    /// The state now, `finished` as said.
    fn state(&self, text: TextPrint, finished: Option<Finish>) -> Result<State> {
        let mut tensors = HashMap::new();
        let names: Vec<&str> = (self.model.cfg.weight_shapes().into_iter())
            .map(|(n, _)| n)
            .collect();
        for (name, var) in names.iter().zip(self.vars.all()) {
            tensors.insert(format!("weight.{name}"), var.as_tensor().detach());
        }
        let (weights, slope) = names.split_at(6);
        let opts = [
            ("adamw", weights, Some(&self.opt)),
            ("slope_adamw", slope, self.slope_opt.as_ref()),
        ];
        for (prefix, names, opt) in opts {
            for (name, (m, v)) in names
                .iter()
                .zip(opt.map(AdamW::moments).unwrap_or_default())
            {
                tensors.insert(format!("{prefix}.m.{name}"), m);
                tensors.insert(format!("{prefix}.v.{name}"), v);
            }
        }
        tensors.insert("hidden".into(), self.h.clone());
        if let Some(best) = &self.best_model {
            for (name, w) in names.iter().zip(best.weights()) {
                tensors.insert(format!("best.{name}"), w);
            }
        }
        let done = self.grad_norms.len();
        Ok(State {
            settings: (resume::setting_values(self.s).into_iter())
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            text,
            done,
            finished,
            opt_steps: (self.opt.steps(), self.slope_opt.as_ref().map(AdamW::steps)),
            best: self.best,
            history: self.history.clone(),
            probes: self.probes.clone(),
            grad_norms: self.grad_norms.clone(),
            clipped: self.clipped,
            grad_seen: self.grad_seen.clone(),
            active: self.active.clone(),
            window: (self.window, self.window_n),
            stream_pos: self.stream.position(),
            dropout_draws: self.dropout_draws,
            elapsed: self.elapsed(),
            tensors,
        })
    }

    /// Wall time of the training loop so far, the runs this one continues included.
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.start.elapsed().as_secs_f64()
    }

    /// Reads the slopes and, when units were knocked out, which of them are active on the
    /// first [`PROBE_BATCHES`] validation batches.
    fn probe(&mut self, done: usize) -> Result<()> {
        let knocked_alive = match self.knocked.is_empty() {
            true => None,
            false => {
                let e = evaluate_first(&self.model, &self.val, PROBE_BATCHES)?;
                Some(self.knocked.iter().filter(|&&u| e.active[u]).count())
            }
        };
        self.probes.push(Probe {
            step: done,
            knocked_alive,
            slope: self.model.slope_stats()?,
        });
        Ok(())
    }

    fn chars_per_step(&self) -> f64 {
        (self.stream.rows() * self.s.seq_len) as f64
    }

    /// One optimiser step on the next batch; returns the batch's loss. A loss that is not finite
    /// is returned before anything changes.
    fn step(&mut self, step: usize) -> Result<f64> {
        let s = self.s;
        let b = self.stream.next_batch();
        if b.restart {
            self.h = self.model.zero_state(b.rows)?;
        }
        let (x, y) = tensors(&b.x, &b.y, b.rows, self.dev)?;
        let mask = match s.dropout > 0.0 {
            true => {
                let shape = (b.x.len(), s.hidden);
                self.dropout_draws += (shape.0 * shape.1) as u64;
                Some(dropout_mask(
                    &mut self.drop_rng,
                    shape,
                    s.dropout,
                    self.dev,
                )?)
            }
            false => None,
        };
        let out = self
            .model
            .forward_masked(&x, &self.h, false, mask.as_ref())?;
        let l = loss(&out.logits, &y)?;
        let lv = l.to_scalar::<f32>()? as f64;
        if !lv.is_finite() {
            return Ok(lv);
        }
        let mut grads = out.backward(&l)?;
        if let Some(g) = grads.get(&self.vars.b) {
            let g = g.to_vec1::<f32>()?;
            (self.grad_seen.iter_mut().zip(g)).for_each(|(seen, g)| *seen |= g != 0.0);
        }
        let norm = clip_grads(&mut grads, &self.vars.all(), s.clip)?;
        self.grad_norms.push(norm);
        self.clipped += usize::from(norm > s.clip);
        let lr = learning_rate(s, step);
        self.opt.set_learning_rate(lr);
        self.opt.step(&grads)?;
        if let Some(o) = &mut self.slope_opt {
            o.set_learning_rate(lr);
            o.step(&grads)?;
        }
        self.h = out.h.detach();
        (self.window, self.window_n) = (self.window + lv, self.window_n + 1);
        let done = step + 1;
        let rate =
            self.chars_per_step() * (done - self.first) as f64 / self.start.elapsed().as_secs_f64();
        self.progress.bar.set_position(done as u64);
        (self.progress.bar).set_message(format!("loss {lv:.3} | {:.0} chars/s", rate));
        if s.probe_every > 0 && done.is_multiple_of(s.probe_every) {
            self.probe(done)?;
        }
        Ok(lv)
    }

    /// Whether an evaluation is due after `done` steps.
    fn due(&self, done: usize) -> bool {
        done.is_multiple_of(self.s.eval_every) || done == self.s.steps
    }

    /// The evaluation after `done` steps: measures, prints, keeps the best weights and decides
    /// on early stopping.
    fn evaluate_point(&mut self, done: usize) -> Result<Verdict> {
        let (s, knocked) = (self.s, &self.knocked);
        let e = evaluate(&self.model, &self.val)?;
        let (died, revived) = status_changes(&self.active, &e.active);
        let zero = self.grad_seen.iter().filter(|&&g| !g).count();
        let p = Point {
            step: done,
            train_loss: Some(self.window / self.window_n as f64),
            val_loss: e.loss,
            inactive_pct: e.inactive_pct(),
            zero_grad_pct: Some(100.0 * zero as f64 / s.hidden as f64),
            died,
            revived,
            knocked_alive: knocked.iter().filter(|&&u| e.active[u]).count(),
            slope: self.model.slope_stats()?,
        };
        (self.window, self.window_n, self.active) = (0.0, 0, e.active);
        self.grad_seen.iter_mut().for_each(|g| *g = false);
        self.progress.say(format!(
            "{} ({:.0} s)",
            eval_line(&p, knocked.len(), s),
            self.elapsed()
        ));
        let prev = self.history[self.history.len() - 1];
        if overfitting(&prev, &p) {
            self.progress.say(format!(
                "warning: validation loss rose ({:.4} -> {:.4}) while training loss fell: \
                 overfitting (see the README on small texts)",
                prev.val_loss, p.val_loss
            ));
        }
        self.history.push(p);
        let since_best = self.history.len() - 1 - self.best;
        if self.best == 0 || p.val_loss < self.history[self.best].val_loss {
            self.best = self.history.len() - 1;
            self.best_model = Some(self.model.snapshot()?);
        } else if s.patience > 0 && since_best >= s.patience && done < s.steps {
            self.progress.say(format!(
                "stopping early: no better validation loss in {} evaluations since step {}",
                s.patience, self.history[self.best].step
            ));
            return Ok(Verdict::StopEarly);
        }
        Ok(Verdict::Continue)
    }

    /// The run as it stands (finished, or stopped with `stopped_at`).
    fn finish(
        self,
        vocab: Vocab,
        diverged: Option<usize>,
        stopped_early: bool,
        stopped_at: Option<usize>,
    ) -> Run {
        self.progress.bar.finish_and_clear();
        let secs = self.elapsed();
        let last = self.history[self.history.len() - 1].step;
        let steps = diverged.or(stopped_at).unwrap_or(last);
        let chars_per_s = self.chars_per_step() * steps as f64 / secs;
        Run {
            model: (self.best_model).unwrap_or_else(|| self.model.detached()),
            vocab,
            history: self.history,
            best: self.best,
            knocked: self.knocked,
            diverged,
            stopped_early,
            stopped_at,
            resumed_from: self.resumed.map(|(done, _)| done),
            secs,
            chars_per_s,
            grad_norms: self.grad_norms,
            clipped: self.clipped,
            clip: self.s.clip,
            probes: self.probes,
        }
    }
}

/// Trains on `text` on `dev`. `label` prefixes the progress bar and the evaluation lines; all
/// hidden when `None`. A step whose loss is not finite ends the run (`Run::diverged`).
pub fn train(text: &str, s: &Settings, dev: &Device, label: Option<&str>) -> Result<Run> {
    train_persisted(text, s, dev, label, None)
}

/// [`train`], saving the run's resume state in `persist.dir` at every evaluation (step 0
/// included) and where `persist.stop_after` stops it, or continuing the run saved there
/// (`persist.resume`): then the settings and the text must be the saved run's, and the result
/// is the same, bit for bit, as that of a run never interrupted. Continuing a finished run
/// trains nothing and gives it back as it ended.
pub fn train_persisted(
    text: &str,
    s: &Settings,
    dev: &Device,
    label: Option<&str>,
    persist: Option<&Persist>,
) -> Result<Run> {
    check(s)?;
    let corpus = Corpus::new(text, s.val_frac, s.seq_len)?;
    let print = TextPrint::of(text);
    let mut t = match persist {
        Some(p) if p.resume => {
            let state = resume::load(&p.dir)?;
            resume::check_same_run(&state, s, &print, &p.dir)?;
            let what = || format!("resume state {}", p.dir.join(resume::STATE_FILE).display());
            Trainer::resume(&corpus, s, dev, label, state).with_context(what)?
        }
        _ => Trainer::new(&corpus, s, dev, label)?,
    };
    let save = |t: &Trainer, finished: Option<Finish>| match persist {
        Some(p) => resume::save(&p.dir, &t.state(print, finished)?),
        None => Ok(()),
    };
    match t.resumed {
        Some((done, Some(finished))) => {
            t.progress.say(format!(
                "the run had already finished at step {done} ({}); nothing to train",
                match finished {
                    Finish::Steps => "--steps",
                    Finish::StoppedEarly => "stopped early",
                }
            ));
            let stopped_early = finished == Finish::StoppedEarly;
            return Ok(t.finish(corpus.vocab, None, stopped_early, None));
        }
        Some((done, None)) => t.progress.say(format!("resuming at step {done}")),
        None => save(&t, None)?,
    }
    let stop_after = persist.and_then(|p| p.stop_after);
    let mut saved_at = t.first;
    let (mut diverged, mut stopped_early, mut stopped_at) = (None, false, None);
    for step in t.first..s.steps {
        if stop_after.is_some_and(|k| step >= k) {
            if saved_at != step {
                save(&t, None)?;
            }
            t.progress.say(format!("stopped after step {step}"));
            stopped_at = Some(step);
            break;
        }
        let lv = t.step(step)?;
        if !lv.is_finite() {
            t.progress
                .say(format!("training diverged at step {step} (loss {lv})"));
            diverged = Some(step);
            break;
        }
        let done = step + 1;
        if t.due(done) {
            let verdict = t.evaluate_point(done)?;
            stopped_early = verdict == Verdict::StopEarly;
            let finished = match (stopped_early, done == s.steps) {
                (true, _) => Some(Finish::StoppedEarly),
                (false, true) => Some(Finish::Steps),
                (false, false) => None,
            };
            save(&t, finished)?;
            saved_at = done;
            if stopped_early {
                break;
            }
        }
    }
    Ok(t.finish(corpus.vocab, diverged, stopped_early, stopped_at))
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
pub fn eval_line(p: &Point, knocked_out: usize, s: &Settings) -> String {
    let train = p.train_loss.map_or("  -   ".into(), |t| format!("{t:.4}"));
    let by_construction = s.slopes == SlopeKind::Fixed && s.alpha != 0.0;
    let zero = match (p.zero_grad_pct, by_construction) {
        (None, _) => "-".into(),
        (Some(z), false) => format!("{z:.1}%"),
        (Some(z), true) => format!("{z:.1}% (0 by construction, alpha > 0)"),
    };
    let mut line = format!(
        "step {:>5}: train {train} val {:.4} inactive {:.1}% zero-grad {zero} died {} revived {}",
        p.step, p.val_loss, p.inactive_pct, p.died, p.revived
    );
    if knocked_out > 0 {
        line += &format!(" knocked-out alive {}/{knocked_out}", p.knocked_alive);
    }
    if s.slopes.learned() {
        let a = p.slope;
        line += &format!(" slope {:.4} [{:.4}, {:.4}]", a.mean, a.min, a.max);
    }
    line
}
