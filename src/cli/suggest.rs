//! `attempt-pkg suggest`: rank registry prompts for the project's target task
//! and propose which to add and which to remove (or none at all).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::Device;

use super::lock::report_lock;
use super::train::TrainFlags;
use super::Context;
use crate::cache::Cache;
use crate::project::ops::{self, AddSpec};
use crate::registry::RegistrySource;
use crate::select::{SelectConfig, Selection};
use crate::train::{suggest_sources, SourcePrompt, TrainRequest};
use crate::workflow::project::prepare;
use crate::workflow::suggest::{
    list_candidates, load_candidates, prefilter, save_selection, select_for_task, target_mean, DirFeatureCache,
    SELECTION_FILE,
};

#[derive(Debug, clap::Args)]
#[command(after_help = "Every registry package trained for the project's base model (its newest non-yanked \
version for that model) is scored on a sample of the target's labelled training examples, without training: \
the prompt is prepended, the frozen encoder runs once, and LogME measures how well the pooled features explain \
the labels. The score is that LogME minus the LogME of random prompts with the same row norm (trained prompts \
are far larger than word embeddings, and size alone changes the features), with a half-sample standard error. \
Candidates whose score clears --z standard errors are proposed to keep, best first; when none does, suggest \
says so and proposes removing every source (train then runs plain prompt tuning). A package whose own \
dev metric (recorded by train-source) does not beat an input-blind predictor, such as a prompt trained on \
shuffled labels, is ranked but never proposed. Pooled features are \
cached per model in $ATTEMPT_HOME/cache/features, so a second run over the same sample and prompts \
scores nothing again.\n\n\
--apply makes the proposal real through the resolver (the same edits `add` and `remove` make, in one lock \
write) and records the selection in attempt.selection.json; `train` then starts ATTEMPT/SPoT from the \
best-ranked kept source and copies the record into run.json.\n\n\
Examples:\n  attempt-pkg suggest --task rte --data-dir ../shared/data\n  \
attempt-pkg suggest --task rte --top 3 --apply\n  attempt-pkg --json suggest --task my-reviews --sample 300")]
pub struct Args {
    #[command(flatten)]
    pub flags: TrainFlags,
    /// Labelled target training examples scored per candidate.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub sample: usize,
    /// Propose at most K sources.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Standard errors a candidate's score must clear to be proposed.
    #[arg(long, default_value_t = 2.0)]
    pub z: f64,
    /// Half-samples (without replacement) for the standard errors.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub resamples: usize,
    /// With more than N packages that record a task signature, forward-score
    /// only the N whose signatures are closest to the target's data (and every
    /// package without one); 0 scores every package.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub prefilter: usize,
    /// Also run the older attention probe for N ATTEMPT steps and report its
    /// weights beside the scores (a baseline; not used for the proposal).
    #[arg(long, value_name = "N")]
    pub probe_steps: Option<usize>,
    /// Add and remove sources as proposed and record the selection.
    #[arg(long)]
    pub apply: bool,
    /// Model directory or imported model name (default: [model] path).
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<String>,
}

/// What `suggest` found and proposed (and, with `--apply`, did).
pub(super) struct Proposal {
    pub selection: Selection,
    attention: Option<BTreeMap<String, f32>>,
    add: Vec<String>,
    remove: Vec<String>,
    filtered: Vec<(String, f64)>,
}

