//! Putting rows into the tier tables, inside the caller's transaction.
//!
//! Rows go to the interval tier. A row whose bucket a coarser tier has already rolled up (held
//! rows written after an outage, a clock that went back) is added to that tier as well, so
//! every tier keeps the same totals however late a row arrives.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::OnceLock,
};

use rusqlite::{Connection, Statement};

use super::{
    ids::{Ids, NameTable, ProcessRef},
    packed,
    rollup::Marks,
    schema::{unit_secs, Family, FAMILIES, TIERS},
    IfaceRow, IntervalBatch, Tier, TrafficRow,
};

/// Largest counter accepted in one row: far above any link's traffic in one interval, and
/// low enough that years of sums stay inside SQLite's 64-bit integers.
pub(crate) const MAX_COUNTER: u64 = 1 << 48;

/// The end of year 9999 in milliseconds since the epoch: the latest time history accepts.
pub(crate) const MAX_TS_MS: i64 = 253_402_300_799_999;

/// Rows bound per INSERT statement: one statement per row costs twice as much CPU in SQLite's
/// statement machinery; 64 rows × 8 values stays far below the parameter limit.
const CHUNK: usize = 64;

const UPSERT_SET: &str = "ON CONFLICT DO UPDATE SET rx_bytes = rx_bytes + excluded.rx_bytes, \
                          tx_bytes = tx_bytes + excluded.tx_bytes, \
                          rx_packets = rx_packets + excluded.rx_packets, \
                          tx_packets = tx_packets + excluded.tx_packets";

/// A hash map keyed by row ids and buckets. Those are small integers this store hands out
/// itself, never chosen by whoever sends traffic, so a plain multiplicative hash is safe and
/// several times cheaper than SipHash over hundreds of thousands of rows per rollup.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    /// Arrays of integers (the keys of rollups) arrive here as their bytes: taken eight at a
    /// time, a four-id key costs four rounds rather than thirty-two.
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.write_u64(u64::from_le_bytes(b));
        }
        for &b in words.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    /// Folds the high bits down: after the multiplications only they depend on every input
    /// bit, and the map picks buckets with the low ones (without this, keys that differ in
    /// their first ids crowd into a few buckets).
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32) ^ (self.0 >> 47)
    }
}

/// Bytes and packets both ways, as SQLite stores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.rx_bytes = self.rx_bytes.saturating_add(o.rx_bytes);
        self.tx_bytes = self.tx_bytes.saturating_add(o.tx_bytes);
        self.rx_packets = self.rx_packets.saturating_add(o.rx_packets);
        self.tx_packets = self.tx_packets.saturating_add(o.tx_packets);
    }

    pub fn of_traffic(r: &TrafficRow) -> Self {
        Self::new(r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)
    }

    pub fn of_iface(r: &IfaceRow) -> Self {
        Self::new(r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)
    }

    pub fn of_row(r: &super::ReportRow) -> Self {
        Self::new(r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)
    }

    /// What `self` has beyond `part` (never below zero).
    pub fn minus(&self, part: &Counters) -> Self {
        let d = |a: i64, b: i64| a.saturating_sub(b).max(0);
        Self {
            rx_bytes: d(self.rx_bytes, part.rx_bytes),
            tx_bytes: d(self.tx_bytes, part.tx_bytes),
            rx_packets: d(self.rx_packets, part.rx_packets),
            tx_packets: d(self.tx_packets, part.tx_packets),
        }
    }

    fn new(rx_bytes: u64, tx_bytes: u64, rx_packets: u64, tx_packets: u64) -> Self {
        let c = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            rx_bytes: c(rx_bytes),
            tx_bytes: c(tx_bytes),
            rx_packets: c(rx_packets),
            tx_packets: c(tx_packets),
        }
    }

    fn values(&self) -> [i64; 4] {
        [
            self.rx_bytes,
            self.tx_bytes,
            self.rx_packets,
            self.tx_packets,
        ]
    }
}

/// Checks what SQLite cannot hold or what would make no sense in history.
pub(crate) fn validate(batch: &IntervalBatch) -> Result<(), String> {
    let start = batch.ts_ms.saturating_sub(i64::from(batch.interval_ms));
    // Year 1970 to year 9999: a timestamp outside is a unit mix-up, not history.
    if start < 0 || batch.ts_ms > MAX_TS_MS {
        return Err(format!(
            "interval {}..{} ms is not a time since the Unix epoch",
            start, batch.ts_ms
        ));
    }
    let too_big = |v: &[u64]| v.iter().any(|&x| x > MAX_COUNTER);
    for r in &batch.traffic {
        if too_big(&[r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets]) {
            return Err(format!("a counter of {}[{}] exceeds 2^48", r.app, r.pid));
        }
        if i64::try_from(r.start_time).is_err() {
            return Err(format!(
                "start time {} of pid {} is out of range",
                r.start_time, r.pid
            ));
        }
    }
    for r in &batch.interfaces {
        if too_big(&[r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets]) {
            return Err(format!("a counter of interface {} exceeds 2^48", r.name));
        }
    }
    Ok(())
}

