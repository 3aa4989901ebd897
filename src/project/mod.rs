//! The project: `attempt.toml` (what the user asks for), `attempt.lock`
//! (what was resolved), the operations that keep them in step
//! (`ops`: lock, add, remove, update), which the CLI commands call, and the
//! lock's blobs in the download cache (`blobs`: fetch, verify).

mod blobs;
mod lockfile;
mod manifest;
pub mod ops;

pub use blobs::{ensure_locked_blobs, verify, LocalBlob, Problem, VerifyReport};
pub use lockfile::{LockedModel, LockedPackage, Lockfile, LOCK_FILE, LOCK_VERSION};
pub use manifest::{initial_text, parse_req, Manifest, ModelSection, MANIFEST_FILE};
