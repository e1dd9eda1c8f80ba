//! Tests of the example (run by `cargo test`: the example target has `test = true`).

use crate::cli::{device, parse_cli, Cli, Cmd, DeviceArg, LabArgs};
use crate::commands::run_lab;
use crate::data::{read_text, Corpus, Vocab};
use crate::lab::SlopeSpec;
use crate::model::{CharRnn, SlopeKind};
use crate::sample::{sample, SampleOpts};
use crate::train::{train, Settings};
use crate::{data, lab, model, train};
use anyhow::Result;
use candle_core::Device;
use candle_core::Tensor;
use clap::Parser;
use std::path::{Path, PathBuf};

const TEXT: &str =
    "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. ";

/// A small repeated pangram text.
pub fn text() -> String {
    TEXT.repeat(40)
}

/// Small, fast training settings (fixed slope 0.01, no knockout, no probes).
pub fn settings(steps: usize) -> Settings {
    Settings {
        steps,
        batch: 8,
        seq_len: 16,
        embed: 16,
        hidden: 64,
        alpha: 0.01,
        lr: 1e-2,
        weight_decay: 0.01,
        warmup: 5,
        clip: 1.0,
        irnn_scale: 0.9,
        eval_every: 20,
        val_frac: 0.1,
        seed: 7,
        knockout: 0.0,
        knockout_bias: 0.0,
        patience: 0,
        dropout: 0.0,
        slopes: SlopeKind::Fixed,
        probe_every: 0,
    }
}

/// A path in the temporary directory, unique to this process.
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("char_rnn_test_{}_{name}", std::process::id()))
}

fn opts(prime: &str) -> SampleOpts {
    SampleOpts {
        temperature: 1.0,
        ..SampleOpts::new(prime, 20, 3)
    }
}

/// The error text of `r`, which must be an error.
pub fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn loss_falls_well_below_uniform_guess() -> Result<()> {
    let text = text();
    let run = train(&text, &settings(60), &Device::Cpu, None)?;
    let uniform = (Vocab::from_text(&text).len() as f64).ln();
    let last = run.last();
    assert_eq!(run.history.len(), 4);
    assert_eq!(run.history[0].step, 0);
    let train_loss = last.train_loss.unwrap();
    assert!(
        train_loss < 0.3 * uniform,
        "train loss {train_loss} vs uniform {uniform}"
    );
    assert!(
        last.val_loss < 0.3 * uniform,
        "val loss {} vs uniform {uniform}",
        last.val_loss
    );
    assert!((0.0..=100.0).contains(&last.inactive_pct));
    Ok(())
}

#[test]
fn relu_and_leaky_runs_differ_only_by_slope() -> Result<()> {
    let (text, mut s) = (text(), settings(3));
    let leaky = train(&text, &s, &Device::Cpu, None)?;
    s.alpha = 0.0;
    let relu = train(&text, &s, &Device::Cpu, None)?;
    assert_eq!(relu.model.cfg.alpha, 0.0);
    assert_ne!(relu.last().val_loss, leaky.last().val_loss);
    Ok(())
}

#[test]
fn checkpoint_round_trip_reproduces_logits_bit_for_bit() -> Result<()> {
    let text = text();
    let run = train(&text, &settings(5), &Device::Cpu, None)?;
    let path = temp_path("roundtrip.safetensors");
    run.model.save(&run.vocab, &path)?;
    let (loaded, vocab) = CharRnn::load(&path, &Device::Cpu)?;
    std::fs::remove_file(&path)?;
    assert_eq!(vocab, run.vocab);
    assert_eq!(loaded.cfg, run.model.cfg);
    let ids = vocab.encode("the lazy dog")?;
    let x = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu)?;
    let bits = |m: &CharRnn| -> Result<Vec<u32>> {
        let out = m.detached().forward(&x, &m.zero_state(1)?, false)?;
        let v = out.logits.flatten_all()?.to_vec1::<f32>()?;
        Ok(v.iter().map(|f| f.to_bits()).collect())
    };
    assert_eq!(bits(&loaded)?, bits(&run.model)?);
    assert_eq!(
        sample(&loaded, &vocab, &opts("the"))?,
        sample(&run.model, &run.vocab, &opts("the"))?
    );
    Ok(())
}

