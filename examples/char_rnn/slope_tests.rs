//! Tests of "which slope?": the gradient norm before clipping, the clip rate, the revival steps,
//! the probes, learned slopes (PReLU) and their checkpoints, and the new flags and fields.

use crate::cli::{parse_cli, Cmd};
use crate::commands::run_lab;
use crate::data::{Streams, Vocab};
use crate::lab::{self, SlopeSpec};
use crate::measures::{max, median, revival_steps};
use crate::model::{CharRnn, Config, SlopeKind};
use crate::report::final_line;
use crate::tests::{err_text, settings, temp_path, text};
use crate::train::{self, clip_grads, train, Settings};
use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;

fn bits(t: &Tensor) -> Result<Vec<u32>> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().map(|f| f.to_bits()).collect())
}

fn learned(kind: SlopeKind, steps: usize) -> Settings {
    Settings {
        alpha: 0.25,
        slopes: kind,
        ..settings(steps)
    }
}

#[test]
fn grad_norm_is_taken_before_clipping_and_clipping_scales_to_the_bound() -> Result<()> {
    // loss = <a, (3, 4)> + <b, (12)>: the gradients are (3, 4) and (12), norm 13 exactly.
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev)?)?;
    let b = Var::from_tensor(&Tensor::new(&[5f32], &dev)?)?;
    let loss = |a: &Var, b: &Var| -> Result<Tensor> {
        let la = (a.as_tensor() * Tensor::new(&[3f32, 4.0], &dev)?)?.sum_all()?;
        let lb = (b.as_tensor() * Tensor::new(&[12f32], &dev)?)?.sum_all()?;
        Ok((la + lb)?)
    };
    let vars = [a.clone(), b.clone()];
    let mut grads = loss(&a, &b)?.backward()?;
    let norm = clip_grads(&mut grads, &vars, 100.0)?;
    assert_eq!(norm.to_bits(), 13f64.to_bits());
    assert_eq!(
        bits(grads.get(&a).unwrap())?,
        bits(&Tensor::new(&[3f32, 4.0], &dev)?)?
    );
    let mut grads = loss(&a, &b)?.backward()?;
    let norm = clip_grads(&mut grads, &vars, 1.0)?;
    assert_eq!(norm.to_bits(), 13f64.to_bits(), "the norm before clipping");
    let mut sq = 0.0;
    for v in &vars {
        let g = grads.get(v).unwrap().to_vec1::<f32>()?;
        sq += g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
    }
    assert!((sq.sqrt() - 1.0).abs() < 1e-6, "clipped norm {}", sq.sqrt());
    Ok(())
}

#[test]
fn first_step_grad_norm_is_the_norm_of_the_models_first_gradient() -> Result<()> {
    let (text, s) = (text(), settings(1));
    let run = train(&text, &s, &Device::Cpu, None)?;
    assert_eq!(run.grad_norms.len(), 1);
    // The same gradient computed here: fresh weights from the seed, the first training batch.
    let corpus = crate::data::Corpus::new(&text, s.val_frac, s.seq_len)?;
    let mut stream = Streams::new(&corpus.train, s.batch, s.seq_len)?;
    let cfg = Config {
        vocab: corpus.vocab.len(),
        embed: s.embed,
        hidden: s.hidden,
        alpha: s.alpha,
        slopes: SlopeKind::Fixed,
    };
    let (model, vars) = CharRnn::init(cfg, s.irnn_scale, s.seed, &Device::Cpu)?;
    let b = stream.next_batch();
    let x = Tensor::from_slice(&b.x, (b.rows, s.seq_len), &Device::Cpu)?;
    let y = Tensor::from_slice(&b.y, (b.rows, s.seq_len), &Device::Cpu)?;
    let out = model.forward(&x, &model.zero_state(b.rows)?, false)?;
    let grads = out.backward(&crate::model::loss(&out.logits, &y)?)?;
    let mut sq = 0.0f64;
    for v in vars.all() {
        let g = grads.get(&v).unwrap().flatten_all()?.to_vec1::<f32>()?;
        sq += g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
    }
    let (want, got) = (sq.sqrt(), run.grad_norms[0]);
    assert!(
        want > 0.0 && ((got - want) / want).abs() < 1e-5,
        "{got} vs {want}"
    );
    Ok(())
}

