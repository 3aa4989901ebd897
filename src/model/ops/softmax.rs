//! Fused (scaled, masked or biased) softmax over the last dimension, with
//! backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{f32_slice, min_rows, softmax_backward_in_place, softmax_in_place, vectorized, with_cpu_slices};

/// softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::softmax_last_dim(x);
    }
    x.contiguous()?.apply_op1(MaskedSoftmax { scale: 1.0, mask: None, bias: None })
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
        bias: None,
    })
}

/// softmax(scores + bias) over the last dimension, where `bias` is a constant
/// (T5's relative position bias with its masks folded in, very negative for
/// masked keys) that broadcasts to `scores`. No gradient is computed for the
/// bias. Fused: the backward reads only the output, where the composed
/// version keeps five score-sized intermediates alive.
pub fn biased_softmax(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !super::use_fused(scores) || !super::use_fused(bias) {
        return super::reference::biased_softmax(scores, bias);
    }
    let bias = bias.broadcast_as(scores.shape())?.contiguous()?;
    scores.contiguous()?.apply_op1(MaskedSoftmax { scale: 1.0, mask: None, bias: Some(bias) })
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

/// softmax(scale · (x + bias)) with masked keys excluded; `bias` (when
/// given) has x's shape and is contiguous.
struct MaskedSoftmax {
    scale: f32,
    mask: Option<MaskRows>,
    bias: Option<Tensor>,
}

impl MaskedSoftmax {
    /// The forward pass on the rows of length `n` of `x`, in parallel.
    fn rows(&self, x: &[f32], bias: Option<&[f32]>, n: usize) -> Result<Vec<f32>> {
        if bias.is_some_and(|b| b.len() != x.len()) {
            candle_core::bail!("{}: bias and scores differ in size", self.name());
        }
        let mut y = super::fill::zeros(x.len());
        if n > 0 {
            y.par_chunks_mut(n).zip(x.par_chunks(n)).enumerate().with_min_len(min_rows(n)).for_each(|(row, (y, x))| {
                let keep = self.mask.as_ref().map(|m| m.for_row(row, n));
                let bias = bias.map(|b| &b[row * n..(row + 1) * n]);
                vectorized(
                    #[inline(always)]
                    || {
                        y.copy_from_slice(x);
                        if let Some(bias) = bias {
                            for (y, b) in y.iter_mut().zip(bias) {
                                *y += b;
                            }
                        }
                        softmax_in_place(y, self.scale, keep)
                    },
                )
            });
        }
        Ok(y)
    }
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "attempt-masked-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let n = l.dims().last().copied().unwrap_or(1);
        let y = match &self.bias {
            Some(bias) => with_cpu_slices(self.name(), &[bias], |b| self.rows(x, Some(b[0]), n))?,
            None => self.rows(x, None, n)?,
        };
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
            dx.par_chunks_mut(n).zip(y.par_chunks(n)).with_min_len(min_rows(n)).for_each(|(dx, y)| {
                vectorized(
                    #[inline(always)]
                    || softmax_backward_in_place(dx, y, self.scale),
                )
            });
        }
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}
