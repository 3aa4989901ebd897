//! The lock's blobs in the download cache: [`ensure_locked_blobs`] (what
//! `fetch` and training call before they open an artifact) and [`verify`].
//! The cache ([`crate::cache`]) stores and re-hashes blobs by checksum; this
//! is where a checksum becomes a locked package, with its registry and the
//! messages that name it.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use registry_index::Checksum;

use super::lockfile::{LockedPackage, Lockfile};
use crate::cache::{BlobState, Cache};
use crate::registry::RegistrySource;

/// A locked package whose artifact is on disk and matches its checksum.
#[derive(Debug, Clone)]
pub struct LocalBlob {
    pub package: LockedPackage,
    pub path: PathBuf,
    /// Whether this call downloaded it (false: it was already cached).
    pub downloaded: bool,
}

fn describe(p: &LockedPackage) -> String {
    format!("{}@{} (from {})", p.name, p.version, p.source)
}

/// Makes every package of `lock` available locally and verified, downloading
/// what is missing (unless `offline`) concurrently, through
/// [`Cache::download_many`]. This is what training calls before it opens any
/// artifact; the returned paths are safe to read. Every cached blob is
/// re-hashed first; a corrupt one, a missing one under `offline` and one
/// whose registry is not configured fail before anything is downloaded.
pub fn ensure_locked_blobs(
    lock: &Lockfile,
    registries: &[Box<dyn RegistrySource>],
    cache: &Cache,
    offline: bool,
) -> Result<Vec<LocalBlob>> {
    let mut out = Vec::with_capacity(lock.packages.len());
    // Indices into `out` of the blobs to download, with their registries.
    let mut missing: Vec<(usize, &dyn RegistrySource, &Checksum)> = Vec::new();
    for p in &lock.packages {
        let path = cache.blob_path(&p.checksum);
        match cache.check(&p.checksum)? {
            BlobState::Valid => {
                cache.touch(&p.checksum);
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
                missing.push((out.len(), registry.as_ref(), &p.checksum));
                out.push(LocalBlob { package: p.clone(), path, downloaded: true });
            }
        }
    }
    let jobs: Vec<(&dyn RegistrySource, &Checksum)> = missing.iter().map(|&(_, r, c)| (r, c)).collect();
    for (&(i, _, _), result) in missing.iter().zip(cache.download_many(&jobs)) {
        let blob = &mut out[i];
        blob.path = result.with_context(|| format!("downloading {}", describe(&blob.package)))?;
    }
    Ok(out)
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
    /// The package was locked from a registry none of `registries` is, so
    /// its checksum could not be checked against an index.
    OtherRegistry { package: String, version: String, locked_from: String, reading: Vec<String> },
    /// The index of the registry it was locked from could not be read.
    IndexUnreadable { package: String, version: String, registry: String, error: String },
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
            Problem::OtherRegistry { package, version, locked_from, reading } => write!(
                f,
                "{package}@{version}: locked from {locked_from}, not the registry this command reads ({}), so not \
                 checked against an index; pass --registry for the registry it came from, or --offline to check the cache only",
                reading.join(", ")
            ),
            Problem::IndexUnreadable { package, version, registry, error } => write!(
                f,
                "{package}@{version}: could not read the index of {registry}, which it was locked from, so not checked \
                 against it ({error}); make that registry reachable, run `attempt-pkg update {package}` to lock it from \
                 another, or pass --offline to check the cache only"
            ),
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
/// the lock's checksums against the index of the registry each was locked
/// from (one not among `registries`, or one whose index cannot be read, is a
/// problem: the check was asked for).
pub fn verify(lock: &Lockfile, registries: &[Box<dyn RegistrySource>], cache: &Cache) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for p in &lock.packages {
        let id = format!("{}@{}", p.name, p.version);
        match cache.check(&p.checksum)? {
            BlobState::Valid => {
                cache.touch(&p.checksum);
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
        let Some(reg) = registries.iter().find(|r| r.source_id() == p.source) else {
            if !registries.is_empty() {
                report.problems.push(Problem::OtherRegistry {
                    package: p.name.clone(),
                    version: p.version.to_string(),
                    locked_from: p.source.clone(),
                    reading: registries.iter().map(|r| r.source_id()).collect(),
                });
            }
            continue;
        };
        let entries = match reg.versions(&p.name) {
            Ok(entries) => entries,
            Err(e) => {
                report.problems.push(Problem::IndexUnreadable {
                    package: p.name.clone(),
                    version: p.version.to_string(),
                    registry: p.source.clone(),
                    error: format!("{e:#}"),
                });
                continue;
            }
        };
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
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use registry_index::IndexEntry;

    use super::*;
    use crate::fsutil::sha256;

    /// A registry that serves blobs from memory, slowly, and counts how many
    /// downloads run at once.
    struct Slow {
        blobs: HashMap<Checksum, Vec<u8>>,
        running: AtomicUsize,
        most: AtomicUsize,
    }

    impl RegistrySource for Slow {
        fn source_id(&self) -> String {
            "registry+mem://slow".into()
        }
        fn versions(&self, _: &str) -> Result<Vec<IndexEntry>> {
            Ok(Vec::new())
        }
        fn download_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            self.running.fetch_sub(1, Ordering::SeqCst);
            let bytes = self.blobs.get(cksum).ok_or_else(|| anyhow!("no blob {}", cksum.prefixed()))?;
            std::fs::write(dest, bytes)?;
            Ok(())
        }
    }

    fn package(i: usize, checksum: Checksum) -> LockedPackage {
        LockedPackage {
            name: format!("p{i}"),
            version: semver::Version::new(1, 0, 0),
            source: "registry+mem://slow".into(),
            checksum,
            dependencies: Vec::new(),
        }
    }

    #[test]
    fn missing_blobs_download_concurrently_into_the_cache() {
        let bytes: Vec<Vec<u8>> = (0..6).map(|i| format!("blob {i}").into_bytes()).collect();
        let slow = std::sync::Arc::new(Slow {
            blobs: bytes.iter().map(|b| (sha256(b), b.clone())).collect(),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let lock = Lockfile {
            version: 1,
            base_model: None,
            packages: bytes.iter().enumerate().map(|(i, b)| package(i, sha256(b))).collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let registries: Vec<Box<dyn RegistrySource>> = vec![Box::new(slow.clone())];

        let blobs = ensure_locked_blobs(&lock, &registries, &cache, false).unwrap();
        assert_eq!(blobs.len(), 6);
        for (blob, b) in blobs.iter().zip(&bytes) {
            assert!(blob.downloaded);
            assert_eq!(&std::fs::read(&blob.path).unwrap(), b);
            assert_eq!(blob.path, cache.blob_path(&blob.package.checksum));
        }
        let most = slow.most.load(Ordering::SeqCst);
        assert!((2..=crate::cache::DOWNLOAD_CONCURRENCY).contains(&most), "{most} downloads at once");
        // Offline now works from the cache alone.
        let again = ensure_locked_blobs(&lock, &[], &cache, true).unwrap();
        assert!(again.iter().all(|b| !b.downloaded));
    }

    #[test]
    fn a_failed_download_names_its_package_and_keeps_the_others() {
        let good = b"good".to_vec();
        let slow = std::sync::Arc::new(Slow {
            blobs: [(sha256(&good), good.clone())].into_iter().collect(),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let absent = sha256(b"absent");
        let lock = Lockfile {
            version: 1,
            base_model: None,
            packages: vec![package(0, absent.clone()), package(1, sha256(&good)), package(2, sha256(b"also absent"))],
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let registries: Vec<Box<dyn RegistrySource>> = vec![Box::new(slow.clone())];
        let err = format!("{:#}", ensure_locked_blobs(&lock, &registries, &cache, false).unwrap_err());
        assert!(err.starts_with("downloading p0@1.0.0 (from registry+mem://slow): no blob"), "{err}");
        assert!(slow.most.load(Ordering::SeqCst) >= 2, "the downloads ran one at a time");
        // The one that could be downloaded is cached and verified.
        assert_eq!(cache.check(&sha256(&good)).unwrap(), BlobState::Valid);
        assert_eq!(cache.check(&absent).unwrap(), BlobState::Missing);
    }
}
