//! The resume state of a `train` run, kept in its output directory and replaced at every
//! evaluation: the tensors (current weights and slopes, both optimisers' moments, the carried
//! hidden state, the best evaluation's weights) in `resume-<FNV-1a 64 of the file>.safetensors`,
//! everything else (settings, a fingerprint of the text, steps done, history, probes, gradient
//! norms, masks, the training-loss window, the stream position, the dropout draws, elapsed time)
//! in `resume.json`, which names the tensor file and its checksum.
//!
//! Saving is atomic: the tensor file is written under a temporary name, synced and renamed to
//! its checksum's name, then `resume.json` likewise; only then are older tensor files removed.
//! An interruption at any point leaves a `resume.json` whose tensor file exists and matches.
//! Floats are written as the shortest decimal that reads back as the same `f64` (`NaN:` and
//! the bits for a NaN), so a resumed run continues from exactly the same numbers.

use crate::model::{SlopeKind, SlopeStats};
use crate::train::{Point, Probe, Settings};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

/// The state's JSON file in the output directory.
pub const STATE_FILE: &str = "resume.json";
const FORMAT: &str = "char_rnn train resume state";
const VERSION: u64 = 1;
const TENSORS_PREFIX: &str = "resume-";
const TENSORS_SUFFIX: &str = ".safetensors";
const TENSORS_TMP: &str = "resume-tensors.tmp";
const STATE_TMP: &str = "resume.json.tmp";

/// 64-bit FNV-1a hash of `bytes` (the `fnv` crate): the fingerprint of the text and the
/// checksum of the tensor file (for telling texts and files apart, not against tampering).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// What identifies a training text: its length in bytes and its FNV-1a 64 hash.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextPrint {
    /// Length in bytes.
    pub bytes: usize,
    /// [`fnv1a64`] of the bytes.
    pub hash: u64,
}

impl TextPrint {
    /// The fingerprint of `text`.
    pub fn of(text: &str) -> Self {
        Self {
            bytes: text.len(),
            hash: fnv1a64(text.as_bytes()),
        }
    }
}

/// How a saved run ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Finish {
    /// It ran every step.
    Steps,
    /// It stopped early (`--patience`).
    StoppedEarly,
}

/// A run's state after `done` steps.
pub struct State {
    /// The settings as flag and value, in the order of [`setting_values`].
    pub settings: Vec<(String, String)>,
    /// The text trained on.
    pub text: TextPrint,
    /// Steps done.
    pub done: usize,
    /// How the run ended, if it did.
    pub finished: Option<Finish>,
    /// Steps taken by the weights' optimiser, and by the slopes' (when learned).
    pub opt_steps: (usize, Option<usize>),
    /// Index in `history` of the best evaluation.
    pub best: usize,
    /// The evaluations so far.
    pub history: Vec<Point>,
    /// The probes so far.
    pub probes: Vec<Probe>,
    /// Per step done: the gradient norm before clipping.
    pub grad_norms: Vec<f64>,
    /// Steps on which clipping fired.
    pub clipped: usize,
    /// Per unit: a non-zero bias gradient since the last evaluation.
    pub grad_seen: Vec<bool>,
    /// Per unit: active at the last evaluation.
    pub active: Vec<bool>,
    /// Sum and count of the training losses since the last evaluation.
    pub window: (f64, usize),
    /// The training streams' cursor.
    pub stream_pos: usize,
    /// Numbers drawn from the dropout generator so far.
    pub dropout_draws: u64,
    /// Wall time of the training loop so far, seconds.
    pub elapsed: f64,
    /// The tensors, by name (on the CPU once loaded).
    pub tensors: HashMap<String, Tensor>,
}

/// The settings of a run as `(flag, value)`: every field of [`Settings`] with the flag that
/// sets it (the lab's flags for the knockout and the probes) and its value exactly (floats as
/// the shortest decimal that reads back as the same number).
pub fn setting_values(s: &Settings) -> Vec<(&'static str, String)> {
    let Settings {
        steps,
        batch,
        seq_len,
        embed,
        hidden,
        alpha,
        slopes,
        lr,
        weight_decay,
        warmup,
        clip,
        irnn_scale,
        eval_every,
        val_frac,
        seed,
        knockout,
        knockout_bias,
        patience,
        dropout,
        probe_every,
    } = s;
    let slopes = match slopes {
        SlopeKind::Fixed => "fixed (neither --prelu nor --prelu-shared)",
        SlopeKind::PerUnit => "learned per unit (--prelu)",
        SlopeKind::Shared => "learned, shared (--prelu-shared)",
    };
    vec![
        ("--steps", steps.to_string()),
        ("--batch", batch.to_string()),
        ("--seq-len", seq_len.to_string()),
        ("--embed", embed.to_string()),
        ("--hidden", hidden.to_string()),
        ("--alpha", format!("{alpha:?}")),
        ("slopes", slopes.to_string()),
        ("--lr", format!("{lr:?}")),
        ("--weight-decay", format!("{weight_decay:?}")),
        ("--warmup", warmup.to_string()),
        ("--clip", format!("{clip:?}")),
        ("--irnn-scale", format!("{irnn_scale:?}")),
        ("--eval-every", eval_every.to_string()),
        ("--val-frac", format!("{val_frac:?}")),
        ("--seed", seed.to_string()),
        ("--knockout", format!("{knockout:?}")),
        ("--knockout-bias", format!("{knockout_bias:?}")),
        ("--patience", patience.to_string()),
        ("--dropout", format!("{dropout:?}")),
        ("--probe-every", probe_every.to_string()),
    ]
}

