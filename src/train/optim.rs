//! AdamW with two learning rates (prompts vs. G/heads), a linear warm-up /
//! linear decay schedule and global-norm gradient clipping.

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::ParamsAdamW;

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

/// AdamW with the update of candle-nn's `AdamW` (the same tensor operations
/// in the same order), but whose moments can be saved and restored, so a
/// resumed run continues exactly where it stopped.
pub struct AdamW {
    slots: Vec<Slot>,
    /// Optimiser steps taken (the bias corrections depend on it).
    step_t: usize,
    params: ParamsAdamW,
}

struct Slot {
    name: String,
    var: Var,
    first_moment: Tensor,
    second_moment: Tensor,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, params: ParamsAdamW) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot { name, var, first_moment: zeros.clone(), second_moment: zeros })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, step_t: 0, params })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let ParamsAdamW { lr, beta1, beta2, eps, weight_decay } = self.params;
        let t = i32::try_from(self.step_t).unwrap_or(i32::MAX);
        let scale_m = 1f64 / (1f64 - beta1.powi(t));
        let scale_v = 1f64 / (1f64 - beta2.powi(t));
        for slot in &mut self.slots {
            let Some(g) = grads.get(&slot.var) else { continue };
            let next_m = ((&slot.first_moment * beta1)? + (g * (1.0 - beta1))?)?.detach();
            let next_v = ((&slot.second_moment * beta2)? + (g.sqr()? * (1.0 - beta2))?)?.detach();
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let decayed = (slot.var.as_tensor() * (1f64 - lr * weight_decay))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + eps)?)?;
            slot.var.set(&(decayed - (adjusted * lr)?)?)?;
            slot.first_moment = next_m;
            slot.second_moment = next_v;
        }
        Ok(())
    }
}

/// Two AdamW optimisers (prompts; G and heads) sharing a schedule.
pub struct Optimizers {
    prompts: AdamW,
    others: AdamW,
    lr_prompt: f64,
    lr_other: f64,
}

/// Checkpoint-name prefix of the optimiser state, beside the model's tensors.
const STATE_PREFIX: &str = "optimizer.";
const STEP_KEY: &str = "optimizer.step";

impl Optimizers {
    pub fn new(
        prompts: Vec<(String, Var)>,
        others: Vec<(String, Var)>,
        lr_prompt: f64,
        lr_other: f64,
        weight_decay: f64,
    ) -> Result<Self> {
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

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.prompts.slots.iter().chain(&self.others.slots)
    }

    /// Adds the moments (`optimizer.m.<name>`, `optimizer.v.<name>`) and the
    /// step count (`optimizer.step`) to a checkpoint's tensors.
    pub fn save_into(&self, tensors: &mut HashMap<String, Tensor>) -> Result<()> {
        for slot in self.slots() {
            tensors.insert(format!("{STATE_PREFIX}m.{}", slot.name), slot.first_moment.copy()?);
            tensors.insert(format!("{STATE_PREFIX}v.{}", slot.name), slot.second_moment.copy()?);
        }
        let step =
            u32::try_from(self.prompts.step_t).map_err(|_| anyhow::anyhow!("step count overflows the checkpoint"))?;
        tensors.insert(STEP_KEY.to_string(), Tensor::new(&[step], &candle_core::Device::Cpu)?);
        Ok(())
    }

    /// Restores what [`save_into`](Self::save_into) wrote. Returns the step
    /// count, or `None` (state left fresh) for a checkpoint without optimiser
    /// state, as older versions wrote them.
    pub fn load_from(&mut self, tensors: &HashMap<String, Tensor>) -> Result<Option<usize>> {
        let Some(step) = tensors.get(STEP_KEY) else { return Ok(None) };
        let step = step.flatten_all()?.to_vec1::<u32>().ok().and_then(|v| v.first().copied());
        let step = step.ok_or_else(|| anyhow::anyhow!("checkpoint tensor `{STEP_KEY}` is not a step count"))? as usize;
        for group in [&mut self.prompts, &mut self.others] {
            for slot in &mut group.slots {
                let var_shape = slot.var.shape().clone();
                let device = slot.var.device().clone();
                let moment = |kind: &str| -> Result<Tensor> {
                    let key = format!("{STATE_PREFIX}{kind}.{}", slot.name);
                    let t = tensors
                        .get(&key)
                        .ok_or_else(|| anyhow::anyhow!("checkpoint has no optimiser tensor `{key}`"))?;
                    if t.shape() != &var_shape {
                        bail!("checkpoint tensor `{key}` is {:?} but `{}` is {:?}", t.shape(), slot.name, var_shape);
                    }
                    Ok(t.to_dtype(slot.var.dtype())?.to_device(&device)?)
                };
                let (m, v) = (moment("m")?, moment("v")?);
                slot.first_moment = m;
                slot.second_moment = v;
            }
            group.step_t = step;
        }
        Ok(Some(step))
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
