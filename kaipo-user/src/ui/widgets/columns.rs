//! Table columns: their titles, how each claims width, and which fit a terminal.
//!
//! Every tab lists its own columns as [`ColumnSpec`]s; this module only knows how to lay
//! such a list out.

use ratatui::{
    layout::Alignment,
    text::Line,
    widgets::{Cell, Row},
};

use super::MARKER;
use crate::ui::theme::Theme;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// Received plus sent per second: the default order, not a column on screen.
    Traffic,
    Pid,
    Name,
    Process,
    User,
    Container,
    Unit,
    Conns,
    Procs,
    Proto,
    Local,
    Remote,
    Host,
    Network,
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
            Self::Unit => "UNIT",
            Self::Conns => "CONNS",
            Self::Procs => "PROCS",
            Self::Proto => "PROTO",
            Self::Local => "LOCAL",
            Self::Remote => "REMOTE",
            Self::Host => "HOST",
            Self::Network => "NETWORK",
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

    /// Numbers, and the sparkline, whose newest sample is at the right.
    pub fn right_aligned(self) -> bool {
        (self.numeric() && self != Self::Traffic) || self == Self::Activity
    }
}

/// How a column claims width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    pub column: Column,
    /// Its width when nothing is spare.
    pub width: u16,
    /// Its share of what is left once every kept column has its width; 0 keeps the width.
    pub grow: u16,
    /// Lower keeps longer: columns drop highest first when the terminal is narrow.
    pub priority: u8,
}

impl ColumnSpec {
    pub const fn new(column: Column, width: u16, grow: u16, priority: u8) -> Self {
        Self {
            column,
            width,
            grow,
            priority,
        }
    }
}

/// The columns of `specs` that fit in `width` (display order kept) with their widths:
/// columns are taken by priority while they fit, then the room left over is shared among the
/// growing columns by their `grow` weights, the last of them taking any rounding remainder.
pub fn fit_columns(specs: &[ColumnSpec], width: u16) -> Vec<(Column, u16)> {
    // The selection marker takes a column of its own.
    let available = width.saturating_sub(MARKER.len() as u16);
    let mut by_priority: Vec<usize> = (0..specs.len()).collect();
    by_priority.sort_by_key(|&i| specs[i].priority);
    let mut kept = vec![false; specs.len()];
    let mut used = 0u16;
    for i in by_priority {
        let gap = u16::from(used > 0);
        let need = specs[i].width + gap;
        if used + need <= available {
            used += need;
            kept[i] = true;
        }
    }
    let mut weights: u32 = (0..specs.len())
        .filter(|&i| kept[i])
        .map(|i| u32::from(specs[i].grow))
        .sum();
    let mut spare = u32::from(available - used);
    let mut fitted = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if !kept[i] {
            continue;
        }
        let mut width = spec.width;
        if spec.grow > 0 && weights > 0 {
            let share = spare * u32::from(spec.grow) / weights;
            // The last grower takes what rounding left.
            let share = if weights == u32::from(spec.grow) {
                spare
            } else {
                share
            };
            width += share as u16;
            spare -= share;
            weights -= u32::from(spec.grow);
        }
        fitted.push((spec.column, width));
    }
    fitted
}

/// The column titles, the sort column marked with its direction.
pub fn header_row(
    columns: &[(Column, u16)],
    sort: Option<(Column, bool)>,
    theme: Theme,
) -> Row<'static> {
    let cells = columns.iter().map(|&(column, _)| {
        let mut title = column.title().to_string();
        if let Some((_, descending)) = sort.filter(|(sorted, _)| *sorted == column) {
            title.push_str(if descending { " ▼" } else { " ▲" });
        }
        if column.right_aligned() {
            Cell::from(Line::from(title).alignment(Alignment::Right))
        } else {
            Cell::from(title)
        }
    });
    Row::new(cells.collect::<Vec<_>>()).style(theme.column_header())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::tabs::processes;

    fn width_of(fit: &[(Column, u16)], column: Column) -> Option<u16> {
        fit.iter().find(|(c, _)| *c == column).map(|&(_, w)| w)
    }

    #[test]
    fn columns_drop_by_priority_and_the_command_takes_the_rest() {
        let fit = fit_columns(processes::COLUMNS, 80);
        let names: Vec<&str> = fit.iter().map(|(c, _)| c.title()).collect();
        assert_eq!(
            names,
            ["PID", "NAME", "USER", "RX/s", "TX/s", "RX total", "TX total"]
        );
        let total =
            |fit: &[(Column, u16)]| fit.iter().map(|(_, w)| w).sum::<u16>() + fit.len() as u16 - 1;
        assert_eq!(total(&fit), 78);
        let wide = fit_columns(processes::COLUMNS, 160);
        assert_eq!(wide.len(), processes::COLUMNS.len());
        assert_eq!(total(&wide), 158);
        // Everything but COMMAND keeps its width; COMMAND gets the remaining 158 - 125 - 11
        // gaps (it got 30 when NAME shared the room).
        assert_eq!(width_of(&wide, Column::Name), Some(15));
        assert_eq!(width_of(&wide, Column::Command), Some(22));
        let wider = fit_columns(processes::COLUMNS, 250);
        assert_eq!(width_of(&wider, Column::Command), Some(112));
    }

    #[test]
    fn growers_share_by_weight_and_the_last_takes_the_remainder() {
        use Column::*;
        let specs = [
            ColumnSpec::new(Local, 10, 1, 0),
            ColumnSpec::new(Remote, 10, 2, 0),
            ColumnSpec::new(Pid, 5, 0, 1),
        ];
        // 2 marker + 27 used (10 + 1 + 10 + 1 + 5): 11 spare, 3 to LOCAL and 8 to REMOTE.
        assert_eq!(
            fit_columns(&specs, 40),
            [(Local, 13), (Remote, 18), (Pid, 5)]
        );
        // Too narrow for PID: it goes, and nothing is spare.
        assert_eq!(fit_columns(&specs, 23), [(Local, 10), (Remote, 10)]);
    }
}
