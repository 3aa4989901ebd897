//! Few-shot sampling (k examples per class, seeded) and seeded hold-out splits.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{Example, Label};

/// k examples per class, chosen with `seed`, in a shuffled order. Regression
/// examples (no classes) are sampled as a single pool of k. Classes with
/// fewer than k examples contribute all they have.
pub fn few_shot(examples: &[Example], k: usize, seed: u64) -> Vec<Example> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: std::collections::BTreeMap<Option<usize>, Vec<usize>> = Default::default();
    for (i, e) in examples.iter().enumerate() {
        let key = match e.label {
            Label::Class(c) => Some(c),
            Label::Score(_) => None,
        };
        by_class.entry(key).or_default().push(i);
    }
    let mut chosen = Vec::new();
    for idx in by_class.values_mut() {
        idx.shuffle(&mut rng);
        chosen.extend(idx.iter().take(k).copied());
    }
    chosen.shuffle(&mut rng);
    chosen.into_iter().map(|i| examples[i].clone()).collect()
}

/// Shuffle with `seed` and split off `n` examples: (rest, held_out).
pub fn split_off(examples: &[Example], n: usize, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    let n = n.min(idx.len());
    let held: Vec<Example> = idx[..n].iter().map(|&i| examples[i].clone()).collect();
    let rest: Vec<Example> = idx[n..].iter().map(|&i| examples[i].clone()).collect();
    (rest, held)
}
