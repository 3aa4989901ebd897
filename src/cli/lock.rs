use anyhow::Result;

use super::Context;
use crate::project::ops::{self, Flags, LockOutcome, ProjectLock, Workspace};
use crate::registry::{Registry, RegistrySource};

#[derive(Debug, clap::Args)]
#[command(after_help = "Resolves the [sources] of attempt.toml against the registry and writes \
attempt.lock. Versions already in the lock are kept whenever the requirements still allow them \
(use `update` to move them); the file is rewritten only when its content changes.\n\n\
Examples:\n  attempt-pkg lock\n  attempt-pkg lock --locked     # CI: fail if attempt.lock is out of date\n  \
attempt-pkg lock --offline    # check the lock against attempt.toml without a registry")]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<()> {
    let (ws, _lock) = ctx.workspace_for_edit()?;
    let registries = ctx.registries()?;
    let outcome = ops::ensure_lock(&ws, &registries, ctx.flags())?;
    report_lock(&outcome);
    Ok(())
}

/// Prints what happened to the lock, Cargo style, on stderr.
pub(super) fn report_lock(outcome: &LockOutcome) {
    for change in &outcome.changes {
        eprintln!("  {change}");
    }
    if outcome.written {
        eprintln!("Locked {} package(s) in attempt.lock", outcome.lock.packages.len());
    } else {
        eprintln!("attempt.lock is up to date ({} package(s))", outcome.lock.packages.len());
    }
}

// Project plumbing shared by the project commands (add, remove, update,
// lock, tree, fetch, verify).
impl Context {
    /// `--project DIR`, or the nearest directory upwards with an attempt.toml.
    pub(super) fn workspace(&self) -> Result<Workspace> {
        match &self.global.project {
            Some(dir) => Workspace::find(dir, false),
            None => Workspace::find(&std::env::current_dir()?, true),
        }
    }

    /// The workspace, locked against concurrent edits until the guard drops
    /// (for add, remove, update, lock).
    pub(super) fn workspace_for_edit(&self) -> Result<(Workspace, ProjectLock)> {
        let on_wait = |dir: &std::path::Path| {
            eprintln!("Blocking: waiting for another attempt-pkg command to finish with {}", dir.display());
        };
        match &self.global.project {
            Some(dir) => Workspace::find_for_edit(dir, false, on_wait),
            None => Workspace::find_for_edit(&std::env::current_dir()?, true, on_wait),
        }
    }

    /// The registries the resolver reads, or none with --offline/--frozen.
    /// A broken config.toml (or --registry) is an error either way: nothing
    /// is contacted offline, but the configuration is still checked.
    pub(super) fn registries(&self) -> Result<Vec<Box<dyn RegistrySource>>> {
        if self.global.offline() {
            crate::registry::resolve_target(self.global.registry.as_deref(), &self.home)?;
            return Ok(Vec::new());
        }
        Ok(vec![Box::new(self.registry(None)?)])
    }

    /// The registry `--registry` names, on either backing; `token`
    /// (`--token`) for a remote registry's writes.
    pub(super) fn registry(&self, token: Option<&str>) -> Result<Registry> {
        crate::registry::open(self.global.registry.as_deref(), &self.home, self.global.offline(), token)
    }

    pub(super) fn flags(&self) -> Flags {
        Flags { locked: self.global.locked(), offline: self.global.offline() }
    }
}
