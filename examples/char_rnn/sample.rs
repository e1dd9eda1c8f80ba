//! Text generation from a trained model: temperature and top-k sampling.

use crate::data::Vocab;
use crate::model::{last_probs, CharRnn};
use anyhow::{ensure, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to sample.
#[derive(Clone, Debug)]
pub struct SampleOpts {
    /// Text the model reads first (printed as the start of the sample).
    pub prime: String,
    /// Characters to generate after the prime.
    pub len: usize,
    /// Softmax temperature (> 0); lower is more conservative.
    pub temperature: f64,
    /// Keep only the `k` most likely characters (`None`: all).
    pub top_k: Option<usize>,
    /// Sampling seed.
    pub seed: u64,
}

impl SampleOpts {
    /// `len` characters after `prime` at temperature 0.8, no top-k cut.
    pub fn new(prime: &str, len: usize, seed: u64) -> Self {
        Self {
            prime: prime.into(),
            len,
            temperature: 0.8,
            top_k: None,
            seed,
        }
    }
}

/// Draws an index from `probs` keeping only the `top_k` largest.
fn draw(probs: &[f32], top_k: Option<usize>, rng: &mut StdRng) -> u32 {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order.truncate(top_k.unwrap_or(probs.len()).clamp(1, probs.len()));
    let total: f64 = order.iter().map(|&i| probs[i] as f64).sum();
    let mut u = rng.random::<f64>() * total;
    for &i in &order {
        u -= probs[i] as f64;
        if u < 0.0 {
            return i as u32;
        }
    }
    order[order.len() - 1] as u32
}

/// The prime followed by `len` generated characters.
pub fn sample(model: &CharRnn, vocab: &Vocab, o: &SampleOpts) -> Result<String> {
    ensure!(!o.prime.is_empty(), "--prime must not be empty");
    ensure!(
        o.temperature > 0.0 && o.temperature.is_finite(),
        "--temperature must be positive and finite, got {}",
        o.temperature
    );
    ensure!(o.top_k != Some(0), "--top-k must be at least 1");
    let model = model.detached();
    let ids = vocab.encode(&o.prime)?;
    let dev = model.zero_state(1)?.device().clone();
    let (mut rng, mut text) = (StdRng::seed_from_u64(o.seed), o.prime.clone());
    let mut out = model.forward(
        &Tensor::from_slice(&ids, (1, ids.len()), &dev)?,
        &model.zero_state(1)?,
        false,
    )?;
    for _ in 0..o.len {
        let next = draw(&last_probs(&out.logits, o.temperature)?, o.top_k, &mut rng);
        text.push(vocab.decode(next));
        out = model.forward(&Tensor::from_slice(&[next], (1, 1), &dev)?, &out.h, false)?;
    }
    Ok(text)
}