#[test]
fn clip_rate_is_one_when_clipping_must_fire_and_zero_when_it_must_not() -> Result<()> {
    let text = text();
    let never = train(
        &text,
        &Settings {
            clip: 1e30,
            ..settings(10)
        },
        &Device::Cpu,
        None,
    )?;
    let always = train(
        &text,
        &Settings {
            clip: 1e-30,
            ..settings(10)
        },
        &Device::Cpu,
        None,
    )?;
    for (run, rate) in [(&never, 0.0), (&always, 1.0)] {
        assert_eq!(run.grad_norms.len(), 10);
        assert!(run.grad_norms.iter().all(|n| n.is_finite() && *n > 0.0));
        assert_eq!(run.clip_rate().to_bits(), f64::to_bits(rate));
    }
    assert_eq!(never.clipped, 0);
    assert_eq!(always.clipped, 10);
    // Before clipping, the first step sees the same gradient whatever the bound.
    assert_eq!(
        never.grad_norms[0].to_bits(),
        always.grad_norms[0].to_bits()
    );
    Ok(())
}

#[test]
fn revival_steps_on_synthetic_alive_counts() {
    let series = [(0, 0), (5, 3), (10, 5), (15, 9), (20, 10)];
    assert_eq!(revival_steps(&series, 10), (Some(10), Some(15)));
    // Odd K = 7: half is 4 units (3.5 rounded up), nine tenths 7 (6.3 rounded up).
    let series = [(0, 0), (5, 3), (10, 4), (15, 6), (20, 7)];
    assert_eq!(revival_steps(&series, 7), (Some(10), Some(20)));
    // The first step that reaches the share counts, even if units die again later.
    let series = [(0, 1), (5, 9), (10, 2)];
    assert_eq!(revival_steps(&series, 10), (Some(5), Some(5)));
    assert_eq!(revival_steps(&[(0, 0), (5, 4)], 10), (None, None));
    assert_eq!(revival_steps(&[(0, 0), (5, 5)], 10), (Some(5), None));
    assert_eq!(
        revival_steps(&[(0, 0)], 0),
        (None, None),
        "nothing knocked out"
    );
    assert_eq!(revival_steps(&[], 10), (None, None));
}

#[test]
fn median_and_max_of_gradient_norms() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    assert!(median(&[]).is_nan());
    assert_eq!(max(&[1.0, 7.0, 3.0]), 7.0);
    assert!(max(&[1.0, f64::NAN, 3.0]).is_nan());
    assert_eq!(max(&[1.0, f64::INFINITY]), f64::INFINITY);
}

#[test]
fn probes_run_every_n_steps_and_see_a_subset_of_the_whole_validation_set() -> Result<()> {
    let text = text();
    let s = Settings {
        alpha: 0.01,
        knockout: 0.25,
        knockout_bias: -2.0,
        probe_every: 5,
        eval_every: 10,
        ..settings(30)
    };
    let run = train(&text, &s, &Device::Cpu, None)?;
    let steps: Vec<usize> = run.probes.iter().map(|p| p.step).collect();
    assert_eq!(steps, [0, 5, 10, 15, 20, 25, 30]);
    // The probe reads the first batches of the same pass from the same zero state: a unit
    // active there is active on the whole set.
    for p in &run.history {
        let probe = run.probes.iter().find(|q| q.step == p.step).unwrap();
        assert!(
            probe.knocked_alive.unwrap() <= p.knocked_alive,
            "{probe:?} {p:?}"
        );
    }
    // Without a knockout the probes only read the slopes.
    let plain = train(&text, &Settings { knockout: 0.0, ..s }, &Device::Cpu, None)?;
    assert!(plain.probes.iter().all(|p| p.knocked_alive.is_none()));
    assert_eq!(plain.revival(), (None, None));
    // Probes read; they do not change the training.
    let unprobed = train(
        &text,
        &Settings {
            probe_every: 0,
            ..s
        },
        &Device::Cpu,
        None,
    )?;
    assert!(unprobed.probes.is_empty());
    assert_eq!(
        unprobed.last().val_loss.to_bits(),
        run.last().val_loss.to_bits()
    );
    Ok(())
}

