use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use registry_index::{validate_name, Checksum};

use super::Context;
use crate::fsutil::write_atomic;
use crate::project::{initial_text, Manifest, MANIFEST_FILE};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  attempt-pkg init\n  attempt-pkg init --name sentiment-mix \
--model-fingerprint sha256:<64 hex>\n  attempt-pkg init --project ./exp1 --model-path models/all-MiniLM-L6-v2")]
pub struct Args {
    /// Project name ([a-z][a-z0-9_-]*); default: derived from the directory name.
    #[arg(long)]
    pub name: Option<String>,
    /// Fingerprint of the frozen base model (`sha256:<64 hex>`); every prompt must match it.
    #[arg(long, value_name = "SHA256")]
    pub model_fingerprint: Option<String>,
    /// Path to the base model directory, recorded as [model] path.
    #[arg(long, value_name = "DIR")]
    pub model_path: Option<PathBuf>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let dir = ctx.project_dir()?;
    let manifest_path = dir.join(MANIFEST_FILE);
    if manifest_path.exists() {
        bail!("{} already exists; edit it, or use `attempt-pkg add` to add prompt packages", manifest_path.display());
    }
    let name = match args.name {
        Some(n) => n,
        None => default_name(&dir),
    };
    validate_name(&name).context("invalid project name (pass one with --name)")?;
    let fingerprint =
        args.model_fingerprint.as_deref().map(Checksum::parse).transpose().context("invalid --model-fingerprint")?;
    let text = initial_text(&name, fingerprint.as_ref(), args.model_path.as_deref());
    // Never write something we could not read back.
    Manifest::parse(&manifest_path, &text)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&manifest_path, text.as_bytes())?;
    eprintln!("Created project `{name}` ({})", manifest_path.display());
    Ok(())
}

/// A valid package-style name from a directory name: `My Project` → `my-project`.
fn default_name(dir: &std::path::Path) -> String {
    let raw = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_string();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("project-{name}").trim_end_matches('-').to_string();
    }
    name.truncate(registry_index::MAX_NAME_LEN);
    name
}
