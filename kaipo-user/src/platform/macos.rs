use std::path::PathBuf;

use super::{unix, Platform};

pub struct MacOs;

impl Platform for MacOs {
    const NAME: &'static str = "macOS";
    const NO_EBPF: Option<&'static str> =
        Some("eBPF is Linux-only; on macOS kaipo counts with libpcap, through /dev/bpf*");
    // No /proc: names and users come from lsof's listing of each socket's process.
    const PROCESS_DETAILS: bool = false;

    fn is_superuser() -> bool {
        unix::is_root()
    }

    fn user_config_dir() -> Option<PathBuf> {
        unix::xdg_config_dir()
    }
}
