//! The attention module G of ATTEMPT (Asai et al., 2022, eq. 3–4):
//! h = LayerNorm(W_up · SiLU(W_down · maxpool(X))), and the scores
//! s_j = (maxpool(P_j) · h) / T.

use candle_core::{DType, Device, Result, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How G scores a prompt against an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttentionScores {
    /// `maxpool(P_j) · h / T`, as in the paper and the official code.
    #[default]
    Dot,
    /// The same with both vectors scaled to unit length, so a prompt's norm
    /// (trained prompts differ by 2x) cannot decide its weight.
    Cosine,
}

impl std::str::FromStr for AttentionScores {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dot" => Ok(AttentionScores::Dot),
            "cosine" => Ok(AttentionScores::Cosine),
            other => Err(format!("unknown attention scores `{other}`; expected dot or cosine")),
        }
    }
}

/// Default temperature of cosine scores: cosines lie in [-1, 1], so with
/// d·e (≈ 1,000) every weight would stay uniform.
pub const COSINE_TEMPERATURE: f64 = 0.1;

/// Hyper-parameters of G.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttentionConfig {
    /// Width of the W_down/W_up bottleneck (the paper uses 100).
    pub bottleneck: usize,
    /// Softmax temperature; `None` means d·e as in the official code (for
    /// dot scores) or [`COSINE_TEMPERATURE`] (for cosine scores).
    pub temperature: Option<f64>,
    /// Dot (the paper) or cosine scores.
    pub scores: AttentionScores,
    /// Train the temperature too: a log-temperature starting at
    /// [`AttentionConfig::temperature_for`], learned with G (the official
    /// code meant to and did not).
    pub learn_temperature: bool,
    /// Max-pool the input over every position, padding included, as the
    /// official implementation does. Off by default: padding is masked out.
    pub unmasked_pooling: bool,
    /// Start G from standardised inputs: W_down's columns are divided by σ
    /// and it gets a bias −W_down·(μ/σ), μ and σ the per-feature mean and
    /// standard deviation of the max-pooled training inputs
    /// ([`AttentionModule::standardise_on`]). Max-pooled embeddings of
    /// different inputs are nearly parallel, so the paper's G sees almost the
    /// same vector for every example; centring alone (σ = 1) was measured to
    /// leave the weights as flat, its activations being too small for
    /// LayerNorm's epsilon. Both tensors are trained with G afterwards; off by
    /// default (the paper's G has no bias).
    pub standardise_input: bool,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            bottleneck: 100,
            temperature: None,
            scores: AttentionScores::Dot,
            learn_temperature: false,
            unmasked_pooling: false,
            standardise_input: false,
            layer_norm_eps: 1e-5,
        }
    }
}

impl AttentionConfig {
    /// The temperature actually used for hidden size `d`.
    pub fn temperature_for(&self, hidden_size: usize) -> f64 {
        self.temperature.unwrap_or(match self.scores {
            AttentionScores::Dot => hidden_size as f64 * std::f64::consts::E,
            AttentionScores::Cosine => COSINE_TEMPERATURE,
        })
    }
}

/// G's trainable weights. Linear weights are stored as `[out, in]` like
/// PyTorch so checkpoints read naturally.
#[derive(Debug, Clone)]
pub struct AttentionModule {
    pub w_down: Var,
    /// `[r]`, present with [`AttentionConfig::standardise_input`].
    pub b_down: Option<Var>,
    pub w_up: Var,
    pub ln_weight: Var,
    pub ln_bias: Var,
    /// `[1]`, present when the temperature is learned.
    pub log_temperature: Option<Var>,
    pub config: AttentionConfig,
    hidden_size: usize,
}

/// Tensor names in checkpoints.
pub const W_DOWN: &str = "attention.w_down";
pub const B_DOWN: &str = "attention.b_down";
pub const W_UP: &str = "attention.w_up";
pub const LN_WEIGHT: &str = "attention.layer_norm.weight";
pub const LN_BIAS: &str = "attention.layer_norm.bias";
pub const LOG_TEMPERATURE: &str = "attention.log_temperature";

