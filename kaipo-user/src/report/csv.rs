//! The CSV export (documented in the README): a header line, then one line per report row, in
//! RFC 4180 form: CRLF line ends, and a field quoted when it holds a comma, a quote or a line
//! break, with its quotes doubled. Keys are process names and command lines, so all of those
//! occur.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use super::{dimension_title, period_label, period_rate, time, ExportFormat, Exporter};
use crate::model::{Dimension, Report};

pub const HEADER: &str = "from,to,by,key,rx_bytes,tx_bytes,rx_packets,tx_packets";
/// The columns a report by process adds after [`HEADER`]'s.
pub const PROCESS_COLUMNS: &str = "pid,name,user,container";
/// The header of a report per period (`--per`); `app` is empty unless split by app.
pub const PERIOD_HEADER: &str =
    "period,from,to,app,rx_bytes,tx_bytes,rx_packets,tx_packets,total_bytes,avg_bytes_per_s";

pub struct CsvExporter;

impl Exporter for CsvExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Csv
    }

    fn export(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        if let Some(per) = report.per {
            write!(out, "{PERIOD_HEADER}\r\n")?;
            for p in &report.periods {
                write!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{}\r\n",
                    period_label(per.period, p.period_ms),
                    time::rfc3339(p.from_ms),
                    time::rfc3339(p.to_ms),
                    field(p.app.as_deref().unwrap_or("")),
                    p.rx_bytes,
                    p.tx_bytes,
                    p.rx_packets,
                    p.tx_packets,
                    p.rx_bytes.saturating_add(p.tx_bytes),
                    period_rate(p).round() as u64,
                )?;
            }
            return Ok(());
        }
        let processes = report.by == Some(Dimension::Process);
        if processes {
            write!(out, "{HEADER},{PROCESS_COLUMNS}\r\n")?;
        } else {
            write!(out, "{HEADER}\r\n")?;
        }
        // The range and dimension repeat on every line so that lines from several reports can
        // be concatenated or loaded into one table and still say what they count.
        let from = time::rfc3339(report.from_ms);
        let to = time::rfc3339(report.to_ms);
        let by = dimension_title(report.by);
        for row in &report.rows {
            write!(
                out,
                "{from},{to},{by},{},{},{},{},{}",
                field(&row.key),
                row.rx_bytes,
                row.tx_bytes,
                row.rx_packets,
                row.tx_packets
            )?;
            if processes {
                // Unattributed traffic has no process: its process columns stay empty.
                match &row.process {
                    Some(p) => write!(
                        out,
                        ",{},{},{},{}",
                        p.pid,
                        field(&p.name),
                        field(&p.user),
                        field(p.container.as_deref().unwrap_or(""))
                    )?,
                    None => write!(out, ",,,,")?,
                }
            }
            write!(out, "\r\n")?;
        }
        Ok(())
    }
}

fn field(text: &str) -> Cow<'_, str> {
    if text.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{report::sample_report, store::ReportRow};

    fn render(report: &Report) -> String {
        let mut out = Vec::new();
        CsvExporter.export(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_csv() {
        let expected = "\
from,to,by,key,rx_bytes,tx_bytes,rx_packets,tx_packets\r
2026-11-25T10:00:00Z,2026-11-25T13:00:00Z,app,firefox,1610612736,104857600,1100000,700000\r
2026-11-25T10:00:00Z,2026-11-25T13:00:00Z,app,\"curl, \"\"the\"\" tool\",5242880,1024,4000,900\r
2026-11-25T10:00:00Z,2026-11-25T13:00:00Z,app,<script>alert(1)</script>,2048,512,3,2\r
";
        assert_eq!(render(&sample_report()), expected);
    }

    #[test]
    fn golden_periods_and_process_csv() {
        let periods = "\
period,from,to,app,rx_bytes,tx_bytes,rx_packets,tx_packets,total_bytes,avg_bytes_per_s\r
2026-11-25,2026-11-25T00:00:00Z,2026-11-26T00:00:00Z,firefox,8640000000,864000000,8640000,864000,9504000000,110000\r
2026-11-25,2026-11-25T00:00:00Z,2026-11-26T00:00:00Z,\"curl, \"\"the\"\" tool\",86400,0,86,0,86400,1\r
2026-11-26,2026-11-26T00:00:00Z,2026-11-26T06:00:00Z,firefox,21600000,0,21600,0,21600000,1000\r
";
        assert_eq!(render(&crate::report::sample_periods()), periods);
        let processes = "\
from,to,by,key,rx_bytes,tx_bytes,rx_packets,tx_packets,pid,name,user,container\r
2026-11-25T10:00:00Z,2026-11-25T11:00:00Z,process,nginx[20],30000,15000,30,15,20,nginx,www-data,4f2a9c\r
2026-11-25T10:00:00Z,2026-11-25T11:00:00Z,process,sshd[10],20000,10000,20,10,10,sshd,root,\r
2026-11-25T10:00:00Z,2026-11-25T11:00:00Z,process,(unattributed),4000,2000,4,2,,,,\r
";
        assert_eq!(render(&crate::report::sample_processes()), processes);
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(field("plain key"), "plain key");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\rhere"), "\"cr\rhere\"");
    }

    /// Reads the export back with a minimal RFC 4180 parser: every key, however awkward,
    /// comes back as it went in, in its own field.
    #[test]
    fn awkward_keys_round_trip() {
        let keys = ["a,b", "\"", "\"\"x\"", "line\r\nbreak", ",", " spaced ", ""];
        let report = Report {
            rows: keys
                .iter()
                .map(|k| ReportRow {
                    key: (*k).into(),
                    rx_bytes: 1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let records = parse(&render(&report));
        assert_eq!(records.len(), keys.len() + 1);
        assert_eq!(records[0].join(","), HEADER);
        for (record, key) in records[1..].iter().zip(keys) {
            assert_eq!(record.len(), 8);
            assert_eq!(record[3], key);
            assert_eq!(record[4], "1");
        }
    }

    fn parse(text: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') => {
                    assert_eq!(chars.next(), Some('\n'), "bare CR outside quotes");
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(field.is_empty() && record.is_empty(), "last line not ended");
        records
    }
}
