use std::{io, path::PathBuf};

use super::Platform;

pub struct Windows;

impl Platform for Windows {
    const NAME: &'static str = "Windows";
    const NO_EBPF: Option<&'static str> =
        Some("eBPF is Linux-only; on Windows kaipo counts with libpcap (Npcap)");
    // The IP helper tables give pids only.
    const PROCESS_DETAILS: bool = false;

    /// Npcap decides who may capture (its "administrators only" install option), not the
    /// process token, so nothing here asks for elevation and nothing checks for it.
    fn is_superuser() -> bool {
        false
    }

    /// `%APPDATA%`, where Windows keeps a user's roaming settings.
    fn user_config_dir() -> Option<PathBuf> {
        std::env::var_os("APPDATA")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }
}

/// Ctrl-C (or Ctrl-Break) in the console: Windows has no SIGTERM.
pub struct StopSignals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
}

impl StopSignals {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            ctrl_c: tokio::signal::windows::ctrl_c()?,
            ctrl_break: tokio::signal::windows::ctrl_break()?,
        })
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.ctrl_c.recv() => {}
            _ = self.ctrl_break.recv() => {}
        }
    }
}
