//! Ranking candidate source prompts for a target task by forward-only
//! transferability, with built-in controls and a "nothing helps" answer.
//!
//! For a sample of labelled target training examples, each candidate prompt
//! is prepended to the inputs, the frozen encoder runs once, and LogME scores
//! how well the pooled text features explain the labels. Two references make
//! that number mean something:
//!
//! - **no prompt**: the same examples through the bare encoder;
//! - **norm-matched random prompts** (the controls): trained prompts have row
//!   norms of 25–45 against word embeddings of 1–2, and a prompt's effect on
//!   the features grows with its norm whatever it encodes. Gaussian prompts
//!   at a few row norms spanning the candidates' give LogME as a function of
//!   norm alone; a candidate's score is its LogME minus that curve at its own
//!   norm, i.e. what it adds over a prompt that carries no task knowledge.
//!
//! The score's standard error has two parts: paired half-samples of the
//! sample (the same rows for the candidate and the controls; without
//! replacement, because duplicated rows make the evidence of a d-dimensional
//! fit unstable, and a half-sample's spread estimates the full sample's: the
//! variance of a mean-like statistic over m of n rows drawn without
//! replacement is σ²/m·(1 − m/n), i.e. σ²/n at m = n/2), and
//! the spread between random prompts of one norm (three draws per level), since
//! under "no task knowledge" a candidate is just one more such draw. A
//! candidate is proposed only when its score exceeds `z` standard errors;
//! when none does, the selection is empty and says so (train plain prompt
//! tuning then).
//!
//! A prompt whose package records that it did not beat an input-blind
//! predictor on its own task (`data::baseline`) is ranked like the others but
//! never proposed: a prompt trained on shuffled labels moves the features of
//! a target as much as a real source does, so the features alone cannot tell
//! it apart, while its own dev metric can.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::features::{cached_pooled_features, sample_digest, FeatureCache, TokenisedSample};
use super::logme::{feature_matrix, h_score, logme, Targets};
use super::signature::{mean_row, sample};
use crate::data::baseline::OwnTaskCheck;
use crate::data::tasks::{TaskDef, TaskKind};
use crate::data::{Example, Label};
use crate::train::model::mean_row_norm;
use crate::train::Backbone;

/// Version of the scoring recipe, recorded with every selection so a later
/// change of the recipe is visible in old records.
/// 2: prompts that did not learn their own task are never proposed.
pub const SIGNAL_VERSION: &str = "logme-vs-norm-control/2";

/// A prompt to score: `[m, d]`, with the package it came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub version: String,
    pub prompt: Tensor,
    /// The package's task signature (mean embedding of its source data), if recorded.
    pub signature: Option<Vec<f32>>,
    /// Whether the prompt beat an input-blind predictor on its own task, as
    /// its package records (none for imported or older packages).
    pub own_task: Option<OwnTaskCheck>,
}

/// How candidates are scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SelectConfig {
    /// Labelled target training examples scored per candidate.
    pub sample: usize,
    /// Seeds the sample, the control prompts and the half-samples.
    pub seed: u64,
    pub max_length: usize,
    pub batch_size: usize,
    /// Row norms at which random control prompts are drawn.
    pub control_levels: usize,
    /// Random prompts drawn per level (two or more also measure how much
    /// random prompts of one norm differ among themselves; three per level give
    /// the spread six degrees of freedom).
    pub control_draws: usize,
    /// Half-samples for the standard error of a score.
    pub resamples: usize,
    /// A candidate is proposed when its score exceeds this many standard errors.
    pub z: f64,
    /// Propose at most this many candidates.
    pub top: Option<usize>,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            sample: 500,
            seed: 1,
            max_length: 128,
            batch_size: 32,
            control_levels: 3,
            control_draws: 3,
            resamples: 20,
            z: 2.0,
            top: None,
        }
    }
}

