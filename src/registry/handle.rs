//! [`Registry`]: one handle over both backings, so a command is written once
//! and works the same on a directory and on a server (as Cargo keeps local
//! and remote sources behind one trait).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Result};
use registry_index::{Checksum, IndexEntry};
use semver::Version;

use super::api::{PackageInfo, PackageSummary, PublishResponse, YankOutcome};
use super::remote::{HttpRegistry, RemoteOptions};
use super::target::{resolve_target, DirTarget, RegistryTarget};
use super::{BlockingRegistry, DirSource, RegistrySource};
use crate::cache::Cache;
use crate::home::Home;
use crate::package::Artifact;

/// A registry named by `--registry`, opened for whatever the command does.
pub enum Registry {
    Local(LocalDir),
    Remote(HttpRegistry),
}

/// Opens the registry `arg` names (a directory, a `file://` URL, an index
/// URL, or a name from config.toml; `None`: the default). Nothing is read or
/// created yet: a directory is opened (and its database created, for a
/// publish) by the first operation that needs it, so `publish` may create a
/// registry and every read still fails clearly where there is none.
/// `token` (`--token`) is only used by a remote registry's writes.
pub fn open(arg: Option<&str>, home: &Home, offline: bool, token: Option<&str>) -> Result<Registry> {
    Ok(match resolve_target(arg, home)? {
        RegistryTarget::Dir(target) => Registry::Local(LocalDir { target, db: OnceLock::new() }),
        RegistryTarget::Remote(target) => Registry::Remote(HttpRegistry::new(RemoteOptions {
            display: target.display(),
            token: target.token(token, home)?,
            index_url: target.index_url,
            source_id: target.source_id,
            offline,
            cache: Cache::from_home(home),
        })?),
    })
}

/// A registry directory: plain files for what the resolver reads, the
/// database (opened once, on first use) for the rest.
pub struct LocalDir {
    target: DirTarget,
    db: OnceLock<BlockingRegistry>,
}

impl LocalDir {
    pub fn root(&self) -> &Path {
        &self.target.root
    }

    fn files(&self) -> Result<DirSource> {
        if !self.root().join("index").is_dir() {
            bail!(
                "{} is not a registry (it has no index/ directory); publish a package into it first \
                 (`attempt-pkg publish`) or pass --registry DIR|URL|NAME",
                self.root().display()
            );
        }
        Ok(DirSource::new(self.root().to_path_buf()))
    }

    /// The database; `create` makes a registry where there is none (publish).
    fn db(&self, create: bool) -> Result<&BlockingRegistry> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let opened =
            if create { BlockingRegistry::open(self.root())? } else { BlockingRegistry::open_existing(self.root())? };
        Ok(self.db.get_or_init(|| opened))
    }
}

impl Registry {
    /// For messages: the directory, or the configured name / index URL.
    pub fn display(&self) -> String {
        match self {
            Registry::Local(dir) => dir.root().display().to_string(),
            Registry::Remote(http) => http.display().to_string(),
        }
    }

    /// Publishes a built artifact. Published versions are immutable on both
    /// backings: the server runs the same [`super::LocalRegistry::publish`].
    /// A server may send warnings with it (a directory never does); the
    /// caller shows them.
    pub fn publish(&self, artifact: &Artifact) -> Result<PublishResponse> {
        match self {
            Registry::Local(dir) => {
                Ok(PublishResponse { published: dir.db(true)?.publish(artifact)?, warnings: Vec::new() })
            }
            Registry::Remote(http) => http.publish(artifact.bytes()),
        }
    }

    /// Yanks (`yanked = true`) or unyanks a published version; `reason`
    /// (yanks only) is kept in the yank history and shown on the web pages.
    pub fn set_yanked(&self, name: &str, version: &Version, yanked: bool, reason: Option<&str>) -> Result<YankOutcome> {
        match self {
            Registry::Local(dir) => dir.db(false)?.set_yanked(name, version, yanked, reason),
            Registry::Remote(http) => http.set_yanked(name, version, yanked, reason),
        }
    }

    /// All versions and the yank history of `name`; `None` if it does not exist.
    pub fn info(&self, name: &str) -> Result<Option<PackageInfo>> {
        match self {
            Registry::Local(dir) => dir.db(false)?.info(name),
            Registry::Remote(http) => http.info(name),
        }
    }

    /// A package whose canonical name equals `name`'s, if any (for "did you mean").
    pub fn similar_name(&self, name: &str) -> Result<Option<String>> {
        match self {
            Registry::Local(dir) => dir.db(false)?.similar_name(name),
            Registry::Remote(http) => http.similar_name(name),
        }
    }

    /// Every package, by name.
    pub fn list(&self) -> Result<Vec<PackageSummary>> {
        match self {
            Registry::Local(dir) => dir.db(false)?.list(),
            Registry::Remote(http) => http.list(),
        }
    }

    /// Full-text search, best match first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<PackageSummary>> {
        match self {
            Registry::Local(dir) => dir.db(false)?.search(query, limit),
            Registry::Remote(http) => http.search(query, limit),
        }
    }

    /// Files holding the blobs `cksums`, for reading in place, one result
    /// per checksum: the registry's own files for a directory; for a server,
    /// the shared download cache (the missing ones downloaded concurrently
    /// and checksum-verified first, [`Cache::fetch_many`]). The caller still
    /// verifies what it reads.
    pub fn blob_files(&self, cksums: &[Checksum], cache: &Cache) -> Vec<Result<PathBuf>> {
        match self {
            Registry::Local(dir) => cksums.iter().map(|c| Ok(dir.db(false)?.inner().blob_file(c))).collect(),
            Registry::Remote(http) => cache.fetch_many(http, cksums),
        }
    }
}

/// What the resolver and the fetcher read, on either backing.
impl RegistrySource for Registry {
    fn source_id(&self) -> String {
        match self {
            Registry::Local(dir) => dir.target.source_id(),
            Registry::Remote(http) => http.source_id(),
        }
    }

    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>> {
        match self {
            Registry::Local(dir) => dir.files()?.versions(name),
            Registry::Remote(http) => http.versions(name),
        }
    }

    fn download_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()> {
        match self {
            Registry::Local(dir) => dir.files()?.download_blob(cksum, dest),
            Registry::Remote(http) => http.download_blob(cksum, dest),
        }
    }
}