/// A traffic row to store: its bucket (seconds), whose it is, and its counters.
pub(crate) struct Pending<'a> {
    pub ts: i64,
    pub process: ProcessRef<'a>,
    pub remote: &'a str,
    /// The remote's name, when the row knows it.
    pub remote_name: Option<&'a str>,
    pub service: &'a str,
    pub counters: Counters,
}

pub(crate) struct PendingIface<'a> {
    pub ts: i64,
    pub name: &'a str,
    pub counters: Counters,
}

impl<'a> Pending<'a> {
    pub fn of_row(ts: i64, r: &'a TrafficRow) -> Self {
        Self {
            ts,
            process: ProcessRef {
                app: &r.app,
                pid: r.pid,
                start_time: r.start_time,
                cmdline: &r.cmdline,
                uid: r.uid,
                user: r.user.as_deref().unwrap_or(""),
                // A cgroup path is where a host process sits, not a container.
                container: r
                    .container
                    .as_deref()
                    .filter(|c| !c.starts_with('/'))
                    .unwrap_or(""),
                workload: [
                    r.container_name.as_deref(),
                    r.pod.as_deref(),
                    r.pod_namespace.as_deref(),
                    r.unit.as_deref(),
                ],
            },
            remote: &r.remote,
            remote_name: r.remote_name.as_deref(),
            service: &r.service,
            counters: Counters::of_traffic(r),
        }
    }
}

/// Resolves ids and upserts everything; returns the traffic rows written to the interval tier
/// (`ts` in seconds, sorted by key, one per key). The caller owns the transaction.
pub(crate) fn store_rows<'a>(
    conn: &Connection,
    ids: &mut Ids,
    marks: &Marks,
    traffic: impl IntoIterator<Item = Pending<'a>>,
    ifaces: impl IntoIterator<Item = PendingIface<'a>>,
) -> rusqlite::Result<Vec<([i64; 4], Counters)>> {
    // (ts, process, remote, service, counters)
    let traffic = traffic.into_iter();
    let mut rows: Vec<([i64; 4], Counters)> = Vec::with_capacity(traffic.size_hint().0);
    let mut totals: IdMap<[i64; 2], Counters> = IdMap::default();
    // Rows of one process (so one user) come together: sum them before touching the map.
    let mut run: Option<([i64; 2], Counters)> = None;
    let mut prev: Option<ProcessRef<'a>> = None;
    for (i, p) in traffic.enumerate() {
        let [process, remote, service, user] =
            ids.traffic_row(conn, i, &p.process, p.remote, p.service, prev.as_ref())?;
        if let Some(name) = p.remote_name.filter(|n| !n.is_empty()) {
            ids.remote_name(conn, remote, name)?;
        }
        rows.push(([p.ts, process, remote, service], p.counters));
        match &mut run {
            Some((key, sum)) if *key == [p.ts, user] => sum.add(&p.counters),
            _ => {
                if let Some((key, sum)) = run.replace(([p.ts, user], p.counters)) {
                    totals.entry(key).or_default().add(&sum);
                }
            }
        }
        prev = Some(p.process);
    }
    if let Some((key, sum)) = run {
        totals.entry(key).or_default().add(&sum);
    }
    let rows = merge_sorted(rows);
    insert_packed(conn, &rows)?;
    upsert_late(conn, marks, Family::Traffic, &rows)?;
    upsert_everywhere(
        conn,
        marks,
        Family::Totals,
        &merge_sorted(totals.into_iter().collect()),
    )?;

    let mut irows: Vec<([i64; 2], Counters)> = Vec::new();
    for p in ifaces {
        irows.push((
            [p.ts, ids.name(conn, NameTable::Iface, p.name)?],
            p.counters,
        ));
    }
    upsert_everywhere(conn, marks, Family::Iface, &merge_sorted(irows))?;
    Ok(rows)
}

