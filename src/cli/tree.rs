use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::Context;
use crate::project::ops::{self, Workspace};
use crate::project::{LockedPackage, Lockfile};
use crate::select::Selection;
use crate::workflow::suggest::load_selection;

#[derive(Debug, clap::Args)]
#[command(after_help = "Brings attempt.lock up to date first (like `lock`), then prints the \
packages under each [sources] entry. A package already shown is marked (*). When \
`suggest --apply` chose the sources, its record (every candidate's score, what was kept and why) \
follows.\n\n\
Examples:\n  attempt-pkg tree\n  attempt-pkg tree --json | jq '.packages[].name'\n  attempt-pkg tree --frozen")]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<()> {
    let ws = ctx.workspace()?;
    let registries = ctx.registries()?;
    let outcome = ops::ensure_lock(&ws, &registries, ctx.flags())?;
    let selection = load_selection(&ws.dir)?;
    if ctx.global.json {
        let mut value = to_json(&ws, &outcome.lock);
        if let Some(s) = &selection {
            value["selection"] = serde_json::to_value(s)?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&ws, &outcome.lock));
        if let Some(s) = &selection {
            print!("{}", render_selection(&ws, s));
        }
    }
    Ok(())
}

/// Why the sources are what they are: the record `suggest --apply` left.
fn render_selection(ws: &Workspace, s: &Selection) -> String {
    let mut out = format!(
        "\nchosen by `suggest` for task {} ({}, {} examples, seed {}):\n",
        s.task, s.signal_version, s.sample_size, s.config.seed
    );
    for (rank, r) in s.ranking.iter().enumerate() {
        let here = if ws.manifest.sources.contains_key(&r.name) { "in [sources]" } else { "not added" };
        let helps = match (r.helps, &r.own_task) {
            (true, _) => ", predicted to help".to_string(),
            (false, Some(check)) if !check.learned() => format!(", did not learn its own task: {}", check.describe()),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  #{} {}@{}: score {:.4} ± {:.4}{helps} ({here})\n",
            rank + 1,
            r.name,
            r.version,
            r.score,
            r.stderr
        ));
    }
    out.push_str(&format!("  {}\n", s.verdict));
    out
}

fn to_json(ws: &Workspace, lock: &Lockfile) -> serde_json::Value {
    let packages: Vec<_> = lock
        .packages
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "version": p.version.to_string(),
                "checksum": p.checksum.prefixed(),
                "source": p.source,
                "dependencies": p.dependencies,
            })
        })
        .collect();
    let sources: BTreeMap<_, _> = ws.manifest.sources.iter().map(|(n, r)| (n.clone(), r.to_string())).collect();
    json!({
        "project": ws.manifest.name,
        "base_model": lock.base_model.as_ref().map(|m| json!({
            "fingerprint": m.fingerprint.prefixed(),
            "hidden_size": m.hidden_size,
            "prompt_length": m.prompt_length,
        })),
        "sources": sources,
        "packages": packages,
    })
}

fn render(ws: &Workspace, lock: &Lockfile) -> String {
    let by_name: BTreeMap<&str, &LockedPackage> = lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = format!("{}\n", ws.manifest.name);
    let roots: Vec<&str> = ws.manifest.sources.keys().map(String::as_str).collect();
    let mut shown = std::collections::BTreeSet::new();
    for (i, name) in roots.iter().enumerate() {
        branch(&by_name, name, "", i + 1 == roots.len(), &mut shown, &mut out);
    }
    if let Some(m) = &lock.base_model {
        out.push_str(&format!("\nbase model: {}", m.fingerprint.prefixed()));
        if let Some(h) = m.hidden_size {
            out.push_str(&format!(", hidden size {h}"));
        }
        if let Some(l) = m.prompt_length {
            out.push_str(&format!(", prompt length {l}"));
        }
        out.push('\n');
    }
    out
}

fn branch<'a>(
    by_name: &BTreeMap<&str, &'a LockedPackage>,
    name: &'a str,
    prefix: &str,
    last: bool,
    shown: &mut std::collections::BTreeSet<&'a str>,
    out: &mut String,
) {
    let connector = if last { "└── " } else { "├── " };
    let Some(p) = by_name.get(name) else {
        out.push_str(&format!("{prefix}{connector}{name} (not locked)\n"));
        return;
    };
    let again = !shown.insert(name);
    out.push_str(&format!(
        "{prefix}{connector}{name} v{}{}\n",
        p.version,
        if again && !p.dependencies.is_empty() { " (*)" } else { "" }
    ));
    if again {
        return;
    }
    let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
    for (i, d) in p.dependencies.iter().enumerate() {
        branch(by_name, d, &child_prefix, i + 1 == p.dependencies.len(), shown, out);
    }
}
