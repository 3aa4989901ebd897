//! Did a prompt learn its own task? Its dev metric next to that of a
//! predictor that ignores the input, with a paired bootstrap standard error
//! of the difference.
//!
//! The input-blind predictor is the training set's majority class (for
//! regression any constant, whose correlation with the gold scores is 0).
//! `train-source` records the three numbers in the package's `[metrics]`
//! (`<metric>-baseline`, `<metric>-gain-stderr`, `eval-examples`), and
//! `suggest` never proposes a prompt that did not beat the baseline on its
//! own task: a prompt trained on shuffled labels, or one that learned
//! nothing in its budget, carries no task knowledge to transfer, however
//! much it moves the features of the target.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::metrics::{compute, Predictions};
use super::tasks::{TaskDef, TaskKind};
use super::{Example, Label};

/// One-sided 5 %: a prompt "learned its task" when its gain over the
/// input-blind baseline exceeds this many standard errors.
pub const LEARNED_Z: f64 = 1.645;
/// Bootstrap resamples of the dev examples (the error of a standard error
/// from 200 resamples is about 5 %, plenty for a yes/no gate).
const RESAMPLES: usize = 200;
pub const EVAL_EXAMPLES_KEY: &str = "eval-examples";

/// The evidence that a prompt learned its own (source) task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OwnTaskCheck {
    /// The task's primary metric (`accuracy`, `pearson`, …).
    pub metric: String,
    /// The trained prompt's value on the dev examples.
    pub value: f64,
    /// The input-blind predictor's value on the same examples.
    pub baseline: f64,
    /// Paired bootstrap standard error of `value - baseline`.
    pub gain_stderr: f64,
    /// Dev examples evaluated.
    pub examples: usize,
}

impl OwnTaskCheck {
    /// Whether the gain over the baseline is significant (one-sided 5 %).
    pub fn learned(&self) -> bool {
        let gain = self.value - self.baseline;
        gain > 0.0 && gain > LEARNED_Z * self.gain_stderr
    }

    /// "accuracy 0.509 vs 0.509 for the majority class (± 0.017, 872 dev examples)".
    pub fn describe(&self) -> String {
        format!(
            "{} {:.3} vs {:.3} for an input-blind predictor (gain ± {:.3}, {} dev examples)",
            self.metric, self.value, self.baseline, self.gain_stderr, self.examples
        )
    }

    /// The `[metrics]` entries that record this check (besides the metric itself).
    pub fn manifest_entries(&self) -> Vec<(String, f64)> {
        vec![
            (format!("{}-baseline", self.metric), self.baseline),
            (format!("{}-gain-stderr", self.metric), self.gain_stderr),
            (EVAL_EXAMPLES_KEY.to_string(), self.examples as f64),
        ]
    }

    /// The check recorded in a package's `[metrics]`, if it records one
    /// (packages from `import`, or from versions before this, do not).
    pub fn from_manifest(metrics: &BTreeMap<String, f64>) -> Option<OwnTaskCheck> {
        let examples = *metrics.get(EVAL_EXAMPLES_KEY)?;
        metrics.iter().find_map(|(key, &baseline)| {
            let metric = key.strip_suffix("-baseline")?;
            let value = *metrics.get(metric)?;
            let gain_stderr = *metrics.get(&format!("{metric}-gain-stderr"))?;
            (examples >= 1.0 && gain_stderr >= 0.0).then(|| OwnTaskCheck {
                metric: metric.to_string(),
                value,
                baseline,
                gain_stderr,
                examples: examples as usize,
            })
        })
    }
}

/// Compare `preds` (of the examples `dev`, in order) on `task`'s primary
/// metric with the majority class of `train`. `None` when there is nothing
/// to compare (no dev examples, or predictions of the wrong kind).
pub fn own_task_check(
    task: &TaskDef,
    train: &[Example],
    dev: &[Example],
    preds: &Predictions,
    seed: u64,
) -> Option<OwnTaskCheck> {
    let metric = task.primary_metric();
    let n = dev.len();
    let gold: Vec<Label> = dev.iter().map(|e| e.label).collect();
    let baseline = match (&task.kind, preds) {
        (TaskKind::Classification { labels }, Predictions::Classes(p)) if p.len() == n && n > 0 => {
            let mut counts = vec![0usize; labels.len().max(1)];
            for e in train {
                if let Label::Class(c) = e.label {
                    if let Some(k) = counts.get_mut(c) {
                        *k += 1;
                    }
                }
            }
            // Ties go to the lowest index, so the baseline is deterministic.
            let majority =
                counts.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(i, _)| i);
            Some(Predictions::Classes(vec![majority; n]))
        }
        (TaskKind::Regression, Predictions::Scores(p)) if p.len() == n && n > 0 => None,
        _ => return None,
    };
    let value_of = |p: &Predictions, g: &[Label]| finite_or_zero(compute(metric, p, g));
    // A constant's correlation is undefined; it explains nothing, i.e. 0.
    let baseline_of = |rows: Option<&[usize]>| -> f64 {
        match &baseline {
            Some(b) => match rows {
                Some(r) => value_of(&pick(b, r), &r.iter().map(|&i| gold[i]).collect::<Vec<_>>()),
                None => value_of(b, &gold),
            },
            None => 0.0,
        }
    };
    let value = value_of(preds, &gold);
    let base = baseline_of(None);
    let mut rng = StdRng::seed_from_u64(seed);
    let gains: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let rows: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            let g: Vec<Label> = rows.iter().map(|&i| gold[i]).collect();
            value_of(&pick(preds, &rows), &g) - baseline_of(Some(&rows))
        })
        .collect();
    let mean = gains.iter().sum::<f64>() / gains.len() as f64;
    let var = gains.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (gains.len() - 1) as f64;
    Some(OwnTaskCheck {
        metric: metric.as_str().to_string(),
        value,
        baseline: base,
        gain_stderr: var.sqrt(),
        examples: n,
    })
}

