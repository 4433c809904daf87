//! Small integer ids for the names in traffic rows.
//!
//! A busy interval has thousands of rows but few new names, so ids are remembered in memory:
//! a row costs a few hash lookups instead of SQL round trips. The maps are bounded (cleared
//! when one reaches [`CACHE_LIMIT`]) so a host with endless process churn does not grow the
//! daemon, and emptied whenever a transaction fails, because ids handed out inside a rolled
//! back transaction no longer exist.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

/// Entries per map before it is emptied and refilled from the database.
pub(crate) const CACHE_LIMIT: usize = 65_536;

/// Rows of the previous batch remembered by position.
const MEMO_ROWS: usize = 65_536;

/// Longest command line kept, in bytes: the identity tables must not grow with whatever a
/// process puts in its argv.
pub(crate) const MAX_CMDLINE: usize = 4096;

/// A process as a traffic row names it. Borrowed, so that batches and held rows resolve
/// without copying their strings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcessRef<'a> {
    pub app: &'a str,
    pub pid: u32,
    pub start_time: u64,
    pub cmdline: &'a str,
    pub uid: u32,
    /// Empty when unknown.
    pub user: &'a str,
    /// Empty when unknown.
    pub container: &'a str,
    /// Container name, pod, pod namespace and unit; not part of the process key.
    pub workload: [Option<&'a str>; 4],
}

impl ProcessRef<'_> {
    /// Whether two rows name the same process row (the command line is not part of its key).
    fn same_key(&self, other: &ProcessRef<'_>) -> bool {
        self.pid == other.pid
            && self.start_time == other.start_time
            && self.uid == other.uid
            && self.app == other.app
            && self.user == other.user
            && self.container == other.container
    }
}

/// A process row's key. Name, user and container are part of it, so a process that execs
/// another program or changes user starts a new row and history stays exact per app and user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ProcessKey {
    pid: u32,
    start_time: i64,
    app: i64,
    user: i64,
    container: i64,
}

/// A table mapping one text column to an id.
#[derive(Clone, Copy)]
pub(crate) enum NameTable {
    App,
    Container,
    Remote,
    Service,
    Iface,
}

impl NameTable {
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Self::App => (
                "SELECT id FROM app WHERE name = ?1",
                "INSERT INTO app (name) VALUES (?1)",
            ),
            Self::Container => (
                "SELECT id FROM container WHERE name = ?1",
                "INSERT INTO container (name) VALUES (?1)",
            ),
            Self::Remote => (
                "SELECT id FROM remote WHERE addr = ?1",
                "INSERT INTO remote (addr) VALUES (?1)",
            ),
            Self::Service => (
                "SELECT id FROM service WHERE name = ?1",
                "INSERT INTO service (name) VALUES (?1)",
            ),
            Self::Iface => (
                "SELECT id FROM iface WHERE name = ?1",
                "INSERT INTO iface (name) VALUES (?1)",
            ),
        }
    }
}

#[derive(Default)]
pub(crate) struct Ids {
    names: [HashMap<String, i64>; 5],
    /// Per uid, the user names seen with it (almost always one).
    users: HashMap<u32, Vec<(String, i64)>>,
    processes: HashMap<ProcessKey, i64>,
    /// The workload names last written per process row.
    workloads: HashMap<i64, [Option<String>; 4]>,
    /// The name last written per remote row.
    remote_names: HashMap<i64, String>,
    /// The process resolved for the row just before, if it went through [`Ids::process`]:
    /// rows of one process come together, so this skips most lookups.
    last: Option<(ProcessKey, i64)>,
    memo: Vec<MemoRow>,
}

/// A row of the previous batch and its process, remote and service ids.
#[derive(Default)]
struct MemoRow {
    pid: u32,
    start_time: u64,
    uid: u32,
    app: String,
    user: String,
    container: String,
    remote: String,
    service: String,
    ids: [i64; 4],
}

impl MemoRow {
    fn matches(&self, p: &ProcessRef<'_>, remote: &str, service: &str) -> bool {
        self.pid == p.pid
            && self.start_time == p.start_time
            && self.uid == p.uid
            && self.remote == remote
            && self.service == service
            && self.app == p.app
            && self.user == p.user
            && self.container == p.container
    }

    /// Overwrites in place, reusing the strings' memory.
    fn set(&mut self, p: &ProcessRef<'_>, remote: &str, service: &str, ids: [i64; 4]) {
        (self.pid, self.start_time, self.uid, self.ids) = (p.pid, p.start_time, p.uid, ids);
        for (to, from) in [
            (&mut self.app, p.app),
            (&mut self.user, p.user),
            (&mut self.container, p.container),
            (&mut self.remote, remote),
            (&mut self.service, service),
        ] {
            to.clear();
            to.push_str(from);
        }
    }
}

impl Ids {
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Process, remote, service and user ids of the `index`th row of a batch; `prev` is the
    /// row before it.
    pub fn traffic_row(
        &mut self,
        conn: &Connection,
        index: usize,
        p: &ProcessRef<'_>,
        remote: &str,
        service: &str,
        prev: Option<&ProcessRef<'_>>,
    ) -> rusqlite::Result<[i64; 4]> {
        if let Some(ids) = self
            .memo
            .get(index)
            .filter(|m| m.matches(p, remote, service))
            .map(|m| m.ids)
        {
            // `last` no longer belongs to the row before the next one.
            self.last = None;
            self.workload(conn, ids[0], p)?;
            return Ok(ids);
        }
        let (process, user) = self.process(conn, p, prev)?;
        self.workload(conn, process, p)?;
        let ids = [
            process,
            self.name(conn, NameTable::Remote, remote)?,
            self.name(conn, NameTable::Service, service)?,
            user,
        ];
        if let Some(m) = self.memo.get_mut(index) {
            m.set(p, remote, service, ids);
        } else if index == self.memo.len() && index < MEMO_ROWS {
            let mut m = MemoRow::default();
            m.set(p, remote, service, ids);
            self.memo.push(m);
        }
        Ok(ids)
    }