/// Refuses to continue `state` with other settings or another text, naming what differs.
pub fn check_same_run(state: &State, s: &Settings, text: &TextPrint, dir: &Path) -> Result<()> {
    let saved: HashMap<&str, &str> = (state.settings.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let now = setting_values(s);
    let mut diffs: Vec<String> = (now.iter())
        .filter(|(k, v)| saved.get(k) != Some(&v.as_str()))
        .map(|(k, v)| match saved.get(k) {
            Some(old) => format!("{k} {v} here, {old} in the saved run"),
            None => format!("{k} {v} here, not recorded in the saved run"),
        })
        .collect();
    for (k, _) in &state.settings {
        if !now.iter().any(|(n, _)| n == k) {
            diffs.push(format!("{k} recorded in the saved run, unknown here"));
        }
    }
    if !diffs.is_empty() {
        bail!(
            "cannot resume the run in {}: its settings differ ({}); resume with the settings \
             it was started with (the learning-rate schedule depends on --steps, so it cannot \
             change either)",
            dir.display(),
            diffs.join("; ")
        );
    }
    ensure!(
        state.text == *text,
        "cannot resume the run in {}: it was trained on another text ({} bytes, FNV-1a 64 \
         {:016x}; this one has {} bytes, {:016x}); resume with the same --data",
        dir.display(),
        state.text.bytes,
        state.text.hash,
        text.bytes,
        text.hash
    );
    Ok(())
}

/// The steps done by the run whose state is in `dir`, and whether it finished; `None` when
/// there is no readable state.
pub fn saved_step(dir: &Path) -> Option<(usize, bool)> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let done = v.get("done")?.as_u64()?.try_into().ok()?;
    Some((done, !v.get("finished")?.is_null()))
}

fn num(x: f64) -> Value {
    Value::String(match x.is_nan() {
        true => format!("NaN:{:016x}", x.to_bits()),
        false => format!("{x:?}"),
    })
}

fn slope_json(s: &SlopeStats) -> Value {
    json!({"mean": num(s.mean), "min": num(s.min), "max": num(s.max)})
}

fn point_json(p: &Point) -> Value {
    json!({
        "step": p.step,
        "train_loss": p.train_loss.map(num),
        "val_loss": num(p.val_loss),
        "inactive_pct": num(p.inactive_pct),
        "zero_grad_pct": p.zero_grad_pct.map(num),
        "died": p.died,
        "revived": p.revived,
        "knocked_alive": p.knocked_alive,
        "slope": slope_json(&p.slope),
    })
}

fn probe_json(p: &Probe) -> Value {
    json!({"step": p.step, "knocked_alive": p.knocked_alive, "slope": slope_json(&p.slope)})
}

/// Writes `bytes` to `path` and syncs them to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
}

