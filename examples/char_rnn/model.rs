//! The model: character embedding, one rectified recurrent layer
//! `h_t = LeakyRelu(alpha)(W_x x_t + W_h h_{t-1} + b)` (or a PReLU layer with learned slopes in
//! place of the fixed `alpha`) and a linear read-out to logits; its initialisation and its
//! safetensors checkpoint (weights, learned slopes, vocabulary and configuration).

use crate::data::Vocab;
use anyhow::{anyhow, bail, ensure, Context, Result};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_leaky_relu::LeakyRelu;
use candle_leaky_relu::{prelu, PReLU};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

/// Whether the hidden units' slope is fixed or learned, and how many slopes are learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlopeKind {
    /// One fixed slope, `alpha`, through the crate's `LeakyRelu` op.
    Fixed,
    /// A PReLU layer: one learned slope per hidden unit, initialised at `alpha`.
    PerUnit,
    /// A PReLU layer: one learned slope for the whole layer, initialised at `alpha`.
    Shared,
}

impl SlopeKind {
    /// Whether the slopes are trained.
    pub fn learned(self) -> bool {
        self != Self::Fixed
    }

    /// Its code in a checkpoint's `config` (absent for fixed slopes).
    fn code(self) -> f64 {
        match self {
            Self::Fixed => 0.0,
            Self::PerUnit => 1.0,
            Self::Shared => 2.0,
        }
    }
}

/// Model sizes and slope.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Characters in the vocabulary.
    pub vocab: usize,
    /// Embedding width.
    pub embed: usize,
    /// Hidden units of the recurrent layer.
    pub hidden: usize,
    /// LeakyReLU slope (`0` is ReLU); the initial slope when learned.
    pub alpha: f64,
    /// Fixed or learned slopes.
    pub slopes: SlopeKind,
}

impl Config {
    /// The name and shape of every weight of a model of this configuration, in the checkpoint's
    /// order, the learned slopes (`prelu.weight`) last when learned: the order of
    /// [`Vars::all`] and [`CharRnn::weights`].
    pub fn weight_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (v, e, h) = (self.vocab, self.embed, self.hidden);
        let shapes = [
            vec![v, e],
            vec![h, e],
            vec![h],
            vec![h, h],
            vec![v, h],
            vec![v],
        ];
        let mut list: Vec<_> = NAMES.into_iter().zip(shapes).collect();
        match self.slopes {
            SlopeKind::Fixed => {}
            SlopeKind::PerUnit => list.push((SLOPE_NAME, vec![h])),
            SlopeKind::Shared => list.push((SLOPE_NAME, vec![1])),
        }
        list
    }
}

/// Mean, least and largest slope of the hidden units (all three the slope when it is fixed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlopeStats {
    /// Mean over the slopes (one per unit, or the one shared slope).
    pub mean: f64,
    /// The least slope.
    pub min: f64,
    /// The largest slope.
    pub max: f64,
}

impl SlopeStats {
    /// The stats of `slopes` (f32, as the layer holds them); the mean is summed in f64.
    pub fn of(slopes: &[f32]) -> Self {
        let sum: f64 = slopes.iter().map(|&v| v as f64).sum();
        let (min, max) = (slopes.iter()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
        Self {
            mean: sum / slopes.len() as f64,
            min: min as f64,
            max: max as f64,
        }
    }

    /// `alpha_mean=M alpha_min=A alpha_max=B` with this prefix before each key; each value
    /// printed as the shortest decimal that reads back as the same f32 (the mean rounded to
    /// f32 first).
    pub fn fields(&self, prefix: &str) -> String {
        let f = |v: f64| v as f32;
        format!(
            "{prefix}alpha_mean={} {prefix}alpha_min={} {prefix}alpha_max={}",
            f(self.mean),
            f(self.min),
            f(self.max)
        )
    }
}

const NAMES: [&str; 6] = ["embed", "w_x", "b", "w_h", "w_out", "b_out"];

/// The name of the learned slopes in a checkpoint (the PReLU layer's `weight`).
const SLOPE_NAME: &str = "prelu.weight";

/// The weights, in the order of [`NAMES`], and the PReLU layer when slopes are learned.
#[derive(Clone)]
pub struct CharRnn {
    /// Sizes and slope.
    pub cfg: Config,
    emb: Tensor,
    w_x: Tensor,
    b: Tensor,
    w_h: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    prelu: Option<PReLU>,
}

/// The trainable variables of a model, by name (the optimiser updates them in place, and the
/// model's tensors are theirs).
pub struct Vars {
    /// Character embedding, `(vocab, embed)`.
    pub emb: Var,
    /// Input weights, `(hidden, embed)`.
    pub w_x: Var,
    /// Hidden bias, `(hidden,)`: the knocked-out units' start here.
    pub b: Var,
    /// Recurrent weights, `(hidden, hidden)`.
    pub w_h: Var,
    /// Read-out weights, `(vocab, hidden)`.
    pub w_out: Var,
    /// Read-out bias, `(vocab,)`.
    pub b_out: Var,
    /// The learned slopes, `(hidden,)` per unit or `(1,)` shared; `None` when fixed.
    pub slope: Option<Var>,
}

impl Vars {
    fn list(&self) -> [&Var; 6] {
        [
            &self.emb,
            &self.w_x,
            &self.b,
            &self.w_h,
            &self.w_out,
            &self.b_out,
        ]
    }

