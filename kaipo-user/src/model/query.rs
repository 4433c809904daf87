//! History questions and their answers: what `kaipo report`, `kaipo status`, the dashboard's
//! history view and the daemon's query API ask the store, and what it says back.

use serde::{Deserialize, Serialize};

use super::calendar::{month_start, next_month_start};

/// What a report groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    App,
    Process,
    Interface,
    Remote,
    Service,
    User,
    Container,
    /// The Kubernetes pod, `namespace/pod`.
    Pod,
    /// The systemd unit.
    Unit,
    /// The user's named network (`[names.networks]`) the remote address is in.
    Network,
    /// The host a daemon runs on: only in fleet reports (`--prometheus`), from the `host`
    /// label every metrics sample carries.
    Host,
}

impl Dimension {
    /// The name the command line and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Process => "process",
            Self::Interface => "interface",
            Self::Remote => "remote",
            Self::Service => "service",
            Self::User => "user",
            Self::Container => "container",
            Self::Pod => "pod",
            Self::Unit => "unit",
            Self::Network => "network",
            Self::Host => "host",
        }
    }
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

/// A calendar period of the per-period view (`kaipo report --per`), in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    Day,
    Month,
}

impl Period {
    /// Start of the period `ms` falls in.
    pub fn start(self, ms: i64) -> i64 {
        match self {
            Self::Hour => ms.div_euclid(3_600_000) * 3_600_000,
            Self::Day => ms.div_euclid(86_400_000) * 86_400_000,
            Self::Month => month_start(ms),
        }
    }

    /// Start of the period after the one `ms` falls in.
    pub fn next(self, ms: i64) -> i64 {
        match self {
            Self::Hour => self.start(ms).saturating_add(3_600_000),
            Self::Day => self.start(ms).saturating_add(86_400_000),
            Self::Month => next_month_start(ms),
        }
    }

    /// The finest store tier whose buckets never straddle two periods.
    pub fn tier(self) -> Tier {
        match self {
            Self::Hour => Tier::Hour,
            Self::Day | Self::Month => Tier::Day,
        }
    }
}

/// Totals per calendar period instead of (or besides) totals over the whole range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Periods {
    pub period: Period,
    /// Each period split into the traffic of each app (the `--top` largest of each).
    pub by_app: bool,
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
    /// Also answer with totals per period ([`Report::periods`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<Periods>,
}

/// Who a process row of a report is: the parts its `name[pid]` key is made of, and more.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFields {
    pub pid: u32,
    pub name: String,
    /// User name, or the uid as text when it has no name.
    pub user: String,
    /// Container id; `None` for a process on the host.
    pub container: Option<String>,
    /// Container name, Kubernetes pod and namespace, systemd unit, present when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// One row of a report: a key of the chosen dimension and its totals over the range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    pub key: String,
    /// In reports by remote: the name the address was last looked up by (from DNS answers),
    /// when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Set on the rows of a report by process (boxed: every other row, and every total, would
    /// carry its room for nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Box<ProcessFields>>,
}

/// Total traffic in one time bucket, for charts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub ts_ms: i64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Traffic of one calendar period (of one app, when split by app). The first and the last
/// period are cut to the report's range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRow {
    /// The period's start, as the calendar has it (labels are made from it).
    pub period_ms: i64,
    /// The part of the period inside the report's range.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The app, when split by app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
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
    /// Totals per period when the query asked for them, oldest first (and largest app first
    /// within a period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<Periods>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<PeriodRow>,
}
