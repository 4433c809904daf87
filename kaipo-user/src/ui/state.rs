//! Everything the dashboard shows, without a terminal: snapshots go in through
//! [`LiveState::ingest`], keys through `input`, and `draw` reads it.
//!
//! Time is passed in (`now`) so tests can step a clock instead of sleeping.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use super::{
    rates::Totals,
    source::{HeaderInfo, LiveUpdate},
    tabs::{
        connections::{ConnKey, ConnectionTrack},
        history::HistoryPanel,
        interfaces::InterfaceTrack,
        processes::ProcessTrack,
        remotes::{RemoteAddr, RemoteTrack},
        RowKey, View,
    },
    theme::Theme,
    units::RateUnit,
    widgets::table::{TableTab, TableView},
};

/// How long an exited process stays on screen, dimmed, with its final totals.
pub const EXITED_LINGER: Duration = Duration::from_secs(5);
/// A row without traffic for this long goes: its sparkline would be flat and the tables
/// must not grow without bound on a busy server.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(60);

/// Whether snapshots still arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SourceStatus {
    #[default]
    Live,
    Ended,
    Failed(String),
}

#[derive(Clone)]
pub struct LiveState {
    pub theme: Theme,
    pub(crate) processes: TableTab<ProcessTrack>,
    pub(crate) connections: TableTab<ConnectionTrack>,
    pub(crate) interfaces: TableTab<InterfaceTrack>,
    pub(crate) remotes: TableTab<RemoteTrack>,
    pub(crate) view: View,
    pub(crate) unit: RateUnit,
    pub(crate) help: bool,
    pub(crate) editing_filter: bool,
    /// Pid of the process whose detail pane is open.
    pub(crate) detail: Option<u32>,
    pub(crate) history: HistoryPanel,
    pub(crate) source: SourceStatus,
    /// While paused, the picture taken when `p` was pressed: it is what is drawn and what
    /// keys move through, while this state goes on counting every interval (see `pause.rs`).
    pub(crate) frozen: Option<Box<LiveState>>,
    pub(crate) header: HeaderInfo,
    filter: String,
    filter_lower: String,
    lost_seen: u64,
    intervals: u64,
    interval_ms: u64,
    /// The terminal's width and height.
    pub(crate) size: (u16, u16),
}

impl LiveState {
    pub fn new(theme: Theme) -> Self {
        Self {
            theme,
            processes: TableTab::default(),
            connections: TableTab::default(),
            interfaces: TableTab::default(),
            remotes: TableTab::default(),
            view: View::Processes,
            unit: RateUnit::Bytes,
            help: false,
            editing_filter: false,
            detail: None,
            history: HistoryPanel::default(),
            source: SourceStatus::Live,
            frozen: None,
            header: HeaderInfo::default(),
            filter: String::new(),
            filter_lower: String::new(),
            lost_seen: 0,
            intervals: 0,
            interval_ms: 0,
            size: (80, 24),
        }
    }

