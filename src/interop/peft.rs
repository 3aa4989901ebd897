//! Hugging Face PEFT prompt-tuning adapters: a directory with
//! `adapter_config.json` and `adapter_model.safetensors` (or the older
//! pickled `adapter_model.bin`) holding `prompt_embeddings`
//! `[num_virtual_tokens * num_transformer_submodules, token_dim]`.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use super::torch_file::{Checkpoint, TorchContents};
use super::{safetensors_io, SourceTensor};
use crate::package::PromptTensor;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
pub const LEGACY_WEIGHTS_FILE: &str = "adapter_model.bin";
pub const PROMPT_KEY: &str = "prompt_embeddings";

/// PEFT types whose adapter is (or contains) a plain prompt matrix.
const PROMPT_TYPES: [&str; 2] = ["PROMPT_TUNING", "MULTITASK_PROMPT_TUNING"];

/// Task types PEFT accepts in `task_type`.
pub const TASK_TYPES: [&str; 6] =
    ["FEATURE_EXTRACTION", "SEQ_2_SEQ_LM", "CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"];

/// The fields of `adapter_config.json` an import needs.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub num_virtual_tokens: usize,
    pub token_dim: usize,
    #[serde(default)]
    pub num_transformer_submodules: Option<usize>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub task_type: Option<String>,
}

impl AdapterConfig {
    pub fn submodules(&self) -> usize {
        self.num_transformer_submodules.unwrap_or(1)
    }
}

/// A PEFT adapter read and checked for internal consistency.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub config: AdapterConfig,
    /// The encoder prompt: the first `num_virtual_tokens` rows.
    pub prompt: SourceTensor,
    /// Human-readable remarks (e.g. rows left out).
    pub notes: Vec<String>,
}

/// True when `dir` looks like a PEFT adapter directory.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// Reads `dir`'s config and prompt, checking the tensor shape against the
/// config's `num_virtual_tokens`, `num_transformer_submodules` and `token_dim`.
pub fn read_adapter(dir: &Path) -> Result<Adapter> {
    let config_path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let config: AdapterConfig = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a PEFT prompt-tuning config (needs peft_type, num_virtual_tokens, token_dim)",
            config_path.display()
        )
    })?;
    if !PROMPT_TYPES.contains(&config.peft_type.as_str()) {
        bail!(
            "{}: peft_type is {}; only prompt-tuning adapters ({}) hold a soft prompt",
            config_path.display(),
            config.peft_type,
            PROMPT_TYPES.join(", ")
        );
    }
    let submodules = config.submodules();
    if config.num_virtual_tokens == 0 || config.token_dim == 0 || submodules == 0 {
        bail!(
            "{}: num_virtual_tokens, token_dim and num_transformer_submodules must be positive",
            config_path.display()
        );
    }

    let tensor = read_prompt_embeddings(dir)?;
    let rows = config.num_virtual_tokens.checked_mul(submodules).context("num_virtual_tokens overflows")?;
    let weights = weights_name(dir);
    match tensor.shape.as_slice() {
        [r, d] if *r == rows && *d == config.token_dim => {}
        [r, d] if *d != config.token_dim => bail!(
            "{weights}: `{PROMPT_KEY}` is [{r}, {d}] but adapter_config.json says token_dim = {} (dimension 1 mismatch)",
            config.token_dim
        ),
        [r, _] => bail!(
            "{weights}: `{PROMPT_KEY}` has {r} rows but adapter_config.json says num_virtual_tokens × \
             num_transformer_submodules = {} × {submodules} = {rows} (dimension 0 mismatch)",
            config.num_virtual_tokens
        ),
        other => bail!("{weights}: `{PROMPT_KEY}` has shape {other:?}; expected [{rows}, {}]", config.token_dim),
    }

    let mut notes = Vec::new();
    let prompt = if submodules > 1 {
        // PEFT stacks one prompt per submodule; ATTEMPT prepends the
        // encoder's, which comes first.
        notes.push(format!(
            "the adapter has {submodules} transformer submodules; imported the encoder prompt (rows 0..{}) and left out the rest",
            config.num_virtual_tokens
        ));
        let row_bytes = config.token_dim * tensor.dtype.size();
        SourceTensor {
            dtype: tensor.dtype,
            shape: vec![config.num_virtual_tokens, config.token_dim],
            data: tensor.data[..config.num_virtual_tokens * row_bytes].to_vec(),
        }
    } else {
        tensor
    };
    if config.peft_type == "MULTITASK_PROMPT_TUNING" {
        notes.push(
            "MULTITASK_PROMPT_TUNING: imported the shared prompt `prompt_embeddings`; the per-task low-rank factors are not part of the package"
                .to_string(),
        );
    }
    Ok(Adapter { config, prompt, notes })
}

fn weights_name(dir: &Path) -> String {
    let st = dir.join(WEIGHTS_FILE);
    if st.is_file() { st } else { dir.join(LEGACY_WEIGHTS_FILE) }.display().to_string()
}

fn read_prompt_embeddings(dir: &Path) -> Result<SourceTensor> {
    let st = dir.join(WEIGHTS_FILE);
    if st.is_file() {
        let bytes = fs::read(&st).with_context(|| format!("reading {}", st.display()))?;
        return safetensors_io::read_one(&st, &bytes, Some(PROMPT_KEY)).map(|(_, t)| t);
    }
    let bin = dir.join(LEGACY_WEIGHTS_FILE);
    if bin.is_file() {
        let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
        let mut checkpoint = Checkpoint::open(&bin, &bytes)?;
        let tensor = match &checkpoint.contents {
            TorchContents::Named(named) => named
                .iter()
                .find(|(k, _)| k == PROMPT_KEY)
                .map(|(_, t)| t.clone())
                .with_context(|| format!("{} has no `{PROMPT_KEY}` tensor", bin.display()))?,
            TorchContents::Single(_) => bail!("{} holds a bare tensor, not a PEFT state dict", bin.display()),
        };
        return checkpoint.load(&tensor);
    }
    bail!("{} has neither {WEIGHTS_FILE} nor {LEGACY_WEIGHTS_FILE}", dir.display())
}

/// `adapter_config.json` for a single-submodule prompt-tuning adapter, in
/// the field set PEFT itself writes.
pub fn config_json(prompt: &PromptTensor, base_model_name: &str, task_type: &str) -> String {
    let value = json!({
        "auto_mapping": null,
        "base_model_name_or_path": base_model_name,
        "inference_mode": true,
        "modules_to_save": null,
        "num_attention_heads": null,
        "num_layers": null,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": prompt.length(),
        "peft_type": "PROMPT_TUNING",
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": null,
        "revision": null,
        "task_type": task_type,
        "token_dim": prompt.hidden(),
        "tokenizer_kwargs": null,
        "tokenizer_name_or_path": null,
    });
    // serde_json's map is sorted, so the text is deterministic.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// `adapter_model.safetensors` holding `prompt_embeddings`, with PEFT's
/// own `{"format": "pt"}` metadata.
pub fn weights_bytes(prompt: &PromptTensor) -> Result<Vec<u8>> {
    safetensors_io::write_one(
        PROMPT_KEY,
        prompt.dtype(),
        &[prompt.length(), prompt.hidden()],
        prompt.bytes(),
        Some(("format", "pt")),
    )
}
