//! Tests of checkpointing and resuming `train`: the saveable AdamW against candle-nn's, runs
//! interrupted and resumed against runs never interrupted (fixed slopes, learned slopes with
//! dropout, a shared slope with a knockout and probes, early stopping), finished runs, and the
//! refusals (other settings, other text, missing, corrupt or inconsistent state).

use crate::cli::{parse_cli, Cmd};
use crate::commands::{run_train, CHECKPOINT};
use crate::model::SlopeKind;
use crate::optim;
use crate::report::final_line;
use crate::resume::{self, STATE_FILE};
use crate::tests::{err_text, settings, temp_path, text};
use crate::train::{train_persisted, Persist, Point, Probe, Run, Settings};
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn bits(t: &Tensor) -> Result<Vec<u32>> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().map(|f| f.to_bits()).collect())
}

/// A fresh empty directory for one test.
fn fresh_dir(name: &str) -> Result<PathBuf> {
    let dir = temp_path(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn persist(dir: &Path, resume: bool, stop_after: Option<usize>) -> Persist {
    Persist {
        dir: dir.to_path_buf(),
        resume,
        stop_after,
    }
}

fn run(text: &str, s: &Settings, p: &Persist) -> Result<Run> {
    train_persisted(text, s, &Device::Cpu, None, Some(p))
}

#[test]
fn adamw_gives_candle_nn_adamws_weights_bit_for_bit() -> Result<()> {
    let dev = Device::Cpu;
    let start_a: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let start_b = [0.5f32, -1.25, 2.0];
    let new_vars = || -> Result<(Var, Var)> {
        Ok((
            Var::from_tensor(&Tensor::from_slice(&start_a, (3, 4), &dev)?)?,
            Var::from_tensor(&Tensor::new(&start_b, &dev)?)?,
        ))
    };
    let x = Tensor::from_slice(&[0.3f32, -0.7, 1.1, 0.05], (4, 1), &dev)?;
    // A loss whose gradient depends on the weights, so that any difference would compound;
    // on odd steps only `a` gets a gradient (`b`'s moments and step count must still agree).
    let grads = |a: &Var, b: &Var, step: usize| -> Result<GradStore> {
        let la = (a.as_tensor().matmul(&x)?.tanh()? - 0.25)?
            .sqr()?
            .sum_all()?;
        let lb = (b.as_tensor().sqr()? * b.as_tensor())?.sum_all()?;
        let loss = if step % 2 == 1 { la } else { (la + lb)? };
        Ok(loss.backward()?)
    };
    for params in [
        ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.1,
            ..Default::default()
        },
        ParamsAdamW {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.95,
            eps: 1e-6,
            weight_decay: 0.5,
        },
    ] {
        let (ca, cb) = new_vars()?;
        let (oa, ob) = new_vars()?;
        let mut theirs = candle_nn::AdamW::new(vec![ca.clone(), cb.clone()], params.clone())?;
        let mut ours = optim::AdamW::new(vec![oa.clone(), ob.clone()], params.clone())?;
        for step in 0..8 {
            let lr = params.lr * (1.0 + step as f64) / 3.0;
            theirs.set_learning_rate(lr);
            ours.set_learning_rate(lr);
            theirs.step(&grads(&ca, &cb, step)?)?;
            ours.step(&grads(&oa, &ob, step)?)?;
            assert_eq!(bits(&oa)?, bits(&ca)?, "a after step {step}, {params:?}");
            assert_eq!(bits(&ob)?, bits(&cb)?, "b after step {step}, {params:?}");
        }
        assert_ne!(bits(&ob)?, bits(&Tensor::new(&start_b, &dev)?)?, "b moved");
        assert_eq!(ours.steps(), 8);
    }
    Ok(())
}

#[test]
fn adamw_restored_from_its_state_continues_as_if_never_stopped() -> Result<()> {
    let dev = Device::Cpu;
    let params = ParamsAdamW {
        lr: 0.05,
        weight_decay: 0.1,
        ..Default::default()
    };
    let var = || Var::from_tensor(&Tensor::new(&[0.5f32, -1.5, 2.5], &dev)?);
    let grads = |v: &Var| -> Result<GradStore> { Ok(v.as_tensor().sqr()?.sum_all()?.backward()?) };
    let (a, b) = (var()?, var()?);
    let mut whole = optim::AdamW::new(vec![a.clone()], params.clone())?;
    let mut first = optim::AdamW::new(vec![b.clone()], params.clone())?;
    for _ in 0..3 {
        whole.step(&grads(&a)?)?;
        first.step(&grads(&b)?)?;
    }
    let (steps, moments) = (first.steps(), first.moments());
    drop(first);
    let mut second = optim::AdamW::new(vec![b.clone()], params.clone())?;
    second.restore(steps, moments)?;
    for _ in 0..3 {
        whole.step(&grads(&a)?)?;
        second.step(&grads(&b)?)?;
    }
    assert_eq!(bits(&b)?, bits(&a)?);
    // Moments of another shape are refused.
    let mut other = optim::AdamW::new(vec![var()?], params)?;
    let wrong = Tensor::zeros(4, DType::F32, &dev)?;
    let e = err_text(other.restore(1, vec![(wrong.clone(), wrong)]));
    assert!(e.contains("first moment"), "{e}");
    Ok(())
}

fn slope_bits(s: &crate::model::SlopeStats) -> [u64; 3] {
    [s.mean.to_bits(), s.min.to_bits(), s.max.to_bits()]
}

fn point_bits(p: &Point) -> Vec<u64> {
    let opt = |v: Option<f64>| v.map_or(u64::MAX - 1, f64::to_bits);
    let mut v = vec![
        p.step as u64,
        opt(p.train_loss),
        p.val_loss.to_bits(),
        p.inactive_pct.to_bits(),
        opt(p.zero_grad_pct),
        p.died as u64,
        p.revived as u64,
        p.knocked_alive as u64,
    ];
    v.extend(slope_bits(&p.slope));
    v
}

fn probe_bits(p: &Probe) -> Vec<u64> {
    let mut v = vec![
        p.step as u64,
        p.knocked_alive.map_or(u64::MAX, |k| k as u64),
    ];
    v.extend(slope_bits(&p.slope));
    v
}

/// `resume.json` of `dir` without its elapsed time (the one field that may differ).
fn state_json(dir: &Path) -> Result<Value> {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(STATE_FILE))?)?;
    v.as_object_mut().unwrap().remove("elapsed_secs");
    Ok(v)
}