    /// The weights without the slopes, in the checkpoint's order.
    pub fn weights(&self) -> Vec<Var> {
        self.list().into_iter().cloned().collect()
    }

    /// Every variable: the weights, then the slopes if learned (the order the gradient norm
    /// sums them in).
    pub fn all(&self) -> Vec<Var> {
        self.weights()
            .into_iter()
            .chain(self.slope.clone())
            .collect()
    }
}

/// What a forward pass over a batch of sequences gives.
pub struct Output {
    /// Logits, time-major: row `t * batch + i` is sequence `i` at step `t`.
    pub logits: Tensor,
    /// The hidden state after the last step, `(batch, hidden)`.
    pub h: Tensor,
    /// Per hidden unit, the largest pre-activation seen (when asked for).
    pub pre_max: Option<Tensor>,
    /// When training: the input projection `(steps, batch, hidden)` and the per-step leaves cut
    /// from it, which [`Output::backward`] joins up again.
    split: Option<(Tensor, Vec<Var>)>,
}

impl Output {
    /// Gradients of `loss` for every weight. candle's backward of a `narrow` builds a zero
    /// tensor of the whole input, so reading step `t` of the one-matmul input projection would
    /// cost O(steps^2) per sequence; instead each step reads a leaf copy, and the leaves'
    /// gradients, stacked, are pushed through the projection in a second pass (the chain rule:
    /// `d loss / d theta = sum(G * d xs / d theta)` with `G = d loss / d xs`).
    pub fn backward(&self, loss: &Tensor) -> Result<candle_core::backprop::GradStore> {
        let mut grads = loss.backward()?;
        if let Some((xs, leaves)) = &self.split {
            let g = (leaves.iter())
                .map(|v| grads.remove(v).map_or_else(|| v.zeros_like(), Ok))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let g = Tensor::stack(&g, 0)?;
            grads.extend((xs * g)?.sum_all()?.backward()?)?;
        }
        Ok(grads)
    }
}

impl CharRnn {
    /// Fresh weights from `seed`: small Gaussian embedding and input weights, the recurrent
    /// matrix `irnn_scale * I` (IRNN), zero biases, learned slopes (if any) at `cfg.alpha`.
    /// Returns the model and its trainable vars.
    pub fn init(cfg: Config, irnn_scale: f64, seed: u64, dev: &Device) -> Result<(Self, Vars)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (v, e, h) = (cfg.vocab, cfg.embed, cfg.hidden);
        let mut gauss = |rows: usize, cols: usize, std: f64| {
            let data: Vec<f32> = (0..rows * cols)
                .map(|_| (rng.sample::<f64, _>(rand_distr::StandardNormal) * std) as f32)
                .collect();
            Tensor::from_vec(data, (rows, cols), dev)
        };
        let tensors = [
            gauss(v, e, 1.0)?,
            gauss(h, e, 1.0 / (e as f64).sqrt())?,
            Tensor::zeros(h, DType::F32, dev)?,
            (Tensor::eye(h, DType::F32, dev)? * irnn_scale)?,
            gauss(v, h, 1.0 / (h as f64).sqrt())?,
            Tensor::zeros(v, DType::F32, dev)?,
        ];
        let [emb, w_x, b, w_h, w_out, b_out] = tensors.each_ref().map(Var::from_tensor);
        let vars = Vars {
            emb: emb?,
            w_x: w_x?,
            b: b?,
            w_h: w_h?,
            w_out: w_out?,
            b_out: b_out?,
            slope: None,
        };
        let mut model = Self::from_array(cfg, vars.list().map(|v| v.as_tensor().clone()), None);
        let vars = match cfg.slopes {
            SlopeKind::Fixed => vars,
            kind => {
                let (layer, slope) = new_prelu(kind, h, cfg.alpha, dev)?;
                model.prelu = Some(layer);
                Vars {
                    slope: Some(slope),
                    ..vars
                }
            }
        };
        Ok((model, vars))
    }

