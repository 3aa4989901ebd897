//! The package artifact: one self-describing `.safetensors` file holding the
//! `prompt` tensor and the whole manifest in `__metadata__`.
//!
//! Building is deterministic (same authoring directory → same bytes → same
//! sha256, the package checksum); reading re-checks everything, so a loaded
//! package is always structurally sound and consistent with its manifest.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use registry_index::{Checksum, IndexDep, IndexEntry, FORMAT_VERSION};

use super::manifest::{Manifest, MANIFEST_FORMAT, SIGNATURE_FORMAT};
use super::safetensors_file::{self, Dtype, RawFile, TensorToWrite};
use crate::fsutil::{sha256, write_atomic};

/// Name of the tensor inside both the authoring tensor file and the artifact.
pub const PROMPT_TENSOR: &str = "prompt";
/// Metadata key: format version of the artifact (`"1"`).
pub const META_FORMAT: &str = "attempt.format";
/// Metadata key: the manifest as canonical JSON.
pub const META_MANIFEST: &str = "attempt.manifest";
/// Upper bound on prompt rows; ATTEMPT uses ~100, and it bounds allocations.
pub const MAX_PROMPT_LENGTH: usize = 65_536;

/// A prompt matrix `[length, hidden]` in one of the accepted dtypes, kept as
/// its little-endian bytes so that publishing never rounds values.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTensor {
    dtype: Dtype,
    length: usize,
    hidden: usize,
    data: Vec<u8>,
}

impl PromptTensor {
    /// A prompt from `length * hidden` f32 values in row-major order.
    pub fn from_f32(length: usize, hidden: usize, values: &[f32]) -> Result<PromptTensor> {
        if length.checked_mul(hidden) != Some(values.len()) {
            bail!(
                "prompt of shape [{length}, {hidden}] needs {} values, got {}",
                length.saturating_mul(hidden),
                values.len()
            );
        }
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensor = PromptTensor { dtype: Dtype::F32, length, hidden, data };
        tensor.check_values()?;
        Ok(tensor)
    }

    /// From raw little-endian bytes, checking size and finiteness.
    pub fn from_bytes(dtype: Dtype, length: usize, hidden: usize, data: Vec<u8>) -> Result<PromptTensor> {
        let expected = length.checked_mul(hidden).and_then(|n| n.checked_mul(dtype.size()));
        if expected != Some(data.len()) {
            bail!(
                "prompt of shape [{length}, {hidden}] {} needs {expected:?} bytes, got {}",
                dtype.as_str(),
                data.len()
            );
        }
        let tensor = PromptTensor { dtype, length, hidden, data };
        tensor.check_values()?;
        Ok(tensor)
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// Number of prompt vectors (rows).
    pub fn length(&self) -> usize {
        self.length
    }
    /// Width of each vector (the base model's hidden size).
    pub fn hidden(&self) -> usize {
        self.hidden
    }
    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The values widened to f32, row-major.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let chunks = self.data.chunks_exact(self.dtype.size());
        match self.dtype {
            Dtype::F32 => chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => chunks.map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => chunks.map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        }
    }

    /// The prompt as an f32 candle tensor of shape `[length, hidden]`.
    pub fn to_candle(&self, device: &candle_core::Device) -> Result<candle_core::Tensor> {
        candle_core::Tensor::from_vec(self.to_f32_vec(), (self.length, self.hidden), device)
            .context("creating the prompt tensor")
    }

    fn check_values(&self) -> Result<()> {
        if let Some((i, v)) = self.to_f32_vec().iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let (row, col) = (i / self.hidden.max(1), i % self.hidden.max(1));
            bail!("prompt value at [{row}, {col}] is {v}; every value must be finite (the training run diverged?)");
        }
        Ok(())
    }
}

/// A built artifact, ready to publish.
#[derive(Debug, Clone)]
pub struct Artifact {
    bytes: Vec<u8>,
    checksum: Checksum,
    package: LoadedPackage,
}

impl Artifact {
    /// Builds the artifact of an authoring directory (`Prompt.toml` + tensor file).
    pub fn build(dir: &Path) -> Result<Artifact> {
        let manifest = Manifest::load(dir)?;
        let prompt = match &manifest.prompt {
            None => None,
            Some(section) => {
                let path = dir.join(&section.file);
                let bytes = fs::read(&path).with_context(|| format!("reading the prompt tensor {}", path.display()))?;
                let tensor = read_authoring_tensor(&bytes, &manifest)
                    .with_context(|| format!("invalid prompt tensor {}", path.display()))?;
                Some(tensor)
            }
        };
        Artifact::from_parts(manifest, prompt)
    }

