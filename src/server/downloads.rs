//! Download counting for the blob endpoint, in batches: a request only adds
//! one to an in-memory tally (a short mutex hold, no I/O), and a background
//! task writes the tallies to the database every interval in one
//! transaction. A server killed between two writes loses at most one
//! interval's counts; several server processes on one PostgreSQL database
//! each add their own tallies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry_index::Checksum;

use super::pages::PageCache;
use crate::registry::LocalRegistry;

/// Downloads since the last write, by artifact checksum.
#[derive(Debug, Default)]
pub(crate) struct DownloadCounter {
    pending: Mutex<HashMap<Checksum, u64>>,
}

impl DownloadCounter {
    pub(crate) fn record(&self, cksum: &Checksum) {
        // A poisoned lock only means another request panicked mid-insert;
        // the map is still a valid tally.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry(cksum.clone()).or_insert(0) += 1;
    }

    fn take(&self) -> HashMap<Checksum, u64> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back counts whose write failed, for the next try.
    fn restore(&self, counts: Vec<(Checksum, u64)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (cksum, n) in counts {
            *pending.entry(cksum).or_insert(0) += n;
        }
    }

    /// Writes the tallies so far (and so makes the cached pages, which show
    /// the counts, stale); on failure they stay pending.
    pub(crate) async fn flush(&self, registry: &LocalRegistry, pages: &PageCache) {
        let counts: Vec<(Checksum, u64)> = self.take().into_iter().collect();
        if counts.is_empty() {
            return;
        }
        match registry.record_downloads(&counts).await {
            Ok(()) => pages.invalidate(),
            Err(e) => {
                tracing::warn!("could not record {} download count(s), retrying later: {e:#}", counts.len());
                self.restore(counts);
            }
        }
    }
}

/// Flushes `counter` every `interval`, forever (spawned on the database runtime).
pub(crate) async fn flush_loop(
    counter: Arc<DownloadCounter>,
    registry: LocalRegistry,
    pages: Arc<PageCache>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        counter.flush(&registry, &pages).await;
    }
}