/// The tensor file `resume.json` of `dir` names, and its bytes.
fn state_tensors(dir: &Path) -> Result<(String, Vec<u8>)> {
    let v = state_json(dir)?;
    let name = v["tensors"].as_str().unwrap().to_string();
    let bytes = std::fs::read(dir.join(&name))?;
    Ok((name, bytes))
}

/// Asserts that two runs are the same, bit for bit: history, probes, gradient norms, clip
/// count, best evaluation, checkpoint weights, `final:` line, and the resume state they left.
fn assert_same_run(a: &Run, a_dir: &Path, b: &Run, b_dir: &Path) -> Result<()> {
    let hist = |r: &Run| r.history.iter().map(point_bits).collect::<Vec<_>>();
    assert_eq!(hist(a), hist(b), "history");
    let probes = |r: &Run| r.probes.iter().map(probe_bits).collect::<Vec<_>>();
    assert_eq!(probes(a), probes(b), "probes");
    let norms = |r: &Run| r.grad_norms.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(norms(a), norms(b), "gradient norms");
    assert_eq!(
        (a.clipped, a.best, a.stopped_early),
        (b.clipped, b.best, b.stopped_early)
    );
    for (wa, wb) in a.model.weights().iter().zip(b.model.weights()) {
        assert_eq!(bits(wa)?, bits(&wb)?, "checkpoint weights");
    }
    assert_eq!(final_line(a), final_line(b));
    // The states left behind hold the current weights, the moments, the hidden state and the
    // best weights: the same bytes (so the same checksum and file name), the same JSON.
    assert_eq!(
        state_tensors(a_dir)?,
        state_tensors(b_dir)?,
        "state tensors"
    );
    assert_eq!(state_json(a_dir)?, state_json(b_dir)?, "state JSON");
    // And the checkpoint files `train` writes from them.
    let ca = a_dir.join(CHECKPOINT);
    a.model.save(&a.vocab, &ca)?;
    let cb = b_dir.join(CHECKPOINT);
    b.model.save(&b.vocab, &cb)?;
    assert_eq!(std::fs::read(ca)?, std::fs::read(cb)?, "checkpoint files");
    Ok(())
}

