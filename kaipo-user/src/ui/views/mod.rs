//! One module per part of the screen. Shared here: which columns fit a width, and the
//! small text helpers every table uses.

pub mod detail;
pub mod help;
pub mod history;
pub mod rows;
pub mod table;

use ratatui::{
    layout::{Alignment, Rect},
    text::Line,
    widgets::Cell,
};

use super::order::{Column, View};

/// Width of the selection marker left of every table row.
pub const MARKER: &str = "> ";

/// How a column claims width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Spec {
    width: u16,
    /// Takes a share of what is left once every kept column has its width.
    fill: bool,
    /// Lower keeps longer: columns drop highest first when the terminal is narrow.
    priority: u8,
}

fn spec(view: View, column: Column) -> Spec {
    use Column::*;
    let s = |width, fill, priority| Spec {
        width,
        fill,
        priority,
    };
    match (view, column) {
        (View::Processes, Name) => s(15, true, 0),
        (View::Processes, Pid) => s(7, false, 1),
        (View::Processes, RxTotal | TxTotal) => s(10, false, 2),
        (View::Processes, User) => s(10, false, 3),
        (View::Processes, Conns) => s(5, false, 4),
        (View::Processes, Activity) => s(20, false, 5),
        (View::Processes, Container) => s(12, false, 6),
        (View::Processes, Command) => s(20, true, 7),
        (View::Connections, Remote) => s(21, true, 0),
        (View::Connections, Process) => s(12, false, 1),
        (View::Connections, Local) => s(21, true, 2),
        (View::Connections, Proto) => s(5, false, 3),
        (View::Connections, Pid) => s(7, false, 4),
        (View::Connections, Service) => s(8, false, 5),
        (View::Connections, RxTotal | TxTotal) => s(10, false, 6),
        (View::Connections, State) => s(11, false, 7),
        (View::Interfaces, Name) => s(10, true, 0),
        (View::Interfaces, RxTotal | TxTotal) => s(10, false, 1),
        (View::Interfaces, RxPackets | TxPackets) => s(9, false, 2),
        (View::Interfaces, Activity) => s(20, false, 3),
        (View::Remotes, Remote) => s(21, true, 0),
        (View::Remotes, Host) => s(20, true, 1),
        (View::Remotes, Conns) => s(5, false, 2),
        (View::Remotes, Procs) => s(5, false, 3),
        (View::Remotes, RxTotal | TxTotal) => s(10, false, 4),
        (_, RxRate | TxRate) => s(10, false, 0),
        _ => s(10, false, 9),
    }
}

/// The columns of `wanted` that fit in `width` (display order kept) with their widths:
/// columns are taken by priority while they fit, and what is left goes to fill columns.
pub fn fit_columns(view: View, wanted: &[Column], width: u16) -> Vec<(Column, u16)> {
    // The selection marker takes a column of its own.
    let available = width.saturating_sub(MARKER.len() as u16);
    let mut by_priority: Vec<usize> = (0..wanted.len()).collect();
    by_priority.sort_by_key(|&i| spec(view, wanted[i]).priority);
    let mut kept = vec![false; wanted.len()];
    let mut used = 0u16;
    for i in by_priority {
        let gap = u16::from(used > 0);
        let need = spec(view, wanted[i]).width + gap;
        if used + need <= available {
            used += need;
            kept[i] = true;
        }
    }
    let fills = (0..wanted.len())
        .filter(|&i| kept[i] && spec(view, wanted[i]).fill)
        .count() as u16;
    let mut spare = available - used;
    let mut fitted = Vec::new();
    let mut fills_left = fills;
    for (i, &column) in wanted.iter().enumerate() {
        if !kept[i] {
            continue;
        }
        let spec = spec(view, column);
        let mut width = spec.width;
        if spec.fill && fills_left > 0 {
            let share = spare / fills_left;
            width += share;
            spare -= share;
            fills_left -= 1;
        }
        fitted.push((column, width));
    }
    fitted
}

/// A right-aligned cell, for numbers.
pub fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

/// Right-aligned columns: numbers, and the sparkline, whose newest sample is at the right.
pub fn is_right_aligned(column: Column) -> bool {
    (column.numeric() && column != Column::Traffic) || column == Column::Activity
}

/// `samples` (oldest first) as block characters, `width` wide, newest at the right, each
/// character the peak of the samples it covers and scaled to the peak of them all.
pub fn sparkline_text(samples: &[u64], width: usize) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if width == 0 {
        return String::new();
    }
    let group = samples.len().div_ceil(width).max(1);
    let mut peaks: Vec<u64> = samples
        .rchunks(group)
        .map(|chunk| chunk.iter().copied().max().unwrap_or(0))
        .collect();
    peaks.reverse();
    let top = peaks.iter().copied().max().unwrap_or(0);
    let mut text = " ".repeat(width.saturating_sub(peaks.len()));
    for v in peaks {
        if v == 0 || top == 0 {
            text.push(' ');
        } else {
            let level = (v as u128 * LEVELS.len() as u128).div_ceil(top as u128) as usize;
            text.push(LEVELS[level.clamp(1, LEVELS.len()) - 1]);
        }
    }
    text
}

/// A `width` x `height` rectangle centred in `area`, clipped to it.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_drop_by_priority_and_fill_takes_the_rest() {
        let fit = fit_columns(View::Processes, View::Processes.columns(), 80);
        let names: Vec<&str> = fit.iter().map(|(c, _)| c.title()).collect();
        assert_eq!(
            names,
            ["PID", "NAME", "USER", "RX/s", "TX/s", "RX total", "TX total"]
        );
        let total: u16 = fit.iter().map(|(_, w)| w).sum::<u16>() + fit.len() as u16 - 1;
        assert_eq!(total, 78);
        let wide = fit_columns(View::Processes, View::Processes.columns(), 160);
        assert_eq!(wide.len(), View::Processes.columns().len());
    }

    #[test]
    fn sparkline_scales_to_its_peak_and_keeps_the_newest_right() {
        assert_eq!(sparkline_text(&[0, 1, 2, 4, 8], 5), " ▁▂▄█");
        assert_eq!(sparkline_text(&[8, 0], 4), "  █ ");
        // Ten samples into five characters: peaks of pairs.
        assert_eq!(sparkline_text(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 2], 5), "▄   █");
        assert_eq!(sparkline_text(&[], 3), "   ");
    }
}
