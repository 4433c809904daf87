//! Store tests. Each compares exact figures with totals the test computes itself from what it
//! wrote, so a store that loses, doubles or misplaces a byte fails.

mod crash;
mod damage;
#[cfg(target_os = "linux")]
mod encryption;
mod files;
mod full;
mod minutes;
mod reports;
mod rollup;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use super::*;

/// 2023-11-14 00:00:00 UTC: a day, hour and minute boundary.
pub(super) const T0: i64 = 1_699_920_000_000;

/// A directory under the system temp dir, removed with everything in it on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "kaipo-store-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("history.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn traffic(
    app: &str,
    pid: u32,
    uid: u32,
    remote: &str,
    service: &str,
    rx: u64,
    tx: u64,
) -> TrafficRow {
    TrafficRow {
        app: app.to_owned(),
        pid,
        start_time: u64::from(pid) * 7,
        cmdline: format!("/usr/bin/{app} --serve"),
        uid,
        user: (uid != 7).then(|| format!("user{uid}")),
        container: pid.is_multiple_of(2).then(|| format!("ctr-{}", pid % 3)),
        container_name: None,
        pod: None,
        pod_namespace: None,
        unit: None,
        remote: remote.to_owned(),
        remote_name: None,
        service: service.to_owned(),
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: rx / 1000 + 1,
        tx_packets: tx / 1000 + 2,
    }
}

pub(super) fn iface(name: &str, rx: u64, tx: u64) -> IfaceRow {
    IfaceRow {
        name: name.to_owned(),
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: rx / 500,
        tx_packets: tx / 500,
    }
}

pub(super) fn batch(
    ts_ms: i64,
    interval_ms: u32,
    traffic: Vec<TrafficRow>,
    interfaces: Vec<IfaceRow>,
) -> IntervalBatch {
    IntervalBatch {
        ts_ms,
        interval_ms,
        traffic,
        interfaces,
    }
}

pub(super) fn query(from_ms: i64, to_ms: i64, by: Dimension) -> Query {
    Query {
        from_ms,
        to_ms,
        by,
        top: 0,
        uid: None,
        per: None,
    }
}

/// What the test expects per dimension: key → [rx bytes, tx bytes, rx packets, tx packets].
#[derive(Default)]
pub(super) struct Expected(pub HashMap<(Dimension, String), [u64; 4]>);

impl Expected {
    pub fn add_batch(&mut self, b: &IntervalBatch) {
        for r in &b.traffic {
            let c = [r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets];
            let user = r.user.clone().unwrap_or_else(|| r.uid.to_string());
            // Traffic without an owner is its own row in every dimension about owners.
            let owned = |key: String| {
                if r.pid == 0 && r.app == UNATTRIBUTED_APP {
                    UNATTRIBUTED_APP.to_owned()
                } else {
                    key
                }
            };
            for (dim, key) in [
                (Dimension::App, r.app.clone()),
                (Dimension::Process, owned(format!("{}[{}]", r.app, r.pid))),
                (Dimension::User, owned(user)),
                (
                    Dimension::Container,
                    owned(r.container.clone().unwrap_or_default()),
                ),
                (Dimension::Remote, r.remote.clone()),
                (Dimension::Service, r.service.clone()),
            ] {
                self.add(dim, key, c);
            }
        }
        for r in &b.interfaces {
            let c = [r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets];
            self.add(Dimension::Interface, r.name.clone(), c);
        }
    }

    fn add(&mut self, dim: Dimension, key: String, c: [u64; 4]) {
        let sum = self.0.entry((dim, key)).or_default();
        for (s, v) in sum.iter_mut().zip(c) {
            *s += v;
        }
    }

    /// The rows of one dimension, sorted by key.
    pub fn rows(&self, dim: Dimension) -> Vec<(String, [u64; 4])> {
        let mut rows: Vec<_> = self
            .0
            .iter()
            .filter(|((d, _), _)| *d == dim)
            .map(|((_, k), c)| (k.clone(), *c))
            .collect();
        rows.sort();
        rows
    }
}

