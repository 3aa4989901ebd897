//! `attempt.toml`: the project manifest.
//!
//! ```toml
//! [project]
//! name = "my-mixture"
//!
//! [model]
//! fingerprint = "sha256:<64 hex>"   # and/or
//! path = "models/all-MiniLM-L6-v2"
//! hidden-size = 384                  # optional
//! prompt-length = 100                # optional
//!
//! [sources]
//! mnli-prompt = "^1.2"
//! sst2-prompt = { version = "=1.0.3" }
//!
//! [train]                            # and any other section: kept as written
//! ```
//!
//! The file is read into typed fields for resolution and kept as a
//! `toml_edit` document, so `add`/`remove` change only the `[sources]` lines
//! and keep the user's comments, order and other sections.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use registry_index::{validate_name, Checksum};
use semver::VersionReq;
use serde::Deserialize;
use toml_edit::{DocumentMut, Item, Table};

use crate::fsutil::write_if_changed;
use crate::resolve::ModelRequirement;

pub const MANIFEST_FILE: &str = "attempt.toml";

#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub name: String,
    pub model: ModelSection,
    /// `[sources]`: package name → requirement.
    pub sources: BTreeMap<String, VersionReq>,
    doc: DocumentMut,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSection {
    pub fingerprint: Option<Checksum>,
    pub path: Option<PathBuf>,
    pub hidden_size: Option<u32>,
    pub prompt_length: Option<u32>,
}

