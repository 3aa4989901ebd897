//! `cache gc`. The cache is shared by every project of the user, so no single
//! lock says what is garbage. The rules, one per directory of the cache:
//!
//! * `blobs/`: a blob is removed when it is not named by any lock passed in
//!   `keep` AND has not been used (fetched or verified, which refreshes its
//!   mtime) for `older_than`.
//! * `tmp/` and `partial/`: partial downloads untouched for an hour (a
//!   younger one may belong to a fetch that is still running). A resumable
//!   `.part` file of an HTTP registry is also kept while a download holds its
//!   lock, however old it is.
//! * `index/`: copies of remote registries' index files not refreshed for
//!   `older_than` (the next online command downloads them again; `--offline`
//!   needs them, which is why they are not removed sooner).
//! * `features/`: cached `suggest` features unused for `older_than` (they are
//!   recomputed when needed).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use registry_index::Checksum;

use super::Cache;

/// How long an untouched partial write is presumed alive.
const PARTIAL_GRACE: Duration = Duration::from_secs(3600);

/// What `fsutil::write_atomic` names its temporary files (it writes the
/// index copies): partial writes, judged like partial downloads.
const ATOMIC_WRITE_PREFIX: &str = crate::fsutil::TEMP_PREFIX;

#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Blobs named by the locks the user wants to keep.
    pub keep: HashSet<Checksum>,
    /// Unreferenced blobs used more recently than this stay.
    pub older_than: Duration,
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub removed_blobs: Vec<Checksum>,
    /// Partial downloads, of `tmp/` and `partial/`.
    pub removed_partials: usize,
    /// Files of `index/` (registry index copies and their ETags).
    pub removed_index_files: usize,
    /// Cached feature files of `suggest` (always recomputable).
    pub removed_features: usize,
    pub freed_bytes: u64,
    pub kept_blobs: usize,
}

pub fn gc(cache: &Cache, opts: &GcOptions) -> Result<GcReport> {
    let mut sweep = Sweep { now: SystemTime::now(), dry_run: opts.dry_run, report: GcReport::default() };

    for entry in read_dir_or_empty(&cache.tmp_dir())? {
        let meta = entry.metadata()?;
        if meta.is_file() && sweep.age(&meta) >= PARTIAL_GRACE {
            sweep.remove(&entry.path(), &meta)?;
            sweep.report.removed_partials += 1;
        }
    }
    for entry in read_dir_or_empty(&cache.partial_dir())? {
        if sweep.remove_idle_partial(&entry.path())? {
            sweep.report.removed_partials += 1;
        }
    }

    for shard in read_dir_or_empty(&cache.blobs_dir().join("sha256"))? {
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in read_dir_or_empty(&shard.path())? {
            let meta = entry.metadata()?;
            // Only files named by a checksum are ours to judge.
            let Some(cksum) = entry.file_name().to_str().and_then(|n| Checksum::parse(n).ok()) else { continue };
            if !meta.is_file() || opts.keep.contains(&cksum) || sweep.age(&meta) < opts.older_than {
                sweep.report.kept_blobs += 1;
                continue;
            }
            sweep.remove(&entry.path(), &meta)?;
            sweep.report.removed_blobs.push(cksum);
        }
    }

    let mut index_files = files_below(&cache.index_dir())?;
    // ETags first: a client that finds an index copy without its ETag simply
    // downloads it again, while an ETag without its copy could get a
    // "not modified" answer for a file that is gone.
    index_files.sort_by_key(|(path, _)| path.extension().is_none_or(|e| e != "etag"));
    for (path, meta) in index_files {
        let partial = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(ATOMIC_WRITE_PREFIX));
        let limit = if partial { PARTIAL_GRACE } else { opts.older_than };
        if sweep.age(&meta) >= limit {
            sweep.remove(&path, &meta)?;
            sweep.report.removed_index_files += 1;
        }
    }

    for model in read_dir_or_empty(&cache.features_dir())? {
        if !model.file_type()?.is_dir() {
            continue;
        }
        for entry in read_dir_or_empty(&model.path())? {
            let meta = entry.metadata()?;
            if meta.is_file() && sweep.age(&meta) >= opts.older_than {
                sweep.remove(&entry.path(), &meta)?;
                sweep.report.removed_features += 1;
            }
        }
    }
    sweep.report.removed_blobs.sort();
    Ok(sweep.report)
}

/// One collection: the clock it judges ages by, and what it freed so far.
struct Sweep {
    now: SystemTime,
    dry_run: bool,
    report: GcReport,
}

impl Sweep {
    /// Time since the last modification (0 for a file from the future).
    fn age(&self, meta: &fs::Metadata) -> Duration {
        meta.modified().ok().and_then(|t| self.now.duration_since(t).ok()).unwrap_or_default()
    }

    /// Counts the file as freed and removes it, unless this is a dry run.
    fn remove(&mut self, path: &Path, meta: &fs::Metadata) -> Result<()> {
        self.report.freed_bytes += meta.len();
        if self.dry_run {
            return Ok(());
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Removes a stale resumable download of an HTTP registry, unless a
    /// download holds it. That client writes `partial/<hex>.part` under an
    /// exclusive lock and, once it has the lock, checks that the path still
    /// names the file it opened, starting afresh if not. So: take the lock
    /// without waiting (busy: a download is writing it, keep it), check the
    /// path is still that file and old enough, and remove it while locked.
    fn remove_idle_partial(&mut self, path: &Path) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let file = match fs::File::options().read(true).write(true).open(path) {
            Ok(f) => f,
            // Gone (finished or removed meanwhile), or not a file we may open.
            Err(_) => return Ok(false),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let held = file.metadata().with_context(|| format!("reading {}", path.display()))?;
        let same = fs::symlink_metadata(path).is_ok_and(|m| m.ino() == held.ino() && m.dev() == held.dev());
        if !same || !held.is_file() || self.age(&held) < PARTIAL_GRACE {
            return Ok(false);
        }
        self.remove(path, &held)?;
        Ok(true)
    }
}

/// Every regular file below `dir`, recursively (none when it does not
/// exist). Directories are left in place even when emptied: a writer may be
/// between creating one and writing into it.
fn files_below(dir: &Path) -> Result<Vec<(PathBuf, fs::Metadata)>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in read_dir_or_empty(&dir)? {
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push((entry.path(), entry.metadata()?));
            }
        }
    }
    Ok(files)
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<Vec<_>, _>>().with_context(|| format!("listing {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
    }
}
