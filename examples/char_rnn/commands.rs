//! The commands: what each runs, prints and writes.

use crate::alloc::set_threads;
use crate::cli::{device, LabArgs, SampleArgs, SweepArgs, TableArgs, TrainArgs, TrainCmd};
use crate::lab::AlphaRuns;
use crate::report::{create_out, final_line, points_csv, steps_csv, write};
use crate::{lab, model, plot, report, resume, sample, train};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The checkpoint's file name inside `train --out`.
pub const CHECKPOINT: &str = "model.safetensors";

/// `train`: one run (saving its resume state in `--out` at every evaluation, or continuing
/// the run saved there with `--resume`), its checkpoint, a sample and the `final:` line.
pub fn run_train(cmd: &TrainCmd) -> Result<()> {
    let a = &cmd.args;
    set_threads(a.run.threads);
    let (text, dev) = (a.run.text()?, device(a.run.at.device)?);
    let (alpha, slopes) = a.slope();
    create_out(&a.out)?;
    let state = a.out.join(resume::STATE_FILE);
    if let (false, Some((step, finished))) = (cmd.resume, resume::saved_step(&a.out)) {
        let run = if finished { "finished run" } else { "run" };
        out!(
            "note: {} holds the resume state of a {run} at step {step}; this run starts afresh \
             and replaces it (--resume continues that one)",
            state.display()
        );
    }
    let persist = train::Persist {
        dir: a.out.clone(),
        resume: cmd.resume,
        stop_after: cmd.stop_after,
    };
    let s = a.settings(alpha, slopes);
    let run = train::train_persisted(&text, &s, &dev, Some("train"), Some(&persist))?;
    if let Some(step) = run.diverged {
        bail!("training diverged at step {step} (loss not finite); try a lower --lr");
    }
    if let Some(step) = run.stopped_at {
        out!(
            "stopped after step {step} of {} (--stop-after); resume state {}; continue with the \
             same flags and --resume",
            s.steps,
            state.display()
        );
        return Ok(());
    }
    let path = a.out.join(CHECKPOINT);
    run.model.save(&run.vocab, &path)?;
    let best = run.best();
    if run.resumed_from == Some(run.steps()) {
        out!(
            "the run in {} had already finished at step {}: nothing to train (checkpoint \
             written again from its state)",
            a.out.display(),
            run.steps()
        );
    }
    if run.stopped_early {
        out!(
            "stopped early at step {}: no better validation loss in --patience {} evaluations",
            run.steps(),
            a.patience
        );
    }
    out!(
        "trained {} steps in {:.1} s ({:.0} chars/s); checkpoint {} (step {}, the best \
         validation loss, {:.4})",
        run.steps(),
        run.secs,
        run.chars_per_s,
        path.display(),
        best.step,
        best.val_loss
    );
    let prime = if run.vocab.contains('\n') {
        "\n"
    } else {
        &text[..text.chars().next().map_or(0, char::len_utf8)]
    };
    let opts = sample::SampleOpts::new(prime, a.sample_len, a.run.at.seed);
    out!(
        "--- sample ---\n{}\n--------------",
        sample::sample(&run.model, &run.vocab, &opts)?
    );
    out!("{}", final_line(&run));
    Ok(())
}

/// `sample`: text from a checkpoint.
pub fn run_sample(a: &SampleArgs) -> Result<()> {
    let path = if a.checkpoint.is_dir() {
        a.checkpoint.join(CHECKPOINT)
    } else {
        a.checkpoint.clone()
    };
    let (model, vocab) = model::CharRnn::load(&path, &device(a.at.device)?)?;
    let opts = sample::SampleOpts {
        temperature: a.temperature,
        top_k: a.top_k,
        ..sample::SampleOpts::new(&a.prime, a.len, a.at.seed)
    };
    out!("{}", sample::sample(&model, &vocab, &opts)?);
    Ok(())
}

