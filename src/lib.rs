//! attempt-pkg: soft prompts as packages.
//!
//! The modules follow the data flow:
//! package format (`package`) → index/registry (`registry`, and the
//! `registry-index` crate) → resolver and lockfile (`resolve`, `project`) →
//! fetch/cache (`cache`) → frozen backbones (`model`) → compose → train/eval,
//! and source selection (`select`) beside training.
//! `cli` is a thin layer over all of them; the library is usable without it.

pub mod cache;
pub mod cli;
pub mod compose;
pub mod data;
pub mod fsutil;
pub mod home;
pub mod interop;
pub mod model;
pub mod package;
pub mod project;
pub mod registry;
pub mod resolve;
pub mod select;
pub mod server;
pub mod train;
pub mod workflow;
