//! What can stop the pcap collector, each with what the user can do about it.

use std::io;

#[cfg(target_os = "linux")]
use crate::collect::iface::IfaceError;

#[cfg(target_os = "linux")]
const PERMISSION_HINT: &str = "run kaipo as root, or give it the capabilities with \
                               `setcap cap_net_raw,cap_net_admin=eip $(command -v kaipo)`";
#[cfg(target_os = "macos")]
const PERMISSION_HINT: &str = "run kaipo with sudo, or give your user read access to /dev/bpf* \
                               (Wireshark's ChmodBPF does that)";
#[cfg(target_os = "windows")]
const PERMISSION_HINT: &str = "run kaipo from an administrator shell, or reinstall Npcap without \
                               \"Restrict Npcap driver's access to Administrators only\"";
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
const PERMISSION_HINT: &str = "run kaipo as root";

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("capturing packets on {iface} needs root or the CAP_NET_RAW capability; {PERMISSION_HINT} ({detail})")]
    NotPermitted { iface: String, detail: String },
    #[error(
        "interface '{name}' cannot be captured on: it does not exist here; interfaces: {known}"
    )]
    NoSuchDevice { name: String, known: String },
    #[error("no interface to capture on: none is up except loopback; name one with --iface")]
    NoInterfaces,
    #[error(
        "libpcap cannot list the capture devices ({0}); is libpcap (Npcap on Windows) installed \
         and working?"
    )]
    Library(String),
    #[error("the capture filter {filter:?} is not valid pcap filter syntax (see `man pcap-filter`): {detail}")]
    Filter { filter: String, detail: String },
    #[error("opening a capture on {iface} failed: {detail}")]
    Open { iface: String, detail: String },
    #[error("the capture on {iface} stopped: {detail}")]
    CaptureStopped { iface: String, detail: String },
    #[error("cannot start a capture thread: {0}")]
    Thread(io::Error),
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Iface(#[from] IfaceError),
}

/// Sorts libpcap's failure to create or activate a capture into what the user can act on.
/// libpcap reports activation errors as text only (the `pcap` crate drops the error code), so
/// this goes by the wording its platform back ends use.
pub fn classify_open(iface: &str, err: &::pcap::Error) -> PcapError {
    let detail = err.to_string();
    let lower = detail.to_ascii_lowercase();
    if [
        "permission",
        "not permitted",
        "eperm",
        "eacces",
        "access is denied",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return PcapError::NotPermitted {
            iface: iface.to_owned(),
            detail,
        };
    }
    if [
        "no such device",
        "doesn't exist",
        "does not exist",
        "no such file",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return PcapError::NoSuchDevice {
            name: iface.to_owned(),
            known: "see `kaipo doctor` or `ip link`".to_owned(),
        };
    }
    PcapError::Open {
        iface: iface.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_error(text: &str) -> ::pcap::Error {
        ::pcap::Error::PcapError(text.to_owned())
    }

    #[test]
    fn libpcap_wording_becomes_an_actionable_error() {
        let perm = classify_open(
            "eth0",
            &pcap_error("eth0: You don't have permission to perform this capture on that device (socket: Operation not permitted)"),
        );
        assert!(matches!(perm, PcapError::NotPermitted { .. }), "{perm:?}");
        assert!(perm.to_string().contains("CAP_NET_RAW"), "{perm}");
        let missing = classify_open(
            "eth9",
            &pcap_error("eth9: No such device exists (SIOCGIFHWADDR: No such device)"),
        );
        assert!(
            matches!(missing, PcapError::NoSuchDevice { .. }),
            "{missing:?}"
        );
        let other = classify_open("eth0", &pcap_error("eth0: That device is not up"));
        assert!(matches!(other, PcapError::Open { .. }), "{other:?}");
        assert!(other.to_string().contains("not up"), "{other}");
    }
}
