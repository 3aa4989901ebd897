//! Fused layer norm over the last dimension with frozen weight and bias;
//! the backward pass returns the input gradient only.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{f32_slice, min_rows, param_vec};

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
        let mut y = vec![0f32; x.len()];
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
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(n)
            .zip(x.par_chunks(n).zip(g.par_chunks(n)))
            .with_min_len(min_rows(n))
            .for_each(|(dx, (x, g))| {
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
            });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
