//! Scratch buffers reused across layers and steps.
//!
//! The fused layers need the same large temporaries in every layer of every
//! step (context, activations, their gradients, the attention
//! probabilities). `vec![0.0; n]` clears each one although the kernel that
//! fills it writes every element: on a Xeon profile of a training step,
//! memset alone was 3.3 % of the time. A [`Scratch`] comes from a small pool
//! and goes back to it when dropped, so a buffer is cleared once, when it is
//! first allocated, and never again.
//!
//! Hand-written rather than a crate: the pool is a Vec under a mutex, taken
//! from a handful of times per layer; the crates that pool buffers (e.g.
//! object-pool) either zero them again or hand out fixed sizes.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers kept for reuse at most; a step holds about five per layer alive
/// at once (the saved probabilities of every layer among them).
const POOL_LIMIT: usize = 48;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// `len` f32 values whose contents are whatever an earlier user left (zero
/// when new). Only for a kernel that writes every element before anything
/// reads it.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    pub(crate) fn take(len: usize) -> Scratch {
        let reused = POOL.lock().ok().and_then(|mut pool| {
            // The smallest buffer that fits, so that large ones stay free
            // for large requests.
            let best = pool.iter().enumerate().filter(|(_, b)| b.len() >= len).min_by_key(|(_, b)| b.len())?.0;
            Some(pool.swap_remove(best))
        });
        let mut buf = reused.unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Scratch { buf, len }
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < POOL_LIMIT {
                pool.push(buf);
            }
        }
    }
}