/// One candidate's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// Package name.
    pub name: String,
    pub version: String,
    /// The ranking score: LogME with this prompt minus LogME of random
    /// prompts of the same row norm (per example, nats).
    pub score: f64,
    /// Standard error of `score` (half-samples and the spread of random draws).
    pub stderr: f64,
    /// LogME of the features with this prompt.
    pub logme: f64,
    /// LogME with this prompt minus LogME without a prompt.
    pub logme_gain: f64,
    /// The controls' LogME at this prompt's row norm.
    pub control_logme: f64,
    /// H-score with this prompt (classification only).
    pub h_score: Option<f64>,
    /// Cosine between the package's task signature and the target sample's
    /// mean embedding (none when the package records no signature).
    pub signature_cosine: Option<f64>,
    /// Mean row norm of the prompt.
    pub row_norm: f64,
    /// Rows of the prompt (ATTEMPT mixes prompts of one length).
    pub prompt_length: usize,
    /// The package's own-task check, when it records one.
    #[serde(default)]
    pub own_task: Option<OwnTaskCheck>,
    /// `Some(false)`: the prompt did not beat an input-blind predictor on its
    /// own task, so it carries no task knowledge and is never proposed.
    #[serde(default)]
    pub learned_own_task: Option<bool>,
    /// Whether the score clears `z` standard errors (and the `top` cap), and
    /// the prompt is not known to have learned nothing.
    pub helps: bool,
    /// Wall time spent on this candidate (forward pass and scoring).
    pub seconds: f64,
}

/// A control prompt's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlScore {
    pub row_norm: f64,
    /// LogME of each random draw at this norm.
    pub logme: Vec<f64>,
}

/// The outcome: every candidate ranked, best first, and what to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub task: String,
    pub ranking: Vec<CandidateScore>,
    /// Names proposed to keep, best first (empty: no candidate is predicted to help).
    pub keep: Vec<String>,
    /// Names not proposed.
    pub remove: Vec<String>,
    /// LogME of the features without a prompt.
    pub no_prompt_logme: f64,
    pub controls: Vec<ControlScore>,
    pub sample_size: usize,
    pub signal_version: String,
    pub config: SelectConfig,
    /// Why nothing is proposed, when nothing is.
    pub verdict: String,
}

/// Fixed features of the sample under one prompt, with what scoring needs.
struct Scored {
    features: DMatrix<f64>,
    logme: f64,
}

