//! Fused layer norm over the last dimension with frozen weight and bias;
//! the backward pass returns the input gradient only.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{dot_f32, f32_slice, min_rows, param_vec, sum_f32, vectorized};

/// (x − mean) / sqrt(var + eps) · w + b over the last dimension.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::layer_norm(x, w, b, eps);
    }
    let d = x.dim(candle_core::D::Minus1)?;
    if w.elem_count() != d || b.elem_count() != d {
        candle_core::bail!("layer norm over {d} features got weight {:?} and bias {:?}", w.shape(), b.shape());
    }
    let op = LayerNorm { w: Arc::new(param_vec(w)?), b: Arc::new(param_vec(b)?), eps: eps as f32 };
    x.contiguous()?.apply_op1(op)
}

/// layer_norm(x + residual): the post-LN residual block in one pass (no
/// intermediate sum tensor, one backward kernel serving both inputs).
pub fn add_layer_norm(x: &Tensor, residual: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if !super::use_fused(x) || !super::use_fused(residual) {
        return super::reference::layer_norm(&(x + residual)?, w, b, eps);
    }
    if x.dims() != residual.dims() {
        bail!("residual add of {:?} and {:?}", x.dims(), residual.dims());
    }
    let d = x.dim(candle_core::D::Minus1)?;
    if w.elem_count() != d || b.elem_count() != d {
        bail!("layer norm over {d} features got weight {:?} and bias {:?}", w.shape(), b.shape());
    }
    let op = AddLayerNorm(LayerNorm { w: Arc::new(param_vec(w)?), b: Arc::new(param_vec(b)?), eps: eps as f32 });
    x.contiguous()?.apply_op2(&residual.contiguous()?, op)
}

struct AddLayerNorm(LayerNorm);

impl CustomOp2 for AddLayerNorm {
    fn name(&self) -> &'static str {
        "attempt-add-layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = f32_slice(self.name(), s1, l1)?;
        let r = f32_slice(self.name(), s2, l2)?;
        let n = self.0.w.len();
        let mut y = super::fill::zeros(a.len());
        y.par_chunks_mut(n).zip(a.par_chunks(n).zip(r.par_chunks(n))).with_min_len(min_rows(n)).for_each(
            |(y, (a, r))| {
                for ((o, &a), &r) in y.iter_mut().zip(a).zip(r) {
                    *o = a + r;
                }
                let (mean, rstd) = stats(y, self.0.eps);
                for ((o, &w), &b) in y.iter_mut().zip(self.0.w.iter()).zip(self.0.b.iter()) {
                    *o = (*o - mean) * rstd * w + b;
                }
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, a: &Tensor, r: &Tensor, _y: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Recomputing the sum is cheaper than keeping it alive for backward.
        let sum = a.apply_op2_no_bwd(r, &Sum)?;
        let g = g.contiguous()?;
        let dx = sum.apply_op2_no_bwd(&g, &LayerNormBackward { w: self.0.w.clone(), eps: self.0.eps })?;
        Ok((Some(dx.clone()), Some(dx)))
    }
}

/// Plain elementwise sum of two contiguous tensors (no graph).
struct Sum;

impl CustomOp2 for Sum {
    fn name(&self) -> &'static str {
        "attempt-sum"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = f32_slice(self.name(), s1, l1)?;
        let b = f32_slice(self.name(), s2, l2)?;
        Ok((CpuStorage::F32(a.iter().zip(b).map(|(x, y)| x + y).collect()), l1.shape().clone()))
    }
}

struct LayerNorm {
    w: Arc<Vec<f32>>,
    b: Arc<Vec<f32>>,
    eps: f32,
}

