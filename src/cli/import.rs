use std::path::PathBuf;

use anyhow::{bail, Result};
use semver::Version;

use super::Context;
use crate::interop::import::{self, BaseModelSpec, PackageFields};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
attempt-pkg import prompt.pt --name record-prompt --version 1.0.0 \\\n      \
--task record --base-model ./models/t5-base --out ./record-prompt\n  \
attempt-pkg import ./adapter --name sst2-prompt --version 0.1.0 \\\n      \
--task sst2 --base-model sha256:<hex> --hidden-size 768 --publish\n  \
attempt-pkg import prompts.safetensors --tensor mnli --name mnli-prompt \\\n      \
--version 1.0.0 --task mnli --base-model ./models/minilm --out ./mnli\n\n\
Sources: a PyTorch checkpoint (.pt/.bin written by torch.save, holding a tensor or a dict of \
tensors), a PEFT prompt-tuning adapter directory (adapter_config.json + adapter_model.safetensors), \
or a safetensors file. Pickles are read with a restricted reader that only accepts plain tensor \
data and never runs code. Shapes and the base model are checked before anything is written.")]
pub struct Args {
    /// The prompt: a .pt/.bin file, a PEFT adapter directory, or a .safetensors file.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Package name.
    #[arg(long)]
    pub name: String,
    /// Package version (semver, e.g. 1.0.0).
    #[arg(long = "version", value_name = "VERSION")]
    pub version: Version,
    /// Task the prompt was trained on (e.g. mnli).
    #[arg(long)]
    pub task: String,
    /// The frozen base model: a model directory (fingerprinted here) or its fingerprint `sha256:<hex>`.
    #[arg(long, value_name = "DIR|FINGERPRINT")]
    pub base_model: String,
    /// Hidden size of the base model; required when --base-model is a fingerprint.
    #[arg(long, value_name = "H")]
    pub hidden_size: Option<u32>,
    /// Name recorded in [base-model] (default: the adapter's base_model_name_or_path, or the
    /// model directory's name). For a PEFT adapter it also confirms a differently named model.
    #[arg(long, value_name = "NAME")]
    pub base_model_name: Option<String>,
    /// Which tensor to import from a file holding several.
    #[arg(long, value_name = "KEY")]
    pub tensor: Option<String>,
    /// Package description.
    #[arg(long)]
    pub description: Option<String>,
    /// License (SPDX identifier).
    #[arg(long)]
    pub license: Option<String>,
    /// Write an authoring directory (Prompt.toml + prompt.safetensors) here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Publish the package to the registry.
    #[arg(long)]
    pub publish: bool,
    /// Overwrite Prompt.toml / prompt.safetensors already in --out.
    #[arg(long)]
    pub force: bool,
    /// API token for a remote registry (overrides ATTEMPT_TOKEN and `attempt-pkg login`).
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    if args.out.is_none() && !args.publish {
        bail!("nothing to do: pass --out DIR to write an authoring directory, and/or --publish");
    }
    if let Some(out) = &args.out {
        import::check_writable(out, &[crate::package::MANIFEST_FILE, import::PROMPT_FILE], args.force)?;
    }
    let source = import::read_source(&args.source, args.tensor.as_deref())?;
    let spec = BaseModelSpec::parse(&args.base_model)?;
    let base = import::resolve_base(&ctx.home, &spec, args.hidden_size, args.base_model_name.as_deref())?;
    let fields = PackageFields {
        name: args.name,
        version: args.version,
        task: args.task,
        description: args.description,
        license: args.license,
        base_model_name: args.base_model_name,
    };
    let imported = import::build(source, &base, &fields)?;
    for note in &imported.notes {
        eprintln!("note: {note}");
    }

    let manifest = imported.manifest();
    let prompt = imported.prompt();
    let shape = prompt.map(|p| format!("[{}, {}] {}", p.length(), p.hidden(), p.dtype().as_str())).unwrap_or_default();
    // Publish first: a refused publish (say, the version exists) then leaves
    // no directory behind; the directory's own checks were done up front.
    let mut published = None;
    if args.publish {
        let registry = ctx.registry(args.token.as_deref())?;
        let answer = registry.publish(&imported.artifact)?;
        for warning in &answer.warnings {
            eprintln!("warning from registry {}: {warning}", registry.display());
        }
        let p = answer.published;
        if !ctx.global.json {
            println!("Published {}@{} ({})", p.name, p.version, p.cksum.prefixed());
        }
        published = Some(p);
    }
    if let Some(out) = &args.out {
        import::write_authoring_dir(&imported, out, args.force)?;
        if !ctx.global.json {
            println!("Imported {} {shape} into {}", manifest.id(), out.display());
        }
    }
    if ctx.global.json {
        let value = serde_json::json!({
            "name": manifest.package.name,
            "version": manifest.package.version.to_string(),
            "cksum": imported.artifact.checksum().prefixed(),
            "shape": prompt.map(|p| [p.length(), p.hidden()]),
            "dtype": prompt.map(|p| p.dtype().as_str()),
            "base_model": manifest.base_model,
            "out": args.out,
            "published": published.is_some(),
            "notes": imported.notes,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}
