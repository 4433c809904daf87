//! Totals per calendar period (`kaipo report --per`), optionally split by app.

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;

use super::{
    plan::plan,
    query::{process_info, ranked, row, scan_rows},
    rollup::Marks,
    schema::unit_secs,
    write::Counters,
    PeriodRow, Periods, Query,
};

/// Traffic per calendar period (and app) over `lo_s..hi_s`, each period cut to the range.
/// Read from the finest tier whose buckets fit in a period (hours for `--per hour`), so it
/// reaches back as far as that tier's retention.
pub(super) fn run(
    conn: &Connection,
    marks: &Marks,
    q: &Query,
    per: Periods,
    (lo_s, hi_s): (i64, i64),
) -> rusqlite::Result<Vec<PeriodRow>> {
    let mut segments = Vec::new();
    plan(marks, lo_s, hi_s, per.period.tier(), &mut segments);
    let mut apps: HashMap<i64, String> = HashMap::new();
    let mut sums: BTreeMap<i64, HashMap<String, Counters>> = BTreeMap::new();
    let mut failed = None;
    scan_rows(conn, &segments, q.uid, |tier, ts, [process, ..], c| {
        let start = per.period.start(ts * unit_secs(tier) * 1000);
        let app = if per.by_app {
            match apps.get(&process) {
                Some(app) => app.clone(),
                None => match process_info(conn, process) {
                    Ok(p) => apps.entry(process).or_insert(p.app).clone(),
                    Err(e) => {
                        failed = Some(e);
                        String::new()
                    }
                },
            }
        } else {
            String::new()
        };
        sums.entry(start)
            .or_default()
            .entry(app)
            .or_default()
            .add(c);
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (from_ms, to_ms) = (lo_s * 1000, hi_s * 1000);
    let mut out = Vec::new();
    for (start, by_app) in sums {
        let mut period_total = Counters::default();
        by_app.values().for_each(|c| period_total.add(c));
        let cut = |key: Option<String>, c: &Counters| PeriodRow {
            period_ms: start,
            from_ms: start.max(from_ms),
            to_ms: per.period.next(start).min(to_ms),
            app: key,
            ..period_row(c)
        };
        if !per.by_app {
            out.push(cut(None, &period_total));
            continue;
        }
        let mut shown = Counters::default();
        for r in ranked(by_app, q.top) {
            let c = Counters::of_row(&r);
            shown.add(&c);
            out.push(cut(Some(r.key), &c));
        }
        let rest = period_total.minus(&shown);
        if rest != Counters::default() {
            out.push(cut(Some("(others)".into()), &rest));
        }
    }
    Ok(out)
}

fn period_row(c: &Counters) -> PeriodRow {
    let r = row("", c);
    PeriodRow {
        rx_bytes: r.rx_bytes,
        tx_bytes: r.tx_bytes,
        rx_packets: r.rx_packets,
        tx_packets: r.tx_packets,
        ..PeriodRow::default()
    }
}
