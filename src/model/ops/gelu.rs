//! GELU with the exact erf form (BERT's `gelu`), with backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{exp_f32, f32_slice, vectorized};

/// x · Φ(x), Φ the standard normal CDF (not the tanh approximation).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::gelu_erf(x);
    }
    x.contiguous()?.apply_op1(GeluErf)
}

const CHUNK: usize = 4096;

/// erf with max error 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), written
/// branch-free so the loops over it vectorise except for `exp`.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = 1.0 - t * exp_f32(poly);
    r.copysign(x)
}

// Loop bodies are `inline(always)` so they compile inside `vectorized`'s
// AVX2 + FMA function.
#[inline(always)]
fn gelu_chunk(y: &mut [f32], x: &[f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn gelu_backward_chunk(d: &mut [f32], x: &[f32], g: &[f32]) {
    let inv_sqrt_2pi = 0.398_942_3_f32;
    for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
        let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = inv_sqrt_2pi * exp_f32(-0.5 * x * x);
        *d = g * (cdf + x * pdf);
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "attempt-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
            vectorized(#[inline(always)] || gelu_chunk(y, x))
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluErfBackward)?))
    }
}

/// d/dx [x Φ(x)] = Φ(x) + x φ(x).
struct GeluErfBackward;

impl CustomOp2 for GeluErfBackward {
    fn name(&self) -> &'static str {
        "attempt-gelu-erf-bwd"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), xs, xl)?;
        let g = f32_slice(self.name(), gs, gl)?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(|(d, (x, g))| {
            vectorized(#[inline(always)] || gelu_backward_chunk(d, x, g))
        });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