#[test]
fn relu_knockout_never_revives_on_the_probes() -> Result<()> {
    let s = Settings {
        alpha: 0.0,
        knockout: 0.25,
        knockout_bias: -10.0,
        probe_every: 5,
        ..settings(20)
    };
    let run = train(&text(), &s, &Device::Cpu, None)?;
    assert!(run.probes.iter().all(|p| p.knocked_alive == Some(0)));
    assert_eq!(run.revival(), (None, None));
    Ok(())
}

#[test]
fn learned_slopes_start_at_alpha_one_per_unit_or_one_shared() -> Result<()> {
    let cfg = |slopes| Config {
        vocab: 5,
        embed: 4,
        hidden: 6,
        alpha: 0.3,
        slopes,
    };
    for (kind, n) in [(SlopeKind::PerUnit, 6), (SlopeKind::Shared, 1)] {
        let (model, vars) = CharRnn::init(cfg(kind), 0.9, 1, &Device::Cpu)?;
        let slope = vars.slope.as_ref().unwrap();
        assert_eq!(slope.dims(), [n]);
        assert_eq!(bits(slope.as_tensor())?, vec![0.3f32.to_bits(); n]);
        assert_eq!(bits(model.slopes().unwrap())?, vec![0.3f32.to_bits(); n]);
        assert_eq!(vars.all().len(), 7);
    }
    let (fixed, vars) = CharRnn::init(cfg(SlopeKind::Fixed), 0.9, 1, &Device::Cpu)?;
    assert!(vars.slope.is_none() && fixed.slopes().is_none());
    assert_eq!(vars.all().len(), 6);
    let st = fixed.slope_stats()?;
    assert_eq!(
        (st.mean, st.min, st.max),
        (0.3f32 as f64, 0.3f32 as f64, 0.3f32 as f64)
    );
    Ok(())
}

#[test]
fn each_hidden_unit_gets_its_own_slope() -> Result<()> {
    // One step from a zero state: h = z where z > 0, else z * w of the unit (channel dim 1).
    let cfg = Config {
        vocab: 3,
        embed: 4,
        hidden: 4,
        alpha: 0.25,
        slopes: SlopeKind::PerUnit,
    };
    let dev = Device::Cpu;
    let (model, vars) = CharRnn::init(cfg, 0.9, 3, &dev)?;
    let w = [0.5f32, 2.0, -1.0, 0.125];
    vars.slope.as_ref().unwrap().set(&Tensor::new(&w, &dev)?)?;
    let x = Tensor::new(&[[0u32], [1], [2]], &dev)?;
    let out = model.detached().forward(&x, &model.zero_state(3)?, true)?;
    let h = out.h.to_vec2::<f32>()?;
    let mut signs = [0usize; 2];
    for (i, row) in h.iter().enumerate() {
        let z = model
            .detached()
            .forward(&x.get(i)?.unsqueeze(0)?, &model.zero_state(1)?, true)?;
        let z = z.pre_max.unwrap().to_vec1::<f32>()?;
        for (j, &hz) in row.iter().enumerate() {
            let want = if z[j] > 0.0 { z[j] } else { z[j] * w[j] };
            signs[usize::from(z[j] > 0.0)] += 1;
            assert_eq!(hz.to_bits(), want.to_bits(), "row {i} unit {j}: z {}", z[j]);
        }
    }
    assert!(
        signs[0] > 0 && signs[1] > 0,
        "both branches seen: {signs:?}"
    );
    Ok(())
}

#[test]
fn learned_slopes_train_deterministically_without_weight_decay() -> Result<()> {
    let text = text();
    let s = Settings {
        weight_decay: 0.5,
        ..learned(SlopeKind::PerUnit, 20)
    };
    let (a, b) = (
        train(&text, &s, &Device::Cpu, None)?,
        train(&text, &s, &Device::Cpu, None)?,
    );
    let end = a.last().slope;
    assert!(end.min < end.max, "per-unit slopes moved apart: {end:?}");
    assert_eq!(
        bits(a.model.slopes().unwrap())?,
        bits(b.model.slopes().unwrap())?
    );
    assert_eq!(a.grad_norms, b.grad_norms);
    // Shared: one slope, and it moved.
    let shared = train(&text, &learned(SlopeKind::Shared, 20), &Device::Cpu, None)?;
    let end = shared.last().slope;
    assert_eq!((end.min, end.max), (end.mean, end.mean));
    assert_ne!(end.mean, 0.25);
    Ok(())
}

