//! Talking to registries: `--registry` (a name from config.toml, an index
//! URL, or a directory) → a [`RegistrySource`], tokens from
//! credentials.toml, and the HTTP client for remote registries.

pub mod config;
pub mod credentials;
mod http;

use std::path::PathBuf;

use anyhow::{Context, Result};
use url::Url;

pub use config::{normalize_index_url, Config, Location};
pub use credentials::Credentials;
pub use http::{download_many, DownloadJob, HttpRegistry, RemoteOptions};

use crate::home::Home;
use crate::registry::{DirSource, RegistrySource};

/// The registry a command should use, before any connection is made.
#[derive(Debug, Clone)]
pub enum RegistryTarget {
    Dir(PathBuf),
    Remote(RemoteTarget),
}

#[derive(Debug, Clone)]
pub struct RemoteTarget {
    /// The name in config.toml, if it has one (the one asked for, before replacement).
    pub name: Option<String>,
    /// What is contacted (the mirror, when replaced).
    pub index_url: Url,
    /// What lockfiles record: `registry+<index URL asked for>`.
    pub source_id: String,
}

impl RemoteTarget {
    pub fn display(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index_url.to_string())
    }

    /// The token: `explicit` (`--token`), else `ATTEMPT_TOKEN`, else
    /// credentials.toml under the registry's name or index URL.
    pub fn token(&self, explicit: Option<&str>, home: &Home) -> Result<Option<String>> {
        if let Some(t) = explicit.filter(|t| !t.is_empty()) {
            return Ok(Some(t.to_string()));
        }
        if let Some(t) = std::env::var("ATTEMPT_TOKEN").ok().filter(|t| !t.is_empty()) {
            return Ok(Some(t));
        }
        let creds = Credentials::load(home)?;
        let by_name = self.name.as_deref().and_then(|n| creds.token(n));
        Ok(by_name.or_else(|| creds.token(self.index_url.as_str())).map(str::to_string))
    }
}

/// Resolves `--registry` (or `ATTEMPT_REGISTRY`): an `http(s)://` URL, a
/// registry name from `$ATTEMPT_HOME/config.toml` (following `replace-with`),
/// or a directory (`file://` accepted). Without one: config.toml's default,
/// else `$ATTEMPT_HOME/registry`.
pub fn resolve_target(arg: Option<&str>, home: &Home) -> Result<RegistryTarget> {
    let config = Config::load(home)?;
    let arg = arg.filter(|a| !a.is_empty());
    let name = match arg {
        Some(a) if a.starts_with("http://") || a.starts_with("https://") => {
            let url = normalize_index_url(a)?;
            match config.name_of_url(&url) {
                Some(name) => name,
                None => {
                    let source_id = format!("registry+{url}");
                    return Ok(RegistryTarget::Remote(RemoteTarget { name: None, index_url: url, source_id }));
                }
            }
        }
        Some(a) if config.registries.contains_key(a) => a.to_string(),
        Some(a) => return Ok(RegistryTarget::Dir(PathBuf::from(a.strip_prefix("file://").unwrap_or(a)))),
        None => match &config.registry.default {
            Some(default) => default.clone(),
            None => return Ok(RegistryTarget::Dir(home.default_registry())),
        },
    };
    let origin = config.location(&name)?;
    let contacted = config.location(&config.replacement(&name)?)?;
    let source_id = match &origin {
        Location::Remote(url) => format!("registry+{url}"),
        Location::Dir(dir) => DirSource::new(dir.clone()).source_id(),
    };
    Ok(match contacted {
        Location::Dir(dir) => RegistryTarget::Dir(dir),
        Location::Remote(index_url) => RegistryTarget::Remote(RemoteTarget { name: Some(name), index_url, source_id }),
    })
}

/// Opens the registry `--registry` names for reading (what add/fetch/lock use).
pub fn open_source(arg: Option<&str>, home: &Home, offline: bool) -> Result<Box<dyn RegistrySource + Send + Sync>> {
    match resolve_target(arg, home)? {
        RegistryTarget::Dir(dir) => Ok(Box::new(DirSource::new(dir))),
        RegistryTarget::Remote(target) => Ok(Box::new(open_remote(&target, None, home, offline)?)),
    }
}

/// An HTTP client for a remote target, with its token.
pub fn open_remote(target: &RemoteTarget, token: Option<&str>, home: &Home, offline: bool) -> Result<HttpRegistry> {
    let token = target.token(token, home).context("reading credentials")?;
    HttpRegistry::new(RemoteOptions {
        index_url: target.index_url.clone(),
        source_id: target.source_id.clone(),
        display: target.display(),
        token,
        offline,
        cache_root: home.cache_dir(),
    })
}
