//! Rollups are exact in every tier; retention drops only what a coarser tier holds.

use std::time::Duration;

use super::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// xorshift64*: irregular but reproducible figures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Batches of irregular length (3 s to 2 min) and content from `start_ms` until `end_ms`.
fn synthetic(seed: u64, start_ms: i64, end_ms: i64) -> Vec<IntervalBatch> {
    const APPS: [&str; 6] = ["nginx", "curl", "postgres", "sshd", "dig", UNATTRIBUTED_APP];
    const REMOTES: [&str; 5] = ["10.0.0.1", "10.0.0.2", "2001:db8::7", "192.0.2.55", ""];
    const SERVICES: [&str; 4] = ["https", "dns", "tcp/8080", "ssh"];
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut ts = start_ms;
    loop {
        let interval = 3_000 + rng.below(117_000) as u32;
        ts += i64::from(interval);
        if ts > end_ms {
            return out;
        }
        let mut rows = Vec::new();
        for _ in 0..rng.below(6) {
            let a = rng.below(APPS.len() as u64) as usize;
            let pid = a as u32 * 10 + rng.below(3) as u32;
            // Magnitudes from single bytes to gigabytes, zero now and then.
            let mag = |rng: &mut Rng| {
                let digits = rng.below(10) as u32;
                rng.below(10u64.pow(digits))
            };
            let (rx, tx) = (mag(&mut rng), mag(&mut rng));
            let remote = REMOTES[rng.below(5) as usize];
            let service = SERVICES[rng.below(4) as usize];
            rows.push(traffic(
                APPS[a],
                pid,
                [0, 33, 1000][pid as usize % 3],
                remote,
                service,
                rx,
                tx,
            ));
        }
        let mut ifaces = vec![iface("eth0", rng.below(1 << 30), rng.below(1 << 20))];
        if rng.below(3) == 0 {
            ifaces.push(iface("wg0", rng.below(5000), rng.below(5000)));
        }
        out.push(batch(ts, interval, rows, ifaces));
    }
}

/// Long enough that nothing in these tests expires.
fn keep_all() -> Retention {
    Retention {
        interval: Duration::from_secs(3650 * 86_400),
        ..Retention::default()
    }
}

fn start_ms(b: &IntervalBatch) -> i64 {
    b.ts_ms - i64::from(b.interval_ms)
}

/// Expected rows of the batches that started in `from..to`.
fn expected_in(batches: &[IntervalBatch], from: i64, to: i64) -> Expected {
    let mut e = Expected::default();
    for b in batches.iter().filter(|b| (from..to).contains(&start_ms(b))) {
        e.add_batch(b);
    }
    e
}

fn assert_tiers_agree(
    store: &mut Store,
    batches: &[IntervalBatch],
    from: i64,
    to: i64,
    tiers: &[Tier],
) {
    let expected = expected_in(batches, from, to);
    for by in ALL_DIMENSIONS {
        let want = expected.rows(by);
        assert!(!want.is_empty(), "{by:?}: the test needs data");
        for &tier in tiers {
            let r = store.query_tier(&query(from, to, by), tier).expect("query");
            assert_eq!(r.tier, Some(tier));
            assert_eq!((r.from_ms, r.to_ms), (from, to), "range is aligned already");
            assert_eq!(
                rows_of(&r),
                want,
                "{by:?} from the {tier:?} tier over {from}..{to}"
            );
            let series_rx: u64 = r.series.iter().map(|p| p.rx_bytes).sum();
            assert_eq!(series_rx, r.total.rx_bytes, "{by:?} series, {tier:?} tier");
        }
    }
}

