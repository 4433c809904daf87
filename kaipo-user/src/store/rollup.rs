//! Rolling finer tiers up into coarser ones once a bucket has closed, and dropping what the
//! retention no longer keeps.
//!
//! Two marks per tier, kept in the `meta` table and moved in the same transaction as the rows
//! they describe, say what a tier holds: `rolled` is the first bucket not yet complete (every
//! bucket before it holds the exact sum of the finer tier), `kept` the first bucket retention
//! left in place. Retention never drops a bucket before the next coarser tier has it, so the
//! data is always complete in some tier, and the query side uses the marks to stitch tiers
//! together without counting anything twice.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    packed,
    schema::{unit_secs, Family, FAMILIES, TIERS},
    write::{upsert_chunked, Counters, IdMap},
    Tier,
};

/// How long each tier keeps its buckets. A tier never drops a bucket that the next coarser
/// tier does not hold yet, whatever the figures here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Per-interval rows; default 24 hours.
    pub interval: Duration,
    /// Per-minute rows; default 30 days.
    pub minute: Duration,
    /// Per-hour rows; default 365 days.
    pub hour: Duration,
    /// Per-day rows; `None` (the default) keeps them forever.
    pub day: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(24 * 3600),
            minute: Duration::from_secs(30 * 86_400),
            hour: Duration::from_secs(365 * 86_400),
            day: None,
        }
    }
}

impl Retention {
    /// How many of the tier's units to keep back from now.
    fn keep_units(&self, tier: Tier) -> Option<i64> {
        let d = match tier {
            Tier::Interval => Some(self.interval),
            Tier::Minute => Some(self.minute),
            Tier::Hour => Some(self.hour),
            Tier::Day => self.day,
        }?;
        Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX) / unit_secs(tier))
    }
}

/// What one [`super::Store::maintain`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintainStats {
    /// History is rolled up to this minute boundary (ms since the epoch); `None` when no
    /// minute closed since the last call and nothing was done.
    pub closed_until_ms: Option<i64>,
    /// Rows written to the minute, hour and day tiers.
    pub rows_rolled_up: u64,
    /// Rows removed by retention, all tiers together.
    pub rows_expired: u64,
}

/// The `rolled` and `kept` marks of every tier, in the tier's units. `rolled` of the interval
/// tier is unused: that tier is written directly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    rolled: [i64; 4],
    kept: [i64; 4],
}

const KEYS: [(&str, &str); 4] = [
    ("rolled_interval", "kept_interval"),
    ("rolled_minute", "kept_minute"),
    ("rolled_hour", "kept_hour"),
    ("rolled_day", "kept_day"),
];

impl Marks {
    pub fn rolled(&self, tier: Tier) -> i64 {
        self.rolled[tier as usize]
    }

    pub fn kept(&self, tier: Tier) -> i64 {
        self.kept[tier as usize]
    }

    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        let mut get = |key: &str| -> rusqlite::Result<i64> {
            Ok(stmt.query_row([key], |r| r.get(0)).optional()?.unwrap_or(0))
        };
        let mut m = Self::default();
        for (i, (rolled, kept)) in KEYS.iter().enumerate() {
            m.rolled[i] = get(rolled)?;
            m.kept[i] = get(kept)?;
        }
        Ok(m)
    }

    fn save(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?;
        for (i, (rolled, kept)) in KEYS.iter().enumerate() {
            stmt.execute(params![rolled, self.rolled[i]])?;
            stmt.execute(params![kept, self.kept[i]])?;
        }
        Ok(())
    }
}