#[test]
fn learned_slope_checkpoints_round_trip_bit_for_bit() -> Result<()> {
    let text = text();
    for kind in [SlopeKind::PerUnit, SlopeKind::Shared] {
        let run = train(&text, &learned(kind, 5), &Device::Cpu, None)?;
        let path = temp_path(&format!("prelu_{kind:?}.safetensors"));
        run.model.save(&run.vocab, &path)?;
        let (loaded, vocab) = CharRnn::load(&path, &Device::Cpu)?;
        std::fs::remove_file(&path)?;
        assert_eq!(loaded.cfg, run.model.cfg);
        assert_eq!(
            bits(loaded.slopes().unwrap())?,
            bits(run.model.slopes().unwrap())?
        );
        assert_eq!(
            loaded.slopes().unwrap().dims(),
            run.model.slopes().unwrap().dims()
        );
        let ids = vocab.encode("the lazy dog")?;
        let x = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu)?;
        let logits = |m: &CharRnn| -> Result<Vec<u32>> {
            bits(&m.detached().forward(&x, &m.zero_state(1)?, false)?.logits)
        };
        assert_eq!(logits(&loaded)?, logits(&run.model)?);
    }
    Ok(())
}

/// The tensors of a checkpoint as written before learned slopes existed.
fn old_checkpoint(vocab: &Vocab, hidden: usize, embed: usize) -> Result<HashMap<String, Tensor>> {
    let (v, dev) = (vocab.len(), Device::Cpu);
    let z = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev);
    let mut map = HashMap::new();
    for (name, shape) in [
        ("embed", vec![v, embed]),
        ("w_x", vec![hidden, embed]),
        ("b", vec![hidden]),
        ("w_h", vec![hidden, hidden]),
        ("w_out", vec![v, hidden]),
        ("b_out", vec![v]),
    ] {
        map.insert(name.to_string(), z(&shape)?);
    }
    map.insert("vocab".into(), Tensor::new(vocab.code_points(), &dev)?);
    let config = [embed as f64, hidden as f64, 0.01];
    map.insert("config".into(), Tensor::new(&config, &dev)?);
    Ok(map)
}

#[test]
fn old_checkpoints_load_and_inconsistent_slopes_are_errors() -> Result<()> {
    let vocab = Vocab::from_text("abc");
    let path = temp_path("old.safetensors");
    let save = |map: &HashMap<String, Tensor>| candle_core::safetensors::save(map, &path);
    let map = old_checkpoint(&vocab, 4, 2)?;
    save(&map)?;
    let (m, _) = CharRnn::load(&path, &Device::Cpu)?;
    assert_eq!(
        (m.cfg.slopes, m.cfg.alpha, m.cfg.hidden),
        (SlopeKind::Fixed, 0.01, 4)
    );
    assert!(m.slopes().is_none());
    let with = |config: &[f64], slope: Option<Tensor>| -> Result<String> {
        let mut map = old_checkpoint(&vocab, 4, 2)?;
        map.insert("config".into(), Tensor::new(config, &Device::Cpu)?);
        if let Some(s) = slope {
            map.insert("prelu.weight".into(), s);
        }
        save(&map)?;
        Ok(err_text(CharRnn::load(&path, &Device::Cpu)))
    };
    let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu);
    let e = with(&[2.0, 4.0, 0.25, 1.0], None)?;
    assert!(e.contains("no tensor `prelu.weight`"), "{e}");
    let e = with(&[2.0, 4.0, 0.25, 1.0], Some(ones(3)?))?;
    assert!(e.contains("`prelu.weight` is F32 [3]"), "{e}");
    let e = with(&[2.0, 4.0, 0.25, 2.0], Some(ones(4)?))?;
    assert!(e.contains("needs f32 [1]"), "{e}");
    let e = with(
        &[2.0, 4.0, 0.25, 1.0],
        Some(Tensor::ones(4, DType::F64, &Device::Cpu)?),
    )?;
    assert!(e.contains("F64"), "{e}");
    let e = with(&[2.0, 4.0, 0.25, 3.0], Some(ones(4)?))?;
    assert!(e.contains("slope kind 1 (per unit) or 2"), "{e}");
    let e = with(&[2.0, 4.0, 0.01], Some(ones(4)?))?;
    assert!(e.contains("has no slope kind"), "{e}");
    let e = with(&[2.0, 4.0], None)?;
    assert!(e.contains("3 or 4 values"), "{e}");
    let e = with(&[2.0, 4.0, 0.25, 1.0, 0.0], Some(ones(4)?))?;
    assert!(e.contains("slope kind"), "{e}");
    // The same tensors with a consistent kind and shape load.
    let mut map = old_checkpoint(&vocab, 4, 2)?;
    map.insert(
        "config".into(),
        Tensor::new(&[2.0, 4.0, 0.25, 2.0], &Device::Cpu)?,
    );
    map.insert("prelu.weight".into(), ones(1)?);
    save(&map)?;
    let (m, _) = CharRnn::load(&path, &Device::Cpu)?;
    assert_eq!((m.cfg.slopes, m.cfg.alpha), (SlopeKind::Shared, 0.25));
    assert_eq!(bits(m.slopes().unwrap())?, [1f32.to_bits()]);
    std::fs::remove_file(&path)?;
    Ok(())
}

