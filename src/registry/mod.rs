//! Registries: where packages are published and found.
//!
//! Reading is the [`RegistrySource`] trait (what the resolver and the fetcher
//! need); writing (publish, yank) is the local registry's job.

mod source;

pub use source::{DirSource, RegistrySource};
