//! Damage past the header: a file whose first page is sound but whose tables were written over.
//! Opening finds it (SQLite's `quick_check`) and so does a write; either way the file is moved
//! aside intact and history goes on in a fresh one, without losing the rows held meanwhile.

use std::{fs, path::Path};

use super::*;

/// SQLite's default page size, which the store keeps.
const PAGE: usize = 4096;

/// Batch `n` of many distinct processes with long command lines, so the file grows to many
/// pages of several tables.
fn wide(n: u32) -> IntervalBatch {
    let rows = (0..50)
        .map(|i| {
            let pid = n * 100 + i;
            let mut r = traffic("app", pid, 0, &format!("10.1.{n}.{i}"), "https", 0, 0);
            r.cmdline = format!("/opt/app --worker {pid} {}", "y".repeat(300));
            r.rx_bytes = u64::from(pid) + 1;
            r.tx_bytes = 2;
            r
        })
        .collect();
    batch(T0 + 60_000 * i64::from(n + 1), 60_000, rows, vec![])
}

/// Fixed-seed bytes, so a failure can be replayed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Writes noise over pages `from..to` of the file at `path`, in place.
fn damage_pages(path: &Path, from: usize, to: usize) -> Vec<u8> {
    let mut bytes = fs::read(path).expect("read the database");
    let to = to.min(bytes.len() / PAGE);
    assert!(from < to, "only {} pages", bytes.len() / PAGE);
    let junk = noise((to - from) * PAGE, 0x5eed_0000_0000_0001 + from as u64);
    bytes[from * PAGE..to * PAGE].copy_from_slice(&junk);
    // Through the same inode: an open connection's descriptor sees the damage.
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .expect("write the damage");
    bytes
}

fn moved_to(note: Option<OpenNote>) -> PathBuf {
    match note {
        Some(OpenNote::Replaced { moved_to, reason }) => {
            assert!(reason.starts_with("damaged: "), "{reason}");
            moved_to
        }
        other => panic!("expected a file moved aside, got {other:?}"),
    }
}

#[test]
fn damage_past_the_header_is_found_at_open_and_the_file_moved_aside() {
    let dir = TempDir::new("deep-damage");
    {
        let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
        for n in 0..30 {
            store.write(&wide(n)).expect("write");
        }
    } // Closing checkpoints: every page is in the file itself.
    let pages = fs::metadata(dir.db()).expect("metadata").len() as usize / PAGE;
    assert!(pages >= 20, "{pages} pages");
    // The middle of the file: older rows and ids, neither the first page nor the newest rows.
    let damaged = damage_pages(&dir.db(), pages * 3 / 10, pages * 6 / 10);

    // What opening did before it checked every page: on a copy, this finds nothing wrong.
    let copy = dir.0.join("copy.db");
    fs::copy(dir.db(), &copy).expect("copy");
    Store::open_writer(&copy, &Retention::default(), None)
        .expect("the header and marks look sound");

    let (mut store, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    let moved = moved_to(Some(note));
    assert_eq!(
        fs::read(&moved).expect("moved file"),
        damaged,
        "moved intact"
    );
    let fresh = store
        .query(&query(T0, T0 + 3_600_000, Dimension::App))
        .expect("query the fresh file");
    assert_eq!((fresh.rows.len(), fresh.total.rx_bytes), (0, 0));
    let b = wide(40);
    store.write(&b).expect("write to the fresh file");
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Process))
        .expect("query");
    let expected: i64 = b.traffic.iter().map(|t| t.rx_bytes as i64).sum();
    assert_eq!((r.rows.len(), r.total.rx_bytes as i64), (50, expected));
}

#[test]
fn a_write_that_finds_damage_moves_the_file_aside_and_writes_the_held_rows_anew() {
    let dir = TempDir::new("write-damage");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    for n in 0..30 {
        store.write(&wide(n)).expect("write");
    }
    // Everything into the file, then the file written over under the open connection, past
    // its first page, and the connection's cached pages let go.
    let _: (i64, i64, i64) = store
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("checkpoint");
    let damaged = damage_pages(&dir.db(), 1, usize::MAX);
    store.conn.release_memory().expect("release the page cache");

    let b = wide(40);
    store.write(&b).expect("the batch goes to a fresh file");
    let moved = moved_to(store.take_note());
    assert_eq!(
        fs::read(&moved).expect("moved file"),
        damaged,
        "moved intact"
    );
    assert_eq!(store.take_note(), None, "said once");
    assert_eq!((store.backlog_len(), store.last_error()), (0, None));
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Process))
        .expect("query");
    // The fresh file holds this batch alone: the 30 before it stay in the moved file.
    let expected: i64 = b.traffic.iter().map(|t| t.rx_bytes as i64).sum();
    assert_eq!((r.rows.len(), r.total.rx_bytes as i64), (50, expected));
    // And the next write goes to the fresh file as usual.
    store.write(&wide(41)).expect("write");
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Process))
        .expect("query");
    assert_eq!(r.rows.len(), 100);
}

#[test]
fn a_rollup_that_finds_damage_moves_the_file_aside_too() {
    let dir = TempDir::new("rollup-damage");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    for n in 0..30 {
        store.write(&wide(n)).expect("write");
    }
    let _: (i64, i64, i64) = store
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("checkpoint");
    let damaged = damage_pages(&dir.db(), 1, usize::MAX);
    store.conn.release_memory().expect("release the page cache");
    // A day later every minute written has closed: the rollup reads the damaged tables.
    let stats = store
        .maintain(T0 + 86_400_000)
        .expect("a fresh file after the damage");
    assert_eq!(stats, MaintainStats::default());
    let moved = moved_to(store.take_note());
    assert_eq!(
        fs::read(&moved).expect("moved file"),
        damaged,
        "moved intact"
    );
    let b = wide(40);
    store.write(&b).expect("write to the fresh file");
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Process))
        .expect("query");
    let expected: i64 = b.traffic.iter().map(|t| t.rx_bytes as i64).sum();
    assert_eq!((r.rows.len(), r.total.rx_bytes as i64), (50, expected));
}