/// Rolls every closed bucket up and applies retention. `closed_minute` is the first minute
/// that may still receive rows; the caller checked it is past `rolled` of the minute tier.
/// The traffic of minutes from `sql_until` on is the caller's: it wrote their sums already
/// (see `minutes`). Runs inside the caller's transaction and updates `marks` (also in the
/// database).
pub(crate) fn run(
    conn: &Connection,
    marks: &mut Marks,
    retention: &Retention,
    now_s: i64,
    closed_minute: i64,
    sql_until: i64,
) -> rusqlite::Result<MaintainStats> {
    let mut stats = MaintainStats {
        closed_until_ms: Some(closed_minute.saturating_mul(60_000)),
        ..MaintainStats::default()
    };
    let mut closed = closed_minute;
    for (i, &tier) in TIERS.iter().enumerate().skip(1) {
        let from = marks.rolled[i];
        if closed > from {
            let finer = TIERS[i - 1];
            let ratio = unit_secs(tier) / unit_secs(finer);
            let (lo, hi) = (from * ratio, closed * ratio);
            let span = (finer, tier, ratio, lo, hi);
            stats.rows_rolled_up += if finer == Tier::Interval {
                let hi = hi.min(sql_until.saturating_mul(ratio));
                if lo < hi {
                    roll_packed(conn, (finer, tier, ratio, lo, hi))?
                } else {
                    0
                }
            } else {
                roll::<4>(conn, Family::Traffic, span)?
            };
            stats.rows_rolled_up += roll::<2>(conn, Family::Iface, span)?;
            stats.rows_rolled_up += roll::<2>(conn, Family::Totals, span)?;
            marks.rolled[i] = closed;
        }
        // The next coarser tier can close only buckets this one holds completely.
        if let Some(&coarser) = TIERS.get(i + 1) {
            closed = marks.rolled[i].div_euclid(unit_secs(coarser) / unit_secs(tier));
        }
    }
    for (i, &tier) in TIERS.iter().enumerate() {
        let Some(keep) = retention.keep_units(tier) else {
            continue;
        };
        let now = now_s.div_euclid(unit_secs(tier));
        let mut cut = now.saturating_sub(keep);
        if let Some(&coarser) = TIERS.get(i + 1) {
            // Never drop a bucket the coarser tier does not hold yet.
            let ratio = unit_secs(coarser) / unit_secs(tier);
            cut = cut.min(marks.rolled[i + 1].saturating_mul(ratio));
        }
        if cut > marks.kept[i] {
            for family in FAMILIES {
                stats.rows_expired += if (family, tier) == (Family::Traffic, Tier::Interval) {
                    packed::expire(conn, cut)?
                } else {
                    let sql = format!("DELETE FROM {} WHERE ts < ?1", family.table(tier));
                    conn.execute(&sql, [cut])? as u64
                };
            }
            marks.kept[i] = cut;
        }
    }
    marks.save(conn)?;
    Ok(stats)
}

/// Adds the rows of `family`'s table of the finer tier with `lo <= ts < hi` (finer units)
/// into its table of the coarser tier, `ratio` finer units per coarser bucket; `N` key
/// columns, `ts` first. Summed here rather than with SQL's GROUP BY, which sorts every row:
/// rows come in key order, so by time, and one coarser bucket at a time is summed in a hash
/// map, for about a third of the CPU.
fn roll<const N: usize>(
    conn: &Connection,
    family: Family,
    (finer, coarser, ratio, lo, hi): (Tier, Tier, i64, i64, i64),
) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {}, rx_bytes, tx_bytes, rx_packets, tx_packets FROM {} WHERE ts >= ?1 AND ts < ?2",
        family.key_columns(),
        family.table(finer),
    ))?;
    let mut rows = stmt.query([lo, hi])?;
    let mut sums: IdMap<[i64; N], Counters> = IdMap::default();
    let mut bucket = None;
    let mut written = 0;
    while let Some(r) = rows.next()? {
        let mut key = [0; N];
        for (i, k) in key.iter_mut().enumerate() {
            *k = r.get(i)?;
        }
        // Floors because ts is never negative.
        key[0] /= ratio;
        if bucket != Some(key[0]) {
            written += flush(conn, family, coarser, &mut sums)?;
            bucket = Some(key[0]);
        }
        let c = Counters {
            rx_bytes: r.get(N)?,
            tx_bytes: r.get(N + 1)?,
            rx_packets: r.get(N + 2)?,
            tx_packets: r.get(N + 3)?,
        };
        sums.entry(key).or_default().add(&c);
    }
    written += flush(conn, family, coarser, &mut sums)?;
    Ok(written)
}

/// [`roll`] for the interval tier's traffic, which is packed (see `packed`).
fn roll_packed(
    conn: &Connection,
    (_, coarser, ratio, lo, hi): (Tier, Tier, i64, i64, i64),
) -> rusqlite::Result<u64> {
    let mut sums: IdMap<[i64; 4], Counters> = IdMap::default();
    let mut bucket = None;
    let mut written = 0;
    packed::scan(conn, lo, hi, |ts, [process, remote, service], c| {
        let b = ts / ratio;
        if bucket != Some(b) {
            written += flush(conn, Family::Traffic, coarser, &mut sums)?;
            bucket = Some(b);
        }
        sums.entry([b, process, remote, service])
            .or_default()
            .add(&c);
        Ok(())
    })?;
    written += flush(conn, Family::Traffic, coarser, &mut sums)?;
    Ok(written)
}

fn flush<const N: usize>(
    conn: &Connection,
    family: Family,
    tier: Tier,
    sums: &mut IdMap<[i64; N], Counters>,
) -> rusqlite::Result<u64> {
    let mut rows: Vec<([i64; N], Counters)> = sums.drain().collect();
    rows.sort_unstable_by_key(|(k, _)| *k);
    upsert_chunked(conn, family, tier, &rows)?;
    Ok(rows.len() as u64)
}
