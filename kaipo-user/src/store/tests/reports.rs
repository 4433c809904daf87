//! What a report says about owners (users, containers, processes), where a long range ends,
//! and totals per calendar period.

use super::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn owned(
    app: &str,
    pid: u32,
    uid: u32,
    user: Option<&str>,
    container: Option<&str>,
    rx: u64,
) -> TrafficRow {
    TrafficRow {
        app: app.into(),
        pid,
        start_time: 100 + u64::from(pid),
        uid,
        user: user.map(str::to_owned),
        container: container.map(str::to_owned),
        remote: "10.0.0.1".into(),
        service: "https".into(),
        rx_bytes: rx,
        tx_bytes: rx / 10,
        rx_packets: rx / 100,
        tx_packets: 1,
        ..TrafficRow::default()
    }
}

/// What the engine writes for traffic of sockets without a known owner.
fn unattributed(rx: u64) -> TrafficRow {
    TrafficRow {
        app: UNATTRIBUTED_APP.into(),
        rx_bytes: rx,
        ..TrafficRow::default()
    }
}

fn owners_batch() -> IntervalBatch {
    batch(
        T0 + 60_000,
        60_000,
        vec![
            // A host process as an older engine wrote it: its cgroup path as the container.
            owned(
                "sshd",
                10,
                0,
                Some("root"),
                Some("/system.slice/ssh.service"),
                5000,
            ),
            owned("nginx", 20, 33, Some("www-data"), Some("4f2a9c"), 3000),
            owned("curl", 30, 1000, None, None, 1000),
            unattributed(700),
        ],
        vec![],
    )
}

fn keyed(r: &Report) -> Vec<(&str, u64)> {
    r.rows
        .iter()
        .map(|r| (r.key.as_str(), r.rx_bytes))
        .collect()
}

#[test]
fn unattributed_traffic_is_no_user_and_host_processes_no_container() {
    let dir = TempDir::new("owners");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    store.write(&owners_batch()).expect("write");
    let ask = |store: &mut Store, by| store.query(&query(T0, T0 + HOUR, by)).expect("query");
    assert_eq!(
        keyed(&ask(&mut store, Dimension::User)),
        [
            ("root", 5000),
            ("www-data", 3000),
            ("1000", 1000),
            (UNATTRIBUTED_APP, 700)
        ]
    );
    assert_eq!(
        keyed(&ask(&mut store, Dimension::Container)),
        [("", 5000 + 1000), ("4f2a9c", 3000), (UNATTRIBUTED_APP, 700)]
    );
    // A database an older writer filled holds the host's cgroup path as a container name:
    // it reads as the host all the same.
    store
        .conn
        .execute(
            "UPDATE container SET name = '/user.slice/user-0.slice' WHERE name = ''",
            [],
        )
        .expect("age the database");
    store.cache.clear();
    let r = ask(&mut store, Dimension::Container);
    assert_eq!(keyed(&r)[0], ("", 5000 + 1000));
    let r = ask(&mut store, Dimension::Process);
    assert_eq!(
        r.rows[0].process.as_ref().map(|p| &p.container),
        Some(&None)
    );
    assert_eq!(
        keyed(&ask(&mut store, Dimension::App)),
        [
            ("sshd", 5000),
            ("nginx", 3000),
            ("curl", 1000),
            (UNATTRIBUTED_APP, 700)
        ]
    );
}

#[test]
fn process_rows_carry_pid_name_user_and_container() {
    let dir = TempDir::new("process-fields");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    store.write(&owners_batch()).expect("write");
    let r = store
        .query(&query(T0, T0 + HOUR, Dimension::Process))
        .expect("query");
    let rows: Vec<(&str, Option<ProcessFields>)> = r
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.process.as_deref().cloned()))
        .collect();
    let fields = |pid, name: &str, user: &str, container: Option<&str>| {
        Some(ProcessFields {
            pid,
            name: name.into(),
            user: user.into(),
            container: container.map(str::to_owned),
            ..Default::default()
        })
    };
    assert_eq!(
        rows,
        [
            ("sshd[10]", fields(10, "sshd", "root", None)),
            ("nginx[20]", fields(20, "nginx", "www-data", Some("4f2a9c"))),
            ("curl[30]", fields(30, "curl", "1000", None)),
            (UNATTRIBUTED_APP, None),
        ]
    );
    // Other dimensions have no process fields.
    let r = store
        .query(&query(T0, T0 + HOUR, Dimension::App))
        .expect("query");
    assert!(r.rows.iter().all(|r| r.process.is_none()));
}