fn log_temperature_var(config: &AttentionConfig, hidden_size: usize, device: &Device) -> Result<Option<Var>> {
    if !config.learn_temperature {
        return Ok(None);
    }
    let t = config.temperature_for(hidden_size);
    if !(t > 0.0 && t.is_finite()) {
        candle_core::bail!("the attention temperature must be a positive number, got {t}");
    }
    Ok(Some(Var::from_vec(vec![t.ln() as f32], 1, device)?))
}

fn uniform_var(rng: &mut StdRng, shape: (usize, usize), bound: f32, device: &Device) -> Result<Var> {
    let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.gen_range(-bound..bound)).collect();
    Var::from_vec(data, shape, device)
}

impl AttentionModule {
    /// Fresh G with PyTorch `nn.Linear`'s default init (uniform ±1/√fan_in),
    /// LayerNorm weight 1 and bias 0.
    pub fn new(hidden_size: usize, config: AttentionConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let r = config.bottleneck;
        let w_down = uniform_var(rng, (r, hidden_size), 1.0 / (hidden_size as f32).sqrt(), device)?;
        let w_up = uniform_var(rng, (hidden_size, r), 1.0 / (r as f32).sqrt(), device)?;
        let ln_weight = Var::ones(hidden_size, DType::F32, device)?;
        let ln_bias = Var::zeros(hidden_size, DType::F32, device)?;
        let log_temperature = log_temperature_var(&config, hidden_size, device)?;
        let b_down = config.standardise_input.then(|| Var::zeros(r, DType::F32, device)).transpose()?;
        Ok(Self { w_down, b_down, w_up, ln_weight, ln_bias, log_temperature, config, hidden_size })
    }

    /// G from given weights (checkpoint restore, tests). Shapes are checked.
    pub fn from_tensors(
        w_down: &Tensor,
        w_up: &Tensor,
        ln_weight: &Tensor,
        ln_bias: &Tensor,
        config: AttentionConfig,
    ) -> Result<Self> {
        let (r, d) = w_down.dims2()?;
        if w_up.dims2()? != (d, r) || ln_weight.dims1()? != d || ln_bias.dims1()? != d {
            candle_core::bail!(
                "attention module shapes disagree: w_down {:?}, w_up {:?}, layer norm {:?}/{:?}",
                w_down.shape(),
                w_up.shape(),
                ln_weight.shape(),
                ln_bias.shape()
            );
        }
        let config = AttentionConfig { bottleneck: r, ..config };
        let log_temperature = log_temperature_var(&config, d, w_down.device())?;
        let b_down = config.standardise_input.then(|| Var::zeros(r, DType::F32, w_down.device())).transpose()?;
        Ok(Self {
            log_temperature,
            b_down,
            w_down: Var::from_tensor(&w_down.to_dtype(DType::F32)?)?,
            w_up: Var::from_tensor(&w_up.to_dtype(DType::F32)?)?,
            ln_weight: Var::from_tensor(&ln_weight.to_dtype(DType::F32)?)?,
            ln_bias: Var::from_tensor(&ln_bias.to_dtype(DType::F32)?)?,
            config,
            hidden_size: d,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Trainable variables with their checkpoint names.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut vars = vec![
            (W_DOWN.to_string(), self.w_down.clone()),
            (W_UP.to_string(), self.w_up.clone()),
            (LN_WEIGHT.to_string(), self.ln_weight.clone()),
            (LN_BIAS.to_string(), self.ln_bias.clone()),
        ];
        if let Some(b) = &self.b_down {
            vars.push((B_DOWN.to_string(), b.clone()));
        }
        if let Some(t) = &self.log_temperature {
            vars.push((LOG_TEMPERATURE.to_string(), t.clone()));
        }
        vars
    }

    /// The temperature in use (the learned one's current value).
    pub fn temperature(&self) -> Result<f64> {
        match &self.log_temperature {
            Some(t) => Ok((t.as_tensor().to_vec1::<f32>()?[0] as f64).exp()),
            None => Ok(self.config.temperature_for(self.hidden_size)),
        }
    }

    pub fn parameter_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Max-pooled inputs `[b, d]`, as G sees them.
    pub fn pool(&self, input_embeds: &Tensor, mask: &Tensor) -> Result<Tensor> {
        max_pool(input_embeds, mask, self.config.unmasked_pooling)
    }

    /// Divide W_down's columns by `std` and set its bias to −W_down·`mean`
    /// (both `[d]`, per-feature statistics of [`Self::pool`] over the training
    /// inputs): at the start of training G's bottleneck sees each input's
    /// standardised difference from the average input. Features that barely
    /// vary are divided by a floor (1e-3 of the mean σ), not by ~0.
    pub fn standardise_on(&self, mean: &Tensor, std: &Tensor) -> Result<()> {
        let b = self.b_down.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("standardise_on needs an attention module built with standardise_input".into())
        })?;
        let d = self.hidden_size;
        let std = std.to_dtype(DType::F32)?.reshape(d)?;
        let floor = std.mean_all()?.to_scalar::<f32>()? * 1e-3;
        let std = std.maximum(floor.max(f32::MIN_POSITIVE))?.reshape((1, d))?;
        let w = self.w_down.as_tensor().broadcast_div(&std)?; // [r, d]
        let mean = mean.to_dtype(DType::F32)?.reshape((1, d))?;
        let bias = mean.matmul(&w.t()?)?.neg()?.squeeze(0)?;
        self.w_down.set(&w)?;
        b.set(&bias)
    }