    /// Builds an artifact from a manifest and its tensor (e.g. straight from a
    /// training run). `prompt` must be `None` exactly for a prompt set.
    pub fn from_parts(manifest: Manifest, prompt: Option<PromptTensor>) -> Result<Artifact> {
        manifest.validate()?;
        check_prompt_against_manifest(&manifest, prompt.as_ref())?;
        let mut metadata = BTreeMap::new();
        metadata.insert(META_FORMAT.to_string(), manifest.format.to_string());
        metadata.insert(META_MANIFEST.to_string(), manifest.to_json());
        let shape;
        let tensors: Vec<TensorToWrite<'_>> = match &prompt {
            Some(p) => {
                shape = [p.length, p.hidden];
                vec![TensorToWrite { name: PROMPT_TENSOR, dtype: p.dtype, shape: &shape, data: &p.data }]
            }
            None => Vec::new(),
        };
        let bytes = safetensors_file::write(&metadata, &tensors);
        let checksum = sha256(&bytes);
        let size = bytes.len() as u64;
        Ok(Artifact { bytes, checksum: checksum.clone(), package: LoadedPackage { manifest, prompt, checksum, size } })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// sha256 of the bytes: the package checksum.
    pub fn checksum(&self) -> &Checksum {
        &self.checksum
    }
    pub fn manifest(&self) -> &Manifest {
        &self.package.manifest
    }
    pub fn package(&self) -> &LoadedPackage {
        &self.package
    }
    pub fn into_package(self) -> LoadedPackage {
        self.package
    }

    /// Writes the artifact to `path` atomically (temp file + fsync + rename).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.bytes)
    }
}

/// A verified package read from an artifact.
#[derive(Debug, Clone)]
pub struct LoadedPackage {
    pub manifest: Manifest,
    /// `None` for a prompt set.
    pub prompt: Option<PromptTensor>,
    /// sha256 of the artifact bytes.
    pub checksum: Checksum,
    /// Artifact size in bytes.
    pub size: u64,
}

impl LoadedPackage {
    /// Reads and fully validates an artifact file.
    pub fn read(path: &Path) -> Result<LoadedPackage> {
        let bytes = fs::read(path).with_context(|| format!("reading artifact {}", path.display()))?;
        LoadedPackage::from_bytes(&bytes).with_context(|| format!("invalid package artifact {}", path.display()))
    }

    /// Reads an artifact file and checks it against the checksum the lock or
    /// index promised before trusting anything in it.
    pub fn read_verified(path: &Path, expected: &Checksum) -> Result<LoadedPackage> {
        let bytes = fs::read(path).with_context(|| format!("reading artifact {}", path.display()))?;
        let actual = sha256(&bytes);
        if &actual != expected {
            bail!("artifact {} has checksum {}, expected {}", path.display(), actual.prefixed(), expected.prefixed());
        }
        LoadedPackage::from_bytes(&bytes).with_context(|| format!("invalid package artifact {}", path.display()))
    }

    /// Validates artifact bytes: container structure, metadata, manifest,
    /// and tensor dtype/shape/values against the manifest.
    pub fn from_bytes(bytes: &[u8]) -> Result<LoadedPackage> {
        let raw = safetensors_file::parse(bytes)?;
        let format = raw.metadata.get(META_FORMAT).with_context(|| {
            format!("metadata has no `{META_FORMAT}` key: this is a safetensors file, but not an attempt-pkg artifact")
        })?;
        match format.parse::<u32>() {
            Ok(f) if (MANIFEST_FORMAT..=SIGNATURE_FORMAT).contains(&f) => {}
            _ => bail!(
                "artifact format `{format}` is not supported by this attempt-pkg (it reads {MANIFEST_FORMAT} to {SIGNATURE_FORMAT}); upgrade attempt-pkg"
            ),
        }
        let manifest_json =
            raw.metadata.get(META_MANIFEST).with_context(|| format!("metadata has no `{META_MANIFEST}` key"))?;
        let manifest = Manifest::from_json(manifest_json).context("the embedded manifest is invalid")?;
        let prompt = prompt_from_raw(bytes, &raw, &manifest)?;
        check_prompt_against_manifest(&manifest, prompt.as_ref())?;
        Ok(LoadedPackage { manifest, prompt, checksum: sha256(bytes), size: bytes.len() as u64 })
    }

