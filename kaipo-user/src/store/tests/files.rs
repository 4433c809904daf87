//! The file: its creation, upgrades from older layouts, and what happens to a file that is
//! damaged or not kaipo's.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use rusqlite::Connection;

use super::*;
use crate::store::schema::{self, APPLICATION_ID};

/// Version 1 as a kaipo of that layout would have written it: no services.
const V1_LAYOUT: &str = "
CREATE TABLE app (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE user (id INTEGER PRIMARY KEY, uid INTEGER NOT NULL, name TEXT NOT NULL,
    UNIQUE (uid, name));
CREATE TABLE container (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE process (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, start_time INTEGER NOT NULL,
    app_id INTEGER NOT NULL REFERENCES app (id), user_id INTEGER NOT NULL REFERENCES user (id),
    container_id INTEGER NOT NULL REFERENCES container (id), cmdline TEXT NOT NULL,
    UNIQUE (pid, start_time, app_id, user_id, container_id));
CREATE TABLE iface (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE remote (id INTEGER PRIMARY KEY, addr TEXT NOT NULL UNIQUE);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE traffic_interval (ts INTEGER NOT NULL, process_id INTEGER NOT NULL, remote_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, process_id, remote_id)) WITHOUT ROWID;
CREATE TABLE traffic_minute (ts INTEGER NOT NULL, process_id INTEGER NOT NULL, remote_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, process_id, remote_id)) WITHOUT ROWID;
CREATE TABLE traffic_hour (ts INTEGER NOT NULL, process_id INTEGER NOT NULL, remote_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, process_id, remote_id)) WITHOUT ROWID;
CREATE TABLE traffic_day (ts INTEGER NOT NULL, process_id INTEGER NOT NULL, remote_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, process_id, remote_id)) WITHOUT ROWID;
CREATE TABLE iface_interval (ts INTEGER NOT NULL, iface_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, iface_id)) WITHOUT ROWID;
CREATE TABLE iface_minute (ts INTEGER NOT NULL, iface_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, iface_id)) WITHOUT ROWID;
CREATE TABLE iface_hour (ts INTEGER NOT NULL, iface_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, iface_id)) WITHOUT ROWID;
CREATE TABLE iface_day (ts INTEGER NOT NULL, iface_id INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL, PRIMARY KEY (ts, iface_id)) WITHOUT ROWID;
";

fn make_v1(path: &Path, with_data: bool) {
    let conn = Connection::open(path).expect("create v1");
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .expect("wal");
    conn.execute_batch(V1_LAYOUT).expect("v1 layout");
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
    ))
    .expect("stamp v1");
    if with_data {
        let (s, m) = (T0 / 1000, T0 / 60_000);
        conn.execute_batch(&format!(
            "INSERT INTO app VALUES (1, 'nginx');
             INSERT INTO user VALUES (1, 33, 'www-data');
             INSERT INTO container VALUES (1, '');
             INSERT INTO process VALUES (1, 100, 5, 1, 1, 1, 'nginx -g daemon');
             INSERT INTO remote VALUES (1, '10.0.0.1');
             INSERT INTO iface VALUES (1, 'eth0');
             INSERT INTO traffic_interval VALUES ({s}, 1, 1, 500, 600, 5, 6), ({}, 1, 1, 1, 2, 3, 4);
             INSERT INTO traffic_minute VALUES ({m}, 1, 1, 500, 600, 5, 6);
             INSERT INTO iface_interval VALUES ({s}, 1, 900, 800, 7, 8);
             INSERT INTO iface_minute VALUES ({m}, 1, 900, 800, 7, 8);
             INSERT INTO meta VALUES ('rolled_minute', {});",
            s + 60,
            m + 1
        ))
        .expect("v1 data");
    }
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("user_version")
}

