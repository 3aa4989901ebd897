//! Turning a foreign prompt into a package: read the source, resolve the
//! base model, check shapes and model identity, then build the artifact —
//! all before anything is written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use registry_index::Checksum;
use semver::Version;

pub use super::output::check_writable;
use super::output::write_files;
use super::peft::{self, AdapterConfig};
use super::pickle::TensorRef;
use super::torch_file::{self, Checkpoint, TorchContents};
use super::{safetensors_io, SourceTensor};
use crate::fsutil::sha256;
use crate::home::Home;
use crate::model::{config, fingerprint};
use crate::package::{
    Artifact, BaseModel, Manifest, PackageMeta, PromptSection, PromptTensor, MANIFEST_FILE, MANIFEST_FORMAT,
};

/// File name of the tensor in the authoring directories `import` writes.
pub const PROMPT_FILE: &str = "prompt.safetensors";

/// Which kind of file a prompt came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    PyTorch,
    Peft,
    Safetensors,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::PyTorch => "pytorch",
            SourceKind::Peft => "peft",
            SourceKind::Safetensors => "safetensors",
        }
    }
}

/// A prompt read from a foreign file, before any base-model check.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: SourceKind,
    pub path: PathBuf,
    /// The tensor's key inside the file, when it had several or was named.
    pub key: Option<String>,
    pub tensor: SourceTensor,
    /// The adapter config, for a PEFT source.
    pub peft: Option<AdapterConfig>,
    /// sha256 of the file holding the tensor.
    pub file_sha256: Checksum,
    pub notes: Vec<String>,
}

/// Reads the prompt tensor from `path`: a PEFT adapter directory, a
/// zip-format PyTorch checkpoint, or a safetensors file. `key` picks a
/// tensor in a file holding several.
pub fn read_source(path: &Path, key: Option<&str>) -> Result<Source> {
    if path.is_dir() {
        if !peft::is_adapter_dir(path) {
            bail!(
                "{} is a directory without {}; pass a PEFT adapter directory or a .pt/.bin/.safetensors file",
                path.display(),
                peft::CONFIG_FILE
            );
        }
        if let Some(k) = key.filter(|k| *k != peft::PROMPT_KEY) {
            bail!("--tensor {k}: a PEFT adapter's prompt is always `{}`; drop --tensor", peft::PROMPT_KEY);
        }
        let adapter = peft::read_adapter(path)?;
        let weights =
            [peft::WEIGHTS_FILE, peft::LEGACY_WEIGHTS_FILE].iter().map(|f| path.join(f)).find(|p| p.is_file());
        let file_sha256 = match weights {
            Some(w) => sha256(&fs::read(&w).with_context(|| format!("reading {}", w.display()))?),
            None => bail!("{} has no adapter weights", path.display()),
        };
        return Ok(Source {
            kind: SourceKind::Peft,
            path: path.to_path_buf(),
            key: Some(peft::PROMPT_KEY.to_string()),
            tensor: adapter.prompt,
            peft: Some(adapter.config),
            file_sha256,
            notes: adapter.notes,
        });
    }
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file_sha256 = sha256(&bytes);
    if torch_file::is_zip(&bytes) || torch_file::is_legacy_pickle(&bytes) {
        let mut checkpoint = Checkpoint::open(path, &bytes)?;
        let (key, chosen) = match (&checkpoint.contents, key) {
            (TorchContents::Single(t), None) => (None, t.clone()),
            (TorchContents::Single(t), Some(k)) => bail!(
                "--tensor {k}: {} holds a single tensor {} (not a dict); drop --tensor",
                path.display(),
                torch_file::describe(t)
            ),
            (TorchContents::Named(named), key) => {
                let (k, t) = pick(path, named, key)?;
                (Some(k), t)
            }
        };
        let tensor = checkpoint.load(&chosen)?;
        return Ok(Source {
            kind: SourceKind::PyTorch,
            path: path.to_path_buf(),
            key,
            tensor,
            peft: None,
            file_sha256,
            notes: Vec::new(),
        });
    }
    if looks_like_safetensors(&bytes) {
        let (name, tensor) = safetensors_io::read_one(path, &bytes, key)?;
        return Ok(Source {
            kind: SourceKind::Safetensors,
            path: path.to_path_buf(),
            key: Some(name),
            tensor,
            peft: None,
            file_sha256,
            notes: Vec::new(),
        });
    }
    bail!(
        "{} is not a format attempt-pkg imports: expected a PyTorch checkpoint (torch.save, zip format), \
         a safetensors file, or a PEFT adapter directory",
        path.display()
    )
}

