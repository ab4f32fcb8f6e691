//! How the allocator keeps the memory of one invocation for the next.
//!
//! glibc serves an allocation above its mmap threshold with a fresh mapping and unmaps it when
//! it is freed. The threshold rises to the largest such block freed so far, but every batch is
//! a little different in size, so a full batch's body (the 5.8 MB lambda_runtime collects it
//! into) kept landing just above it: every invocation mapped it anew and took a page fault on
//! each of its pages while copying the event in, before it could decode. With
//! a fixed threshold above any event (Lambda caps them at 6 MB) and freed memory kept for
//! reuse, later invocations write into pages that are already there. What this keeps is the
//! process's peak, which Lambda bills for anyway (BENCHMARKS.md has the peak RSS).

/// Blocks up to this size come from the heap, so they are reused: above the 6 MB event cap.
const MMAP_THRESHOLD_BYTES: i32 = 64 << 20;

/// Freed memory at the top of the heap is given back only above this.
const TRIM_THRESHOLD_BYTES: i32 = 128 << 20;

/// Lambda's cap on a synchronous invocation's payload.
const LAMBDA_MAX_EVENT_BYTES: i32 = 6 << 20;
const _: () = assert!(MMAP_THRESHOLD_BYTES > LAMBDA_MAX_EVENT_BYTES);
const _: () = assert!(TRIM_THRESHOLD_BYTES > MMAP_THRESHOLD_BYTES);

/// Sets the allocator up to reuse an invocation's large buffers. Returns whether it took the
/// settings (only glibc has them; elsewhere nothing changes).
pub fn reuse_large_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets two of glibc's allocator parameters, under its own lock; no
        // pointer is passed or returned.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings() {
        assert!(reuse_large_buffers());
    }
}
