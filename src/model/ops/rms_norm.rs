//! T5's layer norm: mean-free RMS normalisation with a weight and no bias,
//! `y = w · x / sqrt(mean(x²) + eps)` over the last dimension.
//!
//! `candle_nn::ops::rms_norm` returns a tensor detached from the graph (no
//! gradient at all), so a prompt trained through it silently never moves. This
//! op is fused for speed (row-parallel kernels, the same ones the fused T5
//! encoder block runs) and has a backward pass: the input gradient is always
//! computed; the weight gradient only when the weight itself is being trained.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::cpu::{dot_f32, f32_slice};

/// Rows handed to one rayon task; keeps task overhead small for narrow rows.
const MIN_ROWS_PER_TASK: usize = 16;

/// RMS-normalises `x` ([.., d]) over its last dimension and scales by `weight` ([d]).
///
/// f32 on CPU runs the fused op; other dtypes/devices fall back to composed
/// candle ops (same maths, slower, also differentiable).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if weight.dims() != [d] {
        candle_core::bail!(
            "rms_norm: weight has shape {:?}, expected [{d}] to match the input's last dimension",
            weight.dims()
        )
    }
    // (A zero-width input has no rows for the kernels to split.)
    if d == 0 || !super::use_fused(x) || !super::use_fused(weight) {
        return rms_norm_composed(x, weight, eps);
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, RmsNorm { eps: eps as f32 })
}

/// The same normalisation from primitive candle ops (reference for tests and
/// the fallback off CPU).
pub fn rms_norm_composed(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv_rms = (variance + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv_rms)?.broadcast_mul(weight)
}

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "t5-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        ws: &CpuStorage,
        ws_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), xs, xs_layout)?;
        let w = f32_slice(self.name(), ws, ws_layout)?;
        let mut out = super::fill::zeros(x.len());
        let mut rstd = vec![0f32; x.len() / w.len().max(1)];
        rms_rows(x, w, self.eps, &mut rstd, &mut out);
        Ok((CpuStorage::F32(out), xs_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(weight, &grad, &RmsNormInputGrad { eps: self.eps })?;
        // Frozen weights (plain tensors) are not tracked: skip that reduction.
        let dw = if weight.track_op() {
            let d = weight.dim(0)?;
            let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
            let x_hat = x.broadcast_mul(&(variance + self.eps as f64)?.sqrt()?.recip()?)?;
            let rows = x.elem_count() / d;
            Some((grad * x_hat)?.reshape((rows, d))?.sum(0)?)
        } else {
            None
        };
        Ok((Some(dx), dw))
    }
}

/// dx = r·(ĝ − x·r²·mean(ĝ·x)), ĝ = g·w, r = 1/sqrt(mean(x²)+eps); recomputes
/// r rather than keeping it from forward.
struct RmsNormInputGrad {
    eps: f32,
}

impl CustomOp3 for RmsNormInputGrad {
    fn name(&self) -> &'static str {
        "t5-rms-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        ws: &CpuStorage,
        ws_layout: &Layout,
        gs: &CpuStorage,
        gs_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), xs, xs_layout)?;
        let w = f32_slice(self.name(), ws, ws_layout)?;
        let d = w.len().max(1);
        let rstd: Vec<f32> = x.par_chunks(d).with_min_len(MIN_ROWS_PER_TASK).map(|x| inv_rms(x, self.eps)).collect();
        // The backward kernel uses the gradient as scratch: a copy.
        let mut g = f32_slice(self.name(), gs, gs_layout)?.to_vec();
        let mut dx = super::fill::zeros(x.len());
        rms_rows_backward_add(&mut dx, &mut g, x, w, &rstd);
        Ok((CpuStorage::F32(dx), xs_layout.shape().clone()))
    }
}

/// 1/√(mean(x²) + eps) of one row.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot_f32(x, x) / x.len() as f32 + eps).sqrt()
}

/// Slice kernels for the fused T5 encoder layer: y = w ⊙ x · r per row of
/// `w.len()`, with r = 1/√(mean(x²) + eps) kept in `rstd`.
pub(super) fn rms_rows(x: &[f32], w: &[f32], eps: f32, rstd: &mut [f32], y: &mut [f32]) {
    let d = w.len();
    y.par_chunks_mut(d).zip(x.par_chunks(d)).zip(rstd.par_iter_mut()).with_min_len(MIN_ROWS_PER_TASK).for_each(
        |((y, x), r)| {
            super::vectorized(
                #[inline(always)]
                || {
                    *r = inv_rms(x, eps);
                    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                        *y = x * *r * w;
                    }
                },
            )
        },
    );
}

/// dst += the input gradient of [`rms_rows`] for output gradient `g`:
/// r·ĝ − r³·mean(ĝ ⊙ x)·x with ĝ = g ⊙ w. `g` is used as scratch (left as ĝ).
pub(super) fn rms_rows_backward_add(dst: &mut [f32], g: &mut [f32], x: &[f32], w: &[f32], rstd: &[f32]) {
    let d = w.len();
    dst.par_chunks_mut(d)
        .zip(g.par_chunks_mut(d))
        .zip(x.par_chunks(d).zip(rstd.par_iter()))
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|((dst, g), (x, &r))| {
            super::vectorized(
                #[inline(always)]
                || {
                    for (g, &w) in g.iter_mut().zip(w) {
                        *g *= w;
                    }
                    let coef = r * r * r * dot_f32(g, x) / d as f32;
                    for ((o, &g), &x) in dst.iter_mut().zip(g.iter()).zip(x) {
                        *o += r * g - coef * x;
                    }
                },
            )
        });
}
