//! The HTML page's charts as inline SVG, drawn from the report alone: a line chart of the
//! bandwidth over time and horizontal stacked bars (received, then sent) for top lists.
//! Colours come from the page's CSS classes (`rx`, `tx`, `grid`), so they follow its light or
//! dark theme.

use std::fmt::Write as _;

use super::{display_key, html::escape, time};
use crate::{
    format,
    store::{Report, ReportRow, Tier},
};

const EMPTY: &str = "<p class=\"empty\">No traffic recorded in this range.</p>\n";

const LINE_W: f64 = 1000.0;
const LINE_H: f64 = 280.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;
/// Up to this many buckets each get a dot (with its exact figures on hover); beyond it the
/// dots would merge into a thick line.
const MAX_DOTS: usize = 48;

/// Received and sent bytes per second over the range, one point per bucket of the report's
/// tier. Buckets the store left out had no traffic and are drawn at zero, so a quiet hour
/// between two busy ones dips instead of being bridged by a straight line.
pub(super) fn bandwidth_chart(report: &Report) -> String {
    let bucket_ms = bucket_ms(report);
    let points = with_gaps_at_zero(report, bucket_ms);
    let max = points.iter().map(|p| p.1.max(p.2)).fold(0.0_f64, f64::max);
    if points.is_empty() || max <= 0.0 {
        return EMPTY.into();
    }
    let (step, ticks) = rate_ticks(max);
    let y_top = step * ticks as f64;
    let first = points.first().map_or(report.from_ms, |p| p.0);
    let last = points.last().map_or(report.to_ms, |p| p.0);
    let start = report.from_ms.min(first);
    let end = report.to_ms.max(last).max(start + 1);
    let x = |ts: i64| LEFT + (ts - start) as f64 / (end - start) as f64 * (LINE_W - LEFT - RIGHT);
    let y = |rate: f64| TOP + (1.0 - rate / y_top) * (LINE_H - TOP - BOTTOM);

    let mut svg = format!(
        "<svg class=\"chart bandwidth\" viewBox=\"0 0 {LINE_W} {LINE_H}\" role=\"img\" \
         aria-label=\"Bandwidth over time, received and sent per second\">\n"
    );
    for i in 0..=ticks {
        let rate = step * i as f64;
        let _ = writeln!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}/s</text>",
            LINE_W - RIGHT,
            LEFT - 6.0,
            y(rate) + 4.0,
            format::bytes(rate.round() as u64),
            y = y(rate),
        );
    }
    for i in 0..=4 {
        let ts = start + (end - start) * i / 4;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            svg,
            "<text class=\"time\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(ts),
            LINE_H - 8.0,
            time_label(ts, end - start),
        );
    }
    let baseline = y(0.0);
    for (class, pick) in [("rx", 1), ("tx", 2)] {
        let rate = |p: &(i64, f64, f64)| if pick == 1 { p.1 } else { p.2 };
        let line: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(rate(p))))
            .collect();
        let _ = writeln!(
            svg,
            "<polygon class=\"area {class}\" points=\"{:.1},{baseline:.1} {} {:.1},{baseline:.1}\"/>\
             \n<polyline class=\"line {class}\" points=\"{}\"/>",
            x(first),
            line.join(" "),
            x(last),
            line.join(" "),
        );
    }
    if points.len() <= MAX_DOTS {
        for p in &points {
            for (class, rate, what) in [("rx", p.1, "received"), ("tx", p.2, "sent")] {
                let _ = writeln!(
                    svg,
                    "<circle class=\"dot {class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\">\
                     <title>{} {what} {}/s</title></circle>",
                    x(p.0),
                    y(rate),
                    time::rfc3339(p.0),
                    format::bytes(rate.round() as u64),
                );
            }
        }
    }
    // Legend in the top margin, right-aligned.
    for (i, (class, label)) in [("rx", "received"), ("tx", "sent")].iter().enumerate() {
        let lx = LINE_W - RIGHT - 170.0 + i as f64 * 90.0;
        let _ = writeln!(
            svg,
            "<rect class=\"{class}\" x=\"{lx:.1}\" y=\"6\" width=\"12\" height=\"12\" rx=\"2\"/>\
             <text x=\"{:.1}\" y=\"16\">{label}</text>",
            lx + 17.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The width of one bucket: fixed for the rollup tiers; for the raw interval tier the
/// smallest step between points, which is the daemon's interval.
fn bucket_ms(report: &Report) -> i64 {
    match report.tier {
        Some(Tier::Minute) => 60_000,
        Some(Tier::Hour) => 3_600_000,
        Some(Tier::Day) => 86_400_000,
        Some(Tier::Interval) | None => report
            .series
            .windows(2)
            .map(|w| w[1].ts_ms - w[0].ts_ms)
            .filter(|d| *d > 0)
            .min()
            .unwrap_or((report.to_ms - report.from_ms).max(1)),
    }
}

/// `(ts_ms, rx bytes/s, tx bytes/s)` in time order, with zero points around every gap.
fn with_gaps_at_zero(report: &Report, bucket_ms: i64) -> Vec<(i64, f64, f64)> {
    let mut series: Vec<_> = report.series.iter().collect();
    series.sort_by_key(|p| p.ts_ms);
    let per_sec = |bytes: u64| bytes as f64 * 1000.0 / bucket_ms as f64;
    let mut points: Vec<(i64, f64, f64)> = Vec::with_capacity(series.len() + 4);
    for p in series {
        if let Some(&(prev, _, _)) = points.last() {
            if p.ts_ms - prev > bucket_ms * 3 / 2 {
                points.push((prev + bucket_ms, 0.0, 0.0));
                if p.ts_ms - bucket_ms > prev + bucket_ms {
                    points.push((p.ts_ms - bucket_ms, 0.0, 0.0));
                }
            }
        }
        points.push((p.ts_ms, per_sec(p.rx_bytes), per_sec(p.tx_bytes)));
    }
    points
}

/// A tick step that reads well in binary units (1, 2 or 5 times a power of ten of B, KiB,
/// MiB, ...) and how many steps reach `max`, so the axis labels come out as `200.0 KiB/s`
/// rather than `195.3 KiB/s`.
fn rate_ticks(max: f64) -> (f64, usize) {
    let raw = max / 4.0;
    let mut unit = 1.0;
    while raw / unit >= 1024.0 && unit < 1024f64.powi(5) {
        unit *= 1024.0;
    }
    let scaled = raw / unit;
    let magnitude = 10f64.powf(scaled.log10().floor());
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|m| *m >= scaled)
        .unwrap_or(10.0 * magnitude);
    let step = (nice * unit).max(1.0);
    (step, (max / step).ceil().max(1.0) as usize)
}

fn time_label(ts_ms: i64, span_ms: i64) -> String {
    let [y, mo, d, h, mi, ..] = time::civil(ts_ms);
    if span_ms <= 36 * 3_600_000 {
        format!("{h:02}:{mi:02}")
    } else if span_ms <= 10 * 86_400_000 {
        format!("{mo:02}-{d:02} {h:02}:{mi:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02}")
    }
}

const BAR_W: f64 = 520.0;
const ROW_H: f64 = 26.0;
const LABEL_W: f64 = 170.0;
const VALUE_W: f64 = 80.0;
const MAX_LABEL_CHARS: usize = 24;

/// One `<g class="bar">` per row: received and sent stacked, the total after the bar, the
/// exact figures on hover. Bars share one scale, the largest row's total. `of` names what the
/// bars are (`app`) for the note shown instead when there are none: an interface report has
/// traffic but may have no app rows.
pub(super) fn bar_chart(name: &str, of: &str, rows: &[ReportRow]) -> String {
    let max = rows
        .iter()
        .map(|r| r.rx_bytes.saturating_add(r.tx_bytes))
        .max()
        .unwrap_or(0);
    if max == 0 {
        return format!("<p class=\"empty\">No {of} traffic recorded in this range.</p>\n");
    }
    let height = ROW_H * rows.len() as f64 + 4.0;
    let scale = (BAR_W - LABEL_W - VALUE_W) / max as f64;
    let mut svg = format!(
        "<svg class=\"chart bars\" viewBox=\"0 0 {BAR_W} {height}\" role=\"img\" \
         aria-label=\"{}\">\n",
        escape(name)
    );
    for (i, row) in rows.iter().enumerate() {
        let key = display_key(None, &row.key);
        let all = row.rx_bytes.saturating_add(row.tx_bytes);
        // A bar too small to see still shows as a sliver, so it does not read as zero.
        let width = |bytes: u64| {
            if bytes == 0 {
                0.0
            } else {
                (bytes as f64 * scale).max(1.0)
            }
        };
        let (rx_w, tx_w) = (width(row.rx_bytes), width(row.tx_bytes));
        let _ = writeln!(
            svg,
            "<g class=\"bar\" transform=\"translate(0,{:.1})\">\
             <title>{}: received {}, sent {}</title>\
             <text class=\"label\" x=\"{:.1}\" y=\"17\" text-anchor=\"end\">{}</text>\
             <rect class=\"rx\" x=\"{LABEL_W}\" y=\"4\" width=\"{rx_w:.1}\" height=\"18\"/>\
             <rect class=\"tx\" x=\"{:.1}\" y=\"4\" width=\"{tx_w:.1}\" height=\"18\"/>\
             <text class=\"value\" x=\"{:.1}\" y=\"17\">{}</text></g>",
            ROW_H * i as f64,
            escape(key),
            format::bytes(row.rx_bytes),
            format::bytes(row.tx_bytes),
            LABEL_W - 8.0,
            escape(&shortened(key)),
            LABEL_W + rx_w,
            LABEL_W + rx_w + tx_w + 6.0,
            format::bytes(all),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn shortened(key: &str) -> String {
    if key.chars().count() <= MAX_LABEL_CHARS {
        return key.to_owned();
    }
    let mut cut: String = key.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{report::sample_report, store::SeriesPoint};

    #[test]
    fn ticks_are_round_in_binary_units() {
        // 1.5 GiB/s peak: quarter is 384 MiB, rounded up to 500 MiB.
        assert_eq!(
            rate_ticks(1.5 * 1024f64.powi(3)),
            (500.0 * 1024f64.powi(2), 4)
        );
        assert_eq!(rate_ticks(300_000.0), (100.0 * 1024.0, 3));
        assert_eq!(rate_ticks(3.0), (1.0, 3));
    }

    #[test]
    fn gaps_drop_to_zero() {
        let point = |ts_ms, rx_bytes| SeriesPoint {
            ts_ms,
            rx_bytes,
            tx_bytes: 0,
        };
        let report = Report {
            tier: Some(Tier::Minute),
            series: vec![point(300_000, 60_000), point(0, 6000), point(60_000, 0)],
            ..Default::default()
        };
        let points = with_gaps_at_zero(&report, bucket_ms(&report));
        let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
        assert_eq!(ts, [0, 60_000, 120_000, 240_000, 300_000]);
        assert_eq!((points[0].1, points[4].1), (100.0, 1000.0));
        assert_eq!((points[2].1, points[3].1), (0.0, 0.0));
    }

    #[test]
    fn charts_have_one_mark_per_entry() {
        let report = sample_report();
        let line = bandwidth_chart(&report);
        assert_eq!(line.matches("<polyline class=\"line rx\"").count(), 1);
        assert_eq!(line.matches("<circle class=\"dot rx\"").count(), 3);
        // Hour buckets: 1 GiB in the first hour is 291.3 KiB/s.
        assert!(line.contains("<title>2026-11-25T10:00:00Z received 291.3 KiB/s</title>"));
        assert!(line.contains(">10:00</text>") && line.contains(">13:00</text>"));
        let bars = bar_chart("Top remotes", "remote", &report.top_remotes);
        assert_eq!(bars.matches("<g class=\"bar\"").count(), 3);
        assert!(bars.contains("<title>(unknown): received 4.0 KiB, sent 0 B</title>"));
        assert!(bars.contains("<rect class=\"rx\" x=\"170\" y=\"4\" width=\"257.4\""));
        assert_eq!(
            bar_chart("Top apps", "app", &[]),
            "<p class=\"empty\">No app traffic recorded in this range.</p>\n"
        );
        assert_eq!(shortened(&"k".repeat(30)).chars().count(), MAX_LABEL_CHARS);
    }
}
