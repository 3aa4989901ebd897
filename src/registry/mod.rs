//! Registries: where packages are published and found.
//!
//! Reading is the [`RegistrySource`] trait (what the resolver and the fetcher
//! need); writing (publish, yank) is the local registry's job
//! ([`LocalRegistry`], async; [`BlockingRegistry`] for sync callers).

mod blocking;
mod local;
mod source;

use std::path::PathBuf;

use anyhow::{bail, Result};

pub use blocking::BlockingRegistry;
pub use local::{Backend, LocalRegistry, WriteLock, PackageInfo, PackageSummary, Published, VersionInfo, YankEvent, YankOutcome};
pub use source::{DirSource, RegistrySource};

use crate::home::Home;

/// The registry directory named by `--registry` / `ATTEMPT_REGISTRY` (a path
/// or a `file://` URL), else `$ATTEMPT_HOME/registry`.
pub fn registry_dir(arg: Option<&str>, home: &Home) -> Result<PathBuf> {
    match arg.filter(|a| !a.is_empty()) {
        None => Ok(home.default_registry()),
        Some(a) if a.starts_with("http://") || a.starts_with("https://") => {
            bail!("remote registries (`{a}`) are not supported yet; pass a registry directory")
        }
        Some(a) => Ok(PathBuf::from(a.strip_prefix("file://").unwrap_or(a))),
    }
}
