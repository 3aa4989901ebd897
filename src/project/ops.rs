//! Project operations shared by the CLI commands: find the project, resolve
//! into a lock, honour `--locked`/`--offline`. The registries come from
//! [`crate::registry::open`], whichever backing they are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use registry_index::validate_name;
use semver::VersionReq;

use super::blobs::{ensure_locked_blobs, LocalBlob};
use super::lockfile::{Lockfile, LOCK_FILE};
use super::manifest::{parse_req, Manifest, MANIFEST_FILE};
use crate::registry::RegistrySource;
use crate::resolve::{self, ResolveRequest};

/// A project directory with its manifest and (if present) lock.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub lock: Option<Lockfile>,
}

/// An exclusive lock on a project directory, held from reading
/// `attempt.toml` to writing it and `attempt.lock` back, so two concurrent
/// commands (`add` in two terminals, a script) cannot lose each other's
/// edit. The lock is on the directory itself: nothing is written for it.
#[derive(Debug)]
pub struct ProjectLock {
    _dir: std::fs::File,
}

impl ProjectLock {
    /// Locks `dir`, waiting for another holder; `on_wait` is called (say,
    /// to tell the user) just before a wait starts.
    pub fn acquire(dir: &Path, on_wait: impl FnOnce(&Path)) -> Result<ProjectLock> {
        let file = std::fs::File::open(dir).with_context(|| format!("opening project directory {}", dir.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait(dir);
                file.lock().with_context(|| format!("locking project directory {}", dir.display()))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking project directory {}", dir.display()));
            }
        }
        Ok(ProjectLock { _dir: file })
    }
}

impl Workspace {
    /// Loads the project at `dir`, or, when `search_up`, at the nearest
    /// ancestor of `dir` holding an `attempt.toml` (as Cargo does).
    pub fn find(dir: &Path, search_up: bool) -> Result<Workspace> {
        Workspace::load(&Workspace::find_dir(dir, search_up)?)
    }

    /// Like [`Workspace::find`], for commands that rewrite the manifest or
    /// the lock: locks the project before reading it (`on_wait`: as in
    /// [`ProjectLock::acquire`]).
    pub fn find_for_edit(dir: &Path, search_up: bool, on_wait: impl FnOnce(&Path)) -> Result<(Workspace, ProjectLock)> {
        let dir = Workspace::find_dir(dir, search_up)?;
        let lock = ProjectLock::acquire(&dir, on_wait)?;
        Ok((Workspace::load(&dir)?, lock))
    }

    fn find_dir(dir: &Path, search_up: bool) -> Result<PathBuf> {
        let mut at = Some(dir);
        while let Some(d) = at {
            if d.join(MANIFEST_FILE).is_file() {
                return Ok(d.to_path_buf());
            }
            at = if search_up { d.parent() } else { None };
        }
        bail!(
            "no {MANIFEST_FILE} in {}{}; run `attempt-pkg init` to create a project",
            dir.display(),
            if search_up { " or any parent directory" } else { "" }
        )
    }

    pub fn load(dir: &Path) -> Result<Workspace> {
        let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
        let lock = Lockfile::load(&dir.join(LOCK_FILE))?;
        Ok(Workspace { dir: dir.to_path_buf(), manifest, lock })
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }
}

/// Which locked versions `lock` may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlock {
    /// Keep every locked version the requirements still allow (`lock`, `add`, `remove`).
    Nothing,
    /// `update`: re-resolve everything to the newest compatible versions.
    All,
    /// `update NAME...`: only these.
    Only(Vec<String>),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// Fail instead of changing `attempt.lock`.
    pub locked: bool,
    /// Never read a registry: the lock must already satisfy the manifest.
    pub offline: bool,
}

/// The outcome of bringing the lock in step with the manifest.
#[derive(Debug, Clone)]
pub struct LockOutcome {
    pub lock: Lockfile,
    /// `+ name ver`, `- name ver`, `~ name old -> new` lines.
    pub changes: Vec<String>,
    /// Whether `attempt.lock` was (re)written.
    pub written: bool,
}

/// Resolves `manifest` (keeping `previous`'s versions except those in
/// `unlock`) into a new lock, without writing anything.
pub fn resolve_lock(
    manifest: &Manifest,
    previous: Option<&Lockfile>,
    registries: &[Box<dyn RegistrySource>],
    unlock: &Unlock,
    flags: Flags,
) -> Result<Lockfile> {
    if flags.offline {
        let lock = previous.ok_or_else(|| {
            anyhow!("--offline: there is no {LOCK_FILE} to work from; run `attempt-pkg lock` once while the registry is reachable")
        })?;
        if let Err(why) = lock_satisfies(manifest, lock) {
            bail!("--offline: {LOCK_FILE} does not match {MANIFEST_FILE} ({why}); run without --offline to re-resolve");
        }
        if *unlock != Unlock::Nothing {
            bail!("--offline: updating needs the registry; run `attempt-pkg update` without --offline");
        }
        return Ok(lock.clone());
    }
    let mut locked = previous.map(Lockfile::preferences).unwrap_or_default();
    match unlock {
        Unlock::Nothing => {}
        Unlock::All => locked.clear(),
        Unlock::Only(names) => locked.retain(|n, _| !names.contains(n)),
    }
    let request = ResolveRequest {
        project: manifest.name.clone(),
        model: manifest.model.requirement(),
        sources: manifest.sources.clone(),
        locked,
    };
    let resolution = resolve::resolve(&request, registries)?;
    Ok(Lockfile::from_resolution(&resolution, manifest.model.fingerprint.as_ref()))
}