    fn from_array(
        cfg: Config,
        [emb, w_x, b, w_h, w_out, b_out]: [Tensor; 6],
        prelu: Option<PReLU>,
    ) -> Self {
        Self {
            cfg,
            emb,
            w_x,
            b,
            w_h,
            w_out,
            b_out,
            prelu,
        }
    }

    /// Every weight, in the order of [`Config::weight_shapes`] (the learned slopes last).
    pub fn weights(&self) -> Vec<Tensor> {
        (self.list().into_iter().cloned())
            .chain(self.slopes().cloned())
            .collect()
    }

    /// A model of `cfg` with `weights` (on their device), in the order of
    /// [`Config::weight_shapes`], whose names, shapes and dtype (f32) it checks.
    pub fn from_weights(cfg: Config, weights: Vec<Tensor>) -> Result<Self> {
        let shapes = cfg.weight_shapes();
        ensure!(
            weights.len() == shapes.len(),
            "{} weight tensors for a model of {}",
            weights.len(),
            shapes.len()
        );
        for ((name, want), t) in shapes.iter().zip(&weights) {
            ensure!(
                t.dims() == want.as_slice() && t.dtype() == DType::F32,
                "`{name}` is {:?} {:?}, the configuration needs f32 {want:?}",
                t.dtype(),
                t.dims()
            );
        }
        let mut weights = weights.into_iter();
        let mut next = || weights.next().context("a weight tensor");
        let list = [next()?, next()?, next()?, next()?, next()?, next()?];
        let prelu = match cfg.slopes {
            SlopeKind::Fixed => None,
            kind => Some(PReLU::new(next()?, kind == SlopeKind::Shared)),
        };
        Ok(Self::from_array(cfg, list, prelu))
    }

    /// The slopes of the hidden units now.
    pub fn slope_stats(&self) -> Result<SlopeStats> {
        Ok(match &self.prelu {
            None => SlopeStats::of(&[self.cfg.alpha as f32]),
            Some(p) => SlopeStats::of(&p.weight().flatten_all()?.to_vec1::<f32>()?),
        })
    }

    /// The learned slopes (`None` when fixed).
    pub fn slopes(&self) -> Option<&Tensor> {
        self.prelu.as_ref().map(PReLU::weight)
    }

    fn list(&self) -> [&Tensor; 6] {
        [
            &self.emb,
            &self.w_x,
            &self.b,
            &self.w_h,
            &self.w_out,
            &self.b_out,
        ]
    }

    /// The same weights cut off from autograd (for evaluation and sampling).
    pub fn detached(&self) -> Self {
        let prelu = (self.prelu.as_ref()).map(|p| PReLU::new(p.weight().detach(), p.is_scalar()));
        Self::from_array(self.cfg, self.list().map(Tensor::detach), prelu)
    }

    /// A copy of the weights that later training steps do not change (the optimiser updates
    /// the variables in place).
    pub fn snapshot(&self) -> Result<Self> {
        let list = self.list().map(|t| t.detach().copy());
        let [emb, w_x, b, w_h, w_out, b_out] = list;
        let prelu = match &self.prelu {
            Some(p) => Some(PReLU::new(p.weight().detach().copy()?, p.is_scalar())),
            None => None,
        };
        Ok(Self::from_array(
            self.cfg,
            [emb?, w_x?, b?, w_h?, w_out?, b_out?],
            prelu,
        ))
    }

    /// Runs `x` (`(batch, steps)` u32 ids) from hidden state `h0` (`(batch, hidden)`). The
    /// input projection of every step is one matmul; the recurrence applies `LeakyRelu(alpha)`
    /// through `apply_op1`, or the PReLU layer when slopes are learned. With `track`, also
    /// returns each unit's largest pre-activation.
    pub fn forward(&self, x: &Tensor, h0: &Tensor, track: bool) -> Result<Output> {
        self.forward_masked(x, h0, track, None)
    }

