//! glibc allocator tuning for tensor workloads.
//!
//! Every candle op allocates its output; with glibc's defaults large buffers
//! come straight from mmap and go back on free, so a training step spends a
//! quarter of its time in page faults and clearing fresh pages. Raising the
//! mmap and trim thresholds keeps those buffers in the heap for reuse (the
//! same as `MALLOC_MMAP_THRESHOLD_=32M MALLOC_TRIM_THRESHOLD_=16G
//! MALLOC_TOP_PAD_=256M`). Environment variables set by the user win.

/// Call once at start-up, before heavy allocation. No-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_user = |k: &str| std::env::var_os(k).is_some();
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before other threads allocate.
        unsafe {
            if !set_by_user("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            }
            if !set_by_user("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
            if !set_by_user("MALLOC_TOP_PAD_") {
                libc::mallopt(libc::M_TOP_PAD, 256 << 20);
            }
        }
    }
}
