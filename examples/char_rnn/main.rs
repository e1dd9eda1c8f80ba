//! Character-level RNN on `LeakyRelu`: trains on a text (by default the bundled Tiny
//! Shakespeare), samples from the best-validation checkpoint, compares ReLU (`--alpha 0`, the
//! same op) with LeakyReLU, and shows dying ReLU in a lab that knocks out hidden units. See
//! `examples/char_rnn/README.md`.
//!
//! ```text
//! cargo run --release --example char_rnn -- train
//! cargo run --release --example char_rnn -- sample --prime "ROMEO:" --len 500
//! cargo run --release --example char_rnn -- compare
//! cargo run --release --example char_rnn -- lab
//! ```

mod data;
mod lab;
mod model;
mod plot;
mod sample;
#[cfg(test)]
mod tests;
mod train;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Character-level RNN with LeakyReLU hidden units (candle).
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Train on a text, save a checkpoint, print a sample.
    Train(TrainArgs),
    /// Generate text from a checkpoint.
    Sample(SampleArgs),
    /// Train twice from the same seed, ReLU (alpha 0) vs LeakyReLU, and plot both runs.
    Compare(TrainArgs),
    /// Dying ReLU: knock out hidden units at the start and watch which slopes revive them.
    Lab(LabArgs),
}

/// Where tensors live.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (needs `--features cuda`).
    Cuda,
    /// The default Metal GPU (needs `--features metal`).
    Metal,
}

/// Model, data and optimiser settings shared by `train`, `compare` and `lab`.
#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// UTF-8 text to train on [default: the bundled data/tinyshakespeare.txt]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Optimiser steps
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Seed of the weights (and of the sample printed at the end)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Hidden units
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Embedding width
    #[arg(long, default_value_t = 32)]
    embed: usize,
    /// Characters per sequence (truncated BPTT length)
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Sequences per batch
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate (AdamW, warm-up then cosine decay to a tenth)
    #[arg(long, default_value_t = 2e-2)]
    lr: f64,
    /// AdamW weight decay (decoupled: each step shrinks the weights by lr * this)
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Dropout on the recurrent output before the read-out, in training (0: none)
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Warm-up steps
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Global gradient-norm clip
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Initial recurrent matrix: this times the identity (IRNN)
    #[arg(long, default_value_t = 0.9)]
    irnn_scale: f64,
    /// Validate every N steps (and at step 0 and the end)
    #[arg(long, default_value_t = 50)]
    eval_every: usize,
    /// Share of the text (its end) held out for validation
    #[arg(long, default_value_t = 0.1)]
    val_frac: f64,
    /// CPU threads for candle (0: candle's default, all cores)
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Output directory: checkpoint (train) or plot and CSV (compare)
    #[arg(long, default_value = "runs/char_rnn")]
    out: PathBuf,
    /// LeakyReLU slope of the hidden units (0 is ReLU); compare's leaky run
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    alpha: f64,
    /// Stop after this many evaluations without a better validation loss (0: never); the
    /// checkpoint is always the best-validation one
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Characters of the sample printed after training
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
}

/// Settings that change several defaults of `lab` at once.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Preset {
    /// Natural death: --lr 0.1 --irnn-scale 0.5 --knockout 0 (unless given explicitly)
    HighLr,
}

#[derive(Args, Debug, Clone)]
struct LabArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Output directory for lab.csv and lab.svg
    #[arg(long, default_value = "runs/lab")]
    out: PathBuf,
    /// Slopes to run, comma-separated (0 is ReLU)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.01,0.2",
        allow_negative_numbers = true
    )]
    alphas: Vec<f64>,
    /// Share of the hidden units knocked out (their bias starts at --knockout-bias)
    #[arg(long, default_value_t = 0.25)]
    knockout: f64,
    /// Initial bias of the knocked-out units
    #[arg(long, default_value_t = -4.0, allow_negative_numbers = true)]
    knockout_bias: f64,
    /// Skip the run without knockout for each slope
    #[arg(long)]
    no_baseline: bool,
    /// Named settings for several flags at once
    #[arg(long, value_enum)]
    preset: Option<Preset>,
}