#[test]
fn sampling_with_top_k_one_is_greedy_and_seeded() -> Result<()> {
    let text = text();
    let run = train(&text, &settings(40), &Device::Cpu, None)?;
    let greedy = |seed| {
        sample(
            &run.model,
            &run.vocab,
            &SampleOpts {
                top_k: Some(1),
                seed,
                ..opts("the ")
            },
        )
    };
    let s = greedy(1)?;
    assert_eq!(s, greedy(2)?);
    assert_eq!(s.chars().count(), 4 + 20);
    Ok(())
}

#[test]
fn missing_and_empty_data_files_are_errors() -> Result<()> {
    let missing = temp_path("does_not_exist.txt");
    assert!(err_text(read_text(&missing)).contains("cannot read data file"));
    let empty = temp_path("empty.txt");
    std::fs::write(&empty, "")?;
    let e = err_text(read_text(&empty));
    std::fs::remove_file(&empty)?;
    assert!(e.contains("is empty"), "{e}");
    Ok(())
}

#[test]
fn data_shorter_than_one_sequence_is_an_error() {
    let e = err_text(train(
        "to be or not to be",
        &settings(1),
        &Device::Cpu,
        None,
    ));
    assert!(e.contains("data too short"), "{e}");
    assert!(err_text(Corpus::new(&"x".repeat(100), 0.1, 16).map(|_| ())).contains("too short"));
}

#[test]
fn checkpoint_from_another_vocabulary_is_an_error() -> Result<()> {
    let text = text();
    let run = train(&text, &settings(1), &Device::Cpu, None)?;
    let e = err_text(sample(&run.model, &run.vocab, &opts("ROMEO")));
    assert!(e.contains("not in the checkpoint's vocabulary"), "{e}");
    let path = temp_path("other_vocab.safetensors");
    run.model.save(&Vocab::from_text("abc"), &path)?;
    let e = err_text(CharRnn::load(&path, &Device::Cpu));
    std::fs::remove_file(&path)?;
    assert!(e.contains("from different models"), "{e}");
    Ok(())
}

#[test]
fn bad_sampling_options_are_errors() -> Result<()> {
    let text = text();
    let run = train(&text, &settings(1), &Device::Cpu, None)?;
    let bad = [
        SampleOpts {
            temperature: 0.0,
            ..opts("a")
        },
        SampleOpts {
            temperature: f64::NAN,
            ..opts("a")
        },
        SampleOpts {
            top_k: Some(0),
            ..opts("a")
        },
        opts(""),
    ];
    for o in bad {
        assert!(sample(&run.model, &run.vocab, &o).is_err(), "{o:?}");
    }
    Ok(())
}

#[test]
fn unknown_device_and_missing_features_are_errors() {
    let e = Cli::try_parse_from(["char_rnn", "train", "--device", "tpu"]).unwrap_err();
    assert!(e.to_string().contains("tpu"), "{e}");
    assert!(device(DeviceArg::Cpu).is_ok());
    #[cfg(not(feature = "cuda"))]
    assert!(err_text(device(DeviceArg::Cuda)).contains("`cuda` feature"));
    #[cfg(not(feature = "metal"))]
    assert!(err_text(device(DeviceArg::Metal)).contains("`metal` feature"));
}

#[test]
fn learning_rate_warms_up_then_decays_to_a_tenth() {
    let s = Settings {
        steps: 100,
        warmup: 10,
        lr: 1.0,
        ..settings(100)
    };
    let lr = |step| train::learning_rate(&s, step);
    assert_eq!(lr(0), 0.1);
    assert_eq!(lr(9), 1.0);
    assert!(lr(50) < 1.0 && lr(50) > 0.1);
    assert!((lr(100) - 0.1).abs() < 1e-12);
}

/// The first `n` bytes of the bundled corpus (ASCII), a small text that overfits quickly.
fn small_text(n: usize) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare.txt");
    Ok(read_text(&path)?[..n].to_string())
}

