//! The interval record: what `kaipo watch --json` prints, what the daemon hands to its
//! subscribers and what the dashboard draws. The README's `kaipo watch` section documents
//! every field.

use serde::{Deserialize, Serialize};

use super::{Lost, UnattributedCauses};
use crate::collect::BackendKind;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IntervalRecord {
    /// Wall-clock end of the interval, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Length of the interval in milliseconds.
    pub interval_ms: u64,
    pub backend: BackendKind,
    pub interfaces: Vec<InterfaceRecord>,
    pub processes: Vec<ProcessRecord>,
    pub connections: Vec<ConnectionRecord>,
    /// IP-layer bytes of sockets whose owner was not found.
    pub unattributed: Bytes,
    /// Share of the monitored interfaces' bytes that belong to flows of known processes'
    /// sockets, 0.0 to 1.0; `None` when no bytes crossed them or the backend cannot tell.
    pub attributed_ratio: Option<f64>,
    /// The bytes behind `attributed_ratio`.
    #[serde(default)]
    pub attribution: Attribution,
    pub lost: Lost,
}

/// Link-layer bytes (both directions) on the monitored interfaces, split into those whose
/// flow belongs to a socket of a known process and the rest by cause. `attributed_bytes` plus
/// every cause equals `interface_bytes`, the flows' bytes and the bytes of frames in no flow
/// (both counted by the same program run for each frame). Interval by interval it can differ
/// from `interfaces[]` by the few frames in flight while the maps were read one after the
/// other; over a run they agree, unless flows found the flow map full (`lost.flow_map_full`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attribution {
    pub interface_bytes: u64,
    pub attributed_bytes: u64,
    pub unattributed: UnattributedCauses,
}

impl Attribution {
    /// `attributed_bytes / interface_bytes`, never above 1.
    pub fn ratio(&self) -> Option<f64> {
        (self.interface_bytes > 0).then(|| {
            (self.attributed_bytes.min(self.interface_bytes)) as f64 / self.interface_bytes as f64
        })
    }

    pub fn add(&mut self, other: &Self) {
        self.interface_bytes = self.interface_bytes.saturating_add(other.interface_bytes);
        self.attributed_bytes = self.attributed_bytes.saturating_add(other.attributed_bytes);
        self.unattributed.add(&other.unattributed);
    }
}

/// Link-layer counters of one interface over the interval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InterfaceRecord {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// IP-layer traffic of one process over the interval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    pub uid: u32,
    pub user: Option<String>,
    /// Container id (first 12 hex digits), from the cgroup path.
    pub container: Option<String>,
    /// The container's name as its runtime's records have it (Docker, Podman, containerd or
    /// CRI-O under the kubelet).
    #[serde(default)]
    pub container_name: Option<String>,
    /// The Kubernetes pod and its namespace.
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    /// The systemd unit the process belongs to (`nginx.service`, `user@1000.service`).
    #[serde(default)]
    pub unit: Option<String>,
    /// Path of the executable (`/proc/PID/exe`), when readable.
    #[serde(default)]
    pub exe: Option<String>,
    /// Inode of the process's network namespace (as in `/proc/PID/ns/net`), when known.
    pub netns: Option<u64>,
    /// The process exited during or before this interval.
    pub exited: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// IP-layer traffic of one socket over the interval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub pid: u32,
    pub proto: String,
    pub local: String,
    /// `*` for an unconnected socket that talked to more than one peer.
    pub remote: String,
    /// The name the process looked the remote address up by, from the DNS answers its
    /// network namespace received (CNAMEs followed back to the name asked for); null when
    /// no answer named it.
    #[serde(default)]
    pub remote_name: Option<String>,
    /// What the connection is for, named from its server side: the local port of a
    /// listening, accepted or bound server socket, the remote port of a client (`https`,
    /// `dns`, `tcp/5001`).
    #[serde(default)]
    pub service: String,
    /// The name of the configured network (`[names.networks]`) the remote address is in.
    #[serde(default)]
    pub network: Option<String>,
    /// TCP state as the kernel last saw it (`ESTABLISHED`, `CLOSE_WAIT`, ...); null for
    /// other protocols or when unknown.
    #[serde(default)]
    pub state: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bytes {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}
