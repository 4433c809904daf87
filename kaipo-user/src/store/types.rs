//! What goes into the store and what comes out of it. The daemon writes [`IntervalBatch`]es;
//! `kaipo report`, `kaipo status` and the daemon's query API read [`Report`]s.

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
    /// Container id, or the cgroup path when the process is in no container.
    pub container: Option<String>,
    /// Remote IP address as text (`10.0.0.1`, `2001:db8::1`), empty when unknown or many.
    pub remote: String,
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

/// What a report groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    App,
    Process,
    Interface,
    Remote,
    Service,
    User,
    Container,
}

/// Resolution tiers, finest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Interval,
    Minute,
    Hour,
    Day,
}

/// A history question.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Query {
    /// Inclusive start and exclusive end, milliseconds since the Unix epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    pub by: Dimension,
    /// Rows in the answer, largest total first; 0 means all.
    pub top: usize,
    /// Only traffic of processes of this user (visibility for unprivileged callers). Interface
    /// rows are not per user and are left out when this is set.
    pub uid: Option<u32>,
}

/// One row of a report: a key of the chosen dimension and its totals over the range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    pub key: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Total traffic in one time bucket, for charts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub ts_ms: i64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub from_ms: i64,
    pub to_ms: i64,
    pub by: Option<Dimension>,
    /// The tier the figures came from.
    pub tier: Option<Tier>,
    pub rows: Vec<ReportRow>,
    /// Sum over every row (not only the top ones).
    pub total: ReportRow,
    /// Traffic over time in the tier's buckets (interface traffic when `by` is interface,
    /// process traffic otherwise).
    pub series: Vec<SeriesPoint>,
    /// The ten largest apps and remotes over the range, for the HTML charts.
    pub top_apps: Vec<ReportRow>,
    pub top_remotes: Vec<ReportRow>,
}