#[derive(Args, Debug)]
struct SampleArgs {
    /// Checkpoint file, or the directory `train --out` wrote it to
    #[arg(long, default_value = "runs/char_rnn")]
    checkpoint: PathBuf,
    /// Text to start from
    #[arg(long, default_value = "\n")]
    prime: String,
    /// Characters to generate
    #[arg(long, default_value_t = 500)]
    len: usize,
    /// Softmax temperature
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Sample only among the K most likely characters
    #[arg(long)]
    top_k: Option<usize>,
    /// Sampling seed
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

const CHECKPOINT: &str = "model.safetensors";

/// The device named on the command line, or an error saying which feature to build with.
pub fn device(d: DeviceArg) -> Result<Device> {
    let missing = |name: &str| {
        format!(
            "--device {name}: this example was built without the `{name}` feature; run it with \
             `cargo run --release --features {name} --example char_rnn -- ...`"
        )
    };
    Ok(match d {
        DeviceArg::Cpu => Device::Cpu,
        #[cfg(feature = "cuda")]
        DeviceArg::Cuda => Device::new_cuda(0).context("--device cuda: no usable CUDA device")?,
        #[cfg(not(feature = "cuda"))]
        DeviceArg::Cuda => bail!(missing("cuda")),
        #[cfg(feature = "metal")]
        DeviceArg::Metal => {
            Device::new_metal(0).context("--device metal: no usable Metal device")?
        }
        #[cfg(not(feature = "metal"))]
        DeviceArg::Metal => bail!(missing("metal")),
    })
}

impl RunArgs {
    fn settings(&self, alpha: f64) -> train::Settings {
        train::Settings {
            steps: self.steps,
            batch: self.batch,
            seq_len: self.seq_len,
            embed: self.embed,
            hidden: self.hidden,
            alpha,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup: self.warmup,
            clip: self.clip,
            irnn_scale: self.irnn_scale,
            eval_every: self.eval_every,
            val_frac: self.val_frac,
            seed: self.seed,
            knockout: 0.0,
            knockout_bias: 0.0,
            patience: 0,
            dropout: self.dropout,
        }
    }

    fn text(&self) -> Result<String> {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare.txt");
        data::read_text(self.data.as_deref().unwrap_or(&bundled))
    }
}

impl TrainArgs {
    fn settings(&self, alpha: f64) -> train::Settings {
        train::Settings {
            patience: self.patience,
            ..self.run.settings(alpha)
        }
    }
}

/// Parses the command line, applying `lab --preset` to the flags not given explicitly.
pub fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Cmd::Lab(a), Some(m)) = (&mut cli.cmd, matches.subcommand_matches("lab")) {
        let default = |id| m.value_source(id) == Some(ValueSource::DefaultValue);
        if a.preset == Some(Preset::HighLr) {
            if default("lr") {
                a.run.lr = 0.1;
            }
            if default("irnn_scale") {
                a.run.irnn_scale = 0.5;
            }
            if default("knockout") {
                a.knockout = 0.0;
            }
        }
    }
    Ok(cli)
}

fn create_out(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))
}

/// The machine-readable summary of a run: the checkpoint's (best validation) losses.
fn final_line(run: &train::Run) -> String {
    let p = run.best();
    format!(
        "final: steps={} train_loss={:.4} val_loss={:.4} dead_units={:.1}% best_step={}",
        run.steps(),
        p.train_loss.unwrap_or(f64::NAN),
        p.val_loss,
        p.inactive_pct,
        p.step
    )
}