#[test]
fn a_long_range_that_ends_now_ends_now() {
    let dir = TempDir::new("long-range");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    // "Now" is 12:30:07 on the 401st day after T0; traffic on the first day and today.
    let now = T0 + 400 * DAY + 12 * HOUR + 30 * 60_000 + 7000;
    for ts in [T0 + 2 * HOUR, now - 2 * 60_000] {
        store
            .write(&batch(
                ts,
                60_000,
                vec![owned("a", 1, 0, None, None, 1000)],
                vec![],
            ))
            .expect("write");
    }
    let check = |store: &mut Store| {
        let r = store
            .query(&query(now - 400 * DAY, now, Dimension::App))
            .expect("query");
        assert_eq!(r.tier, Some(Tier::Day));
        // The start is widened to its day; the end stays at now, not tomorrow's midnight.
        assert_eq!((r.from_ms, r.to_ms), (T0, now), "{r:?}");
        assert_eq!(r.total.rx_bytes, 2000);
    };
    check(&mut store);
    // Rolled up into days (today's day still open): the same answer.
    store.maintain(now).expect("maintain");
    check(&mut store);
    // A range that ends in history the day tier holds completely is widened to whole days.
    let r = store
        .query(&query(T0 - 300 * DAY, T0 + 5 * HOUR, Dimension::App))
        .expect("query");
    assert_eq!((r.from_ms, r.to_ms), (T0 - 300 * DAY, T0 + DAY));
    assert_eq!(r.total.rx_bytes, 1000);
}

/// Day 1 (2023-11-14): a 1000 + b 10 at 10:00, a 5 at 23:59; day 2: b 7 at 00:00;
/// 2023-12-01 05:00: a 100.
fn period_batches() -> Vec<IntervalBatch> {
    let one = |ts: i64, rows: Vec<(&str, u32, u64)>| {
        batch(
            ts + 60_000,
            60_000,
            rows.into_iter()
                .map(|(app, pid, rx)| owned(app, pid, 0, Some("root"), None, rx))
                .collect(),
            vec![],
        )
    };
    vec![
        one(T0 + 10 * HOUR, vec![("a", 1, 1000), ("b", 2, 10)]),
        one(T0 + DAY - 60_000, vec![("a", 1, 5)]),
        one(T0 + DAY, vec![("b", 2, 7)]),
        one(T0 + 17 * DAY + 5 * HOUR, vec![("a", 1, 100)]),
    ]
}

fn per(from_ms: i64, to_ms: i64, period: Period, by_app: bool, top: usize) -> Query {
    Query {
        top,
        per: Some(Periods { period, by_app }),
        ..query(from_ms, to_ms, Dimension::App)
    }
}

type PeriodLine = (i64, i64, i64, Option<String>, u64, u64);

fn lines(r: &Report) -> Vec<PeriodLine> {
    r.periods
        .iter()
        .map(|p| {
            (
                p.period_ms,
                p.from_ms,
                p.to_ms,
                p.app.clone(),
                p.rx_bytes,
                p.tx_bytes,
            )
        })
        .collect()
}

