//! One table row per remembered process, connection, interface or remote host, holding
//! only the columns that fit.

use ratatui::widgets::{Cell, Row};

use super::{right, sparkline_text};
use crate::ui::{
    order::Column,
    rates::{Meter, Sample},
    state::LiveState,
    tracks::{ConnectionTrack, InterfaceTrack, ProcessTrack, RemoteTrack},
};

/// Marks an exited process, which also shows dimmed for as long as it stays.
pub const EXITED_MARK: &str = "✕ ";

fn text(s: &str) -> Cell<'static> {
    Cell::from(s.to_string())
}

fn or_dash(s: Option<&str>) -> Cell<'static> {
    text(s.filter(|s| !s.is_empty()).unwrap_or("-"))
}

/// The cells every table shares: rates, totals and the activity sparkline.
fn meter_cell(meter: &Meter, column: Column, width: u16, state: &LiveState) -> Cell<'static> {
    let unit = state.unit();
    match column {
        Column::RxRate => right(unit.amount(meter.rate.rx())),
        Column::TxRate => right(unit.amount(meter.rate.tx())),
        Column::RxTotal => right(crate::format::bytes(meter.totals.rx)),
        Column::TxTotal => right(crate::format::bytes(meter.totals.tx)),
        Column::Activity => {
            let samples: Vec<u64> = meter
                .history
                .iter()
                .flat_map(|h| h.samples())
                .map(|s: &Sample| s.rx_per_sec().saturating_add(s.tx_per_sec()))
                .collect();
            Cell::from(sparkline_text(&samples, width.into()))
        }
        _ => text(""),
    }
}

pub fn process(p: &ProcessTrack, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
    let cells = columns.iter().map(|&(column, width)| match column {
        Column::Pid => right(p.pid.to_string()),
        Column::Name if p.exited() => text(&format!("{EXITED_MARK}{}", p.name)),
        Column::Name => text(&p.name),
        Column::User => text(&p.user_label()),
        Column::Container => or_dash(p.container.as_deref()),
        Column::Conns => right(p.connections.to_string()),
        Column::Command => text(&p.cmdline),
        _ => meter_cell(&p.meter, column, width, state),
    });
    let row = Row::new(cells.collect::<Vec<_>>());
    if p.exited() {
        row.style(state.theme.exited())
    } else {
        row
    }
}

pub fn connection(
    c: &ConnectionTrack,
    columns: &[(Column, u16)],
    state: &LiveState,
) -> Row<'static> {
    let owner = state.process(c.key.pid);
    let cells = columns.iter().map(|&(column, width)| match column {
        Column::Pid => right(c.key.pid.to_string()),
        Column::Process => text(&c.process),
        Column::Proto => text(&c.key.proto),
        Column::Local => text(&c.key.local),
        Column::Remote => text(&c.key.remote),
        Column::Service => or_dash(c.service.as_deref()),
        Column::State => or_dash(c.state.as_deref()),
        _ => meter_cell(&c.meter, column, width, state),
    });
    let row = Row::new(cells.collect::<Vec<_>>());
    if owner.is_some_and(ProcessTrack::exited) {
        row.style(state.theme.exited())
    } else {
        row
    }
}

pub fn interface(i: &InterfaceTrack, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
    let cells = columns.iter().map(|&(column, width)| match column {
        Column::Name => text(&i.name),
        Column::RxPackets => right(format!("{:.0}", i.packets.rate.rx())),
        Column::TxPackets => right(format!("{:.0}", i.packets.rate.tx())),
        _ => meter_cell(&i.meter, column, width, state),
    });
    Row::new(cells.collect::<Vec<_>>())
}

pub fn remote(r: &RemoteTrack, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
    let cells = columns.iter().map(|&(column, width)| match column {
        Column::Remote => text(&r.addr.to_string()),
        Column::Host => or_dash(r.name.as_deref()),
        Column::Conns => right(r.connections.to_string()),
        Column::Procs => right(r.processes.to_string()),
        _ => meter_cell(&r.meter, column, width, state),
    });
    Row::new(cells.collect::<Vec<_>>())
}
