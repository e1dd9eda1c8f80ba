//! The command line: subcommands, their flags (the ones several commands share declared once,
//! in flattened structs), `lab --preset`, and the device a flag names.

use crate::lab::SlopeSpec;
use crate::model::SlopeKind;
use crate::train;
#[cfg(any(feature = "cuda", feature = "metal"))]
use anyhow::Context;
use anyhow::{bail, Result};
use candle_core::Device;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// Character-level RNN with LeakyReLU hidden units (candle).
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Train on a text, save a checkpoint, print a sample.
    Train(TrainCmd),
    /// Generate text from a checkpoint.
    Sample(SampleArgs),
    /// Train twice from the same seed, ReLU (alpha 0) vs LeakyReLU, and plot both runs.
    Compare(TrainArgs),
    /// Dying ReLU: knock out hidden units at the start and watch which slopes revive them.
    Lab(LabArgs),
    /// The lab over several seeds: per-seed lines, a table over the seeds, CSV and a plot.
    Sweep(SweepArgs),
    /// The sweep table of sweep.csv files (their rows together, e.g. a re-run's with the rest).
    Table(TableArgs),
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

/// The seed and the device, shared by every command.
#[derive(Args, Debug, Clone)]
pub struct SeedDevice {
    /// Seed: of the weights, the knocked-out units and the dropout masks in training, of the
    /// draws in sampling (and of the sample `train` prints at the end)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where tensors live
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// Model, data and optimiser settings shared by `train`, `compare` and `lab`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// UTF-8 text to train on [default: the bundled data/tinyshakespeare.txt]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Optimiser steps
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    #[command(flatten)]
    pub at: SeedDevice,
    /// Hidden units
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Embedding width
    #[arg(long, default_value_t = 32)]
    pub embed: usize,
    /// Characters per sequence (truncated BPTT length)
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// Sequences per batch
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (AdamW, warm-up then cosine decay to a tenth)
    #[arg(long, default_value_t = 2e-2)]
    pub lr: f64,
    /// AdamW weight decay (decoupled: each step shrinks the weights by lr * this)
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Dropout on the recurrent output before the read-out, in training (0: none)
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Warm-up steps
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Global gradient-norm clip
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Initial recurrent matrix: this times the identity (IRNN)
    #[arg(long, default_value_t = 0.9)]
    pub irnn_scale: f64,
    /// Validate every N steps (and at step 0 and the end)
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Share of the text (its end) held out for validation
    #[arg(long, default_value_t = 0.1)]
    pub val_frac: f64,
    /// CPU threads for candle (0: candle's default, all cores)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Flags of `train` and `compare`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Output directory: checkpoint (train) or plot and CSV (compare)
    #[arg(long, default_value = "runs/char_rnn")]
    pub out: PathBuf,
    /// LeakyReLU slope of the hidden units (0 is ReLU), or the initial slope of learned ones;
    /// compare's leaky run [default: 0.01, or 0.25 with --prelu / --prelu-shared]
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Learn one slope per hidden unit (a PReLU layer), starting at --alpha
    #[arg(long, conflicts_with = "prelu_shared")]
    pub prelu: bool,
    /// Learn one slope for the whole hidden layer (a PReLU layer), starting at --alpha
    #[arg(long)]
    pub prelu_shared: bool,
    /// Stop after this many evaluations without a better validation loss (0: never); the
    /// checkpoint is always the best-validation one
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Characters of the sample printed after training
    #[arg(long, default_value_t = 400)]
    pub sample_len: usize,
}

/// Flags of `train`: those it shares with `compare`, and resuming.
#[derive(Args, Debug, Clone)]
pub struct TrainCmd {
    #[command(flatten)]
    pub args: TrainArgs,
    /// Continue the run whose resume state is in --out (saved at every evaluation) to --steps;
    /// the other flags must be the ones it was started with
    #[arg(long)]
    pub resume: bool,
    /// Stop once this many steps are done, saving the resume state (continue with --resume)
    #[arg(long)]
    pub stop_after: Option<usize>,
}

/// Settings that change several defaults of `lab` at once.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Preset {
    /// Natural death: --lr 0.1 --irnn-scale 0.5 --knockout 0 (unless given explicitly)
    HighLr,
}

