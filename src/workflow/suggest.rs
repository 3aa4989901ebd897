//! `suggest` as a library call: every registry prompt trained for the
//! project's base model is scored for the target task (`select::rank`), and
//! the proposal is turned into `[sources]` edits. The selection that chose a
//! project's sources is kept beside its manifest (`attempt.selection.json`),
//! so `train` can start from the best-ranked source and record why the lock
//! holds what it holds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::project::PreparedProject;
use super::settings::TrainSection;
use crate::package::LoadedPackage;
use crate::registry::BlockingRegistry;
use crate::select::{rank, Candidate, SelectConfig, Selection};

/// The record of the selection that chose a project's sources.
pub const SELECTION_FILE: &str = "attempt.selection.json";

/// Packages skipped as candidates, with the reason.
pub struct Candidates {
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<(String, String)>,
}

/// The newest non-yanked version of every package in `registry` that was
/// trained for the model `fingerprint` with hidden size `hidden` (prompt sets
/// have no tensor of their own and are left out).
pub fn registry_candidates(registry: &BlockingRegistry, fingerprint: &str, hidden: usize, device: &candle_core::Device) -> Result<Candidates> {
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for summary in registry.list()? {
        let Some(info) = registry.info(&summary.name)? else { continue };
        // Newest first: the newest non-yanked version made for this model.
        let mut fitting = info.versions.iter().rev().filter(|v| v.base_model.prefixed() == fingerprint).peekable();
        if fitting.peek().is_none() {
            continue;
        }
        let Some(v) = fitting.find(|v| !v.yanked) else {
            skipped.push((summary.name.clone(), "every version for this model is yanked".to_string()));
            continue;
        };
        if v.prompt_length == 0 {
            skipped.push((summary.name.clone(), "a prompt set (no tensor of its own)".to_string()));
            continue;
        }
        if v.hidden_size as usize != hidden {
            skipped.push((summary.name.clone(), format!("hidden size {} (the model has {hidden})", v.hidden_size)));
            continue;
        }
        let pkg = LoadedPackage::read_verified(&registry.inner().blob_file(&v.cksum), &v.cksum)
            .with_context(|| format!("reading {}@{} from the registry", summary.name, v.version))?;
        candidates.push(Candidate { name: summary.name.clone(), version: v.version.to_string(), prompt: pkg.prompt_tensor(device)? });
    }
    Ok(Candidates { candidates, skipped })
}

/// Score `candidates` for the one task of `section` on the project's model.
pub fn select_for_task(
    project: &PreparedProject,
    section: &TrainSection,
    candidates: &[Candidate],
    config: &SelectConfig,
    progress: &dyn Fn(&str),
) -> Result<Selection> {
    if section.tasks.len() != 1 {
        bail!(
            "suggest scores candidates for one task; pass exactly one --task (got {})",
            if section.tasks.is_empty() { "none".to_string() } else { section.tasks.join(", ") }
        );
    }
    if candidates.is_empty() {
        bail!(
            "the registry has no prompt trained for model {}; publish source prompts for it first (`attempt-pkg train-source`, then `publish`)",
            project.backbone.fingerprint
        );
    }
    let tasks = project.tasks(section)?;
    let task = &tasks[0];
    rank(
        project.backbone.encoder(),
        &project.backbone.tokenizer,
        &project.device,
        &task.task,
        &task.train,
        candidates,
        config,
        progress,
    )
}

/// Where a project keeps its selection record.
pub fn selection_path(project_dir: &Path) -> PathBuf {
    project_dir.join(SELECTION_FILE)
}

/// Write the selection record atomically.
pub fn save_selection(project_dir: &Path, selection: &Selection) -> Result<()> {
    let path = selection_path(project_dir);
    let text = serde_json::to_string_pretty(selection)?;
    let mut tmp = tempfile::NamedTempFile::new_in(project_dir).with_context(|| format!("cannot write in {}", project_dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(&path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The project's selection record, if `suggest --apply` wrote one.
pub fn load_selection(project_dir: &Path) -> Result<Option<Selection>> {
    let path = selection_path(project_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is unreadable; delete it or run `attempt-pkg suggest --apply` again", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Among `source_names` (`name@version`, the run's sources in lock order),
/// the index of the best-ranked one the selection kept.
pub fn init_source_index(selection: &Selection, source_names: &[String]) -> Option<usize> {
    selection.keep.iter().find_map(|kept| source_names.iter().position(|s| s.split('@').next() == Some(kept.as_str())))
}
