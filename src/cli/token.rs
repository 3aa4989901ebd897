use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::Context;
use crate::registry::LocalRegistry;
use crate::server::tokens::{self, NewToken, Scope};

/// API tokens of a served registry (run on the server, against its directory).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token; the secret is printed alone on the last line (shown only once).
    #[command(after_help = "Examples:\n  attempt-pkg token create --name ci --root /srv/prompts\n  \
attempt-pkg token create --name alice-yank --owner alice --scope yank --package mnli-prompt --root /srv/prompts")]
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(RootArg),
    /// Revoke the live token with this name.
    Revoke(RevokeArgs),
}

/// Where a served registry lives: its directory and, when several server
/// processes share it, its PostgreSQL database.
#[derive(Debug, clap::Args)]
pub struct RootArg {
    /// The served registry directory (index files and blobs).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The registry's database, if not SQLite in DIR: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    #[arg(long, value_name = "URL", env = "ATTEMPT_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
}

impl RootArg {
    /// Opens the registry; with `existing`, refuses to create one.
    pub async fn open(&self, existing: bool) -> Result<LocalRegistry> {
        match &self.database {
            None if existing => LocalRegistry::open_existing(&self.root).await,
            None => LocalRegistry::open(&self.root).await,
            Some(url) => {
                if existing && !self.root.join("index").is_dir() {
                    bail!("no registry directory at {} (no index/); start `attempt-pkg serve --root DIR --database URL` once to create it", self.root.display());
                }
                LocalRegistry::open_with_database(&self.root, Some(url)).await
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A label for the token (unique among live tokens).
    #[arg(long)]
    pub name: String,
    /// The user the token acts for; package owners are users (default: the token name).
    #[arg(long)]
    pub owner: Option<String>,
    /// What the token may do (repeatable; default: publish and yank).
    #[arg(long = "scope", value_enum)]
    pub scopes: Vec<Scope>,
    /// Limit the token to these packages (repeatable; default: every package).
    #[arg(long = "package", value_name = "NAME")]
    pub packages: Vec<String>,
    #[command(flatten)]
    pub root: RootArg,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token's name (see `token list`).
    pub name: String,
    #[command(flatten)]
    pub root: RootArg,
}

pub fn run(command: Command, ctx: &Context) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        match command {
            Command::Create(args) => {
                let registry = args.root.open(false).await?;
                let scopes = if args.scopes.is_empty() { vec![Scope::Publish, Scope::Yank] } else { args.scopes };
                let new = NewToken {
                    owner: args.owner.unwrap_or_else(|| args.name.clone()),
                    name: args.name,
                    scopes,
                    packages: if args.packages.is_empty() { None } else { Some(args.packages) },
                };
                let secret = tokens::create(registry.pool(), &new).await?;
                if ctx.global.json {
                    println!("{}", serde_json::json!({ "name": new.name, "owner": new.owner, "token": secret }));
                } else {
                    eprintln!(
                        "Created token `{}` for `{}` (shown once; store it with `attempt-pkg login`):",
                        new.name, new.owner
                    );
                    println!("{secret}");
                }
                Ok(())
            }
            Command::List(args) => {
                let registry = args.open(true).await?;
                let list = tokens::list(registry.pool()).await?;
                if ctx.global.json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(());
                }
                for t in list {
                    let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                    let packages = t.packages.map_or_else(|| "*".to_string(), |p| p.join(","));
                    let state = if t.revoked_at.is_some() { "revoked" } else { "live" };
                    println!(
                        "{}\towner={}\tscopes={}\tpackages={packages}\t{state}",
                        t.name,
                        t.owner,
                        scopes.join(",")
                    );
                }
                Ok(())
            }
            Command::Revoke(args) => {
                let registry = args.root.open(true).await?;
                if !tokens::revoke(registry.pool(), &args.name).await? {
                    bail!(
                        "no live token named `{}` in {}; see `attempt-pkg token list`",
                        args.name,
                        args.root.root.display()
                    );
                }
                println!("Revoked token `{}`", args.name);
                Ok(())
            }
        }
    })
}