/// Chooses one tensor of a dict checkpoint: `key`, or the only one.
fn pick(path: &Path, named: &[(String, TensorRef)], key: Option<&str>) -> Result<(String, TensorRef)> {
    let listing =
        || named.iter().map(|(k, t)| format!("`{k}` {}", torch_file::describe(t))).collect::<Vec<_>>().join(", ");
    match (key, named) {
        (Some(k), _) => match named.iter().find(|(name, _)| name == k) {
            Some(found) => Ok(found.clone()),
            None => bail!("{} has no tensor `{k}`; it holds: {}", path.display(), listing()),
        },
        (None, [only]) => Ok(only.clone()),
        (None, []) => bail!("{} holds no tensors", path.display()),
        (None, _) => bail!("{} holds several tensors; choose one with --tensor KEY: {}", path.display(), listing()),
    }
}

/// An 8-byte little-endian header length followed by a JSON object.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[8] == b'{'
}

/// `--base-model`: a model directory, or a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseModelSpec {
    Dir(PathBuf),
    Fingerprint(Checksum),
}

impl BaseModelSpec {
    /// An existing directory wins; otherwise the text must be a fingerprint.
    pub fn parse(text: &str) -> Result<BaseModelSpec> {
        let path = Path::new(text);
        if path.is_dir() {
            return Ok(BaseModelSpec::Dir(path.to_path_buf()));
        }
        match Checksum::parse(text) {
            Ok(c) => Ok(BaseModelSpec::Fingerprint(c)),
            Err(_) => bail!(
                "--base-model {text}: neither a model directory nor a fingerprint (`sha256:<64 hex>`, \
                 see `attempt-pkg model fingerprint`)"
            ),
        }
    }
}

/// The base model a prompt is bound to.
#[derive(Debug, Clone)]
pub struct ResolvedBase {
    /// Display name (`[base-model] name`), when known.
    pub name: Option<String>,
    /// Names the model directory goes by, for checking a PEFT adapter's
    /// `base_model_name_or_path` (the directory name and config `_name_or_path`).
    pub known_names: Vec<String>,
    pub fingerprint: Checksum,
    pub hidden_size: u32,
}

/// Resolves `--base-model` (+ `--hidden-size`, `--base-model-name`).
pub fn resolve_base(
    home: &Home,
    spec: &BaseModelSpec,
    hidden_size: Option<u32>,
    name: Option<&str>,
) -> Result<ResolvedBase> {
    match spec {
        BaseModelSpec::Fingerprint(fp) => {
            let hidden_size = hidden_size.with_context(|| {
                format!(
                    "--base-model is a fingerprint ({}); also pass --hidden-size (the model's hidden size)",
                    fp.prefixed()
                )
            })?;
            Ok(ResolvedBase {
                name: name.map(str::to_string),
                known_names: Vec::new(),
                fingerprint: fp.clone(),
                hidden_size,
            })
        }
        BaseModelSpec::Dir(dir) => {
            let model_hidden = model_hidden_size(dir)?;
            if let Some(h) = hidden_size.filter(|&h| h != model_hidden) {
                bail!(
                    "--hidden-size {h} contradicts the model in {}, whose hidden size is {model_hidden}",
                    dir.display()
                );
            }
            let fp = fingerprint::fingerprint(home, dir)?;
            let fingerprint = Checksum::parse(&fp).with_context(|| format!("fingerprint of {}", dir.display()))?;
            let mut known_names = Vec::new();
            if let Some(n) = config_name_or_path(dir) {
                known_names.push(n);
            }
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            if let Some(n) = canonical.file_name().and_then(|n| n.to_str()) {
                known_names.push(n.to_string());
            }
            let name = name.map(str::to_string).or_else(|| known_names.first().cloned());
            Ok(ResolvedBase { name, known_names, fingerprint, hidden_size: model_hidden })
        }
    }
}

