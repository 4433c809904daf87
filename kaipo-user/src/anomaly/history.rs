//! Baselines learnt from the store at start, so that a restarted daemon judges by weeks of
//! history rather than by the last few minutes.

use super::baseline::Baseline;
use crate::store::{Dimension, Query, Store, Tier};

/// Weeks of hourly history learnt at start: each slot gets one value per week.
pub const WEEKS: u64 = 4;
const HOUR_MS: u64 = 3_600_000;

/// Feeds every app's hourly rate over the last [`WEEKS`] weeks up to `now_ms` into
/// `baseline`, oldest first. Returns the hours that had traffic. Hours the store cannot
/// answer are skipped: history is a help here, not a requirement.
pub fn learn(baseline: &mut Baseline, store: &mut Store, now_ms: u64) -> usize {
    let last = now_ms / HOUR_MS * HOUR_MS;
    let mut hours = 0;
    for h in (1..=WEEKS * 168).rev() {
        let from = last.saturating_sub(h * HOUR_MS);
        let q = Query {
            from_ms: from as i64,
            to_ms: (from + HOUR_MS) as i64,
            by: Dimension::App,
            top: 0,
            uid: None,
            per: None,
        };
        let Ok(report) = store.query_tier(&q, Tier::Hour) else {
            continue;
        };
        if report.rows.is_empty() {
            continue;
        }
        hours += 1;
        baseline.learn_history(report.rows.iter().map(|r| {
            (
                r.key.as_str(),
                from + HOUR_MS / 2,
                r.rx_bytes + r.tx_bytes,
                HOUR_MS,
            )
        }));
    }
    hours
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IntervalBatch, Retention, TrafficRow};

    #[test]
    fn two_weeks_of_hourly_history_make_a_baseline() {
        let dir =
            std::env::temp_dir().join(format!("kaipo-anomaly-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut store, _) = Store::open(dir.join("k.db"), &Retention::default()).unwrap();
        let now = 1_700_000_000_000 / HOUR_MS * HOUR_MS;
        // One minute of traffic per hour: 3.6 MB in each hour is 1000 B/s over the hour.
        for h in 1..=14 * 24 {
            let start = now - h * HOUR_MS + 10 * 60_000;
            let row = TrafficRow {
                app: "db".into(),
                pid: 7,
                service: "postgres".into(),
                tx_bytes: 3_600_000,
                ..TrafficRow::default()
            };
            let batch = IntervalBatch {
                ts_ms: (start + 60_000) as i64,
                interval_ms: 60_000,
                traffic: vec![row],
                interfaces: Vec::new(),
            };
            store.write(&batch).unwrap();
        }
        store.maintain(now as i64).unwrap();
        let mut b = Baseline::new(4.0);
        b.min_samples = 2;
        assert_eq!(learn(&mut b, &mut store, now + 1), 14 * 24);
        let (score, mean, _) = b.score("db", now - HOUR_MS / 2, 1000.0).unwrap();
        assert_eq!((score, mean), (0.0, 1000.0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