    /// [`CharRnn::forward`] with the recurrent outputs, `(steps * batch, hidden)` time-major,
    /// multiplied by `mask` before the read-out (dropout).
    pub fn forward_masked(
        &self,
        x: &Tensor,
        h0: &Tensor,
        track: bool,
        mask: Option<&Tensor>,
    ) -> Result<Output> {
        let (batch, steps) = x.dims2()?;
        let hidden = self.cfg.hidden;
        let ids = x.t()?.flatten_all()?;
        let xs = self.emb.index_select(&ids, 0)?.matmul(&self.w_x.t()?)?;
        let xs = xs.broadcast_add(&self.b)?.reshape((steps, batch, hidden))?;
        let w_h = self.w_h.t()?;
        let op = LeakyRelu(self.cfg.alpha);
        let split = match self.emb.is_variable() {
            true => Some(
                (0..steps)
                    .map(|t| Var::from_tensor(&xs.get(t)?.detach()))
                    .collect(),
            ),
            false => None,
        }
        .transpose()?
        .map(|leaves: Vec<Var>| (xs.clone(), leaves));
        let (mut h, mut hs, mut pre_max) = (h0.clone(), Vec::with_capacity(steps), None);
        for t in 0..steps {
            let x_t = match &split {
                Some((_, leaves)) => leaves[t].as_tensor().clone(),
                None => xs.get(t)?,
            };
            let z = (x_t + h.matmul(&w_h)?)?;
            if track {
                let m = z.max(0)?;
                pre_max = Some(match pre_max {
                    None => m,
                    Some(p) => m.maximum(&p)?,
                });
            }
            h = match &self.prelu {
                Some(p) => p.forward(&z)?,
                None => z.apply_op1(op)?,
            };
            hs.push(h.clone());
        }
        let mut hs = Tensor::stack(&hs, 0)?.reshape((steps * batch, hidden))?;
        if let Some(m) = mask {
            hs = (hs * m)?;
        }
        let logits = hs.matmul(&self.w_out.t()?)?.broadcast_add(&self.b_out)?;
        Ok(Output {
            logits,
            h,
            pre_max,
            split,
        })
    }

    /// A zero hidden state for `batch` sequences.
    pub fn zero_state(&self, batch: usize) -> Result<Tensor> {
        Ok(Tensor::zeros(
            (batch, self.cfg.hidden),
            DType::F32,
            self.emb.device(),
        )?)
    }

    /// Writes weights, vocabulary and configuration to one safetensors file; learned slopes
    /// as `prelu.weight`, with their kind as a fourth `config` value (a fixed-slope checkpoint
    /// has the three values it always had).
    pub fn save(&self, vocab: &Vocab, path: &Path) -> Result<()> {
        let cpu = Device::Cpu;
        let mut map: HashMap<String, Tensor> = (NAMES.iter().zip(self.list()))
            .map(|(n, t)| Ok((n.to_string(), t.to_device(&cpu)?)))
            .collect::<Result<_>>()?;
        map.insert("vocab".into(), Tensor::new(vocab.code_points(), &cpu)?);
        let c = &self.cfg;
        let mut config = vec![c.embed as f64, c.hidden as f64, c.alpha];
        if let Some(w) = self.slopes() {
            config.push(c.slopes.code());
            map.insert(SLOPE_NAME.into(), w.detach().to_device(&cpu)?);
        }
        map.insert("config".into(), Tensor::new(config.as_slice(), &cpu)?);
        candle_core::safetensors::save(&map, path)
            .with_context(|| format!("cannot write checkpoint {}", path.display()))
    }