    /// Rows of the prompt; 0 for a prompt set.
    pub fn prompt_length(&self) -> u32 {
        self.prompt.as_ref().map_or(0, |p| p.length as u32)
    }

    /// The prompt as an f32 candle tensor `[length, hidden]`; fails for a prompt set.
    pub fn prompt_tensor(&self, device: &candle_core::Device) -> Result<candle_core::Tensor> {
        match &self.prompt {
            Some(p) => p.to_candle(device),
            None => bail!("{} is a prompt set: it has no prompt tensor of its own", self.manifest.id()),
        }
    }

    /// This version's line in the sparse index.
    pub fn index_entry(&self) -> IndexEntry {
        let m = &self.manifest;
        IndexEntry {
            name: m.package.name.clone(),
            vers: m.package.version.clone(),
            cksum: self.checksum.clone(),
            deps: m.dependencies.iter().map(|(name, req)| IndexDep { name: name.clone(), req: req.clone() }).collect(),
            yanked: false,
            task: m.package.task.clone(),
            base_model: m.base_model.fingerprint.clone(),
            hidden_size: m.base_model.hidden_size,
            prompt_length: self.prompt_length(),
            size: self.size,
            v: FORMAT_VERSION,
            sig: m.signature.clone(),
        }
    }
}

/// The authoring tensor file: exactly one tensor named `prompt`; its own
/// metadata (if any) is ignored, the manifest is the source of truth.
fn read_authoring_tensor(bytes: &[u8], manifest: &Manifest) -> Result<PromptTensor> {
    let raw = safetensors_file::parse(bytes)?;
    prompt_from_raw(bytes, &raw, manifest)?
        .context("the tensor file holds no tensor; it must hold one tensor named `prompt`")
}

fn prompt_from_raw(bytes: &[u8], raw: &RawFile, manifest: &Manifest) -> Result<Option<PromptTensor>> {
    let names: Vec<&str> = raw.tensors.iter().map(|t| t.name.as_str()).collect();
    let tensor = match raw.tensors.as_slice() {
        [] => return Ok(None),
        [t] if t.name == PROMPT_TENSOR => t,
        _ => bail!("expected exactly one tensor named `{PROMPT_TENSOR}`, found {names:?}"),
    };
    let dtype = Dtype::parse(&tensor.dtype).with_context(|| {
        format!("tensor `{PROMPT_TENSOR}` has dtype {}; only F32, F16 and BF16 are accepted", tensor.dtype)
    })?;
    let hidden = manifest.base_model.hidden_size as usize;
    let (length, width) = match tensor.shape.as_slice() {
        [l, h] => (*l, *h),
        other => bail!("tensor `{PROMPT_TENSOR}` has shape {other:?}; expected [length, {hidden}]"),
    };
    if width != hidden {
        bail!(
            "tensor `{PROMPT_TENSOR}` has shape [{length}, {width}], but [base-model] hidden-size is {hidden} \
             (was the prompt trained for another model?)"
        );
    }
    if length == 0 || length > MAX_PROMPT_LENGTH {
        bail!("tensor `{PROMPT_TENSOR}` has {length} rows; a prompt needs 1 to {MAX_PROMPT_LENGTH}");
    }
    PromptTensor::from_bytes(dtype, length, width, bytes[tensor.data.clone()].to_vec()).map(Some)
}

