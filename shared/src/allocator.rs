//! glibc's `malloc`, told to give large blocks back to the system as soon as they are freed.
//!
//! glibc serves a request below its *mmap threshold* from a per-thread arena and keeps what is
//! freed there for that arena's later use; above it, a block is its own mapping, returned to the
//! system by `free`. The threshold starts at 128 KiB and then rises to the size of any mapped
//! block freed (up to 32 MiB), so after the first large webhook almost everything came from the
//! arenas.
//!
//! That mattered for large events: lapin copies a published body into frames of
//! [`crate::amqp::FRAME_MAX`] bytes, allocated on the request's thread and freed on lapin's I/O
//! thread once written. The freed frames went back to the request thread's arena, and each of
//! the ingester's HTTP worker threads ended up holding a large body's worth of them beside the
//! bodies in flight: two concurrent 20 MiB events peaked at 93 MiB of RSS. With the threshold
//! fixed at the frame size, every frame is a mapping of its own, unmapped once written, and the
//! same two events peak at 75 MiB (`bench/results.md`). Smaller blocks — everything a 2 KiB
//! webhook allocates — stay in the arenas, so the hot path makes no extra system calls.

/// Blocks of this size or more are mapped on their own and unmapped when freed: the AMQP frame
/// size, so that every frame of a large body counts.
pub const MMAP_THRESHOLD: usize = crate::amqp::FRAME_MAX as usize;

/// Applies [`MMAP_THRESHOLD`]. Call it first thing in `main`, before any thread is started;
/// elsewhere than on glibc it does nothing. Returns false if glibc refused the setting.
#[allow(unsafe_code)]
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes the allocator's parameters (under its own lock); it is
        // called before the binary starts any thread, and `M_MMAP_THRESHOLD` takes any value up
        // to 32 MiB.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_threshold() {
        assert!(tune());
    }
}