    /// h = LN(W_up · SiLU(W_down · maxpool(X) [+ b_down])): `[b, L, d]`, mask `[b, L]` → `[b, d]`.
    pub fn instance_representation(&self, input_embeds: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let pooled = self.pool(input_embeds, mask)?;
        let mut x = pooled.matmul(&self.w_down.as_tensor().t()?)?;
        if let Some(b) = &self.b_down {
            x = x.broadcast_add(b.as_tensor())?;
        }
        let x = x.silu()?;
        let x = x.matmul(&self.w_up.as_tensor().t()?)?;
        layer_norm(&x, self.ln_weight.as_tensor(), self.ln_bias.as_tensor(), self.config.layer_norm_eps)
    }

    /// Attention scores before the softmax: `h [b, d]` against pooled prompts
    /// `[k, d]` → `[b, k]`, divided by the temperature.
    pub fn scores(&self, h: &Tensor, pooled_prompts: &Tensor) -> Result<Tensor> {
        let raw = match self.config.scores {
            AttentionScores::Dot => h.matmul(&pooled_prompts.t()?)?,
            AttentionScores::Cosine => unit_rows(h)?.matmul(&unit_rows(pooled_prompts)?.t()?)?,
        };
        match &self.log_temperature {
            Some(t) => raw.broadcast_div(&t.as_tensor().exp()?),
            None => raw / self.config.temperature_for(self.hidden_size),
        }
    }
}

/// Rows scaled to unit L2 norm, from composed ops (gradients flow).
fn unit_rows(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// Max over the sequence axis of `[b, L, d]`. Unless `unmasked`, positions
/// whose mask is 0 are set to -inf first so padding never wins.
pub fn max_pool(x: &Tensor, mask: &Tensor, unmasked: bool) -> Result<Tensor> {
    if unmasked {
        return x.max(1);
    }
    let (b, l, d) = x.dims3()?;
    let keep = mask.to_dtype(DType::U8)?.reshape((b, l, 1))?.broadcast_as((b, l, d))?;
    let neg_inf = Tensor::full(f32::NEG_INFINITY, (b, l, d), x.device())?.to_dtype(x.dtype())?;
    keep.where_cond(x, &neg_inf)?.max(1)
}

/// Layer norm over the last axis from composed ops (gradients reach x, weight
/// and bias; candle-nn's fused kernels would detach them).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(weight)?.broadcast_add(bias)
}
