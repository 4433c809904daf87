//! `kaipo report`: traffic history over a time range, grouped by one [`Dimension`], as a
//! table, JSON, CSV or one self-contained HTML page.
//!
//! The figures come from one [`Query`] answered by the store or the daemon
//! ([`source`]); each output format is one [`Exporter`] over the resulting [`Report`], so a
//! new format is one new file and one arm in [`ExportFormat::exporter`].

mod csv;
mod html;
mod json;
pub mod source;
mod svg;
mod table;
pub mod time;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

pub use self::{
    csv::CsvExporter, html::HtmlExporter, json::JsonExporter, source::Source, table::TableExporter,
};
use crate::model::{Dimension, Period, PeriodRow, Periods, Query, Report, ReportRow, Tier};

/// What `kaipo report` is asked for, as plain values (the command line converts into this
/// once, in `cli.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// History up to now, when no `from_ms` is given.
    pub since: Duration,
    pub from_ms: Option<i64>,
    /// Exclusive end; `None` is now.
    pub to_ms: Option<i64>,
    /// What rows are grouped by; `None` is by app, or with `per` no split.
    pub by: Option<Dimension>,
    /// Totals per calendar period instead of per key.
    pub per: Option<Period>,
    /// Rows, largest first (per period with `per` and `by` app); 0 for all.
    pub top: usize,
    /// `None`: from the extension of `output`, else a table.
    pub format: Option<ExportFormat>,
    pub output: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub socket: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            since: Duration::from_secs(86_400),
            from_ms: None,
            to_ms: None,
            by: None,
            per: None,
            top: 20,
            format: None,
            output: None,
            db: None,
            socket: None,
        }
    }
}

impl ReportOptions {
    /// The question these options ask, given the time now.
    pub fn query(&self, now_ms: i64) -> anyhow::Result<Query> {
        let (from_ms, to_ms) = time::resolve_range(self.since, self.from_ms, self.to_ms, now_ms)
            .map_err(anyhow::Error::msg)?;
        let per = match (self.per, self.by) {
            (None, _) => None,
            (Some(period), None) => Some(Periods {
                period,
                by_app: false,
            }),
            (Some(period), Some(Dimension::App)) => Some(Periods {
                period,
                by_app: true,
            }),
            (Some(_), Some(other)) => anyhow::bail!(
                "--per splits periods by app only, not by {}; use --by app or leave --by out",
                dimension_title(Some(other))
            ),
        };
        // No uid filter: reading the database directly is governed by its file permissions,
        // and the daemon applies the caller's uid itself from the socket's peer credentials.
        Ok(Query {
            from_ms,
            to_ms,
            by: self.by.unwrap_or(Dimension::App),
            top: self.top,
            uid: None,
            per,
        })
    }
}

/// The formats `kaipo report --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ExportFormat {
    Table,
    Json,
    Csv,
    Html,
}

/// Writes a [`Report`] in one format. Exporters are pure: everything they show is in the
/// report, so the same report always gives the same bytes.
pub trait Exporter: Send + Sync {
    fn format(&self) -> ExportFormat;
    fn export(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

impl ExportFormat {
    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            Self::Table => Box::new(TableExporter),
            Self::Json => Box::new(JsonExporter),
            Self::Csv => Box::new(CsvExporter),
            Self::Html => Box::new(HtmlExporter),
        }
    }

    /// The format a file name asks for (`usage.html`), so `--output usage.html` needs no
    /// `--format html`.
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "html" | "htm" => Some(Self::Html),
            "txt" => Some(Self::Table),
            _ => None,
        }
    }
}

/// Runs `kaipo report`: one query, one export, to `output` or else to `stdout`.
pub async fn run(opts: &ReportOptions, stdout: &mut dyn Write) -> anyhow::Result<()> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis();
    let query = opts.query(i64::try_from(now_ms).unwrap_or(i64::MAX))?;
    let format = opts
        .format
        .or_else(|| {
            opts.output
                .as_deref()
                .and_then(ExportFormat::from_extension)
        })
        .unwrap_or(ExportFormat::Table);
    let source = Source::choose(opts.db.as_deref(), opts.socket.as_deref());
    let report = source.fetch(&query).await?;
    let exporter = format.exporter();
    match &opts.output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::new(file);
            exporter
                .export(&report, &mut out)
                .and_then(|()| out.flush())
                .with_context(|| format!("writing the report to {}", path.display()))
        }
        None => exporter
            .export(&report, stdout)
            .and_then(|()| stdout.flush())
            .context("writing the report"),
    }
}

