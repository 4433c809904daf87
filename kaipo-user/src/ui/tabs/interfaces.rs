//! The Interfaces tab: link-layer traffic of every monitored interface, in bytes and
//! packets, with its last minute.

use ratatui::widgets::Row;

use crate::ui::{
    rates::Meter,
    state::LiveState,
    tabs::RowKey,
    tracks::Track,
    widgets::{
        columns::{Column, ColumnSpec},
        meter_cell, right,
        table::{SortValue, TableRow},
        text,
    },
};

/// Display order; NAME takes what room is left.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::new(Column::Name, 10, 1, 0),
    ColumnSpec::new(Column::RxRate, 10, 0, 0),
    ColumnSpec::new(Column::TxRate, 10, 0, 0),
    ColumnSpec::new(Column::RxPackets, 9, 0, 2),
    ColumnSpec::new(Column::TxPackets, 9, 0, 2),
    ColumnSpec::new(Column::RxTotal, 10, 0, 1),
    ColumnSpec::new(Column::TxTotal, 10, 0, 1),
    ColumnSpec::new(Column::Activity, 20, 0, 3),
];

#[derive(Clone, Debug)]
pub struct InterfaceTrack {
    pub name: String,
    pub meter: Meter,
    /// Packets rather than bytes, through the same smoothing.
    pub packets: Meter,
    pub search: String,
}

impl InterfaceTrack {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            meter: Meter::with_history(),
            packets: Meter::default(),
            search: name.to_lowercase(),
        }
    }
}

impl Track for InterfaceTrack {
    type Key = String;
    fn key(&self) -> &String {
        &self.name
    }
}

impl TableRow for InterfaceTrack {
    const COLUMNS: &'static [ColumnSpec] = COLUMNS;

    fn row_key(&self) -> RowKey {
        RowKey::Interface(self.name.clone())
    }

    fn is_row(&self, key: &RowKey) -> bool {
        matches!(key, RowKey::Interface(name) if *name == self.name)
    }

    fn search(&self) -> &str {
        &self.search
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

    fn row(&self, columns: &[(Column, u16)], state: &LiveState) -> Row<'static> {
        let cells = columns.iter().map(|&(column, width)| match column {
            Column::Name => text(&self.name),
            Column::RxPackets => right(format!("{:.0}", self.packets.rate.rx())),
            Column::TxPackets => right(format!("{:.0}", self.packets.rate.tx())),
            _ => meter_cell(&self.meter, column, width, state.unit()),
        });
        Row::new(cells.collect::<Vec<_>>())
    }
}
