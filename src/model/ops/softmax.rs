//! Fused (scaled, masked) softmax over the last dimension, with backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{exp_f32, f32_slice, min_rows, softmax_backward_in_place, sum_f32, vectorized};

/// softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::softmax_last_dim(x);
    }
    x.contiguous()?.apply_op1(MaskedSoftmax { scale: 1.0, mask: None })
}

/// Attention probabilities: softmax(scale * scores) over keys, with masked
/// keys (mask 0) given probability 0 — what adding a very large negative bias
/// does in the reference. `scores` is [b, h, Lq, Lk], `mask` is [b, Lk]
/// (f32 or u32, 1 = attend).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    if !super::use_fused(scores) {
        return super::reference::masked_softmax(scores, mask, scale);
    }
    let (b, h, lq, lk) = scores.dims4()?;
    let (mb, mk) = mask.dims2()?;
    if (mb, mk) != (b, lk) {
        candle_core::bail!("attention mask is [{mb}, {mk}] but the scores need [{b}, {lk}]");
    }
    let keep: Vec<bool> = mask
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|m| m != 0.0)
        .collect();
    scores.contiguous()?.apply_op1(MaskedSoftmax {
        scale: scale as f32,
        mask: Some(MaskRows { keep, rows_per_batch: h * lq }),
    })
}

#[derive(Clone)]
struct MaskRows {
    /// [b * Lk]: whether each key is attended.
    keep: Vec<bool>,
    /// Rows of the scores per batch element (h * Lq).
    rows_per_batch: usize,
}

impl MaskRows {
    fn for_row(&self, row: usize, len: usize) -> &[bool] {
        let b = row / self.rows_per_batch;
        &self.keep[b * len..(b + 1) * len]
    }
}

struct MaskedSoftmax {
    scale: f32,
    mask: Option<MaskRows>,
}

#[inline(always)]
fn softmax_row(x: &[f32], y: &mut [f32], scale: f32, keep: Option<&[bool]>) {
    let mut max = f32::NEG_INFINITY;
    match keep {
        Some(keep) => {
            for (&v, &k) in x.iter().zip(keep) {
                if k && v > max {
                    max = v;
                }
            }
        }
        None => {
            for &v in x {
                max = max.max(v);
            }
        }
    }
    if max == f32::NEG_INFINITY {
        // Every key masked: no attention at all (the reference would spread it uniformly
        // over padding, which no caller relies on).
        y.fill(0.0);
        return;
    }
    let shift = max * scale;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = exp_f32(v * scale - shift);
    }
    if let Some(keep) = keep {
        for (o, &k) in y.iter_mut().zip(keep) {
            if !k {
                *o = 0.0;
            }
        }
    }
    let sum = sum_f32(y);
    let inv = 1.0 / sum;
    for o in y.iter_mut() {
        *o *= inv;
    }
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "attempt-masked-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let n = l.dims().last().copied().unwrap_or(1);
        let mut y = vec![0f32; x.len()];
        if n > 0 {
            y.par_chunks_mut(n)
                .zip(x.par_chunks(n))
                .enumerate()
                .with_min_len(min_rows(n))
                .for_each(|(row, (y, x))| {
                    let keep = self.mask.as_ref().map(|m| m.for_row(row, n));
                    vectorized(#[inline(always)] || softmax_row(x, y, self.scale, keep))
                });
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.contiguous()?;
        Ok(Some(y.apply_op2_no_bwd(&g, &SoftmaxBackward { scale: self.scale })?))
    }
}

/// dx = scale · y ⊙ (g − Σ g ⊙ y); masked keys have y = 0 and get 0.
struct SoftmaxBackward {
    scale: f32,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "attempt-masked-softmax-bwd"
    }

    fn cpu_fwd(&self, ys: &CpuStorage, yl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = f32_slice(self.name(), ys, yl)?;
        let g = f32_slice(self.name(), gs, gl)?;
        let n = yl.dims().last().copied().unwrap_or(1);
        if g.len() != y.len() {
            candle_core::bail!("{}: gradient and saved output differ in size", self.name());
        }
        let mut dx = g.to_vec();
        if n > 0 {
            dx.par_chunks_mut(n)
                .zip(y.par_chunks(n))
                .with_min_len(min_rows(n))
                .for_each(|(dx, y)| vectorized(#[inline(always)] || softmax_backward_in_place(dx, y, self.scale)));
        }
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}