/// The column or axis title for a dimension.
fn dimension_title(by: Option<Dimension>) -> &'static str {
    match by {
        Some(Dimension::App) => "app",
        Some(Dimension::Process) => "process",
        Some(Dimension::Interface) => "interface",
        Some(Dimension::Remote) => "remote",
        Some(Dimension::Service) => "service",
        Some(Dimension::User) => "user",
        Some(Dimension::Container) => "container",
        None => "key",
    }
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Interval => "interval",
        Tier::Minute => "minute",
        Tier::Hour => "hour",
        Tier::Day => "day",
    }
}

fn period_name(period: Period) -> &'static str {
    match period {
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    }
}

/// A period as people name it, in UTC: `2026-11-25 10:00`, `2026-11-25`, `2026-11`.
fn period_label(period: Period, start_ms: i64) -> String {
    let [y, mo, d, h, ..] = time::civil(start_ms);
    match period {
        Period::Hour => format!("{y:04}-{mo:02}-{d:02} {h:02}:00"),
        Period::Day => format!("{y:04}-{mo:02}-{d:02}"),
        Period::Month => format!("{y:04}-{mo:02}"),
    }
}

/// Bytes per second over the part of the period inside the report's range.
fn period_rate(p: &PeriodRow) -> f64 {
    let secs = (p.to_ms - p.from_ms) as f64 / 1000.0;
    if secs <= 0.0 {
        return 0.0;
    }
    p.rx_bytes.saturating_add(p.tx_bytes) as f64 / secs
}

/// The sum of the period rows: every period's traffic, whatever `--top` left out of a split.
fn periods_total(report: &Report) -> ReportRow {
    report
        .periods
        .iter()
        .fold(ReportRow::default(), |acc, p| ReportRow {
            key: "total".into(),
            rx_bytes: acc.rx_bytes.saturating_add(p.rx_bytes),
            tx_bytes: acc.tx_bytes.saturating_add(p.tx_bytes),
            rx_packets: acc.rx_packets.saturating_add(p.rx_packets),
            tx_packets: acc.tx_packets.saturating_add(p.tx_packets),
            process: None,
        })
}

