//! Registries: where packages are published and found, on a directory or on
//! a server, behind one handle.
//!
//! ```text
//! --registry DIR|URL|NAME ──target::resolve_target──> RegistryTarget (config.toml, mirrors)
//!                         ──open──> Registry ─┬─ Local:  LocalDir → BlockingRegistry → LocalRegistry (SQLite/PostgreSQL + index + blobs)
//!                                             └─ Remote: remote::HttpRegistry → `attempt-pkg serve` (src/server) → LocalRegistry
//! ```
//!
//! Reading is the [`RegistrySource`] trait (what the resolver and the
//! fetcher need); [`Registry`] adds publish, yank, info, list, search. Both
//! backings answer in the types of [`api`], which are also the server's JSON.

pub mod api;
mod blocking;
pub mod browse;
mod handle;
mod local;
pub mod remote;
mod source;
mod target;

pub use api::{PackageInfo, PackageSummary, Published, VersionInfo, YankEvent, YankOutcome};
pub use blocking::BlockingRegistry;
pub use browse::Filters;
pub use handle::{open, LocalDir, Registry};
pub use local::{Backend, LocalRegistry, WriteLock};
pub use source::{concurrently, download_many, DirSource, DownloadJob, RegistrySource};
pub use target::{resolve_target, DirTarget, RegistryTarget, RemoteTarget};