/// Runs `s` on `text` once without interruption and once stopped after each step of `stops`
/// and resumed from disk each time (everything in memory dropped in between), and checks the
/// two agree bit for bit. Returns the uninterrupted run.
fn check_resume(name: &str, text: &str, s: &Settings, stops: &[usize]) -> Result<Run> {
    let whole_dir = fresh_dir(&format!("{name}_whole"))?;
    let whole = run(text, s, &persist(&whole_dir, false, None))?;
    assert!(whole.resumed_from.is_none());
    let dir = fresh_dir(&format!("{name}_parts"))?;
    let first = run(text, s, &persist(&dir, false, Some(stops[0])))?;
    assert_eq!(first.stopped_at, Some(stops[0]));
    assert_eq!(resume::saved_step(&dir), Some((stops[0], false)));
    drop(first);
    for &k in &stops[1..] {
        let part = run(text, s, &persist(&dir, true, Some(k)))?;
        assert_eq!(part.stopped_at, Some(k));
        assert_eq!(resume::saved_step(&dir), Some((k, false)));
    }
    let resumed = run(text, s, &persist(&dir, true, None))?;
    assert_eq!(resumed.resumed_from, stops.last().copied());
    assert_same_run(&whole, &whole_dir, &resumed, &dir)?;
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&whole_dir)?;
    Ok(whole)
}

#[test]
fn fixed_slope_run_interrupted_and_resumed_is_the_uninterrupted_run() -> Result<()> {
    let s = Settings {
        eval_every: 10,
        ..settings(50)
    };
    // Stopped at step 0, at an evaluation (20) and between evaluations (37: the training-loss
    // window, the gradient masks and the stream are mid-interval).
    let whole = check_resume("fixed", &text(), &s, &[0, 20, 37])?;
    assert_eq!(whole.history.len(), 6);
    Ok(())
}

#[test]
fn learned_slopes_with_dropout_interrupted_and_resumed_are_the_uninterrupted_run() -> Result<()> {
    let s = Settings {
        alpha: 0.25,
        slopes: SlopeKind::PerUnit,
        dropout: 0.3,
        eval_every: 10,
        ..settings(40)
    };
    let whole = check_resume("prelu_dropout", &text(), &s, &[13, 26])?;
    let end = whole.last().slope;
    assert!(end.min < end.max, "the slopes were learned: {end:?}");
    Ok(())
}

#[test]
fn shared_slope_knockout_and_probes_interrupted_and_resumed_are_the_uninterrupted_run() -> Result<()>
{
    let s = Settings {
        alpha: 0.25,
        slopes: SlopeKind::Shared,
        knockout: 0.25,
        knockout_bias: -4.0,
        probe_every: 5,
        eval_every: 10,
        ..settings(30)
    };
    let whole = check_resume("shared_knockout", &text(), &s, &[17])?;
    assert_eq!(whole.knocked.len(), 16);
    assert_eq!(whole.probes.len(), 7);
    Ok(())
}

#[test]
fn relu_run_whose_units_die_interrupted_and_resumed_is_the_uninterrupted_run() -> Result<()> {
    // A high learning rate kills ReLU units between evaluations: the unit masks (active at the
    // last evaluation, gradient seen since) must survive the interruptions.
    let s = Settings {
        alpha: 0.0,
        lr: 0.1,
        irnn_scale: 0.5,
        eval_every: 10,
        ..settings(60)
    };
    let whole = check_resume("relu_dying", &text(), &s, &[5, 17, 24, 33, 46, 52])?;
    let h = &whole.history;
    assert!(h.iter().any(|p| p.died > 0), "no unit died: {h:?}");
    assert!(
        h.iter().any(|p| p.zero_grad_pct.is_some_and(|z| z > 0.0)),
        "every unit had a gradient: {h:?}"
    );
    Ok(())
}

#[test]
fn early_stopping_run_interrupted_and_resumed_stops_at_the_same_step() -> Result<()> {
    // The first 4000 characters of the bundled corpus overfit within 200 steps (tests.rs).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare.txt");
    let text = crate::data::read_text(&path)?[..4000].to_string();
    let s = Settings {
        hidden: 128,
        seq_len: 32,
        lr: 2e-2,
        val_frac: 0.2,
        patience: 2,
        ..settings(200)
    };
    let whole = check_resume("early", &text, &s, &[30])?;
    assert!(
        whole.stopped_early && whole.steps() < 200,
        "no early stop to test"
    );
    Ok(())
}

