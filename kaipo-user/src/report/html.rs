//! The HTML export: one self-contained page (inline CSS, inline SVG drawn here, no script, no
//! font, nothing fetched) that reads the same offline, in a mail attachment or years later.
//!
//! Every key is text chosen by whoever named a process or a container, so all of it goes
//! through [`escape`]; the page's Content-Security-Policy forbids scripts as a second line
//! of defence.

use std::{
    fmt::{self, Write as _},
    io::{self, Write},
};

use super::{
    dimension_title, others, period_label, period_name, period_rate, periods_total, range_duration,
    row_label, subject, svg, tier_name, time, title, ExportFormat, Exporter,
};
use crate::{
    format,
    model::{Dimension, Periods, Report, ReportRow},
};

pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Html
    }

    fn export(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let mut page = String::with_capacity(32 * 1024);
        render(report, &mut page).map_err(|_| io::Error::other("formatting the HTML page"))?;
        out.write_all(page.as_bytes())
    }
}

/// Text made safe for HTML and SVG, in element content and in quoted attributes alike.
/// Control characters become U+FFFD: HTML treats most of them as parse errors, XML forbids
/// them.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '\t' | '\n' => escaped.push(c),
            c if c.is_control() => escaped.push('\u{FFFD}'),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "
:root { --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --line: #d1d9e0; --panel: #f6f8fa;
        --rx: #2563eb; --tx: #ea580c; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --line: #3d444d; --panel: #151b23;
          --rx: #58a6ff; --tx: #f0883e; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1080px; padding: 24px; color: var(--fg); background: var(--bg);
       font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 8px; }
.range, footer, .empty { color: var(--muted); }
section { margin: 20px 0; }
.totals { display: flex; flex-wrap: wrap; gap: 12px; }
.totals div { flex: 1 1 180px; background: var(--panel); border: 1px solid var(--line);
              border-radius: 6px; padding: 10px 14px; }
