//! What runs write: the machine-readable `final:` line, the CSV of validation points, the CSV
//! of steps (gradient norms and probes), and the sweep's CSV and table.

use crate::lab::{num, summary_line, AlphaRuns};
use crate::train;
use anyhow::{ensure, Context, Result};
use std::collections::HashMap;
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

/// The sweep's table (Markdown) from the rows of one or more `sweep.csv` files: one row per
/// slope (in the order they first appear) over all seeds. Losses, cost, units alive, the
/// median gradient norm, the clip rate and the learned slope: the mean over the seeds and
/// [least, largest] (over the runs that did not diverge where a value needs a finished run;
/// computed from the CSV's rounded values); revival steps and the largest gradient norm: seed
/// by seed.
pub fn sweep_table(csvs: &[String]) -> Result<String> {
    let mut rows: Vec<HashMap<String, String>> = Vec::new();
    for csv in csvs {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .context("an empty sweep CSV")?
            .split(',')
            .collect();
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            ensure!(
                cells.len() == header.len(),
                "sweep CSV line {}: {} cells, the header has {}",
                i + 2,
                cells.len(),
                header.len()
            );
            let row = header.iter().zip(cells);
            rows.push(row.map(|(h, c)| (h.to_string(), c.to_string())).collect());
        }
    }
    let mut order: Vec<String> = Vec::new();
    for r in &rows {
        let a = r
            .get("alpha")
            .context("a sweep CSV without an `alpha` column")?;
        if !order.contains(a) {
            order.push(a.clone());
        }
    }
    let mut t = String::from(
        "| alpha | val loss (knockout) | baseline val loss | knockout cost | alive at end | \
         revived 50% (step) | revived 90% (step) | grad norm median | grad norm max (per seed) \
         | clip rate | diverged | learned slope at end |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for alpha in &order {
        let runs: Vec<&HashMap<String, String>> = rows
            .iter()
            .filter(|r| r.get("alpha") == Some(alpha))
            .collect();
        let cell = |r: &HashMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
        let of = |k: &str| -> Vec<f64> {
            (runs.iter())
                .map(|r| cell(r, k).parse().unwrap_or(f64::NAN))
                .collect()
        };
        let seeds = |k: &str| {
            runs.iter()
                .map(|r| cell(r, k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let f4 = |v: f64| format!("{v:.4}");
        let (loss, base) = (of("val_loss"), of("baseline_val_loss"));
        let cost: Vec<f64> = loss.iter().zip(&base).map(|(l, b)| l - b).collect();
        let knocked = of("knocked_out");
        let alive = match knocked.iter().all(|&k| k == 0.0) {
            true => "-".into(),
            false => format!(
                "{} of {}",
                spread(&of("alive_at_end"), |v| format!("{v:.0}")),
                seeds("knocked_out").split(", ").next().unwrap_or_default()
            ),
        };
        let diverged = (runs.iter())
            .filter(|r| cell(r, "val_loss") == "diverged")
            .count();
        let (mean, lo, hi) = (
            of("learned_alpha_mean"),
            of("learned_alpha_min"),
            of("learned_alpha_max"),
        );
        let learned = match mean.iter().any(|v| v.is_finite()) {
            false => "-".into(),
            true => {
                let finite =
                    |v: Vec<f64>| -> Vec<f64> { v.into_iter().filter(|x| x.is_finite()).collect() };
                let (mean, lo, hi) = (finite(mean), finite(lo), finite(hi));
                format!(
                    "{:.3} [{:.3}, {:.3}]",
                    mean.iter().sum::<f64>() / mean.len() as f64,
                    lo.iter().copied().fold(f64::MAX, f64::min),
                    hi.iter().copied().fold(f64::MIN, f64::max)
                )
            }
        };
        let _ = writeln!(
            t,
            "| {alpha} | {} | {} | {} | {alive} | {} | {} | {} | {} | {} | {diverged}/{} | \
             {learned} |",
            spread(&loss, f4),
            spread(&base, f4),
            spread(&cost, |v| format!("{v:+.4}")),
            seeds("revive_half_step"),
            seeds("revive_90_step"),
            spread(&of("grad_norm_median"), num),
            seeds("grad_norm_max"),
            spread(&of("clip_rate"), |v| format!("{v:.3}")),
            runs.len()
        );
    }
    Ok(t)
}
