//! The remote backing: a registry served over HTTP (`attempt-pkg serve`),
//! reached through its sparse index, its blob URLs and its JSON API, plus the
//! client-side files that name and authenticate such registries
//! (`$ATTEMPT_HOME/config.toml`, `credentials.toml`).

pub mod config;
pub mod credentials;
mod http;

pub use config::{normalize_index_url, Config, Location};
pub use credentials::Credentials;
pub use http::{HttpRegistry, RemoteOptions};
