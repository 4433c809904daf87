//! Pieces the tabs share: the table, its columns, the header, the detail pane and the help
//! overlay, plus the small cell helpers every table uses.

pub mod columns;
pub mod detail;
pub mod header;
pub mod help;
pub mod table;

use ratatui::{
    layout::{Alignment, Rect},
    text::Line,
    widgets::Cell,
};

use self::columns::Column;
use super::{
    rates::{Meter, Sample},
    units::RateUnit,
};

/// Width of the selection marker left of every table row.
pub const MARKER: &str = "> ";

/// A left-aligned text cell.
pub fn text(s: &str) -> Cell<'static> {
    Cell::from(s.to_string())
}

/// A text cell, `-` when the text is unknown or empty.
pub fn or_dash(s: Option<&str>) -> Cell<'static> {
    text(s.filter(|s| !s.is_empty()).unwrap_or("-"))
}

/// A right-aligned cell, for numbers.
pub fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).alignment(Alignment::Right))
}

/// The cells every table shares: rates, totals and the activity sparkline; empty for any
/// other column.
pub fn meter_cell(meter: &Meter, column: Column, width: u16, unit: RateUnit) -> Cell<'static> {
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

/// `text` broken at spaces into lines of at most `width` characters; a word longer than a
/// line is cut into pieces. Never returns an empty list.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut chars: Vec<char> = word.chars().collect();
        if len > 0 && len + 1 + chars.len() > width {
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
        while chars.len() > width {
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                len = 0;
            }
            lines.push(chars.drain(..width).collect());
        }
        if chars.is_empty() {
            continue;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        len += chars.len();
        line.extend(chars);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_its_peak_and_keeps_the_newest_right() {
        assert_eq!(sparkline_text(&[0, 1, 2, 4, 8], 5), " ▁▂▄█");
        assert_eq!(sparkline_text(&[8, 0], 4), "  █ ");
        // Ten samples into five characters: peaks of pairs.
        assert_eq!(sparkline_text(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 2], 5), "▄   █");
        assert_eq!(sparkline_text(&[], 3), "   ");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_long_words() {
        assert_eq!(
            wrap("no BTF: counts from proc", 10),
            ["no BTF:", "counts", "from proc"]
        );
        assert_eq!(wrap("abcdefghijkl xy", 5), ["abcde", "fghij", "kl xy"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("fits exactly", 12), ["fits exactly"]);
    }
}
