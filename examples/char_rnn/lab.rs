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
    let baseline = cfg.baseline && !crate::train::knocked_units(&knocked).is_empty();
    let mut out = Vec::new();
    for &alpha in &cfg.alphas {
        let label = |kind: &str| show.then(|| format!("alpha {alpha} {kind}"));
        let s = Settings {
            alpha,
            ..knocked.clone()
        };
        let knockout = train(text, &s, dev, label("knockout").as_deref())?;
        let baseline = match baseline {
            true => {
                let s = Settings { knockout: 0.0, ..s };
                Some(train(text, &s, dev, label("baseline").as_deref())?)
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

/// The machine-readable line of one slope (values at the last evaluation).
pub fn summary_line(r: &AlphaRuns) -> String {
    let k = &r.knockout;
    format!(
        "lab: alpha={} knocked_out={} alive_at_end={} val_loss={} baseline_val_loss={} \
         inactive_end={:.1}%",
        r.alpha,
        k.knocked.len(),
        k.last().knocked_alive,
        end_loss(k),
        r.baseline.as_ref().map_or("na".into(), end_loss),
        k.last().inactive_pct
    )
}

/// The closing table: one row per slope.
pub fn table(runs: &[AlphaRuns]) -> String {
    let mut t = format!(
        "{:>6} | {:>12} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15}\n",
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
        "{:>6} | {:>12} | {:>8} | {:>8} | {:>13} | {:>8} | {:>9} | {:>15}\n",
        "", "(step 0 off)", "end", "", "loss", "", "at end", "interval"
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
        let zero = format!("{:.1}%", last.zero_grad_pct.unwrap_or(f64::NAN));
        t += &format!(
            "{:>6} | {:>12} | {:>8} | {:>8} | {:>13} | {:>8} | {:>8.1}% | {:>15}\n",
            r.alpha,
            format!("{}/{}", dead0, k.knocked.len()),
            format!("{}/{}", last.knocked_alive, k.knocked.len()),
            end_loss(k),
            r.baseline.as_ref().map_or("-".into(), end_loss),
            cost,
            last.inactive_pct,
            zero
        );
    }
    t + "knocked out: units inactive at step 0 of those knocked out; cost: val loss minus the \
         baseline's;\ninactive: pre-activation <= 0 on the whole validation set; zero-grad: bias \
         gradient exactly 0 on every\nstep of the last interval (0 by construction for alpha != 0: \
         inactive units still get alpha * dy)"
}