#[test]
fn inactive_units_are_measured_on_the_whole_validation_set() -> Result<()> {
    // Two characters, three units, no recurrence: unit 0 fires on 'b' only, unit 1 on both,
    // unit 2 on neither. 'b' first appears in the third batch of the pass.
    let text = "aaaaaaaaabaaaaaaa";
    let vocab = Vocab::from_text(text);
    let cfg = model::Config {
        vocab: 2,
        embed: 2,
        hidden: 3,
        alpha: 0.0,
        slopes: SlopeKind::Fixed,
    };
    let (model, vars) = CharRnn::init(cfg, 0.0, 1, &Device::Cpu)?;
    let t = |v: &[f32], shape: (usize, usize)| Tensor::from_slice(v, shape, &Device::Cpu);
    vars.emb.set(&t(&[1.0, 0.0, 0.0, 1.0], (2, 2))?)?;
    vars.w_x
        .set(&t(&[0.0, 1.0, 1.0, 1.0, -1.0, -1.0], (3, 2))?)?;
    let ids = vocab.encode(text)?;
    let whole = data::Streams::new(&ids, 1, 4)?;
    assert_eq!(whole.batches_per_pass(), 4);
    let e = train::evaluate(&model, &whole)?;
    assert_eq!(e.active, [true, true, false]);
    assert_eq!(e.inactive_pct().to_bits(), (100.0f64 / 3.0).to_bits());
    // The first batch alone would call unit 0 inactive.
    let first = train::evaluate(&model, &data::Streams::new(&ids[..5], 1, 4)?)?;
    assert_eq!(first.active, [false, true, false]);
    Ok(())
}

#[test]
fn died_and_revived_count_status_changes() {
    let (before, now) = (
        [true, true, false, false, true],
        [true, false, true, false, false],
    );
    assert_eq!(train::status_changes(&before, &now), (2, 1));
    assert_eq!(train::status_changes(&now, &before), (1, 2));
}

#[test]
fn relu_knockout_units_get_no_gradient_and_never_revive() -> Result<()> {
    let text = text();
    let s = Settings {
        alpha: 0.0,
        knockout: 0.25,
        knockout_bias: -10.0,
        ..settings(40)
    };
    let relu = train(&text, &s, &Device::Cpu, None)?;
    assert_eq!(relu.knocked.len(), 16);
    assert_eq!(relu.history.len(), 3);
    let first = relu.history[0];
    assert!(first.train_loss.is_none() && first.zero_grad_pct.is_none());
    for p in &relu.history {
        assert_eq!(p.knocked_alive, 0, "{p:?}");
        assert!(p.inactive_pct >= 25.0, "{p:?}");
    }
    for p in &relu.history[1..] {
        assert!(p.zero_grad_pct.unwrap() >= 25.0, "{p:?}");
    }
    // The same knockout under LeakyReLU: every unit gets gradient on every interval.
    let leaky = train(&text, &Settings { alpha: 0.01, ..s }, &Device::Cpu, None)?;
    assert_eq!(leaky.knocked, relu.knocked);
    for p in &leaky.history[1..] {
        assert_eq!(
            p.zero_grad_pct.unwrap().to_bits(),
            0.0f64.to_bits(),
            "{p:?}"
        );
    }
    Ok(())
}

#[test]
fn knocked_units_depend_on_the_seed_and_share_only() {
    let s = Settings {
        knockout: 0.25,
        ..settings(1)
    };
    let units = train::knocked_units(&s);
    assert_eq!(units.len(), 16);
    assert!(units.windows(2).all(|w| w[0] < w[1]) && units[15] < 64);
    assert_eq!(
        units,
        train::knocked_units(&Settings {
            alpha: 0.2,
            ..s.clone()
        })
    );
    assert_ne!(units, train::knocked_units(&Settings { seed: 8, ..s }));
    assert!(train::knocked_units(&settings(1)).is_empty());
}

