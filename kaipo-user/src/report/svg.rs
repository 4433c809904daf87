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
/// tier. A bucket the store has no row for is a gap in the line, never a point at zero: the
/// store leaves out buckets it has nothing for, which is also what a stopped daemon or an
/// expired stretch looks like, so inventing zeros would draw a steady rate as a saw.
pub(super) fn bandwidth_chart(report: &Report) -> String {
    let bucket_ms = bucket_ms(report);
    let runs = runs(report, bucket_ms);
    let max = runs
        .iter()
        .flatten()
        .map(|p| p.1.max(p.2))
        .fold(0.0_f64, f64::max);
    if runs.is_empty() || max <= 0.0 {
        return EMPTY.into();
    }
    let (step, ticks) = rate_ticks(max);
    let y_top = step * ticks as f64;
    let first = runs
        .first()
        .and_then(|r| r.first())
        .map_or(report.from_ms, |p| p.0);
    let last = runs
        .last()
        .and_then(|r| r.last())
        .map_or(report.to_ms, |p| p.0);
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
    for (ts, label) in time_ticks(start, end) {
        let at = x(ts);
        // Labels at the edges are anchored inward so that they stay inside the chart.
        let anchor = if at < LEFT + 40.0 {
            "start"
        } else if at > LINE_W - RIGHT - 40.0 {
            "end"
        } else {
            "middle"
        };
        let _ = writeln!(
            svg,
            "<text class=\"time\" x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{label}</text>",
            LINE_H - 8.0,
        );
    }
    let baseline = y(0.0);
    for run in &runs {
        // A bucket on its own is drawn across its width, so that it shows as a line too.
        let mut run = run.clone();
        if let [only] = run[..] {
            run.push((only.0 + bucket_ms, only.1, only.2));
        }
        for (class, pick) in [("rx", 1), ("tx", 2)] {
            let rate = |p: &(i64, f64, f64)| if pick == 1 { p.1 } else { p.2 };
            let line: Vec<String> = run
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.0), y(rate(p))))
                .collect();
            let _ = writeln!(
                svg,
                "<polygon class=\"area {class}\" points=\"{:.1},{baseline:.1} {} {:.1},{baseline:.1}\"/>\
                 \n<polyline class=\"line {class}\" points=\"{}\"/>",
                x(run[0].0),
                line.join(" "),
                x(run[run.len() - 1].0),
                line.join(" "),
            );
        }
    }
    let points: Vec<&(i64, f64, f64)> = runs.iter().flatten().collect();
    if points.len() <= MAX_DOTS {
        for p in points {
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

/// The width of one bucket: fixed for the rollup tiers; for the raw interval tier the most
/// common step between points, which is the daemon's interval (the smallest step would let
/// one stray stamp, as older daemons wrote under load, shrink every bucket).
fn bucket_ms(report: &Report) -> i64 {
    match report.tier {
        Some(Tier::Minute) => 60_000,
        Some(Tier::Hour) => 3_600_000,
        Some(Tier::Day) => 86_400_000,
        Some(Tier::Interval) | None => {
            let mut ts: Vec<i64> = report.series.iter().map(|p| p.ts_ms).collect();
            ts.sort_unstable();
            let mut counts: std::collections::BTreeMap<i64, usize> = Default::default();
            for w in ts.windows(2) {
                if w[1] > w[0] {
                    *counts.entry(w[1] - w[0]).or_default() += 1;
                }
            }
            // Most frequent; among equals, the smallest.
            counts
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map_or((report.to_ms - report.from_ms).max(1), |(step, _)| step)
        }
    }
}

/// `(ts_ms, rx bytes/s, tx bytes/s)` in time order, cut into runs of adjacent buckets: a run
/// ends where a bucket is missing.
fn runs(report: &Report, bucket_ms: i64) -> Vec<Vec<(i64, f64, f64)>> {
    let mut series: Vec<_> = report.series.iter().collect();
    series.sort_by_key(|p| p.ts_ms);
    let per_sec = |bytes: u64| bytes as f64 * 1000.0 / bucket_ms as f64;
    let mut runs: Vec<Vec<(i64, f64, f64)>> = Vec::new();
    for p in series {
        let point = (p.ts_ms, per_sec(p.rx_bytes), per_sec(p.tx_bytes));
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|l| p.ts_ms - l.0 <= bucket_ms * 3 / 2) =>
            {
                run.push(point);
            }
            _ => runs.push(vec![point]),
        }
    }
    runs
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

/// Steps between time labels, in seconds: round figures of the clock and the calendar.
const TIME_STEPS_S: [i64; 22] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
    172_800, 604_800, 1_209_600, 2_592_000,
];
/// At most this many time labels fit under the chart.
const MAX_TIME_LABELS: i64 = 6;

