//! Tests of the example (run by `cargo test`: the example target has `test = true`).

use super::*;
use crate::data::{read_text, Corpus, Vocab};
use crate::model::CharRnn;
use crate::sample::{sample, SampleOpts};
use crate::train::{train, Settings};
use candle_core::Tensor;

const TEXT: &str =
    "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. ";

fn text() -> String {
    TEXT.repeat(40)
}

fn settings(steps: usize) -> Settings {
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
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("char_rnn_test_{}_{name}", std::process::id()))
}

fn opts(prime: &str) -> SampleOpts {
    SampleOpts {
        temperature: 1.0,
        ..SampleOpts::new(prime, 20, 3)
    }
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
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
    assert_eq!(run.history.len(), 3);
    assert!(
        last.train_loss < 0.3 * uniform,
        "train loss {} vs uniform {uniform}",
        last.train_loss
    );
    assert!(
        last.val_loss < 0.3 * uniform,
        "val loss {} vs uniform {uniform}",
        last.val_loss
    );
    assert!((0.0..=100.0).contains(&last.dead_pct));
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