.totals .label { display: block; color: var(--muted); font-size: 12px; }
.totals .value { display: block; font-size: 20px; font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 6px; }
.swatch.rx { background: var(--rx); } .swatch.tx { background: var(--tx); }
.charts { display: flex; flex-wrap: wrap; gap: 24px; }
.charts section { flex: 1 1 420px; margin: 0; }
svg { width: 100%; height: auto; display: block; }
svg text { fill: var(--muted); font-size: 12px; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .line { fill: none; stroke-width: 2; }
svg .line.rx, svg .dot.rx { stroke: var(--rx); } svg .line.tx, svg .dot.tx { stroke: var(--tx); }
svg .dot { fill: var(--bg); stroke-width: 2; }
svg .area.rx, svg rect.rx { fill: var(--rx); } svg .area.tx, svg rect.tx { fill: var(--tx); }
svg .area { opacity: 0.12; }
svg .bar .label { fill: var(--fg); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; word-break: break-all; }
thead th { color: var(--muted); font-weight: 600; }
tfoot td { font-weight: 600; border-bottom: none; border-top: 2px solid var(--line); }
tr.others td { color: var(--muted); }
";

fn render(report: &Report, page: &mut String) -> fmt::Result {
    let total = &report.total;
    let all = total.rx_bytes.saturating_add(total.tx_bytes);
    writeln!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    )?;
    writeln!(
        page,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"generator\" content=\"kaipo {}\">",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(page, "<title>kaipo: {}</title>", escape(&title(report)))?;
    writeln!(page, "<style>{STYLE}</style>\n</head>\n<body>")?;

    writeln!(page, "<header>\n<h1>Traffic {}</h1>", subject(report))?;
    write!(
        page,
        "<p class=\"range\">From <time datetime=\"{from}\">{from}</time> \
         to <time datetime=\"{to}\">{to}</time> ({span})",
        from = time::rfc3339(report.from_ms),
        to = time::rfc3339(report.to_ms),
        span = time::span(report.to_ms - report.from_ms),
    )?;
    if let Some(tier) = report.tier {
        write!(
            page,
            " · <span class=\"tier\">{} tier</span>",
            tier_name(tier)
        )?;
    }
    writeln!(page, " · times in UTC</p>\n</header>")?;

    writeln!(page, "<section class=\"totals\" id=\"totals\">")?;
    for (label, value, class) in [
        ("Received", format::bytes(total.rx_bytes), "rx"),
        ("Sent", format::bytes(total.tx_bytes), "tx"),
        ("Total", format::bytes(all), ""),
        (
            "Average rate",
            format::rate(all, range_duration(report)),
            "",
        ),
    ] {
        let swatch = if class.is_empty() {
            String::new()
        } else {
            format!("<span class=\"swatch {class}\"></span>")
        };
        writeln!(
            page,
            "<div><span class=\"label\">{swatch}{label}</span>\
             <span class=\"value\">{value}</span></div>"
        )?;
    }
    writeln!(page, "</section>")?;

    writeln!(
        page,
        "<section id=\"bandwidth\">\n<h2>Bandwidth over time</h2>\n{}</section>",
        svg::bandwidth_chart(report)
    )?;
    writeln!(
        page,
        "<div class=\"charts\">\n\
         <section id=\"top-apps\">\n<h2>Top apps</h2>\n{}</section>\n\
         <section id=\"top-remotes\">\n<h2>Top remotes</h2>\n{}</section>\n</div>",
        svg::bar_chart("Top apps", "app", &report.top_apps),
        svg::bar_chart("Top remotes", "remote", &report.top_remotes),
    )?;
    if let Some(per) = report.per {
        periods_table(report, per, page)?;
    }
    rows_table(report, page)?;

    let layer = if report.by == Some(Dimension::Interface) {
        "Link-layer bytes of each interface"
    } else {
        "IP-layer bytes of processes' sockets"
    };
    writeln!(
        page,
        "<footer>{layer}, as counted by kaipo {}.</footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    )
}

fn rows_table(report: &Report, page: &mut String) -> fmt::Result {
    let by = dimension_title(report.by);
    writeln!(page, "<section id=\"rows\">\n<h2>By {by}</h2>")?;
    if report.rows.is_empty() {
        return writeln!(
            page,
            "<p class=\"empty\">No traffic recorded in this range.</p>\n</section>"
        );
    }
    writeln!(
        page,
        "<table>\n<thead><tr><th>{}</th><th>Received</th><th>Sent</th><th>Total</th>\
         <th>Share</th><th>Avg rate</th><th>Packets in</th><th>Packets out</th></tr></thead>\n\
         <tbody>",
        capitalized(by)
    )?;
    for row in &report.rows {
        table_row(report, row, "", page)?;
    }
    if let Some(rest) = others(report) {
        table_row(report, &rest, " class=\"others\"", page)?;
    }
    writeln!(page, "</tbody>\n<tfoot>")?;
    let total = ReportRow {
        key: "Total".into(),
        ..report.total.clone()
    };
    table_row(report, &total, "", page)?;
    writeln!(page, "</tfoot>\n</table>\n</section>")
}

fn table_row(report: &Report, row: &ReportRow, attrs: &str, page: &mut String) -> fmt::Result {
    let all = row.rx_bytes.saturating_add(row.tx_bytes);
    let grand = report.total.rx_bytes.saturating_add(report.total.tx_bytes);
    let share = if grand == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", all as f64 * 100.0 / grand as f64)
    };
    // Exact byte counts on hover: the human units round.
    writeln!(
        page,
        "<tr{attrs}><td>{key}</td><td title=\"{rx} bytes\">{rx_h}</td>\
         <td title=\"{tx} bytes\">{tx_h}</td><td title=\"{all} bytes\">{all_h}</td>\
         <td>{share}</td><td>{rate}</td><td>{rxp}</td><td>{txp}</td></tr>",
        key = escape(&row_label(report.by, row)),
        rx = row.rx_bytes,
        tx = row.tx_bytes,
        rx_h = format::bytes(row.rx_bytes),
        tx_h = format::bytes(row.tx_bytes),
        all_h = format::bytes(all),
        rate = format::rate(all, range_duration(report)),
        rxp = row.rx_packets,
        txp = row.tx_packets,
    )
}

/// The per-period table (`--per`): one row per period, or per period and app.
fn periods_table(report: &Report, per: Periods, page: &mut String) -> fmt::Result {
    let name = period_name(per.period);
    writeln!(page, "<section id=\"periods\">\n<h2>Per {name}</h2>")?;
    if report.periods.is_empty() {
        return writeln!(
            page,
            "<p class=\"empty\">No traffic recorded in this range.</p>\n</section>"
        );
    }
    let app = if per.by_app { "<th>App</th>" } else { "" };
    writeln!(
        page,
        "<table>\n<thead><tr><th>{}</th>{app}<th>Received</th><th>Sent</th><th>Total</th>\
         <th>Avg rate</th></tr></thead>\n<tbody>",
        capitalized(name)
    )?;
    let cells = |rx: u64, tx: u64, rate: String| {
        let all = rx.saturating_add(tx);
        format!(
            "<td title=\"{rx} bytes\">{}</td><td title=\"{tx} bytes\">{}</td>\
             <td title=\"{all} bytes\">{}</td><td>{rate}</td>",
            format::bytes(rx),
            format::bytes(tx),
            format::bytes(all),
        )
    };
    for p in &report.periods {
        let label = period_label(per.period, p.period_ms);
        let app = if per.by_app {
            format!("<td>{}</td>", escape(p.app.as_deref().unwrap_or("")))
        } else {
            String::new()
        };
        let rate = format!("{}/s", format::bytes(period_rate(p).round() as u64));
        writeln!(
            page,
            "<tr><td><time datetime=\"{}\">{label}</time></td>{app}{}</tr>",
            time::rfc3339(p.period_ms),
            cells(p.rx_bytes, p.tx_bytes, rate),
        )?;
    }
    let sum = periods_total(report);
    let all = sum.rx_bytes.saturating_add(sum.tx_bytes);
    writeln!(
        page,
        "</tbody>\n<tfoot>\n<tr><td>Total</td>{}{}</tr>\n</tfoot>\n</table>\n</section>",
        if per.by_app { "<td></td>" } else { "" },
        cells(
            sum.rx_bytes,
            sum.tx_bytes,
            format::rate(all, range_duration(report))
        ),
    )
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    fn render_page(report: &Report) -> String {
        let mut out = Vec::new();
        HtmlExporter.export(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_text_and_attributes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\td"), "a\u{FFFD}b\u{FFFD}c\td");
    }

    #[test]
    fn page_is_self_contained_and_shows_everything() {
        let page = render_page(&sample_report());
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.ends_with("</body>\n</html>\n"));
        // Nothing that runs or loads: no script, no external reference of any kind.
        for banned in [
            "<script", "src=", "href=", "url(", "@import", "http://", "https://",
        ] {
            assert!(!page.contains(banned), "page contains {banned}");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<td>curl, &quot;the&quot; tool</td>"));
        assert!(page.contains("<h1>Traffic by app</h1>"));
        assert!(page.contains(
            "From <time datetime=\"2026-11-25T10:00:00Z\">2026-11-25T10:00:00Z</time> to \
             <time datetime=\"2026-11-25T13:00:00Z\">2026-11-25T13:00:00Z</time> (3h) · \
             <span class=\"tier\">hour tier</span>"
        ));
        assert!(page.contains(
            "<span class=\"label\"><span class=\"swatch rx\"></span>Received</span>\
             <span class=\"value\">1.5 GiB</span>"
        ));
        assert!(page.contains(
            "<tr><td>firefox</td><td title=\"1610612736 bytes\">1.5 GiB</td>\
             <td title=\"104857600 bytes\">100.0 MiB</td><td title=\"1715470336 bytes\">1.6 GiB\
             </td><td>99.6%</td><td>155.1 KiB/s</td><td>1100000</td><td>700000</td></tr>"
        ));
        assert!(page.contains("<tr class=\"others\"><td>(others)</td>"));
        assert!(page.contains("<tfoot>\n<tr><td>Total</td><td title=\"1617000000 bytes\">"));
        assert_eq!(
            page.matches("<tr>").count(),
            1 + 3 + 1,
            "header, rows, total"
        );
        assert_eq!(page.matches("<g class=\"bar\"").count(), 2 + 3);
        assert!(page.contains("<th>App</th>"));
    }

    #[test]
    fn periods_have_their_table() {
        let page = render_page(&crate::report::sample_periods());
        assert!(page.contains("<h1>Traffic per day by app</h1>"));
        let start = page.find("<section id=\"periods\">").unwrap();
        let section = &page[start..start + page[start..].find("</section>").unwrap()];
        assert!(section.contains("<h2>Per day</h2>"));
        assert!(section.contains("<thead><tr><th>Day</th><th>App</th><th>Received</th>"));
        assert!(section.contains(
            "<tr><td><time datetime=\"2026-11-26T00:00:00Z\">2026-11-26</time></td>\
             <td>firefox</td><td title=\"21600000 bytes\">20.6 MiB</td>\
             <td title=\"0 bytes\">0 B</td><td title=\"21600000 bytes\">20.6 MiB</td>\
             <td>1000 B/s</td></tr>"
        ));
        assert!(section.contains("<td>curl, &quot;the&quot; tool</td>"));
        assert!(section.contains(
            "<tfoot>\n<tr><td>Total</td><td></td><td title=\"8661686400 bytes\">8.1 GiB</td>"
        ));
        assert_eq!(section.matches("<tr>").count(), 1 + 3 + 1);
    }

    #[test]
    fn empty_report_says_so_instead_of_drawing() {
        let page = render_page(&Report {
            from_ms: 0,
            to_ms: 3_600_000,
            by: Some(Dimension::Remote),
            ..Default::default()
        });
        assert_eq!(
            page.matches("No traffic recorded in this range.").count(),
            2,
            "chart and table"
        );
        assert!(page.contains("No app traffic recorded in this range."));
        assert!(page.contains("No remote traffic recorded in this range."));
        assert!(!page.contains("<svg") && !page.contains("<table"));
        assert!(page.contains("<h2>By remote</h2>"));
        assert!(!page.contains("tier</span>"));
    }
}
