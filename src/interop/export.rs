//! Taking a package back out: resolve `NAME@VER` in a registry, read and
//! verify its artifact, write it as a PEFT adapter, a safetensors file or a
//! PyTorch checkpoint.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use registry_index::{blob_path, IndexEntry};
use semver::{Version, VersionReq};

use super::output::{check_writable, write_files};
use super::{peft, safetensors_io, torch_file};
use crate::package::{LoadedPackage, PROMPT_TENSOR};
use crate::registry::RegistrySource;

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// PEFT prompt-tuning adapter: adapter_config.json + adapter_model.safetensors.
    Peft,
    /// prompt.safetensors with one tensor named `prompt`.
    Safetensors,
    /// prompt.pt, loadable with torch.load(path, weights_only=True).
    Pt,
}

impl Format {
    /// The files this format writes into the output directory.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Format::Peft => &[peft::CONFIG_FILE, peft::WEIGHTS_FILE],
            Format::Safetensors => &["prompt.safetensors"],
            Format::Pt => &["prompt.pt"],
        }
    }
}

/// `name`, `name@1.2.3` (exact) or `name@^1.2` (a requirement).
#[derive(Debug, Clone)]
pub struct PackageSpec {
    pub name: String,
    pub req: Option<VersionReq>,
    pub exact: Option<Version>,
}

impl PackageSpec {
    pub fn parse(text: &str) -> Result<PackageSpec> {
        let (name, ver) = match text.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        registry_index::validate_name(name).with_context(|| format!("`{text}`: invalid package name"))?;
        let mut spec = PackageSpec { name: name.to_string(), req: None, exact: None };
        if let Some(v) = ver {
            if let Ok(exact) = Version::parse(v) {
                spec.exact = Some(exact);
            } else {
                spec.req = Some(VersionReq::parse(v).with_context(|| {
                    format!("`{text}`: `{v}` is neither a version (1.2.3) nor a requirement (^1.2, ~1.2.3, >=1, <2)")
                })?);
            }
        }
        Ok(spec)
    }
}

/// Picks the version `spec` names: the exact version (even if yanked —
/// it was asked for by name), else the newest unyanked match.
pub fn resolve(source: &dyn RegistrySource, spec: &PackageSpec) -> Result<IndexEntry> {
    let versions = source.versions(&spec.name)?;
    if versions.is_empty() {
        bail!("package `{}` is not in the registry", spec.name);
    }
    let listed = || versions.iter().map(|e| e.vers.to_string()).collect::<Vec<_>>().join(", ");
    if let Some(exact) = &spec.exact {
        return versions
            .iter()
            .find(|e| &e.vers == exact)
            .cloned()
            .with_context(|| format!("`{}` has no version {exact}; published: {}", spec.name, listed()));
    }
    let req = spec.req.clone().unwrap_or(VersionReq::STAR);
    versions
        .iter()
        .filter(|e| !e.yanked && req.matches(&e.vers))
        .max_by(|a, b| a.vers.cmp(&b.vers))
        .cloned()
        .with_context(|| format!("no unyanked version of `{}` matches `{req}`; published: {}", spec.name, listed()))
}

/// Copies the entry's blob out of the registry and verifies it against the
/// index checksum before trusting any of it.
pub fn load(source: &dyn RegistrySource, entry: &IndexEntry) -> Result<LoadedPackage> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let file = tmp.path().join(blob_path(&entry.cksum).replace('/', "_"));
    source.download_blob(&entry.cksum, &file)?;
    LoadedPackage::read_verified(&file, &entry.cksum)
        .with_context(|| format!("{}@{} in the registry is damaged", entry.name, entry.vers))
}

/// Options for [`export`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: Format,
    pub out: PathBuf,
    pub force: bool,
    /// PEFT `task_type`.
    pub task_type: String,
}

/// Writes `pkg` into `opts.out`; returns the written files. Every target is
/// checked before the first is written.
pub fn export(pkg: &LoadedPackage, opts: &ExportOptions) -> Result<Vec<PathBuf>> {
    let prompt = pkg.prompt.as_ref().with_context(|| {
        format!("{} is a prompt set: it has no tensor of its own to export; export its dependencies", pkg.manifest.id())
    })?;
    if opts.format == Format::Peft && !peft::TASK_TYPES.contains(&opts.task_type.as_str()) {
        bail!("--task-type {}: PEFT knows {}", opts.task_type, peft::TASK_TYPES.join(", "));
    }
    check_writable(&opts.out, opts.format.files(), opts.force)?;
    let shape = [prompt.length(), prompt.hidden()];
    let files: Vec<(&str, Vec<u8>)> = match opts.format {
        Format::Peft => vec![
            (peft::CONFIG_FILE, peft::config_json(prompt, &pkg.manifest.base_model.name, &opts.task_type).into_bytes()),
            (peft::WEIGHTS_FILE, peft::weights_bytes(prompt)?),
        ],
        Format::Safetensors => {
            vec![(
                "prompt.safetensors",
                safetensors_io::write_one(PROMPT_TENSOR, prompt.dtype(), &shape, prompt.bytes(), None)?,
            )]
        }
        Format::Pt => vec![("prompt.pt", torch_file::write_single(prompt.dtype(), &shape, prompt.bytes())?)],
    };
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    write_files(&opts.out, &refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_exact_and_requirements() {
        let s = PackageSpec::parse("mnli-prompt@1.2.3").unwrap();
        assert_eq!(s.exact, Some(Version::new(1, 2, 3)));
        let s = PackageSpec::parse("mnli-prompt@^1.2").unwrap();
        assert!(s.req.unwrap().matches(&Version::new(1, 9, 0)));
        assert!(PackageSpec::parse("mnli-prompt").unwrap().req.is_none());
        assert!(PackageSpec::parse("Bad@1.0.0").is_err());
        assert!(PackageSpec::parse("x@not-a-version").is_err());
    }
}
