//! What differs between the operating systems kaipo runs on: one [`Platform`] implementation
//! per `target_os`, chosen at compile time as [`Host`], and [`StopSignals`], the ways each
//! system asks a process to stop. Code shared by every platform asks these rather than calling
//! Unix or Windows APIs itself; what exists on one system only sits in modules compiled for it
//! alone. `cargo xtask clippy` checks the macOS and Windows builds, so nothing Linux-only leaks
//! into them.

use std::path::PathBuf;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(unix)]
mod unix;
#[cfg(target_os = "windows")]
mod windows;

#[cfg(target_os = "linux")]
pub use self::linux::Linux as Host;
#[cfg(target_os = "macos")]
pub use self::macos::MacOs as Host;
#[cfg(unix)]
pub use self::unix::{with_name_buffer, StopSignals};
#[cfg(target_os = "windows")]
pub use self::windows::{StopSignals, Windows as Host};

/// Hands the memory the allocator holds free back to the system once there is much of it.
/// glibc keeps what a large interval freed (a burst of new sockets makes a record of every one
/// of them) for reuse, so without this a daemon's resident size stays at its largest
/// interval's for good. The few megabytes an ordinary interval frees stay: handing them back
/// every interval only has the next one fault them in again. What counts is free memory that
/// grew since its lowest point, not the total: a heap whose free space is scattered keeps a
/// large total after any trim, which would otherwise trim (and fault back) page by page every
/// interval.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static LOWEST_FREE: AtomicUsize = AtomicUsize::new(usize::MAX);
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let free = unsafe { libc::mallinfo2() }.fordblks;
        let (trim, lowest) = trim_decision(free, LOWEST_FREE.load(Ordering::Relaxed));
        let lowest = if trim {
            // SAFETY: malloc_trim only returns free pages of the allocator's own heaps, and
            // mallinfo2 only reads its statistics.
            unsafe {
                libc::malloc_trim(0);
                libc::mallinfo2().fordblks
            }
        } else {
            lowest
        };
        LOWEST_FREE.store(lowest, Ordering::Relaxed);
    }
}

/// Free memory that grew by this much over its lowest point since the last trim is worth
/// handing back.
const WORTH_TRIMMING: usize = 8 << 20;

/// Whether to trim with `free` bytes free and `lowest` the least seen since the last trim, and
/// the lowest point to keep when not trimming.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn trim_decision(free: usize, lowest: usize) -> (bool, usize) {
    let lowest = lowest.min(free);
    (free - lowest > WORTH_TRIMMING, lowest)
}

/// One operating system's answers.
pub trait Platform {
    /// The system's name, as the user knows it.
    const NAME: &'static str;
    /// Why the eBPF backend cannot exist here at all; `None` where it is tried.
    const NO_EBPF: Option<&'static str>;
    /// Whether process details (command line, start time, container, network namespace) can
    /// be read for any pid (Linux: `/proc`). Elsewhere a process is known by what the socket
    /// tables said of it, and counts as exited only when the collector reports its exit.
    const PROCESS_DETAILS: bool;

    /// Whether this process has the system's full privileges: root on Unix, an elevated
    /// administrator on Windows.
    fn is_superuser() -> bool;

    /// The folder for a user's own configuration, when the environment names one.
    fn user_config_dir() -> Option<PathBuf>;
}

#[cfg(test)]
mod tests {
    use super::trim_decision;

    const MIB: usize = 1 << 20;

    #[test]
    fn trims_only_when_free_memory_grew_well_past_its_lowest_point() {
        // The first look sets the lowest point.
        assert_eq!(trim_decision(20 * MIB, usize::MAX), (false, 20 * MIB));
        // Scattered free space that stays as it is: never trimmed again, however large.
        assert_eq!(trim_decision(20 * MIB, 20 * MIB), (false, 20 * MIB));
        // It falls, then grows back by less than 8 MiB over the new low: kept.
        assert_eq!(trim_decision(15 * MIB, 20 * MIB), (false, 15 * MIB));
        assert_eq!(trim_decision(23 * MIB, 15 * MIB), (false, 15 * MIB));
        // A large interval frees more than 8 MiB over the low: trimmed.
        assert_eq!(trim_decision(24 * MIB, 15 * MIB), (true, 15 * MIB));
    }
}
