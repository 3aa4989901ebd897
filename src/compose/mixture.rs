//! The prompt mixture: instance prompt = P_target + Σ_j a_j P_j, where j runs
//! over the frozen source prompts and the target prompt itself (as in the
//! official ATTEMPT code), a = softmax(G scores).

use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

use super::attention::AttentionModule;

/// How the target prompt is built from the sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Attentional mixture of sources and target (ATTEMPT).
    Attempt,
    /// Plain prompt tuning: the target prompt alone.
    Pt,
    /// SPoT: target initialised from a source prompt, then trained as `pt`.
    Spot,
    /// Ablation: constant weights 1/(t+1) over sources and target.
    Uniform,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Attempt => "attempt",
            Method::Pt => "pt",
            Method::Spot => "spot",
            Method::Uniform => "uniform",
        }
    }
    /// Whether the method trains the attention module G.
    pub fn uses_attention(self) -> bool {
        self == Method::Attempt
    }
    /// Whether source prompts enter the forward pass.
    pub fn mixes_sources(self) -> bool {
        matches!(self, Method::Attempt | Method::Uniform)
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "attempt" => Ok(Method::Attempt),
            "pt" | "prompt-tuning" => Ok(Method::Pt),
            "spot" => Ok(Method::Spot),
            "uniform" => Ok(Method::Uniform),
            other => Err(format!("unknown method `{other}`; expected attempt, pt, spot or uniform")),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a fresh target prompt is initialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TargetInit {
    /// Copy of source prompt number `index` (official default: 0, the first).
    Source { index: usize },
    /// Embeddings of random vocabulary ids (Lester et al.).
    Vocab,
    /// Uniform random values in ±`scale`.
    Random { scale: f32 },
}

impl Default for TargetInit {
    fn default() -> Self {
        TargetInit::Source { index: 0 }
    }
}

/// The composed prompt for one batch.
#[derive(Debug, Clone)]
pub struct ComposedPrompt {
    /// `[b, m, d]`, ready to be prepended to the input embeddings.
    pub prompt: Tensor,
    /// `[b, t+1]` weights over the sources then the target (last column);
    /// `None` for `pt`/`spot`.
    pub weights: Option<Tensor>,
}

/// Frozen sources `[t, m, d]` (plain tensor, never a Var) and the method.
#[derive(Debug, Clone)]
pub struct PromptMixture {
    pub method: Method,
    pub sources: Option<Tensor>,
}

impl PromptMixture {
    pub fn new(method: Method, sources: Option<Tensor>) -> Result<Self> {
        if let Some(s) = &sources {
            s.dims3()?;
        }
        if method.mixes_sources() && sources.is_none() {
            candle_core::bail!("method `{method}` needs at least one source prompt");
        }
        // Detach so no gradient can ever flow into a source prompt.
        let sources = sources.map(|s| s.detach());
        Ok(Self { method, sources })
    }

    pub fn source_count(&self) -> usize {
        self.sources.as_ref().map(|s| s.dims()[0]).unwrap_or(0)
    }

    /// Build the instance prompt for a batch. `target` is `[m, d]`;
    /// `attention` is required for `attempt`.
    pub fn compose(
        &self,
        target: &Tensor,
        attention: Option<&AttentionModule>,
        input_embeds: &Tensor,
        mask: &Tensor,
    ) -> Result<ComposedPrompt> {
        let (b, _, d) = input_embeds.dims3()?;
        let (m, td) = target.dims2()?;
        if td != d {
            candle_core::bail!("target prompt width {td} differs from the encoder's hidden size {d}");
        }
        match self.method {
            Method::Pt | Method::Spot => Ok(ComposedPrompt {
                prompt: target.unsqueeze(0)?.broadcast_as((b, m, d))?.contiguous()?,
                weights: None,
            }),
            Method::Uniform => {
                let all = self.all_prompts(target, m, d)?; // [k, m, d]
                let k = all.dims()[0];
                let mixed = (all.sum(0)? / k as f64)?;
                let prompt = (mixed + target)?.unsqueeze(0)?.broadcast_as((b, m, d))?.contiguous()?;
                let weights = Tensor::full(1f32 / k as f32, (b, k), input_embeds.device())?;
                Ok(ComposedPrompt { prompt, weights: Some(weights) })
            }
            Method::Attempt => {
                let g = attention
                    .ok_or_else(|| candle_core::Error::Msg("method `attempt` needs the attention module".into()))?;
                let all = self.all_prompts(target, m, d)?; // [k, m, d]
                let k = all.dims()[0];
                let pooled = all.max(1)?; // [k, d]
                let h = g.instance_representation(input_embeds, mask)?; // [b, d]
                let scores = g.scores(&h, &pooled)?; // [b, k]
                let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
                let mixed = weights.matmul(&all.reshape((k, m * d))?)?.reshape((b, m, d))?;
                let prompt = mixed.broadcast_add(&target.unsqueeze(0)?)?;
                Ok(ComposedPrompt { prompt, weights: Some(weights) })
            }
        }
    }

    /// Sources followed by the target: `[t+1, m, d]`.
    fn all_prompts(&self, target: &Tensor, m: usize, d: usize) -> Result<Tensor> {
        let target = target.unsqueeze(0)?;
        match &self.sources {
            Some(s) => {
                let (_, sm, sd) = s.dims3()?;
                if (sm, sd) != (m, d) {
                    candle_core::bail!(
                        "source prompts are [{sm}, {sd}] but the target prompt is [{m}, {d}]; all prompts must share length and width"
                    );
                }
                Tensor::cat(&[s, &target.to_dtype(s.dtype())?], 0)
            }
            None => Ok(target),
        }
    }
}

/// Prepend `[b, m, d]` to `[b, L, d]` and extend the mask `[b, L]` with ones.
pub fn prepend_prompt(prompt: &Tensor, input_embeds: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, m, _) = prompt.dims3()?;
    let embeds = Tensor::cat(&[prompt, input_embeds], 1)?;
    let ones = Tensor::ones((b, m), mask.dtype(), mask.device())?;
    let mask = Tensor::cat(&[&ones, mask], 1)?;
    Ok((embeds, mask))
}

/// Uniform weights for `k` prompts as f32, for reports.
pub fn uniform_weights(k: usize) -> Vec<f32> {
    vec![1.0 / k as f32; k]
}
