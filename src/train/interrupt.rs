//! Ctrl-C handling for training: the first SIGINT sets a flag the loop
//! checks after each step (it then saves `last.safetensors` and returns);
//! a second SIGINT exits at once with status 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap and _exit.
    if let Some(flag) = FLAG.get() {
        if flag.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe and ends the process.
            unsafe { libc::_exit(130) }
        }
    }
}

/// Install the handler (once per process) and return the flag to pass as
/// `TrainOptions::interrupt`. On non-Unix targets the flag is never set.
pub fn ctrl_c_flag() -> Arc<AtomicBool> {
    let mut fresh = false;
    let flag = FLAG
        .get_or_init(|| {
            fresh = true;
            Arc::new(AtomicBool::new(false))
        })
        .clone();
    #[cfg(unix)]
    if fresh {
        // SAFETY: the handler only touches an initialised static atomic.
        unsafe {
            libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }
    flag.store(false, Ordering::SeqCst);
    flag
}
