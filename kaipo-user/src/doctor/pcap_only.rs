//! macOS and Windows: no eBPF to try, so the check that matters is whether libpcap opens a
//! capture, tried for real on the interface kaipo would pick.

use super::{Check, Status};
use crate::{
    collect::pcap,
    platform::{Host, Platform as _},
};

/// One line saying why there is nothing to try.
pub fn ebpf_checks() -> Vec<Check> {
    let why = Host::NO_EBPF.unwrap_or("eBPF is not available here");
    vec![Check::bad(
        "eBPF",
        Status::Degraded,
        why,
        "none on this system: per-socket counting in the kernel needs Linux",
    )]
}

#[cfg(target_os = "macos")]
const INSTALL: &str = "libpcap ships with macOS; reinstall the system, or check /dev/bpf*";
#[cfg(target_os = "windows")]
const INSTALL: &str = "install Npcap (https://npcap.com) with \"WinPcap API-compatible mode\"";
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
const INSTALL: &str = "install libpcap";

/// Lists the capture devices, then opens (and closes) a capture on the first one kaipo would
/// monitor by default: permissions here are the BPF devices' modes (macOS) or Npcap's
/// install options (Windows), which only trying tells.
pub fn pcap_check() -> Check {
    let devices = match ::pcap::Device::list() {
        Ok(devices) => devices,
        Err(err) => {
            return Check::bad(
                "libpcap",
                Status::Degraded,
                format!("libpcap cannot list interfaces: {err}"),
                INSTALL,
            )
        }
    };
    let plan = pcap::devices::plan(&pcap::Options::default(), &devices);
    let Some((iface, _)) = plan.ok().and_then(|p| p.into_iter().next()) else {
        return Check::bad(
            "libpcap",
            Status::Degraded,
            "available, but no interface is up besides loopback",
            "bring an interface up, or name one with --iface",
        );
    };
    match pcap::devices::open(&iface.name, &pcap::Options::default()) {
        Ok(capture) => {
            drop(capture);
            Check::ok(
                "libpcap",
                format!("available, and this process may capture on {}", iface.name),
            )
        }
        Err(err) => Check::bad(
            "libpcap",
            Status::Degraded,
            format!("available, but capturing failed: {err}"),
            "see the error above for what to change",
        ),
    }
}

/// The daemon's confinement is Linux-only: one line saying so.
pub fn sandbox_checks() -> Vec<Check> {
    vec![Check::bad(
        "sandbox",
        Status::Degraded,
        "the daemon stays root: seccomp, Landlock and capabilities are Linux-only",
        "none on this system",
    )]
}
