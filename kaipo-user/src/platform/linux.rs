use std::path::PathBuf;

use super::{unix, Platform};

pub struct Linux;

impl Platform for Linux {
    const NAME: &'static str = "Linux";
    const NO_EBPF: Option<&'static str> = None;
    const PROCESS_DETAILS: bool = true;

    fn is_superuser() -> bool {
        unix::is_root()
    }

    fn user_config_dir() -> Option<PathBuf> {
        unix::xdg_config_dir()
    }
}