/// A report's rows as (key, counters), sorted by key.
pub(super) fn rows_of(r: &Report) -> Vec<(String, [u64; 4])> {
    let mut rows: Vec<_> = r
        .rows
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                [r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets],
            )
        })
        .collect();
    rows.sort();
    rows
}

pub(super) const ALL_DIMENSIONS: [Dimension; 7] = [
    Dimension::App,
    Dimension::Process,
    Dimension::User,
    Dimension::Container,
    Dimension::Remote,
    Dimension::Service,
    Dimension::Interface,
];

pub(super) fn three_batches() -> Vec<IntervalBatch> {
    vec![
        batch(
            T0 + 60_000,
            60_000,
            vec![
                traffic("nginx", 100, 33, "10.0.0.1", "https", 5000, 70_000),
                traffic("nginx", 100, 33, "10.0.0.2", "https", 3000, 10_000),
                traffic("curl", 201, 1000, "2001:db8::1", "http", 900, 100),
            ],
            vec![iface("eth0", 9000, 81_000)],
        ),
        batch(
            T0 + 120_000,
            60_000,
            vec![
                traffic("nginx", 100, 33, "10.0.0.1", "https", 1, 2),
                traffic("sshd", 7, 7, "10.0.0.9", "ssh", 40, 50),
            ],
            vec![iface("eth0", 41, 52), iface("wg0", 10, 20)],
        ),
        batch(
            T0 + 150_000,
            30_000,
            vec![traffic(UNATTRIBUTED_APP, 0, 0, "", "udp/5353", 77, 0)],
            vec![],
        ),
    ]
}

#[test]
fn write_then_query_gives_exact_rows_per_dimension() {
    let dir = TempDir::new("basic");
    let (mut store, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    assert_eq!(note, OpenNote::Created);
    let mut expected = Expected::default();
    for b in three_batches() {
        store.write(&b).expect("write");
        expected.add_batch(&b);
    }
    for by in ALL_DIMENSIONS {
        let r = store.query(&query(T0, T0 + 3_600_000, by)).expect("query");
        assert_eq!(rows_of(&r), expected.rows(by), "{by:?}");
        assert_eq!(r.tier, Some(Tier::Interval));
        let sum =
            |f: fn(&[u64; 4]) -> u64| expected.rows(by).iter().map(|(_, c)| f(c)).sum::<u64>();
        assert_eq!(r.total.rx_bytes, sum(|c| c[0]), "{by:?}");
        assert_eq!(r.total.tx_packets, sum(|c| c[3]), "{by:?}");
    }
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::App))
        .expect("query");
    // Batches are stamped with their start: 00:00:00, 00:01:00 and 00:02:00.
    let series: Vec<(i64, u64, u64)> = r
        .series
        .iter()
        .map(|p| (p.ts_ms, p.rx_bytes, p.tx_bytes))
        .collect();
    assert_eq!(
        series,
        vec![
            (T0, 8900, 80_100),
            (T0 + 60_000, 41, 52),
            (T0 + 120_000, 77, 0)
        ]
    );
    assert_eq!(r.top_apps[0].key, "nginx");
    assert_eq!(r.top_apps[0].tx_bytes, 80_002);
    assert_eq!(r.top_remotes[0].key, "10.0.0.1");
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Interface))
        .expect("query");
    assert_eq!(
        r.series.iter().map(|p| p.rx_bytes).collect::<Vec<_>>(),
        vec![9000, 51]
    );
}

#[test]
fn uid_filter_keeps_only_that_users_processes_and_no_interfaces() {
    let dir = TempDir::new("uid");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    for b in three_batches() {
        store.write(&b).expect("write");
    }
    let mut q = query(T0, T0 + 3_600_000, Dimension::App);
    q.uid = Some(33);
    let r = store.query(&q).expect("query");
    assert_eq!(
        rows_of(&r),
        vec![("nginx".to_owned(), [8001, 80_002, 6 + 4 + 1, 72 + 12 + 2])]
    );
    assert_eq!(r.total.rx_bytes, 8001);
    assert_eq!(r.top_remotes.len(), 2);
    assert_eq!(r.series.iter().map(|p| p.rx_bytes).sum::<u64>(), 8001);
    q.by = Dimension::Interface;
    let r = store.query(&q).expect("query");
    assert!(r.rows.is_empty() && r.series.is_empty(), "{r:?}");
    assert_eq!(r.total.rx_bytes, 0);
    assert_eq!(r.top_apps.len(), 1, "apps of the user are still charted");
}

