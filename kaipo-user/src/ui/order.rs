//! Which rows a table shows and in what order: views, columns, sorting, filtering and a
//! selection that follows its row rather than its position.
//!
//! The order is a list of indices into the remembered rows, rebuilt when data, sort or
//! filter change, never while drawing: a frame then only formats the rows on screen.

use std::cmp::Ordering;

use super::{
    source::ConnKey,
    tracks::{ConnectionTrack, InterfaceTrack, ProcessTrack, RemoteAddr, RemoteTrack, Track},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Processes,
    Connections,
    Interfaces,
    Remotes,
    History,
}

impl View {
    pub const ALL: [Self; 5] = [
        Self::Processes,
        Self::Connections,
        Self::Interfaces,
        Self::Remotes,
        Self::History,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Processes => "Processes",
            Self::Connections => "Connections",
            Self::Interfaces => "Interfaces",
            Self::Remotes => "Remote hosts",
            Self::History => "History",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    pub fn prev(self) -> Self {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }

    /// Columns in display order; narrow terminals drop some (see `views::fit_columns`).
    pub fn columns(self) -> &'static [Column] {
        use Column::*;
        match self {
            Self::Processes => &[
                Pid, Name, User, Container, Conns, RxRate, TxRate, RxTotal, TxTotal, Activity,
                Command,
            ],
            Self::Connections => &[
                Pid, Process, Proto, Local, Remote, Service, State, RxRate, TxRate, RxTotal,
                TxTotal,
            ],
            Self::Interfaces => &[
                Name, RxRate, TxRate, RxPackets, TxPackets, RxTotal, TxTotal, Activity,
            ],
            Self::Remotes => &[Remote, Host, Conns, Procs, RxRate, TxRate, RxTotal, TxTotal],
            Self::History => &[],
        }
    }

