use anyhow::{bail, Context as _, Result};
use semver::Version;

use super::Context;
use crate::registry::PackageInfo;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  attempt-pkg info mnli-prompt\n  attempt-pkg info mnli-prompt@1.0.0\n  \
attempt-pkg info mnli-prompt --json")]
pub struct Args {
    /// The package, optionally with an exact version: NAME or NAME@VERSION.
    #[arg(value_name = "NAME[@VERSION]")]
    pub spec: String,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let (name, version) = match args.spec.split_once('@') {
        Some((n, v)) => {
            (n, Some(Version::parse(v).with_context(|| format!("`{v}` is not a semver version (e.g. 1.0.0)"))?))
        }
        None => (args.spec.as_str(), None),
    };
    let registry = ctx.registry(None)?;
    let Some(mut info) = registry.info(name)? else {
        match registry.similar_name(name)? {
            Some(similar) => bail!("no package `{name}` in {}; did you mean `{similar}`?", registry.display()),
            None => bail!("no package `{name}` in {}; try `attempt-pkg search {name}`", registry.display()),
        }
    };
    if let Some(version) = &version {
        info.versions.retain(|v| &v.version == version);
        info.yank_history.retain(|e| &e.version == version);
        if info.versions.is_empty() {
            bail!("{name}@{version} is not published; `attempt-pkg info {name}` lists its versions");
        }
    }
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_info(&info);
    }
    Ok(())
}

fn print_info(info: &PackageInfo) {
    let Some(latest) = info.latest() else { return };
    println!("{}", info.name);
    println!("  task:        {}", latest.task);
    if !latest.description.is_empty() {
        println!("  description: {}", latest.description);
    }
    if let Some(license) = &latest.license {
        println!("  license:     {license}");
    }
    println!("  base model:  {} ({})", latest.base_model_name, latest.base_model.prefixed());
    println!("  versions:");
    for v in &info.versions {
        let shape = match &v.dtype {
            Some(dtype) => format!("{}×{} {dtype}", v.prompt_length, v.hidden_size),
            None => "prompt set".to_string(),
        };
        let yanked = if v.yanked { "  (yanked)" } else { "" };
        println!("    {}  {shape}  {} bytes  {}{yanked}", v.version, v.size, v.cksum.prefixed());
        for dep in &v.deps {
            println!("      depends on {} {}", dep.name, dep.req);
        }
    }
    for e in &info.yank_history {
        println!("  {} {} at unix time {}", if e.yanked { "yanked" } else { "unyanked" }, e.version, e.at);
    }
}
