//! Task signatures: what a prompt's source data looks like to the frozen
//! model, compact enough for an index line, so a client can pre-filter
//! thousands of packages by similarity to its own data without downloading
//! a blob.
//!
//! The signature is the mean of the frozen encoder's pooled embeddings of the
//! source task's inputs (no prompt), as little-endian f16 in standard base64
//! (`hidden-size` × 2 bytes; 1 KiB of text for hidden size 384).

use serde::{Deserialize, Serialize};

/// `sig` in an index line and `[signature]` in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// How many source inputs the mean is over.
    pub examples: u64,
    /// The mean embedding: little-endian f16, base64.
    pub mean: String,
}

/// Why a signature cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature mean is not valid base64")]
    Base64,
    #[error("signature mean holds {found} bytes; hidden size {hidden} needs {}", 2 * hidden)]
    Length { found: usize, hidden: usize },
    #[error("signature mean holds a value that is not a finite number")]
    NotFinite,
    #[error("a signature needs at least one example")]
    NoExamples,
}

impl Signature {
    /// Encode `mean` (one value per hidden unit) over `examples` inputs.
    pub fn encode(mean: &[f32], examples: u64) -> Signature {
        use base64::Engine;
        let bytes: Vec<u8> = mean.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        Signature { examples, mean: base64::engine::general_purpose::STANDARD.encode(bytes) }
    }

    /// The mean as f32, checked against the model's hidden size.
    pub fn decode(&self, hidden: usize) -> Result<Vec<f32>, SignatureError> {
        use base64::Engine;
        if self.examples == 0 {
            return Err(SignatureError::NoExamples);
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.mean).map_err(|_| SignatureError::Base64)?;
        if bytes.len() != 2 * hidden {
            return Err(SignatureError::Length { found: bytes.len(), hidden });
        }
        let values: Vec<f32> = bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(SignatureError::NotFinite);
        }
        Ok(values)
    }
}

/// Cosine similarity of two signatures' means (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_f16_precision_and_checks_the_width() {
        let mean: Vec<f32> = (0..8).map(|i| i as f32 * 0.37 - 1.1).collect();
        let s = Signature::encode(&mean, 500);
        let back = s.decode(8).unwrap();
        assert!(mean.iter().zip(&back).all(|(a, b)| (a - b).abs() < 2e-3), "{back:?}");
        assert_eq!(s, Signature::encode(&mean, 500), "deterministic");
        assert_eq!(s.decode(9), Err(SignatureError::Length { found: 16, hidden: 9 }));
        assert_eq!(Signature { mean: "!!".into(), ..s.clone() }.decode(8), Err(SignatureError::Base64));
        assert_eq!(Signature { examples: 0, ..s }.decode(8), Err(SignatureError::NoExamples));
        assert!((cosine(&mean, &back) - 1.0).abs() < 1e-5);
    }
}