/// Score `candidates` for `task` on `train` examples.
pub fn rank(
    backbone: Backbone<'_>,
    task: &TaskDef,
    train: &[Example],
    candidates: &[Candidate],
    config: &SelectConfig,
    cache: Option<&dyn FeatureCache>,
    progress: &dyn Fn(&str),
) -> Result<Selection> {
    let Backbone { encoder, tokenizer, device } = backbone;
    if candidates.is_empty() {
        bail!("no candidate prompts to rank");
    }
    if config.sample < 2 {
        bail!("the scoring sample needs at least two examples");
    }
    let d = encoder.hidden_size();
    for c in candidates {
        let (_, cd) = c.prompt.dims2().with_context(|| format!("{}@{}: a prompt must be [m, d]", c.name, c.version))?;
        if cd != d {
            bail!(
                "{}@{} has width {cd} but the model's hidden size is {d}; it was trained for another model",
                c.name,
                c.version
            );
        }
    }
    let picked = sample(train, config.sample, config.seed);
    // Controls and half-samples draw from their own stream, after the sample's.
    let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(1));
    let targets = targets_of(task, &picked)?;
    let sample_tokens = TokenisedSample::new(&picked, tokenizer, config.max_length, config.batch_size)?;
    let n = sample_tokens.len();
    let data_key = sample_digest(&picked, config.max_length);
    let features_of =
        |prompt: Option<&Tensor>| cached_pooled_features(&sample_tokens, &data_key, encoder, prompt, device, cache);
    let scored = |rows: &[Vec<f32>]| -> Result<Scored> {
        let features = feature_matrix(rows)?;
        let logme = logme(&features, &targets)?;
        Ok(Scored { features, logme })
    };
    let score_features = |prompt: Option<&Tensor>| scored(&features_of(prompt)?);

    progress("features without a prompt");
    let bare_rows = features_of(None)?;
    let target_mean = mean_row(&bare_rows);
    let bare = scored(&bare_rows)?;

    // Controls: Gaussian prompts whose every row has the given norm, at
    // geometrically spaced norms covering the candidates', a few draws each.
    let norms: Vec<f64> = candidates.iter().map(|c| mean_row_norm(&c.prompt)).collect::<Result<_>>()?;
    let m = candidates[0].prompt.dims()[0];
    let levels = control_norms(&norms, config.control_levels.max(1));
    let draws = config.control_draws.max(1);
    let mut controls: Vec<Vec<Scored>> = Vec::new();
    for (i, &r) in levels.iter().enumerate() {
        let mut at_level = Vec::new();
        for k in 0..draws {
            progress(&format!(
                "control {}/{} (random prompt, row norm {r:.1})",
                i * draws + k + 1,
                levels.len() * draws
            ));
            let prompt = random_prompt(m, d, r, &mut rng, device)?;
            at_level.push(score_features(Some(&prompt))?);
        }
        controls.push(at_level);
    }
    // One set of half-samples shared by candidates and controls (paired).
    let resamples: Vec<Vec<usize>> = (0..config.resamples)
        .map(|_| {
            let mut rows: Vec<usize> = (0..n).collect();
            rows.shuffle(&mut rng);
            rows.truncate((n / 2).max(2));
            rows.sort_unstable();
            rows
        })
        .collect();
    let resampled_logme = |s: &Scored| -> Result<Vec<f64>> {
        resamples.iter().map(|rows| logme(&select_rows(&s.features, rows), &targets.subset(rows))).collect()
    };
    // Per level: the mean over draws, its half-sample replicates, and the
    // spread between draws (how much one random prompt differs from another
    // of the same norm, which resampling examples cannot see).
    let control_values: Vec<f64> =
        controls.iter().map(|c| mean(&c.iter().map(|s| s.logme).collect::<Vec<_>>())).collect();
    let mut control_boot = vec![vec![0.0; resamples.len()]; levels.len()];
    for (l, at_level) in controls.iter().enumerate() {
        for s in at_level {
            for (b, v) in resampled_logme(s)?.into_iter().enumerate() {
                control_boot[l][b] += v / at_level.len() as f64;
            }
        }
    }
    let draw_variance = if draws > 1 {
        mean(
            &controls
                .iter()
                .map(|c| std_dev(&c.iter().map(|s| s.logme).collect::<Vec<_>>()).powi(2))
                .collect::<Vec<_>>(),
        )
    } else {
        0.0
    };

    let mut ranking = Vec::new();
    for (i, (c, &norm)) in candidates.iter().zip(&norms).enumerate() {
        progress(&format!("candidate {}/{}: {}@{}", i + 1, candidates.len(), c.name, c.version));
        let started = Instant::now();
        let s = score_features(Some(&c.prompt))?;
        let control_logme = interpolate(&levels, &control_values, norm);
        let boot = resampled_logme(&s)?;
        let diffs: Vec<f64> = boot
            .iter()
            .enumerate()
            .map(|(b, v)| {
                let at: Vec<f64> = control_boot.iter().map(|c| c[b]).collect();
                v - interpolate(&levels, &at, norm)
            })
            .collect();
        // Under "no task knowledge" the candidate is one more random draw:
        // its own draw variance, the control mean's, and the sampling noise.
        let stderr = (std_dev(&diffs).powi(2) + draw_variance * (1.0 + 1.0 / draws as f64)).sqrt();
        let h = h_score(&s.features, &targets)?;
        ranking.push(CandidateScore {
            name: c.name.clone(),
            version: c.version.clone(),
            score: s.logme - control_logme,
            stderr,
            logme: s.logme,
            logme_gain: s.logme - bare.logme,
            control_logme,
            h_score: h,
            signature_cosine: c.signature.as_ref().map(|sig| registry_index::cosine(sig, &target_mean)),
            row_norm: norm,
            prompt_length: c.prompt.dims()[0],
            own_task: c.own_task.clone(),
            learned_own_task: c.own_task.as_ref().map(OwnTaskCheck::learned),
            helps: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    ranking.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
    let cap = config.top.unwrap_or(usize::MAX);
    let mut keep = Vec::new();
    let mut remove = Vec::new();
    let mut kept_length = None;
    for r in ranking.iter_mut() {
        let clears = r.score > 0.0 && r.score > config.z * r.stderr && r.learned_own_task != Some(false);
        // The kept set is mixed by ATTEMPT, so it shares the best one's length.
        r.helps = clears && keep.len() < cap && *kept_length.get_or_insert(r.prompt_length) == r.prompt_length;
        if r.helps {
            keep.push(r.name.clone());
        } else {
            remove.push(r.name.clone());
        }
    }
    let unlearned = ranking.iter().filter(|r| r.learned_own_task == Some(false)).count();
    let passed_over = match unlearned {
        0 => String::new(),
        1 => "; 1 candidate did not learn its own task and is never proposed".to_string(),
        k => format!("; {k} candidates did not learn their own tasks and are never proposed"),
    };
    let verdict = if keep.is_empty() {
        format!(
            "no candidate is predicted to help: none that learned its own task beats random prompts of its own norm by \
             more than {} standard errors{passed_over}; train with plain prompt tuning (`--method pt`)",
            config.z
        )
    } else {
        format!("{} of {} candidates beat random prompts of their own norm{passed_over}", keep.len(), ranking.len())
    };
    Ok(Selection {
        task: task.name.clone(),
        ranking,
        keep,
        remove,
        no_prompt_logme: bare.logme,
        controls: levels
            .iter()
            .zip(&controls)
            .map(|(r, c)| ControlScore { row_norm: *r, logme: c.iter().map(|s| s.logme).collect() })
            .collect(),
        sample_size: n,
        signal_version: SIGNAL_VERSION.to_string(),
        config: config.clone(),
        verdict,
    })
}

/// Labels of the sample as LogME targets; refuses a sample too small to score.
fn targets_of(task: &TaskDef, examples: &[&Example]) -> Result<Targets> {
    match &task.kind {
        TaskKind::Classification { labels } => {
            if examples.len() < labels.len() {
                bail!(
                    "task `{}` has {} training example(s) for {} classes; scoring needs at least one per class",
                    task.name,
                    examples.len(),
                    labels.len()
                );
            }
            let ids = examples
                .iter()
                .map(|e| match e.label {
                    Label::Class(c) => Ok(c),
                    Label::Score(_) => {
                        bail!("task `{}` is a classification task but an example has a score", task.name)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let t = Targets::Classes { labels: ids, classes: labels.len() };
            t.check(examples.len()).with_context(|| format!("cannot score candidates for task `{}`", task.name))?;
            Ok(t)
        }
        TaskKind::Regression => Ok(Targets::Scores(examples.iter().map(|e| e.label.as_score()).collect())),
    }
}

fn select_rows(f: &DMatrix<f64>, rows: &[usize]) -> DMatrix<f64> {
    DMatrix::from_fn(rows.len(), f.ncols(), |i, j| f[(rows[i], j)])
}

/// `count` norms spaced geometrically from the smallest to the largest of
/// `norms` (one when they all agree).
fn control_norms(norms: &[f64], count: usize) -> Vec<f64> {
    let lo = norms.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-6);
    let hi = norms.iter().cloned().fold(0.0, f64::max).max(lo);
    if count == 1 || hi / lo < 1.01 {
        return vec![(lo * hi).sqrt()];
    }
    (0..count).map(|i| lo * (hi / lo).powf(i as f64 / (count - 1) as f64)).collect()
}

/// A Gaussian `[m, d]` prompt with every row rescaled to norm `norm`.
fn random_prompt(m: usize, d: usize, norm: f64, rng: &mut StdRng, device: &Device) -> Result<Tensor> {
    let mut data = Vec::with_capacity(m * d);
    for _ in 0..m {
        let row: Vec<f64> = (0..d).map(|_| gaussian(rng)).collect();
        let len = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        data.extend(row.iter().map(|v| (v * norm / len) as f32));
    }
    Ok(Tensor::from_vec(data, (m, d), device)?)
}

/// A standard normal draw (Box–Muller; rand 0.8 without rand_distr has none).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Piecewise-linear interpolation in log-norm, constant beyond the ends.
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    if xs.len() == 1 || x <= xs[0] {
        return ys[0];
    }
    for w in 0..xs.len() - 1 {
        let (a, b) = (xs[w], xs[w + 1]);
        if x <= b {
            let t = (x.ln() - a.ln()) / (b.ln() - a.ln()).max(1e-12);
            return ys[w] + t * (ys[w + 1] - ys[w]);
        }
    }
    ys[ys.len() - 1]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_norms_span_the_candidates() {
        let l = control_norms(&[10.0, 40.0, 20.0], 3);
        assert!((l[0] - 10.0).abs() < 1e-9 && (l[1] - 20.0).abs() < 1e-9 && (l[2] - 40.0).abs() < 1e-9, "{l:?}");
        assert_eq!(control_norms(&[5.0, 5.0], 3).len(), 1);
    }

    #[test]
    fn interpolation_is_linear_in_log_norm_and_flat_outside() {
        let xs = [10.0, 40.0];
        let ys = [1.0, 3.0];
        assert_eq!(interpolate(&xs, &ys, 5.0), 1.0);
        assert_eq!(interpolate(&xs, &ys, 80.0), 3.0);
        assert!((interpolate(&xs, &ys, 20.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn random_prompts_have_the_asked_row_norm() {
        let mut rng = StdRng::seed_from_u64(3);
        let p = random_prompt(4, 16, 30.0, &mut rng, &Device::Cpu).unwrap();
        assert!((mean_row_norm(&p).unwrap() - 30.0).abs() < 1e-3);
    }
}
