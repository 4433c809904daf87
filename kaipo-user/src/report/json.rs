//! The JSON export, schema `kaipo.report/1` (documented in the README). It has its own
//! structs rather than serializing [`Report`] itself, so the published schema changes only
//! when this file does, never as a side effect of a change to the store's types.

use std::io::{self, Write};

use serde::Serialize;

use super::{period_label, period_rate, time, ExportFormat, Exporter};
use crate::model::{
    Dimension, Period, PeriodRow, ProcessFields, Report, ReportRow, SeriesPoint, Tier,
};

/// Bumped on any change that could break a reader: a removed or renamed field, a changed
/// meaning. Added fields keep the version.
pub const SCHEMA: &str = "kaipo.report/1";

pub struct JsonExporter;

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    from: String,
    to: String,
    from_ms: i64,
    to_ms: i64,
    by: Option<Dimension>,
    tier: Option<Tier>,
    rows: Vec<Row<'a>>,
    total: Totals,
    series: Vec<Point>,
    top_apps: Vec<Row<'a>>,
    top_remotes: Vec<Row<'a>>,
    /// Only with `--per`.
    #[serde(skip_serializing_if = "Option::is_none")]
    per: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    periods: Option<Vec<PeriodLine<'a>>>,
}

#[derive(Serialize)]
struct Row<'a> {
    key: &'a str,
    /// `pid`, `name`, `user` and `container` of a process row.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    process: Option<&'a ProcessFields>,
    /// Rows by remote: the name the address was last looked up by.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_name: Option<&'a str>,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
}

#[derive(Serialize)]
struct PeriodLine<'a> {
    period: String,
    from: String,
    to: String,
    from_ms: i64,
    to_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'a str>,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
    total_bytes: u64,
    /// Bytes per second over the part of the period in the range, rounded.
    avg_bytes_per_s: u64,
}

#[derive(Serialize)]
struct Totals {
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
}

#[derive(Serialize)]
struct Point {
    ts_ms: i64,
    rx_bytes: u64,
    tx_bytes: u64,
}

fn rows(rows: &[ReportRow]) -> Vec<Row<'_>> {
    rows.iter()
        .map(|r| Row {
            key: &r.key,
            process: r.process.as_deref(),
            remote_name: r.name.as_deref(),
            rx_bytes: r.rx_bytes,
            tx_bytes: r.tx_bytes,
            rx_packets: r.rx_packets,
            tx_packets: r.tx_packets,
        })
        .collect()
}

fn periods(per: Period, periods: &[PeriodRow]) -> Vec<PeriodLine<'_>> {
    periods
        .iter()
        .map(|p| PeriodLine {
            period: period_label(per, p.period_ms),
            from: time::rfc3339(p.from_ms),
            to: time::rfc3339(p.to_ms),
            from_ms: p.from_ms,
            to_ms: p.to_ms,
            app: p.app.as_deref(),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            rx_packets: p.rx_packets,
            tx_packets: p.tx_packets,
            total_bytes: p.rx_bytes.saturating_add(p.tx_bytes),
            avg_bytes_per_s: period_rate(p).round() as u64,
        })
        .collect()
}

fn points(series: &[SeriesPoint]) -> Vec<Point> {
    series
        .iter()
        .map(|p| Point {
            ts_ms: p.ts_ms,
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
        })
        .collect()
}

