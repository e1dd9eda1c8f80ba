//! Character-level RNN on `LeakyRelu`: trains on a text (by default the bundled Tiny
//! Shakespeare), samples from the best-validation checkpoint, compares ReLU (`--alpha 0`, the
//! same op) with LeakyReLU, and shows dying ReLU in a lab that knocks out hidden units. See
//! `examples/char_rnn/README.md`.
//!
//! ```text
//! cargo run --release --example char_rnn -- train
//! cargo run --release --example char_rnn -- train --resume    # continue an interrupted run
//! cargo run --release --example char_rnn -- sample --prime "ROMEO:" --len 500
//! cargo run --release --example char_rnn -- compare
//! cargo run --release --example char_rnn -- lab
//! cargo run --release --example char_rnn -- sweep --alphas 0,0.01,0.3,learn --seeds 1,2,3
//! ```
//!
//! Files: `cli.rs` the flags, `commands.rs` what each command does, `train.rs` the training
//! loop, `model.rs` the network and its checkpoint, `data.rs` the text and batches, `lab.rs`
//! the dying-ReLU lab, `measures.rs` the gradient-norm and revival measures, `report.rs` the
//! `final:` line, CSV and the sweep's table, `plot.rs` the SVGs, `sample.rs` text generation,
//! `optim.rs` AdamW with a state that can be saved, `resume.rs` the resume state of `train`,
//! `alloc.rs` allocator and thread tuning; `tests.rs`, `slope_tests.rs` and `resume_tests.rs`
//! the tests.

/// `println!` for the program's output on stdout, which ends the program quietly (exit status 0)
/// once stdout is closed, e.g. by `char_rnn train | head`, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("cannot write to stdout: {e}");
        }
    }};
}

mod alloc;
mod cli;
mod commands;
mod data;
mod lab;
mod measures;
mod model;
mod optim;
mod plot;
mod report;
mod resume;
#[cfg(test)]
mod resume_tests;
mod sample;
#[cfg(test)]
mod slope_tests;
#[cfg(test)]
mod tests;
mod train;

use cli::{parse_cli, Cmd};
use std::process::ExitCode;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let cli = parse_cli(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let result = match &cli.cmd {
        Cmd::Train(a) => commands::run_train(a),
        Cmd::Sample(a) => commands::run_sample(a),
        Cmd::Compare(a) => commands::run_compare(a),
        Cmd::Lab(a) => commands::run_lab(a),
        Cmd::Sweep(a) => commands::run_sweep(a),
        Cmd::Table(a) => commands::run_table(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