/// Writes `new` as the project's lock, unless `--locked` forbids a change.
pub fn apply_lock(ws: &Workspace, new: Lockfile, flags: Flags) -> Result<LockOutcome> {
    let empty = Lockfile { version: new.version, base_model: None, packages: Vec::new() };
    let changes = ws.lock.as_ref().unwrap_or(&empty).changes_to(&new);
    let same = ws.lock.as_ref().is_some_and(|old| old.to_text() == new.to_text());
    if flags.locked && !same {
        let what = if ws.lock.is_none() {
            format!("{LOCK_FILE} does not exist")
        } else if changes.is_empty() {
            format!("{LOCK_FILE} needs rewriting (formatting)")
        } else {
            format!("{LOCK_FILE} would change:\n  {}", changes.join("\n  "))
        };
        bail!("--locked: {what}\nrun the command without --locked (or --frozen) to update the lock");
    }
    let written = if same { false } else { new.save(&ws.lock_path())? };
    Ok(LockOutcome { lock: new, changes, written })
}

/// `lock`/`tree`/`fetch`: bring the lock in step with the manifest.
pub fn ensure_lock(ws: &Workspace, registries: &[Box<dyn RegistrySource>], flags: Flags) -> Result<LockOutcome> {
    let new = resolve_lock(&ws.manifest, ws.lock.as_ref(), registries, &Unlock::Nothing, flags)?;
    apply_lock(ws, new, flags)
}

/// Everything training needs before it opens an artifact: the lock brought in
/// step with the manifest (honouring `--locked`/`--offline`) and every locked
/// package on disk, verified against its checksum.
pub fn fetch_locked(
    ws: &Workspace,
    registries: &[Box<dyn RegistrySource>],
    cache: &crate::cache::Cache,
    flags: Flags,
) -> Result<(LockOutcome, Vec<LocalBlob>)> {
    let outcome = ensure_lock(ws, registries, flags)?;
    let blobs = ensure_locked_blobs(&outcome.lock, registries, cache, flags.offline)?;
    Ok((outcome, blobs))
}

/// Why `lock` does not (or no longer) fit `manifest`, if it does not.
pub fn lock_satisfies(manifest: &Manifest, lock: &Lockfile) -> Result<(), String> {
    let by_name: BTreeMap<&str, &super::LockedPackage> = lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    for (name, req) in &manifest.sources {
        match by_name.get(name.as_str()) {
            None => return Err(format!("{name} is not locked")),
            Some(p) if !req.matches(&p.version) => {
                return Err(format!("locked {name} {} does not match {req}", p.version))
            }
            Some(_) => {}
        }
    }
    if let Some(model) = manifest.model.requirement() {
        let Some(key) = lock.model_key() else { return Err("the lock names no base model".into()) };
        if !model.admits(&key) {
            return Err(format!("the lock is for base model {}", key));
        }
    }
    // Every locked package must be reachable from the sources, and every
    // dependency locked: otherwise the lock is stale.
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = manifest.sources.keys().map(String::as_str).collect();
    while let Some(n) = todo.pop() {
        if !seen.insert(n) {
            continue;
        }
        let p = by_name.get(n).ok_or_else(|| format!("dependency {n} is not locked"))?;
        todo.extend(p.dependencies.iter().map(String::as_str));
    }
    if let Some(extra) = by_name.keys().find(|n| !seen.contains(*n)) {
        return Err(format!("{extra} is locked but no longer required"));
    }
    Ok(())
}

/// One `NAME[@REQ]` argument of `add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    pub name: String,
    /// `None`: the newest compatible version, written as `^X.Y.Z`.
    pub req: Option<VersionReq>,
}

impl AddSpec {
    pub fn parse(arg: &str) -> Result<AddSpec> {
        let (name, req) = match arg.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (arg, None),
        };
        validate_name(name).with_context(|| format!("invalid package name in `{arg}`"))?;
        let req = req.map(parse_req).transpose().with_context(|| format!("invalid requirement in `{arg}`"))?;
        Ok(AddSpec { name: name.to_string(), req })
    }
}

/// `add`: adds or changes `[sources]` entries, resolves (keeping locked
/// versions that still fit), then writes `attempt.toml` and `attempt.lock`.
/// Nothing is written when resolution fails. Returns the requirements written.
pub fn add(
    ws: &Workspace,
    specs: &[AddSpec],
    registries: &[Box<dyn RegistrySource>],
    flags: Flags,
) -> Result<(Vec<(String, VersionReq)>, LockOutcome)> {
    edit_sources(ws, specs, &[], registries, flags)
}

