//! `$ATTEMPT_HOME` (default `~/.attempt`): where the default registry, the
//! download cache and imported models live.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$ATTEMPT_HOME`, else `~/.attempt`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os("ATTEMPT_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::at(PathBuf::from(dir)));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .context("neither ATTEMPT_HOME nor HOME is set; set ATTEMPT_HOME to a directory attempt-pkg may use")?;
        Ok(Home::at(PathBuf::from(home).join(".attempt")))
    }

    pub fn at(root: PathBuf) -> Self {
        Home { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The default local registry (`--registry` / `ATTEMPT_REGISTRY` override it).
    pub fn default_registry(&self) -> PathBuf {
        self.root.join("registry")
    }

    /// The content-addressed download cache shared by all projects.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Imported and fetched base models.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }
}
