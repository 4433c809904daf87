//! `kaipo report`: traffic history over a time range, grouped by one [`Dimension`] or per
//! calendar period, as a table, JSON, CSV or one self-contained HTML page.
//!
//! The figures come from one [`Query`] (made from [`ReportOptions`]) answered by the store or
//! the daemon ([`source`]); each output format is one [`Exporter`] over the resulting
//! [`Report`], so a new format is one new file and one arm in [`ExportFormat::exporter`].
//!
//! [`Dimension`]: crate::model::Dimension
//! [`Query`]: crate::model::Query

mod csv;
mod html;
mod json;
mod labels;
mod options;
#[cfg(test)]
mod samples;
pub mod source;
mod svg;
mod table;
pub mod time;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

use self::labels::{
    dimension_title, display_key, others, period_label, period_name, period_rate, periods_total,
    range_duration, row_label, subject, tier_name, title,
};
#[cfg(test)]
pub(crate) use self::samples::{sample_periods, sample_processes, sample_report};
pub use self::{
    csv::CsvExporter, html::HtmlExporter, json::JsonExporter, options::ReportOptions,
    source::Source, table::TableExporter,
};
use crate::model::Report;

/// The formats `kaipo report --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    let report = match &opts.prometheus {
        Some(url) => {
            let prom = crate::fleet::Prometheus::new(url, crate::fleet::TIMEOUT)?;
            crate::fleet::report::fetch(&prom, &query).await?
        }
        None => {
            Source::choose(opts.db.as_deref(), opts.socket.as_deref())
                .fetch_with(&query, opts.key_file.as_deref(), &opts.names)
                .await?
        }
    };
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{
        model::{Dimension, Period},
        store::{IntervalBatch, Store, TrafficRow},
    };

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
}
