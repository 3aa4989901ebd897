//! The download cache: `$ATTEMPT_HOME/cache/blobs/sha256/ab/<hex>`,
//! content-addressed and shared by every project of the user. Its other
//! directories (partial downloads, registry index copies, `suggest`
//! features) are named here too, and `cache gc` ([`gc`]) cleans every one.
//!
//! A blob enters the cache only after its sha256 matched the lock: it is
//! downloaded into `cache/tmp/`, hashed, fsynced and renamed into place, so
//! concurrent fetches of the same blob are harmless. Every use re-hashes it
//! ([`ensure_locked_blobs`]); a blob that no longer matches is deleted and
//! the error names the package.

mod gc;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use registry_index::{blob_path, Checksum};
use url::Url;

pub use gc::{gc, GcOptions, GcReport};

use crate::fsutil::hash_file;
use crate::home::Home;
use crate::project::{LockedPackage, Lockfile};
use crate::registry::RegistrySource;

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A locked package whose artifact is on disk and matches its checksum.
#[derive(Debug, Clone)]
pub struct LocalBlob {
    pub package: LockedPackage,
    pub path: PathBuf,
    /// Whether this call downloaded it (false: it was already cached).
    pub downloaded: bool,
}

/// What re-hashing a cached blob found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    Missing,
    Valid,
    /// It did not match and has been deleted.
    Corrupt { actual: Checksum },
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

    /// The cached, verified blob `cksum`, downloaded from `registry` first
    /// when it is missing (or was corrupt, and so deleted).
    pub fn fetch(&self, registry: &dyn RegistrySource, cksum: &Checksum) -> Result<PathBuf> {
        match self.check(cksum)? {
            BlobState::Valid => {
                let path = self.blob_path(cksum);
                touch(&path);
                Ok(path)
            }
            BlobState::Missing | BlobState::Corrupt { .. } => self.download(registry, cksum),
        }
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

fn describe(p: &LockedPackage) -> String {
    format!("{}@{} (from {})", p.name, p.version, p.source)
}

/// Makes every package of `lock` available locally and verified, downloading
/// what is missing (unless `offline`). This is what training calls before it
/// opens any artifact; the returned paths are safe to read.
pub fn ensure_locked_blobs(
    lock: &Lockfile,
    registries: &[Box<dyn RegistrySource>],
    cache: &Cache,
    offline: bool,
) -> Result<Vec<LocalBlob>> {
    let mut out = Vec::with_capacity(lock.packages.len());
    for p in &lock.packages {
        match cache.check(&p.checksum)? {
            BlobState::Valid => {
                let path = cache.blob_path(&p.checksum);
                touch(&path);
                out.push(LocalBlob { package: p.clone(), path, downloaded: false });
            }
            BlobState::Corrupt { actual } => bail!(
                "cached artifact of {} was corrupt (sha256:{actual}, expected {}) and has been deleted; \
                 run `attempt-pkg fetch` to download it again",
                describe(p),
                p.checksum.prefixed()
            ),
            BlobState::Missing if offline => bail!(
                "{} is not in the cache and --offline forbids downloading it; run `attempt-pkg fetch` while the registry is reachable",
                describe(p)
            ),
            BlobState::Missing => {
                let registry = registries.iter().find(|r| r.source_id() == p.source).ok_or_else(|| {
                    anyhow!(
                        "{} was locked from a registry that is not configured now; pass that --registry or run `attempt-pkg update {}`",
                        describe(p),
                        p.name
                    )
                })?;
                let path = cache
                    .download(registry.as_ref(), &p.checksum)
                    .with_context(|| format!("downloading {}", describe(p)))?;
                out.push(LocalBlob { package: p.clone(), path, downloaded: true });
            }
        }
    }
    Ok(out)
}

/// Marks a blob as used now, for `cache gc --older-than`.
fn touch(path: &Path) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The cached blob did not match; it was deleted.
    CorruptBlob { package: String, version: String, expected: Checksum, actual: Checksum },
    /// The registry lists another checksum for the locked version.
    IndexMismatch { package: String, version: String, locked: Checksum, index: Checksum, registry: String },
    /// The registry no longer lists the locked version.
    NotInIndex { package: String, version: String, registry: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob { package, version, expected, actual } => write!(
                f,
                "{package}@{version}: cached blob has sha256:{actual}, the lock says {}; deleted it (run `attempt-pkg fetch`)",
                expected.prefixed()
            ),
            Problem::IndexMismatch { package, version, locked, index, registry } => write!(
                f,
                "{package}@{version}: the lock says {} but registry {registry} lists {}; published versions are immutable, \
                 so the lock or the registry has been tampered with",
                locked.prefixed(),
                index.prefixed()
            ),
            Problem::NotInIndex { package, version, registry } => {
                write!(f, "{package}@{version}: registry {registry} does not list this version")
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub verified: Vec<String>,
    /// Locked packages not in the cache (not an error: `fetch` gets them).
    pub missing: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Re-hashes every cached blob the lock names, and (given registries) checks
/// the lock's checksums against the index.
pub fn verify(lock: &Lockfile, registries: &[Box<dyn RegistrySource>], cache: &Cache) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for p in &lock.packages {
        let id = format!("{}@{}", p.name, p.version);
        match cache.check(&p.checksum)? {
            BlobState::Valid => {
                touch(&cache.blob_path(&p.checksum));
                report.verified.push(id)
            }
            BlobState::Missing => report.missing.push(id),
            BlobState::Corrupt { actual } => report.problems.push(Problem::CorruptBlob {
                package: p.name.clone(),
                version: p.version.to_string(),
                expected: p.checksum.clone(),
                actual,
            }),
        }
        if let Some(reg) = registries.iter().find(|r| r.source_id() == p.source) {
            let entries = reg.versions(&p.name)?;
            match entries.iter().find(|e| e.vers == p.version) {
                None => report.problems.push(Problem::NotInIndex {
                    package: p.name.clone(),
                    version: p.version.to_string(),
                    registry: p.source.clone(),
                }),
                Some(e) if e.cksum != p.checksum => report.problems.push(Problem::IndexMismatch {
                    package: p.name.clone(),
                    version: p.version.to_string(),
                    locked: p.checksum.clone(),
                    index: e.cksum.clone(),
                    registry: p.source.clone(),
                }),
                Some(_) => {}
            }
        }
    }
    Ok(report)
}
