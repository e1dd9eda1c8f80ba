//! Text loading, the character vocabulary, the train/validation split and the batch streams.

use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// The characters of a corpus, sorted; a character's id is its index.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    chars: Vec<char>,
    index: HashMap<char, u32>,
}

impl Vocab {
    /// The distinct characters of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::build(chars)
    }

    /// A vocabulary from stored code points (a checkpoint's); refuses invalid or repeated ones.
    pub fn from_code_points(points: &[u32]) -> Result<Self> {
        let chars = (points.iter())
            .map(|&p| char::from_u32(p).with_context(|| format!("invalid code point {p:#x}")))
            .collect::<Result<Vec<_>>>()?;
        let vocab = Self::build(chars);
        ensure!(vocab.index.len() == points.len(), "repeated characters");
        Ok(vocab)
    }

    fn build(chars: Vec<char>) -> Self {
        let index = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32))
            .collect();
        Self { chars, index }
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// The characters as code points, in id order.
    pub fn code_points(&self) -> Vec<u32> {
        self.chars.iter().map(|&c| c as u32).collect()
    }

    /// The ids of `text`; names the first character the vocabulary lacks.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        (text.chars())
            .map(|c| match self.index.get(&c) {
                Some(&i) => Ok(i),
                None => bail!(
                    "character {c:?} is not in the checkpoint's vocabulary of {} characters \
                     (a checkpoint trained on other text?)",
                    self.len()
                ),
            })
            .collect()
    }

    /// The character of id `i`.
    pub fn decode(&self, i: u32) -> char {
        self.chars[i as usize]
    }

    /// Whether `c` is in the vocabulary.
    pub fn contains(&self, c: char) -> bool {
        self.index.contains_key(&c)
    }
}

/// Reads a UTF-8 text file, refusing a missing, unreadable or empty one.
pub fn read_text(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read data file {}", path.display()))?;
    ensure!(!text.is_empty(), "data file {} is empty", path.display());
    Ok(text)
}

/// A corpus encoded and split: the last `val_frac` of the characters for validation.
pub struct Corpus {
    /// The vocabulary of the whole text.
    pub vocab: Vocab,
    /// Training ids.
    pub train: Vec<u32>,
    /// Validation ids.
    pub val: Vec<u32>,
}

impl Corpus {
    /// Splits `text`; both parts must hold at least one sequence of `seq_len` inputs plus its
    /// target.
    pub fn new(text: &str, val_frac: f64, seq_len: usize) -> Result<Self> {
        let vocab = Vocab::from_text(text);
        let mut train = vocab.encode(text)?;
        let n = train.len();
        let n_val = (n as f64 * val_frac).round() as usize;
        let need = seq_len + 1;
        if n_val < need || n - n_val < need {
            bail!(
                "data too short: {n} characters give {} for training and {n_val} for validation \
                 ({:.0}%), each part needs at least one sequence of --seq-len {seq_len} + 1 = \
                 {need}",
                n - n_val,
                val_frac * 100.0
            );
        }
        let val = train.split_off(n - n_val);
        Ok(Self { vocab, train, val })
    }
}

/// `ids` cut into `rows` contiguous streams read `seq_len` characters at a time, so that the
/// hidden state at the end of one batch is the right start for the next (truncated BPTT).
pub struct Streams {
    data: Vec<u32>,
    rows: usize,
    row_len: usize,
    seq_len: usize,
    pos: usize,
}

/// One batch: inputs and next-character targets, both `rows x seq_len`, row-major.
pub struct Batch {
    /// Input ids.
    pub x: Vec<u32>,
    /// Target ids.
    pub y: Vec<u32>,
    /// Rows in the batch.
    pub rows: usize,
    /// True on the first batch of a pass: the carried hidden state must restart from zero.
    pub restart: bool,
}

impl Streams {
    /// Up to `batch` streams (fewer when `ids` is short); `ids` needs `seq_len + 1` characters.
    pub fn new(ids: &[u32], batch: usize, seq_len: usize) -> Result<Self> {
        ensure!(
            batch > 0 && seq_len > 0,
            "--batch and --seq-len must be positive"
        );
        let rows = batch.min(ids.len() / (seq_len + 1));
        ensure!(
            rows > 0,
            "{} characters are fewer than one sequence of {seq_len} + 1",
            ids.len()
        );
        let row_len = ids.len() / rows;
        let data = ids[..rows * row_len].to_vec();
        Ok(Self {
            data,
            rows,
            row_len,
            seq_len,
            pos: 0,
        })
    }

    /// Number of batches in one pass over the streams.
    pub fn batches_per_pass(&self) -> usize {
        (self.row_len - 1) / self.seq_len
    }

    /// Number of streams (rows of each batch).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The cursor: where in each stream the next batch starts (before wrapping round).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Puts the cursor at `pos`, a value [`Streams::position`] gave: a multiple of the sequence
    /// length within the streams.
    pub fn seek(&mut self, pos: usize) -> Result<()> {
        ensure!(
            pos.is_multiple_of(self.seq_len) && pos <= self.row_len,
            "stream position {pos} is not a multiple of --seq-len {} within streams of {} \
             characters",
            self.seq_len,
            self.row_len
        );
        self.pos = pos;
        Ok(())
    }

    /// The next batch, wrapping round to the start after the last full one.
    pub fn next_batch(&mut self) -> Batch {
        if self.pos + self.seq_len + 1 > self.row_len {
            self.pos = 0;
        }
        let batch = self.batch_at(self.pos / self.seq_len);
        self.pos += self.seq_len;
        batch
    }

    /// Batch `i` of a pass (`i < batches_per_pass()`), without moving the cursor.
    pub fn batch_at(&self, i: usize) -> Batch {
        let (t, restart) = (self.seq_len, i == 0);
        let p = i * t;
        let mut x = Vec::with_capacity(self.rows * t);
        let mut y = Vec::with_capacity(self.rows * t);
        for row in self.data.chunks_exact(self.row_len) {
            x.extend_from_slice(&row[p..p + t]);
            y.extend_from_slice(&row[p + 1..p + t + 1]);
        }
        Batch {
            x,
            y,
            rows: self.rows,
            restart,
        }
    }
}
