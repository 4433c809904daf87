//! The ingest figure: what a 1-second interval of 10,000 busy sockets costs the store in CPU,
//! all of it. That is the `write` itself (with any WAL checkpoint SQLite runs at its commit)
//! plus the `maintain` calls after it: the minute rollup when a minute closes, the hour rollup
//! when an hour does, and retention deleting the interval rows that expire. The run is long
//! enough (a simulated hour and two minutes) to contain all of them, and keeps interval rows
//! only 10 minutes so that, from minute 11 on, every minute also expires a minute of rows, as
//! a daemon does every minute once its first 24 hours have passed.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use kaipo::store::{Retention, Store};

use super::{cpu_us, refresh, template, Rng, T0};

pub(super) const PROCESSES: u32 = 2000;
pub(super) const REMOTES: u32 = 5;
/// A simulated hour and two minutes of 1 s intervals.
pub(super) const INTERVALS: u32 = 3720;
/// Interval rows kept this long in this run (24 h in a daemon), so that expiry is included.
pub(super) const KEEP_INTERVALS: Duration = Duration::from_secs(600);

pub(crate) struct Ingest {
    pub first_write_ms: f64,
    /// Per interval after the first: CPU of `write`, CPU of the `maintain` after it, and the
    /// wall time of both.
    pub write_ms: Vec<f64>,
    pub maintain_ms: Vec<f64>,
    pub wall_ms: Vec<f64>,
    pub minutes_rolled: u32,
    pub rows_expired: u64,
}

impl Ingest {
    /// CPU of each interval: its write plus the maintenance after it.
    pub fn total_ms(&self) -> Vec<f64> {
        self.write_ms
            .iter()
            .zip(&self.maintain_ms)
            .map(|(w, m)| w + m)
            .collect()
    }
}

pub(super) fn run(path: &Path) -> anyhow::Result<Ingest> {
    let retention = Retention {
        interval: KEEP_INTERVALS,
        ..Retention::default()
    };
    let (mut store, _) = Store::open(path, &retention)?;
    let mut rng = Rng(0x5eed);
    let mut b = template(PROCESSES, REMOTES);
    let second = Duration::from_secs(1);
    refresh(&mut b, &mut rng, T0 + 1000, second);
    // The first interval also creates 2000 processes and 10,000 remotes.
    let c = cpu_us();
    store.write(&b)?;
    let first_write_ms = (cpu_us() - c) as f64 / 1000.0;
    store.maintain(b.ts_ms)?;
    let n = INTERVALS as usize;
    let mut out = Ingest {
        first_write_ms,
        write_ms: Vec::with_capacity(n),
        maintain_ms: Vec::with_capacity(n),
        wall_ms: Vec::with_capacity(n),
        minutes_rolled: 0,
        rows_expired: 0,
    };
    for i in 1..=INTERVALS {
        refresh(&mut b, &mut rng, T0 + 1000 * (i64::from(i) + 1), second);
        let (c, w) = (cpu_us(), Instant::now());
        store.write(&b)?;
        let c2 = cpu_us();
        let stats = store.maintain(b.ts_ms)?;
        let c3 = cpu_us();
        out.wall_ms.push(w.elapsed().as_secs_f64() * 1000.0);
        out.write_ms.push((c2 - c) as f64 / 1000.0);
        out.maintain_ms.push((c3 - c2) as f64 / 1000.0);
        out.minutes_rolled += u32::from(stats.closed_until_ms.is_some());
        out.rows_expired += stats.rows_expired;
    }
    Ok(out)
}