/// The hidden size from `config.json`: through the model layer for the
/// architectures attempt-pkg runs, else from the usual Hugging Face keys, so
/// prompts for other backbones can still be packaged.
fn model_hidden_size(dir: &Path) -> Result<u32> {
    let known = config::read_config(dir).ok().map(|cfg| cfg.hidden_size());
    let size = match known {
        Some(h) => Some(h as u64),
        None => {
            let path = dir.join("config.json");
            let text = fs::read_to_string(&path).with_context(|| {
                format!("reading {}: a model directory needs a Hugging Face config.json", path.display())
            })?;
            let value: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
            ["hidden_size", "d_model", "n_embd", "dim"].iter().find_map(|k| value.get(*k).and_then(|v| v.as_u64()))
        }
    };
    size.and_then(|h| u32::try_from(h).ok()).filter(|&h| h > 0).with_context(|| {
        format!(
            "{}/config.json gives no hidden size (hidden_size or d_model); pass the fingerprint with --hidden-size",
            dir.display()
        )
    })
}

/// `_name_or_path` from `config.json`, which Hugging Face records on save.
fn config_name_or_path(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("_name_or_path")?.as_str().filter(|s| !s.trim().is_empty()).map(str::to_string)
}

/// The last path component, lower-cased: `google-t5/t5-base` → `t5-base`.
fn short_model_name(name: &str) -> String {
    name.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or(name).to_ascii_lowercase()
}

/// The package fields of an import.
#[derive(Debug, Clone)]
pub struct PackageFields {
    pub name: String,
    pub version: Version,
    pub task: String,
    pub description: Option<String>,
    pub license: Option<String>,
    /// `--base-model-name`: set explicitly, it also confirms that a PEFT
    /// adapter's recorded model is the given one.
    pub base_model_name: Option<String>,
}

/// A checked import: the artifact (manifest + tensor) ready to write or publish.
#[derive(Debug, Clone)]
pub struct Imported {
    pub artifact: Artifact,
    pub notes: Vec<String>,
}

impl Imported {
    pub fn manifest(&self) -> &Manifest {
        self.artifact.manifest()
    }
    pub fn prompt(&self) -> Option<&PromptTensor> {
        self.artifact.package().prompt.as_ref()
    }
}