/// `compare`: ReLU and LeakyReLU (or learned slopes) from the same seed, their `final:`
/// lines, CSV and plot.
pub fn run_compare(a: &TrainArgs) -> Result<()> {
    let (alpha, slopes) = a.slope();
    if alpha == 0.0 && !slopes.learned() {
        bail!("compare: --alpha is the LeakyReLU slope to compare with ReLU; it must not be 0");
    }
    set_threads(a.run.threads);
    let (text, dev) = (a.run.text()?, device(a.run.at.device)?);
    let leaky = match slopes {
        model::SlopeKind::Fixed => format!("leaky (alpha {alpha})"),
        _ => format!("prelu (learned, from {alpha})"),
    };
    let names = ["relu (alpha 0)".to_string(), leaky];
    let settings = [
        a.settings(0.0, model::SlopeKind::Fixed),
        a.settings(alpha, slopes),
    ];
    let mut runs = Vec::new();
    for (name, s) in names.iter().zip(&settings) {
        let run = train::train(&text, s, &dev, Some(name))?;
        match run.diverged {
            Some(step) => out!("{name}: diverged at step {step} ({:.1} s)", run.secs),
            None => out!("{name}: {} ({:.1} s)", final_line(&run), run.secs),
        }
        runs.push((name.clone(), run));
    }
    create_out(&a.out)?;
    let named: Vec<(String, &train::Run)> = runs.iter().map(|(n, r)| (n.clone(), r)).collect();
    write(&a.out.join("compare.csv"), &points_csv(&named))?;
    let svg = a.out.join("compare.svg");
    let series: Vec<(String, &[train::Point])> = runs
        .iter()
        .map(|(n, r)| (n.clone(), r.history.as_slice()))
        .collect();
    plot::plot(&svg, &series)?;
    let (relu, leaky) = (runs[0].1.best(), runs[1].1.best());
    out!(
        "compare: val_loss relu={:.4} leaky={:.4}; inactive units relu={:.1}% leaky={:.1}% (on \
         the whole validation set, best checkpoints); plot {}",
        relu.val_loss,
        leaky.val_loss,
        relu.inactive_pct,
        leaky.inactive_pct,
        svg.display()
    );
    Ok(())
}

/// `lab`: the knockout and baseline runs of every slope, the table, the `lab:` lines, CSV and
/// plot.
pub fn run_lab(a: &LabArgs) -> Result<()> {
    set_threads(a.run.threads);
    let (text, dev) = (a.run.text()?, device(a.run.at.device)?);
    let runs = lab::lab(&text, &a.lab(), &dev, true)?;
    write_lab(&a.out, &runs)?;
    out!("{}", lab::table(&runs));
    for r in &runs {
        out!("{}", lab::summary_line(r));
    }
    out!(
        "wrote {}, {} and {}",
        a.out.join("lab.csv").display(),
        a.out.join("lab_steps.csv").display(),
        a.out.join("lab.svg").display()
    );
    Ok(())
}

/// Writes a lab's `lab.csv` (evaluations), `lab_steps.csv` (steps and probes) and `lab.svg`
/// to `dir`.
fn write_lab(dir: &Path, runs: &[AlphaRuns]) -> Result<()> {
    create_out(dir)?;
    let named: Vec<(String, &train::Run)> = (runs.iter())
        .flat_map(|r| {
            let kind = if r.knockout.knocked.is_empty() {
                ""
            } else {
                " knockout"
            };
            let k = Some((format!("alpha {}{kind}", r.slope), &r.knockout));
            let b = (r.baseline.as_ref()).map(|b| (format!("alpha {} baseline", r.slope), b));
            k.into_iter().chain(b)
        })
        .collect();
    write(&dir.join("lab.csv"), &points_csv(&named))?;
    write(&dir.join("lab_steps.csv"), &steps_csv(&named))?;
    plot::plot_lab(&dir.join("lab.svg"), runs)
}

/// `sweep`: the lab once per seed (each seed's files in `--out`/seed-S), then one table over
/// the seeds, `sweep.csv` and `sweep.svg`.
pub fn run_sweep(a: &SweepArgs) -> Result<()> {
    if a.seeds.is_empty() {
        bail!("sweep: --seeds needs at least one seed");
    }
    set_threads(a.lab.run.threads);
    let (text, dev) = (a.lab.run.text()?, device(a.lab.run.at.device)?);
    let mut all = Vec::new();
    for &seed in &a.seeds {
        let mut cfg = a.lab.lab();
        cfg.settings.seed = seed;
        let runs = lab::lab(&text, &cfg, &dev, true)?;
        write_lab(&a.lab.out.join(format!("seed-{seed}")), &runs)?;
        for r in &runs {
            let line = lab::summary_line(r);
            out!("sweep: seed={seed} {}", line.trim_start_matches("lab: "));
        }
        all.push((seed, runs));
    }
    create_out(&a.lab.out)?;
    let csv = report::sweep_csv(&all);
    write(&a.lab.out.join("sweep.csv"), &csv)?;
    let svg = a.lab.out.join("sweep.svg");
    plot::plot_sweep(&svg, &all)?;
    out!("{}", report::sweep_table(&[csv])?);
    out!(
        "wrote {}, {} and the labs of each seed under {}",
        a.lab.out.join("sweep.csv").display(),
        svg.display(),
        a.lab.out.display()
    );
    Ok(())
}

/// `table`: the sweep table of one or more `sweep.csv` files (their rows together).
pub fn run_table(a: &TableArgs) -> Result<()> {
    let csvs = (a.csv.iter())
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    out!("{}", report::sweep_table(&csvs)?);
    Ok(())
}
