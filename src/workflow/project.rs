//! A project opened for training: lock verified, blobs checked, model loaded
//! and matched against every prompt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;

use super::backbone::{self, Backbone};
use super::settings::{load_tasks, read_sections, TaskSelection, TrainSection};
use super::sources::{verified_sources, VerifiedSources};
use super::suggest::{init_source_index, load_selection, source_position};
use crate::cache::Cache;
use crate::data::TaskSpec;
use crate::home::Home;
use crate::project::ops::{self, Flags, Workspace};
use crate::project::LOCK_FILE;
use crate::registry::RegistrySource;
use crate::train::rundir::RunRecord;
use crate::train::{
    interrupt, load_run, parameter_summary, train, PromptModel, RunProvenance, TaskData, TrainOptions, TrainOutcome,
    TrainRequest,
};

/// Key of the effective `[train]` values in a run's `provenance.extra`.
pub const TRAIN_SECTION_KEY: &str = "train-section";
/// Key of the selection record (`attempt.selection.json`) in `provenance.extra`.
pub const SELECTION_KEY: &str = "selection";
/// Key of the source the target prompt was initialised from.
pub const INIT_SOURCE_KEY: &str = "init-source";

pub struct PreparedProject {
    pub ws: Workspace,
    pub backbone: Backbone,
    pub sources: VerifiedSources,
    /// sha256 of `attempt.lock` as trained against.
    pub lock_checksum: Option<String>,
    pub section: TrainSection,
    pub user_tasks: BTreeMap<String, TaskSpec>,
    pub device: Device,
}

/// Bring the lock in step (honouring `flags`), fetch and verify every blob,
/// load the model and refuse any fingerprint or shape mismatch.
pub fn prepare(
    home: &Home,
    ws: Workspace,
    registries: &[Box<dyn RegistrySource>],
    flags: Flags,
    model: Option<&str>,
    device: &Device,
) -> Result<PreparedProject> {
    let (section, user_tasks) = read_sections(&ws.manifest.path)?;
    let cache = Cache::from_home(home);
    let (outcome, blobs) = if ws.manifest.sources.is_empty() && ws.lock.is_none() {
        // Nothing to resolve: plain prompt tuning in a project without sources.
        (None, Vec::new())
    } else {
        let (o, b) = ops::fetch_locked(&ws, registries, &cache, flags)?;
        (Some(o), b)
    };
    let model_dir = backbone::locate(home, &ws.dir, model, ws.manifest.model.path.as_deref())?;
    let backbone = Backbone::load(home, &model_dir, device)?;
    if let Some(fp) = &ws.manifest.model.fingerprint {
        if fp != &backbone.checksum {
            anyhow::bail!(
                "attempt.toml names base model {} but {} has fingerprint {}; fix [model] path or [model] fingerprint",
                fp.prefixed(),
                model_dir.display(),
                backbone.fingerprint
            );
        }
    }
    let sources = match &outcome {
        Some(o) => verified_sources(&o.lock, &blobs, &backbone.checksum, backbone.hidden_size(), device)?,
        None => VerifiedSources { sources: Vec::new(), records: Vec::new(), prompt_length: None },
    };
    let lock_path = ws.dir.join(LOCK_FILE);
    let lock_checksum = if lock_path.is_file() {
        let bytes = std::fs::read(&lock_path).with_context(|| format!("cannot read {}", lock_path.display()))?;
        Some(crate::fsutil::sha256(&bytes).prefixed())
    } else {
        None
    };
    Ok(PreparedProject { ws, backbone, sources, lock_checksum, section, user_tasks, device: device.clone() })
}