/// `remove` of `removals` and `add` of `specs` in one resolution and one
/// write of `attempt.toml` and `attempt.lock` (what `suggest --apply` does).
/// Nothing is written when a name is not a source or resolution fails.
pub fn edit_sources(
    ws: &Workspace,
    specs: &[AddSpec],
    removals: &[String],
    registries: &[Box<dyn RegistrySource>],
    flags: Flags,
) -> Result<(Vec<(String, VersionReq)>, LockOutcome)> {
    let mut manifest = ws.manifest.clone();
    for name in removals {
        if !manifest.remove_source(name) {
            bail!("{name} is not in [sources] of {}", manifest.path.display());
        }
    }
    let model = manifest.model.requirement();
    let mut written = Vec::new();
    for spec in specs {
        let req = match &spec.req {
            Some(r) => r.clone(),
            None if flags.offline => match ws.lock.as_ref().and_then(|l| l.package(&spec.name)) {
                Some(p) => caret(&p.version)?,
                None => bail!("--offline: cannot look up the newest version of {} without the registry", spec.name),
            },
            None => match resolve::newest_compatible(&spec.name, model.as_ref(), registries)? {
                Some(v) => caret(&v)?,
                // Let the resolver explain why nothing fits.
                None => VersionReq::STAR,
            },
        };
        manifest.set_source(&spec.name, &req);
        written.push((spec.name.clone(), req));
    }
    let new = resolve_lock(&manifest, ws.lock.as_ref(), registries, &Unlock::Nothing, flags)?;
    let outcome = commit(ws, &manifest, new, flags)?;
    Ok((written, outcome))
}

/// `remove`: drops `[sources]` entries and re-locks.
pub fn remove(
    ws: &Workspace,
    names: &[String],
    registries: &[Box<dyn RegistrySource>],
    flags: Flags,
) -> Result<LockOutcome> {
    let mut manifest = ws.manifest.clone();
    for name in names {
        if !manifest.remove_source(name) {
            bail!("{name} is not in [sources] of {}", manifest.path.display());
        }
    }
    let new = if flags.offline {
        // The remaining packages are a sub-graph of the lock: prune it.
        let lock = ws.lock.as_ref().ok_or_else(|| anyhow!("--offline: there is no {LOCK_FILE} to work from"))?;
        prune(lock, &manifest)
    } else {
        resolve_lock(&manifest, ws.lock.as_ref(), registries, &Unlock::Nothing, flags)?
    };
    commit(ws, &manifest, new, flags)
}

/// `update [NAME...]`: re-resolve with those (or all) versions unlocked.
pub fn update(
    ws: &Workspace,
    names: &[String],
    registries: &[Box<dyn RegistrySource>],
    flags: Flags,
) -> Result<LockOutcome> {
    let unlock = if names.is_empty() {
        Unlock::All
    } else {
        for n in names {
            if ws.lock.as_ref().and_then(|l| l.package(n)).is_none() {
                bail!("{n} is not in {LOCK_FILE}; `update NAME` moves a locked package (add it with `attempt-pkg add {n}`)");
            }
        }
        Unlock::Only(names.to_vec())
    };
    let new = resolve_lock(&ws.manifest, ws.lock.as_ref(), registries, &unlock, flags)?;
    apply_lock(ws, new, flags)
}

/// Writes the manifest and the lock (in that order) once both are known good.
fn commit(ws: &Workspace, manifest: &Manifest, new: Lockfile, flags: Flags) -> Result<LockOutcome> {
    // --locked is checked before the manifest is touched; apply_lock fails
    // with the list of changes.
    if flags.locked {
        let same = ws.lock.as_ref().is_some_and(|old| old.to_text() == new.to_text());
        if !same {
            return apply_lock(ws, new, flags);
        }
    }
    manifest.save()?;
    let ws_after = Workspace { dir: ws.dir.clone(), manifest: manifest.clone(), lock: ws.lock.clone() };
    apply_lock(&ws_after, new, flags)
}

fn prune(lock: &Lockfile, manifest: &Manifest) -> Lockfile {
    let by_name: BTreeMap<&str, &super::LockedPackage> = lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut keep = BTreeSet::new();
    let mut todo: Vec<&str> = manifest.sources.keys().map(String::as_str).collect();
    while let Some(n) = todo.pop() {
        if let Some(p) = by_name.get(n) {
            if keep.insert(n) {
                todo.extend(p.dependencies.iter().map(String::as_str));
            }
        }
    }
    let mut out = lock.clone();
    out.packages.retain(|p| keep.contains(p.name.as_str()));
    out
}

fn caret(v: &semver::Version) -> Result<VersionReq> {
    Ok(VersionReq::parse(&format!("^{v}"))?)
}
