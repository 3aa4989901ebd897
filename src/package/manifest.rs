//! `Prompt.toml`: the manifest of a prompt package's authoring directory.
//!
//! The same manifest, normalised, travels inside the artifact's safetensors
//! metadata, so a published artifact describes itself.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use registry_index::{canonical_name, validate_name, Checksum};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

/// The manifest file name inside an authoring directory.
pub const MANIFEST_FILE: &str = "Prompt.toml";

/// Format version of `Prompt.toml` and of the artifact metadata for a
/// manifest without newer sections. Older readers refuse a newer format
/// instead of misreading it, so a manifest is written with the oldest format
/// that holds it.
pub const MANIFEST_FORMAT: u32 = 1;
/// Format 2 adds the optional `[signature]` (the source data's task
/// signature); the newest this build reads and writes.
pub const SIGNATURE_FORMAT: u32 = 2;

/// Longest accepted free-text field (task, description, license…), in bytes.
const MAX_TEXT_LEN: usize = 4096;

/// Upper bound on a prompt's width; real backbones are far below it, and it
/// keeps a hostile manifest from asking for absurd allocations.
pub const MAX_HIDDEN_SIZE: u32 = 65_536;

/// A parsed and validated `Prompt.toml`.
///
/// Field order and map types (`BTreeMap`) are fixed so that serialising a
/// manifest always gives the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (`format = 1`); optional in `Prompt.toml`, always
    /// written into artifacts.
    #[serde(default = "default_format")]
    pub format: u32,
    pub package: PackageMeta,
    #[serde(rename = "base-model")]
    pub base_model: BaseModel,
    /// The prompt tensor. Absent for a pure prompt set (a meta-package that
    /// only depends on other prompt packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptSection>,
    /// Other prompt packages this one pulls in: name → semver requirement.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, VersionReq>,
    /// Free-form training provenance (e.g. `source-tasks`, `git-commit`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, String>,
    /// Evaluation metrics (e.g. `accuracy = 0.843`); must be finite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// What the source data looks like to the base model (`train-source`
    /// records it; format 2). Copied into the index line, so clients can
    /// pre-filter packages by similarity to their data without a download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<registry_index::Signature>,
}

