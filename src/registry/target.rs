//! `--registry` (or `ATTEMPT_REGISTRY`) → which registry, before anything is
//! opened: the one place that reads the argument, config.toml and its
//! `replace-with` mirrors. Every command goes through [`resolve_target`]
//! (via [`super::open`]; `login` only needs the target).

use std::path::PathBuf;

use anyhow::Result;
use url::Url;

use super::remote::{normalize_index_url, Config, Credentials, Location};
use super::{DirSource, RegistrySource};
use crate::home::Home;

/// The registry a command should use.
#[derive(Debug, Clone)]
pub enum RegistryTarget {
    Dir(DirTarget),
    Remote(RemoteTarget),
}

#[derive(Debug, Clone)]
pub struct DirTarget {
    /// The directory read and written (the mirror, when replaced).
    pub root: PathBuf,
    /// What lockfiles record when it is not the directory itself: the
    /// registry asked for, when config.toml replaces it with this directory.
    pub replaces: Option<String>,
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

impl DirTarget {
    fn plain(root: PathBuf) -> DirTarget {
        DirTarget { root, replaces: None }
    }

    /// What lockfiles record. Computed on use: a directory's id is its
    /// canonical path, known only once the directory exists.
    pub fn source_id(&self) -> String {
        self.replaces.clone().unwrap_or_else(|| DirSource::new(self.root.clone()).source_id())
    }
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

/// Resolves `--registry`: an `http(s)://` URL, a registry name from
/// `$ATTEMPT_HOME/config.toml` (following `replace-with`), or a directory
/// (`file://` accepted). Without one: config.toml's default, else
/// `$ATTEMPT_HOME/registry`. A config.toml that does not parse is an error
/// here, for every command.
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
        Some(a) => {
            return Ok(RegistryTarget::Dir(DirTarget::plain(PathBuf::from(a.strip_prefix("file://").unwrap_or(a)))))
        }
        None => match &config.registry.default {
            Some(default) => default.clone(),
            None => return Ok(RegistryTarget::Dir(DirTarget::plain(home.default_registry()))),
        },
    };
    let origin = config.location(&name)?;
    let contacted = config.location(&config.replacement(&name)?)?;
    let source_id = match &origin {
        Location::Remote(url) => format!("registry+{url}"),
        Location::Dir(dir) => DirSource::new(dir.clone()).source_id(),
    };
    Ok(match contacted {
        Location::Dir(root) => RegistryTarget::Dir(DirTarget { root, replaces: Some(source_id) }),
        Location::Remote(index_url) => RegistryTarget::Remote(RemoteTarget { name: Some(name), index_url, source_id }),
    })
}