/// Sorts by key and adds up rows with equal keys: in key order the b-tree inserts stay on the
/// same few pages (which also fills them), and a key appears once per statement. The stable
/// sort is used because it runs in linear time over the long sorted runs a daemon's batch has
/// (ids are handed out in the daemon's row order).
fn merge_sorted<const N: usize>(mut rows: Vec<([i64; N], Counters)>) -> Vec<([i64; N], Counters)> {
    rows.sort_by_key(|(k, _)| *k);
    let mut out: Vec<([i64; N], Counters)> = Vec::with_capacity(rows.len());
    for (k, c) in rows {
        match out.last_mut() {
            Some((last, sum)) if *last == k => sum.add(&c),
            _ => out.push((k, c)),
        }
    }
    out
}

/// The upsert of `CHUNK` rows (or of one) into a family's table of a tier. Built once: at
/// thousands of rows per write, formatting and hashing a 2 kB statement text for every chunk
/// shows up.
fn insert_sql(family: Family, tier: Tier, chunk: bool) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut all = Vec::new();
        for family in FAMILIES {
            for tier in TIERS {
                for rows in [1, CHUNK] {
                    let columns = family.key_columns().split(", ").count() + 4;
                    let one = format!("({})", vec!["?"; columns].join(", "));
                    all.push(format!(
                        "INSERT INTO {} ({}, rx_bytes, tx_bytes, rx_packets, tx_packets) \
                         VALUES {} {UPSERT_SET}",
                        family.table(tier),
                        family.key_columns(),
                        vec![one.as_str(); rows].join(", ")
                    ));
                }
            }
        }
        all
    });
    &all[(family as usize * TIERS.len() + tier as usize) * 2 + usize::from(chunk)]
}

fn bind_rows<const N: usize>(
    stmt: &mut Statement<'_>,
    rows: &[([i64; N], Counters)],
) -> rusqlite::Result<()> {
    let mut i = 1;
    for (key, c) in rows {
        for v in key.iter().chain(c.values().iter()) {
            stmt.raw_bind_parameter(i, v)?;
            i += 1;
        }
    }
    stmt.raw_execute()?;
    Ok(())
}

/// Upserts `rows` (keys in `family`'s key order, `ts` in `tier` units) into one table.
pub(crate) fn upsert_chunked<const N: usize>(
    conn: &Connection,
    family: Family,
    tier: Tier,
    rows: &[([i64; N], Counters)],
) -> rusqlite::Result<()> {
    let mut chunks = rows.chunks_exact(CHUNK);
    if chunks.len() > 0 {
        let mut stmt = conn.prepare_cached(insert_sql(family, tier, true))?;
        for chunk in &mut chunks {
            bind_rows(&mut stmt, chunk)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(insert_sql(family, tier, false))?;
        for row in rest {
            bind_rows(&mut stmt, std::slice::from_ref(row))?;
        }
    }
    Ok(())
}

/// Adds traffic rows (sorted by key, so by `ts` first) to the interval tier: a packed blob
/// per interval start.
fn insert_packed(conn: &Connection, rows: &[([i64; 4], Counters)]) -> rusqlite::Result<()> {
    let mut one: Vec<(packed::Key, Counters)> = Vec::with_capacity(rows.len());
    for group in rows.chunk_by(|a, b| a.0[0] == b.0[0]) {
        one.clear();
        one.extend(group.iter().map(|([_, p, r, s], c)| ([*p, *r, *s], *c)));
        packed::insert(conn, group[0].0[0], &one)?;
    }
    Ok(())
}

/// Upserts rows (`ts` in seconds, sorted by key) into the interval tier, and into every
/// coarser tier that has already rolled up their bucket.
fn upsert_everywhere<const N: usize>(
    conn: &Connection,
    marks: &Marks,
    family: Family,
    rows: &[([i64; N], Counters)],
) -> rusqlite::Result<()> {
    upsert_chunked(conn, family, Tier::Interval, rows)?;
    upsert_late(conn, marks, family, rows)
}

/// Upserts rows (`ts` in seconds, sorted by key) into every coarser tier that has already
/// rolled up their bucket.
fn upsert_late<const N: usize>(
    conn: &Connection,
    marks: &Marks,
    family: Family,
    rows: &[([i64; N], Counters)],
) -> rusqlite::Result<()> {
    for &tier in &TIERS[1..] {
        let unit = unit_secs(tier);
        let rolled = marks.rolled(tier);
        // Sorted by time, so the late rows come first.
        let late = rows.partition_point(|(k, _)| k[0].div_euclid(unit) < rolled);
        let late: Vec<([i64; N], Counters)> = rows[..late]
            .iter()
            .map(|(k, c)| {
                let mut k = *k;
                k[0] = k[0].div_euclid(unit);
                (k, *c)
            })
            .collect();
        if !late.is_empty() {
            upsert_chunked(conn, family, tier, &merge_sorted(late))?;
        }
    }
    Ok(())
}