fn default_format() -> u32 {
    MANIFEST_FORMAT
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageMeta {
    pub name: String,
    pub version: Version,
    pub task: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// The frozen backbone the prompt was trained for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BaseModel {
    pub name: String,
    /// `sha256:<64 hex>` identity of the model (see `attempt-pkg model fingerprint`).
    pub fingerprint: Checksum,
    pub hidden_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSection {
    /// Path of the tensor file, relative to the authoring directory.
    pub file: String,
}

/// `name@version`, used in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageId {
    pub name: String,
    pub version: Version,
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl Manifest {
    /// Reads and validates `<dir>/Prompt.toml`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading {} (an authoring directory needs a {MANIFEST_FILE})", path.display()))?;
        Manifest::from_toml(&text).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses and validates manifest text in TOML form.
    pub fn from_toml(text: &str) -> Result<Manifest> {
        // Check the format version before the strict parse, so a newer
        // manifest fails with "upgrade" rather than "unknown field".
        let raw: toml::Value = toml::from_str(text).context("not valid TOML")?;
        check_format(raw.get("format").and_then(|v| v.as_integer()))?;
        let mut manifest: Manifest = toml::from_str(text)?;
        if raw.get("format").is_none() && manifest.signature.is_some() {
            manifest.format = SIGNATURE_FORMAT;
        }
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parses and validates the JSON form stored in artifact metadata.
    pub fn from_json(text: &str) -> Result<Manifest> {
        let raw: serde_json::Value = serde_json::from_str(text).context("manifest is not valid JSON")?;
        check_format(raw.get("format").and_then(|v| v.as_i64()))?;
        let manifest: Manifest = serde_json::from_value(raw)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The canonical JSON form embedded in artifacts (deterministic bytes).
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and BTreeMaps always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn id(&self) -> PackageId {
        PackageId { name: self.package.name.clone(), version: self.package.version.clone() }
    }

    /// True for a meta-package without a tensor of its own.
    pub fn is_prompt_set(&self) -> bool {
        self.prompt.is_none()
    }

    /// Checks every rule a manifest must satisfy beyond its syntax.
    pub fn validate(&self) -> Result<()> {
        check_format(Some(i64::from(self.format)))?;
        if let Some(signature) = &self.signature {
            if self.format < SIGNATURE_FORMAT {
                bail!("[signature] needs `format = {SIGNATURE_FORMAT}` (the manifest says format {})", self.format);
            }
            signature.decode(self.base_model.hidden_size as usize).context("[signature]")?;
        }
        let p = &self.package;
        validate_name(&p.name).context("[package] name")?;
        check_text("[package] task", &p.task, true)?;
        check_text("[package] description", &p.description, false)?;
        if let Some(license) = &p.license {
            check_text("[package] license", license, true)?;
        }
        check_text("[base-model] name", &self.base_model.name, true)?;
        let hs = self.base_model.hidden_size;
        if hs == 0 || hs > MAX_HIDDEN_SIZE {
            bail!("[base-model] hidden-size is {hs}; it must be between 1 and {MAX_HIDDEN_SIZE}");
        }
        match &self.prompt {
            Some(section) => check_relative_file(&section.file)?,
            None if self.dependencies.is_empty() => bail!(
                "the manifest has neither a [prompt] section nor [dependencies]; \
                 add `[prompt] file = \"prompt.safetensors\"`, or dependencies for a prompt set"
            ),
            None => {}
        }
        let own = canonical_name(&p.name);
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for dep in self.dependencies.keys() {
            validate_name(dep).with_context(|| format!("[dependencies] entry `{dep}`"))?;
            let canon = canonical_name(dep);
            if canon == own {
                bail!("[dependencies]: package `{}` cannot depend on itself (`{dep}`)", p.name);
            }
            if let Some(other) = seen.insert(canon, dep) {
                bail!("[dependencies]: `{other}` and `{dep}` name the same package (`-` and `_` are equivalent)");
            }
        }
        for (key, value) in &self.provenance {
            check_text(&format!("[provenance] {key}"), value, false)?;
        }
        for (key, value) in &self.metrics {
            if !value.is_finite() {
                bail!("[metrics] {key} = {value} is not a finite number");
            }
        }
        Ok(())
    }
}

fn check_format(found: Option<i64>) -> Result<()> {
    match found {
        None => Ok(()),
        Some(v) if (i64::from(MANIFEST_FORMAT)..=i64::from(SIGNATURE_FORMAT)).contains(&v) => Ok(()),
        Some(v) if v > i64::from(SIGNATURE_FORMAT) => bail!(
            "manifest format {v} is newer than this attempt-pkg understands ({SIGNATURE_FORMAT}); upgrade attempt-pkg"
        ),
        Some(v) => bail!("manifest format {v} is not supported (expected {MANIFEST_FORMAT} to {SIGNATURE_FORMAT})"),
    }
}

fn check_text(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        bail!("{field} must not be empty");
    }
    if value.len() > MAX_TEXT_LEN {
        bail!("{field} is {} bytes long; the limit is {MAX_TEXT_LEN}", value.len());
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        bail!("{field} contains control characters");
    }
    Ok(())
}

/// The tensor file must stay inside the authoring directory.
fn check_relative_file(file: &str) -> Result<()> {
    let path = Path::new(file);
    let inside = !file.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        bail!(
            "[prompt] file `{file}` must be a relative path inside the authoring directory (no `..`, no absolute path)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[package]
name = "mnli-prompt"
version = "1.0.0"
task = "mnli"
description = "MNLI soft prompt"
license = "Apache-2.0"
[base-model]
name = "all-MiniLM-L6-v2"
fingerprint = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
hidden-size = 384
[prompt]
file = "prompt.safetensors"
[dependencies]
sst2-prompt = "^1.0"
"#;

    #[test]
    fn parses_and_round_trips_through_json() {
        let m = Manifest::from_toml(GOOD).unwrap();
        assert_eq!(m.package.name, "mnli-prompt");
        assert_eq!(m.base_model.hidden_size, 384);
        assert_eq!(m.format, MANIFEST_FORMAT);
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_json(), m.to_json());
    }

    #[test]
    fn a_signature_makes_format_2_and_round_trips() {
        let sig = registry_index::Signature::encode(&vec![0.25; 384], 1000);
        let text = format!("{GOOD}\n[signature]\nexamples = 1000\nmean = \"{}\"\n", sig.mean);
        let m = Manifest::from_toml(&text).unwrap();
        assert_eq!((m.format, m.signature.as_ref()), (SIGNATURE_FORMAT, Some(&sig)));
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        // Without one, the format stays 1, so older readers keep reading it.
        assert_eq!(Manifest::from_toml(GOOD).unwrap().format, MANIFEST_FORMAT);
    }

    #[test]
    fn rejects_bad_fields() {
        let cases = [
            (GOOD.replace("mnli-prompt", "Mnli"), "name"),
            (GOOD.replace("\"1.0.0\"", "\"1.0\""), "version"),
            (GOOD.replace("hidden-size = 384", "hidden-size = 0"), "hidden-size"),
            (GOOD.replace("prompt.safetensors", "../x.safetensors"), "relative"),
            (GOOD.replace("sst2-prompt", "mnli_prompt"), "itself"),
            (GOOD.replace("^1.0", "not a req"), "req"),
            (GOOD.replace("hidden-size", "hiden-size"), "unknown"),
            (format!("format = 3\n{GOOD}"), "newer"),
            (format!("format = 1\n{GOOD}\n[signature]\nexamples = 2\nmean = \"AAAA\"\n"), "signature in format 1"),
            (format!("{GOOD}\n[signature]\nexamples = 2\nmean = \"AAAA\"\n"), "signature of the wrong width"),
        ];
        for (text, what) in cases {
            assert!(Manifest::from_toml(&text).is_err(), "{what} should be rejected");
        }
    }

    #[test]
    fn prompt_set_needs_dependencies() {
        let no_prompt = GOOD.replace("[prompt]\nfile = \"prompt.safetensors\"\n", "");
        assert!(Manifest::from_toml(&no_prompt).unwrap().is_prompt_set());
        let empty = no_prompt.replace("[dependencies]\nsst2-prompt = \"^1.0\"\n", "");
        assert!(Manifest::from_toml(&empty).is_err());
    }
}