#[test]
fn final_line_reports_the_slopes() -> Result<()> {
    let text = text();
    let fixed = final_line(&train(&text, &settings(2), &Device::Cpu, None)?);
    assert!(
        fixed.ends_with(" alpha_mean=0.01 alpha_min=0.01 alpha_max=0.01"),
        "{fixed}"
    );
    let run = train(&text, &learned(SlopeKind::PerUnit, 10), &Device::Cpu, None)?;
    let line = final_line(&run);
    let field = |k: &str| -> f32 {
        let v = line.split(&format!(" {k}=")).nth(1).unwrap();
        v.split(' ').next().unwrap().parse().unwrap()
    };
    let w = run.model.slopes().unwrap().to_vec1::<f32>()?;
    let lo = w.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(field("alpha_min").to_bits(), lo.to_bits(), "{line}");
    assert_eq!(field("alpha_max").to_bits(), hi.to_bits(), "{line}");
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
    assert_eq!(
        field("alpha_mean").to_bits(),
        (mean as f32).to_bits(),
        "{line}"
    );
    assert!(lo < hi, "{line}");
    Ok(())
}

#[test]
fn slope_specs_parse_numbers_and_learn() {
    let p = |s: &str| s.parse::<SlopeSpec>();
    assert_eq!(p("learn").unwrap(), SlopeSpec::Learn);
    assert_eq!(p("learn-shared").unwrap(), SlopeSpec::LearnShared);
    assert_eq!(p("0.3").unwrap(), SlopeSpec::Fixed(0.3));
    assert_eq!(p("-0.1").unwrap(), SlopeSpec::Fixed(-0.1));
    for bad in ["nan", "inf", "-inf", "learned", "", "0.1x"] {
        let e = p(bad).unwrap_err().to_string();
        assert!(e.contains("neither a finite number"), "{bad}: {e}");
    }
    assert_eq!(SlopeSpec::LearnShared.to_string(), "learn-shared");
    assert_eq!(SlopeSpec::Fixed(0.05).to_string(), "0.05");
}

#[test]
fn prelu_flags_set_the_kind_and_the_default_initial_slope() -> Result<()> {
    let train_args = |args: &[&str]| -> Result<crate::cli::TrainArgs> {
        let argv = ["char_rnn", "train"].iter().chain(args).copied();
        match parse_cli(argv)?.cmd {
            Cmd::Train(a) => Ok(a.args),
            c => panic!("{c:?}"),
        }
    };
    assert_eq!(train_args(&[])?.slope(), (0.01, SlopeKind::Fixed));
    assert_eq!(
        train_args(&["--prelu"])?.slope(),
        (0.25, SlopeKind::PerUnit)
    );
    assert_eq!(
        train_args(&["--prelu-shared"])?.slope(),
        (0.25, SlopeKind::Shared)
    );
    let a = train_args(&["--prelu", "--alpha", "-0.1"])?;
    assert_eq!(a.slope(), (-0.1, SlopeKind::PerUnit));
    assert!(parse_cli(["char_rnn", "train", "--prelu", "--prelu-shared"]).is_err());
    let e = parse_cli(["char_rnn", "lab", "--alphas", "0,learnt"]).unwrap_err();
    assert!(e.to_string().contains("learnt"), "{e}");
    Ok(())
}

