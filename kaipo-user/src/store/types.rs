//! What goes into the store: the daemon writes [`IntervalBatch`]es. What comes out of it, the
//! [`Query`] and [`Report`] types, belong to the one model (`crate::model`) and are
//! re-exported here so that the store's callers find them where they always were.

use serde::{Deserialize, Serialize};

/// Everything one daemon interval adds to history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalBatch {
    /// End of the interval, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub interval_ms: u32,
    pub traffic: Vec<TrafficRow>,
    pub interfaces: Vec<IfaceRow>,
}

/// IP-layer traffic of one process to one remote address and service during an interval.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRow {
    /// Executable name, or the command name when the executable is unknown;
    /// [`UNATTRIBUTED_APP`] for traffic of sockets without a known owner.
    pub app: String,
    pub pid: u32,
    /// Process start time in clock ticks since boot (0 when unknown): with `pid`, it tells
    /// apart two processes that had the same pid at different times.
    pub start_time: u64,
    pub cmdline: String,
    pub uid: u32,
    pub user: Option<String>,
    /// Container id; `None` for a process on the host. (A cgroup path, which older writers
    /// put here for host processes, is stored as no container.)
    pub container: Option<String>,
    /// The container's name, the Kubernetes pod and namespace, the systemd unit; `None` when
    /// unknown.
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Remote IP address as text (`10.0.0.1`, `2001:db8::1`), empty when unknown or many.
    pub remote: String,
    /// The name the process looked the remote up by (from DNS answers), when known.
    #[serde(default)]
    pub remote_name: Option<String>,
    /// Service name from protocol and port (`dns`, `https`, `tcp/8080`, ...).
    pub service: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Link-layer traffic of one interface during an interval.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceRow {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

pub const UNATTRIBUTED_APP: &str = "(unattributed)";

pub use crate::model::{
    Dimension, Period, PeriodRow, Periods, ProcessFields, Query, Report, ReportRow, SeriesPoint,
    Tier,
};
