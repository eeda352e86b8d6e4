//! Allocator settings for the tunnel's large buffers.
//!
//! glibc's malloc serves a block above its mmap threshold (128 KiB at first) with a fresh mapping
//! and unmaps it when freed; it raises the threshold as such blocks are freed, but then trims the
//! top of the heap whenever twice that is free. A large transfer allocates and frees buffers of
//! up to a frame's size ([`crate::tuning::MAX_FRAME_SIZE`], WebSocket messages up to
//! [`crate::tuning::MAX_WS_MESSAGE`]) for every chunk, in hyper, h2 and tungstenite alike, so their
//! pages were faulted in again and again: about a tenth of both programs' CPU during a 1 GiB
//! transfer (docs/benchmarks.md). Fixed limits keep those blocks on the heap and the heap's top
//! resident. Memory is only kept, never taken: an idle process is as small as before, and one
//! after a transfer holds at most what the transfer's peak held.

/// Blocks up to this size come from the heap: above the largest message the tunnel carries.
pub const MMAP_THRESHOLD: usize = 4 << 20;
/// Free memory at the top of the heap is returned to the kernel only beyond this.
pub const TRIM_THRESHOLD: usize = 4 << 20;

/// Applies [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`]; call first thing in `main`, before any
/// other thread exists. Does nothing where the C library is not glibc.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets two parameters of glibc's allocator, with valid values; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}
