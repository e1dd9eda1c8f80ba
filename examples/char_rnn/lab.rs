//! The dying-ReLU lab: for each slope (fixed, or learned by a PReLU layer), one run with a
//! share of the hidden units knocked out (their bias starts very negative, so they are inactive
//! on every input) and one baseline run without, from the same seed and batches; then which
//! knocked-out units came back and how fast, and how large the gradients were.

use crate::measures::{max, median};
use crate::model::SlopeKind;
use crate::train::{train, Run, Settings};
use anyhow::{bail, ensure, Result};
use candle_core::Device;
use std::fmt;
use std::str::FromStr;

/// A slope of `lab --alphas`: a number, or slopes learned by a PReLU layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SlopeSpec {
    /// This fixed slope.
    Fixed(f64),
    /// One learned slope per hidden unit (`learn`).
    Learn,
    /// One learned slope for the layer (`learn-shared`).
    LearnShared,
}

impl SlopeSpec {
    /// The run's slope and kind; learned slopes start at `init`.
    pub fn slope(self, init: f64) -> (f64, SlopeKind) {
        match self {
            Self::Fixed(a) => (a, SlopeKind::Fixed),
            Self::Learn => (init, SlopeKind::PerUnit),
            Self::LearnShared => (init, SlopeKind::Shared),
        }
    }

    /// Whether the slopes are learned.
    pub fn learned(self) -> bool {
        !matches!(self, Self::Fixed(_))
    }
}

impl FromStr for SlopeSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "learn" => Ok(Self::Learn),
            "learn-shared" => Ok(Self::LearnShared),
            _ => match s.parse::<f64>() {
                Ok(a) if a.is_finite() => Ok(Self::Fixed(a)),
                _ => bail!("`{s}` is neither a finite number nor `learn` or `learn-shared`"),
            },
        }
    }
}

impl fmt::Display for SlopeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(a) => write!(f, "{a}"),
            Self::Learn => f.write_str("learn"),
            Self::LearnShared => f.write_str("learn-shared"),
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Lab {
    /// Everything but the slope, the knockout and early stopping (the lab runs every step).
    pub settings: Settings,
    /// Slopes, one pair of runs each.
    pub alphas: Vec<SlopeSpec>,
    /// Initial value of learned slopes.
    pub learn_init: f64,
    /// Share of hidden units knocked out.
    pub knockout: f64,
    /// Their initial bias.
    pub knockout_bias: f64,
    /// Whether to run the baseline (no knockout) too; never when nothing is knocked out.
    pub baseline: bool,
}

/// The runs of one slope.
pub struct AlphaRuns {
    /// The slope.
    pub slope: SlopeSpec,
    /// The run with the knockout.
    pub knockout: Run,
    /// The same run without it.
    pub baseline: Option<Run>,
}

/// Runs the lab on `text`; `show` prints progress bars and evaluation lines.
pub fn lab(text: &str, cfg: &Lab, dev: &Device, show: bool) -> Result<Vec<AlphaRuns>> {
    ensure!(
        !cfg.alphas.is_empty(),
        "lab: --alphas needs at least one slope"
    );
    ensure!(
        cfg.learn_init.is_finite() || !cfg.alphas.iter().any(|a| a.learned()),
        "lab: --learn-init must be finite, got {}",
        cfg.learn_init
    );
    let knocked = Settings {
        knockout: cfg.knockout,
        knockout_bias: cfg.knockout_bias,
        patience: 0,
        ..cfg.settings.clone()
    };
    let knocked_out = !crate::train::knocked_units(&knocked).is_empty();
    let baseline = cfg.baseline && knocked_out;
    let mut out = Vec::new();
    for &slope in &cfg.alphas {
        let label = |kind: &str| show.then(|| format!("alpha {slope}{kind}"));
        let (alpha, slopes) = slope.slope(cfg.learn_init);
        let s = Settings {
            alpha,
            slopes,
            ..knocked.clone()
        };
        let kind = if knocked_out { " knockout" } else { "" };
        let knockout = train(text, &s, dev, label(kind).as_deref())?;
        let baseline = match baseline {
            true => {
                let s = Settings { knockout: 0.0, ..s };
                Some(train(text, &s, dev, label(" baseline").as_deref())?)
            }
            false => None,
        };
        out.push(AlphaRuns {
            slope,
            knockout,
            baseline,
        });
    }
    Ok(out)
}

fn end_loss(r: &Run) -> String {
    match r.diverged {
        Some(_) => "diverged".into(),
        None => format!("{:.4}", r.last().val_loss),
    }
}

