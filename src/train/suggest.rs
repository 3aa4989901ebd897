//! Choosing sources (`attempt-pkg suggest` / `train --select auto`): a short
//! ATTEMPT probe run over every candidate source, ranked by the attention
//! mass G gives each on the target's dev examples. Sources that draw at
//! least the uniform share 1/(t+1) are proposed to keep, the rest to remove.

use anyhow::{bail, Result};

use crate::compose::Method;

use super::trainer::{train, TrainOptions, TrainRequest};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceScore {
    pub name: String,
    /// Mean attention weight over the dev examples (averaged over tasks).
    pub attention: f32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Suggestion {
    /// Every candidate, highest attention first.
    pub ranking: Vec<SourceScore>,
    pub keep: Vec<String>,
    pub remove: Vec<String>,
    /// Attention left on the target prompts themselves.
    pub target_attention: f32,
    pub probe_steps: usize,
}

/// Probe `request.sources` for `request.tasks` with `probe_steps` ATTEMPT
/// steps. `keep_top` caps how many sources are proposed to keep.
pub fn suggest_sources(
    mut request: TrainRequest<'_>,
    probe_steps: usize,
    keep_top: Option<usize>,
) -> Result<Suggestion> {
    if request.sources.is_empty() {
        bail!("no candidate source prompts to rank");
    }
    if probe_steps == 0 {
        bail!("the probe needs at least one step");
    }
    request.config.method = Method::Attempt;
    request.config.max_steps = Some(probe_steps);
    request.config.epochs = usize::MAX / 2;
    let names: Vec<String> = request.sources.iter().map(|s| s.name.clone()).collect();
    let outcome = train(request, &TrainOptions::default())?;
    let t = names.len();
    let mut mass = vec![0f32; t + 1];
    let mut tasks = 0usize;
    for e in &outcome.best_eval {
        if let Some(w) = &e.mean_attention {
            for (m, v) in mass.iter_mut().zip(w) {
                *m += v;
            }
            tasks += 1;
        }
    }
    let tasks = tasks.max(1) as f32;
    let mut ranking: Vec<SourceScore> =
        names.iter().zip(&mass).map(|(n, m)| SourceScore { name: n.clone(), attention: m / tasks }).collect();
    ranking.sort_by(|a, b| b.attention.total_cmp(&a.attention).then_with(|| a.name.cmp(&b.name)));
    let uniform = 1.0 / (t as f32 + 1.0);
    let cap = keep_top.unwrap_or(t);
    let (mut keep, mut remove) = (Vec::new(), Vec::new());
    for (i, s) in ranking.iter().enumerate() {
        if i < cap && (s.attention >= uniform || i == 0) {
            keep.push(s.name.clone());
        } else {
            remove.push(s.name.clone());
        }
    }
    Ok(Suggestion { ranking, keep, remove, target_attention: mass[t] / tasks, probe_steps: outcome.steps })
}
