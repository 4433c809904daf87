//! The Remote hosts tab: connections grouped by the address at their other end, with its
//! resolved name, how many connections and processes talk to it, rates and totals.

use std::{fmt, net::IpAddr, time::Instant};

use ratatui::widgets::Row;

use crate::ui::{
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
};

/// Display order; address and name share what room is left.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::new(Column::Remote, 21, 1, 0),
    ColumnSpec::new(Column::Host, 20, 1, 1),
    ColumnSpec::new(Column::Network, 12, 0, 5),
    ColumnSpec::new(Column::Conns, 5, 0, 2),
    ColumnSpec::new(Column::Procs, 5, 0, 3),
    ColumnSpec::new(Column::RxRate, 10, 0, 0),
    ColumnSpec::new(Column::TxRate, 10, 0, 0),
    ColumnSpec::new(Column::RxTotal, 10, 0, 4),
    ColumnSpec::new(Column::TxTotal, 10, 0, 4),
];

/// The remote side of connections, without the port: what the Remote hosts tab groups by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemoteAddr {
    Ip(IpAddr),
    /// `*`: an unconnected socket that talked to several peers.
    Many,
    /// Anything the collector printed that is not an address.
    Other(String),
}

impl RemoteAddr {
    /// From a record's `remote`: `10.0.0.2:443`, `[2001:db8::1]:443`, `10.0.0.2` (no ports)
    /// or `*`.
    pub fn parse(remote: &str) -> Self {
        if remote == "*" {
            return Self::Many;
        }
        let host = if let Some(rest) = remote.strip_prefix('[') {
            rest.split_once(']').map_or(rest, |(host, _)| host)
        } else if remote.matches(':').count() == 1 {
            remote.split_once(':').map_or(remote, |(host, _)| host)
        } else {
            remote
        };
        host.parse()
            .map_or_else(|_| Self::Other(remote.to_string()), Self::Ip)
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Many => f.write_str("*"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RemoteTrack {
    pub addr: RemoteAddr,
    /// Resolved name, filled in by whoever resolves names.
    pub name: Option<String>,
    /// The name came from a DNS answer a process received: names from elsewhere (reverse
    /// DNS) do not replace it.
    pub from_dns: bool,
    /// The user's name for the network the address is in (`[names.networks]`).
    pub network: Option<String>,
    pub connections: usize,
    pub processes: usize,
    pub last_seen: Instant,
    pub meter: Meter,
    pub search: String,
}

impl RemoteTrack {
    pub fn new(addr: RemoteAddr, now: Instant) -> Self {
        let mut track = Self {
            addr,
            name: None,
            network: None,
            from_dns: false,
            connections: 0,
            processes: 0,
            last_seen: now,
            meter: Meter::default(),
            search: String::new(),
        };
        track.set_name(None);
        track
    }

    pub fn set_name(&mut self, name: Option<String>) {
        self.name = name;
        self.refresh_search();
    }

    /// The network as the newest record names it.
    pub fn set_network(&mut self, network: Option<&str>) {
        if self.network.as_deref() != network {
            self.network = network.map(str::to_owned);
            self.refresh_search();
        }
    }

    fn refresh_search(&mut self) {
        self.search = format!(
            "{} {} {}",
            self.addr,
            self.name.as_deref().unwrap_or(""),
            self.network.as_deref().unwrap_or("")
        )
        .to_lowercase();
    }
}

impl Track for RemoteTrack {
    type Key = RemoteAddr;
    fn key(&self) -> &RemoteAddr {
        &self.addr
    }
}

impl TableRow for RemoteTrack {
    const COLUMNS: &'static [ColumnSpec] = COLUMNS;

    fn row_key(&self) -> RowKey {
        RowKey::Remote(self.addr.clone())
    }

    fn is_row(&self, key: &RowKey) -> bool {
        matches!(key, RowKey::Remote(addr) if *addr == self.addr)
    }

    fn search(&self) -> &str {
        &self.search
    }

    fn sort_value(&self, column: Column) -> SortValue<'_> {
        let rate = &self.meter.rate;
        let totals = self.meter.totals;
        match column {
            Column::Remote => SortValue::Key,
            Column::Host => SortValue::Text(self.name.as_deref().unwrap_or("")),
            Column::Network => SortValue::Text(self.network.as_deref().unwrap_or("")),
            Column::Conns => SortValue::Int(self.connections as u64),
            Column::Procs => SortValue::Int(self.processes as u64),
            Column::RxRate => SortValue::Float(rate.rx()),
            Column::TxRate => SortValue::Float(rate.tx()),
            Column::RxTotal => SortValue::Int(totals.rx),
            Column::TxTotal => SortValue::Int(totals.tx),
            _ => SortValue::Float(rate.both()),
        }
    }

    fn row(&self, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
        let cells = columns.iter().map(|&(column, width)| match column {
            Column::Remote => text(&self.addr.to_string()),
            Column::Host => or_dash(self.name.as_deref()),
            Column::Network => or_dash(self.network.as_deref()),
            Column::Conns => right(self.connections.to_string()),
            Column::Procs => right(self.processes.to_string()),
            _ => meter_cell(&self.meter, column, width, state.unit()),
        });
        Row::new(cells.collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_lose_their_ports() {
        let ip = |s: &str| RemoteAddr::Ip(s.parse().unwrap());
        assert_eq!(RemoteAddr::parse("10.0.0.2:443"), ip("10.0.0.2"));
        assert_eq!(RemoteAddr::parse("[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(RemoteAddr::parse("10.0.0.2"), ip("10.0.0.2"));
        assert_eq!(RemoteAddr::parse("2001:db8::7"), ip("2001:db8::7"));
        assert_eq!(RemoteAddr::parse("*"), RemoteAddr::Many);
        assert_eq!(RemoteAddr::parse("?"), RemoteAddr::Other("?".into()));
        assert_eq!(ip("2001:db8::1").to_string(), "2001:db8::1");
    }
}
