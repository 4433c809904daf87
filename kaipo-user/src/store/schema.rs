//! The database layout, how a file is recognised as kaipo's, and the migrations between
//! layout versions.
//!
//! Identity tables give each app, user, container, process, interface, remote address and
//! service a small integer id. Traffic rows then hold only integers, in `WITHOUT ROWID` tables
//! whose primary key (time bucket first) is the table itself, so a row costs about 33 bytes and
//! a time range is one contiguous b-tree range; except the interval tier's traffic, which is
//! packed into a blob per interval (`packed`). `ts` counts the tier's own unit since the Unix
//! epoch: seconds (the interval's start) in `*_interval`, then minutes, hours and UTC days.
//!
//! Layout history (`PRAGMA user_version`):
//! - 1: traffic keyed by (ts, process, remote).
//! - 2: a `service` identity table and `service_id` in every traffic table and its key, so
//!   history can be grouped by service (`dns`, `https`, ...); rows from version 1 get the
//!   empty service ("unknown"). And `totals_*`, the traffic summed per user and bucket, so the
//!   series of a report over days does not read every traffic row.
//! - 3: `traffic_interval` holds one packed blob per interval instead of a row per process,
//!   remote and service (see `packed`): SQLite work per interval no longer grows with the
//!   number of sockets. The coarser tiers keep a row per key.
//! - 4: a `workload` table: per process row, its container's name, Kubernetes pod and
//!   namespace and systemd unit (NULL when unknown), so history can be grouped by them.
//!   Processes of older layouts have none. And `remote_name`: the name a remote address was
//!   last looked up by (from DNS answers), shown beside it.

use rusqlite::{Connection, Transaction};

use super::{packed, write::Counters, Tier};

/// The layout this kaipo writes.
pub const SCHEMA_VERSION: u32 = 4;

/// `PRAGMA application_id` of kaipo's history ("kaip"): tells our file from another program's
/// SQLite database without guessing from table names.
pub const APPLICATION_ID: i32 = 0x6b61_6970;

pub(crate) const TIERS: [Tier; 4] = [Tier::Interval, Tier::Minute, Tier::Hour, Tier::Day];

/// Seconds in one unit of a tier's `ts` column.
pub(crate) fn unit_secs(tier: Tier) -> i64 {
    match tier {
        Tier::Interval => 1,
        Tier::Minute => 60,
        Tier::Hour => 3600,
        Tier::Day => 86_400,
    }
}

/// The three kinds of tier tables. Each has one table per tier, `ts` then the key columns
/// then the four counters, keyed by `ts` and the key columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// IP-layer traffic per process, remote and service.
    Traffic,
    /// Link-layer traffic per interface.
    Iface,
    /// The traffic rows summed per user: what a report's series needs, without reading every
    /// row of a long range.
    Totals,
}

pub(crate) const FAMILIES: [Family; 3] = [Family::Traffic, Family::Iface, Family::Totals];

impl Family {
    pub fn table(self, tier: Tier) -> &'static str {
        use {Family::*, Tier::*};
        match (self, tier) {
            (Traffic, Interval) => "traffic_interval",
            (Traffic, Minute) => "traffic_minute",
            (Traffic, Hour) => "traffic_hour",
            (Traffic, Day) => "traffic_day",
            (Iface, Interval) => "iface_interval",
            (Iface, Minute) => "iface_minute",
            (Iface, Hour) => "iface_hour",
            (Iface, Day) => "iface_day",
            (Totals, Interval) => "totals_interval",
            (Totals, Minute) => "totals_minute",
            (Totals, Hour) => "totals_hour",
            (Totals, Day) => "totals_day",
        }
    }

    /// `ts` and the key columns, in key order.
    pub fn key_columns(self) -> &'static str {
        match self {
            Self::Traffic => "ts, process_id, remote_id, service_id",
            Self::Iface => "ts, iface_id",
            Self::Totals => "ts, user_id",
        }
    }

    /// The current layout of the family's table of `tier`.
    fn ddl(self, tier: Tier) -> String {
        match (self, tier) {
            (Self::Traffic, Tier::Interval) => PACKED_INTERVAL.to_owned(),
            _ => self.ddl_rows(tier),
        }
    }

    /// A table with a row per key (every table of layouts 1 and 2).
    fn ddl_rows(self, tier: Tier) -> String {
        let key = self.key_columns();
        let columns: String = key
            .split(", ")
            .map(|c| format!("{c} INTEGER NOT NULL, "))
            .collect();
        format!(
            "CREATE TABLE {} ({columns}{COUNTERS}, PRIMARY KEY ({key})) WITHOUT ROWID;",
            self.table(tier)
        )
    }
}

