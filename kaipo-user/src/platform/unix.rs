//! What Linux and macOS share: POSIX signals, user ids and the user and group database.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, the two ways kaipo is asked to stop.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs the handlers: from here on, the signals no longer kill the process.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next request to stop.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `$XDG_CONFIG_HOME`, else `~/.config`: the XDG convention, which command-line tools follow
/// on macOS too.
pub fn xdg_config_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))
}

/// Runs one reentrant lookup in the user or group database (`getpwnam_r`, `getgrnam_r`) with a
/// string buffer that grows while the call answers ERANGE, up to 1 MiB. `call` gets the buffer
/// and returns the call's result with what it read from the entry (which points into the
/// buffer, so it must be copied out inside `call`).
pub fn with_name_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, T),
) -> io::Result<T> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let (ret, found) = call(&mut buf);
        if ret == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        return Ok(found);
    }
}
