//! The daemon's terms with glibc's allocator, which it links statically.
//! Owns two settings made once at start and a trim after bursts.
//!
//! Why: the daemon lives for months, and a burst of large or numerous
//! allocations (a storm of oversized or hostile requests, one 4 MiB gRPC
//! message decoded into half a million strings) used to leave its RSS where
//! the burst took it (5 MB grew to 21 MB over 90 hostile requests, to
//! 128 MB in a later audit), for two reasons:
//! - glibc raises its mmap threshold each time a large mmap'ed block is
//!   freed (up to 32 MiB), so later large buffers come from the heap and
//!   stay there after they are freed. Fixing the threshold keeps every
//!   block over 128 KiB in its own mapping, returned to the kernel on free.
//! - Freed small blocks stay in the arenas, which glibc shrinks only from
//!   the top. [`spawn_trimmer`] returns their whole free pages every few
//!   seconds, but only when enough is free to be worth it, so an idle
//!   daemon pays one cheap check per period.
//!
//! The arenas are also capped at two: the daemon runs two runtime workers,
//! and every extra arena (glibc makes up to eight per core, one per
//! blocking thread that allocates) keeps its own free memory.

use std::time::Duration;

/// How often [`spawn_trimmer`] looks at the allocator's free memory.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

/// Free bytes held by the allocator above which it is trimmed.
const TRIM_ABOVE_BYTES: usize = 1 << 20;

/// Blocks of at least this size get their own mapping (glibc's default
/// threshold, but fixed: see the module header).
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

const MAX_ARENAS: i32 = 2;

/// Sets the allocator's terms; call before the runtime starts threads.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets glibc's allocator parameters; it is called
    // before any other thread exists.
    unsafe {
        use nix::libc::{M_ARENA_MAX, M_MMAP_THRESHOLD, mallopt};
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        mallopt(M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Free memory the allocator holds, in bytes (0 where it cannot say).
pub fn free_bytes() -> usize {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 reads the allocator's statistics under its
        // own locks.
        let info = unsafe { nix::libc::mallinfo2() };
        info.fordblks
    }
    #[cfg(not(target_env = "gnu"))]
    {
        0
    }
}

/// Returns the allocator's free pages to the kernel; true when it gave
/// any back.
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes the allocator's own locks.
        unsafe { nix::libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Trims the allocator every [`TRIM_PERIOD`] while it holds more than
/// [`TRIM_ABOVE_BYTES`] free (needs a runtime).
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if free_bytes() > TRIM_ABOVE_BYTES {
                trim();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_env = "gnu")]
    fn freed_memory_is_seen_and_given_back() {
        // Blocks of two pages each, every other one freed: they cannot
        // merge into the top of the heap, so only a trim returns them.
        let mut blocks: Vec<Vec<u8>> = (0..2_000).map(|i| vec![i as u8; 8192]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter().step_by(2).cloned().collect();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        drop(blocks);
        assert!(free_bytes() > TRIM_ABOVE_BYTES, "{}", free_bytes());
        assert!(trim(), "malloc_trim gave nothing back");
        drop(kept);
    }
}
