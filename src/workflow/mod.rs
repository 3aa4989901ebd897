//! The library side of the training commands: reading `[train]`/`[tasks]`
//! from `attempt.toml`, loading the frozen backbone with its fingerprint,
//! turning a verified lock into source prompts (refusing fingerprint or shape
//! mismatches), and the quickstart. The CLI modules only parse flags and print.

pub mod backbone;
pub mod project;
pub mod quickstart;
pub mod settings;
pub mod source;
pub mod sources;
pub mod suggest;

pub use backbone::Backbone;
pub use settings::{TaskSelection, TrainSection};
pub use sources::{verified_sources, VerifiedSources};
