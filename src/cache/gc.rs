//! `cache gc`. The cache is shared by every project of the user, so no single
//! lock says what is garbage. The rule: a blob is removed when it is not
//! named by any lock passed in `keep` AND has not been used (fetched or
//! verified, which refreshes its mtime) for `older_than`. Partial downloads
//! older than an hour are removed too (younger ones may belong to a fetch
//! that is still running). Cached `suggest` features unused for
//! `older_than` go too: they are recomputed when needed.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use registry_index::Checksum;

use super::Cache;

const PARTIAL_GRACE: Duration = Duration::from_secs(3600);

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
    pub removed_partials: usize,
    /// Cached feature files of `suggest` (always recomputable).
    pub removed_features: usize,
    pub freed_bytes: u64,
    pub kept_blobs: usize,
}

pub fn gc(cache: &Cache, opts: &GcOptions) -> Result<GcReport> {
    let mut report = GcReport::default();
    let now = SystemTime::now();
    let age = |m: &fs::Metadata| m.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default();

    for entry in read_dir_or_empty(&cache.tmp_dir())? {
        let meta = entry.metadata()?;
        if meta.is_file() && age(&meta) >= PARTIAL_GRACE {
            report.freed_bytes += meta.len();
            report.removed_partials += 1;
            if !opts.dry_run {
                remove(&entry.path())?;
            }
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
            if !meta.is_file() || opts.keep.contains(&cksum) || age(&meta) < opts.older_than {
                report.kept_blobs += 1;
                continue;
            }
            report.freed_bytes += meta.len();
            report.removed_blobs.push(cksum);
            if !opts.dry_run {
                remove(&entry.path())?;
            }
        }
    }
    for model in read_dir_or_empty(&cache.features_dir())? {
        if !model.file_type()?.is_dir() {
            continue;
        }
        for entry in read_dir_or_empty(&model.path())? {
            let meta = entry.metadata()?;
            if meta.is_file() && age(&meta) >= opts.older_than {
                report.freed_bytes += meta.len();
                report.removed_features += 1;
                if !opts.dry_run {
                    remove(&entry.path())?;
                }
            }
        }
    }
    report.removed_blobs.sort();
    Ok(report)
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<Vec<_>, _>>().with_context(|| format!("listing {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
    }
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