/// Whether `name` is a tensor file name this module writes: `resume-` and 16 lowercase hex
/// digits, `.safetensors`.
fn is_tensor_file(name: &str) -> bool {
    let hex = name
        .strip_prefix(TENSORS_PREFIX)
        .and_then(|n| n.strip_suffix(TENSORS_SUFFIX));
    hex.is_some_and(|h| h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Saves `state` in `dir` (which must exist), atomically, replacing the state there.
pub fn save(dir: &Path, state: &State) -> Result<()> {
    let cpu: HashMap<&str, Tensor> = (state.tensors.iter())
        .map(|(k, t)| Ok((k.as_str(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let tmp = dir.join(TENSORS_TMP);
    candle_core::safetensors::save(&cpu, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let bytes = std::fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    let hash = fnv1a64(&bytes);
    (std::fs::OpenOptions::new().write(true).open(&tmp))
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    let name = format!("{TENSORS_PREFIX}{hash:016x}{TENSORS_SUFFIX}");
    rename(&tmp, &dir.join(&name))?;
    let settings: Vec<Value> = (state.settings.iter())
        .map(|(k, v)| json!([k, v]))
        .collect();
    let finished = state.finished.map(|f| match f {
        Finish::Steps => "steps",
        Finish::StoppedEarly => "stopped_early",
    });
    let json = json!({
        "format": FORMAT,
        "version": VERSION,
        "tensors": name,
        "tensors_fnv1a64": format!("{hash:016x}"),
        "settings": settings,
        "text": {"bytes": state.text.bytes, "fnv1a64": format!("{:016x}", state.text.hash)},
        "done": state.done,
        "finished": finished,
        "optimizer_steps": state.opt_steps.0,
        "slope_optimizer_steps": state.opt_steps.1,
        "best": state.best,
        "history": state.history.iter().map(point_json).collect::<Vec<_>>(),
        "probes": state.probes.iter().map(probe_json).collect::<Vec<_>>(),
        "grad_norms": state.grad_norms.iter().map(|&x| num(x)).collect::<Vec<_>>(),
        "clipped": state.clipped,
        "grad_seen": state.grad_seen,
        "active": state.active,
        "window": {"sum": num(state.window.0), "count": state.window.1},
        "stream_position": state.stream_pos,
        "dropout_draws": state.dropout_draws,
        "elapsed_secs": num(state.elapsed),
    });
    let tmp = dir.join(STATE_TMP);
    write_synced(&tmp, serde_json::to_string_pretty(&json)?.as_bytes())?;
    rename(&tmp, &dir.join(STATE_FILE))?;
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        // Best effort: makes the renames durable; the state is consistent either way.
        let _ = d.sync_all();
    }
    // Older tensor files are no longer referenced: removed, or left if that fails (harmless).
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = entry.file_name();
        if is_tensor_file(&old.to_string_lossy()) && old != name.as_str() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A JSON object and where it is in the state, for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Obj<'a> {
    fn of(v: &'a Value, at: String) -> Result<Self> {
        let map = v.as_object().with_context(|| match at.is_empty() {
            true => "the JSON is not an object".to_string(),
            false => format!("`{at}` is not an object"),
        })?;
        Ok(Self { map, at })
    }

    fn path(&self, key: &str) -> String {
        match self.at.is_empty() {
            true => key.to_string(),
            false => format!("{}.{key}", self.at),
        }
    }

    fn get(&self, key: &str) -> Result<&'a Value> {
        (self.map.get(key)).with_context(|| format!("`{}` is missing", self.path(key)))
    }

    fn u64(&self, key: &str) -> Result<u64> {
        let at = self.path(key);
        (self.get(key)?.as_u64()).with_context(|| format!("`{at}` is not a non-negative integer"))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        as_usize(self.get(key)?, &self.path(key))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key)? {
            Value::Null => Ok(None),
            v => as_usize(v, &self.path(key)).map(Some),
        }
    }

    fn f64(&self, key: &str) -> Result<f64> {
        as_f64(self.get(key)?, &self.path(key))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key)? {
            Value::Null => Ok(None),
            v => as_f64(v, &self.path(key)).map(Some),
        }
    }

    fn str(&self, key: &str) -> Result<&'a str> {
        let at = self.path(key);
        (self.get(key)?.as_str()).with_context(|| format!("`{at}` is not a string"))
    }

    fn array(&self, key: &str) -> Result<&'a Vec<Value>> {
        let at = self.path(key);
        (self.get(key)?.as_array()).with_context(|| format!("`{at}` is not an array"))
    }

    fn obj(&self, key: &str) -> Result<Obj<'a>> {
        Obj::of(self.get(key)?, self.path(key))
    }

    fn objs(&self, key: &str) -> Result<Vec<Obj<'a>>> {
        (self.array(key)?.iter().enumerate())
            .map(|(i, v)| Obj::of(v, format!("{}[{i}]", self.path(key))))
            .collect()
    }

    fn bools(&self, key: &str) -> Result<Vec<bool>> {
        let at = self.path(key);
        (self.array(key)?.iter())
            .map(|v| {
                v.as_bool()
                    .with_context(|| format!("`{at}` holds a non-boolean"))
            })
            .collect()
    }

    fn f64s(&self, key: &str) -> Result<Vec<f64>> {
        let at = self.path(key);
        (self.array(key)?.iter()).map(|v| as_f64(v, &at)).collect()
    }

    fn hex(&self, key: &str) -> Result<u64> {
        let s = self.str(key)?;
        ensure!(s.len() == 16, "`{}` is not 16 hex digits", self.path(key));
        u64::from_str_radix(s, 16).with_context(|| format!("`{}` is not hex", self.path(key)))
    }

    fn slope(&self) -> Result<SlopeStats> {
        let s = self.obj("slope")?;
        Ok(SlopeStats {
            mean: s.f64("mean")?,
            min: s.f64("min")?,
            max: s.f64("max")?,
        })
    }
}