#[test]
fn totals_per_day_month_and_hour_split_by_app() {
    let dir = TempDir::new("periods");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    for b in period_batches() {
        store.write(&b).expect("write");
    }
    let end = T0 + 20 * DAY + 3 * HOUR;
    let nov = T0 - 13 * DAY; // 2023-11-01
    let dec = T0 + 17 * DAY; // 2023-12-01
    let check = |store: &mut Store| {
        let days = store
            .query(&per(T0 + 6 * HOUR, end, Period::Day, false, 0))
            .expect("query");
        assert_eq!(
            days.per,
            Some(Periods {
                period: Period::Day,
                by_app: false
            })
        );
        assert_eq!(
            lines(&days),
            [
                // The first day is cut to the range.
                (T0, T0 + 6 * HOUR, T0 + DAY, None, 1015, 101),
                (T0 + DAY, T0 + DAY, T0 + 2 * DAY, None, 7, 0),
                (dec, dec, dec + DAY, None, 100, 10),
            ]
        );
        let months = store
            .query(&per(T0, end, Period::Month, false, 0))
            .expect("query");
        assert_eq!(
            lines(&months),
            [
                (nov, T0, dec, None, 1022, 101),
                (dec, dec, end, None, 100, 10),
            ]
        );
        // Split by app, one app per period: the rest of the period is "(others)".
        let apps = store
            .query(&per(T0, end, Period::Month, true, 1))
            .expect("query");
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            lines(&apps),
            [
                (nov, T0, dec, some("a"), 1005, 100),
                (nov, T0, dec, some("(others)"), 17, 1),
                (dec, dec, end, some("a"), 100, 10),
            ]
        );
        let all = store
            .query(&per(T0, end, Period::Month, true, 0))
            .expect("query");
        assert_eq!(all.periods.len(), 3, "{:?}", lines(&all));
        assert_eq!(all.periods[1].app, some("b"));
        let hours = store
            .query(&per(T0, T0 + 2 * DAY, Period::Hour, false, 0))
            .expect("query");
        assert_eq!(
            lines(&hours),
            [
                (
                    T0 + 10 * HOUR,
                    T0 + 10 * HOUR,
                    T0 + 11 * HOUR,
                    None,
                    1010,
                    101
                ),
                (T0 + 23 * HOUR, T0 + 23 * HOUR, T0 + DAY, None, 5, 0),
                (T0 + DAY, T0 + DAY, T0 + DAY + HOUR, None, 7, 0),
            ]
        );
    };
    check(&mut store);
    // From the rolled-up tiers: the same figures.
    store.maintain(end + DAY).expect("maintain");
    check(&mut store);
}

/// Container names, pods and units are stored with the process: reports group by them, a name
/// learnt in a later interval names the process's earlier traffic too, and a later row that
/// no longer knows a name does not erase it.
#[test]
fn reports_by_container_name_pod_and_unit() {
    let dir = TempDir::new("workload");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let named =
        |row: TrafficRow, name: Option<&str>, pod: Option<(&str, &str)>, unit: &str| TrafficRow {
            container_name: name.map(str::to_owned),
            pod: pod.map(|(_, p)| p.to_owned()),
            pod_namespace: pod.map(|(ns, _)| ns.to_owned()),
            unit: Some(unit.to_owned()),
            ..row
        };
    let web = |rx, name| {
        named(
            owned("nginx", 20, 33, Some("www-data"), Some("4f2a9c"), rx),
            name,
            Some(("shop", "checkout-7f9c")),
            "cri-containerd-4f2a9c.scope",
        )
    };
    let sshd = named(
        owned("sshd", 10, 0, Some("root"), None, 5000),
        None,
        None,
        "ssh.service",
    );
    // Interval 1: the runtime has not named the container yet.
    store
        .write(&batch(
            T0 + 60_000,
            60_000,
            vec![web(3000, None), sshd.clone()],
            vec![],
        ))
        .expect("write 1");
    // Interval 2: named. Interval 3: a row without names (as after a restart of the engine).
    store
        .write(&batch(
            T0 + 120_000,
            60_000,
            vec![web(2000, Some("web"))],
            vec![],
        ))
        .expect("write 2");
    let bare = owned("nginx", 20, 33, Some("www-data"), Some("4f2a9c"), 1000);
    store
        .write(&batch(
            T0 + 180_000,
            60_000,
            vec![bare, unattributed(700)],
            vec![],
        ))
        .expect("write 3");
    let ask = |store: &mut Store, by| store.query(&query(T0, T0 + HOUR, by)).expect("query");
    assert_eq!(
        keyed(&ask(&mut store, Dimension::Container)),
        [("web", 6000), ("", 5000), (UNATTRIBUTED_APP, 700)]
    );
    assert_eq!(
        keyed(&ask(&mut store, Dimension::Pod)),
        [
            ("shop/checkout-7f9c", 6000),
            ("", 5000),
            (UNATTRIBUTED_APP, 700)
        ]
    );
    assert_eq!(
        keyed(&ask(&mut store, Dimension::Unit)),
        [
            ("cri-containerd-4f2a9c.scope", 6000),
            ("ssh.service", 5000),
            (UNATTRIBUTED_APP, 700)
        ]
    );
    let r = ask(&mut store, Dimension::Process);
    let nginx = r.rows[0].process.as_deref().expect("fields");
    assert_eq!(
        (
            nginx.container_name.as_deref(),
            nginx.pod.as_deref(),
            nginx.pod_namespace.as_deref(),
            nginx.unit.as_deref()
        ),
        (
            Some("web"),
            Some("checkout-7f9c"),
            Some("shop"),
            Some("cri-containerd-4f2a9c.scope")
        )
    );
    // The names are in the file: a fresh store (no in-memory ids) reads the same.
    drop(store);
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("reopen");
    assert_eq!(
        keyed(&ask(&mut store, Dimension::Container))[0],
        ("web", 6000)
    );
}