/// Checks `source` against `base` and builds the package. Nothing is written.
pub fn build(source: Source, base: &ResolvedBase, fields: &PackageFields) -> Result<Imported> {
    let mut notes = source.notes.clone();
    let described = |b: &ResolvedBase| match &b.name {
        Some(n) => format!("`{n}` ({})", b.fingerprint.prefixed()),
        None => b.fingerprint.prefixed(),
    };
    let mut base_name = fields.base_model_name.clone();
    if let Some(cfg) = &source.peft {
        if cfg.token_dim != base.hidden_size as usize {
            bail!(
                "the adapter's token_dim is {} but base model {} has hidden size {}; the package expects token_dim = {}",
                cfg.token_dim,
                described(base),
                base.hidden_size,
                base.hidden_size
            );
        }
        if let Some(recorded) = cfg.base_model_name_or_path.as_deref().filter(|s| !s.trim().is_empty()) {
            let matches = base.known_names.iter().any(|n| short_model_name(n) == short_model_name(recorded));
            if !base.known_names.is_empty() && !matches && fields.base_model_name.is_none() {
                bail!(
                    "the adapter was trained for `{recorded}` (base_model_name_or_path), but --base-model is {} (known as {}); \
                     if they are the same model, confirm with --base-model-name {recorded}",
                    described(base),
                    base.known_names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                );
            }
            base_name = base_name.or_else(|| Some(recorded.to_string()));
        }
    }
    let base_name = base_name.or_else(|| base.name.clone()).with_context(|| {
        format!(
            "--base-model is a bare fingerprint ({}); name the model with --base-model-name",
            base.fingerprint.prefixed()
        )
    })?;

    let shape = source.tensor.describe();
    let prompt = source.tensor.clone().into_prompt().with_context(|| format!("importing {}", source.path.display()))?;
    if prompt.hidden() != base.hidden_size as usize {
        bail!(
            "the prompt {shape} is {} wide, but base model {} has hidden size {}; the package expects [length, {}] \
             (was the prompt trained for another model?)",
            prompt.hidden(),
            described(base),
            base.hidden_size,
            base.hidden_size
        );
    }
    if source.tensor.shape.len() > 2 {
        notes.push(format!("dropped the leading size-1 axes of {shape}"));
    }

    let mut provenance = BTreeMap::new();
    let file_name = source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let origin = match &source.key {
        Some(k) if source.kind != SourceKind::Peft => format!("{} {file_name} [{k}]", source.kind.as_str()),
        _ => format!("{} {file_name}", source.kind.as_str()),
    };
    provenance.insert("imported-from".to_string(), origin);
    provenance.insert("source-sha256".to_string(), source.file_sha256.prefixed());
    if let Some(cfg) = &source.peft {
        provenance.insert("peft-type".to_string(), cfg.peft_type.clone());
        if let Some(t) = &cfg.task_type {
            provenance.insert("peft-task-type".to_string(), t.clone());
        }
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        package: PackageMeta {
            name: fields.name.clone(),
            version: fields.version.clone(),
            task: fields.task.clone(),
            description: fields.description.clone().unwrap_or_default(),
            license: fields.license.clone(),
        },
        base_model: BaseModel { name: base_name, fingerprint: base.fingerprint.clone(), hidden_size: base.hidden_size },
        prompt: Some(PromptSection { file: PROMPT_FILE.to_string() }),
        dependencies: BTreeMap::new(),
        provenance,
        metrics: BTreeMap::new(),
        // The source data of a foreign prompt is unknown here.
        signature: None,
    };
    let artifact = Artifact::from_parts(manifest, Some(prompt)).context("the imported package is invalid")?;
    Ok(Imported { artifact, notes })
}

/// Writes `Prompt.toml` + `prompt.safetensors` into `out` (see
/// [`write_files`]), then checks that the directory builds to the
/// very artifact that was checked.
pub fn write_authoring_dir(imported: &Imported, out: &Path, force: bool) -> Result<()> {
    check_writable(out, &[MANIFEST_FILE, PROMPT_FILE], force)?;
    let prompt = imported.prompt().context("an imported package always has a prompt")?;
    let tensor = safetensors_io::write_one(
        crate::package::PROMPT_TENSOR,
        prompt.dtype(),
        &[prompt.length(), prompt.hidden()],
        prompt.bytes(),
        None,
    )?;
    let toml = toml::to_string(imported.manifest()).context("serialising Prompt.toml")?;
    write_files(out, &[(PROMPT_FILE, &tensor), (MANIFEST_FILE, toml.as_bytes())])?;
    let rebuilt =
        Artifact::build(out).with_context(|| format!("re-reading the written directory {}", out.display()))?;
    if rebuilt.checksum() != imported.artifact.checksum() {
        bail!("internal error: {} does not rebuild to the imported artifact", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_compare_hub_ids_and_paths() {
        assert_eq!(short_model_name("google-t5/t5-base"), "t5-base");
        assert_eq!(short_model_name("/models/T5-Base/"), "t5-base");
        assert_eq!(short_model_name("t5-base"), "t5-base");
    }

    #[test]
    fn base_model_spec_needs_a_dir_or_fingerprint() {
        let fp = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(BaseModelSpec::parse(&fp).unwrap(), BaseModelSpec::Fingerprint(_)));
        assert!(BaseModelSpec::parse("/no/such/model").is_err());
    }
}