    /// Writes the name of remote row `remote` when it differs from the one written.
    pub fn remote_name(
        &mut self,
        conn: &Connection,
        remote: i64,
        name: &str,
    ) -> rusqlite::Result<()> {
        if self.remote_names.get(&remote).is_some_and(|n| n == name) {
            return Ok(());
        }
        conn.prepare_cached(
            "INSERT INTO remote_name (remote_id, name) VALUES (?1, ?2) \
             ON CONFLICT (remote_id) DO UPDATE SET name = excluded.name",
        )?
        .execute(params![remote, name])?;
        if self.remote_names.len() >= CACHE_LIMIT {
            self.remote_names.clear();
        }
        self.remote_names.insert(remote, name.to_owned());
        Ok(())
    }

    pub fn name(
        &mut self,
        conn: &Connection,
        table: NameTable,
        name: &str,
    ) -> rusqlite::Result<i64> {
        let map = &mut self.names[table as usize];
        if let Some(&id) = map.get(name) {
            return Ok(id);
        }
        let (select, insert) = table.sql();
        let id = select_or_insert(conn, select, insert, params![name])?;
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Writes the process row's workload names when they differ from what was written. A name
    /// once known is kept: a later row that does not know it leaves it.
    fn workload(
        &mut self,
        conn: &Connection,
        process: i64,
        p: &ProcessRef<'_>,
    ) -> rusqlite::Result<()> {
        if p.workload.iter().all(Option::is_none) {
            return Ok(());
        }
        let same = self.workloads.get(&process).is_some_and(|written| {
            written
                .iter()
                .zip(p.workload)
                .all(|(w, n)| n.is_none() || w.as_deref() == n)
        });
        if same {
            return Ok(());
        }
        let [name, pod, namespace, unit] = p.workload;
        conn.prepare_cached(
            "INSERT INTO workload (process_id, container_name, pod, pod_namespace, unit) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (process_id) DO UPDATE SET \
             container_name = COALESCE(excluded.container_name, container_name), \
             pod = COALESCE(excluded.pod, pod), \
             pod_namespace = COALESCE(excluded.pod_namespace, pod_namespace), \
             unit = COALESCE(excluded.unit, unit)",
        )?
        .execute(params![process, name, pod, namespace, unit])?;
        if self.workloads.len() >= CACHE_LIMIT {
            self.workloads.clear();
        }
        let entry = self.workloads.entry(process).or_default();
        for (w, n) in entry.iter_mut().zip(p.workload) {
            if let Some(n) = n {
                *w = Some(n.to_owned());
            }
        }
        Ok(())
    }

    fn user(&mut self, conn: &Connection, uid: u32, name: &str) -> rusqlite::Result<i64> {
        if let Some(&(_, id)) = self
            .users
            .get(&uid)
            .and_then(|names| names.iter().find(|(n, _)| n == name))
        {
            return Ok(id);
        }
        let id = select_or_insert(
            conn,
            "SELECT id FROM user WHERE uid = ?1 AND name = ?2",
            "INSERT INTO user (uid, name) VALUES (?1, ?2)",
            params![uid, name],
        )?;
        if self.users.len() >= CACHE_LIMIT {
            self.users.clear();
        }
        self.users
            .entry(uid)
            .or_default()
            .push((name.to_owned(), id));
        Ok(id)
    }

    /// The ids of a process row (created on first sight) and of its user. `prev` is the row
    /// resolved just before, which spares the lookups for consecutive rows of one process.
    fn process(
        &mut self,
        conn: &Connection,
        p: &ProcessRef<'_>,
        prev: Option<&ProcessRef<'_>>,
    ) -> rusqlite::Result<(i64, i64)> {
        if let (Some(prev), Some((key, id))) = (prev, self.last) {
            if prev.same_key(p) {
                return Ok((id, key.user));
            }
        }
        let key = ProcessKey {
            pid: p.pid,
            // Validated on the way in; saturating keeps this total anyway.
            start_time: i64::try_from(p.start_time).unwrap_or(i64::MAX),
            app: self.name(conn, NameTable::App, p.app)?,
            user: self.user(conn, p.uid, p.user)?,
            container: self.name(conn, NameTable::Container, p.container)?,
        };
        let id = match self.processes.get(&key) {
            Some(&id) => id,
            None => {
                let id = select_or_insert(
                    conn,
                    "SELECT id FROM process WHERE pid = ?1 AND start_time = ?2 AND app_id = ?3 \
                     AND user_id = ?4 AND container_id = ?5",
                    "INSERT INTO process (pid, start_time, app_id, user_id, container_id, cmdline) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        key.pid,
                        key.start_time,
                        key.app,
                        key.user,
                        key.container,
                        truncate(p.cmdline, MAX_CMDLINE)
                    ],
                )?;
                if self.processes.len() >= CACHE_LIMIT {
                    self.processes.clear();
                }
                self.processes.insert(key, id);
                id
            }
        };
        self.last = Some((key, id));
        Ok((id, key.user))
    }
}

/// Looks a row up by its key and inserts it when missing. The select binds only as many
/// parameters as it names; the insert gets them all.
fn select_or_insert(
    conn: &Connection,
    select: &str,
    insert: &str,
    params: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare_cached(select)?;
    let n = stmt.parameter_count();
    let found = stmt
        .query_row(&params[..n.min(params.len())], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached(insert)?.execute(params)?;
    Ok(conn.last_insert_rowid())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