    /// Takes one interval in. A paused dashboard takes it in too: only what is drawn stays
    /// still, so nothing counted while paused is missing once it resumes.
    pub fn ingest(&mut self, update: LiveUpdate, now: Instant) {
        let LiveUpdate {
            record,
            header,
            remote_names,
        } = update;
        self.intervals += 1;
        let (n, ms) = (self.intervals, record.interval_ms);
        self.interval_ms = ms;
        self.header = header;
        self.lost_seen = self.lost_seen.saturating_add(record.lost.total());

        for rec in &record.interfaces {
            let track = self
                .interfaces
                .rows
                .entry(&rec.name, || InterfaceTrack::new(&rec.name));
            track.meter.add(n, rec.rx_bytes, rec.tx_bytes, ms);
            track.packets.add(n, rec.rx_packets, rec.tx_packets, ms);
        }
        for rec in &record.processes {
            let track = self
                .processes
                .rows
                .entry(&rec.pid, || ProcessTrack::new(rec, now));
            if track.exited() && !rec.exited {
                // The pid now belongs to a new process.
                *track = ProcessTrack::new(rec, now);
            } else {
                track.describe(rec);
            }
            track.meter.add(n, rec.rx_bytes, rec.tx_bytes, ms);
            track.last_seen = now;
            if rec.exited && track.exited_at.is_none() {
                track.exited_at = Some(now);
            }
        }
        for rec in &record.connections {
            let key = ConnKey::of(rec);
            let owner = self.processes.rows.get(&rec.pid);
            let track = self
                .connections
                .rows
                .entry(&key, || ConnectionTrack::new(key.clone(), owner, now));
            if track.process.is_empty() && owner.is_some() {
                track.adopt(owner);
            }
            track.describe(rec, owner);
            track.meter.add(n, rec.rx_bytes, rec.tx_bytes, ms);
            track.last_seen = now;
            let remote = self.remotes.rows.entry(&track.remote, || {
                RemoteTrack::new(track.remote.clone(), now)
            });
            remote.meter.add(n, rec.rx_bytes, rec.tx_bytes, ms);
            remote.last_seen = now;
            remote.set_network(rec.network.as_deref());
            // The name the process asked for (from DNS answers) wins over any other.
            if rec.remote_name.is_some() && remote.name != rec.remote_name {
                remote.set_name(rec.remote_name.clone());
                remote.from_dns = true;
            }
        }
        for (ip, name) in remote_names {
            if let Some(remote) = self.remotes.rows.get_mut(&RemoteAddr::Ip(ip)) {
                if !remote.from_dns {
                    remote.set_name(Some(name));
                }
            }
        }

        for t in self.interfaces.rows.items_mut() {
            t.meter.close(n, ms);
            t.packets.close(n, ms);
        }
        for t in self.processes.rows.items_mut() {
            t.meter.close(n, ms);
        }
        for t in self.connections.rows.items_mut() {
            t.meter.close(n, ms);
        }
        for t in self.remotes.rows.items_mut() {
            t.meter.close(n, ms);
        }
        self.expire(now);
        self.refresh();
    }

    /// Lets time pass without a snapshot: exited and idle rows expire. Returns whether the
    /// screen changed (a paused one does not, though rows expire behind it).
    pub fn tick(&mut self, now: Instant) -> bool {
        if !self.expire(now) {
            return false;
        }
        self.refresh();
        !self.paused()
    }

    /// Drops exited processes after [`EXITED_LINGER`] (with their connections) and rows idle
    /// for [`IDLE_EXPIRY`]; returns whether anything went.
    fn expire(&mut self, now: Instant) -> bool {
        let gone = |seen: Instant| now.duration_since(seen) >= IDLE_EXPIRY;
        let departed: HashSet<u32> = self
            .processes
            .items()
            .iter()
            .filter(|p| {
                p.exited_at
                    .is_some_and(|at| now.duration_since(at) >= EXITED_LINGER)
            })
            .map(|p| p.pid)
            .collect();
        let processes = self
            .processes
            .rows
            .retain(|p| !departed.contains(&p.pid) && !gone(p.last_seen));
        let connections = self
            .connections
            .rows
            .retain(|c| !departed.contains(&c.key.pid) && !gone(c.last_seen));
        let remotes = self.remotes.rows.retain(|r| !gone(r.last_seen));
        processes || connections || remotes
    }

    /// Recounts connections per process and remote, closes a detail pane whose process went,
    /// and rebuilds every table's order.
    pub(crate) fn refresh(&mut self) {
        for p in self.processes.rows.items_mut() {
            p.connections = 0;
        }
        for r in self.remotes.rows.items_mut() {
            r.connections = 0;
            r.processes = 0;
        }
        let mut remote_pids = HashSet::new();
        for c in self.connections.items() {
            if let Some(p) = self.processes.rows.get_mut(&c.key.pid) {
                p.connections += 1;
            }
            if let Some(i) = self.remotes.rows.position(&c.remote) {
                let remote = &mut self.remotes.rows.items_mut()[i];
                remote.connections += 1;
                if remote_pids.insert((i, c.key.pid)) {
                    remote.processes += 1;
                }
            }
        }
        if self
            .detail
            .is_some_and(|pid| self.processes.get(&pid).is_none())
        {
            self.detail = None;
        }
        self.rebuild();
    }

    /// Filters and sorts every table. A process or remote host also matches when one of its
    /// connections does, so filtering by an address finds who talks to it.
    pub(crate) fn rebuild(&mut self) {
        self.rebuild_tables(true);
    }