impl PreparedProject {
    /// The frozen side as evaluation and prediction take it.
    pub fn frozen(&self) -> crate::train::Backbone<'_> {
        crate::train::Backbone {
            encoder: self.backbone.encoder(),
            tokenizer: &self.backbone.tokenizer,
            device: &self.device,
        }
    }

    /// A run's best checkpoint, composed with this project's verified sources.
    pub fn load_run(&self, run_dir: &Path) -> Result<(PromptModel, RunRecord)> {
        load_run(run_dir, self.backbone.encoder(), &self.backbone.tokenizer, &self.sources.sources, &self.device)
    }

    /// Task data for `section` (the project's `[train]` with overrides applied).
    pub fn tasks(&self, section: &TrainSection) -> Result<Vec<TaskData>> {
        let data_dir = section.data_dir.as_ref().map(|d| self.ws.dir.join(d));
        load_tasks(&TaskSelection {
            names: &section.tasks,
            user: &self.user_tasks,
            project_dir: &self.ws.dir,
            data_dir: data_dir.as_deref(),
            section,
        })
    }

    pub fn provenance(&self) -> RunProvenance {
        RunProvenance {
            model_name: self.backbone.name.clone(),
            model_fingerprint: self.backbone.fingerprint.clone(),
            lock_checksum: self.lock_checksum.clone(),
            backbone_parameters: self.backbone.parameters,
            sources: self.sources.records.clone(),
            ..RunProvenance::default()
        }
    }

    /// Train the project's tasks into `run_dir`.
    pub fn train(
        &self,
        overrides: &TrainSection,
        run_dir: &Path,
        progress: bool,
        resume: bool,
    ) -> Result<TrainOutcome> {
        let section = self.section.overridden_by(overrides);
        let mut config = section.config();
        if let Some(m) = self.sources.prompt_length {
            config.prompt_length = m;
        }
        let tasks = self.tasks(&section)?;
        let mut provenance = self.provenance();
        // Start ATTEMPT/SPoT from the best-ranked source `suggest --apply`
        // kept (else the first in lock order), and record what chose it.
        let names: Vec<String> = self.sources.sources.iter().map(|s| s.name.clone()).collect();
        if let Some(wanted) = &section.init_source {
            if config.method == crate::compose::Method::Pt {
                anyhow::bail!(
                    "init-source `{wanted}`: plain prompt tuning starts its prompt from the vocabulary; \
                     an init source is for --method attempt, spot or uniform"
                );
            }
            let index = source_index(&names, wanted)?;
            config.target_init = Some(crate::compose::TargetInit::Source { index });
        }
        if let Some(selection) = load_selection(&self.ws.dir)?.filter(|s| section.tasks.contains(&s.task)) {
            if config.target_init.is_none() && config.method != crate::compose::Method::Pt {
                if let Some(index) = init_source_index(&selection, &names) {
                    config.target_init = Some(crate::compose::TargetInit::Source { index });
                }
            }
            provenance.extra.insert(SELECTION_KEY.to_string(), serde_json::to_string(&selection)?);
        }
        // Measured: the first source by name is a poor start, the best-ranked
        // one is worth more than the mixture (docs/experiments/mixture-2026-12-02.md).
        let mut init_note = None;
        if let crate::compose::TargetInit::Source { index } = config.effective_target_init(!names.is_empty()) {
            if let Some(name) = names.get(index) {
                provenance.extra.insert(INIT_SOURCE_KEY.to_string(), name.clone());
                if config.target_init.is_none() && names.len() > 1 {
                    init_note = Some(format!(
                        "the target prompt started from {name}, the first locked source (the paper's default); \
                         start it from the best-ranked one instead with `attempt-pkg suggest --task T --apply`, \
                         `train --select K` or `--init-source NAME`: measured on TREC, SST-2 and SUBJ, that \
                         scored 1.4-1.8 points higher (docs/experiments/mixture-2026-12-02.md)"
                    ));
                }
            }
        }
        let request = TrainRequest {
            encoder: self.backbone.encoder(),
            tokenizer: &self.backbone.tokenizer,
            sources: self.sources.sources.clone(),
            tasks,
            config,
            device: self.device.clone(),
        };
        // What `eval` needs to rebuild the same dev data.
        let mut recorded = section.clone();
        recorded.data_dir = section.data_dir.as_ref().map(|d| self.ws.dir.join(d));
        provenance.extra.insert(TRAIN_SECTION_KEY.to_string(), serde_json::to_string(&recorded)?);
        let options = TrainOptions {
            run_dir: Some(run_dir.to_path_buf()),
            resume,
            progress,
            provenance,
            interrupt: Some(interrupt::ctrl_c_flag()),
        };
        let mut outcome = train(request, &options)?;
        outcome.notes.extend(init_note);
        Ok(outcome)
    }

    pub fn parameter_summary(&self, trainable: usize) -> String {
        parameter_summary(trainable, self.backbone.parameters)
    }
}

/// `DIR/runs/run-NNN`: the first number not taken.
pub fn next_run_dir(project_dir: &Path) -> PathBuf {
    let runs = project_dir.join("runs");
    (1..).map(|i| runs.join(format!("run-{i:03}"))).find(|p| !p.exists()).unwrap_or_else(|| runs.join("run"))
}

/// The `[train]` values a run was trained with (from its run.json).
pub fn recorded_section(record: &crate::train::rundir::RunRecord) -> Result<TrainSection> {
    match record.provenance.extra.get(TRAIN_SECTION_KEY) {
        Some(text) => serde_json::from_str(text).context("run.json: unreadable train-section"),
        None => {
            Ok(TrainSection { tasks: record.tasks.clone(), seed: Some(record.config.seed), ..TrainSection::default() })
        }
    }
}

/// [`source_position`], or an error that names the project's sources.
fn source_index(names: &[String], wanted: &str) -> Result<usize> {
    source_position(names, wanted).ok_or_else(|| {
        let list = if names.is_empty() { "it has none".to_string() } else { names.join(", ") };
        anyhow::anyhow!(
            "init-source `{wanted}` is not one of the project's sources ({list}); \
             pass one of them, or `attempt-pkg add {wanted}` first"
        )
    })
}
