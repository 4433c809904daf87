//! The terminal table: aligned columns in human units, the rows `--top` cut off folded into
//! one line, and a total line.

use std::io::{self, Write};

use super::{
    dimension_title, others, period_label, period_name, period_rate, periods_total, range_duration,
    row_label, title, ExportFormat, Exporter,
};
use crate::{
    format,
    model::{Periods, Report, ReportRow},
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
        let empty = match report.per {
            Some(_) => report.periods.is_empty(),
            None => report.rows.is_empty(),
        };
        if empty {
            return writeln!(out, "No traffic recorded in this range.");
        }
        writeln!(out)?;
        match report.per {
            Some(per) => periods_table(out, report, per),
            None => rows_table(out, report),
        }
    }
}

fn rows_table(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let header: Vec<String> = [
        &dimension_title(report.by).to_ascii_uppercase(),
        "RECEIVED",
        "SENT",
        "TOTAL",
        "AVG RATE",
        "RX PACKETS",
        "TX PACKETS",
    ]
    .map(str::to_owned)
    .into();
    let mut lines: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|row| cells(report, row, &printable_key(&row_label(report.by, row))))
        .collect();
    if let Some(rest) = others(report) {
        lines.push(cells(report, &rest, &rest.key));
    }
    let total = cells(report, &report.total, "total");
    write_grid(out, &header, &lines, &total, 1)
}

fn cells(report: &Report, row: &ReportRow, key: &str) -> Vec<String> {
    let all = row.rx_bytes.saturating_add(row.tx_bytes);
    vec![
        key.to_owned(),
        format::bytes(row.rx_bytes),
        format::bytes(row.tx_bytes),
        format::bytes(all),
        format::rate(all, range_duration(report)),
        row.rx_packets.to_string(),
        row.tx_packets.to_string(),
    ]
}

/// One line per period (per period and app with `--by app`), as vnstat shows them.
fn periods_table(out: &mut dyn Write, report: &Report, per: Periods) -> io::Result<()> {
    let mut header = vec![period_name(per.period).to_ascii_uppercase()];
    if per.by_app {
        header.push("APP".into());
    }
    header.extend(["RECEIVED", "SENT", "TOTAL", "AVG RATE"].map(str::to_owned));
    let figures = |rx: u64, tx: u64, rate: String| {
        let all = rx.saturating_add(tx);
        [
            format::bytes(rx),
            format::bytes(tx),
            format::bytes(all),
            rate,
        ]
    };
    let mut previous = None;
    let lines: Vec<Vec<String>> = report
        .periods
        .iter()
        .map(|p| {
            // A split period names itself once, on its first line.
            let label = period_label(per.period, p.period_ms);
            let mut line = vec![if previous == Some(p.period_ms) {
                String::new()
            } else {
                label
            }];
            previous = Some(p.period_ms);
            if per.by_app {
                line.push(printable_key(p.app.as_deref().unwrap_or("")));
            }
            let rate = format!("{}/s", format::bytes(period_rate(p).round() as u64));
            line.extend(figures(p.rx_bytes, p.tx_bytes, rate));
            line
        })
        .collect();
    let sum = periods_total(report);
    let mut total = vec!["total".to_owned()];
    if per.by_app {
        total.push(String::new());
    }
    let all = sum.rx_bytes.saturating_add(sum.tx_bytes);
    total.extend(figures(
        sum.rx_bytes,
        sum.tx_bytes,
        format::rate(all, range_duration(report)),
    ));
    write_grid(out, &header, &lines, &total, if per.by_app { 2 } else { 1 })
}

/// A header, the lines, a rule and the total line; the first `left` columns left-aligned, the
/// figures right-aligned, two spaces apart, no trailing blanks.
fn write_grid(
    out: &mut dyn Write,
    header: &[String],
    lines: &[Vec<String>],
    total: &[String],
    left: usize,
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for line in lines.iter().map(Vec::as_slice).chain([total]) {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    write_line(out, header, &widths, left)?;
    for line in lines {
        write_line(out, line, &widths, left)?;
    }
    let rule_len = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    writeln!(out, "{}", "-".repeat(rule_len))?;
    write_line(out, total, &widths, left)
}

fn write_line(
    out: &mut dyn Write,
    cells: &[String],
    widths: &[usize],
    left: usize,
) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, &width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        if i < left {
            line.push_str(cell);
            line.push_str(&" ".repeat(width - cell.chars().count()));
        } else {
            line.push_str(&format!("{cell:>width$}"));
        }
    }
    writeln!(out, "{}", line.trim_end())
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
    fn golden_periods_table() {
        let expected = "\
Traffic per day by app from 2026-11-25T00:00:00Z to 2026-11-26T06:00:00Z (1d 6h), hour tier

DAY         APP               RECEIVED       SENT     TOTAL     AVG RATE
2026-11-25  firefox            8.0 GiB  824.0 MiB   8.9 GiB  107.4 KiB/s
            curl, \"the\" tool  84.4 KiB        0 B  84.4 KiB        1 B/s
2026-11-26  firefox           20.6 MiB        0 B  20.6 MiB     1000 B/s
------------------------------------------------------------------------
total                          8.1 GiB  824.0 MiB   8.9 GiB   86.1 KiB/s
";
        assert_eq!(render(&crate::report::sample_periods()), expected);
        // Without the split: no app column.
        let mut days = crate::report::sample_periods();
        days.per = Some(Periods {
            period: crate::model::Period::Month,
            by_app: false,
        });
        days.periods.truncate(1);
        days.periods[0].app = None;
        let text = render(&days);
        assert!(
            text.contains("\nMONTH    RECEIVED       SENT    TOTAL     AVG RATE\n"),
            "{text}"
        );
        assert!(
            text.contains("\n2026-11   8.0 GiB  824.0 MiB  8.9 GiB  107.4 KiB/s\n"),
            "{text}"
        );
    }

    #[test]
    fn host_processes_have_no_container() {
        let report = Report {
            by: Some(crate::model::Dimension::Container),
            rows: vec![ReportRow {
                key: String::new(),
                rx_bytes: 2048,
                ..ReportRow::default()
            }],
            ..Report::default()
        };
        let text = render(&report);
        assert!(text.contains("\n(host)     "), "{text}");
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
