//! Syslog delivery: one RFC 5424 line per notification to the syslog daemon's Unix datagram
//! socket (`/dev/log`: journald or rsyslog). Sent without waiting: a syslog daemon that is
//! behind loses the line (counted) rather than holding up the pipeline.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

pub struct Syslog {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    pub dropped: AtomicU64,
}

impl Syslog {
    pub fn new(path: &Path) -> Syslog {
        Syslog {
            socket: None,
            path: path.to_owned(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Connects on first use and again after a failure: the syslog daemon may start (or
    /// restart) after kaipo.
    pub fn send(&mut self, line: &str) {
        if self.socket.is_none() {
            self.socket = UnixDatagram::unbound()
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    s.connect(&self.path)?;
                    Ok(s)
                })
                .map_err(|e| log::warn!("syslog {}: {e}", self.path.display()))
                .ok();
        }
        let sent = self.socket.as_ref().map(|s| s.send(line.as_bytes()));
        if !matches!(sent, Some(Ok(_))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.socket = None;
        }
    }
}
