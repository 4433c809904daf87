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
/// every interval only has the next one fault them in again.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 only reads the allocator's statistics; malloc_trim only returns free
    // pages of its own heaps.
    unsafe {
        const WORTH_TRIMMING: usize = 8 << 20;
        if libc::mallinfo2().fordblks > WORTH_TRIMMING {
            libc::malloc_trim(0);
        }
    }
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
