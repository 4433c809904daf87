//! The Connections tab: one row per socket that carried traffic, with its owner, endpoints,
//! service, TCP state, rates and totals. The detail pane lists a process's connections with
//! the same rows.

use std::time::Instant;

use ratatui::widgets::Row;

use super::{processes::ProcessTrack, remotes::RemoteAddr};
use crate::{
    model::ConnectionRecord,
    ui::{
        rates::Meter,
        state::LiveState,
        tabs::RowKey,
        tracks::Track,
        widgets::{
            columns::{Column, ColumnSpec},
            meter_cell, or_dash, right,
            table::{SortValue, TableRow},
            text,
        },
    },
};

/// Display order; the two endpoints share what room is left.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::new(Column::Pid, 7, 0, 4),
    ColumnSpec::new(Column::Process, 12, 0, 1),
    ColumnSpec::new(Column::Proto, 5, 0, 3),
    ColumnSpec::new(Column::Local, 21, 1, 2),
    ColumnSpec::new(Column::Remote, 21, 1, 0),
    ColumnSpec::new(Column::Service, 10, 0, 5),
    ColumnSpec::new(Column::State, 11, 0, 7),
    ColumnSpec::new(Column::RxRate, 10, 0, 0),
    ColumnSpec::new(Column::TxRate, 10, 0, 0),
    ColumnSpec::new(Column::RxTotal, 10, 0, 6),
    ColumnSpec::new(Column::TxTotal, 10, 0, 6),
];

/// The detail pane's list: the process is known there.
pub const DETAIL_COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::new(Column::Proto, 5, 0, 3),
    ColumnSpec::new(Column::Local, 21, 1, 2),
    ColumnSpec::new(Column::Remote, 21, 1, 0),
    ColumnSpec::new(Column::Service, 10, 0, 5),
    ColumnSpec::new(Column::State, 11, 0, 7),
    ColumnSpec::new(Column::RxRate, 10, 0, 0),
    ColumnSpec::new(Column::TxRate, 10, 0, 0),
    ColumnSpec::new(Column::RxTotal, 10, 0, 6),
    ColumnSpec::new(Column::TxTotal, 10, 0, 6),
];

/// What tells one connection from another across intervals. A socket cookie would be
/// sharper, but the record does not carry one, and two sockets of one process with the same
/// endpoints are indistinguishable to a reader anyway (the dashboard adds them up).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub pid: u32,
    pub proto: String,
    pub local: String,
    pub remote: String,
}

impl ConnKey {
    pub fn of(record: &ConnectionRecord) -> Self {
        Self {
            pid: record.pid,
            proto: record.proto.clone(),
            local: record.local.clone(),
            remote: record.remote.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnectionTrack {
    pub key: ConnKey,
    pub remote: RemoteAddr,
    /// The owning process's name when the connection was first seen.
    pub process: String,
    /// TCP state from the newest record; `None` for other protocols or when unknown.
    pub state: Option<String>,
    /// What the connection is for (`https`, `udp/9999`), named from its server side.
    pub service: Option<String>,
    pub last_seen: Instant,
    pub meter: Meter,
    /// Lower-cased text the filter searches: endpoints, service and the owner's identity, so
    /// filtering by a user or a container also finds their connections.
    pub search: String,
}

impl ConnectionTrack {
    pub fn new(key: ConnKey, owner: Option<&ProcessTrack>, now: Instant) -> Self {
        let mut track = Self {
            remote: RemoteAddr::parse(&key.remote),
            process: String::new(),
            key,
            state: None,
            service: None,
            last_seen: now,
            meter: Meter::default(),
            search: String::new(),
        };
        track.adopt(owner);
        track
    }

    /// Takes the owner's name and identity into the row and its search text.
    pub fn adopt(&mut self, owner: Option<&ProcessTrack>) {
        if let Some(owner) = owner {
            self.process.clone_from(&owner.name);
        }
        self.search = format!(
            "{} {} {} {} {} {}",
            self.key.proto,
            self.key.local,
            self.key.remote,
            self.service.as_deref().unwrap_or(""),
            self.state.as_deref().unwrap_or(""),
            owner.map_or("", |p| p.search.as_str()),
        )
        .to_lowercase();
    }

    /// Takes service and state from the newest record. A state the record no longer knows is
    /// dropped (the socket closed); a service, once named, stays.
    pub fn describe(&mut self, record: &ConnectionRecord, owner: Option<&ProcessTrack>) {
        let service = Some(record.service.as_str())
            .filter(|s| !s.is_empty())
            .or(self.service.as_deref());
        if self.state != record.state || self.service.as_deref() != service {
            self.service = service.map(str::to_string);
            self.state.clone_from(&record.state);
            self.adopt(owner);
        }
    }

    /// The row with `columns`, dimmed when its process has exited.
    pub fn table_row(&self, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
        let cells = columns.iter().map(|&(column, width)| match column {
            Column::Pid => right(self.key.pid.to_string()),
            Column::Process => text(&self.process),
            Column::Proto => text(&self.key.proto),
            Column::Local => text(&self.key.local),
            Column::Remote => text(&self.key.remote),
            Column::Service => or_dash(self.service.as_deref()),
            Column::State => or_dash(self.state.as_deref()),
            _ => meter_cell(&self.meter, column, width, state.unit()),
        });
        let row = Row::new(cells.collect::<Vec<_>>());
        if state
            .process(self.key.pid)
            .is_some_and(ProcessTrack::exited)
        {
            row.style(state.theme.exited())
        } else {
            row
        }
    }
}

impl Track for ConnectionTrack {
    type Key = ConnKey;
    fn key(&self) -> &ConnKey {
        &self.key
    }
}

impl TableRow for ConnectionTrack {
    const COLUMNS: &'static [ColumnSpec] = COLUMNS;

    fn row_key(&self) -> RowKey {
        RowKey::Connection(self.key.clone())
    }

    fn is_row(&self, key: &RowKey) -> bool {
        matches!(key, RowKey::Connection(k) if *k == self.key)
    }

    fn search(&self) -> &str {
        &self.search
    }

    fn sort_value(&self, column: Column) -> SortValue<'_> {
        let rate = &self.meter.rate;
        let totals = self.meter.totals;
        match column {
            Column::Pid => SortValue::Int(self.key.pid.into()),
            Column::Process => SortValue::Text(&self.process),
            Column::Proto => SortValue::Text(&self.key.proto),
            Column::Local => SortValue::Text(&self.key.local),
            Column::Remote => SortValue::Text(&self.key.remote),
            Column::Service => SortValue::Text(self.service.as_deref().unwrap_or("")),
            Column::State => SortValue::Text(self.state.as_deref().unwrap_or("")),
            Column::RxRate => SortValue::Float(rate.rx()),
            Column::TxRate => SortValue::Float(rate.tx()),
            Column::RxTotal => SortValue::Int(totals.rx),
            Column::TxTotal => SortValue::Int(totals.tx),
            _ => SortValue::Float(rate.both()),
        }
    }

    fn row(&self, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
        self.table_row(columns, state)
    }
}
