//! The minute tier's traffic, summed in memory from the intervals as they are written.
//!
//! Rolling a minute up from the interval tier means reading back every row written in it
//! (600,000 at 10,000 sockets and 1 s intervals) all at once. Instead the writer adds each
//! committed interval's rows into per-minute sums here, and `maintain` writes those sums into
//! `traffic_minute`: once the minute has ended, a slice of them at each call, so no single
//! interval pays for a whole minute, and the rest when the minute closes, in the transaction
//! that moves the rollup mark.
//!
//! Rows a minute gets in `traffic_minute` before its mark moves are invisible to queries (they
//! read a tier only below its mark), and sums of one key add up, so rows that arrive after a
//! slice was written still count. What memory cannot know about is handled by the SQL rollup
//! from the interval tier instead: minutes before `sql_until` (rows written before this store
//! was opened, or after the sums were dropped at their bound). Because a slice written by an
//! earlier run would then be counted twice, the first transaction after opening or dropping
//! deletes the minute rows at or past the mark (`purge`); rows there can only be such slices.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::{
    packed,
    schema::Family,
    write::{upsert_chunked, Counters},
    Tier,
};

/// Keys held at most (56 bytes each, so about 15 MiB): 26 times a minute of 10,000 busy
/// sockets. Beyond it the sums are dropped and the SQL rollup takes over for those minutes.
const MAX_KEYS: usize = 1 << 18;

pub(crate) struct MinuteSums {
    /// Per minute, (process, remote, service) and counters, sorted by key. Intervals come
    /// sorted by key too, so adding one is a merge that walks memory in order; a hash map
    /// of 10,000 keys cost a cache miss per row, twice the CPU of the whole write.
    by_minute: BTreeMap<i64, Vec<(packed::Key, Counters)>>,
    keys: usize,
    /// Minutes before this one are rolled up from the interval tier by SQL.
    sql_until: i64,
    /// Minute rows at or past the mark must be deleted before any are written.
    purge: bool,
    /// Rows written ahead of their minute's closing (and not to be purged).
    ahead: u64,
    /// [`MAX_KEYS`], lower in tests.
    max_keys: usize,
}

impl MinuteSums {
    /// Sums for a store whose interval tier already holds rows up to `last_ts` (seconds).
    pub fn new(last_ts: Option<i64>) -> Self {
        Self {
            by_minute: BTreeMap::new(),
            keys: 0,
            sql_until: last_ts.map_or(i64::MIN, |ts| ts.div_euclid(60).saturating_add(1)),
            purge: true,
            ahead: 0,
            max_keys: MAX_KEYS,
        }
    }

    /// Reads where the interval tier ends, for [`MinuteSums::new`].
    pub fn last_ts(conn: &Connection) -> rusqlite::Result<Option<i64>> {
        conn.query_row("SELECT max(ts) FROM traffic_interval", [], |r| r.get(0))
    }

    #[cfg(test)]
    pub fn set_max_keys(&mut self, max: usize) {
        self.max_keys = max;
    }

    pub fn sql_until(&self) -> i64 {
        self.sql_until
    }

    /// Adds committed traffic rows (`ts` in seconds). Rows of minutes already rolled up
    /// (`rolled`) went to the minute tier directly; rows of minutes the SQL rollup handles
    /// are left to it.
    pub fn add(&mut self, rolled: i64, rows: &[([i64; 4], Counters)]) {
        // Sorted by (ts, key): each run of one ts is sorted by key.
        for run in rows.chunk_by(|a, b| a.0[0] == b.0[0]) {
            let minute = run[0].0[0].div_euclid(60);
            if minute < rolled || minute < self.sql_until {
                continue;
            }
            let sums = self.by_minute.entry(minute).or_default();
            let before = sums.len();
            merge(sums, run);
            self.keys += sums.len() - before;
        }
        if self.keys > self.max_keys {
            let last = self
                .by_minute
                .keys()
                .next_back()
                .copied()
                .unwrap_or(i64::MIN);
            self.by_minute.clear();
            self.keys = 0;
            self.sql_until = self.sql_until.max(last.saturating_add(1));
            self.purge = true;
            self.ahead = 0;
        }
    }

