//! `$ATTEMPT_HOME/credentials.toml` (mode 0600): one token per registry,
//! keyed by the registry's name in config.toml, or by its index URL.
//!
//! ```toml
//! [registries.team]
//! token = "apk_…"
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::home::Home;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub registries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub token: String,
}

impl Credentials {
    pub fn path(home: &Home) -> PathBuf {
        home.root().join("credentials.toml")
    }

    pub fn load(home: &Home) -> Result<Credentials> {
        let path = Credentials::path(home);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("{} is not a valid credentials file", path.display()))
    }

    pub fn token(&self, key: &str) -> Option<&str> {
        self.registries.get(key).map(|e| e.token.as_str())
    }

    /// Stores `token` under `key` and writes the file atomically, readable by the owner only.
    pub fn store(home: &Home, key: &str, token: &str) -> Result<PathBuf> {
        let mut creds = Credentials::load(home)?;
        creds.registries.insert(key.to_string(), Entry { token: token.to_string() });
        let path = Credentials::path(home);
        write_private(&path, toml::to_string(&creds)?.as_bytes())?;
        Ok(path)
    }
}

/// Atomic write of a secret: the temp file is created 0600 (tempfile's
/// default, made sure of here) before any byte is written, then fsynced and renamed.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic_file(path, |file| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(bytes)?;
        Ok(())
    })
}
