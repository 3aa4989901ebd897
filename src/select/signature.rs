//! Task signatures: the frozen encoder's mean pooled embedding of a task's
//! inputs (no prompt). `train-source` records one in the package; `suggest`
//! compares it with the target's by cosine, from the index alone, to rank or
//! pre-filter candidates before any blob is downloaded.

use anyhow::Result;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use registry_index::Signature;

use super::features::TokenisedSample;
use crate::data::tokenize::TextEncoder;
use crate::data::Example;
use crate::model::Encoder;

/// Inputs a recorded signature averages over, at most.
pub const SIGNATURE_EXAMPLES: usize = 1000;

/// `count` examples drawn without replacement, the same for a given seed
/// (the scoring sample of `select::rank` and the signature sample alike).
pub fn sample(examples: &[Example], count: usize, seed: u64) -> Vec<&Example> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked: Vec<&Example> = examples.iter().collect();
    picked.shuffle(&mut rng);
    picked.truncate(count);
    picked
}

/// Mean of pooled feature rows.
pub fn mean_row(rows: &[Vec<f32>]) -> Vec<f32> {
    let d = rows.first().map(Vec::len).unwrap_or(0);
    let mut mean = vec![0f64; d];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += *v as f64;
        }
    }
    mean.into_iter().map(|m| (m / rows.len().max(1) as f64) as f32).collect()
}

/// The signature of `examples` (a deterministic sample of at most
/// [`SIGNATURE_EXAMPLES`]) under `encoder`.
pub fn task_signature(
    encoder: &dyn Encoder,
    tokenizer: &dyn TextEncoder,
    examples: &[Example],
    max_length: usize,
    device: &Device,
) -> Result<Signature> {
    let picked = sample(examples, SIGNATURE_EXAMPLES, 0);
    let tokens = TokenisedSample::new(&picked, tokenizer, max_length, 32)?;
    let rows = tokens.pooled_features(encoder, None, device)?;
    Ok(Signature::encode(&mean_row(&rows), rows.len() as u64))
}