#[test]
fn lab_with_a_learned_slope_writes_its_fields_csv_and_plot() -> Result<()> {
    let (data, out) = (temp_path("lab_learn.txt"), temp_path("lab_learn_out"));
    std::fs::write(&data, text())?;
    let argv = [
        "char_rnn",
        "lab",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--alphas",
        "0.01,learn",
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
        "--learn-init",
        "0.2",
    ];
    let Cmd::Lab(a) = parse_cli(argv)?.cmd else {
        panic!("not lab")
    };
    let runs = lab::lab(&a.run.text()?, &a.lab(), &Device::Cpu, false)?;
    let fixed = lab::summary_line(&runs[0]);
    assert!(!fixed.contains("learned_"), "{fixed}");
    let line = lab::summary_line(&runs[1]);
    let keys: Vec<&str> = (line.split_whitespace().skip(1))
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(
        &keys[keys.len() - 3..],
        [
            "learned_alpha_mean",
            "learned_alpha_min",
            "learned_alpha_max"
        ]
    );
    assert!(
        line.starts_with("lab: alpha=learn knocked_out=8 "),
        "{line}"
    );
    assert_eq!(runs[1].knockout.history[0].slope.mean, 0.2f32 as f64);
    run_lab(&a)?;
    let csv = std::fs::read_to_string(out.join("lab.csv"))?;
    let steps = std::fs::read_to_string(out.join("lab_steps.csv"))?;
    let svg = std::fs::read_to_string(out.join("lab.svg"))?;
    std::fs::remove_dir_all(&out)?;
    std::fs::remove_file(&data)?;
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .ends_with(",alpha_mean,alpha_min,alpha_max"));
    assert!(csv
        .lines()
        .any(|l| l.starts_with("alpha learn knockout,0,")));
    // Steps 0..=10 of 4 runs; probes at 0, 5, 10 with the knocked-out count in knockout runs.
    let rows: Vec<&str> = steps.lines().collect();
    assert_eq!(rows.len(), 1 + 4 * 11);
    assert!(
        rows[1].starts_with("alpha 0.01 knockout,0,,,"),
        "{}",
        rows[1]
    );
    let probe = rows
        .iter()
        .find(|r| r.starts_with("alpha learn knockout,5,"))
        .unwrap();
    let f: Vec<&str> = probe.split(',').collect();
    assert!(
        f[2].parse::<f64>()? > 0.0 && (f[3] == "0" || f[3] == "1"),
        "{probe}"
    );
    assert!(f[4].parse::<usize>()? <= 8, "{probe}");
    let between = rows
        .iter()
        .find(|r| r.starts_with("alpha learn knockout,6,"))
        .unwrap();
    assert!(between.ends_with(",,,,"), "{between}");
    assert!(svg.contains("learned slopes"));
    Ok(())
}

#[test]
fn sweep_runs_each_seed_and_writes_table_csv_and_plot() -> Result<()> {
    let (data, out) = (temp_path("sweep.txt"), temp_path("sweep_out"));
    std::fs::write(&data, text())?;
    let argv = [
        "char_rnn",
        "sweep",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--alphas",
        "0,learn-shared",
        "--seeds",
        "1,2",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--hidden",
        "16",
        "--embed",
        "8",
        "--batch",
        "4",
        "--seq-len",
        "16",
    ];
    let Cmd::Sweep(a) = parse_cli(argv)?.cmd else {
        panic!("not sweep")
    };
    crate::commands::run_sweep(&a)?;
    let csv = std::fs::read_to_string(out.join("sweep.csv"))?;
    let svg = std::fs::read_to_string(out.join("sweep.svg"))?;
    let seed2 = out.join("seed-2").join("lab.csv").exists();
    std::fs::remove_dir_all(&out)?;
    std::fs::remove_file(&data)?;
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 1 + 2 * 2);
    assert!(rows.iter().all(|r| r.len() == 15), "{csv}");
    assert_eq!((rows[1][0], rows[1][1]), ("1", "0"));
    assert_eq!((rows[4][0], rows[4][1]), ("2", "learn-shared"));
    assert_eq!(rows[1][12], "", "no learned slope for a fixed one");
    assert!(rows[4][12].parse::<f32>().is_ok(), "{csv}");
    assert!(seed2 && svg.contains("learned slopes"));
    Ok(())
}