/// What a report's figures are grouped by: `by app`, `per day`, `per month by app`.
fn subject(report: &Report) -> String {
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
fn title(report: &Report) -> String {
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
fn display_key(by: Option<Dimension>, key: &str) -> &str {
    match (key.is_empty(), by) {
        (false, _) => key,
        (true, Some(Dimension::Container)) => "(host)",
        (true, _) => "(unknown)",
    }
}

/// Traffic of the rows cut off by `--top`: the total minus the rows shown, or nothing when
/// every row is shown.
fn others(report: &Report) -> Option<ReportRow> {
    let shown = report
        .rows
        .iter()
        .fold(ReportRow::default(), |acc, r| ReportRow {
            key: String::new(),
            rx_bytes: acc.rx_bytes.saturating_add(r.rx_bytes),
            tx_bytes: acc.tx_bytes.saturating_add(r.tx_bytes),
            rx_packets: acc.rx_packets.saturating_add(r.rx_packets),
            tx_packets: acc.tx_packets.saturating_add(r.tx_packets),
            process: None,
        });
    let t = &report.total;
    let rest = ReportRow {
        key: "(others)".into(),
        rx_bytes: t.rx_bytes.saturating_sub(shown.rx_bytes),
        tx_bytes: t.tx_bytes.saturating_sub(shown.tx_bytes),
        rx_packets: t.rx_packets.saturating_sub(shown.rx_packets),
        tx_packets: t.tx_packets.saturating_sub(shown.tx_packets),
        process: None,
    };
    (rest.rx_bytes + rest.tx_bytes + rest.rx_packets + rest.tx_packets > 0).then_some(rest)
}

fn range_duration(report: &Report) -> Duration {
    Duration::from_millis(u64::try_from(report.to_ms - report.from_ms).unwrap_or(0))
}

/// A small report with every feature the exporters show, for their golden tests.
#[cfg(test)]
pub(crate) fn sample_report() -> Report {
    use crate::store::SeriesPoint;
    let row = |key: &str, rx: u64, tx: u64, rxp: u64, txp: u64| ReportRow {
        key: key.into(),
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
#[cfg(test)]
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
#[cfg(test)]
pub(crate) fn sample_processes() -> Report {
    let row = |key: &str, rx: u64, process: Option<Box<crate::model::ProcessFields>>| ReportRow {
        key: key.into(),
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::store::{IntervalBatch, Store, TrafficRow};

    /// `--top 0` is every row, in every format, per key and per period alike.
    #[test]
    fn top_zero_means_every_row_in_every_format() {
        let dir = std::env::temp_dir().join(format!("kaipo-report-top0-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("kaipo.db");
        let (mut store, _) = Store::open(&db, &Default::default()).unwrap();
        let t0: i64 = 1_795_600_800_000;
        let traffic = (1..=25u32)
            .map(|i| TrafficRow {
                app: format!("app{i:02}"),
                pid: i,
                rx_bytes: u64::from(i) * 1000,
                ..TrafficRow::default()
            })
            .collect();
        store
            .write(&IntervalBatch {
                ts_ms: t0 + 60_000,
                interval_ms: 60_000,
                traffic,
                interfaces: vec![],
            })
            .unwrap();
        let export = |report: &Report, format: ExportFormat| {
            let mut out = Vec::new();
            format.exporter().export(report, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        for (per, top, shown) in [
            (None, 0, 25),
            (None, 7, 7),
            (Some(Period::Hour), 0, 25),
            (Some(Period::Hour), 7, 7),
        ] {
            let opts = ReportOptions {
                from_ms: Some(t0),
                to_ms: Some(t0 + 3_600_000),
                top,
                per,
                by: per.map(|_| Dimension::App),
                ..ReportOptions::default()
            };
            let report = store.query(&opts.query(t0).unwrap()).unwrap();
            let cut = usize::from(shown < 25);
            let what = format!("per {per:?}, top {top}");

            let table = export(&report, ExportFormat::Table);
            let app_lines = table
                .lines()
                .filter(|l| {
                    l.split_whitespace()
                        .any(|w| w.len() == 5 && w.starts_with("app"))
                })
                .count();
            assert_eq!(app_lines, shown, "{what}: {table}");
            assert_eq!(table.matches("(others)").count(), cut, "{what}: {table}");

            let json: serde_json::Value =
                serde_json::from_str(&export(&report, ExportFormat::Json)).unwrap();
            // JSON and CSV rows leave the rest to the total; a period split by app has no
            // total of its own, so its rest is a row.
            let (list, rest) = match per {
                Some(_) => ("periods", cut),
                None => ("rows", 0),
            };
            assert_eq!(json[list].as_array().unwrap().len(), shown + rest, "{what}");

            let csv = export(&report, ExportFormat::Csv);
            assert_eq!(
                csv.matches("\r\n").count(),
                1 + shown + rest,
                "{what}: {csv}"
            );

            let html = export(&report, ExportFormat::Html);
            let section = if per.is_some() { "periods" } else { "rows" };
            let start = html.find(&format!("<section id=\"{section}\">")).unwrap();
            let end = start + html[start..].find("</section>").unwrap();
            let rows = html[start..end].matches("<tr").count();
            // Header, rows, the cut-off rest, total.
            assert_eq!(rows, 1 + shown + cut + 1, "{what}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_format_has_its_exporter_and_extension() {
        for format in [
            ExportFormat::Table,
            ExportFormat::Json,
            ExportFormat::Csv,
            ExportFormat::Html,
        ] {
            assert_eq!(format.exporter().format(), format);
        }
        let ext = |name: &str| ExportFormat::from_extension(&PathBuf::from(name));
        assert_eq!(ext("/tmp/usage.HTML"), Some(ExportFormat::Html));
        assert_eq!(ext("usage.csv"), Some(ExportFormat::Csv));
        assert_eq!(ext("usage.json"), Some(ExportFormat::Json));
        assert_eq!(ext("usage"), None);
    }

    #[test]
    fn options_make_the_query() {
        const NOW: i64 = 1_795_600_800_500;
        let q = ReportOptions::default().query(NOW).unwrap();
        assert_eq!(
            q,
            Query {
                from_ms: 1_795_600_801_000 - 86_400_000,
                to_ms: 1_795_600_801_000,
                by: Dimension::App,
                top: 20,
                uid: None,
                per: None,
            }
        );
        let per = |by| {
            ReportOptions {
                per: Some(Period::Day),
                by,
                ..Default::default()
            }
            .query(NOW)
        };
        let periods = |by_app| {
            Some(Periods {
                period: Period::Day,
                by_app,
            })
        };
        assert_eq!(per(None).unwrap().per, periods(false));
        assert_eq!(per(Some(Dimension::App)).unwrap().per, periods(true));
        assert_eq!(
            per(Some(Dimension::Remote)).unwrap_err().to_string(),
            "--per splits periods by app only, not by remote; use --by app or leave --by out"
        );
    }

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