#[test]
fn top_limits_rows_but_total_counts_all() {
    let dir = TempDir::new("top");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    for b in three_batches() {
        store.write(&b).expect("write");
    }
    let mut q = query(T0, T0 + 3_600_000, Dimension::Remote);
    q.top = 2;
    let r = store.query(&q).expect("query");
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(r.total.rx_bytes, 5001 + 3000 + 900 + 40 + 77);
}

#[test]
fn repeated_query_comes_from_cache_until_a_write() {
    let dir = TempDir::new("cache");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let batches = three_batches();
    store.write(&batches[0]).expect("write");
    let q = query(T0, T0 + 3_600_000, Dimension::App);
    let first = store.query(&q).expect("query");
    let again = store.query(&q).expect("query");
    assert_eq!(first, again);
    assert_eq!(store.cache.hits, 1);
    store.write(&batches[1]).expect("write");
    let after = store.query(&q).expect("query");
    assert_eq!(store.cache.hits, 1, "a write empties the cache");
    assert_eq!(after.total.rx_bytes, first.total.rx_bytes + 41);
}

#[test]
fn bad_input_is_an_error_and_nothing_is_held() {
    let dir = TempDir::new("invalid");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let mut big = traffic("x", 1, 0, "", "", 0, 0);
    big.rx_bytes = u64::MAX;
    let mut old = traffic("x", 1, 0, "", "", 0, 0);
    old.start_time = u64::MAX;
    for b in [
        batch(-5, 1000, vec![], vec![]),
        batch(i64::MIN, 1000, vec![], vec![]),
        batch(500, 1000, vec![], vec![]),
        batch(i64::MAX, 0, vec![], vec![]),
        batch(T0, 1000, vec![big], vec![]),
        batch(T0, 1000, vec![old], vec![]),
    ] {
        assert!(
            matches!(store.write(&b), Err(StoreError::InvalidBatch(_))),
            "{b:?}"
        );
    }
    assert_eq!(store.backlog_len(), 0);
    assert!(matches!(
        store.query(&query(T0, T0, Dimension::App)),
        Err(StoreError::InvalidQuery(_))
    ));
    let r = store
        .query(&query(i64::MIN, i64::MAX, Dimension::Process))
        .expect("query");
    assert!(r.rows.is_empty());
}

#[test]
fn rows_with_one_key_in_one_batch_add_up() {
    let dir = TempDir::new("dup");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let row = traffic("dig", 5, 0, "9.9.9.9", "dns", 100, 60);
    store
        .write(&batch(
            T0 + 1000,
            1000,
            vec![row.clone(), row.clone(), row],
            vec![],
        ))
        .expect("write");
    let r = store
        .query(&query(T0, T0 + 60_000, Dimension::Service))
        .expect("query");
    assert_eq!(rows_of(&r), vec![("dns".to_owned(), [300, 180, 3, 6])]);
}

#[test]
fn reader_sees_commits_while_the_writer_runs_and_cannot_write() {
    let dir = TempDir::new("reader");
    let (mut writer, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let batches = three_batches();
    writer.write(&batches[0]).expect("write");
    let mut reader = Store::open_read_only(dir.db()).expect("open read-only");
    let q = query(T0, T0 + 3_600_000, Dimension::App);
    assert_eq!(reader.query(&q).expect("query").total.rx_bytes, 8900);
    writer.write(&batches[1]).expect("write");
    writer.maintain(T0 + 3 * 3_600_000).expect("maintain");
    // Another connection's commit changes data_version, which empties the reader's cache.
    assert_eq!(reader.query(&q).expect("query").total.rx_bytes, 8941);
    assert!(matches!(
        reader.write(&batches[2]),
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(matches!(
        reader.maintain(T0),
        Err(StoreError::ReadOnly { .. })
    ));
}