impl Args {
    /// What `train --select K` runs: the defaults, `--top K`, `--apply`.
    pub(super) fn for_train(flags: &TrainFlags, top: usize, model: Option<String>) -> Args {
        Args {
            flags: flags.clone(),
            sample: 500,
            top: Some(top),
            z: 2.0,
            resamples: 20,
            prefilter: 20,
            probe_steps: None,
            apply: true,
            model,
        }
    }
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let Proposal { selection, attention, add, remove, filtered } = propose(&args, ctx)?;
    if ctx.global.json {
        let mut value = serde_json::to_value(&selection)?;
        if let Some(a) = &attention {
            value["attention_probe"] = serde_json::to_value(a)?;
        }
        value["proposed_add"] = serde_json::to_value(&add)?;
        value["proposed_remove"] = serde_json::to_value(&remove)?;
        value["filtered_by_signature"] = serde_json::to_value(&filtered)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print_selection(&selection, attention.as_ref());
    if !filtered.is_empty() {
        println!(
            "  {} more packages were not scored: their task signatures are the least similar to this task's data",
            filtered.len()
        );
    }
    if !args.apply {
        if !add.is_empty() {
            println!("Proposed: attempt-pkg add {}", add.join(" "));
        }
        if !remove.is_empty() {
            println!("Proposed: attempt-pkg remove {}", remove.join(" "));
        }
        if add.is_empty() && remove.is_empty() {
            println!("The project's sources already match the proposal.");
        } else {
            println!("Run again with --apply to make these changes.");
        }
    }
    Ok(())
}

/// Score the registry for the task and, with `--apply`, make the proposal.
pub(super) fn propose(args: &Args, ctx: &Context) -> Result<Proposal> {
    if !(args.z.is_finite() && args.z >= 0.0) {
        bail!("--z must be a non-negative number, got {}", args.z);
    }
    if args.top == Some(0) {
        bail!("--top 0 would propose nothing; leave it out to propose every source that is predicted to help");
    }
    // The edit lock is taken before anything is read, so an --apply cannot race another edit.
    let (ws, _lock) =
        if args.apply { ctx.workspace_for_edit().map(|(w, l)| (w, Some(l)))? } else { (ctx.workspace()?, None) };
    let current: Vec<String> = ws.manifest.sources.keys().cloned().collect();
    // One handle for the candidates and for the resolver.
    let registry = std::sync::Arc::new(ctx.registry(None)?);
    let registries: Vec<Box<dyn RegistrySource>> =
        if ctx.global.offline() { Vec::new() } else { vec![Box::new(registry.clone())] };
    let project = prepare(&ctx.home, ws, &registries, ctx.flags(), args.model.as_deref(), &Device::Cpu)?;
    let listing = list_candidates(&registry, &project.backbone.checksum, project.backbone.hidden_size())?;
    for note in &listing.notes {
        eprintln!("  note: {note}");
    }
    for (name, why) in &listing.skipped {
        eprintln!("  skipping {name}: {why}");
    }
    let section = project.section.overridden_by(&args.flags.section());
    let config = SelectConfig {
        sample: args.sample,
        seed: section.seed.unwrap_or(SelectConfig::default().seed),
        max_length: section.config().max_length,
        top: args.top,
        z: args.z,
        resamples: args.resamples,
        ..SelectConfig::default()
    };
    let quiet = ctx.global.json;
    let progress = |what: &str| {
        if !quiet {
            eprintln!("  scoring: {what}");
        }
    };
    let note = |what: &str| eprintln!("  note: {what}");
    let cache = DirFeatureCache::for_model(&ctx.home, &project.backbone.checksum, &note);
    let signed = listing.listed.iter().filter(|l| l.signature.is_some()).count();
    let (listed, filtered) = if args.prefilter > 0 && signed > args.prefilter {
        progress(&format!(
            "pre-filtering {signed} signed packages by task signature to the {} closest",
            args.prefilter
        ));
        prefilter(listing.listed, &target_mean(&project, &section, &config, Some(&cache))?, args.prefilter)
    } else {
        (listing.listed, Vec::new())
    };
    let candidates = load_candidates(&registry, &listed, &Cache::from_home(&ctx.home), &project.device)?;
    let selection = select_for_task(&project, &section, &candidates, &config, Some(&cache), &progress)?;
    let attention = match args.probe_steps {
        Some(steps) => Some(attention_probe(&project, &section, &candidates, steps)?),
        None => None,
    };
    let add: Vec<String> = selection.keep.iter().filter(|n| !current.contains(n)).cloned().collect();
    let remove: Vec<String> = current.iter().filter(|n| !selection.keep.contains(n)).cloned().collect();

    if !args.apply {
        return Ok(Proposal { selection, attention, add, remove, filtered });
    }
    let ws = &project.ws;
    let specs: Vec<AddSpec> = add
        .iter()
        .map(|name| {
            let version =
                selection.ranking.iter().find(|r| &r.name == name).map(|r| r.version.clone()).unwrap_or_default();
            AddSpec::parse(&format!("{name}@{version}"))
        })
        .collect::<Result<_>>()?;
    let (written, outcome) = ops::edit_sources(ws, &specs, &remove, &registries, ctx.flags())?;
    save_selection(&ws.dir, &selection)?;
    for (name, req) in &written {
        eprintln!("Adding {name} {req} to [sources]");
    }
    for name in &remove {
        eprintln!("Removing {name} from [sources]");
    }
    eprintln!("Recorded the selection in {SELECTION_FILE}");
    report_lock(&outcome);
    Ok(Proposal { selection, attention, add, remove, filtered })
}

fn print_selection(s: &Selection, attention: Option<&BTreeMap<String, f32>>) {
    println!(
        "Ranking for task {} ({} examples, LogME per example; score = LogME minus random prompts of the same norm):",
        s.task, s.sample_size
    );
    println!(
        "  {:<28} {:>8} {:>8} {:>8} {:>9} {:>7}  proposal",
        "package", "score", "± se", "LogME", "vs none", "norm"
    );
    for r in &s.ranking {
        let probe = attention.and_then(|a| a.get(&r.name)).map(|w| format!("  attention {w:.3}")).unwrap_or_default();
        let sig = r.signature_cosine.map(|c| format!("  data cosine {c:.3}")).unwrap_or_default();
        println!(
            "  {:<28} {:>8.4} {:>8.4} {:>8.4} {:>+9.4} {:>7.1}  {}{sig}{probe}",
            format!("{}@{}", r.name, r.version),
            r.score,
            r.stderr,
            r.logme,
            r.logme_gain,
            r.row_norm,
            match (r.helps, r.learned_own_task) {
                (true, _) => "keep",
                (false, Some(false)) => "- (did not learn its own task)",
                (false, _) => "-",
            }
        );
    }
    let controls: Vec<String> = s
        .controls
        .iter()
        .map(|c| {
            format!(
                "norm {:.1}: {}",
                c.row_norm,
                c.logme.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" / ")
            )
        })
        .collect();
    println!("  no prompt: {:.4}; random prompts: {}", s.no_prompt_logme, controls.join(", "));
    println!("{}", s.verdict);
}

/// The attention probe of earlier versions, kept as a baseline: mean
/// attention per candidate after a short ATTEMPT run over all of them.
fn attention_probe(
    project: &crate::workflow::project::PreparedProject,
    section: &crate::workflow::TrainSection,
    candidates: &[crate::select::Candidate],
    steps: usize,
) -> Result<BTreeMap<String, f32>> {
    let m = candidates.first().map(|c| c.prompt.dims()[0]).unwrap_or(0);
    if let Some(c) = candidates.iter().find(|c| c.prompt.dims()[0] != m) {
        bail!(
            "the attention probe mixes prompts of one length; {} has {} rows, others {m}",
            c.name,
            c.prompt.dims()[0]
        );
    }
    let mut config = section.config();
    config.prompt_length = m;
    let request = TrainRequest {
        encoder: project.backbone.encoder(),
        tokenizer: &project.backbone.tokenizer,
        sources: candidates.iter().map(|c| SourcePrompt { name: c.name.clone(), tensor: c.prompt.clone() }).collect(),
        tasks: project.tasks(section)?,
        config,
        device: project.device.clone(),
    };
    let s = suggest_sources(request, steps, None)?;
    Ok(s.ranking.into_iter().map(|r| (r.name, r.attention)).collect())
}
