//! Collectors: where kaipo's raw counters come from.
//!
//! Every backend produces the same [`KernelSample`] and lifecycle [`Event`]s, so everything
//! downstream (accounting, `watch`, the daemon) is indifferent to how they were gathered.

#[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
pub mod backend;
#[cfg(target_os = "linux")]
pub mod ebpf;
pub mod iface;
#[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
pub mod pcap;

use std::fmt;

pub use kaipo_common::{counter, Event, FlowCounters, FlowKey, IfaceCounters, SockStats};

/// Which collector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Ebpf,
    Pcap,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ebpf => "ebpf",
            Self::Pcap => "pcap",
        })
    }
}

/// A monitored interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
}

/// Cumulative counters read at one moment. Deltas are the accountant's business.
#[derive(Clone, Debug, Default)]
pub struct KernelSample {
    /// Per monitored interface, summed over CPUs.
    pub ifaces: Vec<(Interface, IfaceCounters)>,
    /// Per socket cookie.
    pub sockets: Vec<(u64, SockStats)>,
    /// The kernel's `counter::*` slots, summed over CPUs.
    pub counters: [u64; counter::COUNT as usize],
    /// Live entries in the flow map, when it was counted for this sample.
    pub flows_live: Option<u64>,
    /// Per flow on a monitored interface, its link-layer totals (eBPF: the flow map and the
    /// flow cache added up; pcap: the captured frames), when the backend tracks flows.
    pub flows: Vec<(FlowKey, FlowCounters)>,
    /// Monitored interfaces that appeared or went away since the last sample, in words.
    pub iface_changes: Vec<String>,
    /// Frames the capture dropped since start (pcap backend: buffer full or interface drops).
    pub capture_drops: u64,
    /// Owner reports that did not come through the event stream (eBPF: the ring buffer was
    /// full and the kernel kept them in `OWNER_SPILL`), as owner events.
    pub owners: Vec<Event>,
}

/// How full the kernel's maps are, as of the last sample (eBPF backend): a map that fills
/// stops counting new sockets or evicts flows, so this is what to watch before `lost` moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapUsage {
    /// Sockets counted in the kernel (live sockets with traffic, and closed ones not yet
    /// read), in slots and in the shared socket map, and the room of both together.
    pub sockets: u64,
    pub sockets_max: u64,
    /// Entries in the flow map and its capacity; absent when flows are not tracked.
    pub flows: Option<u64>,
    pub flows_max: Option<u64>,
}

/// Something that runs, but not as well as it could, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Degradation {
    pub what: String,
    pub why: String,
}

impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.why)
    }
}