#[test]
fn every_tier_gives_identical_totals_across_boundaries() {
    let dir = TempDir::new("tiers");
    let (mut store, _) = Store::open(dir.db(), &keep_all()).expect("open");
    // From 22:00 the day before T0 to 05:00 three days later: minute, hour and day boundaries.
    let (begin, end) = (T0 - 2 * HOUR, T0 + 3 * DAY + 5 * HOUR);
    let batches = synthetic(0x9e37_79b9_7f4a_7c15, begin, end);
    for (i, b) in batches.iter().enumerate() {
        store.write(b).expect("write");
        store.maintain(b.ts_ms).expect("maintain");
        if i % 997 == 0 {
            // Mid-stream, the newest part is only in finer tiers: the answer stitches them.
            let want = expected_in(&batches[..=i], begin, end + DAY);
            let r = store
                .query(&query(begin, end, Dimension::App))
                .expect("query");
            assert_eq!(rows_of(&r), want.rows(Dimension::App), "after batch {i}");
        }
    }
    store.maintain(end + 2 * DAY).expect("maintain");
    let all = [Tier::Interval, Tier::Minute, Tier::Hour, Tier::Day];
    // Whole days around everything written.
    assert_tiers_agree(&mut store, &batches, T0 - DAY, T0 + 4 * DAY, &all);
    // Whole hours across midnight, and whole minutes inside an hour.
    let (h0, h1) = (T0 + 5 * HOUR, T0 + DAY + 7 * HOUR);
    assert_tiers_agree(&mut store, &batches, h0, h1, &all[..3]);
    let (m0, m1) = (T0 + 30 * HOUR + 17 * 60_000, T0 + 32 * HOUR + 3 * 60_000);
    assert_tiers_agree(&mut store, &batches, m0, m1, &all[..2]);
    // The tier-picking path agrees as well.
    let expected = expected_in(&batches, T0 - DAY, T0 + 4 * DAY);
    let r = store
        .query(&query(T0 - DAY, T0 + 4 * DAY, Dimension::Remote))
        .expect("query");
    assert_eq!(r.tier, Some(Tier::Hour));
    assert_eq!(rows_of(&r), expected.rows(Dimension::Remote));
}

#[test]
fn rows_arriving_after_rollup_reach_every_tier() {
    let dir = TempDir::new("late");
    let (mut store, _) = Store::open(dir.db(), &keep_all()).expect("open");
    let mut batches = synthetic(7, T0, T0 + 26 * HOUR);
    for b in &batches {
        store.write(b).expect("write");
    }
    store.maintain(T0 + 3 * DAY).expect("maintain");
    // Held rows written after an outage, or a clock that went back: minute, hour and day of
    // these are all closed already.
    let late = vec![
        batch(
            T0 + 10 * HOUR + 30_000,
            20_000,
            vec![traffic(
                "late-app",
                9,
                33,
                "203.0.113.1",
                "dns",
                12_345,
                678,
            )],
            vec![iface("late0", 5, 6)],
        ),
        batch(
            T0 + 10 * HOUR + 31_000,
            1_000,
            vec![traffic("nginx", 0, 0, "10.0.0.1", "https", 1, 1)],
            vec![iface("eth0", 1, 1)],
        ),
    ];
    for b in &late {
        store.write(b).expect("write");
    }
    batches.extend(late);
    let all = [Tier::Interval, Tier::Minute, Tier::Hour, Tier::Day];
    assert_tiers_agree(&mut store, &batches, T0, T0 + 2 * DAY, &all);
}

/// Traffic rows in `table`; the interval tier's are packed, `rows` to a blob.
fn count(store: &Store, table: &str) -> i64 {
    let sql = if table == "traffic_interval" {
        "SELECT coalesce(sum(rows), 0) FROM traffic_interval".to_owned()
    } else {
        format!("SELECT count(*) FROM {table}")
    };
    store.conn.query_row(&sql, [], |r| r.get(0)).expect("count")
}