/// By network: remotes grouped under the reader's names (longest prefix first), the rest
/// under the empty key; renaming a network renames its history at the next question.
#[test]
fn reports_by_the_readers_networks() {
    let dir = TempDir::new("networks");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let to = |remote: &str, rx| TrafficRow {
        remote: remote.into(),
        ..owned("curl", 30, 1000, None, None, rx)
    };
    let rows = vec![
        to("10.20.1.1", 1000),
        to("10.20.2.2", 2000),
        to("10.20.5.5", 400),
        to("192.0.2.1", 300),
        to("", 50),
    ];
    store
        .write(&batch(T0 + 60_000, 60_000, rows, vec![]))
        .expect("write");
    let names = |networks: &[(&str, &str)]| {
        std::sync::Arc::new(
            crate::config::names::UserNames::from_config(&crate::config::names::NamesConfig {
                networks: networks
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            })
            .expect("names"),
        )
    };
    store.set_names(names(&[
        ("10.20.0.0/16", "office"),
        ("10.20.5.0/24", "lab"),
    ]));
    let ask = |store: &mut Store| {
        store
            .query(&query(T0, T0 + HOUR, Dimension::Network))
            .expect("query")
    };
    assert_eq!(
        keyed(&ask(&mut store)),
        [("office", 3000), ("lab", 400), ("", 350)]
    );
    store.set_names(names(&[("10.20.0.0/16", "hq")]));
    assert_eq!(keyed(&ask(&mut store)), [("hq", 3400), ("", 350)]);
}

/// By remote: the name an address was last looked up by stands beside it, also for traffic
/// stored before the name was learnt; addresses never named have none.
#[test]
fn remotes_carry_their_last_looked_up_name() {
    let dir = TempDir::new("remote-names");
    let (mut store, _) = Store::open(dir.db(), &Retention::default()).expect("open");
    let to = |remote: &str, name: Option<&str>, rx| TrafficRow {
        remote: remote.into(),
        remote_name: name.map(str::to_owned),
        ..owned("curl", 30, 1000, None, None, rx)
    };
    store
        .write(&batch(
            T0 + 60_000,
            60_000,
            vec![to("192.0.2.7", None, 1000), to("192.0.2.9", None, 10)],
            vec![],
        ))
        .expect("write 1");
    store
        .write(&batch(
            T0 + 120_000,
            60_000,
            vec![to("192.0.2.7", Some("api.example.com"), 500)],
            vec![],
        ))
        .expect("write 2");
    let r = store
        .query(&query(T0, T0 + HOUR, Dimension::Remote))
        .expect("query");
    let rows: Vec<(&str, Option<&str>, u64)> = r
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.name.as_deref(), r.rx_bytes))
        .collect();
    assert_eq!(
        rows,
        [
            ("192.0.2.7", Some("api.example.com"), 1500),
            ("192.0.2.9", None, 10)
        ]
    );
    assert_eq!(r.top_remotes[0].name.as_deref(), Some("api.example.com"));
}