fn check_prompt_against_manifest(manifest: &Manifest, prompt: Option<&PromptTensor>) -> Result<()> {
    match (&manifest.prompt, prompt) {
        (Some(_), None) => {
            bail!("the manifest has a [prompt] section but the artifact holds no `{PROMPT_TENSOR}` tensor")
        }
        (None, Some(_)) => {
            bail!("the manifest is a prompt set (no [prompt] section) but a `{PROMPT_TENSOR}` tensor is present")
        }
        (Some(_), Some(p)) if p.hidden != manifest.base_model.hidden_size as usize => {
            bail!("the prompt is {} wide but [base-model] hidden-size is {}", p.hidden, manifest.base_model.hidden_size)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(with_prompt: bool) -> Manifest {
        let prompt = if with_prompt { "[prompt]\nfile = \"prompt.safetensors\"\n" } else { "" };
        Manifest::from_toml(&format!(
            "[package]\nname = \"p\"\nversion = \"1.0.0\"\ntask = \"t\"\n[base-model]\nname = \"m\"\n\
             fingerprint = \"sha256:{}\"\nhidden-size = 3\n{prompt}[dependencies]\nq = \"^1\"\n",
            "c".repeat(64)
        ))
        .unwrap()
    }

    #[test]
    fn deterministic_and_reads_back() {
        let prompt = PromptTensor::from_f32(2, 3, &[0.5, -1.0, 2.0, 0.0, 1.5, 3.25]).unwrap();
        let a = Artifact::from_parts(manifest(true), Some(prompt.clone())).unwrap();
        let b = Artifact::from_parts(manifest(true), Some(prompt)).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        let back = LoadedPackage::from_bytes(a.bytes()).unwrap();
        assert_eq!(back.manifest, *a.manifest());
        assert_eq!(back.prompt_length(), 2);
        assert_eq!(back.checksum, *a.checksum());
        let t = back.prompt_tensor(&candle_core::Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        assert_eq!(t.to_vec2::<f32>().unwrap()[1], vec![0.0, 1.5, 3.25]);
    }

    #[test]
    fn prompt_set_has_no_tensor_and_shape_must_match() {
        let set = Artifact::from_parts(manifest(false), None).unwrap();
        assert_eq!(LoadedPackage::from_bytes(set.bytes()).unwrap().prompt_length(), 0);
        let wide = PromptTensor::from_f32(1, 4, &[0.0; 4]).unwrap();
        assert!(Artifact::from_parts(manifest(true), Some(wide)).is_err());
        assert!(Artifact::from_parts(manifest(true), None).is_err());
        assert!(PromptTensor::from_f32(1, 2, &[0.0, f32::NAN]).is_err());
    }

    #[test]
    fn artifact_metadata_must_describe_the_tensor() {
        use super::super::safetensors_file::{write, TensorToWrite};
        let data: Vec<u8> = [0.25f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensor = [TensorToWrite { name: PROMPT_TENSOR, dtype: Dtype::F32, shape: &[2, 3], data: &data }];
        let with_meta = |pairs: &[(&str, String)]| {
            let meta: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            write(&meta, &tensor)
        };
        let good = manifest(true).to_json();
        assert!(
            LoadedPackage::from_bytes(&with_meta(&[(META_FORMAT, "1".into()), (META_MANIFEST, good.clone())])).is_ok()
        );
        let err = |bytes: Vec<u8>| format!("{:#}", LoadedPackage::from_bytes(&bytes).unwrap_err());
        assert!(err(with_meta(&[(META_MANIFEST, good.clone())])).contains("not an attempt-pkg artifact"));
        assert!(err(with_meta(&[(META_FORMAT, "3".into()), (META_MANIFEST, good.clone())])).contains("upgrade"));
        assert!(err(with_meta(&[(META_FORMAT, "1".into())])).contains("attempt.manifest"));
        assert!(err(with_meta(&[(META_FORMAT, "1".into()), (META_MANIFEST, "{".into())])).contains("not valid JSON"));
        let wide = good.replace("\"hidden-size\":3", "\"hidden-size\":4");
        assert_ne!(wide, good);
        assert!(err(with_meta(&[(META_FORMAT, "1".into()), (META_MANIFEST, wide)])).contains("hidden-size is 4"));
        let set = manifest(false).to_json();
        assert!(err(with_meta(&[(META_FORMAT, "1".into()), (META_MANIFEST, set)])).contains("prompt set"));
    }

    #[test]
    fn read_verified_rejects_a_tampered_file() {
        let prompt = PromptTensor::from_f32(1, 3, &[1.0, 2.0, 3.0]).unwrap();
        let a = Artifact::from_parts(manifest(true), Some(prompt)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        a.write_to(&path).unwrap();
        assert!(LoadedPackage::read_verified(&path, a.checksum()).is_ok());
        let mut bytes = a.bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = format!("{:#}", LoadedPackage::read_verified(&path, a.checksum()).unwrap_err());
        assert!(err.contains("expected sha256:"), "{err}");
    }
}
