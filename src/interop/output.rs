//! Writing a set of files into an output directory without leaving a
//! half-written result behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::fsutil::{sync_dir, write_atomic};

/// Refuses to replace existing files unless `force`; names what is in the way.
pub fn check_writable(out: &Path, names: &[&str], force: bool) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("{} exists and is not a directory", out.display());
    }
    let existing: Vec<String> =
        names.iter().map(|n| out.join(n)).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
    if !existing.is_empty() && !force {
        bail!("{} already exists; pass --force to overwrite", existing.join(" and "));
    }
    Ok(())
}

/// Writes `files` (name, bytes) into `out`. A new directory is staged next
/// to `out` and renamed into place, so it appears complete or not at all;
/// in an existing directory each file is replaced atomically.
pub fn write_files(out: &Path, files: &[(&str, &[u8])]) -> Result<Vec<PathBuf>> {
    let written = files.iter().map(|(name, _)| out.join(name)).collect();
    if out.is_dir() {
        for (name, bytes) in files {
            write_atomic(&out.join(name), bytes)?;
        }
        return Ok(written);
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let stage = parent.join(staging_name(out));
    fs::create_dir(&stage).with_context(|| format!("creating {}", stage.display()))?;
    let result = (|| {
        for (name, bytes) in files {
            write_atomic(&stage.join(name), bytes)?;
        }
        fs::rename(&stage, out).with_context(|| format!("moving {} into place at {}", stage.display(), out.display()))
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&stage);
        return Err(e);
    }
    sync_dir(&parent);
    Ok(written)
}

/// `.<name>.tmp-<pid>-<nanos>`: hidden, unique per process and moment.
fn staging_name(out: &Path) -> String {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!(".{name}.tmp-{}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_directory_appears_whole_and_existing_files_need_force() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("a/b");
        write_files(&out, &[("x", b"1"), ("y", b"2")]).unwrap();
        assert_eq!(fs::read(out.join("y")).unwrap(), b"2");
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("a")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("b")]);
        assert!(check_writable(&out, &["x"], false).unwrap_err().to_string().contains("--force"));
        assert!(check_writable(&out, &["x"], true).is_ok());
        assert!(check_writable(&out, &["z"], false).is_ok());
        write_files(&out, &[("x", b"3")]).unwrap();
        assert_eq!(fs::read(out.join("x")).unwrap(), b"3");
    }
}