/// Flags of `lab`.
#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Output directory for lab.csv and lab.svg
    #[arg(long, default_value = "runs/lab")]
    pub out: PathBuf,
    /// Slopes to run, comma-separated: numbers (0 is ReLU), `learn` (a learned slope per unit)
    /// and `learn-shared` (one learned slope for the layer)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.01,0.2",
        allow_negative_numbers = true
    )]
    pub alphas: Vec<SlopeSpec>,
    /// Initial slope of `learn` and `learn-shared` runs (PyTorch's PReLU default)
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    pub learn_init: f64,
    /// Steps between probes: the slopes read and the knocked-out units checked on the first 2
    /// validation batches (0: never)
    #[arg(long, default_value_t = 5)]
    pub probe_every: usize,
    /// Share of the hidden units knocked out (their bias starts at --knockout-bias)
    #[arg(long, default_value_t = 0.25)]
    pub knockout: f64,
    /// Initial bias of the knocked-out units
    #[arg(long, default_value_t = -4.0, allow_negative_numbers = true)]
    pub knockout_bias: f64,
    /// Skip the run without knockout for each slope
    #[arg(long)]
    pub no_baseline: bool,
    /// Named settings for several flags at once
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
}

/// Flags of `sweep`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// Seeds, comma-separated: one lab each (they replace --seed)
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
}

/// Arguments of `table`.
#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// sweep.csv files written by `sweep`
    #[arg(required = true)]
    pub csv: Vec<PathBuf>,
}

/// Flags of `sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint file, or the directory `train --out` wrote it to
    #[arg(long, default_value = "runs/char_rnn")]
    pub checkpoint: PathBuf,
    /// Text to start from
    #[arg(long, default_value = "\n")]
    pub prime: String,
    /// Characters to generate
    #[arg(long, default_value_t = 500)]
    pub len: usize,
    /// Softmax temperature
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample only among the K most likely characters
    #[arg(long)]
    pub top_k: Option<usize>,
    #[command(flatten)]
    pub at: SeedDevice,
}

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
    /// The training settings these flags give, with slope `alpha`, no knockout and no early
    /// stopping.
    pub fn settings(&self, alpha: f64) -> train::Settings {
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
            seed: self.at.seed,
            knockout: 0.0,
            knockout_bias: 0.0,
            patience: 0,
            dropout: self.dropout,
            slopes: SlopeKind::Fixed,
            probe_every: 0,
        }
    }

    /// The text `--data` names, or the bundled corpus.
    pub fn text(&self) -> Result<String> {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare.txt");
        crate::data::read_text(self.data.as_deref().unwrap_or(&bundled))
    }
}

impl TrainArgs {
    /// The slope (or initial slope) and whether it is learned: `--alpha`, by default 0.01 for
    /// a fixed slope and 0.25 for learned ones.
    pub fn slope(&self) -> (f64, SlopeKind) {
        let kind = match (self.prelu, self.prelu_shared) {
            (true, _) => SlopeKind::PerUnit,
            (_, true) => SlopeKind::Shared,
            _ => SlopeKind::Fixed,
        };
        let default = if kind.learned() { 0.25 } else { 0.01 };
        (self.alpha.unwrap_or(default), kind)
    }

    /// [`RunArgs::settings`] with this command's early stopping and slope `alpha` of `kind`.
    pub fn settings(&self, alpha: f64, slopes: SlopeKind) -> train::Settings {
        train::Settings {
            patience: self.patience,
            slopes,
            ..self.run.settings(alpha)
        }
    }
}

impl LabArgs {
    /// The lab these flags describe.
    pub fn lab(&self) -> crate::lab::Lab {
        crate::lab::Lab {
            settings: train::Settings {
                probe_every: self.probe_every,
                ..self.run.settings(0.0)
            },
            alphas: self.alphas.clone(),
            learn_init: self.learn_init,
            knockout: self.knockout,
            knockout_bias: self.knockout_bias,
            baseline: !self.no_baseline,
        }
    }
}

/// Parses the command line, applying `lab --preset` (and `sweep --preset`) to the flags not
/// given explicitly.
pub fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let lab = match (&mut cli.cmd, matches.subcommand()) {
        (Cmd::Lab(a), Some(("lab", m))) => Some((a, m)),
        (Cmd::Sweep(a), Some(("sweep", m))) => Some((&mut a.lab, m)),
        _ => None,
    };
    if let Some((a, m)) = lab {
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