#[test]
fn open_creates_the_directory_and_a_0640_wal_file() {
    let dir = TempDir::new("create");
    let path = dir.0.join("var/lib/kaipo/history.db");
    let (store, note) = Store::open(&path, &Retention::default()).expect("open");
    assert_eq!(note, OpenNote::Created);
    let mode = fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, FILE_MODE);
    let pragma = |p: &str| -> String {
        store
            .conn
            .query_row(&format!("PRAGMA {p}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| format!("{v:?}"))
            .expect("pragma")
    };
    assert_eq!(pragma("journal_mode"), "Text(\"wal\")");
    assert_eq!(pragma("synchronous"), "Integer(1)", "NORMAL");
    drop(store);
    let (_, note) = Store::open(&path, &Retention::default()).expect("reopen");
    assert_eq!(note, OpenNote::Opened);
}

#[test]
fn version_1_database_is_upgraded_and_keeps_its_data() {
    let dir = TempDir::new("upgrade");
    make_v1(&dir.db(), true);
    let (mut store, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    assert_eq!(note, OpenNote::Upgraded { from: 1 });
    assert_eq!(note.to_string(), "upgraded from schema 1 to 4");
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::App))
        .expect("query");
    assert_eq!(rows_of(&r), vec![("nginx".to_owned(), [501, 602, 8, 10])]);
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Service))
        .expect("query");
    assert_eq!(
        rows_of(&r),
        vec![(String::new(), [501, 602, 8, 10])],
        "old rows: unknown service"
    );
    // The per-user totals behind the series were computed from the old rows.
    let series: Vec<(i64, u64)> = r.series.iter().map(|p| (p.ts_ms, p.rx_bytes)).collect();
    assert_eq!(series, vec![(T0, 500), (T0 + 60_000, 1)]);
    let minute = query(T0, T0 + 60_000, Dimension::Process);
    let from_minutes = store.query_tier(&minute, Tier::Minute).expect("query");
    assert_eq!(
        rows_of(&from_minutes),
        vec![("nginx[100]".to_owned(), [500, 600, 5, 6])]
    );
    assert_eq!(
        rows_of(&store.query_tier(&minute, Tier::Interval).expect("query")),
        rows_of(&from_minutes)
    );
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Interface))
        .expect("query");
    assert_eq!(rows_of(&r), vec![("eth0".to_owned(), [900, 800, 7, 8])]);
    // The new column is used from now on.
    let row = traffic("nginx", 100, 33, "10.0.0.1", "https", 10, 20);
    store
        .write(&batch(T0 + 180_000, 60_000, vec![row], vec![]))
        .expect("write");
    let r = store
        .query(&query(T0, T0 + 3_600_000, Dimension::Service))
        .expect("query");
    assert_eq!(
        r.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["", "https"]
    );
    drop(store);
    assert_eq!(user_version(&dir.db()), 4);
    let (_, note) = Store::open(dir.db(), &Retention::default()).expect("reopen");
    assert_eq!(note, OpenNote::Opened);
}

/// A version 2 database: version 1 and kaipo's own step to 2, then rows of three intervals
/// (one of them with two rows of a key, as rows written after an outage could be).
fn make_v2_with_data(path: &Path) {
    make_v1(path, false);
    let mut conn = Connection::open(path).expect("open v1");
    let tx = conn.transaction().expect("tx");
    schema::v1_to_v2(&tx).expect("v1 to v2");
    let s = T0 / 1000;
    tx.execute_batch(&format!(
        "PRAGMA user_version = 2;
         INSERT INTO app VALUES (1, 'nginx'), (2, 'curl');
         INSERT INTO user VALUES (1, 33, 'www-data'), (2, 1000, 'ann');
         INSERT INTO container VALUES (1, '');
         INSERT INTO process VALUES (1, 100, 5, 1, 1, 1, 'nginx'), (2, 200, 9, 2, 2, 1, 'curl');
         INSERT INTO remote VALUES (1, '10.0.0.1'), (2, '10.0.0.2');
         INSERT INTO service VALUES (2, 'https');
         INSERT INTO traffic_interval VALUES
             ({s}, 1, 1, 2, 100, 200, 1, 2), ({s}, 2, 2, 1, 5, 6, 7, 8),
             ({}, 2, 1, 2, 1000000, 3, 700, 1),
             ({}, 1, 2, 2, 40, 50, 60, 70);",
        s + 30,
        s + 90,
    ))
    .expect("v2 data");
    tx.commit().expect("commit");
}