/// Labels at round times (multiples of a step from [`TIME_STEPS_S`], so 10:00, 10:15, ...)
/// within `start..=end`, each precise enough to tell it from its neighbours: seconds when
/// the step is under a minute, the date when the range spans days.
fn time_ticks(start: i64, end: i64) -> Vec<(i64, String)> {
    let span = (end - start).max(1);
    let step_s = TIME_STEPS_S
        .into_iter()
        .find(|s| span / (s * 1000) < MAX_TIME_LABELS)
        .unwrap_or_else(|| {
            // Beyond a few months: whole multiples of 30 days.
            let months = span / (2_592_000_000 * MAX_TIME_LABELS) + 1;
            2_592_000 * months
        });
    let step = step_s * 1000;
    let first = start.div_euclid(step) * step + if start.rem_euclid(step) == 0 { 0 } else { step };
    let days_apart = time::civil(start)[..3] != time::civil(end)[..3];
    (0..=MAX_TIME_LABELS)
        .map(|i| first + i * step)
        .take_while(|ts| *ts <= end)
        .map(|ts| {
            let [y, mo, d, h, mi, s, _] = time::civil(ts);
            let label = if step_s < 60 {
                format!("{h:02}:{mi:02}:{s:02}")
            } else if step_s >= 86_400 {
                format!("{y:04}-{mo:02}-{d:02}")
            } else if days_apart {
                format!("{mo:02}-{d:02} {h:02}:{mi:02}")
            } else {
                format!("{h:02}:{mi:02}")
            };
            (ts, label)
        })
        .collect()
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

    fn point(ts_ms: i64, rx_bytes: u64) -> SeriesPoint {
        SeriesPoint {
            ts_ms,
            rx_bytes,
            tx_bytes: 0,
        }
    }

    #[test]
    fn missing_buckets_are_gaps_not_zeros() {
        let report = Report {
            tier: Some(Tier::Minute),
            series: vec![point(300_000, 60_000), point(0, 6000), point(60_000, 0)],
            ..Default::default()
        };
        let runs = runs(&report, bucket_ms(&report));
        let ts: Vec<Vec<i64>> = runs
            .iter()
            .map(|r| r.iter().map(|p| p.0).collect())
            .collect();
        assert_eq!(ts, [vec![0, 60_000], vec![300_000]]);
        assert_eq!(
            (runs[0][0].1, runs[0][1].1, runs[1][0].1),
            (100.0, 0.0, 1000.0)
        );
    }

    /// A steady 17 MiB/s, in one-minute intervals of the interval tier, with one slot missing
    /// and one stray stamp a second after another (as daemons wrote under load before batches
    /// kept to the grid): drawn at 17 MiB/s throughout, never down to zero.
    #[test]
    fn a_steady_rate_stays_steady() {
        const RATE: u64 = 17 * 1024 * 1024;
        let t0 = 1_795_600_800_000;
        let mut series: Vec<SeriesPoint> = [0, 1, 2, 4, 5, 6]
            .into_iter()
            .map(|m| point(t0 + m * 60_000, RATE * 60))
            .collect();
        series.push(point(t0 + 6 * 60_000 + 1000, 0));
        let report = Report {
            from_ms: t0,
            to_ms: t0 + 8 * 60_000,
            tier: Some(Tier::Interval),
            series,
            ..Default::default()
        };
        assert_eq!(bucket_ms(&report), 60_000);
        let svg = bandwidth_chart(&report);
        // Two runs (the missing slot splits them), each a line: no zero bridges the gap.
        assert_eq!(svg.matches("<polyline class=\"line rx\"").count(), 2);
        assert_eq!(svg.matches("received 17.0 MiB/s</title>").count(), 6);
        assert_eq!(
            svg.matches("received 0 B/s</title>").count(),
            1,
            "the stray stamp"
        );
        assert!(!svg.contains("T10:03:00Z"), "no point in the missing slot");
    }

    #[test]
    fn time_labels_are_distinct_and_round() {
        let t = 1_795_600_800_000 - 31 * 60_000 + 12_000; // 09:29:12
        let labels = |from: i64, to: i64| -> Vec<String> {
            time_ticks(from, to).into_iter().map(|(_, l)| l).collect()
        };
        // Two minutes: minute labels would all read 09:29 or 09:30.
        assert_eq!(
            labels(t, t + 120_000),
            ["09:29:30", "09:30:00", "09:30:30", "09:31:00"]
        );
        assert_eq!(
            labels(t, t + 3_600_000),
            ["09:30", "09:45", "10:00", "10:15"]
        );
        // Across midnight: the date says which day.
        assert_eq!(
            labels(t, t + 36 * 3_600_000),
            ["11-25 12:00", "11-26 00:00", "11-26 12:00"]
        );
        assert_eq!(
            labels(t, t + 20 * 86_400_000),
            ["2026-11-26", "2026-12-03", "2026-12-10"]
        );
        for span in [1000, 90_000, 7_200_000, 86_400_000, 400 * 86_400_000] {
            let l = labels(t, t + span);
            let mut distinct = l.clone();
            distinct.dedup();
            assert_eq!(l, distinct, "span {span}");
            assert!(!l.is_empty() && l.len() <= 7, "span {span}: {l:?}");
        }
    }

    #[test]
    fn charts_have_one_mark_per_entry() {
        let report = sample_report();
        let line = bandwidth_chart(&report);
        assert_eq!(line.matches("<polyline class=\"line rx\"").count(), 1);
        assert_eq!(line.matches("<circle class=\"dot rx\"").count(), 3);
        // Hour buckets: 1 GiB in the first hour is 291.3 KiB/s.
        assert!(line.contains("<title>2026-11-25T10:00:00Z received 291.3 KiB/s</title>"));
        assert!(
            line.contains(">10:00</text>") && line.contains(">13:00</text>"),
            "{line}"
        );
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