    /// Rebuilds the Remote hosts table, and the others when `all_tables`.
    pub(crate) fn rebuild_tables(&mut self, all_tables: bool) {
        let needle = self.filter_lower.as_str();
        let rows = self.viewport_rows();
        let mut pids = HashSet::new();
        let mut remotes = HashSet::new();
        if !needle.is_empty() {
            for c in self.connections.items() {
                if c.search.contains(needle) {
                    pids.insert(c.key.pid);
                    remotes.insert(&c.remote);
                }
            }
        }
        self.remotes
            .rebuild(needle, |r| remotes.contains(&r.addr), rows);
        if !all_tables {
            return;
        }
        self.processes
            .rebuild(needle, |p| pids.contains(&p.pid), rows);
        self.connections.rebuild(needle, |_| false, rows);
        self.interfaces.rebuild(needle, |_| false, rows);
    }

    /// Moves the selection of the current table to position `cursor` (clamped).
    pub(crate) fn select_at(&mut self, cursor: usize) {
        let rows = self.viewport_rows();
        match self.view {
            View::Processes => self.processes.select(cursor, rows),
            View::Connections => self.connections.select(cursor, rows),
            View::Interfaces => self.interfaces.select(cursor, rows),
            View::Remotes => self.remotes.select(cursor, rows),
            View::History => {}
        }
    }

    /// Tells the state how large the terminal is, so paging moves by a screenful and the
    /// header knows where to wrap.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = (width, height);
        self.rebuild();
        if let Some(frozen) = self.frozen.as_mut() {
            frozen.resize(width, height);
        }
    }

    /// Table rows on screen: what the header, tabs and footer leave.
    pub fn viewport_rows(&self) -> usize {
        super::draw::table_rows(self, self.size.0, self.size.1)
    }

    pub fn set_filter(&mut self, text: &str) {
        self.filter = text.to_string();
        self.filter_lower = text.to_lowercase();
        self.rebuild();
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn table(&self, view: View) -> Option<&TableView> {
        match view {
            View::Processes => Some(&self.processes.table),
            View::Connections => Some(&self.connections.table),
            View::Interfaces => Some(&self.interfaces.table),
            View::Remotes => Some(&self.remotes.table),
            View::History => None,
        }
    }

    pub(crate) fn table_mut(&mut self, view: View) -> Option<&mut TableView> {
        match view {
            View::Processes => Some(&mut self.processes.table),
            View::Connections => Some(&mut self.connections.table),
            View::Interfaces => Some(&mut self.interfaces.table),
            View::Remotes => Some(&mut self.remotes.table),
            View::History => None,
        }
    }

    /// The selected row of the current view.
    pub fn selected(&self) -> Option<&RowKey> {
        self.table(self.view)
            .filter(|t| !t.order.is_empty())
            .and_then(|t| t.selected.as_ref())
    }

    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// Lost events and entries: the source's running total, else the sum of the intervals
    /// seen here.
    pub fn lost_total(&self) -> u64 {
        self.header.lost_total.unwrap_or(self.lost_seen)
    }

    pub fn intervals(&self) -> u64 {
        self.intervals
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// Received and sent bytes per second over every monitored interface.
    pub fn interface_rates(&self) -> (f64, f64) {
        self.interfaces
            .items()
            .iter()
            .fold((0.0, 0.0), |(rx, tx), i| {
                (rx + i.meter.rate.rx(), tx + i.meter.rate.tx())
            })
    }

    /// Interface bytes since the dashboard started.
    pub fn interface_totals(&self) -> Totals {
        self.interfaces
            .items()
            .iter()
            .fold(Totals::default(), |sum, i| Totals {
                rx: sum.rx.saturating_add(i.meter.totals.rx),
                tx: sum.tx.saturating_add(i.meter.totals.tx),
            })
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessTrack> {
        self.processes.get(&pid)
    }

    /// Connections of `pid`, busiest first.
    pub fn connections_of(&self, pid: u32) -> Vec<&ConnectionTrack> {
        let mut list: Vec<&ConnectionTrack> = self
            .connections
            .items()
            .iter()
            .filter(|c| c.key.pid == pid)
            .collect();
        list.sort_by(|a, b| {
            b.meter
                .rate
                .both()
                .total_cmp(&a.meter.rate.both())
                .then_with(|| a.key.cmp(&b.key))
        });
        list
    }
}