impl Exporter for JsonExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Json
    }

    fn export(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let t = &report.total;
        let document = Document {
            schema: SCHEMA,
            from: time::rfc3339(report.from_ms),
            to: time::rfc3339(report.to_ms),
            from_ms: report.from_ms,
            to_ms: report.to_ms,
            by: report.by,
            tier: report.tier,
            rows: rows(&report.rows),
            total: Totals {
                rx_bytes: t.rx_bytes,
                tx_bytes: t.tx_bytes,
                rx_packets: t.rx_packets,
                tx_packets: t.tx_packets,
            },
            series: points(&report.series),
            top_apps: rows(&report.top_apps),
            top_remotes: rows(&report.top_remotes),
            per: report.per.map(|p| p.period),
            periods: report.per.map(|p| periods(p.period, &report.periods)),
        };
        serde_json::to_writer_pretty(&mut *out, &document)?;
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    fn render(report: &Report) -> String {
        let mut out = Vec::new();
        JsonExporter.export(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_json() {
        let mut report = sample_report();
        // Shorter lists keep the golden text readable; every field still appears.
        report.rows.truncate(2);
        report.series.truncate(1);
        report.top_apps.truncate(1);
        report.top_remotes.truncate(1);
        let expected = r#"{
  "schema": "kaipo.report/1",
  "from": "2026-11-25T10:00:00Z",
  "to": "2026-11-25T13:00:00Z",
  "from_ms": 1795600800000,
  "to_ms": 1795611600000,
  "by": "app",
  "tier": "hour",
  "rows": [
    {
      "key": "firefox",
      "rx_bytes": 1610612736,
      "tx_bytes": 104857600,
      "rx_packets": 1100000,
      "tx_packets": 700000
    },
    {
      "key": "curl, \"the\" tool",
      "rx_bytes": 5242880,
      "tx_bytes": 1024,
      "rx_packets": 4000,
      "tx_packets": 900
    }
  ],
  "total": {
    "rx_bytes": 1617000000,
    "tx_bytes": 106000000,
    "rx_packets": 1104100,
    "tx_packets": 700950
  },
  "series": [
    {
      "ts_ms": 1795600800000,
      "rx_bytes": 1073741824,
      "tx_bytes": 52428800
    }
  ],
  "top_apps": [
    {
      "key": "firefox",
      "rx_bytes": 1610612736,
      "tx_bytes": 104857600,
      "rx_packets": 0,
      "tx_packets": 0
    }
  ],
  "top_remotes": [
    {
      "key": "2001:db8::1",
      "rx_bytes": 1073741824,
      "tx_bytes": 52428800,
      "rx_packets": 0,
      "tx_packets": 0
    }
  ]
}
"#;
        assert_eq!(render(&report), expected);
    }

    #[test]
    fn process_rows_have_their_fields_and_periods_their_lines() {
        let value: serde_json::Value =
            serde_json::from_str(&render(&crate::report::sample_processes())).unwrap();
        assert_eq!(
            value["rows"],
            serde_json::json!([
                {"key": "nginx[20]", "pid": 20, "name": "nginx", "user": "www-data",
                 "container": "4f2a9c", "rx_bytes": 30000, "tx_bytes": 15000,
                 "rx_packets": 30, "tx_packets": 15},
                {"key": "sshd[10]", "pid": 10, "name": "sshd", "user": "root",
                 "container": null, "rx_bytes": 20000, "tx_bytes": 10000,
                 "rx_packets": 20, "tx_packets": 10},
                {"key": "(unattributed)", "rx_bytes": 4000, "tx_bytes": 2000,
                 "rx_packets": 4, "tx_packets": 2},
            ])
        );
        assert!(value.get("per").is_none() && value.get("periods").is_none());

        let value: serde_json::Value =
            serde_json::from_str(&render(&crate::report::sample_periods())).unwrap();
        assert_eq!(value["per"], "day");
        assert_eq!(
            value["periods"][2],
            serde_json::json!({
                "period": "2026-11-26", "from": "2026-11-26T00:00:00Z",
                "to": "2026-11-26T06:00:00Z", "from_ms": 1_795_651_200_000_i64,
                "to_ms": 1_795_672_800_000_i64, "app": "firefox", "rx_bytes": 21_600_000,
                "tx_bytes": 0, "rx_packets": 21600, "tx_packets": 0,
                "total_bytes": 21_600_000, "avg_bytes_per_s": 1000
            })
        );
        assert_eq!(value["periods"][0]["avg_bytes_per_s"], 110_000);
    }

    #[test]
    fn empty_report_has_nulls_and_empty_lists() {
        let value: serde_json::Value = serde_json::from_str(&render(&Report::default())).unwrap();
        assert_eq!(value["schema"], SCHEMA);
        assert!(value["by"].is_null() && value["tier"].is_null());
        assert_eq!(value["rows"], serde_json::json!([]));
        assert_eq!(value["total"]["rx_bytes"], 0);
        assert_eq!(value["from"], "1970-01-01T00:00:00Z");
    }
}
