//! The project: `attempt.toml` (what the user asks for), `attempt.lock`
//! (what was resolved), and the operations that keep them in step
//! (`ops`: lock, add, remove, update), which the CLI commands call.

mod lockfile;
mod manifest;
pub mod ops;

pub use lockfile::{LockedModel, LockedPackage, Lockfile, LOCK_FILE, LOCK_VERSION};
pub use manifest::{initial_text, parse_req, Manifest, ModelSection, MANIFEST_FILE};
