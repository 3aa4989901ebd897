//! A frozen model directory ready for training: encoder, tokenizer,
//! fingerprint and parameter count.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use registry_index::Checksum;

use crate::data::tokenize::HfTextEncoder;
use crate::home::Home;
use crate::model::{fingerprint, load_model, store, weights, Encoder, LoadedModel};

pub struct Backbone {
    pub dir: PathBuf,
    /// Directory name, recorded as the base model's name in packages.
    pub name: String,
    pub loaded: LoadedModel,
    pub tokenizer: HfTextEncoder,
    /// `sha256:<64 hex>`.
    pub fingerprint: String,
    /// The fingerprint as a [`Checksum`], what packages and locks record
    /// (compare this, not strings).
    pub checksum: Checksum,
    pub parameters: usize,
}

impl Backbone {
    /// Load `dir` (which must hold a `tokenizer.json`: training reads text).
    pub fn load(home: &Home, dir: &Path, device: &Device) -> Result<Backbone> {
        let loaded = load_model(dir, device)?;
        let tok_path = dir.join(crate::model::tokenizer::TOKENIZER_FILE);
        if !tok_path.is_file() {
            bail!("{} has no tokenizer.json; training needs the model's tokenizer", dir.display());
        }
        let tokenizer = HfTextEncoder::from_file(&tok_path)?;
        let fingerprint = fingerprint::fingerprint(home, dir)?;
        let checksum = Checksum::parse(&fingerprint).context("model fingerprint")?;
        let parameters = parameter_count(dir)?;
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".to_string());
        Ok(Backbone { dir: dir.to_path_buf(), name, loaded, tokenizer, fingerprint, checksum, parameters })
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.loaded.model.encoder()
    }

    pub fn hidden_size(&self) -> usize {
        self.encoder().hidden_size()
    }
}

/// Elements of every tensor in the model's weight files.
pub fn parameter_count(dir: &Path) -> Result<usize> {
    let mut params = 0usize;
    for f in weights::weight_files(dir)? {
        let st = weights::SafetensorsFile::open(&f)?;
        let parsed = st.parse()?;
        for (_, v) in parsed.tensors() {
            params += v.shape().iter().product::<usize>();
        }
    }
    Ok(params)
}

/// Where a project's model lives: `--model` if given, else `[model] path`
/// (relative to the project directory), either a directory or the name of
/// an imported model under `$ATTEMPT_HOME/models`.
pub fn locate(
    home: &Home,
    project_dir: &Path,
    explicit: Option<&str>,
    manifest_path: Option<&Path>,
) -> Result<PathBuf> {
    let spec = match (explicit, manifest_path) {
        (Some(s), _) => s.to_string(),
        (None, Some(p)) => {
            let rel = project_dir.join(p);
            if rel.is_dir() {
                return Ok(rel);
            }
            p.display().to_string()
        }
        (None, None) => bail!(
            "the project names no model: set `path` under [model] in attempt.toml (a directory or an imported \
             model name, see `attempt-pkg model list`) or pass --model"
        ),
    };
    store::resolve(home, &spec).with_context(|| "cannot find the project's base model".to_string())
}
