//! From a verified lock to the frozen source prompts of a run, refusing any
//! prompt that was not trained for this exact model.

use anyhow::{bail, Result};
use candle_core::Device;
use registry_index::Checksum;

use crate::package::LoadedPackage;
use crate::project::{LocalBlob, Lockfile};
use crate::train::{SourcePrompt, SourceRecord};

/// The lock's prompts as training inputs, with what the run records of them.
pub struct VerifiedSources {
    pub sources: Vec<SourcePrompt>,
    pub records: Vec<SourceRecord>,
    /// Rows of every source prompt (`None` without sources).
    pub prompt_length: Option<usize>,
}

/// Read every locked artifact (re-hashed against the lock), and check that
/// the lock's base model, every prompt's base model and every prompt's
/// shape agree with the local model (`fingerprint`, `hidden`). Prompt sets
/// contribute their dependencies, which the lock lists as packages too.
pub fn verified_sources(
    lock: &Lockfile,
    blobs: &[LocalBlob],
    fingerprint: &Checksum,
    hidden: usize,
    device: &Device,
) -> Result<VerifiedSources> {
    if let Some(model) = &lock.base_model {
        if &model.fingerprint != fingerprint {
            bail!(
                "attempt.lock is for base model {}, but the local model has fingerprint {}; \
                 point [model] path at the model the prompts were trained for, or re-resolve for this model \
                 (set [model] fingerprint and run `attempt-pkg update`)",
                model.fingerprint.prefixed(),
                fingerprint.prefixed()
            );
        }
        if let Some(h) = model.hidden_size {
            if h as usize != hidden {
                bail!("attempt.lock expects hidden size {h}, the local model has {hidden}");
            }
        }
    }
    let mut sources = Vec::new();
    let mut records = Vec::new();
    let mut length: Option<(usize, String)> = None;
    for blob in blobs {
        let p = &blob.package;
        let pkg = LoadedPackage::read_verified(&blob.path, &p.checksum)?;
        let id = format!("{}@{}", p.name, p.version);
        let theirs = &pkg.manifest.base_model.fingerprint;
        if theirs != fingerprint {
            bail!(
                "{id} was trained for base model {} ({}), but the local model has fingerprint {}; \
                 a soft prompt only works with the exact model it was trained for",
                theirs.prefixed(),
                pkg.manifest.base_model.name,
                fingerprint.prefixed()
            );
        }
        if pkg.manifest.base_model.hidden_size as usize != hidden {
            bail!("{id} has hidden size {}, the local model has {hidden}", pkg.manifest.base_model.hidden_size);
        }
        let Some(prompt) = &pkg.prompt else { continue };
        match &length {
            Some((m, other)) if *m != prompt.length() => {
                bail!(
                    "{id} has prompt length {} but {other} has {m}; ATTEMPT mixes prompts of one length",
                    prompt.length()
                )
            }
            Some(_) => {}
            None => length = Some((prompt.length(), id.clone())),
        }
        if let Some(m) = lock.base_model.as_ref().and_then(|m| m.prompt_length) {
            if m as usize != prompt.length() {
                bail!("{id} has prompt length {}, attempt.lock expects {m}", prompt.length());
            }
        }
        sources.push(SourcePrompt { name: id, tensor: pkg.prompt_tensor(device)? });
        records.push(SourceRecord {
            name: p.name.clone(),
            version: p.version.to_string(),
            checksum: p.checksum.prefixed(),
        });
    }
    Ok(VerifiedSources { sources, records, prompt_length: length.map(|(m, _)| m) })
}
