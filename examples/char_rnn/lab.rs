//! The dying-ReLU lab: for each slope, one run with a share of the hidden units knocked out
//! (their bias starts very negative, so they are inactive on every input) and one baseline run
//! without, from the same seed and batches; then which knocked-out units came back.

use crate::train::{train, Run, Settings};
use anyhow::{ensure, Result};
use candle_core::Device;

/// What to run.
#[derive(Clone, Debug)]
pub struct Lab {
    /// Everything but the slope, the knockout and early stopping (the lab runs every step).
    pub settings: Settings,
    /// Slopes, one pair of runs each.
    pub alphas: Vec<f64>,
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
    pub alpha: f64,
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
    let knocked = Settings {
        knockout: cfg.knockout,
        knockout_bias: cfg.knockout_bias,
        patience: 0,
        ..cfg.settings.clone()
    };
    let knocked_out = !crate::train::knocked_units(&knocked).is_empty();
    let baseline = cfg.baseline && knocked_out;
    let mut out = Vec::new();
    for &alpha in &cfg.alphas {
        let label = |kind: &str| show.then(|| format!("alpha {alpha}{kind}"));
        let s = Settings {
            alpha,
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
            alpha,
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

/// The machine-readable line of one slope (values at the last evaluation).
pub fn summary_line(r: &AlphaRuns) -> String {
    let k = &r.knockout;
    format!(
        "lab: alpha={} knocked_out={} alive_at_end={} val_loss={} baseline_val_loss={} \
         inactive_end={}",
        r.alpha,
        k.knocked.len(),
        k.last().knocked_alive,
        end_loss(k),
        r.baseline.as_ref().map_or("na".into(), end_loss),
        end_inactive(k)
    )
}

/// The closing table: one row per slope.
pub fn table(runs: &[AlphaRuns]) -> String {
    let mut t = format!(
        "{:>6} | {:>13} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15}\n",
        "alpha",
        "knocked out",
        "alive at",
        "val loss",
        "baseline val",
        "cost",
        "inactive",
        "zero-grad, last"
    );
    t += &format!(
        "{:>6} | {:>13} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15}\n",
        "", "inactive at 0", "end", "", "loss", "", "at end", "interval"
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
        t += &format!(
            "{:>6} | {:>13} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15}\n",
            r.alpha,
            format!("{}/{}", dead0, k.knocked.len()),
            format!("{}/{}", last.knocked_alive, k.knocked.len()),
            end_loss(k),
            r.baseline.as_ref().map_or("-".into(), end_loss),
            cost,
            end_inactive(k),
            zero
        );
    }
    t + "knocked out: of the knocked-out units, those inactive at step 0; cost: val loss minus \
         the baseline's;\ninactive: pre-activation <= 0 on the whole validation set; zero-grad: \
         bias gradient exactly 0 on every\nstep of the last interval (0 by construction for \
         alpha != 0: inactive units still get alpha * dy)"
}