const IDENTITY_TABLES: &str = "
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
";

/// The interval tier's traffic, one blob of rows per interval (and `rows` in it).
const PACKED_INTERVAL: &str = "CREATE TABLE traffic_interval (id INTEGER PRIMARY KEY, \
     ts INTEGER NOT NULL, rows INTEGER NOT NULL, packed BLOB NOT NULL); \
     CREATE INDEX traffic_interval_ts ON traffic_interval (ts);";

/// Names of where a process ran, learnt after its row was made (a runtime can write its
/// records after the process is first seen), hence a table of its own and not part of the
/// process key.
const WORKLOAD_TABLE: &str = "CREATE TABLE workload (process_id INTEGER PRIMARY KEY \
     REFERENCES process (id), container_name TEXT, pod TEXT, pod_namespace TEXT, unit TEXT);";

/// The name each remote address was last asked for, apart from the address's identity so
/// that a name learnt later names its earlier traffic too.
const REMOTE_NAME_TABLE: &str = "CREATE TABLE remote_name (remote_id INTEGER PRIMARY KEY \
     REFERENCES remote (id), name TEXT NOT NULL);";

const SERVICE_TABLE: &str =
    "CREATE TABLE service (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);";

const COUNTERS: &str = "rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, \
                        rx_packets INTEGER NOT NULL, tx_packets INTEGER NOT NULL";

/// Every table of the current layout, for recognising a damaged file.
pub(crate) fn expected_tables() -> Vec<&'static str> {
    let mut names = vec![
        "app",
        "user",
        "container",
        "process",
        "iface",
        "remote",
        "service",
        "workload",
        "remote_name",
        "meta",
    ];
    for family in FAMILIES {
        names.extend(TIERS.iter().map(|&t| family.table(t)));
    }
    names
}

/// Creates the current layout in an empty database.
pub(crate) fn create(tx: &Transaction) -> rusqlite::Result<()> {
    let mut ddl = String::from(IDENTITY_TABLES);
    ddl.push_str(SERVICE_TABLE);
    ddl.push_str(WORKLOAD_TABLE);
    ddl.push_str(REMOTE_NAME_TABLE);
    for family in FAMILIES {
        for tier in TIERS {
            ddl.push_str(&family.ddl(tier));
        }
    }
    tx.execute_batch(&ddl)?;
    stamp(tx, SCHEMA_VERSION)
}

fn stamp(tx: &Transaction, version: u32) -> rusqlite::Result<()> {
    // Both live in the file header and change with the transaction, so a crash never leaves a
    // file that claims a layout it does not have.
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {version};"
    ))
}

/// One migration step: from version `n` (its index + 1) to `n + 1`.
type Migration = fn(&Transaction) -> rusqlite::Result<()>;

const MIGRATIONS: [Migration; SCHEMA_VERSION as usize - 1] = [v1_to_v2, v2_to_v3, v3_to_v4];

/// Brings a kaipo database from `from` to [`SCHEMA_VERSION`], in one transaction.
pub(crate) fn upgrade(tx: &Transaction, from: u32) -> rusqlite::Result<()> {
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let step_from = i as u32 + 1;
        if step_from >= from {
            step(tx)?;
            stamp(tx, step_from + 1)?;
        }
    }
    Ok(())
}