#[test]
fn sweep_preset_applies_as_in_lab() -> Result<()> {
    let Cmd::Sweep(a) = parse_cli(["char_rnn", "sweep", "--preset", "high-lr"])?.cmd else {
        panic!("not sweep")
    };
    assert_eq!(
        (a.lab.run.lr, a.lab.run.irnn_scale, a.lab.knockout),
        (0.1, 0.5, 0.0)
    );
    assert_eq!(a.seeds, [1, 2, 3]);
    Ok(())
}

#[test]
fn evaluate_first_reads_only_the_first_batches() -> Result<()> {
    let text = text();
    let run = train(&text, &settings(3), &Device::Cpu, None)?;
    let corpus = crate::data::Corpus::new(&text, 0.1, 16)?;
    let val = Streams::new(&corpus.val, 8, 16)?;
    let all = train::evaluate(&run.model, &val)?;
    let more = train::evaluate_first(&run.model, &val, 1000)?;
    assert_eq!(all.loss.to_bits(), more.loss.to_bits());
    let one = train::evaluate_first(&run.model, &val, 1)?;
    assert!((one.active.iter().zip(&all.active)).all(|(&o, &a)| !o || a));
    assert_ne!(one.loss.to_bits(), all.loss.to_bits());
    Ok(())
}

#[test]
fn learned_initial_slopes_must_be_finite_as_f32() {
    for alpha in [f64::NAN, 1e39, f64::INFINITY] {
        let e = err_text(train(&text(), &learned_at(alpha), &Device::Cpu, None));
        assert!(e.contains("--alpha"), "{alpha}: {e}");
    }
    let cfg = lab::Lab {
        settings: settings(1),
        alphas: vec![SlopeSpec::Fixed(0.1), SlopeSpec::Learn],
        learn_init: f64::NAN,
        knockout: 0.25,
        knockout_bias: -4.0,
        baseline: true,
    };
    let e = err_text(lab::lab(&text(), &cfg, &Device::Cpu, false));
    assert!(e.contains("--learn-init must be finite, got NaN"), "{e}");
}

fn learned_at(alpha: f64) -> Settings {
    Settings {
        alpha,
        ..learned(SlopeKind::PerUnit, 1)
    }
}

#[test]
fn sweep_table_aggregates_hand_written_rows() -> Result<()> {
    let head = "seed,alpha,knocked_out,alive_at_end,val_loss,baseline_val_loss,inactive_end,\
                grad_norm_median,grad_norm_max,clip_rate,revive_half_step,revive_90_step,\
                learned_alpha_mean,learned_alpha_min,learned_alpha_max";
    let a = format!(
        "{head}\n1,0.1,8,6,1.0000,0.5000,0.0%,0.2000,3.0000,0.100,5,na,,,\n\
         1,learn,8,8,diverged,1.0000,na,0.4000,inf,0.500,10,20,0.2,-0.1,0.5\n"
    );
    // A second file (a re-run) adds seed 2 of both slopes.
    let b = format!(
        "{head}\n2,0.1,8,8,2.0000,1.0000,0.0%,0.4000,5.0000,0.300,10,15,,,\n\
         2,learn,8,8,3.0000,2.0000,0.0%,0.6000,1.000e5,0.700,5,10,0.4,0.1,0.7\n"
    );
    let t = crate::report::sweep_table(&[a, b])?;
    let rows: Vec<&str> = t.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{t}");
    assert_eq!(
        rows[0],
        "| 0.1 | 1.5000 [1.0000, 2.0000] | 0.7500 [0.5000, 1.0000] | +0.7500 [+0.5000, \
         +1.0000] | 7 [6, 8] of 8 | 5, 10 | na, 15 | 0.3000 [0.2000, 0.4000] | 3.0000, \
         5.0000 | 0.200 [0.100, 0.300] | 0/2 | - |"
    );
    assert_eq!(
        rows[1],
        "| learn | 3.0000 [3.0000, 3.0000] | 1.5000 [1.0000, 2.0000] | +1.0000 [+1.0000, \
         +1.0000] | 8 [8, 8] of 8 | 10, 5 | 20, 10 | 0.5000 [0.4000, 0.6000] | inf, 1.000e5 \
         | 0.600 [0.500, 0.700] | 1/2 | 0.300 [-0.100, 0.700] |"
    );
    let bad = format!("{head}\n1,0.1,8\n");
    assert!(err_text(crate::report::sweep_table(&[bad])).contains("3 cells"));
    Ok(())
}
