//! `attempt-pkg suggest`: rank registry prompts for the project's target task.

use anyhow::{bail, Result};
use candle_core::Device;

use super::train::TrainFlags;
use super::Context;
use crate::package::LoadedPackage;
use crate::registry::{registry_dir, BlockingRegistry};
use crate::train::{suggest_sources, SourcePrompt, TrainRequest};
use crate::workflow::project::prepare;

#[derive(Debug, clap::Args)]
#[command(after_help = "Every registry package trained for the project's model (newest non-yanked version, \
same prompt length) enters a short ATTEMPT probe on the target task; candidates are ranked by the mean \
attention G gives them on dev examples. Those drawing at least the uniform share are proposed to keep \
(`attempt-pkg add`), the rest to remove.\n\nExamples:\n  attempt-pkg suggest --task rte --data-dir ../shared/data\n  \
attempt-pkg suggest --probe-steps 100 --keep 3")]
pub struct Args {
    #[command(flatten)]
    pub flags: TrainFlags,
    /// Optimiser steps of the probe run.
    #[arg(long, default_value_t = 50)]
    pub probe_steps: usize,
    /// Propose at most this many sources to keep.
    #[arg(long)]
    pub keep: Option<usize>,
    /// Model directory or imported model name (default: [model] path).
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let ws = ctx.workspace()?;
    let current: Vec<String> = ws.manifest.sources.keys().cloned().collect();
    let registries = ctx.registries()?;
    let project = prepare(&ctx.home, ws, &registries, ctx.flags(), args.model.as_deref(), &Device::Cpu)?;
    let registry = BlockingRegistry::open_existing(&registry_dir(ctx.global.registry.as_deref(), &ctx.home)?)?;
    let mut candidates = Vec::new();
    let mut length = project.sources.prompt_length;
    for summary in registry.list()? {
        if summary.base_model.prefixed() != project.backbone.fingerprint || summary.prompt_length == 0 {
            continue;
        }
        let Some(info) = registry.info(&summary.name)? else { continue };
        let Some(v) = info.latest().filter(|v| !v.yanked) else { continue };
        let m = *length.get_or_insert(summary.prompt_length as usize);
        if summary.prompt_length as usize != m {
            eprintln!("  skipping {}@{}: prompt length {} (others have {m})", summary.name, v.version, summary.prompt_length);
            continue;
        }
        let pkg = LoadedPackage::read_verified(&registry.inner().blob_file(&v.cksum), &v.cksum)?;
        candidates.push(SourcePrompt { name: format!("{}@{}", summary.name, v.version), tensor: pkg.prompt_tensor(&project.device)? });
    }
    if candidates.is_empty() {
        bail!("the registry has no prompt trained for model {}", project.backbone.fingerprint);
    }
    let section = project.section.overridden_by(&args.flags.section());
    let mut config = section.config();
    config.prompt_length = length.unwrap_or(config.prompt_length);
    let request = TrainRequest {
        encoder: project.backbone.encoder(),
        tokenizer: &project.backbone.tokenizer,
        sources: candidates,
        tasks: project.tasks(&section)?,
        config,
        device: project.device.clone(),
    };
    let s = suggest_sources(request, args.probe_steps, args.keep)?;
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("Ranking after a {}-step ATTEMPT probe (target prompt kept {:.3}):", s.probe_steps, s.target_attention);
    for r in &s.ranking {
        println!("  {:<32} {:.3}", r.name, r.attention);
    }
    let bare = |id: &String| id.split('@').next().unwrap_or(id).to_string();
    let add: Vec<String> = s.keep.iter().map(bare).filter(|n| !current.contains(n)).collect();
    let remove: Vec<String> = s.remove.iter().map(bare).filter(|n| current.contains(n)).collect();
    if !add.is_empty() {
        println!("Proposed: attempt-pkg add {}", add.join(" "));
    }
    if !remove.is_empty() {
        println!("Proposed: attempt-pkg remove {}", remove.join(" "));
    }
    if add.is_empty() && remove.is_empty() {
        println!("The project's sources already match the proposal.");
    }
    Ok(())
}
