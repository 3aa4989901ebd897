//! Per-token norms of a version's prompt, read from its blob once and kept:
//! a blob is content-addressed, so what was computed for a checksum never
//! goes stale.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use registry_index::Checksum;

use crate::package::LoadedPackage;

/// Norms by checksum; emptied when it reaches this many entries (a simple
/// bound: a page view costs one blob read again after that).
const MAX_CACHED: usize = 4096;

#[derive(Default)]
pub(crate) struct NormCache {
    by_cksum: Mutex<HashMap<Checksum, Arc<Vec<f32>>>>,
}

impl NormCache {
    /// The L2 norm of each prompt row of the blob at `path`; empty for a prompt set.
    pub(crate) async fn get(&self, cksum: &Checksum, path: PathBuf) -> Result<Arc<Vec<f32>>> {
        if let Some(hit) = self.by_cksum.lock().unwrap_or_else(|e| e.into_inner()).get(cksum) {
            return Ok(hit.clone());
        }
        let norms = tokio::task::spawn_blocking(move || -> Result<Vec<f32>> {
            let package = LoadedPackage::read(&path)?;
            Ok(package.prompt.map(|p| row_norms(&p.to_f32_vec(), p.hidden())).unwrap_or_default())
        })
        .await??;
        let norms = Arc::new(norms);
        let mut cache = self.by_cksum.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(cksum.clone(), norms.clone());
        Ok(norms)
    }
}

fn row_norms(values: &[f32], hidden: usize) -> Vec<f32> {
    if hidden == 0 {
        return Vec::new();
    }
    values.chunks(hidden).map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn row_norms() {
        assert_eq!(super::row_norms(&[3.0, 4.0, 0.0, 1.0], 2), vec![5.0, 1.0]);
        assert!(super::row_norms(&[], 0).is_empty());
    }
}
