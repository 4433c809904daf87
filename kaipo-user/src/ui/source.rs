//! What feeds the dashboard: a stream of interval snapshots and, when a daemon keeps history,
//! answers to history questions. The daemon client and the embedded collector both implement
//! [`LiveSource`]; [`FakeSource`] replays a fixed list for tests and benchmarks.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    net::IpAddr,
    time::Duration,
};

use crate::{
    model::IntervalRecord,
    store::{Dimension, Query, Report},
};

/// Where the snapshots come from, shown in the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceKind {
    /// A running `kaipo` daemon: history is available.
    Daemon,
    /// A collector inside this process: live views only.
    #[default]
    Embedded,
}

impl SourceKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Daemon => "daemon",
            Self::Embedded => "embedded",
        }
    }
}

/// The collector's condition, repeated with every snapshot so the header never goes stale.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderInfo {
    /// The backend counting the traffic: `ebpf` or `pcap`.
    pub backend: String,
    /// Why the backend counts less than it could, one sentence each; empty when nothing is
    /// degraded.
    pub degradations: Vec<String>,
    /// Everything lost since the collector started (every field of `Lost` added up). `None`
    /// makes the dashboard add up `record.lost` over the intervals it has seen.
    pub lost_total: Option<u64>,
    /// Share of the monitored interfaces' link-layer bytes since the dashboard started that
    /// belong to known processes' sockets, 0.0 to 1.0 (see
    /// [`crate::model::IntervalRecord::attributed_ratio`]); `None` when the source cannot tell.
    pub attributed_ratio: Option<f64>,
    pub source: SourceKind,
    /// Alerts firing now (the daemon's alert rules), one summary each.
    pub alerts: Vec<String>,
}

/// One interval as the dashboard sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveUpdate {
    /// The interval's deltas, exactly as `kaipo watch --json` prints them.
    pub record: IntervalRecord,
    pub header: HeaderInfo,
    /// Names of remote addresses, resolved by the source off the UI task (reverse DNS or a
    /// cache) whenever it has them: the dashboard never resolves and never waits. Once per
    /// address is enough; a host idle for a minute is forgotten with its name, so send it
    /// again when the address comes back. Names of addresses not on screen are ignored.
    pub remote_names: Vec<(IpAddr, String)>,
}

impl LiveUpdate {
    pub fn new(record: IntervalRecord, header: HeaderInfo) -> Self {
        Self {
            record,
            header,
            remote_names: Vec::new(),
        }
    }
}

/// The spans the History view charts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryRange {
    LastHour,
    LastDay,
}

impl HistoryRange {
    pub const ALL: [Self; 2] = [Self::LastHour, Self::LastDay];

    pub fn span(self) -> Duration {
        match self {
            Self::LastHour => Duration::from_secs(3600),
            Self::LastDay => Duration::from_secs(86_400),
        }
    }

    /// The store question behind this range, ending at `now_ms`: traffic per app, ten
    /// largest, with the series the chart draws.
    pub fn query(self, now_ms: i64) -> Query {
        Query {
            from_ms: now_ms - self.span().as_millis() as i64,
            to_ms: now_ms,
            by: Dimension::App,
            top: 10,
            uid: None,
            per: None,
        }
    }
}

/// A feed of live snapshots.
///
/// The dashboard polls both futures inside `tokio::select!` and drops them unfinished when a
/// key arrives, so both must be cancel-safe: a dropped `next()` must not lose a snapshot
/// that was half read (read from a `tokio::sync::mpsc::Receiver` filled by a task of your
/// own, or a framed reader), and a dropped `history()` must leave the connection usable
/// (one request per connection, or a task that owns the connection).
pub trait LiveSource {
    /// The next snapshot; `Ok(None)` once the stream has ended for good (the dashboard keeps
    /// the last data on screen and says so). An error is shown the same way.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<LiveUpdate>>>;

    /// Traffic over `range` up to now; `Ok(None)` when this source keeps no history (the
    /// embedded collector), which the History view explains.
    fn history(
        &mut self,
        range: HistoryRange,
    ) -> impl Future<Output = anyhow::Result<Option<Report>>> {
        let _ = range;
        async { Ok(None) }
    }
}

/// Replays updates in order, then ends; answers history from a fixed map.
#[derive(Clone, Debug, Default)]
pub struct FakeSource {
    pub updates: VecDeque<LiveUpdate>,
    pub history: HashMap<HistoryRange, Report>,
    /// Every range asked for, in order.
    pub history_requests: Vec<HistoryRange>,
}

impl FakeSource {
    pub fn new(updates: impl IntoIterator<Item = LiveUpdate>) -> Self {
        Self {
            updates: updates.into_iter().collect(),
            ..Self::default()
        }
    }
}

impl LiveSource for FakeSource {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        Ok(self.updates.pop_front())
    }

    async fn history(&mut self, range: HistoryRange) -> anyhow::Result<Option<Report>> {
        self.history_requests.push(range);
        Ok(self.history.get(&range).cloned())
    }
}