    /// Reads a checkpoint written by [`CharRnn::save`] onto `dev`, checking that the
    /// vocabulary, configuration and weight shapes agree. Checkpoints from before learned
    /// slopes (three `config` values, no `prelu.weight`) load as fixed-slope models.
    pub fn load(path: &Path, dev: &Device) -> Result<(Self, Vocab)> {
        let what = || format!("checkpoint {}", path.display());
        let mut map = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read {}", what()))?;
        let mut take = |name: &str| {
            map.remove(name)
                .with_context(|| format!("{} has no tensor `{name}`", what()))
        };
        let vocab = Vocab::from_code_points(&take("vocab")?.to_vec1::<u32>()?)
            .with_context(|| format!("{}: bad vocabulary", what()))?;
        let config = take("config")?.to_vec1::<f64>()?;
        let (&[embed, hidden, alpha], kind) = config.split_at(3.min(config.len())) else {
            bail!(
                "{}: `config` must hold 3 or 4 values, got {}",
                what(),
                config.len()
            );
        };
        let slopes = match kind {
            [] => SlopeKind::Fixed,
            [k] if *k == SlopeKind::PerUnit.code() => SlopeKind::PerUnit,
            [k] if *k == SlopeKind::Shared.code() => SlopeKind::Shared,
            _ => bail!(
                "{}: `config` must hold 3 values, or 4 with the slope kind 1 (per unit) or 2 \
                 (shared) last; got {config:?}",
                what()
            ),
        };
        let cfg = Config {
            vocab: vocab.len(),
            embed: embed as usize,
            hidden: hidden as usize,
            alpha,
            slopes,
        };
        let (v, e, h) = (cfg.vocab, cfg.embed, cfg.hidden);
        let shapes: [&[usize]; 6] = [&[v, e], &[h, e], &[h], &[h, h], &[v, h], &[v]];
        let mut list = Vec::with_capacity(NAMES.len());
        for (name, want) in NAMES.iter().zip(shapes) {
            let t = take(name)?;
            if t.dims() != want {
                bail!(
                    "{}: `{name}` has shape {:?} but the stored vocabulary ({v} characters) and \
                     config (embed {e}, hidden {h}) need {want:?}: weights and vocabulary come \
                     from different models",
                    what(),
                    t.dims()
                );
            }
            ensure!(
                t.dtype() == DType::F32,
                "{}: `{name}` is {:?}, not f32",
                what(),
                t.dtype()
            );
            list.push(t.to_device(dev)?);
        }
        let list: [Tensor; 6] = list.try_into().map_err(|_| anyhow!("six weight tensors"))?;
        let stored = map.remove(SLOPE_NAME);
        let prelu = match (slopes, stored) {
            (SlopeKind::Fixed, None) => None,
            (SlopeKind::Fixed, Some(_)) => bail!(
                "{}: holds `{SLOPE_NAME}` but its `config` has no slope kind",
                what()
            ),
            (_, None) => bail!(
                "{} has no tensor `{SLOPE_NAME}` (its `config` says the slopes are learned)",
                what()
            ),
            (kind, Some(w)) => {
                let want = [if kind == SlopeKind::Shared { 1 } else { h }];
                ensure!(
                    w.dims() == want && w.dtype() == DType::F32,
                    "{}: `{SLOPE_NAME}` is {:?} {:?}, the config needs f32 {want:?}",
                    what(),
                    w.dtype(),
                    w.dims()
                );
                Some(PReLU::new(w.to_device(dev)?, kind == SlopeKind::Shared))
            }
        };
        Ok((Self::from_array(cfg, list, prelu), vocab))
    }
}

/// A PReLU layer of `kind` over `hidden` units, made by `prelu` on a fresh variable map and
/// set to `alpha`; returns it and its variable.
fn new_prelu(kind: SlopeKind, hidden: usize, alpha: f64, dev: &Device) -> Result<(PReLU, Var)> {
    let map = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, dev);
    let channels = (kind == SlopeKind::PerUnit).then_some(hidden);
    let layer = prelu(channels, vb.pp("prelu"))?;
    let vars = map.all_vars();
    let [var] = vars.as_slice() else {
        bail!("a PReLU layer with {} variables, not 1", vars.len());
    };
    var.set(&Tensor::full(alpha as f32, var.shape(), dev)?)?;
    Ok((layer, var.clone()))
}

/// Mean cross-entropy (nats per character) of time-major `logits` against `y`
/// (`(batch, steps)` u32 ids).
pub fn loss(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let targets = y.t()?.flatten_all()?;
    Ok(candle_nn::loss::cross_entropy(logits, &targets)?)
}

/// Softmax probabilities of the last row of `logits` divided by `temperature`.
pub fn last_probs(logits: &Tensor, temperature: f64) -> Result<Vec<f32>> {
    let last = logits.get(logits.dim(0)? - 1)?;
    let p = candle_nn::ops::softmax_last_dim(&(last / temperature)?.unsqueeze(0)?)?;
    Ok(p.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?)
}
