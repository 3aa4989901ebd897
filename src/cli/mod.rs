//! The command-line interface: argument parsing and dispatch only. Each
//! command lives in its own module with its `Args` and `run`; the work itself
//! is done by the library modules.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::home::Home;

mod add;
mod cache;
mod eval;
mod export;
mod fetch;
mod import;
mod info;
mod init;
mod list;
mod lock;
mod login;
mod model;
mod package;
mod predict;
mod publish;
mod quickstart;
mod remove;
mod search;
mod serve;
mod suggest;
mod token;
mod train;
mod train_source;
mod tree;
mod update;
mod verify;
mod yank;

#[derive(Debug, Parser)]
#[command(
    name = "attempt-pkg",
    version,
    about = "Soft prompts as packages: publish, resolve, lock and compose ATTEMPT prompt mixtures",
    long_about = "attempt-pkg turns soft prompts into versioned, content-hashed packages bound to \
the frozen base model they were trained for, resolves them like Cargo resolves crates, and \
composes them into ATTEMPT training runs.",
    after_help = "Examples:\n  attempt-pkg init\n  attempt-pkg publish ./mnli-prompt\n  attempt-pkg add mnli-prompt@1.2 sst2-prompt\n  attempt-pkg tree\n  attempt-pkg search sentiment"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Registry to use: a directory, an index URL (http://HOST/index/) or a name from
    /// $ATTEMPT_HOME/config.toml (default: config.toml's default, else `$ATTEMPT_HOME/registry`).
    #[arg(long, global = true, env = "ATTEMPT_REGISTRY", value_name = "DIR|URL|NAME")]
    pub registry: Option<String>,
    /// Fail if `attempt.lock` would have to change.
    #[arg(long, global = true)]
    pub locked: bool,
    /// Use only what is already in the cache; never contact a registry.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Both `--locked` and `--offline`.
    #[arg(long, global = true)]
    pub frozen: bool,
    /// Machine-readable JSON output where the command supports it.
    #[arg(long, global = true)]
    pub json: bool,
    /// Project directory (default: the current directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
}

impl GlobalArgs {
    pub fn locked(&self) -> bool {
        self.locked || self.frozen
    }
    pub fn offline(&self) -> bool {
        self.offline || self.frozen
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create `attempt.toml` in the project directory.
    Init(init::Args),
    /// Validate an authoring directory, build its artifact and publish it.
    Publish(publish::Args),
    /// Mark a published version as yanked (or undo it with --undo).
    Yank(yank::Args),
    /// Add prompt packages to the project and update the lock.
    Add(add::Args),
    /// Remove prompt packages from the project and update the lock.
    Remove(remove::Args),
    /// Re-resolve locked packages to the newest compatible versions.
    Update(update::Args),
    /// Resolve the project's sources and write `attempt.lock`.
    Lock(lock::Args),
    /// Show the resolved dependency tree.
    Tree(tree::Args),
    /// Full-text search over package names, tasks and descriptions.
    Search(search::Args),
    /// Show a package's versions and metadata.
    Info(info::Args),
    /// List the packages in the registry.
    List(list::Args),
    /// Download every package the lock names into the cache.
    Fetch(fetch::Args),
    /// Re-hash cached blobs against the lock.
    Verify(verify::Args),
    /// Manage the download cache.
    #[command(subcommand)]
    Cache(cache::Command),
    /// Frozen base models: fetch, import, fingerprint, encode.
    #[command(subcommand)]
    Model(model::Command),
    /// Import a prompt from a PyTorch file, a PEFT adapter or safetensors.
    Import(import::Args),
    /// Export a package as a PEFT adapter, safetensors or PyTorch file.
    Export(export::Args),
    /// Serve a registry directory over HTTP.
    Serve(serve::Args),
    /// Manage the API tokens of a served registry.
    #[command(subcommand)]
    Token(token::Command),
    /// Store a token for a remote registry in $ATTEMPT_HOME/credentials.toml.
    Login(login::Args),
    /// Train ATTEMPT (or pt/spot/uniform) on the project's locked prompts.
    Train(train::Args),
    /// Prompt-tune one source prompt into a publishable directory.
    TrainSource(train_source::Args),
    /// Evaluate a training run on dev data.
    Eval(eval::Args),
    /// Predict one input with a training run; shows the attention over sources.
    Predict(predict::Args),
    /// Turn a run's trained target prompt into a publishable package.
    Package(package::Args),
    /// Rank registry prompts for the project's target task; propose add/remove.
    Suggest(suggest::Args),
    /// The whole flow on synthetic tasks: model, registry, sources, project, ATTEMPT vs PT.
    Quickstart(quickstart::Args),
}

/// What every command gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: Home,
    pub global: GlobalArgs,
}

impl Context {
    /// The project directory: `--project` or the current directory.
    pub fn project_dir(&self) -> Result<PathBuf> {
        match &self.global.project {
            Some(p) => Ok(p.clone()),
            None => Ok(std::env::current_dir()?),
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let ctx = Context { home: Home::from_env()?, global: cli.global };
    match cli.command {
        Command::Init(a) => init::run(a, &ctx),
        Command::Publish(a) => publish::run(a, &ctx),
        Command::Yank(a) => yank::run(a, &ctx),
        Command::Add(a) => add::run(a, &ctx),
        Command::Remove(a) => remove::run(a, &ctx),
        Command::Update(a) => update::run(a, &ctx),
        Command::Lock(a) => lock::run(a, &ctx),
        Command::Tree(a) => tree::run(a, &ctx),
        Command::Search(a) => search::run(a, &ctx),
        Command::Info(a) => info::run(a, &ctx),
        Command::List(a) => list::run(a, &ctx),
        Command::Fetch(a) => fetch::run(a, &ctx),
        Command::Verify(a) => verify::run(a, &ctx),
        Command::Cache(c) => cache::run(c, &ctx),
        Command::Model(c) => model::run(c, &ctx),
        Command::Import(a) => import::run(a, &ctx),
        Command::Export(a) => export::run(a, &ctx),
        Command::Serve(a) => serve::run(a, &ctx),
        Command::Token(c) => token::run(c, &ctx),
        Command::Login(a) => login::run(a, &ctx),
        Command::Train(a) => train::run(a, &ctx),
        Command::TrainSource(a) => train_source::run(a, &ctx),
        Command::Eval(a) => eval::run(a, &ctx),
        Command::Predict(a) => predict::run(a, &ctx),
        Command::Package(a) => package::run(a, &ctx),
        Command::Suggest(a) => suggest::run(a, &ctx),
        Command::Quickstart(a) => quickstart::run(a, &ctx),
    }
}