#[test]
fn checkpoint_is_the_best_validation_one_on_a_small_text() -> Result<()> {
    let text = small_text(4000)?;
    let s = Settings {
        hidden: 128,
        seq_len: 32,
        lr: 2e-2,
        val_frac: 0.2,
        ..settings(200)
    };
    let run = train(&text, &s, &Device::Cpu, None)?;
    let (best, last) = (run.best(), run.last());
    assert!(
        best.step > 0 && best.step < last.step && best.val_loss < last.val_loss,
        "no overfitting to test on: best {best:?}, last {last:?}"
    );
    let min = (run.history[1..].iter()).min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    assert_eq!(min.unwrap().step, best.step);
    // The returned weights are the best evaluation's, through a checkpoint file too.
    let path = temp_path("best.safetensors");
    run.model.save(&run.vocab, &path)?;
    let (loaded, _) = CharRnn::load(&path, &Device::Cpu)?;
    std::fs::remove_file(&path)?;
    let corpus = Corpus::new(&text, s.val_frac, s.seq_len)?;
    let val = data::Streams::new(&corpus.val, s.batch, s.seq_len)?;
    for m in [&run.model, &loaded] {
        assert_eq!(
            train::evaluate(m, &val)?.loss.to_bits(),
            best.val_loss.to_bits()
        );
    }
    let rising = run
        .history
        .windows(2)
        .filter(|w| train::overfitting(&w[0], &w[1]));
    assert!(rising.count() > 0, "no overfitting warning");
    // Early stopping: the same run up to `patience` evaluations past the best one.
    let stopped = train(&text, &Settings { patience: 2, ..s }, &Device::Cpu, None)?;
    assert!(stopped.stopped_early);
    assert_eq!(stopped.best().step, best.step);
    assert_eq!(stopped.last().step, best.step + 2 * s.eval_every);
    assert_eq!(stopped.best().val_loss.to_bits(), best.val_loss.to_bits());
    Ok(())
}

#[test]
fn dropout_is_seeded_and_changes_training() -> Result<()> {
    let text = text();
    let s = Settings {
        dropout: 0.5,
        ..settings(3)
    };
    let bits = |r: &train::Run| r.last().val_loss.to_bits();
    let (a, b) = (
        train(&text, &s, &Device::Cpu, None)?,
        train(&text, &s, &Device::Cpu, None)?,
    );
    assert_eq!(bits(&a), bits(&b));
    let plain = train(&text, &settings(3), &Device::Cpu, None)?;
    assert_ne!(bits(&a), bits(&plain));
    Ok(())
}

#[test]
fn bad_lab_and_regularisation_settings_are_errors() {
    let bad = [
        (
            "--knockout",
            Settings {
                knockout: 1.5,
                ..settings(1)
            },
        ),
        (
            "--knockout-bias",
            Settings {
                knockout_bias: f64::NAN,
                ..settings(1)
            },
        ),
        (
            "--dropout",
            Settings {
                dropout: 1.0,
                ..settings(1)
            },
        ),
        (
            "--weight-decay",
            Settings {
                weight_decay: -1.0,
                ..settings(1)
            },
        ),
    ];
    for (flag, s) in bad {
        let e = err_text(train(&text(), &s, &Device::Cpu, None));
        assert!(e.contains(flag), "{e}");
    }
    let cfg = lab::Lab {
        settings: settings(1),
        alphas: vec![],
        learn_init: 0.25,
        knockout: 0.25,
        knockout_bias: -4.0,
        baseline: true,
    };
    assert!(err_text(lab::lab(&text(), &cfg, &Device::Cpu, false)).contains("--alphas"));
}

#[test]
fn lab_preset_sets_only_the_flags_not_given() -> Result<()> {
    let lab_args = |args: &[&str]| -> Result<LabArgs> {
        let argv = ["char_rnn", "lab"].iter().chain(args).copied();
        match parse_cli(argv)?.cmd {
            Cmd::Lab(a) => Ok(a),
            c => panic!("{c:?}"),
        }
    };
    let plain = lab_args(&[])?;
    assert_eq!(
        (plain.run.lr, plain.run.irnn_scale, plain.knockout),
        (2e-2, 0.9, 0.25)
    );
    let fixed = |a: &[f64]| a.iter().map(|&a| SlopeSpec::Fixed(a)).collect::<Vec<_>>();
    assert_eq!(plain.alphas, fixed(&[0.0, 0.01, 0.2]));
    let high = lab_args(&["--preset", "high-lr"])?;
    assert_eq!(
        (high.run.lr, high.run.irnn_scale, high.knockout),
        (0.1, 0.5, 0.0)
    );
    let mixed = lab_args(&["--preset", "high-lr", "--lr", "0.05", "--alphas", "0,0.3"])?;
    assert_eq!((mixed.run.lr, mixed.run.irnn_scale), (0.05, 0.5));
    assert_eq!(mixed.alphas, fixed(&[0.0, 0.3]));
    Ok(())
}

