//! A synchronous face of [`LocalRegistry`] for the CLI and other sync code:
//! it owns a current-thread tokio runtime and blocks on the async core.

use std::path::Path;

use anyhow::{Context, Result};
use semver::Version;

use super::api::{PackageInfo, PackageSummary, Published, YankOutcome};
use super::local::LocalRegistry;
use super::DirSource;
use crate::package::Artifact;

pub struct BlockingRegistry {
    runtime: tokio::runtime::Runtime,
    inner: LocalRegistry,
}

impl BlockingRegistry {
    /// Opens (creating if needed) the registry at `root`.
    pub fn open(root: &Path) -> Result<BlockingRegistry> {
        let runtime = runtime()?;
        let inner = runtime.block_on(LocalRegistry::open(root))?;
        Ok(BlockingRegistry { runtime, inner })
    }

    /// Opens the registry at `root`; fails if none exists there.
    pub fn open_existing(root: &Path) -> Result<BlockingRegistry> {
        let runtime = runtime()?;
        let inner = runtime.block_on(LocalRegistry::open_existing(root))?;
        Ok(BlockingRegistry { runtime, inner })
    }

    pub fn inner(&self) -> &LocalRegistry {
        &self.inner
    }
    pub fn root(&self) -> &Path {
        self.inner.root()
    }
    pub fn source(&self) -> DirSource {
        self.inner.source()
    }
    pub fn publish(&self, artifact: &Artifact) -> Result<Published> {
        self.runtime.block_on(self.inner.publish(artifact))
    }
    pub fn publish_dir(&self, dir: &Path) -> Result<Published> {
        self.runtime.block_on(self.inner.publish_dir(dir))
    }
    pub fn set_yanked(&self, name: &str, version: &Version, yanked: bool, reason: Option<&str>) -> Result<YankOutcome> {
        self.runtime.block_on(self.inner.set_yanked(name, version, yanked, reason))
    }
    pub fn info(&self, name: &str) -> Result<Option<PackageInfo>> {
        self.runtime.block_on(self.inner.info(name))
    }
    pub fn similar_name(&self, name: &str) -> Result<Option<String>> {
        self.runtime.block_on(self.inner.similar_name(name))
    }
    pub fn list(&self) -> Result<Vec<PackageSummary>> {
        self.runtime.block_on(self.inner.list())
    }
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<PackageSummary>> {
        self.runtime.block_on(self.inner.search(query, limit))
    }
    pub fn rebuild_index(&self) -> Result<()> {
        self.runtime.block_on(self.inner.rebuild_index())
    }
    pub fn check_index(&self) -> Result<Vec<String>> {
        self.runtime.block_on(self.inner.check_index())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

/// Reading through an opened (and therefore repaired) registry.
impl super::RegistrySource for BlockingRegistry {
    fn source_id(&self) -> String {
        self.source().source_id()
    }
    fn versions(&self, name: &str) -> Result<Vec<registry_index::IndexEntry>> {
        self.source().versions(name)
    }
    fn download_blob(&self, cksum: &registry_index::Checksum, dest: &Path) -> Result<()> {
        self.source().download_blob(cksum, dest)
    }
}
