//! Files written whole or not at all, and sha256 of bytes and files: the one
//! place for both. The project files, the run directory, package artifacts,
//! the registry's index copies and the download cache all write through
//! [`write_atomic`] and hash through [`sha256`] / [`hash_file`].
//!
//! An atomic write puts the bytes in a temporary file in the target's own
//! directory (so the rename cannot cross file systems), fsyncs it, renames it
//! over the target and fsyncs the directory, so a crash leaves the old file
//! or the whole new one, never half of either.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use registry_index::Checksum;
use sha2::{Digest, Sha256};

/// How temporary files of an atomic write start (`.tmp-<name>.<random>`);
/// `cache gc` judges leftovers by it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` atomically (see the module docs), creating the
/// parent directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_file(path, |file| Ok(file.write_all(bytes)?))
}

/// Like [`write_atomic`], with `fill` writing the open temporary file (say,
/// to set its permissions before the first byte).
pub fn write_atomic_file(path: &Path, fill: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    replace(path, None, |tmp| {
        fill(tmp.as_file_mut())?;
        tmp.as_file().sync_all().context("syncing the temporary file")
    })
}

/// Like [`write_atomic`], but leaves the file alone when it already holds
/// exactly `bytes`. Returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes)?;
    Ok(true)
}

/// Atomic write for writers that want a path (say, a safetensors saver):
/// `fill` writes the temporary file it is given, which is then fsynced and
/// renamed over `path`. On any error the temporary file is removed.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    replace(path, None, |tmp| {
        fill(tmp.path())?;
        // Reopened: `fill` may have replaced the file at the temporary path.
        fs::File::open(tmp.path()).and_then(|f| f.sync_all()).context("syncing the temporary file")?;
        Ok(())
    })
}

/// Like [`write_atomic`], with the temporary file in `tmp_dir` (which must be
/// on `path`'s file system), where a killed writer's leftovers are easy to clean.
pub fn write_atomic_via(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, Some(tmp_dir), |tmp| {
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all().context("syncing the temporary file")
    })
}

/// Temp file beside `path` (or in `tmp_dir`), `fill` (which must leave it
/// synced), rename, sync the directory.
fn replace(
    path: &Path,
    tmp_dir: Option<&Path>,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp_dir = tmp_dir.unwrap_or(dir);
    for d in [dir, tmp_dir] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{name}."))
        .tempfile_in(tmp_dir)
        .with_context(|| format!("creating a temporary file in {}", tmp_dir.display()))?;
    fill(&mut tmp).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable. Best effort: not every platform can open a directory.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Checksum {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    Checksum::from_digest(&digest)
}

/// sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<Checksum> {
    hash_reader(&mut fs::File::open(path)?)
}

/// sha256 of everything `reader` yields from where it stands.
pub fn hash_reader(reader: &mut impl Read) -> io::Result<Checksum> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(Checksum::from_digest(&hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_empty_input() {
        assert_eq!(sha256(b"").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.txt");
        write_atomic(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert!(!write_if_changed(&path, b"one").unwrap());
        assert!(write_if_changed(&path, b"two").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.txt")]);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file.txt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |_| anyhow::bail!("disk on fire")).unwrap_err();
        assert!(format!("{err:#}").contains("disk on fire"), "{err:#}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn hashes_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let bytes = vec![7u8; 300_000];
        fs::write(&path, &bytes).unwrap();
        assert_eq!(hash_file(&path).unwrap(), sha256(&bytes));
    }
}
