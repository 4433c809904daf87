//! The records kaipo prints: one per interval, with a stable JSON shape (see the README's
//! "JSON output" section, which documents every field).

use serde::{Deserialize, Serialize};

use crate::{accounting::Lost, collect::BackendKind};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IntervalRecord {
    /// Wall-clock end of the interval, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Length of the interval in milliseconds.
    pub interval_ms: u64,
    pub backend: BackendKind,
    pub interfaces: Vec<InterfaceRecord>,
    pub processes: Vec<ProcessRecord>,
    pub connections: Vec<ConnectionRecord>,
    pub unattributed: Bytes,
    pub lost: Lost,
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
    pub container: Option<String>,
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
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bytes {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}
