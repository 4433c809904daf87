//! The terminal table: aligned columns in human units, the rows `--top` cut off folded into
//! one line, and a total line.

use std::io::{self, Write};

use super::{dimension_title, display_key, others, range_duration, title, ExportFormat, Exporter};
use crate::{
    format,
    store::{Report, ReportRow},
};

/// Keys longer than this are cut so one long command line does not push every figure off
/// the screen.
const MAX_KEY_CHARS: usize = 40;

pub struct TableExporter;

impl Exporter for TableExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Table
    }

    fn export(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", title(report))?;
        if report.rows.is_empty() {
            return writeln!(out, "No traffic recorded in this range.");
        }
        writeln!(out)?;

        let header = [
            dimension_title(report.by).to_ascii_uppercase(),
            "RECEIVED".into(),
            "SENT".into(),
            "TOTAL".into(),
            "AVG RATE".into(),
            "RX PACKETS".into(),
            "TX PACKETS".into(),
        ];
        let mut lines: Vec<[String; 7]> = report
            .rows
            .iter()
            .map(|row| {
                cells(
                    report,
                    row,
                    &printable_key(display_key(report.by, &row.key)),
                )
            })
            .collect();
        if let Some(rest) = others(report) {
            lines.push(cells(report, &rest, &rest.key));
        }
        let total = cells(report, &report.total, "total");

        let mut widths = header.clone().map(|h| h.chars().count());
        for line in lines.iter().chain([&total]) {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        write_line(out, &header, &widths)?;
        for line in &lines {
            write_line(out, line, &widths)?;
        }
        let rule_len = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(out, "{}", "-".repeat(rule_len))?;
        write_line(out, &total, &widths)
    }
}

fn cells(report: &Report, row: &ReportRow, key: &str) -> [String; 7] {
    [
        key.to_owned(),
        format::bytes(row.rx_bytes),
        format::bytes(row.tx_bytes),
        format::bytes(row.rx_bytes.saturating_add(row.tx_bytes)),
        format::rate(
            row.rx_bytes.saturating_add(row.tx_bytes),
            range_duration(report),
        ),
        row.rx_packets.to_string(),
        row.tx_packets.to_string(),
    ]
}

/// The first column left-aligned, the figures right-aligned, two spaces apart, no trailing
/// blanks.
fn write_line(out: &mut dyn Write, cells: &[String; 7], widths: &[usize; 7]) -> io::Result<()> {
    let key_pad = widths[0] - cells[0].chars().count();
    write!(out, "{}{}", cells[0], " ".repeat(key_pad))?;
    for (cell, width) in cells[1..].iter().zip(&widths[1..]) {
        write!(out, "  {cell:>width$}")?;
    }
    writeln!(out)
}

/// Keys are process names and command lines that anyone can choose: control characters would
/// move the cursor or recolour the terminal, so they are shown escaped.
fn printable_key(key: &str) -> String {
    let mut printable = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_control() {
            printable.extend(c.escape_default());
        } else {
            printable.push(c);
        }
    }
    if printable.chars().count() > MAX_KEY_CHARS {
        let mut cut: String = printable.chars().take(MAX_KEY_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        printable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    fn render(report: &Report) -> String {
        let mut out = Vec::new();
        TableExporter.export(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_table() {
        let expected = "\
Traffic by app from 2026-11-25T10:00:00Z to 2026-11-25T13:00:00Z (3h), hour tier

APP                        RECEIVED       SENT    TOTAL     AVG RATE  RX PACKETS  TX PACKETS
firefox                     1.5 GiB  100.0 MiB  1.6 GiB  155.1 KiB/s     1100000      700000
curl, \"the\" tool            5.0 MiB    1.0 KiB  5.0 MiB      486 B/s        4000         900
<script>alert(1)</script>   2.0 KiB      512 B  2.5 KiB        0 B/s           3           2
(others)                    1.1 MiB    1.1 MiB  2.2 MiB      211 B/s          97          48
--------------------------------------------------------------------------------------------
total                       1.5 GiB  101.1 MiB  1.6 GiB  155.8 KiB/s     1104100      700950
";
        assert_eq!(render(&sample_report()), expected);
    }

    #[test]
    fn empty_range_says_so() {
        let report = Report {
            from_ms: 0,
            to_ms: 60_000,
            ..Default::default()
        };
        assert_eq!(
            render(&report),
            "Traffic by key from 1970-01-01T00:00:00Z to 1970-01-01T00:01:00Z (1m)\n\
             No traffic recorded in this range.\n"
        );
    }

    #[test]
    fn keys_are_escaped_and_cut() {
        assert_eq!(printable_key("a\x1b[31mb\n"), "a\\u{1b}[31mb\\n");
        let long = "x".repeat(60);
        let cut = printable_key(&long);
        assert_eq!(cut.chars().count(), MAX_KEY_CHARS);
        assert!(cut.ends_with("x…"));
    }
}
