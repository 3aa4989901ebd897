//! Choosing source prompts for a target task before training (`suggest`,
//! `train --select`): which candidates are predicted to transfer, measured
//! without training, and when none is.
//!
//! - [`logme`]: LogME and H-score of fixed features for labelled targets.
//! - [`features`]: forward-only features of target examples under a prompt.
//! - [`rank`]: candidates ranked against norm-matched random prompts, with a
//!   half-sample standard error and the keep/remove proposal.
//! - [`signature`]: a task's mean embedding, recorded in packages and
//!   compared by cosine (ranking signal and index-only pre-filter).
//!
//! Like `train`, this layer knows nothing of packages or registries; the
//! workflow layer hands it prompt tensors.

pub mod features;
pub mod logme;
pub mod rank;
pub mod signature;

pub use features::FeatureCache;
pub use rank::{rank, Candidate, CandidateScore, ControlScore, SelectConfig, Selection, SIGNAL_VERSION};
