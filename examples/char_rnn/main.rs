//! Character-level RNN on `LeakyRelu`: trains on a text (by default the bundled Tiny
//! Shakespeare), samples from the checkpoint, and compares ReLU (`--alpha 0`, the same op) with
//! LeakyReLU on dead hidden units. See `examples/char_rnn/README.md`.
//!
//! ```text
//! cargo run --release --example char_rnn -- train
//! cargo run --release --example char_rnn -- sample --prime "ROMEO:" --len 500
//! cargo run --release --example char_rnn -- compare
//! ```

mod data;
mod model;
mod plot;
mod sample;
#[cfg(test)]
mod tests;
mod train;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
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

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// UTF-8 text to train on [default: the bundled data/tinyshakespeare.txt]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory: checkpoint (train) or plot and CSV (compare)
    #[arg(long, default_value = "runs/char_rnn")]
    out: PathBuf,
    /// Optimiser steps
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Seed of the weights (and of the sample printed at the end)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// LeakyReLU slope of the hidden units (0 is ReLU); compare's leaky run
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    alpha: f64,
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
    /// AdamW weight decay
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Warm-up steps
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Global gradient-norm clip
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Initial recurrent matrix: this times the identity (IRNN)
    #[arg(long, default_value_t = 0.9)]
    irnn_scale: f64,
    /// Validate every N steps
    #[arg(long, default_value_t = 50)]
    eval_every: usize,
    /// Share of the text (its end) held out for validation
    #[arg(long, default_value_t = 0.1)]
    val_frac: f64,
    /// Characters of the sample printed after training
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
    /// CPU threads for candle (0: candle's default, all cores)
    #[arg(long, default_value_t = 1)]
    threads: usize,
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

impl TrainArgs {
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
        }
    }

    fn text(&self) -> Result<String> {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare.txt");
        data::read_text(self.data.as_deref().unwrap_or(&bundled))
    }
}

fn create_out(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))
}

fn final_line(steps: usize, p: &train::Point) -> String {
    format!(
        "final: steps={steps} train_loss={:.4} val_loss={:.4} dead_units={:.1}%",
        p.train_loss, p.val_loss, p.dead_pct
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
    set_threads(a.threads);
    let (text, dev) = (a.text()?, device(a.device)?);
    let run = train::train(&text, &a.settings(a.alpha), &dev, Some("train"))?;
    create_out(&a.out)?;
    let path = a.out.join(CHECKPOINT);
    run.model.save(&run.vocab, &path)?;
    println!(
        "trained {} steps in {:.1} s ({:.0} chars/s); checkpoint {}",
        a.steps,
        run.secs,
        run.chars_per_s,
        path.display()
    );
    let prime = if run.vocab.contains('\n') {
        "\n"
    } else {
        &text[..text.chars().next().map_or(0, char::len_utf8)]
    };
    let opts = sample::SampleOpts::new(prime, a.sample_len, a.seed);
    println!(
        "--- sample ---\n{}\n--------------",
        sample::sample(&run.model, &run.vocab, &opts)?
    );
    println!("{}", final_line(a.steps, &run.last()));
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

fn run_compare(a: &TrainArgs) -> Result<()> {
    if a.alpha == 0.0 {
        bail!("compare: --alpha is the LeakyReLU slope to compare with ReLU; it must not be 0");
    }
    set_threads(a.threads);
    let (text, dev) = (a.text()?, device(a.device)?);
    let names = [
        "relu (alpha 0)".to_string(),
        format!("leaky (alpha {})", a.alpha),
    ];
    let mut runs = Vec::new();
    for (name, alpha) in names.iter().zip([0.0, a.alpha]) {
        let run = train::train(&text, &a.settings(alpha), &dev, Some(name))?;
        println!(
            "{name}: {} ({:.1} s)",
            final_line(a.steps, &run.last()),
            run.secs
        );
        runs.push((name.clone(), run.history));
    }
    create_out(&a.out)?;
    let mut csv = String::from("run,step,train_loss,val_loss,dead_pct\n");
    for (name, h) in &runs {
        for p in h {
            let line = format!(
                "{name},{},{},{},{}\n",
                p.step, p.train_loss, p.val_loss, p.dead_pct
            );
            csv.push_str(&line);
        }
    }
    let csv_path = a.out.join("compare.csv");
    std::fs::write(&csv_path, csv)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let svg = a.out.join("compare.svg");
    let series: Vec<(String, &[train::Point])> = runs
        .iter()
        .map(|(n, h)| (n.clone(), h.as_slice()))
        .collect();
    plot::plot(&svg, &series)?;
    let (relu, leaky) = (
        runs[0].1[runs[0].1.len() - 1],
        runs[1].1[runs[1].1.len() - 1],
    );
    println!(
        "compare: val_loss relu={:.4} leaky={:.4}; dead_units relu={:.1}% leaky={:.1}%; plot {}",
        relu.val_loss,
        leaky.val_loss,
        relu.dead_pct,
        leaky.dead_pct,
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
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Train(a) => run_train(a),
        Cmd::Sample(a) => run_sample(a),
        Cmd::Compare(a) => run_compare(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