#[test]
fn retention_drops_expired_rows_but_coarser_tiers_keep_the_totals() {
    let dir = TempDir::new("retention");
    let retention = Retention {
        day: Some(Duration::from_secs(1000 * 86_400)),
        ..Retention::default()
    };
    let (mut store, _) = Store::open(dir.db(), &retention).expect("open");
    let batches = synthetic(42, T0, T0 + 2 * HOUR);
    for b in &batches {
        store.write(b).expect("write");
    }
    let interval_rows = ["traffic_interval", "iface_interval", "totals_interval"]
        .map(|t| count(&store, t))
        .iter()
        .sum::<i64>();
    let now = T0 + 2 * HOUR + 5 * 60_000;
    let first = store.maintain(now).expect("maintain");
    let grace = batches
        .iter()
        .map(|b| i64::from(b.interval_ms))
        .max()
        .unwrap_or(0)
        + 1000;
    assert_eq!(
        first.closed_until_ms,
        Some((now - grace).div_euclid(60_000) * 60_000)
    );
    assert_eq!(first.rows_expired, 0);
    assert!(first.rows_rolled_up > 0);

    let q = query(T0, T0 + 2 * HOUR, Dimension::App);
    let want = expected_in(&batches, T0, T0 + 2 * HOUR).rows(Dimension::App);
    let steps = [
        (2 * DAY, Tier::Minute, "traffic_interval"),
        (40 * DAY, Tier::Hour, "traffic_minute"),
        (400 * DAY, Tier::Day, "traffic_hour"),
    ];
    for (i, (after, tier, emptied)) in steps.into_iter().enumerate() {
        let stats = store.maintain(T0 + after).expect("maintain");
        if i == 0 {
            assert_eq!(stats.rows_expired, interval_rows as u64);
        }
        assert_eq!(count(&store, emptied), 0, "{emptied} after {after} ms");
        let r = store.query(&q).expect("query");
        assert_eq!(r.tier, Some(tier), "two hours, {after} ms later");
        assert_eq!(rows_of(&r), want, "{tier:?}");
    }
    assert!(count(&store, "traffic_day") > 0);
    store.maintain(T0 + 1200 * DAY).expect("maintain");
    for table in ["traffic_day", "iface_day", "totals_day"] {
        assert_eq!(count(&store, table), 0, "{table}");
    }
    assert!(store.query(&q).expect("query").rows.is_empty());
}

#[test]
fn tier_follows_the_span_of_the_range() {
    let dir = TempDir::new("span");
    let (mut store, _) = Store::open(dir.db(), &keep_all()).expect("open");
    store
        .write(&batch(
            T0 + 60_000,
            60_000,
            vec![traffic("a", 1, 0, "", "", 1, 1)],
            vec![],
        ))
        .expect("write");
    for (span, tier) in [
        (2 * HOUR, Tier::Interval),
        (2 * HOUR + 1, Tier::Minute),
        (3 * DAY, Tier::Minute),
        (30 * DAY, Tier::Hour),
        (90 * DAY, Tier::Hour),
        (91 * DAY, Tier::Day),
    ] {
        let r = store
            .query(&query(T0, T0 + span, Dimension::App))
            .expect("query");
        assert_eq!(r.tier, Some(tier), "span {span} ms");
        assert_eq!(r.total.rx_bytes, 1, "span {span} ms");
    }
    // A range inside a minute starts at the minute's start in the minute tier; it ends where
    // it was asked to (to the second), since that minute is not rolled up yet and the
    // interval tier holds it exactly.
    let r = store
        .query_tier(&query(T0 + 1234, T0 + 5678, Dimension::App), Tier::Minute)
        .expect("query");
    assert_eq!((r.from_ms, r.to_ms), (T0, T0 + 6000));
    // Once rolled up, the minute tier holds the whole minute, and the end is widened to it.
    store.maintain(T0 + 10 * 60_000).expect("maintain");
    let r = store
        .query_tier(&query(T0 + 1234, T0 + 5678, Dimension::App), Tier::Minute)
        .expect("query");
    assert_eq!((r.from_ms, r.to_ms), (T0, T0 + 60_000));
}

#[test]
fn maintain_does_nothing_until_a_minute_closes() {
    let dir = TempDir::new("idle");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    store
        .write(&batch(
            T0 + 10_000,
            10_000,
            vec![traffic("a", 1, 0, "", "", 1, 1)],
            vec![],
        ))
        .expect("write");
    let first = store.maintain(T0 + 10_000).expect("maintain");
    // A minute closes once the longest interval (10 s) and the slack (1 s) have passed.
    assert_eq!(first.closed_until_ms, Some(T0 - 60_000));
    assert_eq!(
        store.maintain(T0 + 10_999).expect("maintain"),
        MaintainStats::default()
    );
    let empty = store.maintain(T0 + 11_000).expect("maintain");
    assert_eq!((empty.closed_until_ms, empty.rows_rolled_up), (Some(T0), 0));
    assert_eq!(
        store.maintain(T0 + 70_999).expect("maintain"),
        MaintainStats::default()
    );
    let closed = store.maintain(T0 + 71_000).expect("maintain");
    assert_eq!(closed.closed_until_ms, Some(T0 + 60_000));
    assert_eq!(closed.rows_rolled_up, 2, "the row and its user's total");
}