#[test]
fn lab_command_writes_lines_csv_and_plot() -> Result<()> {
    let (data, out) = (temp_path("lab.txt"), temp_path("lab_out"));
    std::fs::write(&data, text())?;
    let argv = [
        "char_rnn",
        "lab",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--alphas",
        "0,0.2",
        "--steps",
        "10",
        "--eval-every",
        "5",
        "--hidden",
        "32",
        "--embed",
        "8",
        "--batch",
        "4",
        "--seq-len",
        "16",
    ];
    let Cmd::Lab(a) = parse_cli(argv)?.cmd else {
        panic!("not lab")
    };
    run_lab(&a)?;
    let csv = std::fs::read_to_string(out.join("lab.csv"))?;
    let svg = std::fs::read_to_string(out.join("lab.svg"))?;
    std::fs::remove_dir_all(&out)?;
    std::fs::remove_file(&data)?;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("run,step,train_loss,val_loss,inactive_pct,zero_grad_pct"));
    // 2 slopes x (knockout, baseline) x evaluations at steps 0, 5, 10.
    assert_eq!(lines.len(), 1 + 2 * 2 * 3);
    assert!(lines[1].starts_with("alpha 0 knockout,0,,"), "{}", lines[1]);
    assert!(lines[4].starts_with("alpha 0 baseline,0,,"), "{}", lines[4]);
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|&c| c == "knocked_out").unwrap();
    for l in &lines[1..] {
        let k = if l.contains(" knockout,") { "8" } else { "0" };
        assert_eq!(
            l.split(',').nth(col),
            Some(k),
            "K = 8 of 32 knocked out, none in baselines: {l}"
        );
    }
    assert!(svg.contains("knocked-out units alive"));
    Ok(())
}

#[test]
fn lab_summary_line_has_the_documented_fields() -> Result<()> {
    let cfg = lab::Lab {
        settings: Settings {
            hidden: 32,
            ..settings(4)
        },
        alphas: vec![SlopeSpec::Fixed(0.0)],
        learn_init: 0.25,
        knockout: 0.25,
        knockout_bias: -4.0,
        baseline: false,
    };
    let runs = lab::lab(&text(), &cfg, &Device::Cpu, false)?;
    let line = lab::summary_line(&runs[0]);
    let keys: Vec<&str> = (line.split_whitespace().skip(1))
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert!(
        line.starts_with("lab: alpha=0 knocked_out=8 alive_at_end="),
        "{line}"
    );
    let want = [
        "alpha",
        "knocked_out",
        "alive_at_end",
        "val_loss",
        "baseline_val_loss",
        "inactive_end",
        "grad_norm_median",
        "grad_norm_max",
        "clip_rate",
        "revive_half_step",
        "revive_90_step",
    ];
    assert_eq!(keys, want);
    assert!(
        line.contains(" baseline_val_loss=na ") && line.contains("% grad_norm_median="),
        "{line}"
    );
    Ok(())
}

#[test]
fn lab_reports_a_diverged_run_and_goes_on() -> Result<()> {
    let cfg = lab::Lab {
        settings: Settings {
            lr: 1e4,
            irnn_scale: 1.5,
            warmup: 1,
            ..settings(20)
        },
        alphas: vec![SlopeSpec::Fixed(0.5), SlopeSpec::Fixed(0.01)],
        learn_init: 0.25,
        knockout: 0.0,
        knockout_bias: 0.0,
        baseline: true,
    };
    let runs = lab::lab(&text(), &cfg, &Device::Cpu, false)?;
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|r| r.baseline.is_none()),
        "no baseline without a knockout"
    );
    let diverged = runs[0].knockout.diverged.expect("lr 1e4 diverges");
    assert!(diverged < 20);
    let line = lab::summary_line(&runs[0]);
    assert!(
        line.contains(" val_loss=diverged baseline_val_loss=na inactive_end=na grad_norm_median="),
        "{line}"
    );
    // Nothing knocked out: no revival to time.
    assert!(
        line.ends_with(" revive_half_step=na revive_90_step=na"),
        "{line}"
    );
    Ok(())
}