/// Mean and 1/std of one row (two passes: numerically safe).
fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp1 for LayerNorm {
    fn name(&self) -> &'static str {
        "attempt-layer-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let n = self.w.len();
        let mut y = super::fill::zeros(x.len());
        y.par_chunks_mut(n).zip(x.par_chunks(n)).with_min_len(min_rows(n)).for_each(|(y, x)| {
            let (mean, rstd) = stats(x, self.eps);
            for (((o, &v), &w), &b) in y.iter_mut().zip(x).zip(self.w.iter()).zip(self.b.iter()) {
                *o = (v - mean) * rstd * w + b;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.contiguous()?;
        let op = LayerNormBackward { w: self.w.clone(), eps: self.eps };
        Ok(Some(x.apply_op2_no_bwd(&g, &op)?))
    }
}

/// dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)) with ĝ = g ⊙ w; mean and rstd
/// are recomputed from x rather than kept from the forward pass.
struct LayerNormBackward {
    w: Arc<Vec<f32>>,
    eps: f32,
}

impl CustomOp2 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "attempt-layer-norm-bwd"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), xs, xl)?;
        let g = f32_slice(self.name(), gs, gl)?;
        let n = self.w.len();
        let mut dx = super::fill::zeros(x.len());
        dx.par_chunks_mut(n).zip(x.par_chunks(n).zip(g.par_chunks(n))).with_min_len(min_rows(n)).for_each(
            |(dx, (x, g))| {
                let (mean, rstd) = stats(x, self.eps);
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                for ((&x, &g), &w) in x.iter().zip(g).zip(self.w.iter()) {
                    let gh = g * w;
                    sum_g += gh;
                    sum_gx += gh * (x - mean) * rstd;
                }
                let inv_n = 1.0 / n as f32;
                let (mean_g, mean_gx) = (sum_g * inv_n, sum_gx * inv_n);
                for (((d, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(self.w.iter()) {
                    let xh = (x - mean) * rstd;
                    *d = rstd * (g * w - mean_g - xh * mean_gx);
                }
            },
        );
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

/// Layer norm over rows of `n`, keeping what backward needs: each row of `x`
/// becomes x̂ = (x − mean) · rstd in place, `rstd` gets the row's 1/std, and
/// `y` = x̂ ⊙ w + b.
pub(super) fn normalize_rows(x: &mut [f32], rstd: &mut [f32], y: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = w.len();
    x.par_chunks_mut(n).zip(rstd.par_iter_mut()).zip(y.par_chunks_mut(n)).with_min_len(min_rows(n)).for_each(
        |((x, r), y)| {
            vectorized(
                #[inline(always)]
                || {
                    let inv_n = 1.0 / n as f32;
                    let mean = sum_f32(x) * inv_n;
                    for v in x.iter_mut() {
                        *v -= mean;
                    }
                    *r = 1.0 / (dot_f32(x, x) * inv_n + eps).sqrt();
                    for (((v, o), &w), &b) in x.iter_mut().zip(y.iter_mut()).zip(w).zip(b) {
                        *v *= *r;
                        *o = *v * w + b;
                    }
                },
            )
        },
    );
}

/// The backward of [`normalize_rows`] in place: `g` holds dL/dy on entry and
/// dL/dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), ĝ = g ⊙ w, on return.
pub(super) fn normalize_rows_backward(g: &mut [f32], xhat: &[f32], rstd: &[f32], w: &[f32]) {
    let n = w.len();
    g.par_chunks_mut(n).zip(xhat.par_chunks(n)).zip(rstd.par_iter()).with_min_len(min_rows(n)).for_each(
        |((g, xh), &r)| {
            vectorized(
                #[inline(always)]
                || {
                    for (g, &w) in g.iter_mut().zip(w) {
                        *g *= w;
                    }
                    let inv_n = 1.0 / n as f32;
                    let (mean_g, mean_gx) = (sum_f32(g) * inv_n, dot_f32(g, xh) * inv_n);
                    for (g, &xh) in g.iter_mut().zip(xh) {
                        *g = r * (*g - mean_g - xh * mean_gx);
                    }
                },
            )
        },
    );
}
