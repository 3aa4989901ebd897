//! Rendered pages, kept for a few seconds.
//!
//! A package page costs four database queries and the home page several
//! scans of every version; the same page asked again within [`PAGE_TTL`] is
//! served from memory. Entries carry the cache's *generation*, which every
//! write through this server bumps (publish, yank, owners: any successful
//! request that is not a GET, and each write of download counts), so this
//! server's own changes show at once; a change made behind its back (a
//! `publish` into the registry directory, another server on the same
//! PostgreSQL database) shows within [`PAGE_TTL`] — no staler than the
//! download counts, which are written in batches anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// How long a rendered page is served again before it is rendered anew.
pub(crate) const PAGE_TTL: Duration = Duration::from_secs(5);
/// Bound on the bytes held: 128 MiB is some 10,000 package pages. When it is
/// reached, expired entries go first, then everything (a page view then
/// costs one render again).
const MAX_BYTES: usize = 128 << 20;

#[derive(Default)]
pub(crate) struct PageCache {
    generation: AtomicU64,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    bytes: usize,
}

struct Entry {
    generation: u64,
    at: Instant,
    body: Bytes,
}

impl PageCache {
    /// Read this before rendering and pass it to [`PageCache::put`]: a write
    /// that lands while the page renders then leaves the entry stale.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every page rendered so far is stale.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The page for `key` if it was rendered in this generation within [`PAGE_TTL`].
    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let generation = self.generation();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.by_key.get(key)?;
        (entry.generation == generation && entry.at.elapsed() < PAGE_TTL).then(|| entry.body.clone())
    }

    pub(crate) fn put(&self, key: String, generation: u64, body: Bytes) {
        if body.len() > MAX_BYTES / 64 {
            return; // one page may not push out the rest
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.bytes + body.len() > MAX_BYTES {
            let current = self.generation();
            entries.by_key.retain(|_, e| e.generation == current && e.at.elapsed() < PAGE_TTL);
            entries.bytes = entries.by_key.values().map(|e| e.body.len()).sum();
            if entries.bytes + body.len() > MAX_BYTES {
                entries.by_key.clear();
                entries.bytes = 0;
            }
        }
        entries.bytes += body.len();
        if let Some(old) = entries.by_key.insert(key, Entry { generation, at: Instant::now(), body }) {
            entries.bytes -= old.body.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_makes_every_page_stale() {
        let cache = PageCache::default();
        let generation = cache.generation();
        cache.put("/".into(), generation, Bytes::from_static(b"home"));
        assert_eq!(cache.get("/").as_deref(), Some(&b"home"[..]));
        assert!(cache.get("/prompts/x").is_none());
        cache.invalidate();
        assert!(cache.get("/").is_none());
    }

    #[test]
    fn a_page_rendered_across_a_write_is_not_served() {
        let cache = PageCache::default();
        let before = cache.generation();
        cache.invalidate(); // a publish while the page rendered
        cache.put("/".into(), before, Bytes::from_static(b"old"));
        assert!(cache.get("/").is_none());
    }

    #[test]
    fn bytes_stay_bounded() {
        let cache = PageCache::default();
        let page = Bytes::from(vec![b'x'; MAX_BYTES / 64]);
        for i in 0..200 {
            cache.put(format!("/p{i}"), cache.generation(), page.clone());
            let held = cache.entries.lock().unwrap().bytes;
            assert!(held <= MAX_BYTES, "{held} bytes held after {i} pages");
        }
        assert!(cache.get("/p199").is_some(), "the newest page is kept");
        // Replacing a key does not count its bytes twice.
        cache.invalidate();
        cache.put("/p199".into(), cache.generation(), Bytes::from_static(b"new"));
        assert_eq!(cache.get("/p199").as_deref(), Some(&b"new"[..]));
        cache.put("/too-big".into(), cache.generation(), Bytes::from(vec![0u8; MAX_BYTES / 32]));
        assert!(cache.get("/too-big").is_none());
    }
}
