use std::path::PathBuf;

use anyhow::Result;

use super::Context;
use crate::interop::export::{self, ExportOptions, Format, PackageSpec};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
attempt-pkg export mnli-prompt@1.0.0 --format peft --out ./mnli-adapter\n  \
attempt-pkg export mnli-prompt@^1 --format pt --out ./out            # writes ./out/prompt.pt\n  \
attempt-pkg export mnli-prompt --format safetensors --out ./out      # newest unyanked version\n\n\
The artifact is verified against its registry checksum before anything is written. \
A PEFT export loads with peft.PeftModel.from_pretrained(base_model, DIR); a pt export with \
torch.load(DIR/prompt.pt, weights_only=True).")]
pub struct Args {
    /// The package: NAME, NAME@VERSION (exact) or NAME@REQ (e.g. mnli-prompt@^1.2).
    #[arg(value_name = "NAME[@VER]")]
    pub package: String,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// PEFT task_type recorded in adapter_config.json (e.g. SEQ_2_SEQ_LM for T5).
    #[arg(long, default_value = "FEATURE_EXTRACTION", value_name = "TYPE")]
    pub task_type: String,
    /// Overwrite files already in --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let spec = PackageSpec::parse(&args.package)?;
    let registry = ctx.registry(None)?;
    let entry = export::resolve(&registry, &spec)?;
    if entry.yanked {
        eprintln!("warning: {}@{} is yanked", entry.name, entry.vers);
    }
    let package = export::load(&registry, &entry)?;
    let opts = ExportOptions { format: args.format, out: args.out, force: args.force, task_type: args.task_type };
    let written = export::export(&package, &opts)?;
    if ctx.global.json {
        let value = serde_json::json!({
            "name": entry.name,
            "version": entry.vers.to_string(),
            "cksum": entry.cksum.prefixed(),
            "files": written,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("Exported {}@{} to {}", entry.name, entry.vers, files.join(", "));
    }
    Ok(())
}