fn as_usize(v: &Value, at: &str) -> Result<usize> {
    (v.as_u64().and_then(|n| usize::try_from(n).ok()))
        .with_context(|| format!("`{at}` is not a non-negative integer"))
}

fn as_f64(v: &Value, at: &str) -> Result<f64> {
    let s = v
        .as_str()
        .with_context(|| format!("`{at}` holds a number not written as a string"))?;
    let x = match s.strip_prefix("NaN:") {
        Some(hex) if hex.len() == 16 => u64::from_str_radix(hex, 16)
            .ok()
            .map(f64::from_bits)
            .filter(|x| x.is_nan()),
        Some(_) => None,
        None => s.parse::<f64>().ok().filter(|x| !x.is_nan()),
    };
    x.with_context(|| format!("`{at}` holds {s:?}, not a number"))
}

/// Reads the state saved in `dir`: refuses a missing, unreadable or inconsistent one (a tensor
/// file that does not match its checksum, a field missing or of the wrong kind), naming the
/// file and the field. Tensors are loaded on the CPU.
pub fn load(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        bail!(
            "no resume state in {} (no {STATE_FILE}): nothing to resume; run without --resume to \
             start a run (it saves its state there at every evaluation)",
            dir.display()
        );
    }
    let what = || format!("resume state {}", path.display());
    read(dir, &path).with_context(what)
}

fn read(dir: &Path, path: &Path) -> Result<State> {
    let text = std::fs::read_to_string(path).context("cannot read it")?;
    let json: Value = serde_json::from_str(&text).context("not valid JSON")?;
    let root = Obj::of(&json, String::new())?;
    ensure!(root.str("format")? == FORMAT, "`format` is not {FORMAT:?}");
    let version = root.u64("version")?;
    ensure!(
        version == VERSION,
        "version {version}; this program reads version {VERSION}"
    );
    let name = root.str("tensors")?;
    ensure!(
        is_tensor_file(name),
        "`tensors` names {name:?}, not a file `{TENSORS_PREFIX}<16 hex digits>{TENSORS_SUFFIX}`"
    );
    let tensor_path = dir.join(name);
    let bytes = std::fs::read(&tensor_path)
        .with_context(|| format!("cannot read its tensors, {}", tensor_path.display()))?;
    let hash = fnv1a64(&bytes);
    ensure!(
        hash == root.hex("tensors_fnv1a64")?,
        "its tensor file {} is corrupt (its checksum is {hash:016x}, not the recorded one)",
        tensor_path.display()
    );
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .with_context(|| format!("cannot read the tensors of {}", tensor_path.display()))?;
    let settings = (root.array("settings")?.iter())
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(k), Value::String(v)]) => Ok((k.clone(), v.clone())),
            _ => bail!("`settings` holds an entry that is not a pair of strings"),
        })
        .collect::<Result<Vec<_>>>()?;
    let text = root.obj("text")?;
    let finished = match root.get("finished")? {
        Value::Null => None,
        Value::String(s) if s == "steps" => Some(Finish::Steps),
        Value::String(s) if s == "stopped_early" => Some(Finish::StoppedEarly),
        _ => bail!("`finished` is neither null, \"steps\" nor \"stopped_early\""),
    };
    let history = (root.objs("history")?.iter())
        .map(|p| {
            Ok(Point {
                step: p.usize("step")?,
                train_loss: p.opt_f64("train_loss")?,
                val_loss: p.f64("val_loss")?,
                inactive_pct: p.f64("inactive_pct")?,
                zero_grad_pct: p.opt_f64("zero_grad_pct")?,
                died: p.usize("died")?,
                revived: p.usize("revived")?,
                knocked_alive: p.usize("knocked_alive")?,
                slope: p.slope()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let probes = (root.objs("probes")?.iter())
        .map(|p| {
            Ok(Probe {
                step: p.usize("step")?,
                knocked_alive: p.opt_usize("knocked_alive")?,
                slope: p.slope()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let window = root.obj("window")?;
    Ok(State {
        settings,
        text: TextPrint {
            bytes: text.usize("bytes")?,
            hash: text.hex("fnv1a64")?,
        },
        done: root.usize("done")?,
        finished,
        opt_steps: (
            root.usize("optimizer_steps")?,
            root.opt_usize("slope_optimizer_steps")?,
        ),
        best: root.usize("best")?,
        history,
        probes,
        grad_norms: root.f64s("grad_norms")?,
        clipped: root.usize("clipped")?,
        grad_seen: root.bools("grad_seen")?,
        active: root.bools("active")?,
        window: (window.f64("sum")?, window.usize("count")?),
        stream_pos: root.usize("stream_position")?,
        dropout_draws: root.u64("dropout_draws")?,
        elapsed: root.f64("elapsed_secs")?,
        tensors,
    })
}