fn pick(p: &Predictions, rows: &[usize]) -> Predictions {
    match p {
        Predictions::Classes(c) => Predictions::Classes(rows.iter().map(|&i| c[i]).collect()),
        Predictions::Scores(s) => Predictions::Scores(rows.iter().map(|&i| s[i]).collect()),
    }
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::builtin_task;

    fn ex(label: Label) -> Example {
        Example { text_a: "x".into(), text_b: None, label }
    }

    #[test]
    fn a_predictor_that_copies_the_majority_learned_nothing() {
        let task = builtin_task("sst2").unwrap();
        let train: Vec<Example> = [0, 1, 1, 1].iter().map(|&c| ex(Label::Class(c))).collect();
        let dev: Vec<Example> = (0..200).map(|i| ex(Label::Class(usize::from(i % 3 != 0)))).collect();
        let majority = own_task_check(&task, &train, &dev, &Predictions::Classes(vec![1; 200]), 1).unwrap();
        assert_eq!(majority.metric, "accuracy");
        assert!((majority.baseline - 133.0 / 200.0).abs() < 1e-12);
        assert_eq!(majority.value, majority.baseline);
        assert_eq!(majority.gain_stderr, 0.0);
        assert!(!majority.learned());
        // Perfect predictions beat it by far more than the noise.
        let gold: Vec<usize> = dev.iter().map(|e| if let Label::Class(c) = e.label { c } else { 0 }).collect();
        let perfect = own_task_check(&task, &train, &dev, &Predictions::Classes(gold.clone()), 1).unwrap();
        assert_eq!(perfect.value, 1.0);
        assert!(perfect.gain_stderr > 0.0 && perfect.learned(), "{perfect:?}");
        // Ten more right out of 200 (+5 points) clears the paired noise
        // (about 1.5 points); one more right (+0.5) does not.
        let better_by = |k: usize| {
            let mut p = vec![1; 200];
            for i in (0..200).filter(|i| i % 3 == 0).take(k) {
                p[i] = 0;
            }
            own_task_check(&task, &train, &dev, &Predictions::Classes(p), 1).unwrap()
        };
        let ten = better_by(10);
        assert!((ten.value - ten.baseline - 0.05).abs() < 1e-12);
        assert!(ten.learned(), "{ten:?}");
        let one = better_by(1);
        assert!(one.value > one.baseline && !one.learned(), "{one:?}");
        // Same seed, same answer.
        assert_eq!(perfect, own_task_check(&task, &train, &dev, &Predictions::Classes(gold), 1).unwrap());
    }

    #[test]
    fn regression_is_compared_with_zero_correlation() {
        let task = builtin_task("stsb").unwrap();
        let dev: Vec<Example> = (0..50).map(|i| ex(Label::Score(i as f32 / 10.0))).collect();
        let scores: Vec<f32> = (0..50).map(|i| ((i * 7919) % 50) as f32).collect();
        let c = own_task_check(&task, &dev, &dev, &Predictions::Scores(scores), 3).unwrap();
        assert_eq!(c.metric, "pearson");
        assert_eq!(c.baseline, 0.0);
        assert!(!c.learned(), "a shuffled order does not correlate: {c:?}");
        let good: Vec<f32> = (0..50).map(|i| i as f32).collect();
        assert!(own_task_check(&task, &dev, &dev, &Predictions::Scores(good), 3).unwrap().learned());
        // Predictions of the wrong kind give no check rather than a wrong one.
        assert!(own_task_check(&task, &dev, &dev, &Predictions::Classes(vec![0; 50]), 3).is_none());
    }

    #[test]
    fn the_check_round_trips_through_manifest_metrics() {
        let c =
            OwnTaskCheck { metric: "accuracy".into(), value: 0.8, baseline: 0.509, gain_stderr: 0.017, examples: 872 };
        let mut metrics: BTreeMap<String, f64> = c.manifest_entries().into_iter().collect();
        assert_eq!(OwnTaskCheck::from_manifest(&metrics), None, "the metric itself is missing");
        metrics.insert("accuracy".into(), 0.8);
        assert_eq!(OwnTaskCheck::from_manifest(&metrics), Some(c));
        // An older package records the metric only.
        assert_eq!(OwnTaskCheck::from_manifest(&[("accuracy".to_string(), 0.8)].into()), None);
    }
}
