//! The Processes tab: one row per process that used the network, with who runs it, its
//! connections, rates, totals, last minute and command line.

use std::time::Instant;

use ratatui::widgets::Row;

use crate::{
    model::ProcessRecord,
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

/// Marks an exited process, which also shows dimmed for as long as it stays.
pub const EXITED_MARK: &str = "✕ ";

/// Display order. NAME is as wide as a kernel task name (15 characters); COMMAND takes
/// whatever room is left.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::new(Column::Pid, 7, 0, 1),
    ColumnSpec::new(Column::Name, 15, 0, 0),
    ColumnSpec::new(Column::User, 10, 0, 3),
    ColumnSpec::new(Column::Container, 12, 0, 6),
    ColumnSpec::new(Column::Unit, 16, 0, 8),
    ColumnSpec::new(Column::Conns, 5, 0, 4),
    ColumnSpec::new(Column::RxRate, 10, 0, 0),
    ColumnSpec::new(Column::TxRate, 10, 0, 0),
    ColumnSpec::new(Column::RxTotal, 10, 0, 2),
    ColumnSpec::new(Column::TxTotal, 10, 0, 2),
    ColumnSpec::new(Column::Activity, 20, 0, 5),
    ColumnSpec::new(Column::Command, 8, 1, 7),
];

#[derive(Clone, Debug)]
pub struct ProcessTrack {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    pub uid: u32,
    pub user: Option<String>,
    pub container: Option<String>,
    /// Container name, pod, pod namespace and systemd unit, as the record has them.
    pub container_name: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    pub unit: Option<String>,
    pub netns: Option<u64>,
    /// Path of the executable; once known it stays known when a later record lacks it.
    pub exe: Option<String>,
    /// When the dashboard learnt the process had exited.
    pub exited_at: Option<Instant>,
    pub last_seen: Instant,
    pub meter: Meter,
    /// Live connections of this process, counted at every interval.
    pub connections: usize,
    /// Lower-cased text the filter searches.
    pub search: String,
}

impl ProcessTrack {
    pub fn new(record: &ProcessRecord, now: Instant) -> Self {
        let mut track = Self {
            pid: record.pid,
            name: String::new(),
            cmdline: String::new(),
            uid: record.uid,
            user: None,
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns: None,
            exe: None,
            exited_at: None,
            last_seen: now,
            meter: Meter::with_history(),
            connections: 0,
            search: String::new(),
        };
        track.describe(record);
        track
    }

    /// Takes the identity from the newest record: an `exec` changes name, cmdline and
    /// executable, and a user or container may only be known from a later interval.
    pub fn describe(&mut self, record: &ProcessRecord) {
        let exe = record.exe.as_ref().or(self.exe.as_ref());
        let changed = self.name != record.name
            || self.cmdline != record.cmdline
            || self.user != record.user
            || self.container != record.container
            || self.container_name != record.container_name
            || self.pod != record.pod
            || self.pod_namespace != record.pod_namespace
            || self.unit != record.unit
            || self.uid != record.uid
            || self.netns != record.netns
            || self.exe.as_ref() != exe
            || self.search.is_empty();
        if !changed {
            return;
        }
        self.exe = exe.cloned();
        self.name.clone_from(&record.name);
        self.cmdline.clone_from(&record.cmdline);
        self.user.clone_from(&record.user);
        self.container.clone_from(&record.container);
        self.container_name.clone_from(&record.container_name);
        self.pod.clone_from(&record.pod);
        self.pod_namespace.clone_from(&record.pod_namespace);
        self.unit.clone_from(&record.unit);
        self.uid = record.uid;
        self.netns = record.netns;
        self.search = format!(
            "{} {} {} {} {} {} {} {} {}",
            self.pid,
            self.name,
            self.cmdline,
            self.user.as_deref().unwrap_or(""),
            self.container.as_deref().unwrap_or(""),
            self.container_name.as_deref().unwrap_or(""),
            self.pod_label().unwrap_or_default(),
            self.unit.as_deref().unwrap_or(""),
            self.exe.as_deref().unwrap_or(""),
        )
        .to_lowercase();
    }

    /// The container's name where its runtime named it, else its id.
    pub fn container_label(&self) -> Option<&str> {
        self.container_name.as_deref().or(self.container.as_deref())
    }

    /// `namespace/pod`, as `kubectl` users name a pod.
    pub fn pod_label(&self) -> Option<String> {
        let pod = self.pod.as_deref()?;
        Some(match self.pod_namespace.as_deref() {
            Some(ns) => format!("{ns}/{pod}"),
            None => pod.to_owned(),
        })
    }

    pub fn exited(&self) -> bool {
        self.exited_at.is_some()
    }

    /// The user's name, or the uid when the name is unknown.
    pub fn user_label(&self) -> String {
        self.user.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

impl Track for ProcessTrack {
    type Key = u32;
    fn key(&self) -> &u32 {
        &self.pid
    }
}

impl TableRow for ProcessTrack {
    const COLUMNS: &'static [ColumnSpec] = COLUMNS;

    fn row_key(&self) -> RowKey {
        RowKey::Process(self.pid)
    }

    fn is_row(&self, key: &RowKey) -> bool {
        *key == RowKey::Process(self.pid)
    }

    fn search(&self) -> &str {
        &self.search
    }

    fn sort_value(&self, column: Column) -> SortValue<'_> {
        let rate = &self.meter.rate;
        let totals = self.meter.totals;
        match column {
            Column::Pid => SortValue::Int(self.pid.into()),
            Column::Name => SortValue::Text(&self.name),
            Column::User => SortValue::Text(self.user.as_deref().unwrap_or("")),
            Column::Container => SortValue::Text(self.container_label().unwrap_or("")),
            Column::Unit => SortValue::Text(self.unit.as_deref().unwrap_or("")),
            Column::Command => SortValue::Text(&self.cmdline),
            Column::Conns => SortValue::Int(self.connections as u64),
            Column::RxRate => SortValue::Float(rate.rx()),
            Column::TxRate => SortValue::Float(rate.tx()),
            Column::RxTotal => SortValue::Int(totals.rx),
            Column::TxTotal => SortValue::Int(totals.tx),
            _ => SortValue::Float(rate.both()),
        }
    }

    fn row(&self, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
        let cells = columns.iter().map(|&(column, width)| match column {
            Column::Pid => right(self.pid.to_string()),
            Column::Name if self.exited() => text(&format!("{EXITED_MARK}{}", self.name)),
            Column::Name => text(&self.name),
            Column::User => text(&self.user_label()),
            Column::Container => or_dash(self.container_label()),
            Column::Unit => or_dash(self.unit.as_deref()),
            Column::Conns => right(self.connections.to_string()),
            Column::Command => text(&self.cmdline),
            _ => meter_cell(&self.meter, column, width, state.unit()),
        });
        let row = Row::new(cells.collect::<Vec<_>>());
        if self.exited() {
            row.style(state.theme.exited())
        } else {
            row
        }
    }
}