#[test]
fn resuming_a_finished_run_trains_nothing_and_changes_nothing() -> Result<()> {
    let (text, s) = (text(), settings(20));
    let dir = fresh_dir("finished")?;
    let done = run(&text, &s, &persist(&dir, false, None))?;
    assert_eq!(resume::saved_step(&dir), Some((20, true)));
    let before = (state_tensors(&dir)?, std::fs::read(dir.join(STATE_FILE))?);
    let again = run(&text, &s, &persist(&dir, true, None))?;
    assert_eq!(again.resumed_from, Some(20));
    assert_eq!(again.steps(), 20);
    assert_eq!(final_line(&again), final_line(&done));
    for (wa, wb) in done.model.weights().iter().zip(again.model.weights()) {
        assert_eq!(bits(wa)?, bits(&wb)?);
    }
    let after = (state_tensors(&dir)?, std::fs::read(dir.join(STATE_FILE))?);
    assert!(before == after, "the state was rewritten");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn leftovers_of_an_interrupted_save_do_not_stop_a_resume() -> Result<()> {
    let (text, s) = (text(), settings(30));
    let whole_dir = fresh_dir("leftovers_whole")?;
    let whole = run(&text, &s, &persist(&whole_dir, false, None))?;
    let dir = fresh_dir("leftovers")?;
    run(&text, &s, &persist(&dir, false, Some(20)))?;
    // A save interrupted after writing the temporary files and renaming a new tensor file,
    // before replacing resume.json.
    let stray = dir.join("resume-0123456789abcdef.safetensors");
    std::fs::write(&stray, b"half a tensor file")?;
    std::fs::write(dir.join("resume-tensors.tmp"), b"garbage")?;
    std::fs::write(dir.join("resume.json.tmp"), b"{ \"trunc")?;
    let resumed = run(&text, &s, &persist(&dir, true, None))?;
    assert_same_run(&whole, &whole_dir, &resumed, &dir)?;
    let names: Vec<String> = (std::fs::read_dir(&dir)?.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("resume"))
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only resume.json and one tensor file remain: {names:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&whole_dir)?;
    Ok(())
}

/// Every file of `dir` and its bytes, sorted by name.
fn snapshot(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = (std::fs::read_dir(dir)?.flatten())
        .map(|e| {
            Ok((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path())?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    files.sort();
    Ok(files)
}

/// The error of resuming in `dir`, which must leave every file there as it was.
fn refused(text: &str, s: &Settings, dir: &Path) -> Result<String> {
    let before = snapshot(dir)?;
    let e = err_text(run(text, s, &persist(dir, true, None)));
    assert!(
        snapshot(dir)? == before,
        "a refused resume changed {}",
        dir.display()
    );
    Ok(e)
}

#[test]
fn resuming_with_other_settings_or_another_text_is_refused_naming_what_differs() -> Result<()> {
    let (text, s) = (text(), settings(30));
    let dir = fresh_dir("refuse_settings")?;
    run(&text, &s, &persist(&dir, false, Some(10)))?;
    let cases = [
        (
            "--steps 40 here, 30 in the saved run",
            Settings {
                steps: 40,
                ..s.clone()
            },
        ),
        (
            "--lr 0.02 here, 0.01 in the saved run",
            Settings {
                lr: 2e-2,
                ..s.clone()
            },
        ),
        (
            "--seed 8 here, 7 in the saved run",
            Settings {
                seed: 8,
                ..s.clone()
            },
        ),
        (
            "--dropout 0.1 here, 0.0 in the saved run",
            Settings {
                dropout: 0.1,
                ..s.clone()
            },
        ),
        (
            "slopes learned per unit (--prelu) here",
            Settings {
                slopes: SlopeKind::PerUnit,
                ..s.clone()
            },
        ),
    ];
    for (want, other) in cases {
        let e = refused(&text, &other, &dir)?;
        assert!(
            e.contains("settings differ") && e.contains(want),
            "{want}: {e}"
        );
    }
    let two = refused(
        &text,
        &Settings {
            hidden: 32,
            patience: 5,
            ..s.clone()
        },
        &dir,
    )?;
    assert!(
        two.contains("--hidden 32 here") && two.contains("--patience 5 here"),
        "{two}"
    );
    let other_text = text.replace("fox", "cat");
    let e = refused(&other_text, &s, &dir)?;
    assert!(e.contains("another text") && e.contains("--data"), "{e}");
    // The same text still resumes.
    run(&text, &s, &persist(&dir, true, None))?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `resume.json` of `dir` edited by `edit`.
fn edit_state(dir: &Path, edit: impl FnOnce(&mut Value)) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string(&v)?)?;
    Ok(())
}

#[test]
fn missing_corrupt_or_inconsistent_states_are_refused_without_panicking() -> Result<()> {
    let (text, s) = (text(), settings(30));
    let dir = fresh_dir("refuse_state")?;
    let e = refused(&text, &s, &dir)?;
    assert!(
        e.contains("no resume state") && e.contains("without --resume"),
        "{e}"
    );
    run(&text, &s, &persist(&dir, false, Some(25)))?;
    let good = snapshot(&dir)?;
    let restore = |dir: &Path| -> Result<()> {
        for (name, bytes) in &good {
            std::fs::write(dir.join(name), bytes)?;
        }
        Ok(())
    };
    let (tensor_name, tensor_bytes) = state_tensors(&dir)?;
    // (what is done to the state, what the error must say)
    type Damage = Box<dyn Fn(&Path) -> Result<()>>;
    let json = |f: fn(&mut Value)| -> Damage { Box::new(move |d: &Path| edit_state(d, f)) };
    let tn = tensor_name.clone();
    let tb = tensor_bytes.clone();
    let cases: Vec<(Damage, &str)> = vec![
        (
            Box::new(|d: &Path| Ok(std::fs::write(d.join(STATE_FILE), "{\"format\": ")?)),
            "not valid JSON",
        ),
        (
            Box::new(|d: &Path| Ok(std::fs::write(d.join(STATE_FILE), "[1, 2]")?)),
            "is not an object",
        ),
        (json(|v| v["format"] = "something else".into()), "`format`"),
        (json(|v| v["version"] = 99.into()), "version 99"),
        (
            json(|v| v["tensors"] = "../../etc/passwd".into()),
            "not a file `resume-",
        ),
        (
            json(|v| v["tensors"] = "resume-ffffffffffffffff.safetensors".into()),
            "cannot read its tensors",
        ),
        (
            json(|v| v["tensors_fnv1a64"] = "0000000000000000".into()),
            "corrupt",
        ),
        (json(|v| v["best"] = 1000.into()), "`best` 1000"),
        (
            json(|v| v["done"] = (-1).into()),
            "`done` is not a non-negative integer",
        ),
        (json(|v| v["done"] = 31.into()), "past --steps"),
        (json(|v| v["done"] = 24.into()), "gradient norms"),
        (
            json(|v| v["history"] = Value::Array(vec![])),
            "`history` is empty",
        ),
        (
            json(|v| v["history"][1]["val_loss"] = 1.5.into()),
            "not written as a string",
        ),
        (
            json(|v| v["history"][1]["val_loss"] = "1.5x".into()),
            "not a number",
        ),
        (json(|v| v["history"][1]["step"] = 0.into()), "rise"),
        (
            json(|v| {
                v["grad_norms"]
                    .as_array_mut()
                    .unwrap()
                    .pop()
                    .map(drop)
                    .unwrap_or(())
            }),
            "gradient norms",
        ),
        (json(|v| v["clipped"] = 26.into()), "clipped"),
        (
            json(|v| v["active"].as_array_mut().unwrap().push(true.into())),
            "unit masks",
        ),
        (json(|v| v["grad_seen"][0] = 1.into()), "non-boolean"),
        (
            json(|v| v["window"]["count"] = 2.into()),
            "training-loss window",
        ),
        (
            json(|v| v["stream_position"] = 7.into()),
            "stream position 7",
        ),
        (
            json(|v| v["stream_position"] = u64::MAX.into()),
            "stream position",
        ),
        (
            json(|v| v["optimizer_steps"] = 24.into()),
            "optimiser steps",
        ),
        (
            json(|v| v["slope_optimizer_steps"] = 25.into()),
            "optimiser steps",
        ),
        (json(|v| v["dropout_draws"] = 5.into()), "dropout_draws"),
        (json(|v| v["finished"] = "steps".into()), "`finished`"),
        (json(|v| v["finished"] = "maybe".into()), "`finished`"),
        (json(|v| v["elapsed_secs"] = "-1.0".into()), "elapsed_secs"),
        (json(|v| v["settings"][0] = Value::Null), "pair of strings"),
        (
            json(|v| drop(v.as_object_mut().unwrap().remove("probes"))),
            "`probes` is missing",
        ),
        (
            Box::new(move |d: &Path| {
                let mut b = tb.clone();
                let n = b.len();
                b[n - 3] ^= 0x40;
                Ok(std::fs::write(d.join(&tn), b)?)
            }),
            "corrupt",
        ),
        (
            Box::new(move |d: &Path| Ok(std::fs::remove_file(d.join(&tensor_name))?)),
            "cannot read its tensors",
        ),
    ];
    for (damage, want) in &cases {
        damage(&dir)?;
        let e = refused(&text, &s, &dir)?;
        assert!(e.contains(want), "want {want:?}: {e}");
        assert!(e.contains("resume state"), "names the state: {e}");
        restore(&dir)?;
    }
    // Tensors of another model, with a matching checksum: named shapes refused.
    let other = fresh_dir("refuse_state_other")?;
    run(
        &text,
        &Settings {
            hidden: 32,
            ..s.clone()
        },
        &persist(&other, false, Some(25)),
    )?;
    let (name, bytes) = state_tensors(&other)?;
    std::fs::write(dir.join(&name), &bytes)?;
    let hash = name
        .trim_start_matches("resume-")
        .trim_end_matches(".safetensors")
        .to_string();
    edit_state(&dir, |v| {
        v["tensors"] = name.clone().into();
        v["tensors_fnv1a64"] = hash.into();
    })?;
    let e = refused(&text, &s, &dir)?;
    assert!(e.contains("the settings need"), "{e}");
    std::fs::remove_file(dir.join(&name))?;
    restore(&dir)?;
    // Undamaged, it resumes.
    run(&text, &s, &persist(&dir, true, None))?;
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&other)?;
    Ok(())
}

#[test]
fn train_command_stops_and_resumes_to_the_same_checkpoint_file() -> Result<()> {
    let data = temp_path("resume_cmd.txt");
    std::fs::write(&data, text())?;
    let (whole, parts) = (fresh_dir("cmd_whole")?, fresh_dir("cmd_parts")?);
    let train = |out: &Path, extra: &[&str]| -> Result<()> {
        let mut argv = vec![
            "char_rnn",
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "30",
            "--eval-every",
            "10",
            "--hidden",
            "32",
            "--embed",
            "8",
            "--batch",
            "4",
            "--seq-len",
            "16",
            "--sample-len",
            "10",
        ];
        argv.extend(extra);
        let Cmd::Train(a) = parse_cli(argv)?.cmd else {
            panic!("not train")
        };
        run_train(&a)
    };
    train(&whole, &[])?;
    train(&parts, &["--stop-after", "15"])?;
    assert!(
        !parts.join(CHECKPOINT).exists(),
        "no checkpoint for a stopped run"
    );
    train(&parts, &["--resume"])?;
    let read = |d: &Path| std::fs::read(d.join(CHECKPOINT));
    assert_eq!(read(&whole)?, read(&parts)?);
    // Resuming the finished run writes the same checkpoint again.
    std::fs::remove_file(parts.join(CHECKPOINT))?;
    train(&parts, &["--resume"])?;
    assert_eq!(read(&whole)?, read(&parts)?);
    let e = err_text(train(&parts, &["--resume", "--lr", "0.5"]));
    assert!(e.contains("--lr 0.5 here"), "{e}");
    // `compare` has no --resume.
    assert!(parse_cli(["char_rnn", "compare", "--resume"]).is_err());
    for d in [&whole, &parts] {
        std::fs::remove_dir_all(d)?;
    }
    std::fs::remove_file(&data)?;
    Ok(())
}

/// The fingerprint is FNV-1a 64 (published test vectors), so saved states stay readable across
/// builds.
#[test]
fn fingerprint_is_fnv1a_64() {
    use crate::resume::fnv1a64;
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}
