//! The interval tier's traffic, one packed value per interval instead of a row per socket.
//!
//! A busy interval has thousands of traffic rows, and SQLite spends a few thousand
//! instructions on each row it inserts, rolls up or deletes; at 10,000 rows per second that
//! alone was more than the whole per-interval budget. So the interval tier keeps each
//! interval's rows as one blob in `traffic_interval (id, ts, rows, packed)`: SQLite then
//! handles one row per interval, and the store reads the rows back from the blob itself.
//!
//! The blob is the interval's rows sorted by (process, remote, service), each as unsigned
//! LEB128 varints: the process id as the difference from the row before (0 for another row of
//! the same process), then the remote and service ids, then rx bytes, tx bytes, rx packets and
//! tx packets. About 14 bytes a row instead of 31 as a table row. Several blobs may share a
//! `ts` (rows held through an outage, a clock that went back): readers add them up, as they
//! add up everything else.

use rusqlite::{ffi, Connection};

use super::write::Counters;

/// A traffic row of the interval tier without its time: process, remote and service ids.
pub(crate) type Key = [i64; 3];

/// The rows of one interval, sorted by key, as a blob.
pub(crate) fn encode(rows: &[(Key, Counters)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 16);
    let mut prev = 0i64;
    for (k, c) in rows {
        // Sorted, so the difference is never negative; wrapping keeps any input encodable.
        put(&mut out, k[0].wrapping_sub(prev) as u64);
        prev = k[0];
        for v in [
            k[1],
            k[2],
            c.rx_bytes,
            c.tx_bytes,
            c.rx_packets,
            c.tx_packets,
        ] {
            put(&mut out, v as u64);
        }
    }
    out
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Calls `f` with every row of a blob, in its order. A blob that does not decode (cut short,
/// or an over-long number) is reported as database corruption, which is what it means.
pub(crate) fn decode(
    blob: &[u8],
    mut f: impl FnMut(Key, Counters) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut r = Reader { blob, at: 0 };
    let mut process = 0i64;
    while r.at < blob.len() {
        process = process.wrapping_add(r.next()? as i64);
        let mut v = [0i64; 6];
        for x in &mut v {
            *x = r.next()? as i64;
        }
        f(
            [process, v[0], v[1]],
            Counters {
                rx_bytes: v[2],
                tx_bytes: v[3],
                rx_packets: v[4],
                tx_packets: v[5],
            },
        )?;
    }
    Ok(())
}

struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> rusqlite::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.blob.get(self.at) else {
                return Err(corrupt("a packed interval is cut short"));
            };
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("a packed interval holds an over-long number"))
    }
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_CORRUPT),
        Some(format!("{what} (table traffic_interval)")),
    )
}

/// Adds the rows of one interval (`ts` in seconds, sorted by key) as a new blob.
pub(crate) fn insert(conn: &Connection, ts: i64, rows: &[(Key, Counters)]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    conn.prepare_cached("INSERT INTO traffic_interval (ts, rows, packed) VALUES (?1, ?2, ?3)")?
        .execute(rusqlite::params![ts, rows.len() as i64, encode(rows)])?;
    Ok(())
}

/// Calls `f` with every row of the intervals starting in `lo..hi` (seconds), in time order;
/// stops at the first error `f` returns.
pub(crate) fn scan(
    conn: &Connection,
    lo: i64,
    hi: i64,
    mut f: impl FnMut(i64, Key, Counters) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT ts, packed FROM traffic_interval WHERE ts >= ?1 AND ts < ?2 ORDER BY ts",
    )?;
    let mut rows = stmt.query([lo, hi])?;
    while let Some(r) = rows.next()? {
        let ts: i64 = r.get(0)?;
        let blob = r.get_ref(1)?.as_blob()?;
        decode(blob, |k, c| f(ts, k, c))?;
    }
    Ok(())
}

/// Deletes the intervals starting before `cut` (seconds); returns how many rows they held.
pub(crate) fn expire(conn: &Connection, cut: i64) -> rusqlite::Result<u64> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM traffic_interval WHERE ts < ?1 RETURNING rows")?;
    let mut rows = stmt.query([cut])?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        n = n.saturating_add(u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(rx: i64, tx: i64, rp: i64, tp: i64) -> Counters {
        Counters {
            rx_bytes: rx,
            tx_bytes: tx,
            rx_packets: rp,
            tx_packets: tp,
        }
    }

    fn decoded(blob: &[u8]) -> rusqlite::Result<Vec<(Key, Counters)>> {
        let mut out = Vec::new();
        decode(blob, |k, c| {
            out.push((k, c));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn rows_come_back_exactly_including_the_extremes() {
        let rows = vec![
            ([1, 7, 1], c(0, 0, 0, 0)),
            ([1, 9, 2], c(127, 128, 16_383, 16_384)),
            ([300, 1, 1], c(1 << 48, 1, 2, 3)),
            ([300, 70_000, 5], c(i64::MAX, i64::MAX - 1, 1, 0)),
        ];
        let blob = encode(&rows);
        // A varint takes a byte per 7 bits: 0..=127 one, 128 and 16_383 two, 16_384 and
        // 70_000 three, 2^48 seven, i64::MAX nine. Rows: 7, 1+1+1+1+2+2+3, 2+1+1+7+1+1+1
        // (process 300 is 299 after 1), 1+3+1+9+9+1+1.
        assert_eq!(blob.len(), 7 + 11 + 14 + 25);
        assert_eq!(decoded(&blob).expect("decode"), rows);
        assert_eq!(decoded(&[]).expect("empty"), vec![]);
    }

    #[test]
    fn a_damaged_blob_is_corruption_not_a_panic() {
        let blob = encode(&[([5, 6, 7], c(1000, 2000, 3, 4))]);
        for cut in 1..blob.len() {
            let e = decoded(&blob[..cut]).expect_err("cut short");
            assert!(super::super::error::is_corruption(&e), "{e}");
        }
        let e = decoded(&[0xff; 11]).expect_err("over-long");
        assert!(e.to_string().contains("over-long"), "{e}");
    }
}
