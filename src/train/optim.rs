//! AdamW with two learning rates (prompts vs. G/heads), a linear warm-up /
//! linear decay schedule and global-norm gradient clipping.

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::Var;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

/// Linear warm-up to the base rate over `warmup` steps, then linear decay to
/// 0 at `total` steps. `step` is 0-based (the step about to be taken).
pub fn linear_schedule(step: usize, warmup: usize, total: usize) -> f64 {
    if warmup > 0 && step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    if total <= warmup {
        return 1.0;
    }
    ((total - step.min(total)) as f64 / (total - warmup) as f64).max(0.0)
}

/// Scale every gradient so their global L2 norm is at most `max_norm`.
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = total.sqrt();
    if !norm.is_finite() {
        bail!("gradient norm is {norm}; lower the learning rate");
    }
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = (g * scale)?;
                grads.insert(v, scaled);
            }
        }
    }
    Ok(norm)
}

/// Two AdamW optimisers sharing a schedule.
pub struct Optimizers {
    prompts: AdamW,
    others: AdamW,
    lr_prompt: f64,
    lr_other: f64,
}

impl Optimizers {
    pub fn new(prompts: Vec<Var>, others: Vec<Var>, lr_prompt: f64, lr_other: f64, weight_decay: f64) -> Result<Self> {
        let params = |lr| ParamsAdamW { lr, weight_decay, ..ParamsAdamW::default() };
        Ok(Self {
            prompts: AdamW::new(prompts, params(lr_prompt))?,
            others: AdamW::new(others, params(lr_other))?,
            lr_prompt,
            lr_other,
        })
    }

    /// Apply the schedule factor, then step both.
    pub fn step(&mut self, grads: &GradStore, factor: f64) -> Result<()> {
        self.prompts.set_learning_rate(self.lr_prompt * factor);
        self.others.set_learning_rate(self.lr_other * factor);
        self.prompts.step(grads)?;
        self.others.step(grads)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert_eq!(linear_schedule(0, 4, 12), 0.25);
        assert_eq!(linear_schedule(3, 4, 12), 1.0);
        assert_eq!(linear_schedule(4, 4, 12), 1.0);
        assert_eq!(linear_schedule(8, 4, 12), 0.5);
        assert_eq!(linear_schedule(12, 4, 12), 0.0);
        assert_eq!(linear_schedule(5, 0, 10), 0.5);
    }

    #[test]
    fn clipping_scales_to_max_norm() -> Result<()> {
        let v = Var::new(&[3f32, 4.0], &candle_core::Device::Cpu)?;
        let loss = (v.as_tensor() * 1.0)?.sum_all()?; // grad = [1, 1]
        let mut grads = loss.backward()?;
        let w = Var::new(&[0f32], &candle_core::Device::Cpu)?;
        grads.insert(&v, candle_core::Tensor::new(&[3f32, 4.0], &candle_core::Device::Cpu)?);
        let norm = clip_grad_norm(&mut grads, &[v.clone(), w], 1.0)?;
        assert!((norm - 5.0).abs() < 1e-6);
        let g = grads.get(&v).map(|g| g.to_vec1::<f32>()).transpose()?.unwrap_or_default();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5, "{g:?}");
        Ok(())
    }
}
