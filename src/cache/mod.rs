//! The download cache: `$ATTEMPT_HOME/cache/blobs/sha256/ab/<hex>`,
//! content-addressed and shared by every project of the user. Its other
//! directories (partial downloads, registry index copies, `suggest`
//! features) are named here too, and `cache gc` ([`gc`]) cleans every one.
//!
//! The cache knows blobs by [`Checksum`] only, not which lock or package
//! names them (that is the project layer's `project::ensure_locked_blobs`
//! and `project::verify`). A blob enters it only after its sha256 matched
//! the checksum asked for: it is downloaded into `cache/tmp/`, hashed,
//! fsynced and renamed into place, so concurrent fetches of the same blob
//! are harmless. [`Cache::check`] re-hashes a cached blob and deletes it if
//! it no longer matches. Several blobs are downloaded at once, through
//! [`Cache::download_many`] (and [`Cache::fetch_many`]), at most
//! [`DOWNLOAD_CONCURRENCY`] at a time.

mod gc;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use registry_index::{blob_path, Checksum};
use url::Url;

pub use gc::{gc, GcOptions, GcReport};

use crate::fsutil::hash_file;
use crate::home::Home;
use crate::registry::{concurrently, RegistrySource};

/// How many blobs one command downloads at a time.
pub const DOWNLOAD_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// What re-hashing a cached blob found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    Missing,
    Valid,
    /// It did not match and has been deleted.
    Corrupt {
        actual: Checksum,
    },
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    pub fn from_home(home: &Home) -> Self {
        Cache::new(home.cache_dir())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Partial downloads live here until they are verified.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Resumable downloads of HTTP registries, `<hex>.part`, each locked
    /// while a download writes it (`registry::remote::http`).
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// The resumable download of `cksum`: `partial/<hex>.part`.
    pub fn partial_download(&self, cksum: &Checksum) -> PathBuf {
        self.partial_dir().join(format!("{}.part", cksum.hex()))
    }

    /// Copies of remote registries' index files, one directory per registry
    /// (`registry::remote::http`), for ETag revalidation and `--offline`.
    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    /// The index copy of the registry at `index_url`: `index/<host>-<port>-<hash>/`,
    /// readable, and distinct for distinct index URLs.
    pub fn index_copy_dir(&self, index_url: &Url) -> PathBuf {
        let host: String = index_url
            .host_str()
            .unwrap_or("registry")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect();
        let port = index_url.port_or_known_default().unwrap_or(0);
        let hash = crate::fsutil::sha256(index_url.as_str().as_bytes());
        self.index_dir().join(format!("{host}-{port}-{}", &hash.hex()[..16]))
    }

    /// Pooled features `suggest` computed, per model (recomputable; `gc`
    /// removes those unused for `--older-than`).
    pub fn features_dir(&self) -> PathBuf {
        self.root.join("features")
    }

    pub fn blob_path(&self, cksum: &Checksum) -> PathBuf {
        self.blobs_dir().join(blob_path(cksum))
    }

    /// Re-hashes the cached blob for `cksum`; a mismatch deletes it.
    pub fn check(&self, cksum: &Checksum) -> Result<BlobState> {
        let path = self.blob_path(cksum);
        let actual = match hash_file(&path) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BlobState::Missing),
            Err(e) => return Err(e).with_context(|| format!("reading cached blob {}", path.display())),
        };
        if &actual == cksum {
            return Ok(BlobState::Valid);
        }
        fs::remove_file(&path).with_context(|| format!("deleting corrupt cached blob {}", path.display()))?;
        Ok(BlobState::Corrupt { actual })
    }

    /// Marks the cached blob `cksum` as used now, for `cache gc --older-than`.
    pub fn touch(&self, cksum: &Checksum) {
        if let Ok(f) = File::options().write(true).open(self.blob_path(cksum)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// The cached, verified blob `cksum`, downloaded from `registry` first
    /// when it is missing (or was corrupt, and so deleted).
    pub fn fetch(&self, registry: &dyn RegistrySource, cksum: &Checksum) -> Result<PathBuf> {
        match self.check(cksum)? {
            BlobState::Valid => {
                self.touch(cksum);
                Ok(self.blob_path(cksum))
            }
            BlobState::Missing | BlobState::Corrupt { .. } => self.download(registry, cksum),
        }
    }

    /// [`Cache::fetch`] of each of `cksums`, [`DOWNLOAD_CONCURRENCY`] at a
    /// time; one result per checksum, in order (a failure does not stop the
    /// others).
    pub fn fetch_many(&self, registry: &dyn RegistrySource, cksums: &[Checksum]) -> Vec<Result<PathBuf>> {
        concurrently(cksums, DOWNLOAD_CONCURRENCY, |cksum| self.fetch(registry, cksum))
    }

    /// [`Cache::download`] of each `(registry, checksum)`,
    /// [`DOWNLOAD_CONCURRENCY`] at a time; one result per job, in order (a
    /// failure does not stop the others).
    pub fn download_many(&self, jobs: &[(&dyn RegistrySource, &Checksum)]) -> Vec<Result<PathBuf>> {
        concurrently(jobs, DOWNLOAD_CONCURRENCY, |(registry, cksum)| self.download(*registry, cksum))
    }

    /// Downloads `cksum` from `registry` into the cache, verifying it first.
    pub fn download(&self, registry: &dyn RegistrySource, cksum: &Checksum) -> Result<PathBuf> {
        let tmp_dir = self.tmp_dir();
        fs::create_dir_all(&tmp_dir).with_context(|| format!("creating {}", tmp_dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("download-")
            .tempfile_in(&tmp_dir)
            .with_context(|| format!("creating a temporary file in {}", tmp_dir.display()))?;
        registry.download_blob(cksum, tmp.path())?;
        let actual = hash_file(tmp.path()).context("reading the downloaded blob")?;
        if &actual != cksum {
            // Dropping `tmp` deletes the bad bytes.
            bail!("the registry sent a blob with checksum {}, expected {}", actual.prefixed(), cksum.prefixed());
        }
        File::open(tmp.path()).and_then(|f| f.sync_all()).context("syncing the downloaded blob")?;
        let dest = self.blob_path(cksum);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        tmp.persist(&dest).with_context(|| format!("moving the download to {}", dest.display()))?;
        Ok(dest)
    }
}