    /// Up to `max` summed rows (`ts` in minutes, sorted) of the minutes before `before`: the
    /// first ones, which [`MinuteSums::written`] relies on.
    pub fn slice(&self, before: i64, max: usize) -> Vec<([i64; 4], Counters)> {
        let mut out = Vec::new();
        for (&minute, sums) in self.by_minute.range(..before) {
            let room = max - out.len();
            out.extend(
                sums.iter()
                    .take(room)
                    .map(|&([p, r, s], c)| ([minute, p, r, s], c)),
            );
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// Writes `rows` (from [`MinuteSums::slice`]) into the minute tier, inside the caller's
    /// transaction, first deleting leftover slices if needed. Call [`MinuteSums::written`]
    /// once that transaction commits.
    pub fn write(
        &self,
        conn: &Connection,
        rolled: i64,
        rows: &[([i64; 4], Counters)],
    ) -> rusqlite::Result<()> {
        if self.purge {
            conn.execute("DELETE FROM traffic_minute WHERE ts >= ?1", [rolled])?;
        }
        upsert_chunked(conn, Family::Traffic, Tier::Minute, rows)
    }

    /// Rows written ahead of the minutes closing now, for the rollup's figures.
    pub fn ahead(&self) -> u64 {
        self.ahead
    }

    /// Forgets the sums of `rows`, now committed to the minute tier; `closed` when that
    /// transaction also closed their minutes.
    pub fn written(&mut self, rows: &[([i64; 4], Counters)], closed: bool) {
        if self.purge {
            self.ahead = 0;
        }
        self.purge = false;
        self.ahead = if closed {
            0
        } else {
            self.ahead + rows.len() as u64
        };
        for run in rows.chunk_by(|a, b| a.0[0] == b.0[0]) {
            let minute = run[0].0[0];
            if let Some(sums) = self.by_minute.get_mut(&minute) {
                // The slice took the first rows of each minute.
                let n = run.len().min(sums.len());
                sums.drain(..n);
                self.keys -= n;
                if sums.is_empty() {
                    self.by_minute.remove(&minute);
                }
            }
        }
    }

    /// Whether rows of minutes before `before` are held.
    pub fn holds_before(&self, before: i64) -> bool {
        self.by_minute.range(..before).next().is_some()
    }
}

/// Adds `run` (rows of one interval, sorted by key, one per key, `ts` first) into `sums`
/// (sorted by key), keeping it sorted.
fn merge(sums: &mut Vec<(packed::Key, Counters)>, run: &[([i64; 4], Counters)]) {
    let key = |r: &([i64; 4], Counters)| [r.0[1], r.0[2], r.0[3]];
    // The usual case: every key is there already, so the counters are added in place.
    let mut at = 0;
    let all_there = run.iter().all(|r| {
        let k = key(r);
        while at < sums.len() && sums[at].0 < k {
            at += 1;
        }
        at < sums.len() && sums[at].0 == k
    });
    if all_there {
        let mut at = 0;
        for r in run {
            let k = key(r);
            while sums[at].0 < k {
                at += 1;
            }
            sums[at].1.add(&r.1);
        }
        return;
    }
    let old = std::mem::take(sums);
    sums.reserve(old.len() + run.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < run.len() {
        let next_new = run.get(j).map(key);
        match (old.get(i), next_new) {
            (Some(&(k, c)), Some(n)) if k == n => {
                let mut c = c;
                c.add(&run[j].1);
                sums.push((k, c));
                i += 1;
                j += 1;
            }
            (Some(&x), Some(n)) if x.0 < n => {
                sums.push(x);
                i += 1;
            }
            (Some(&x), None) => {
                sums.push(x);
                i += 1;
            }
            (_, Some(n)) => {
                sums.push((n, run[j].1));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters of `v` bytes each way in `p` packets each way.
    fn c(v: i64, p: i64) -> Counters {
        Counters {
            rx_bytes: v,
            tx_bytes: v,
            rx_packets: p,
            tx_packets: p,
        }
    }

    #[test]
    fn merging_adds_equal_keys_and_keeps_new_ones_in_order() {
        let mut sums = vec![
            ([1, 1, 1], c(10, 1)),
            ([1, 5, 1], c(20, 1)),
            ([4, 1, 2], c(30, 1)),
        ];
        // Every key present: added in place.
        merge(
            &mut sums,
            &[([60, 1, 5, 1], c(1, 1)), ([60, 4, 1, 2], c(2, 1))],
        );
        assert_eq!(
            sums,
            vec![
                ([1, 1, 1], c(10, 1)),
                ([1, 5, 1], c(21, 2)),
                ([4, 1, 2], c(32, 2))
            ]
        );
        // New keys before, between and after the old ones, and one old key again.
        merge(
            &mut sums,
            &[
                ([60, 0, 9, 9], c(3, 1)),
                ([60, 1, 1, 1], c(4, 1)),
                ([60, 2, 0, 0], c(5, 1)),
                ([60, 9, 0, 0], c(6, 1)),
            ],
        );
        assert_eq!(
            sums,
            vec![
                ([0, 9, 9], c(3, 1)),
                ([1, 1, 1], c(14, 2)),
                ([1, 5, 1], c(21, 2)),
                ([2, 0, 0], c(5, 1)),
                ([4, 1, 2], c(32, 2)),
                ([9, 0, 0], c(6, 1)),
            ]
        );
    }
}
