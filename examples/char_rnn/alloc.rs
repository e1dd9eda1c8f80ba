//! Process-wide tuning of the CPU run: glibc's allocator and candle's thread count.

/// Keeps freed buffers in the heap instead of returning them to the kernel: training frees and
/// reallocates the same multi-megabyte tensors every step, and with glibc's defaults a third of
/// the CPU time went to page faults and `brk`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only tunes glibc's allocator; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Does nothing: the tuning is for glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// Sets candle's CPU thread count. Its worker pools spin while waiting: on 2 cores shared with
/// other work, 2 threads ran this model 3.7x slower than 1 (see the README).
pub fn set_threads(n: usize) {
    if n > 0 {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}
