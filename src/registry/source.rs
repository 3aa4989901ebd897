use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use registry_index::{blob_path, index_path, parse_index_file, Checksum, IndexEntry};

/// Read access to a registry: its index and its blobs.
///
/// Implemented by a registry directory ([`DirSource`]), the HTTP client
/// ([`super::remote::HttpRegistry`]) and [`super::Registry`], which is
/// either; the resolver and the fetcher only see this trait. `Sync`, so
/// that several blobs download at once ([`download_many`]).
pub trait RegistrySource: Send + Sync {
    /// A stable identifier recorded in lockfiles, e.g. `registry+file:///abs/path`.
    fn source_id(&self) -> String;

    /// All versions of `name` listed in the index (yanked ones included);
    /// an empty list when the package does not exist.
    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>>;

    /// Copies the blob with checksum `cksum` to `dest` (a new file). The
    /// caller verifies the checksum; this only transfers bytes.
    fn download_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()>;
}

/// A registry directory on the local file system, read as plain files: the
/// sparse index under `index/` and blobs under `blobs/`.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirSource { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
}

impl RegistrySource for DirSource {
    fn source_id(&self) -> String {
        // A directory not made yet still gets an absolute id, as it will be
        // recorded from wherever the command runs.
        let abs = fs::canonicalize(&self.root)
            .or_else(|_| std::path::absolute(&self.root))
            .unwrap_or_else(|_| self.root.clone());
        format!("registry+file://{}", abs.display())
    }

    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>> {
        let rel = index_path(name)?;
        let path = self.index_dir().join(rel);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading index file {}", path.display())),
        };
        parse_index_file(name, &text).with_context(|| format!("index file {} is corrupt", path.display()))
    }

    fn download_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()> {
        let src = self.blobs_dir().join(blob_path(cksum));
        if !src.is_file() {
            bail!("registry {} has no blob {} (expected at {})", self.root.display(), cksum.prefixed(), src.display());
        }
        fs::copy(&src, dest).with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
        Ok(())
    }
}

/// So one opened registry can serve as the resolver's source and for the
/// other calls of a command (suggest lists candidates and then locks them).
impl<T: RegistrySource + ?Sized> RegistrySource for std::sync::Arc<T> {
    fn source_id(&self) -> String {
        (**self).source_id()
    }
    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>> {
        (**self).versions(name)
    }
    fn download_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()> {
        (**self).download_blob(cksum, dest)
    }
}

/// One blob to fetch with [`download_many`].
#[derive(Debug, Clone)]
pub struct DownloadJob {
    pub cksum: Checksum,
    pub dest: PathBuf,
}

/// Downloads blobs with at most `concurrency` at a time; one result per job,
/// in order (a failure does not stop the others).
pub fn download_many(source: &dyn RegistrySource, jobs: &[DownloadJob], concurrency: usize) -> Vec<Result<()>> {
    concurrently(jobs, concurrency, |job| source.download_blob(&job.cksum, &job.dest))
}

/// Runs `task` on every item, on at most `concurrency` scoped threads (1 to
/// 32); one result per item, in order. Every fetch of several blobs goes
/// through here ([`download_many`], `cache::Cache::download_many`).
pub fn concurrently<T: Sync, R: Send>(items: &[T], concurrency: usize, task: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = concurrency.clamp(1, 32).min(items.len());
    if workers <= 1 {
        return items.iter().map(task).collect();
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break done };
                        done.push((i, task(item)));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A panicking task panics the caller, as it would without threads.
            let done = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, result) in done {
                slots[i] = Some(result);
            }
        }
    });
    slots.into_iter().map(|slot| slot.expect("every item was handed to a worker")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{concurrently, DirSource, RegistrySource};

    #[test]
    fn a_directory_not_made_yet_gets_an_absolute_id() {
        let id = DirSource::new("no-such-registry").source_id();
        let expected = std::path::absolute("no-such-registry").unwrap();
        assert_eq!(id, format!("registry+file://{}", expected.display()));
    }

    #[test]
    fn concurrently_keeps_order_and_bounds_the_workers() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<usize> = (0..12).collect();
        let out = concurrently(&items, 3, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 10
        });
        assert_eq!(out, items.iter().map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert!(concurrently(&[] as &[usize], 4, |&i| i).is_empty());
    }
}