    /// What `s` cycles through: received plus sent, then every sortable column.
    pub fn sort_columns(self) -> impl Iterator<Item = Column> {
        std::iter::once(Column::Traffic).chain(
            self.columns()
                .iter()
                .copied()
                .filter(|c| *c != Column::Activity),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// Received plus sent per second: the default order, not a column on screen.
    Traffic,
    Pid,
    Name,
    Process,
    User,
    Container,
    Conns,
    Procs,
    Proto,
    Local,
    Remote,
    Host,
    Service,
    State,
    RxRate,
    TxRate,
    RxPackets,
    TxPackets,
    RxTotal,
    TxTotal,
    Activity,
    Command,
}

impl Column {
    pub fn title(self) -> &'static str {
        match self {
            Self::Traffic => "RX+TX/s",
            Self::Pid => "PID",
            Self::Name => "NAME",
            Self::Process => "PROCESS",
            Self::User => "USER",
            Self::Container => "CONTAINER",
            Self::Conns => "CONNS",
            Self::Procs => "PROCS",
            Self::Proto => "PROTO",
            Self::Local => "LOCAL",
            Self::Remote => "REMOTE",
            Self::Host => "HOST",
            Self::Service => "SERVICE",
            Self::State => "STATE",
            Self::RxRate => "RX/s",
            Self::TxRate => "TX/s",
            Self::RxPackets => "RX pkt/s",
            Self::TxPackets => "TX pkt/s",
            Self::RxTotal => "RX total",
            Self::TxTotal => "TX total",
            Self::Activity => "last 60 s",
            Self::Command => "COMMAND",
        }
    }

    /// Numbers sort largest first when chosen, text A to Z.
    pub fn numeric(self) -> bool {
        matches!(
            self,
            Self::Traffic
                | Self::Pid
                | Self::Conns
                | Self::Procs
                | Self::RxRate
                | Self::TxRate
                | Self::RxPackets
                | Self::TxPackets
                | Self::RxTotal
                | Self::TxTotal
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortSpec {
    pub column: Column,
    pub descending: bool,
}

impl Default for SortSpec {
    fn default() -> Self {
        Self {
            column: Column::Traffic,
            descending: true,
        }
    }
}

impl SortSpec {
    /// The next (or previous) sortable column of `view`, in its natural direction.
    pub fn cycled(self, view: View, forward: bool) -> Self {
        let columns: Vec<Column> = view.sort_columns().collect();
        let here = columns.iter().position(|c| *c == self.column).unwrap_or(0);
        let len = columns.len().max(1);
        let next = if forward {
            (here + 1) % len
        } else {
            (here + len - 1) % len
        };
        let column = columns.get(next).copied().unwrap_or(Column::Traffic);
        Self {
            column,
            descending: column.numeric(),
        }
    }
}

/// A row's identity, which the selection holds on to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKey {
    Process(u32),
    Connection(ConnKey),
    Interface(String),
    Remote(RemoteAddr),
}

/// One sortable table: its order, its selection and its scroll position.
#[derive(Clone, Debug, Default)]
pub struct TableView {
    pub sort: SortSpec,
    /// Indices into the remembered rows, in display order, filter applied.
    pub order: Vec<usize>,
    /// Position of the selection in `order`.
    pub cursor: usize,
    /// First row on screen.
    pub offset: usize,
    pub selected: Option<RowKey>,
}

pub enum SortValue<'a> {
    /// Order by the row's key itself (addresses, which sort numerically that way).
    Key,
    Float(f64),
    Int(u64),
    Text(&'a str),
}

/// A remembered row as a table sees it.
pub trait TableRow: Track<Key: Ord> {
    fn row_key(&self) -> RowKey;
    fn is_row(&self, key: &RowKey) -> bool;
    fn sort_value(&self, column: Column) -> SortValue<'_>;
}

fn compare<T: TableRow>(a: &T, b: &T, sort: SortSpec) -> Ordering {
    let primary = match (a.sort_value(sort.column), b.sort_value(sort.column)) {
        (SortValue::Key, SortValue::Key) => a.key().cmp(b.key()),
        (SortValue::Float(x), SortValue::Float(y)) => x.total_cmp(&y),
        (SortValue::Int(x), SortValue::Int(y)) => x.cmp(&y),
        (SortValue::Text(x), SortValue::Text(y)) => x
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(y.chars().flat_map(char::to_lowercase)),
        _ => Ordering::Equal,
    };
    let primary = if sort.descending {
        primary.reverse()
    } else {
        primary
    };
    // Ties in key order whatever the direction, so equal rows never swap between frames.
    primary.then_with(|| a.key().cmp(b.key()))
}

impl TableView {
    /// Rebuilds the order from `items`, keeping those `keep` accepts, and finds the
    /// selected row again; when it is gone the selection stays at the same height.
    pub fn rebuild<T: TableRow>(&mut self, items: &[T], keep: impl Fn(&T) -> bool, rows: usize) {
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend((0..items.len()).filter(|&i| keep(&items[i])));
        let sort = self.sort;
        order.sort_unstable_by(|&a, &b| compare(&items[a], &items[b], sort));
        self.order = order;
        if self.order.is_empty() {
            self.cursor = 0;
            self.offset = 0;
            return;
        }
        let found = self
            .selected
            .as_ref()
            .and_then(|key| self.order.iter().position(|&i| items[i].is_row(key)));
        match found {
            Some(pos) => self.cursor = pos,
            None => self.select(items, self.cursor, rows),
        }
        self.scroll(rows);
    }

    /// Moves the selection to position `cursor` (clamped).
    pub fn select<T: TableRow>(&mut self, items: &[T], cursor: usize, rows: usize) {
        let Some(last) = self.order.len().checked_sub(1) else {
            return;
        };
        self.cursor = cursor.min(last);
        self.selected = self.order.get(self.cursor).map(|&i| items[i].row_key());
        self.scroll(rows);
    }

    /// Keeps the selection on screen with the least scrolling, and no blank rows at the end.
    fn scroll(&mut self, rows: usize) {
        let rows = rows.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + rows {
            self.offset = self.cursor + 1 - rows;
        }
        self.offset = self.offset.min(self.order.len().saturating_sub(rows));
    }
}

impl TableRow for ProcessTrack {
    fn row_key(&self) -> RowKey {
        RowKey::Process(self.pid)
    }
    fn is_row(&self, key: &RowKey) -> bool {
        *key == RowKey::Process(self.pid)
    }
    fn sort_value(&self, column: Column) -> SortValue<'_> {
        let rate = &self.meter.rate;
        let totals = self.meter.totals;
        match column {
            Column::Pid => SortValue::Int(self.pid.into()),
            Column::Name => SortValue::Text(&self.name),
            Column::User => SortValue::Text(self.user.as_deref().unwrap_or("")),
            Column::Container => SortValue::Text(self.container.as_deref().unwrap_or("")),
            Column::Command => SortValue::Text(&self.cmdline),
            Column::Conns => SortValue::Int(self.connections as u64),
            Column::RxRate => SortValue::Float(rate.rx()),
            Column::TxRate => SortValue::Float(rate.tx()),
            Column::RxTotal => SortValue::Int(totals.rx),
            Column::TxTotal => SortValue::Int(totals.tx),
            _ => SortValue::Float(rate.both()),
        }
    }
}

impl TableRow for ConnectionTrack {
    fn row_key(&self) -> RowKey {
        RowKey::Connection(self.key.clone())
    }
    fn is_row(&self, key: &RowKey) -> bool {
        matches!(key, RowKey::Connection(k) if *k == self.key)
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
}

impl TableRow for InterfaceTrack {
    fn row_key(&self) -> RowKey {
        RowKey::Interface(self.name.clone())
    }
    fn is_row(&self, key: &RowKey) -> bool {
        matches!(key, RowKey::Interface(name) if *name == self.name)
    }
    fn sort_value(&self, column: Column) -> SortValue<'_> {
        let rate = &self.meter.rate;
        let totals = self.meter.totals;
        match column {
            Column::Name => SortValue::Text(&self.name),
            Column::RxRate => SortValue::Float(rate.rx()),
            Column::TxRate => SortValue::Float(rate.tx()),
            Column::RxPackets => SortValue::Float(self.packets.rate.rx()),
            Column::TxPackets => SortValue::Float(self.packets.rate.tx()),
            Column::RxTotal => SortValue::Int(totals.rx),
            Column::TxTotal => SortValue::Int(totals.tx),
            _ => SortValue::Float(rate.both()),
        }
    }
}

impl TableRow for RemoteTrack {
    fn row_key(&self) -> RowKey {
        RowKey::Remote(self.addr.clone())
    }
    fn is_row(&self, key: &RowKey) -> bool {
        matches!(key, RowKey::Remote(addr) if *addr == self.addr)
    }
    fn sort_value(&self, column: Column) -> SortValue<'_> {
        let rate = &self.meter.rate;
        let totals = self.meter.totals;
        match column {
            Column::Remote => SortValue::Key,
            Column::Host => SortValue::Text(self.name.as_deref().unwrap_or("")),
            Column::Conns => SortValue::Int(self.connections as u64),
            Column::Procs => SortValue::Int(self.processes as u64),
            Column::RxRate => SortValue::Float(rate.rx()),
            Column::TxRate => SortValue::Float(rate.tx()),
            Column::RxTotal => SortValue::Int(totals.rx),
            Column::TxTotal => SortValue::Int(totals.tx),
            _ => SortValue::Float(rate.both()),
        }
    }
}
