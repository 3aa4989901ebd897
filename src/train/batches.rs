//! Which training examples go into which batch, epoch by epoch.
//!
//! By default every epoch is one shuffle of all examples of all tasks, cut
//! into batches in that order. With `group-by-length` (as the Hugging Face
//! trainer's `group_by_length`), the shuffled order is cut into *megabatches*
//! of 50 batches, each megabatch is sorted by token length and cut into
//! batches, and the batches are shuffled again: a batch then holds inputs of
//! similar length, so less of it is padding, while which examples meet in an
//! epoch stays random. Every example is still seen exactly once per epoch.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Batches per megabatch when grouping by length (the Hugging Face trainer's choice).
const MEGABATCH_BATCHES: usize = 50;

/// An example: (task index, example index within the task's training set).
pub type ExampleRef = (usize, usize);

/// The batches of `epoch`. `sizes[t]` is the number of training examples of
/// task `t`; `lengths[t][i]`, when given, the token length of example `i`
/// of task `t`, and the batches are grouped by it.
pub fn epoch_batches(
    sizes: &[usize],
    lengths: Option<&[Vec<usize>]>,
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<ExampleRef>> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<ExampleRef> = sizes.iter().enumerate().flat_map(|(t, &n)| (0..n).map(move |i| (t, i))).collect();
    // One stream per epoch, so a resumed run sees the same order.
    let mut rng = StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)));
    order.shuffle(&mut rng);
    let Some(lengths) = lengths else {
        return order.chunks(batch_size).map(<[ExampleRef]>::to_vec).collect();
    };
    let length = |&(t, i): &ExampleRef| lengths.get(t).and_then(|l| l.get(i)).copied().unwrap_or(0);
    let mut batches = Vec::with_capacity(order.len().div_ceil(batch_size));
    for megabatch in order.chunks_mut(batch_size * MEGABATCH_BATCHES) {
        // Stable: equal lengths keep their shuffled order.
        megabatch.sort_by_key(|e| std::cmp::Reverse(length(e)));
        batches.extend(megabatch.chunks(batch_size).map(<[ExampleRef]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded_tokens(batches: &[Vec<ExampleRef>], lengths: &[Vec<usize>]) -> usize {
        batches.iter().map(|b| b.len() * b.iter().map(|&(t, i)| lengths[t][i]).max().unwrap_or(0)).sum()
    }

    fn lengths(sizes: &[usize]) -> Vec<Vec<usize>> {
        // Spread like real inputs: 5..=128 tokens, in no order.
        sizes.iter().enumerate().map(|(t, &n)| (0..n).map(|i| 5 + (i * 37 + t * 11) % 124).collect()).collect()
    }

    #[test]
    fn without_grouping_the_batches_are_the_shuffled_order_cut_in_pieces() {
        let batches = epoch_batches(&[10, 7], None, 4, 42, 0);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 4, 4, 1]);
        let mut all: Vec<ExampleRef> = batches.concat();
        all.sort();
        let expected: Vec<ExampleRef> = (0..10).map(|i| (0, i)).chain((0..7).map(|i| (1, i))).collect();
        assert_eq!(all, expected);
        assert_eq!(epoch_batches(&[10, 7], None, 4, 42, 0), batches, "the same seed and epoch, the same batches");
        assert_ne!(epoch_batches(&[10, 7], None, 4, 42, 1), batches, "another epoch, another order");
    }

    #[test]
    fn grouping_sees_every_example_once_with_less_padding() {
        let sizes = [3000, 1234];
        let lengths = lengths(&sizes);
        for epoch in 0..3 {
            let grouped = epoch_batches(&sizes, Some(&lengths), 16, 7, epoch);
            let plain = epoch_batches(&sizes, None, 16, 7, epoch);
            let mut seen = grouped.concat();
            seen.sort();
            let mut expected = plain.concat();
            expected.sort();
            assert_eq!(seen, expected, "epoch {epoch}: every example exactly once");
            assert!(grouped.iter().all(|b| !b.is_empty() && b.len() <= 16));
            let (g, p) = (padded_tokens(&grouped, &lengths), padded_tokens(&plain, &lengths));
            assert!(g * 10 < p * 7, "epoch {epoch}: grouped batches pad to {g} tokens, plain ones to {p}");
            assert_eq!(epoch_batches(&sizes, Some(&lengths), 16, 7, epoch), grouped, "deterministic");
        }
        // The long batches are not all at the start (they are shuffled).
        let grouped = epoch_batches(&sizes, Some(&lengths), 16, 7, 0);
        let longest = |b: &Vec<ExampleRef>| b.iter().map(|&(t, i)| lengths[t][i]).max().unwrap_or(0);
        let first: Vec<usize> = grouped.iter().take(10).map(longest).collect();
        assert!(first.iter().any(|&l| l < 100), "{first:?}");
    }
}
