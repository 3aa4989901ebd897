use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

use super::Context;
use crate::server::{serve, ServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  attempt-pkg serve --root /srv/prompts --addr 127.0.0.1:8080\n  \
attempt-pkg serve --root /srv/prompts --addr 0.0.0.0:8080 --auth-required --public-url https://prompts.example.org\n\n\
Clients use it as `--registry http://HOST:PORT/index/` (or a name in $ATTEMPT_HOME/config.toml). \
Publishing needs a token: `attempt-pkg token create --name NAME --root DIR`. \
Several processes on one PostgreSQL database: `--database postgres://…` on each (and on `token`). \
The web pages (/, /prompts/NAME, /models/FINGERPRINT) are kept for 5 s once rendered; a write through this \
server shows at once, one made elsewhere (another process, a local publish into DIR) within 5 s. \
See docs/server.md and docs/pages.md.")]
pub struct Args {
    /// The registry directory to serve (created if missing).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Keep the registry's state in this PostgreSQL database instead of SQLite in DIR, so several
    /// server processes (sharing DIR on one volume) serve one registry: `postgres://USER@HOST/DB`.
    #[arg(long, value_name = "URL", env = "ATTEMPT_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: SocketAddr,
    /// Require a token for reads too (index, blobs, search, info).
    #[arg(long)]
    pub auth_required: bool,
    /// The URL clients reach this server at, if not the one they asked for (e.g. behind a proxy).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Largest artifact accepted by publish, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub max_upload_bytes: usize,
    /// Authenticated API requests allowed per token and minute, on average.
    #[arg(long, default_value_t = 120, value_name = "N")]
    pub rate_limit: u32,
    /// Requests a token may make in a burst before the rate limit applies.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub rate_burst: u32,
    /// Threads serving connections (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How often download counts (shown on the web pages) are written to the database, in
    /// milliseconds; a killed server loses at most this interval's counts. 0 turns counting off.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub download_flush_ms: u64,
}

pub fn run(args: Args, _ctx: &Context) -> Result<()> {
    let config = ServerConfig {
        root: args.root,
        database_url: args.database,
        addr: args.addr,
        auth_required: args.auth_required,
        public_url: args.public_url,
        max_upload_bytes: args.max_upload_bytes,
        rate_per_minute: args.rate_limit,
        rate_burst: args.rate_burst,
        workers: args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        download_flush: std::time::Duration::from_millis(args.download_flush_ms),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATTEMPT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    serve(config)
}
