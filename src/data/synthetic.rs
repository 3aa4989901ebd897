//! Tasks the project generates itself (quickstart, tests): short sentences
//! over a small English vocabulary whose label depends on keywords, so a
//! small frozen encoder plus a prompt can solve them. Deterministic from a seed.
//!
//! Sources and targets are related on purpose: `mood` (3-way, with a
//! neutral class) shares its lexicon with `sentiment`; `agreement` needs the
//! polarity knowledge of `sentiment` and the pair comparison of `same-topic`
//! (pair tasks need a real encoder: a mean-pooled linear head on the tiny
//! test encoder cannot solve them).

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::metrics::Metric;
use super::tasks::{Column, FieldMap, TaskDef, TaskKind};
use super::{Example, Label};

const POSITIVE: &[&str] = &["good", "great", "excellent", "wonderful", "happy", "lovely", "superb", "pleasant"];
const NEGATIVE: &[&str] = &["bad", "terrible", "awful", "horrible", "sad", "poor", "dreadful", "boring"];
const TOPICS: &[(&str, &[&str])] = &[
    ("sports", &["football", "tennis", "match", "goal", "team", "coach"]),
    ("food", &["pizza", "bread", "soup", "dinner", "cheese", "kitchen"]),
    ("music", &["song", "guitar", "concert", "piano", "band", "album"]),
    ("weather", &["rain", "snow", "storm", "sunshine", "wind", "cloud"]),
];
const FILLER: &[&str] = &[
    "the",
    "a",
    "this",
    "that",
    "we",
    "they",
    "it",
    "was",
    "is",
    "very",
    "really",
    "today",
    "yesterday",
    "here",
    "there",
    "some",
    "our",
    "my",
    "quite",
    "again",
    "still",
    "and",
    "then",
    "so",
];

/// Names of the synthetic tasks.
pub fn synthetic_task_names() -> &'static [&'static str] {
    &["sentiment", "topic", "same-topic", "agreement", "mood"]
}

/// Every word the generator can emit (for a `WordTokenizer`).
pub fn synthetic_vocabulary() -> Vec<&'static str> {
    let mut v: Vec<&str> = POSITIVE.iter().chain(NEGATIVE).chain(FILLER).copied().collect();
    for (_, words) in TOPICS {
        v.extend(words.iter());
    }
    v
}

/// Definition of a synthetic task (no files: examples come from `generate`).
pub fn synthetic_task(name: &str) -> Option<TaskDef> {
    let (labels, pair): (Vec<&str>, bool) = match name {
        "sentiment" => (vec!["negative", "positive"], false),
        "topic" => (TOPICS.iter().map(|(t, _)| *t).collect(), false),
        "same-topic" => (vec!["different", "same"], true),
        "agreement" => (vec!["disagree", "agree"], true),
        "mood" => (vec!["negative", "neutral", "positive"], false),
        _ => return None,
    };
    Some(TaskDef {
        name: name.to_string(),
        kind: TaskKind::Classification { labels: labels.iter().map(|s| s.to_string()).collect() },
        metrics: vec![Metric::Accuracy],
        fields: FieldMap {
            text_a: Column::Name("text_a".into()),
            text_b: pair.then(|| Column::Name("text_b".into())),
            label: Column::Name("label".into()),
        },
        train: None,
        dev: None,
    })
}

/// A sentence of 4–7 filler words with `keywords` inserted at random places.
fn sentence(rng: &mut StdRng, keywords: &[&str]) -> String {
    let n = rng.gen_range(4..=7);
    let mut words: Vec<&str> = (0..n).map(|_| *FILLER.choose(rng).unwrap_or(&"the")).collect();
    for k in keywords {
        let at = rng.gen_range(0..=words.len());
        words.insert(at, k);
    }
    words.join(" ")
}

fn pick<'a>(rng: &mut StdRng, words: &[&'a str]) -> &'a str {
    words[rng.gen_range(0..words.len())]
}

/// `n` examples of task `name`, balanced in expectation, reproducible from `seed`.
pub fn generate(name: &str, n: usize, seed: u64) -> Result<Vec<Example>> {
    let mut rng = StdRng::seed_from_u64(seed ^ fxhash(name));
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ex = match name {
            "sentiment" => {
                let positive = rng.gen_bool(0.5);
                let w = pick(&mut rng, if positive { POSITIVE } else { NEGATIVE });
                Example { text_a: sentence(&mut rng, &[w]), text_b: None, label: Label::Class(positive as usize) }
            }
            "topic" => {
                let t = rng.gen_range(0..TOPICS.len());
                let w = pick(&mut rng, TOPICS[t].1);
                Example { text_a: sentence(&mut rng, &[w]), text_b: None, label: Label::Class(t) }
            }
            "same-topic" => {
                let ta = rng.gen_range(0..TOPICS.len());
                let same = rng.gen_bool(0.5);
                let tb = if same { ta } else { (ta + rng.gen_range(1..TOPICS.len())) % TOPICS.len() };
                let (wa, wb) = (pick(&mut rng, TOPICS[ta].1), pick(&mut rng, TOPICS[tb].1));
                Example {
                    text_a: sentence(&mut rng, &[wa]),
                    text_b: Some(sentence(&mut rng, &[wb])),
                    label: Label::Class(same as usize),
                }
            }
            "agreement" => {
                let pa = rng.gen_bool(0.5);
                let agree = rng.gen_bool(0.5);
                let pb = if agree { pa } else { !pa };
                let wa = pick(&mut rng, if pa { POSITIVE } else { NEGATIVE });
                let wb = pick(&mut rng, if pb { POSITIVE } else { NEGATIVE });
                Example {
                    text_a: sentence(&mut rng, &[wa]),
                    text_b: Some(sentence(&mut rng, &[wb])),
                    label: Label::Class(agree as usize),
                }
            }
            "mood" => {
                let class = rng.gen_range(0..3usize);
                let keyword = match class {
                    0 => pick(&mut rng, NEGATIVE),
                    2 => pick(&mut rng, POSITIVE),
                    // Neutral sentences carry a topic word instead, so
                    // length alone does not give the class away.
                    _ => {
                        let t = rng.gen_range(0..TOPICS.len());
                        pick(&mut rng, TOPICS[t].1)
                    }
                };
                Example { text_a: sentence(&mut rng, &[keyword]), text_b: None, label: Label::Class(class) }
            }
            other => bail!("unknown synthetic task `{other}`; available: {}", synthetic_task_names().join(", ")),
        };
        out.push(ex);
    }
    Ok(out)
}

/// Stable string hash so each task gets its own stream from one seed.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