impl ModelSection {
    /// The resolver's view; `None` until the project names a fingerprint.
    pub fn requirement(&self) -> Option<ModelRequirement> {
        Some(ModelRequirement {
            fingerprint: self.fingerprint.clone()?,
            hidden_size: self.hidden_size,
            prompt_length: self.prompt_length,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawManifest {
    project: Option<RawProject>,
    #[serde(default)]
    model: RawModel,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
}

#[derive(Deserialize)]
struct RawProject {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawModel {
    fingerprint: Option<String>,
    path: Option<PathBuf>,
    hidden_size: Option<u32>,
    prompt_length: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSource {
    Req(String),
    Table { version: String },
}

impl Manifest {
    /// Reads and validates `attempt.toml` at `path`.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Manifest::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        let file = path.display();
        let doc: DocumentMut = text.parse().with_context(|| format!("{file} is not valid TOML"))?;
        let raw: RawManifest = toml::from_str(text).with_context(|| format!("{file} has an invalid layout"))?;
        let project = raw.project.ok_or_else(|| anyhow!("{file} has no [project] section with a `name`"))?;
        validate_name(&project.name).with_context(|| format!("{file}: [project] name"))?;
        let fingerprint = raw
            .model
            .fingerprint
            .as_deref()
            .map(Checksum::parse)
            .transpose()
            .with_context(|| format!("{file}: [model] fingerprint"))?;
        let mut sources = BTreeMap::new();
        for (name, src) in raw.sources {
            validate_name(&name).with_context(|| format!("{file}: [sources]"))?;
            let text = match src {
                RawSource::Req(s) | RawSource::Table { version: s } => s,
            };
            let req = parse_req(&text).with_context(|| format!("{file}: [sources] {name}"))?;
            sources.insert(name, req);
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            name: project.name,
            model: ModelSection {
                fingerprint,
                path: raw.model.path,
                hidden_size: raw.model.hidden_size,
                prompt_length: raw.model.prompt_length,
            },
            sources,
            doc,
        })
    }

    /// Sets `[sources] name = "req"`, keeping everything else as written.
    pub fn set_source(&mut self, name: &str, req: &VersionReq) {
        let table = self.sources_table();
        let mut value = toml_edit::Value::from(req.to_string());
        // Keep a comment the user attached to the line being replaced.
        if let Some(old) = table.get(name).and_then(Item::as_value) {
            *value.decor_mut() = old.decor().clone();
        }
        table.insert(name, Item::Value(value));
        self.sources.insert(name.to_string(), req.clone());
    }

    /// Removes `[sources] name`; false if it was not there.
    pub fn remove_source(&mut self, name: &str) -> bool {
        let removed = self.sources_table().remove(name).is_some();
        self.sources.remove(name);
        removed
    }

    fn sources_table(&mut self) -> &mut Table {
        let item = self.doc.entry("sources").or_insert_with(|| Item::Table(Table::new()));
        if !item.is_table() {
            // An inline `sources = {}` becomes a normal table.
            let inline = item.as_inline_table().cloned().unwrap_or_default();
            *item = Item::Table(inline.into_table());
        }
        match item.as_table_mut() {
            Some(t) => t,
            None => unreachable!("just made a table"),
        }
    }

    /// The document text as it would be written.
    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    /// Writes the manifest back (atomically) if its text changed.
    pub fn save(&self) -> Result<bool> {
        write_if_changed(&self.path, self.to_text().as_bytes())
    }
}

/// Parses a requirement the way `cargo add` reads one: a bare version means
/// caret (`1.2` → `^1.2`), `=1.2.3` is exact.
pub fn parse_req(text: &str) -> Result<VersionReq> {
    let t = text.trim();
    if t.is_empty() {
        bail!("empty version requirement");
    }
    VersionReq::parse(t).map_err(|e| {
        anyhow!(
            "`{t}` is not a semver requirement ({e}); write e.g. `1.2` (meaning ^1.2), `=1.2.3`, `~1.2` or `>=1.0, <2`"
        )
    })
}

/// The text `attempt-pkg init` writes.
pub fn initial_text(name: &str, fingerprint: Option<&Checksum>, path: Option<&Path>) -> String {
    let mut s = format!("[project]\nname = \"{name}\"\n\n[model]\n");
    match fingerprint {
        Some(f) => s.push_str(&format!("fingerprint = \"{}\"\n", f.prefixed())),
        None => {
            s.push_str("# The frozen base model the prompts are trained for:\n# fingerprint = \"sha256:<64 hex>\"\n")
        }
    }
    if let Some(p) = path {
        s.push_str(&format!("path = {}\n", toml_edit::Value::from(p.display().to_string())));
    }
    s.push_str("\n# Prompt packages: name = semver requirement (`attempt-pkg add NAME[@REQ]`).\n[sources]\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# my project
[project]
name = "demo"

[model]
fingerprint = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

[sources]
mnli-prompt = "^1.2" # the main task
sst2-prompt = { version = "=1.0.3" }

[train]
steps = 10 # keep me
"#;

    #[test]
    fn edits_keep_other_sections_and_comments() {
        let mut m = Manifest::parse(Path::new("attempt.toml"), TEXT).unwrap();
        assert_eq!(m.sources["sst2-prompt"].to_string(), "=1.0.3");
        m.set_source("mnli-prompt", &parse_req("^1.3").unwrap());
        m.set_source("qqp", &parse_req("0.2").unwrap());
        assert!(m.remove_source("sst2-prompt"));
        let text = m.to_text();
        assert!(text.contains("mnli-prompt = \"^1.3\" # the main task"), "{text}");
        assert!(text.contains("qqp = \"^0.2\""), "{text}");
        assert!(!text.contains("sst2"), "{text}");
        assert!(text.contains("[train]\nsteps = 10 # keep me"), "{text}");
        assert!(text.starts_with("# my project"), "{text}");
        let back = Manifest::parse(Path::new("attempt.toml"), &text).unwrap();
        assert_eq!(back.sources, m.sources);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_req("1.x.y.z").is_err());
        assert!(parse_req("").is_err());
        let bad_name = TEXT.replace("mnli-prompt =", "\"../x\" =");
        assert!(Manifest::parse(Path::new("attempt.toml"), &bad_name).is_err());
        let bad_req = TEXT.replace("\"^1.2\"", "\"^1.2.3.4\"");
        assert!(Manifest::parse(Path::new("attempt.toml"), &bad_req).is_err());
    }
}
