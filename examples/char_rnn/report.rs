//! What runs write: the machine-readable `final:` line, the CSV of validation points, the CSV
//! of steps (gradient norms and probes), and the sweep's CSV and table.

use crate::lab::{num, step_or_na, summary_line, AlphaRuns, SlopeSpec};
use crate::measures::{max, median};
use crate::train;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Creates `dir` and its parents.
pub fn create_out(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))
}

/// Writes `text` to `path`, naming the file on failure.
pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The machine-readable summary of a run: the checkpoint's (best validation) losses and
/// slopes (the fixed slope three times when it is not learned).
pub fn final_line(run: &train::Run) -> String {
    let p = run.best();
    format!(
        "final: steps={} train_loss={:.4} val_loss={:.4} dead_units={:.1}% best_step={} {}",
        run.steps(),
        p.train_loss.unwrap_or(f64::NAN),
        p.val_loss,
        p.inactive_pct,
        p.step,
        p.slope.fields("")
    )
}

/// The CSV header and rows of runs' validation points (`train_loss`, `zero_grad_pct` empty at
/// step 0).
pub fn points_csv(runs: &[(String, &train::Run)]) -> String {
    let mut csv = String::from(
        "run,step,train_loss,val_loss,inactive_pct,zero_grad_pct,died,revived,knocked_alive,\
         knocked_out,alpha_mean,alpha_min,alpha_max\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (name, run) in runs {
        for p in &run.history {
            let line = format!(
                "{name},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                p.step,
                opt(p.train_loss),
                p.val_loss,
                p.inactive_pct,
                opt(p.zero_grad_pct),
                p.died,
                p.revived,
                p.knocked_alive,
                run.knocked.len(),
                p.slope.mean,
                p.slope.min,
                p.slope.max
            );
            csv.push_str(&line);
        }
    }
    csv
}

/// The CSV of every step of runs: `grad_norm` (before clipping) and `clipped` of the step that
/// ended there (empty at step 0), and the probe's knocked-out units alive and slopes where a
/// probe ran (empty elsewhere).
pub fn steps_csv(runs: &[(String, &train::Run)]) -> String {
    let mut csv = String::from(
        "run,step,grad_norm,clipped,probe_knocked_alive,alpha_mean,alpha_min,alpha_max\n",
    );
    for (name, run) in runs {
        let mut probes = run.probes.iter().peekable();
        for step in 0..=run.grad_norms.len() {
            let (norm, clipped) = match step {
                0 => (String::new(), String::new()),
                _ => {
                    let n = run.grad_norms[step - 1];
                    (n.to_string(), u8::from(n > run.clip).to_string())
                }
            };
            let probe = match probes.next_if(|p| p.step == step) {
                Some(p) => format!(
                    "{},{},{},{}",
                    p.knocked_alive.map_or(String::new(), |a| a.to_string()),
                    p.slope.mean,
                    p.slope.min,
                    p.slope.max
                ),
                None => ",,,".into(),
            };
            let _ = writeln!(csv, "{name},{step},{norm},{clipped},{probe}");
        }
    }
    csv
}

/// `mean [min, max]` of the finite values of `xs` with `f`, or `-` when there are none.
fn spread(xs: &[f64], f: fn(f64) -> String) -> String {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return "-".into();
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let (lo, hi) = (v.iter()).fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    format!("{} [{}, {}]", f(mean), f(lo), f(hi))
}

/// The validation loss of a run's last evaluation, NaN when it diverged.
fn end_val(r: &train::Run) -> f64 {
    match r.diverged {
        Some(_) => f64::NAN,
        None => r.last().val_loss,
    }
}

/// The sweep's CSV: one row per seed and slope, the `lab:` line's values.
pub fn sweep_csv(seeds: &[(u64, Vec<AlphaRuns>)]) -> String {
    let mut csv = String::from(
        "seed,alpha,knocked_out,alive_at_end,val_loss,baseline_val_loss,inactive_end,\
         grad_norm_median,grad_norm_max,clip_rate,revive_half_step,revive_90_step,\
         learned_alpha_mean,learned_alpha_min,learned_alpha_max\n",
    );
    for (seed, runs) in seeds {
        for r in runs {
            let line = summary_line(r);
            let mut fields: Vec<&str> = (line.split_whitespace().skip(1))
                .map(|kv| kv.split_once('=').map_or("", |(_, v)| v))
                .collect();
            fields.resize(14, "");
            let _ = writeln!(csv, "{seed},{}", fields.join(","));
        }
    }
    csv
}

/// The sweep's table (Markdown), one row per slope over all seeds: for measures, the mean over
/// the seeds and [least, largest]; revival steps seed by seed.
pub fn sweep_table(seeds: &[(u64, Vec<AlphaRuns>)]) -> String {
    let mut t = String::from(
        "| alpha | val loss (knockout) | baseline val loss | knockout cost | alive at end | \
         revived 50% (step) | revived 90% (step) | grad norm median | grad norm max | clip \
         rate | diverged | learned slope at end |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let Some((_, first)) = seeds.first() else {
        return t;
    };
    for (i, spec) in first.iter().map(|r| r.slope).enumerate() {
        let runs: Vec<&AlphaRuns> = seeds.iter().filter_map(|(_, r)| r.get(i)).collect();
        let of = |f: &dyn Fn(&AlphaRuns) -> f64| runs.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let f4 = |v: f64| format!("{v:.4}");
        let loss = of(&|r| end_val(&r.knockout));
        let base = of(&|r| r.baseline.as_ref().map_or(f64::NAN, end_val));
        let cost: Vec<f64> = loss.iter().zip(&base).map(|(l, b)| l - b).collect();
        let k = runs[0].knockout.knocked.len();
        let alive = of(&|r| r.knockout.last().knocked_alive as f64);
        let revive = |j: usize| {
            let steps: Vec<String> = (runs.iter())
                .map(|r| {
                    let (h, n) = r.knockout.revival();
                    step_or_na([h, n][j])
                })
                .collect();
            steps.join(", ")
        };
        let gmed = of(&|r| median(&r.knockout.grad_norms));
        let gmax = of(&|r| max(&r.knockout.grad_norms));
        let clip = of(&|r| r.knockout.clip_rate());
        let diverged = (runs.iter())
            .filter(|r| r.knockout.diverged.is_some())
            .count();
        let learned = match spec {
            SlopeSpec::Fixed(_) => "-".into(),
            _ => {
                let s: Vec<_> = runs.iter().map(|r| r.knockout.last().slope).collect();
                let mean = s.iter().map(|s| s.mean).sum::<f64>() / s.len() as f64;
                let lo = s.iter().map(|s| s.min).fold(f64::MAX, f64::min);
                let hi = s.iter().map(|s| s.max).fold(f64::MIN, f64::max);
                format!("{mean:.3} [{lo:.3}, {hi:.3}]")
            }
        };
        let _ = writeln!(
            t,
            "| {spec} | {} | {} | {} | {} of {k} | {} | {} | {} | {} | {} | {diverged}/{} | {learned} |",
            spread(&loss, f4),
            spread(&base, f4),
            spread(&cost, |v| format!("{v:+.4}")),
            spread(&alive, |v| format!("{v:.0}")),
            revive(0),
            revive(1),
            spread(&gmed, num),
            spread(&gmax, num),
            spread(&clip, |v| format!("{v:.3}")),
            runs.len()
        );
    }
    t
}