#[test]
fn version_2_interval_rows_are_packed_with_every_figure() {
    let dir = TempDir::new("upgrade2");
    make_v2_with_data(&dir.db());
    let (mut store, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    assert_eq!(note, OpenNote::Upgraded { from: 2 });
    // A blob per interval start, holding all its rows.
    let blobs: Vec<(i64, i64)> = store
        .conn
        .prepare("SELECT ts - ?1, rows FROM traffic_interval ORDER BY ts")
        .and_then(|mut st| {
            st.query_map([T0 / 1000], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .expect("blobs");
    assert_eq!(blobs, vec![(0, 2), (30, 1), (90, 1)]);
    let q = query(T0, T0 + 120_000, Dimension::Process);
    let r = store.query_tier(&q, Tier::Interval).expect("query");
    assert_eq!(
        rows_of(&r),
        vec![
            ("curl[200]".to_owned(), [1_000_005, 9, 707, 9]),
            ("nginx[100]".to_owned(), [140, 250, 61, 72]),
        ]
    );
    let by_service = query(T0, T0 + 120_000, Dimension::Service);
    let r = store
        .query_tier(&by_service, Tier::Interval)
        .expect("query");
    assert_eq!(
        rows_of(&r),
        vec![
            (String::new(), [5, 6, 7, 8]),
            ("https".to_owned(), [1_000_140, 253, 761, 73]),
        ]
    );
    // And the packed rows roll up like any others.
    store.maintain(T0 + 10 * 60_000).expect("maintain");
    let r = store.query_tier(&q, Tier::Minute).expect("query");
    assert_eq!(
        rows_of(&r),
        vec![
            ("curl[200]".to_owned(), [1_000_005, 9, 707, 9]),
            ("nginx[100]".to_owned(), [140, 250, 61, 72]),
        ]
    );
}

/// Tables, their columns and keys, and their indexes, in a comparable form.
fn layout(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables = conn
        .prepare("SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("tables");
    let tables: Vec<(String, i64)> = tables
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    for (name, without_rowid) in tables {
        out.push(format!("table {name} without_rowid={without_rowid}"));
        let mut cols = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1) ORDER BY cid")
            .expect("columns");
        for col in cols
            .query_map([&name], |r| {
                Ok(format!(
                    "  {} {} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?
                ))
            })
            .expect("columns")
        {
            out.push(col.expect("column"));
        }
        let mut idx = conn
            .prepare("SELECT l.\"unique\", group_concat(i.name) FROM pragma_index_list(?1) l, pragma_index_info(l.name) i GROUP BY l.name ORDER BY l.name")
            .expect("indexes");
        for i in idx
            .query_map([&name], |r| {
                Ok(format!(
                    "  index unique={} on {}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .expect("indexes")
        {
            out.push(i.expect("index"));
        }
    }
    out
}

#[test]
fn upgraded_layout_is_the_fresh_layout() {
    let dir = TempDir::new("layout");
    let (old, new) = (dir.0.join("old.db"), dir.0.join("new.db"));
    make_v1(&old, false);
    let (upgraded, _) = Store::open(&old, &Retention::default()).expect("open old");
    let (fresh, _) = Store::open(&new, &Retention::default()).expect("open new");
    let (a, b) = (layout(&upgraded.conn), layout(&fresh.conn));
    assert!(b.len() > 40, "{b:?}");
    assert_eq!(a, b);
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

fn corrupt_copies(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    names.sort();
    names
}

#[test]
fn random_bytes_are_moved_aside_with_their_wal_and_shm() {
    let dir = TempDir::new("random");
    let bytes = noise(65_536);
    fs::write(dir.db(), &bytes).expect("write noise");
    fs::write(dir.0.join("history.db-wal"), b"wal junk").expect("wal");
    fs::write(dir.0.join("history.db-shm"), b"shm junk").expect("shm");

    let err = Store::open_read_only(dir.db())
        .err()
        .expect("read-only open must fail");
    // Whole pages of noise look like an encrypted database to a reader without a key.
    assert!(
        matches!(err, StoreError::EncryptedOrDamaged { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("encrypted (set [storage] encryption_key_file to its key) or damaged"),
        "{err}"
    );
    assert_eq!(
        fs::read(dir.db()).expect("read"),
        bytes,
        "read-only open changes nothing"
    );
    assert_eq!(
        fs::read(dir.0.join("history.db-wal")).expect("wal"),
        b"wal junk"
    );
    assert!(corrupt_copies(&dir.0).is_empty());

    let (mut store, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    let OpenNote::Replaced { moved_to, reason } = &note else {
        panic!("expected Replaced, got {note:?}");
    };
    assert!(reason.contains("damaged"), "{reason}");
    assert!(note.to_string().contains(&moved_to.display().to_string()));
    assert_eq!(fs::read(moved_to).expect("moved"), bytes);
    let moved_name = moved_to
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert_eq!(
        corrupt_copies(&dir.0),
        vec![
            moved_name.clone(),
            format!("{moved_name}-shm"),
            format!("{moved_name}-wal")
        ]
    );
    assert_eq!(
        fs::read(format!("{}-wal", moved_to.display())).expect("wal"),
        b"wal junk"
    );
    let b = batch(
        T0 + 60_000,
        60_000,
        vec![traffic("a", 1, 0, "", "", 5, 6)],
        vec![],
    );
    store.write(&b).expect("write");
    let r = store
        .query(&query(T0, T0 + 60_000, Dimension::App))
        .expect("query");
    assert_eq!(r.total.rx_bytes, 5);
}

#[test]
fn another_programs_database_is_moved_aside_intact() {
    let dir = TempDir::new("foreign");
    let conn = Connection::open(dir.db()).expect("create");
    conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'a@example.org');")
        .expect("foreign");
    drop(conn);
    let err = Store::open_read_only(dir.db()).err().expect("must fail");
    assert!(
        matches!(&err, StoreError::Foreign { detail, .. } if detail.contains("users")),
        "{err}"
    );
    assert!(corrupt_copies(&dir.0).is_empty());

    let (_, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    let OpenNote::Replaced { moved_to, reason } = note else {
        panic!("expected Replaced");
    };
    assert!(reason.contains("not kaipo's"), "{reason}");
    let moved = Connection::open(&moved_to).expect("moved opens");
    let email: String = moved
        .query_row("SELECT email FROM users", [], |r| r.get(0))
        .expect("row");
    assert_eq!(email, "a@example.org");
}

#[test]
fn kaipo_file_with_a_table_missing_is_moved_aside() {
    let dir = TempDir::new("damaged");
    drop(Store::open(dir.db(), &Retention::default()).expect("create"));
    Connection::open(dir.db())
        .and_then(|c| c.execute_batch("DROP TABLE traffic_hour"))
        .expect("damage");
    let err = Store::open_read_only(dir.db()).err().expect("must fail");
    assert!(
        matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("traffic_hour")),
        "{err}"
    );
    let (_, note) = Store::open(dir.db(), &Retention::default()).expect("open");
    let OpenNote::Replaced { moved_to, .. } = note else {
        panic!("expected Replaced, got {note:?}");
    };
    let copies = corrupt_copies(&dir.0);
    let main = moved_to.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(copies[0], main);
    // Its -wal and -shm, if SQLite left them, moved along.
    assert!(copies.iter().all(|c| c.starts_with(main)), "{copies:?}");
}

#[test]
fn newer_layout_is_refused_and_left_in_place() {
    let dir = TempDir::new("newer");
    drop(Store::open(dir.db(), &Retention::default()).expect("create"));
    Connection::open(dir.db())
        .and_then(|c| c.execute_batch("PRAGMA user_version = 5"))
        .expect("bump");
    for err in [
        Store::open(dir.db(), &Retention::default())
            .err()
            .expect("must fail"),
        Store::open_read_only(dir.db()).err().expect("must fail"),
    ] {
        assert!(
            matches!(
                err,
                StoreError::TooNew {
                    found: 5,
                    supported: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade kaipo"), "{err}");
    }
    assert!(corrupt_copies(&dir.0).is_empty());
    assert_eq!(user_version(&dir.db()), 5);
}

#[test]
fn read_only_open_needs_a_current_database_and_changes_nothing() {
    let dir = TempDir::new("ro");
    let err = Store::open_read_only(dir.db()).err().expect("missing");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(!dir.db().exists(), "read-only open creates nothing");
    fs::write(dir.db(), b"").expect("empty file");
    assert!(matches!(
        Store::open_read_only(dir.db()),
        Err(StoreError::NotFound { .. })
    ));
    fs::remove_file(dir.db()).expect("rm");
    make_v1(&dir.db(), true);
    let err = Store::open_read_only(dir.db()).err().expect("old");
    assert!(
        matches!(err, StoreError::NeedsUpgrade { found: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("start the kaipo daemon once"),
        "{err}"
    );
    assert_eq!(user_version(&dir.db()), 1);
}
