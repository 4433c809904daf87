//! Small reports with every feature the exporters show, for their golden tests.

use crate::model::{Dimension, Period, PeriodRow, Periods, Report, ReportRow, Tier};

/// A small report with every feature the exporters show, for their golden tests.
pub(crate) fn sample_report() -> Report {
    use crate::store::SeriesPoint;
    let row = |key: &str, rx: u64, tx: u64, rxp: u64, txp: u64| ReportRow {
        key: key.into(),
        name: None,
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: rxp,
        tx_packets: txp,
        process: None,
    };
    let t0 = 1_795_600_800_000; // 2026-11-25T10:00:00Z
    Report {
        from_ms: t0,
        to_ms: t0 + 3 * 3_600_000,
        by: Some(Dimension::App),
        tier: Some(Tier::Hour),
        rows: vec![
            row("firefox", 1_610_612_736, 104_857_600, 1_100_000, 700_000),
            row("curl, \"the\" tool", 5_242_880, 1024, 4000, 900),
            row("<script>alert(1)</script>", 2048, 512, 3, 2),
        ],
        total: row("", 1_617_000_000, 106_000_000, 1_104_100, 700_950),
        series: vec![
            SeriesPoint {
                ts_ms: t0,
                rx_bytes: 1_073_741_824,
                tx_bytes: 52_428_800,
            },
            SeriesPoint {
                ts_ms: t0 + 3_600_000,
                rx_bytes: 536_870_912,
                tx_bytes: 52_428_800,
            },
            SeriesPoint {
                ts_ms: t0 + 2 * 3_600_000,
                rx_bytes: 6_387_264,
                tx_bytes: 1_142_400,
            },
        ],
        top_apps: vec![
            row("firefox", 1_610_612_736, 104_857_600, 0, 0),
            row("curl, \"the\" tool", 5_242_880, 1024, 0, 0),
        ],
        top_remotes: vec![
            row("2001:db8::1", 1_073_741_824, 52_428_800, 0, 0),
            row("10.0.0.2", 536_870_912, 52_428_800, 0, 0),
            row("", 4096, 0, 0, 0),
        ],
        per: None,
        periods: Vec::new(),
    }
}

/// Two days, split by app, for the per-period goldens: 2026-11-25 (firefox, then curl) and
/// 2026-11-26 from midnight up to 06:00, where the range ends.
pub(crate) fn sample_periods() -> Report {
    let day = 86_400_000;
    let t0 = 1_795_564_800_000; // 2026-11-25T00:00:00Z
    let line = |start: i64, to: i64, app: &str, rx: u64, tx: u64| PeriodRow {
        period_ms: start,
        from_ms: start,
        to_ms: to,
        app: Some(app.into()),
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: rx / 1000,
        tx_packets: tx / 1000,
    };
    Report {
        from_ms: t0,
        to_ms: t0 + day + 6 * 3_600_000,
        by: Some(Dimension::App),
        tier: Some(Tier::Hour),
        per: Some(Periods {
            period: Period::Day,
            by_app: true,
        }),
        periods: vec![
            line(t0, t0 + day, "firefox", 8_640_000_000, 864_000_000),
            line(t0, t0 + day, "curl, \"the\" tool", 86_400, 0),
            line(t0 + day, t0 + day + 6 * 3_600_000, "firefox", 21_600_000, 0),
        ],
        ..Report::default()
    }
}

/// A report by process: one process in a container, one on the host, unattributed traffic.
pub(crate) fn sample_processes() -> Report {
    let row = |key: &str, rx: u64, process: Option<Box<crate::model::ProcessFields>>| ReportRow {
        key: key.into(),
        name: None,
        rx_bytes: rx,
        tx_bytes: rx / 2,
        rx_packets: rx / 1000,
        tx_packets: rx / 2000,
        process,
    };
    let fields = |pid, name: &str, user: &str, container: Option<&str>| {
        Some(Box::new(crate::model::ProcessFields {
            pid,
            name: name.into(),
            user: user.into(),
            container: container.map(str::to_owned),
            ..Default::default()
        }))
    };
    Report {
        from_ms: 1_795_600_800_000,
        to_ms: 1_795_604_400_000,
        by: Some(Dimension::Process),
        tier: Some(Tier::Interval),
        rows: vec![
            row(
                "nginx[20]",
                30_000,
                fields(20, "nginx", "www-data", Some("4f2a9c")),
            ),
            row("sshd[10]", 20_000, fields(10, "sshd", "root", None)),
            row("(unattributed)", 4000, None),
        ],
        total: row("total", 54_000, None),
        ..Report::default()
    }
}
