//! `$ATTEMPT_HOME/config.toml`: named registries, the default one, and
//! source replacement (mirrors).
//!
//! ```toml
//! [registry]
//! default = "team"
//!
//! [registries.team]
//! index = "https://prompts.example.org/index/"
//! replace-with = "team-mirror"     # fetch from the mirror, lock as `team`
//!
//! [registries.team-mirror]
//! index = "http://mirror.internal:8080/index/"
//!
//! [registries.scratch]
//! path = "/srv/scratch-registry"   # a registry directory
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use url::Url;

use crate::home::Home;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub registry: DefaultSection,
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultSection {
    /// The registry used when `--registry` is not given.
    pub default: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// Sparse index URL of a remote registry.
    pub index: Option<String>,
    /// A registry directory.
    pub path: Option<PathBuf>,
    /// Fetch from this other registry instead (a mirror); lockfiles still
    /// name this one.
    pub replace_with: Option<String>,
}

/// Where a registry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    Remote(Url),
}

impl Config {
    pub fn path(home: &Home) -> PathBuf {
        home.root().join("config.toml")
    }

    /// Reads the config; a missing file is an empty config.
    pub fn load(home: &Home) -> Result<Config> {
        Config::load_from(&Config::path(home))
    }

    pub fn load_from(path: &Path) -> Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("{} is not a valid attempt-pkg config", path.display()))
    }

    /// The location of the registry named `name`, without replacement.
    pub fn location(&self, name: &str) -> Result<Location> {
        let entry = self.entry(name)?;
        match (&entry.index, &entry.path) {
            (Some(index), None) => Ok(Location::Remote(normalize_index_url(index)?)),
            (None, Some(path)) => Ok(Location::Dir(path.clone())),
            _ => bail!(
                "registry `{name}` in config.toml needs exactly one of `index = \"http://…\"` or `path = \"/dir\"`"
            ),
        }
    }

    /// Follows `replace-with` from `name` to the registry actually contacted.
    pub fn replacement(&self, name: &str) -> Result<String> {
        let mut current = name.to_string();
        let mut seen = vec![current.clone()];
        while let Some(next) = self.entry(&current)?.replace_with.clone() {
            if seen.contains(&next) {
                bail!("config.toml: `replace-with` loops: {} -> {next}", seen.join(" -> "));
            }
            seen.push(next.clone());
            current = next;
        }
        Ok(current)
    }

    /// The configured registry whose index URL is `url`, if any.
    pub fn name_of_url(&self, url: &Url) -> Option<String> {
        self.registries.iter().find_map(|(name, entry)| {
            let index = entry.index.as_deref().and_then(|i| normalize_index_url(i).ok())?;
            (index == *url).then(|| name.clone())
        })
    }

    fn entry(&self, name: &str) -> Result<&RegistryEntry> {
        self.registries.get(name).with_context(|| {
            let known: Vec<&str> = self.registries.keys().map(String::as_str).collect();
            format!(
                "no registry named `{name}` in config.toml (known: {}); add `[registries.{name}] index = \"http://HOST/index/\"`",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        })
    }
}

/// `http://host:port` → `http://host:port/index/`; any other path gets a
/// trailing slash, so relative URLs resolve under it.
pub fn normalize_index_url(text: &str) -> Result<Url> {
    let mut url = Url::parse(text).with_context(|| format!("`{text}` is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("registry URL `{text}` must be http:// or https://");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("registry URL `{text}` must not have a query or fragment");
    }
    let path = url.path().to_string();
    if path == "/" || path.is_empty() {
        url.set_path("/index/");
    } else if !path.ends_with('/') {
        url.set_path(&format!("{path}/"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls() {
        assert_eq!(normalize_index_url("http://h:1").unwrap().as_str(), "http://h:1/index/");
        assert_eq!(normalize_index_url("http://h:1/index").unwrap().as_str(), "http://h:1/index/");
        assert_eq!(normalize_index_url("https://h/p/index/").unwrap().as_str(), "https://h/p/index/");
        assert!(normalize_index_url("ftp://h/").is_err());
    }

    #[test]
    fn replacement_chain() {
        let config: Config = toml::from_str(
            "[registry]\ndefault = \"a\"\n[registries.a]\nindex = \"http://a/\"\nreplace-with = \"b\"\n\
             [registries.b]\nindex = \"http://b/index/\"\n[registries.c]\npath = \"/x\"\nreplace-with = \"c\"\n",
        )
        .unwrap();
        assert_eq!(config.replacement("a").unwrap(), "b");
        assert_eq!(config.location("b").unwrap(), Location::Remote(Url::parse("http://b/index/").unwrap()));
        assert!(config.replacement("c").is_err());
        assert!(config.location("zz").is_err());
    }
}