/// Sets candle's CPU thread count. Its worker pools spin while waiting: on 2 cores shared with
/// other work, 2 threads ran this model 3.7x slower than 1 (see the README).
fn set_threads(n: usize) {
    if n > 0 {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}

fn run_train(a: &TrainArgs) -> Result<()> {
    set_threads(a.run.threads);
    let (text, dev) = (a.run.text()?, device(a.run.device)?);
    let run = train::train(&text, &a.settings(a.alpha), &dev, Some("train"))?;
    if let Some(step) = run.diverged {
        bail!("training diverged at step {step} (loss not finite); try a lower --lr");
    }
    create_out(&a.out)?;
    let path = a.out.join(CHECKPOINT);
    run.model.save(&run.vocab, &path)?;
    let best = run.best();
    if run.stopped_early {
        println!(
            "stopped early at step {}: no better validation loss in --patience {} evaluations",
            run.steps(),
            a.patience
        );
    }
    println!(
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
    let opts = sample::SampleOpts::new(prime, a.sample_len, a.run.seed);
    println!(
        "--- sample ---\n{}\n--------------",
        sample::sample(&run.model, &run.vocab, &opts)?
    );
    println!("{}", final_line(&run));
    Ok(())
}

fn run_sample(a: &SampleArgs) -> Result<()> {
    let path = if a.checkpoint.is_dir() {
        a.checkpoint.join(CHECKPOINT)
    } else {
        a.checkpoint.clone()
    };
    let (model, vocab) = model::CharRnn::load(&path, &device(a.device)?)?;
    let opts = sample::SampleOpts {
        temperature: a.temperature,
        top_k: a.top_k,
        ..sample::SampleOpts::new(&a.prime, a.len, a.seed)
    };
    println!("{}", sample::sample(&model, &vocab, &opts)?);
    Ok(())
}

/// The CSV header and rows of runs' validation points (`train_loss`, `zero_grad_pct` empty at
/// step 0).
fn points_csv(runs: &[(String, &train::Run)]) -> String {
    let mut csv = String::from(
        "run,step,train_loss,val_loss,inactive_pct,zero_grad_pct,died,revived,knocked_alive,\
         knocked_out\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for (name, run) in runs {
        for p in &run.history {
            let line = format!(
                "{name},{},{},{},{},{},{},{},{},{}\n",
                p.step,
                opt(p.train_loss),
                p.val_loss,
                p.inactive_pct,
                opt(p.zero_grad_pct),
                p.died,
                p.revived,
                p.knocked_alive,
                run.knocked.len()
            );
            csv.push_str(&line);
        }
    }
    csv
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn run_compare(a: &TrainArgs) -> Result<()> {
    if a.alpha == 0.0 {
        bail!("compare: --alpha is the LeakyReLU slope to compare with ReLU; it must not be 0");
    }
    set_threads(a.run.threads);
    let (text, dev) = (a.run.text()?, device(a.run.device)?);
    let names = [
        "relu (alpha 0)".to_string(),
        format!("leaky (alpha {})", a.alpha),
    ];
    let mut runs = Vec::new();
    for (name, alpha) in names.iter().zip([0.0, a.alpha]) {
        let run = train::train(&text, &a.settings(alpha), &dev, Some(name))?;
        match run.diverged {
            Some(step) => println!("{name}: diverged at step {step} ({:.1} s)", run.secs),
            None => println!("{name}: {} ({:.1} s)", final_line(&run), run.secs),
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
    println!(
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

fn run_lab(a: &LabArgs) -> Result<()> {
    set_threads(a.run.threads);
    let (text, dev) = (a.run.text()?, device(a.run.device)?);
    let cfg = lab::Lab {
        settings: a.run.settings(0.0),
        alphas: a.alphas.clone(),
        knockout: a.knockout,
        knockout_bias: a.knockout_bias,
        baseline: !a.no_baseline,
    };
    let runs = lab::lab(&text, &cfg, &dev, true)?;
    create_out(&a.out)?;
    let named: Vec<(String, &train::Run)> = (runs.iter())
        .flat_map(|r| {
            let kind = if r.knockout.knocked.is_empty() {
                ""
            } else {
                " knockout"
            };
            let k = Some((format!("alpha {}{kind}", r.alpha), &r.knockout));
            let b = (r.baseline.as_ref()).map(|b| (format!("alpha {} baseline", r.alpha), b));
            k.into_iter().chain(b)
        })
        .collect();
    write(&a.out.join("lab.csv"), &points_csv(&named))?;
    let svg = a.out.join("lab.svg");
    plot::plot_lab(&svg, &runs)?;
    println!("{}", lab::table(&runs));
    for r in &runs {
        println!("{}", lab::summary_line(r));
    }
    println!(
        "wrote {} and {}",
        a.out.join("lab.csv").display(),
        svg.display()
    );
    Ok(())
}

/// Keeps freed buffers in the heap instead of returning them to the kernel: training frees and
/// reallocates the same multi-megabyte tensors every step, and with glibc's defaults a third of
/// the CPU time went to page faults and `brk`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only tunes glibc's allocator; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = parse_cli(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let result = match &cli.cmd {
        Cmd::Train(a) => run_train(a),
        Cmd::Sample(a) => run_sample(a),
        Cmd::Compare(a) => run_compare(a),
        Cmd::Lab(a) => run_lab(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
