//! Minute sums kept in memory by the writer and written ahead of the minute's closing: each
//! row counts once in the minute tier, whether the sums were written in slices, lost with the
//! process, or dropped at their bound.

use super::*;

const MINUTE: i64 = 60_000;

/// `keys` sockets (a process per 100), with figures that differ per interval `n`.
fn busy(ts_ms: i64, interval_ms: u32, keys: u32, n: u64) -> IntervalBatch {
    let rows = (0..keys)
        .map(|i| {
            let remote = format!("10.{}.{}.{}", n, i / 250, i % 250);
            let rx = 1 + u64::from(i) * 3 + n * 1000;
            traffic("app", 100 + i / 100, 1000, &remote, "https", rx, rx / 2 + 7)
        })
        .collect();
    batch(ts_ms, interval_ms, rows, vec![iface("eth0", 10 + n, 20)])
}

fn minute_rows(store: &Store) -> i64 {
    store
        .conn
        .query_row("SELECT count(*) FROM traffic_minute", [], |r| r.get(0))
        .expect("count")
}

/// Every dimension of the first minute, read from the minute tier (or, for what it does not
/// hold yet, the interval tier), is exactly what was written.
fn assert_exact(store: &mut Store, written: &[IntervalBatch]) {
    let mut want = Expected::default();
    written.iter().for_each(|b| want.add_batch(b));
    for by in [Dimension::Remote, Dimension::Process, Dimension::Interface] {
        let r = store
            .query_tier(&query(T0, T0 + MINUTE, by), Tier::Minute)
            .expect("query");
        assert_eq!(rows_of(&r), want.rows(by), "{by:?}");
    }
}

#[test]
fn sums_written_ahead_count_once_even_when_the_writer_restarts() {
    let dir = TempDir::new("ahead");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    // Six 10 s intervals of 5000 sockets, all in the first minute (the same sockets, so 5000
    // keys); the first maintain only rolls up the empty minute before.
    let batches: Vec<_> = (1..=6)
        .map(|i| busy(T0 + i * 10_000, 10_000, 5000, 0))
        .collect();
    for b in &batches {
        store.write(b).expect("write");
        if b.ts_ms < T0 + MINUTE {
            store.maintain(b.ts_ms).expect("maintain");
        }
    }
    assert_eq!(minute_rows(&store), 0, "the minute has not ended");
    // Ended, not closed (that takes the 10 s interval and 1 s more): one slice goes ahead.
    let slice = store.maintain(T0 + MINUTE + 5_000).expect("maintain");
    assert_eq!(slice, MaintainStats::default());
    assert_eq!(minute_rows(&store) as usize, SLICE_ROWS);
    assert_exact(&mut store, &batches);

    // The writer goes away with the rest of the sums in memory; the new one rolls the minute
    // up from the interval tier, without the slice the old one wrote.
    drop(store);
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("reopen");
    let closed = store.maintain(T0 + 2 * MINUTE).expect("maintain");
    assert_eq!(closed.closed_until_ms, Some(T0 + MINUTE));
    // 5000 traffic rows, one user total, one interface.
    assert_eq!(closed.rows_rolled_up, 5002);
    assert_eq!(minute_rows(&store), 5000);
    assert_exact(&mut store, &batches);
}

#[test]
fn slices_then_the_closing_write_every_key_once() {
    let dir = TempDir::new("slices");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let mut batches: Vec<_> = (1..=6)
        .map(|i| busy(T0 + i * 10_000, 10_000, 5000, 0))
        .collect();
    for b in &batches {
        store.write(b).expect("write");
        store.maintain(b.ts_ms).expect("maintain");
    }
    store.maintain(T0 + MINUTE + 2_000).expect("slice");
    // A late interval of the first minute, after part of it went ahead: 3000 keys already
    // written (now added to) and 1000 new ones.
    let late = busy(T0 + MINUTE, 1_000, 4000, 0);
    store.write(&late).expect("write");
    batches.push(late);
    store.maintain(T0 + MINUTE + 4_000).expect("slice");
    let closed = store.maintain(T0 + MINUTE + 11_000).expect("close");
    assert_eq!(closed.closed_until_ms, Some(T0 + MINUTE));
    // 5000 keys and the first 4000 again (a slice each time), plus user total and interface.
    assert_eq!(closed.rows_rolled_up, 5000 + 4000 + 2);
    assert_eq!(minute_rows(&store), 5000);
    assert_exact(&mut store, &batches);
}

#[test]
fn sums_dropped_at_their_bound_leave_the_minute_to_sql() {
    let dir = TempDir::new("bound");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    store.minutes.set_max_keys(100);
    let mut batches: Vec<_> = (1..=6)
        .map(|i| busy(T0 + i * 10_000, 10_000, 80, 0))
        .collect();
    for b in &batches {
        store.write(b).expect("write");
        store.maintain(b.ts_ms).expect("maintain");
    }
    store.maintain(T0 + MINUTE + 5_000).expect("slice");
    assert_eq!(minute_rows(&store), 80, "all 80 keys went ahead");
    // 200 more keys in the same minute: past the bound, so the sums are dropped and the
    // minute is rolled up from the interval tier, without the rows that went ahead.
    let late = busy(T0 + MINUTE, 2_000, 200, 1);
    store.write(&late).expect("write");
    batches.push(late);
    assert_eq!(store.minutes.sql_until(), T0 / MINUTE + 1);
    let closed = store.maintain(T0 + 2 * MINUTE).expect("close");
    assert_eq!(closed.closed_until_ms, Some(T0 + MINUTE));
    assert_eq!(closed.rows_rolled_up, 280 + 2);
    assert_eq!(minute_rows(&store), 280);
    assert_exact(&mut store, &batches);
}
