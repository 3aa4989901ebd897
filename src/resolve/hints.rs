//! One-line hints appended to a failed resolution: the likely cause for each
//! direct requirement, in the user's terms (requirement text, fingerprints).

use registry_index::IndexEntry;
use semver::VersionReq;

use super::provider::{model_key, Provider};
use super::version::{short_fingerprint, ModelRequirement};

pub fn hints(provider: &Provider<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, by) in provider.missing_dependencies() {
        out.push(format!("no registry has a package named {name}, which {by} depends on"));
    }
    for (name, req) in &provider.request.sources {
        let Ok(index) = provider.package(name) else { continue };
        let matching: Vec<&IndexEntry> = index.entries.iter().filter(|e| req.matches(&e.vers)).collect();
        if matching.is_empty() {
            let listed: Vec<String> = index.entries.iter().take(5).map(|e| e.vers.to_string()).collect();
            out.push(format!("no version of {name} matches {req} (newest: {})", listed.join(", ")));
            continue;
        }
        let usable: Vec<&IndexEntry> = matching.iter().copied().filter(|e| provider.usable(name, &index, e)).collect();
        let Some(newest) = usable.first() else {
            let yanked: Vec<String> = matching.iter().map(|e| e.vers.to_string()).collect();
            out.push(format!(
                "every version of {name} matching {req} is yanked ({}); yanked versions are only kept where a lock already has them",
                yanked.join(", ")
            ));
            continue;
        };
        if let Some(model) = &provider.request.model {
            if !usable.iter().any(|e| model.admits(&model_key(e))) {
                out.push(model_mismatch(name, req, newest, model));
            }
        }
    }
    out
}

fn model_mismatch(name: &str, req: &VersionReq, e: &IndexEntry, model: &ModelRequirement) -> String {
    let ours = short_fingerprint(&model.fingerprint);
    if e.base_model != model.fingerprint {
        return format!(
            "{name}@{} is for base model {}, but this project uses {ours}; no version of {name} matching {req} is for {ours}",
            e.vers,
            short_fingerprint(&e.base_model)
        );
    }
    if let Some(h) = model.hidden_size.filter(|h| *h != e.hidden_size) {
        return format!(
            "{name}@{} has hidden size {}, but this project's model ({ours}) has hidden size {h}; no version of {name} matching {req} fits",
            e.vers, e.hidden_size
        );
    }
    let want = model.prompt_length.unwrap_or(0);
    format!(
        "{name}@{} has prompt length {}, but this project sets prompt-length = {want}; no version of {name} matching {req} has that length",
        e.vers, e.prompt_length
    )
}
