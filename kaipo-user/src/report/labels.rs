//! Names, labels and derived figures every export shows the same way: titles, keys, periods,
//! average rates, the rows `--top` cut off.

use std::time::Duration;

use super::time;
use crate::model::{Dimension, Period, PeriodRow, Periods, Report, ReportRow, Tier};

/// The column or axis title for a dimension.
pub(super) fn dimension_title(by: Option<Dimension>) -> &'static str {
    by.map_or("key", Dimension::as_str)
}

pub(super) fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Interval => "interval",
        Tier::Minute => "minute",
        Tier::Hour => "hour",
        Tier::Day => "day",
    }
}

pub(super) fn period_name(period: Period) -> &'static str {
    match period {
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    }
}

/// A period as people name it, in UTC: `2026-11-25 10:00`, `2026-11-25`, `2026-11`.
pub(super) fn period_label(period: Period, start_ms: i64) -> String {
    let [y, mo, d, h, ..] = time::civil(start_ms);
    match period {
        Period::Hour => format!("{y:04}-{mo:02}-{d:02} {h:02}:00"),
        Period::Day => format!("{y:04}-{mo:02}-{d:02}"),
        Period::Month => format!("{y:04}-{mo:02}"),
    }
}

/// Bytes per second over the part of the period inside the report's range.
pub(super) fn period_rate(p: &PeriodRow) -> f64 {
    let secs = (p.to_ms - p.from_ms) as f64 / 1000.0;
    if secs <= 0.0 {
        return 0.0;
    }
    p.rx_bytes.saturating_add(p.tx_bytes) as f64 / secs
}

/// The sum of the period rows: every period's traffic, whatever `--top` left out of a split.
pub(super) fn periods_total(report: &Report) -> ReportRow {
    report
        .periods
        .iter()
        .fold(ReportRow::default(), |acc, p| ReportRow {
            key: "total".into(),
            name: None,
            rx_bytes: acc.rx_bytes.saturating_add(p.rx_bytes),
            tx_bytes: acc.tx_bytes.saturating_add(p.tx_bytes),
            rx_packets: acc.rx_packets.saturating_add(p.rx_packets),
            tx_packets: acc.tx_packets.saturating_add(p.tx_packets),
            process: None,
        })
}

/// What a report's figures are grouped by: `by app`, `per day`, `per month by app`.
pub(super) fn subject(report: &Report) -> String {
    match report.per {
        Some(Periods {
            period,
            by_app: true,
        }) => format!("per {} by app", period_name(period)),
        Some(Periods { period, .. }) => format!("per {}", period_name(period)),
        None => format!("by {}", dimension_title(report.by)),
    }
}

/// `Traffic by app from 2026-11-25T10:00:00Z to 2026-11-26T10:00:00Z (1d), minute tier`
/// (`Traffic per day by app ...` with `--per`); a report without data has no tier.
pub(super) fn title(report: &Report) -> String {
    let mut title = format!(
        "Traffic {} from {} to {} ({})",
        subject(report),
        time::rfc3339(report.from_ms),
        time::rfc3339(report.to_ms),
        time::span(report.to_ms - report.from_ms),
    );
    if let Some(tier) = report.tier {
        title.push_str(&format!(", {} tier", tier_name(tier)));
    }
    title
}

/// A key as people read it: the store leaves a key empty when it is unknown (a remote of an
/// unconnected socket) or when there is none (a host process has no container).
pub(super) fn display_key(by: Option<Dimension>, key: &str) -> &str {
    match (key.is_empty(), by) {
        (false, _) => key,
        (true, Some(Dimension::Container)) => "(host)",
        (true, Some(Dimension::Pod)) => "(no pod)",
        (true, Some(Dimension::Unit)) => "(no unit)",
        (true, Some(Dimension::Network)) => "(unnamed)",
        (true, _) => "(unknown)",
    }
}

/// A row's key as people read it, with the remote's name beside its address when known:
/// `192.0.2.7 (api.example.com)`.
pub(super) fn row_label(by: Option<Dimension>, row: &ReportRow) -> String {
    let key = display_key(by, &row.key);
    match &row.name {
        Some(name) => format!("{key} ({name})"),
        None => key.to_owned(),
    }
}

/// Traffic of the rows cut off by `--top`: the total minus the rows shown, or nothing when
/// every row is shown.
pub(super) fn others(report: &Report) -> Option<ReportRow> {
    let shown = report
        .rows
        .iter()
        .fold(ReportRow::default(), |acc, r| ReportRow {
            key: String::new(),
            name: None,
            rx_bytes: acc.rx_bytes.saturating_add(r.rx_bytes),
            tx_bytes: acc.tx_bytes.saturating_add(r.tx_bytes),
            rx_packets: acc.rx_packets.saturating_add(r.rx_packets),
            tx_packets: acc.tx_packets.saturating_add(r.tx_packets),
            process: None,
        });
    let t = &report.total;
    let rest = ReportRow {
        key: "(others)".into(),
        name: None,
        rx_bytes: t.rx_bytes.saturating_sub(shown.rx_bytes),
        tx_bytes: t.tx_bytes.saturating_sub(shown.tx_bytes),
        rx_packets: t.rx_packets.saturating_sub(shown.rx_packets),
        tx_packets: t.tx_packets.saturating_sub(shown.tx_packets),
        process: None,
    };
    (rest.rx_bytes + rest.tx_bytes + rest.rx_packets + rest.tx_packets > 0).then_some(rest)
}

pub(super) fn range_duration(report: &Report) -> Duration {
    Duration::from_millis(u64::try_from(report.to_ms - report.from_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn others_is_what_top_cut_off() {
        let report = sample_report();
        let rest = others(&report).unwrap();
        assert_eq!(
            (
                rest.rx_bytes,
                rest.tx_bytes,
                rest.rx_packets,
                rest.tx_packets
            ),
            (
                1_617_000_000 - 1_610_612_736 - 5_242_880 - 2048,
                106_000_000 - 104_857_600 - 1024 - 512,
                1_104_100 - 1_100_000 - 4000 - 3,
                700_950 - 700_000 - 900 - 2,
            )
        );
        let all = Report {
            total: ReportRow {
                rx_bytes: 10,
                ..Default::default()
            },
            rows: vec![ReportRow {
                key: "a".into(),
                rx_bytes: 10,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(others(&all), None);
    }
}