/// The inactive share at the end, `na` when the run diverged.
fn end_inactive(r: &Run) -> String {
    match r.diverged {
        Some(_) => "na".into(),
        None => format!("{:.1}%", r.last().inactive_pct),
    }
}

/// A measure for the `lab:` line: four decimals, or three significant digits in exponent
/// form outside [1e-3, 1e4) (`NaN`, `inf` as Rust prints them).
pub fn num(v: f64) -> String {
    match v.is_finite() && (v == 0.0 || (1e-3..1e4).contains(&v.abs())) {
        true => format!("{v:.4}"),
        false => format!("{v:.3e}"),
    }
}

/// A step, or `na`.
pub fn step_or_na(s: Option<usize>) -> String {
    s.map_or("na".into(), |s| s.to_string())
}

/// The machine-readable line of one slope: values at the last evaluation of the knockout run,
/// its gradient norms before clipping over every step done, its clip rate, and the probe steps
/// at which half and nine tenths of its knocked-out units were alive; for learned slopes, the
/// slopes at the last evaluation.
pub fn summary_line(r: &AlphaRuns) -> String {
    let k = &r.knockout;
    let (half, ninety) = k.revival();
    let mut line = format!(
        "lab: alpha={} knocked_out={} alive_at_end={} val_loss={} baseline_val_loss={} \
         inactive_end={} grad_norm_median={} grad_norm_max={} clip_rate={:.3} \
         revive_half_step={} revive_90_step={}",
        r.slope,
        k.knocked.len(),
        k.last().knocked_alive,
        end_loss(k),
        r.baseline.as_ref().map_or("na".into(), end_loss),
        end_inactive(k),
        num(median(&k.grad_norms)),
        num(max(&k.grad_norms)),
        k.clip_rate(),
        step_or_na(half),
        step_or_na(ninety)
    );
    if r.slope.learned() {
        line += &format!(" {}", k.last().slope.fields("learned_"));
    }
    line
}

/// The closing table: one row per slope.
pub fn table(runs: &[AlphaRuns]) -> String {
    let mut t = format!(
        "{:>12} | {:>13} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15} | {:>9} | {:>9} | \
         {:>5} | {:>7}\n",
        "alpha",
        "knocked out",
        "alive at",
        "val loss",
        "baseline val",
        "cost",
        "inactive",
        "zero-grad, last",
        "grad norm",
        "grad norm",
        "clip",
        "revived"
    );
    t += &format!(
        "{:>12} | {:>13} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15} | {:>9} | {:>9} | \
         {:>5} | {:>7}\n",
        "",
        "inactive at 0",
        "end",
        "",
        "loss",
        "",
        "at end",
        "interval",
        "median",
        "max",
        "rate",
        "50%/90%"
    );
    for r in runs {
        let (k, first, last) = (&r.knockout, r.knockout.history[0], r.knockout.last());
        let dead0 = k.knocked.len() - first.knocked_alive;
        let cost = match (&r.baseline, k.diverged) {
            (Some(b), None) if b.diverged.is_none() => {
                format!("{:+.4}", last.val_loss - b.last().val_loss)
            }
            _ => "-".into(),
        };
        let zero = match (k.diverged, last.zero_grad_pct) {
            (None, Some(z)) => format!("{z:.1}%"),
            _ => "-".into(),
        };
        let (half, ninety) = k.revival();
        t += &format!(
            "{:>12} | {:>13} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15} | {:>9} | {:>9} | \
             {:>5.3} | {:>7}\n",
            r.slope.to_string(),
            format!("{}/{}", dead0, k.knocked.len()),
            format!("{}/{}", last.knocked_alive, k.knocked.len()),
            end_loss(k),
            r.baseline.as_ref().map_or("-".into(), end_loss),
            cost,
            end_inactive(k),
            zero,
            num(median(&k.grad_norms)),
            num(max(&k.grad_norms)),
            k.clip_rate(),
            format!("{}/{}", step_or_na(half), step_or_na(ninety))
        );
    }
    t + "knocked out: of the knocked-out units, those inactive at step 0; cost: val loss minus \
         the baseline's;\ninactive: pre-activation <= 0 on the whole validation set; zero-grad: \
         bias gradient exactly 0 on every\nstep of the last interval (0 by construction for \
         fixed alpha != 0: inactive units still get alpha * dy);\ngrad norm: global L2 norm \
         before clipping, over every step; clip rate: share of steps it exceeded --clip;\n\
         revived: first probe step with half / nine tenths of the knocked-out units active on \
         the probe slice (na: never)"
}
