//! A tiny frozen encoder for tests and examples: an embedding table, one
//! single-head self-attention layer and a feed-forward layer, post-LN, with
//! fixed random weights held as plain tensors (never trained).

use candle_core::{DType, Device, Result, Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::compose::layer_norm;
use crate::model::Encoder;

pub struct TinyEncoder {
    embeddings: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    w1: Tensor,
    w2: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    hidden: usize,
}

fn rand_matrix(rng: &mut StdRng, rows: usize, cols: usize, scale: f32, device: &Device) -> Result<Tensor> {
    // Sum of uniforms: cheap, roughly normal, deterministic.
    let data: Vec<f32> =
        (0..rows * cols).map(|_| (0..3).map(|_| rng.gen_range(-1f32..1.0)).sum::<f32>() * scale).collect();
    Tensor::from_vec(data, (rows, cols), device)
}

impl TinyEncoder {
    pub fn new(vocab_size: usize, hidden: usize, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = 1.0 / (hidden as f32).sqrt();
        Ok(Self {
            embeddings: rand_matrix(&mut rng, vocab_size, hidden, 0.6, device)?,
            wq: rand_matrix(&mut rng, hidden, hidden, s, device)?,
            wk: rand_matrix(&mut rng, hidden, hidden, s, device)?,
            wv: rand_matrix(&mut rng, hidden, hidden, s, device)?,
            wo: rand_matrix(&mut rng, hidden, hidden, s, device)?,
            w1: rand_matrix(&mut rng, hidden, 2 * hidden, s, device)?,
            w2: rand_matrix(&mut rng, 2 * hidden, hidden, s / 1.4, device)?,
            ln_w: Tensor::ones(hidden, DType::F32, device)?,
            ln_b: Tensor::zeros(hidden, DType::F32, device)?,
            hidden,
        })
    }

    /// Number of frozen parameters.
    pub fn parameter_count(&self) -> usize {
        [&self.embeddings, &self.wq, &self.wk, &self.wv, &self.wo, &self.w1, &self.w2, &self.ln_w, &self.ln_b]
            .iter()
            .map(|t| t.elem_count())
            .sum()
    }
}

impl Encoder for TinyEncoder {
    fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        self.embeddings.index_select(&ids.flatten_all()?, 0)?.reshape((b, l, self.hidden))
    }

    fn encode(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let q = x.broadcast_matmul(&self.wq)?;
        let k = x.broadcast_matmul(&self.wk)?;
        let v = x.broadcast_matmul(&self.wv)?;
        let scores = (q.matmul(&k.transpose(1, 2)?)? / (d as f64).sqrt())?;
        // Padding keys get a large negative bias.
        let bias = ((mask.to_dtype(DType::F32)?.reshape((b, 1, l))? - 1.0)? * 1e4)?;
        let attn = candle_nn::ops::softmax(&scores.broadcast_add(&bias)?, D::Minus1)?;
        let ctx = attn.matmul(&v)?.broadcast_matmul(&self.wo)?;
        let h = layer_norm(&(x + ctx)?, &self.ln_w, &self.ln_b, 1e-5)?;
        let ff = h.broadcast_matmul(&self.w1)?.gelu()?.broadcast_matmul(&self.w2)?;
        layer_norm(&(h + ff)?, &self.ln_w, &self.ln_b, 1e-5)
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }
}
