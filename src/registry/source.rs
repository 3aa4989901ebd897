use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use registry_index::{blob_path, index_path, parse_index_file, Checksum, IndexEntry};

/// Read access to a registry: its index and its blobs.
///
/// Implemented by a registry directory ([`DirSource`]), the HTTP client
/// ([`super::remote::HttpRegistry`]) and [`super::Registry`], which is
/// either; the resolver and the fetcher only see this trait.
pub trait RegistrySource {
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
        let abs = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
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
            bail!(
                "registry {} has no blob {} (expected at {})",
                self.root.display(),
                cksum.prefixed(),
                src.display()
            );
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
