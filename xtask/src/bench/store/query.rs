//! The query part: a month of per-minute history for 1000 apps, then `--since 30d --by app`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use kaipo::store::{Dimension, Query, Report, Retention, Store};

use super::{DAY, MINUTE, QUERY_APPS, QUERY_DAYS, T0};

pub(super) struct QueryBench {
    pub(super) fill_s: f64,
    pub(super) rollup_s: f64,
    pub(super) minute_rows: u64,
    pub(super) first_ms: f64,
    pub(super) uncached_ms: Vec<f64>,
    pub(super) cached_ms: Vec<f64>,
    pub(super) report: Report,
    pub(super) three_days_ms: Vec<f64>,
}

/// Fills the minute tier straight from SQL: identity rows for 1000 apps (one process each),
/// then per day one `INSERT ... SELECT` over a recursive CTE of that day's minutes crossed with
/// the processes, in key order, and the per-user totals from those rows, on a separate
/// connection with `synchronous = OFF`. The minute tier's rollup mark is set past them, as the
/// store's own rollup would have left it (minute rows past the mark are unfinished slices of
/// the writer, which a newly opened store deletes). The hour and day tiers are then built by
/// the store's own `maintain`.
fn fill_minutes(path: &Path, end_min: i64) -> anyhow::Result<u64> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = OFF;
         BEGIN;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {QUERY_APPS})
         INSERT INTO app (id, name) SELECT x, 'app' || x FROM n;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20)
         INSERT INTO user (id, uid, name) SELECT x, 999 + x, 'user' || x FROM n;
         INSERT INTO container (id, name) VALUES (1, '');
         INSERT INTO process (id, pid, start_time, app_id, user_id, container_id, cmdline)
             SELECT id, 10000 + id, id * 13, id, 1 + id % 20, 1, '/usr/bin/app' || id || ' --serve'
             FROM app;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50)
         INSERT INTO remote (id, addr) SELECT x, '192.0.2.' || x FROM n;
         INSERT INTO service (id, name) VALUES (1, 'https'), (2, 'http'), (3, 'dns'), (4, 'ssh'), (5, 'tcp/8080');
         COMMIT;"
    ))?;
    let start_min = end_min - QUERY_DAYS * 1440;
    for day in 0..QUERY_DAYS {
        let lo = start_min + day * 1440;
        let tx = conn.transaction()?;
        tx.execute(
            "WITH RECURSIVE m(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM m WHERE x < ?2)
             INSERT INTO traffic_minute
                 (ts, process_id, remote_id, service_id, rx_bytes, tx_bytes, rx_packets, tx_packets)
             SELECT m.x, p.id, 1 + p.id % 50, 1 + p.id % 5,
                    1 + (p.id * 7919 + m.x * 104729) % 5000000,
                    1 + (p.id * 104729 + m.x * 7919) % 500000,
                    1 + (p.id + m.x) % 4000, 1 + (p.id * 3 + m.x) % 400
             FROM m CROSS JOIN process p",
            [lo, lo + 1439],
        )?;
        // The per-user totals the store keeps beside the rows, for the series.
        tx.execute(
            "INSERT INTO totals_minute (ts, user_id, rx_bytes, tx_bytes, rx_packets, tx_packets)
             SELECT t.ts, p.user_id, SUM(t.rx_bytes), SUM(t.tx_bytes), SUM(t.rx_packets),
                    SUM(t.tx_packets)
             FROM traffic_minute t JOIN process p ON p.id = t.process_id
             WHERE t.ts >= ?1 AND t.ts <= ?2 GROUP BY t.ts, p.user_id",
            [lo, lo + 1439],
        )?;
        tx.commit()?;
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('rolled_minute', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [end_min],
    )?;
    Ok(
        conn.query_row("SELECT count(*) FROM traffic_minute", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

pub(super) fn run(path: &Path) -> anyhow::Result<QueryBench> {
    let retention = Retention {
        minute: Duration::from_secs(31 * 86_400),
        ..Retention::default()
    };
    drop(Store::open(path, &retention)?);
    let end = T0 + QUERY_DAYS * DAY;
    let t = Instant::now();
    let minute_rows = fill_minutes(path, end / MINUTE)?;
    let fill_s = t.elapsed().as_secs_f64();
    let (mut store, _) = Store::open(path, &retention)?;
    let now = end + 2 * MINUTE;
    let t = Instant::now();
    store.maintain(now)?;
    let rollup_s = t.elapsed().as_secs_f64();
    drop(store);

    // A fresh reader, as `kaipo report --since 30d --by app` would open it.
    let mut store = Store::open_read_only(path)?;
    let q = |to_ms: i64, days: i64| Query {
        per: None,
        from_ms: to_ms - days * DAY,
        to_ms,
        by: Dimension::App,
        top: 0,
        uid: None,
    };
    let timed = |store: &mut Store, q: &Query| -> anyhow::Result<(f64, Report)> {
        let t = Instant::now();
        let r = store.query(q)?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, r))
    };
    let (first_ms, report) = timed(&mut store, &q(now, QUERY_DAYS))?;
    let mut uncached_ms = Vec::new();
    let mut cached_ms = Vec::new();
    let mut three_days_ms = Vec::new();
    for k in 1..=5 {
        // A different end by a second: the same work, but not the cached answer.
        uncached_ms.push(timed(&mut store, &q(now + 1000 * k, QUERY_DAYS))?.0);
        cached_ms.push(timed(&mut store, &q(now, QUERY_DAYS))?.0);
        three_days_ms.push(timed(&mut store, &q(now + 1000 * k, 3))?.0);
    }
    Ok(QueryBench {
        fill_s,
        rollup_s,
        minute_rows,
        first_ms,
        uncached_ms,
        cached_ms,
        report,
        three_days_ms,
    })
}