/// Adds services, and per-user totals for series. The new key column means rebuilding each
/// traffic table, because SQLite cannot change a primary key in place.
pub(crate) fn v1_to_v2(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(SERVICE_TABLE)?;
    tx.execute("INSERT INTO service (name) VALUES ('')", [])?;
    let unknown = tx.last_insert_rowid();
    for tier in TIERS {
        let table = Family::Traffic.table(tier);
        let totals = Family::Totals.table(tier);
        tx.execute_batch(&format!(
            "ALTER TABLE {table} RENAME TO {table}_v1;
             {}
             INSERT INTO {table} (ts, process_id, remote_id, service_id,
                                  rx_bytes, tx_bytes, rx_packets, tx_packets)
                 SELECT ts, process_id, remote_id, {unknown},
                        rx_bytes, tx_bytes, rx_packets, tx_packets FROM {table}_v1;
             DROP TABLE {table}_v1;
             {}
             INSERT INTO {totals} (ts, user_id, rx_bytes, tx_bytes, rx_packets, tx_packets)
                 SELECT t.ts, p.user_id, SUM(t.rx_bytes), SUM(t.tx_bytes), SUM(t.rx_packets),
                        SUM(t.tx_packets)
                 FROM {table} t JOIN process p ON p.id = t.process_id
                 GROUP BY t.ts, p.user_id;",
            Family::Traffic.ddl_rows(tier),
            Family::Totals.ddl_rows(tier),
        ))?;
    }
    Ok(())
}

/// Packs the interval tier's traffic rows, one blob per interval start.
fn v2_to_v3(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch("ALTER TABLE traffic_interval RENAME TO traffic_interval_v2;")?;
    tx.execute_batch(PACKED_INTERVAL)?;
    let mut stmt = tx.prepare(
        "SELECT ts, process_id, remote_id, service_id, \
         rx_bytes, tx_bytes, rx_packets, tx_packets FROM traffic_interval_v2 \
         ORDER BY ts, process_id, remote_id, service_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut ts = None;
    let mut group: Vec<(packed::Key, Counters)> = Vec::new();
    while let Some(r) = rows.next()? {
        let t: i64 = r.get(0)?;
        if ts != Some(t) {
            if let Some(done) = ts {
                packed::insert(tx, done, &group)?;
            }
            group.clear();
            ts = Some(t);
        }
        let c = Counters {
            rx_bytes: r.get(4)?,
            tx_bytes: r.get(5)?,
            rx_packets: r.get(6)?,
            tx_packets: r.get(7)?,
        };
        group.push(([r.get(1)?, r.get(2)?, r.get(3)?], c));
    }
    if let Some(done) = ts {
        packed::insert(tx, done, &group)?;
    }
    drop(rows);
    drop(stmt);
    tx.execute_batch("DROP TABLE traffic_interval_v2;")
}

/// Adds the workload names; older processes have none.
fn v3_to_v4(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(WORKLOAD_TABLE)?;
    tx.execute_batch(REMOTE_NAME_TABLE)
}

/// What an opened file turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// No tables at all (a new or zero-length file).
    Empty,
    Kaipo {
        version: u32,
    },
    /// Another program's database; the text says what was found.
    Foreign(String),
    /// Marked as kaipo's, but not in a shape kaipo ever wrote.
    Damaged(String),
}

/// Reads the header and table list. Fails with `SQLITE_NOTADB` or `SQLITE_CORRUPT` on a file
/// that is not SQLite at all.
pub(crate) fn classify(conn: &Connection) -> rusqlite::Result<FileKind> {
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if app_id != APPLICATION_ID {
        if app_id == 0 && version == 0 && tables.is_empty() {
            return Ok(FileKind::Empty);
        }
        let mut shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        if tables.len() > shown.len() {
            shown.push("...");
        }
        return Ok(FileKind::Foreign(format!(
            "application id {app_id:#x}, tables: {}",
            if shown.is_empty() {
                "none".to_owned()
            } else {
                shown.join(", ")
            }
        )));
    }
    let version = match u32::try_from(version) {
        Ok(v) if v > 0 => v,
        _ => return Ok(FileKind::Damaged(format!("schema version {version}"))),
    };
    if version == SCHEMA_VERSION {
        let missing: Vec<&str> = expected_tables()
            .into_iter()
            .filter(|t| !tables.iter().any(|have| have == t))
            .collect();
        if !missing.is_empty() {
            return Ok(FileKind::Damaged(format!(
                "tables missing: {}",
                missing.join(", ")
            )));
        }
    }
    Ok(FileKind::Kaipo { version })
}

/// Runs SQLite's `quick_check` over every page (cost grows with the file: each page is read
/// once; see `open` for a measured figure). `None` when the file is sound, else the first
/// problems it names.
pub(crate) fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let found = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(match found.as_slice() {
        [ok] if ok == "ok" => None,
        [] => Some("quick_check said nothing".to_owned()),
        problems => Some(problems.join("; ")),
    })
}
