//! Answering a [`Query`], and a small cache of answers.
//!
//! The tier is chosen by span and retention (`plan`); the start of the range is widened to a
//! whole bucket of that tier, and the series comes in its buckets. The end is widened only
//! where the tier holds the range's last bucket completely: a range that ends in the newest,
//! still open stretch (any range that ends now) ends where it was asked to, because the finer
//! tiers hold that stretch to the second, and a 400-day report run at noon ends at noon, not
//! at tomorrow's midnight. Row totals are read from the coarsest
//! tier that holds each stretch completely (days inside a month-long range), which gives the
//! same figures as the chosen tier, because rollups are exact, and reads a fraction of the
//! rows. [`Report::tier`] names the chosen tier.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use rusqlite::Connection;

use crate::config::names::UserNames;

use super::{
    packed,
    plan::{ceil_to, choose_tier, plan, Segment},
    rollup::Marks,
    schema::{unit_secs, Family},
    write::{Counters, MAX_TS_MS},
    Dimension, ProcessFields, Query, Report, ReportRow, SeriesPoint, Tier, UNATTRIBUTED_APP,
};

/// Rows in `top_apps` and `top_remotes`.
pub const TOP_CHARTED: usize = 10;

/// Answers kept; a report page asks a handful of questions again and again.
const CACHE_ENTRIES: usize = 8;

/// Restricts traffic to the processes of one user; `?3` is the uid.
const UID_FILTER: &str =
    " AND process_id IN (SELECT p.id FROM process p JOIN user u ON u.id = p.user_id \
     WHERE u.uid = ?3)";

/// Answers `q` from `conn`, which should be inside a read transaction so that the marks and
/// the rows are one snapshot. `forced` reads totals from that tier instead of the coarsest.
pub(crate) fn run(
    conn: &Connection,
    q: &Query,
    forced: Option<Tier>,
    names: &UserNames,
) -> rusqlite::Result<Report> {
    let marks = Marks::load(conn)?;
    let clamp = |ms: i64| ms.clamp(0, MAX_TS_MS);
    let from_s = clamp(q.from_ms).div_euclid(1000);
    let to_s = ceil_to(clamp(q.to_ms), 1000) / 1000;
    let tier = forced.unwrap_or_else(|| choose_tier(&marks, from_s, to_s - from_s));
    let u = unit_secs(tier);
    let lo = from_s.div_euclid(u) * u;
    // Past the tier's last complete bucket every finer tier holds the data to the second
    // (retention never drops what is not rolled up yet), so the range can end where asked.
    let open_from = marks.rolled(tier).saturating_mul(u);
    let hi = if tier == Tier::Interval || to_s >= open_from {
        to_s
    } else {
        ceil_to(to_s, u)
    };
    let mut segments = Vec::new();
    plan(&marks, lo, hi, forced.unwrap_or(Tier::Day), &mut segments);

    let traffic = scan_traffic(conn, &segments, q.uid)?;
    let mut apps: HashMap<String, Counters> = HashMap::new();
    let mut by_dim: HashMap<String, Counters> = HashMap::new();
    let mut fields: HashMap<String, ProcessFields> = HashMap::new();
    for (&pid, c) in &traffic.processes {
        let p = process_info(conn, pid)?;
        add(&mut apps, &p.app, c);
        let unattributed = p.pid == 0 && p.app == UNATTRIBUTED_APP;
        let key = match q.by {
            Dimension::App => p.app.clone(),
            // Traffic without an owner is no process, user or container (user 0 would read
            // as root): it keeps its own row, named as the app dimension names it.
            Dimension::Process
            | Dimension::User
            | Dimension::Container
            | Dimension::Pod
            | Dimension::Unit
                if unattributed =>
            {
                UNATTRIBUTED_APP.to_owned()
            }
            Dimension::Process => {
                let key = format!("{}[{}]", p.app, p.pid);
                let f = p.fields();
                // Two processes that shared a pid and a name at different times share a
                // row; its fields are the same whichever was scanned first.
                match fields.get_mut(&key) {
                    Some(seen) if (&f.user, &f.container) < (&seen.user, &seen.container) => {
                        *seen = f;
                    }
                    Some(_) => {}
                    None => {
                        fields.insert(key.clone(), f);
                    }
                }
                key
            }
            Dimension::User => p.user_name(),
            // By name where the runtime named it, else by id: a container made again under
            // the same name is one row.
            Dimension::Container => p
                .workload
                .container_name
                .clone()
                .or_else(|| p.container())
                .unwrap_or_default(),
            Dimension::Pod => p.pod_key().unwrap_or_default(),
            Dimension::Unit => p.workload.unit.clone().unwrap_or_default(),
            _ => continue,
        };
        add(&mut by_dim, &key, c);
    }
    let mut remotes: HashMap<String, Counters> = HashMap::new();
    for (&id, c) in &traffic.remotes {
        add(
            &mut remotes,
            &name_of(conn, "SELECT addr FROM remote WHERE id = ?1", id)?,
            c,
        );
    }
    match q.by {
        Dimension::Remote => by_dim = remotes.clone(),
        // Grouped when asked, with the reader's names: renaming a network renames its history.
        Dimension::Network => {
            for (addr, c) in &remotes {
                add(
                    &mut by_dim,
                    names.network_of_text(addr).unwrap_or_default(),
                    c,
                );
            }
        }
        Dimension::Service => {
            for (&id, c) in &traffic.services {
                let name = name_of(conn, "SELECT name FROM service WHERE id = ?1", id)?;
                add(&mut by_dim, &name, c);
            }
        }
        Dimension::Interface if q.uid.is_none() => {
            for (id, c) in scan_ifaces(conn, &segments)? {
                add(
                    &mut by_dim,
                    &name_of(conn, "SELECT name FROM iface WHERE id = ?1", id)?,
                    &c,
                );
            }
        }
        _ => {}
    }
    let mut total = Counters::default();
    by_dim.values().for_each(|c| total.add(c));

    let mut series_segments = Vec::new();
    plan(&marks, lo, hi, tier, &mut series_segments);
    let series = match (q.by, q.uid) {
        (Dimension::Interface, Some(_)) => Vec::new(),
        (by, uid) => series(
            conn,
            &series_segments,
            tier,
            by == Dimension::Interface,
            uid,
        )?,
    };
    let (from_ms, to_ms) = (lo.saturating_mul(1000), hi.saturating_mul(1000));
    let periods = match q.per {
        Some(per) => super::periods::run(conn, &marks, q, per, (lo, hi))?,
        None => Vec::new(),
    };
    let mut rows = ranked(by_dim, q.top);
    for r in &mut rows {
        r.process = fields.remove(&r.key).map(Box::new);
    }
    let mut top_remotes = ranked(remotes, TOP_CHARTED);
    if q.by == Dimension::Remote {
        for r in rows.iter_mut().chain(&mut top_remotes) {
            r.name = remote_name(conn, &r.key)?;
        }
    }
    Ok(Report {
        from_ms,
        to_ms,
        by: Some(q.by),
        tier: Some(tier),
        rows,
        total: row("total", &total),
        series,
        top_apps: ranked(apps, TOP_CHARTED),
        top_remotes,
        per: q.per,
        periods,
    })
}

fn add(map: &mut HashMap<String, Counters>, key: &str, c: &Counters) {
    match map.get_mut(key) {
        Some(sum) => sum.add(c),
        None => {
            map.insert(key.to_owned(), *c);
        }
    }
}

pub(super) fn row(key: &str, c: &Counters) -> ReportRow {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    ReportRow {
        key: key.to_owned(),
        name: None,
        rx_bytes: u(c.rx_bytes),
        tx_bytes: u(c.tx_bytes),
        rx_packets: u(c.rx_packets),
        tx_packets: u(c.tx_packets),
        process: None,
    }
}

/// Largest total first, then by key so equal totals come in a stable order; `top` 0 = all.
pub(super) fn ranked(map: HashMap<String, Counters>, top: usize) -> Vec<ReportRow> {
    let mut rows: Vec<ReportRow> = map.iter().map(|(k, c)| row(k, c)).collect();
    rows.sort_by(|a, b| {
        let total = |r: &ReportRow| u128::from(r.rx_bytes) + u128::from(r.tx_bytes);
        total(b).cmp(&total(a)).then_with(|| a.key.cmp(&b.key))
    });
    if top > 0 {
        rows.truncate(top);
    }
    rows
}

#[derive(Default)]
struct TrafficSums {
    processes: HashMap<i64, Counters>,
    remotes: HashMap<i64, Counters>,
    services: HashMap<i64, Counters>,
}

/// One pass over the rows of every segment, summed per process, remote and service.
fn scan_traffic(
    conn: &Connection,
    segments: &[Segment],
    uid: Option<u32>,
) -> rusqlite::Result<TrafficSums> {
    let mut sums = TrafficSums::default();
    scan_rows(
        conn,
        segments,
        uid,
        |_, _, [process, remote, service], c| {
            sums.add(process, remote, service, c);
        },
    )?;
    Ok(sums)
}

/// Calls `f` with every traffic row of every segment: its tier, its bucket in that tier's
/// units, its process, remote and service ids and its counters.
pub(super) fn scan_rows(
    conn: &Connection,
    segments: &[Segment],
    uid: Option<u32>,
    mut f: impl FnMut(Tier, i64, [i64; 3], &Counters),
) -> rusqlite::Result<()> {
    // The interval tier is packed, so its rows are filtered here rather than in SQL.
    let mut of_uid: Option<HashSet<i64>> = None;
    for s in segments {
        if s.tier == Tier::Interval {
            if let (Some(uid), None) = (uid, &of_uid) {
                of_uid = Some(processes_of(conn, uid)?);
            }
            packed::scan(conn, s.lo, s.hi, |ts, key, c| {
                if of_uid.as_ref().is_none_or(|set| set.contains(&key[0])) {
                    f(Tier::Interval, ts, key, &c);
                }
                Ok(())
            })?;
            continue;
        }
        let sql = format!(
            "SELECT ts, process_id, remote_id, service_id, rx_bytes, tx_bytes, rx_packets, \
             tx_packets FROM {} WHERE ts >= ?1 AND ts < ?2{}",
            Family::Traffic.table(s.tier),
            if uid.is_some() { UID_FILTER } else { "" }
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = match uid {
            Some(uid) => stmt.query(rusqlite::params![s.lo, s.hi, uid])?,
            None => stmt.query([s.lo, s.hi])?,
        };
        while let Some(r) = rows.next()? {
            let c = Counters {
                rx_bytes: r.get(4)?,
                tx_bytes: r.get(5)?,
                rx_packets: r.get(6)?,
                tx_packets: r.get(7)?,
            };
            f(s.tier, r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?], &c);
        }
    }
    Ok(())
}

impl TrafficSums {
    fn add(&mut self, process: i64, remote: i64, service: i64, c: &Counters) {
        self.processes.entry(process).or_default().add(c);
        self.remotes.entry(remote).or_default().add(c);
        self.services.entry(service).or_default().add(c);
    }
}

/// The ids of every process of `uid`.
fn processes_of(conn: &Connection, uid: u32) -> rusqlite::Result<HashSet<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id FROM process p JOIN user u ON u.id = p.user_id WHERE u.uid = ?1",
    )?;
    let ids = stmt.query_map([uid], |r| r.get(0))?;
    ids.collect()
}

fn scan_ifaces(
    conn: &Connection,
    segments: &[Segment],
) -> rusqlite::Result<HashMap<i64, Counters>> {
    let mut sums: HashMap<i64, Counters> = HashMap::new();
    for s in segments {
        let sql = format!(
            "SELECT iface_id, rx_bytes, tx_bytes, rx_packets, tx_packets FROM {} \
             WHERE ts >= ?1 AND ts < ?2",
            Family::Iface.table(s.tier)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([s.lo, s.hi])?;
        while let Some(r) = rows.next()? {
            let c = Counters {
                rx_bytes: r.get(1)?,
                tx_bytes: r.get(2)?,
                rx_packets: r.get(3)?,
                tx_packets: r.get(4)?,
            };
            sums.entry(r.get(0)?).or_default().add(&c);
        }
    }
    Ok(sums)
}

/// Total rx and tx per bucket of `tier`, from the per-user totals (or the interfaces): a few
/// rows per bucket however many processes there were. Buckets without traffic are left out.
fn series(
    conn: &Connection,
    segments: &[Segment],
    tier: Tier,
    interfaces: bool,
    uid: Option<u32>,
) -> rusqlite::Result<Vec<SeriesPoint>> {
    let mut points: BTreeMap<i64, (i64, i64)> = Default::default();
    let family = if interfaces {
        Family::Iface
    } else {
        Family::Totals
    };
    let uid = uid.filter(|_| !interfaces);
    for s in segments {
        let ratio = unit_secs(tier) / unit_secs(s.tier);
        let sql = format!(
            "SELECT ts, rx_bytes, tx_bytes FROM {} WHERE ts >= ?1 AND ts < ?2{}",
            family.table(s.tier),
            if uid.is_some() {
                " AND user_id IN (SELECT id FROM user WHERE uid = ?3)"
            } else {
                ""
            }
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = match uid {
            Some(uid) => stmt.query(rusqlite::params![s.lo, s.hi, uid])?,
            None => stmt.query([s.lo, s.hi])?,
        };
        while let Some(r) = rows.next()? {
            let p = points.entry(r.get::<_, i64>(0)? / ratio).or_default();
            p.0 = p.0.saturating_add(r.get(1)?);
            p.1 = p.1.saturating_add(r.get(2)?);
        }
    }
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(points
        .into_iter()
        .map(|(b, (rx, tx))| SeriesPoint {
            ts_ms: b.saturating_mul(unit_secs(tier)).saturating_mul(1000),
            rx_bytes: u(rx),
            tx_bytes: u(tx),
        })
        .collect())
}

pub(super) struct ProcessInfo {
    pub app: String,
    pid: u32,
    uid: u32,
    user: String,
    container: String,
    workload: Workload,
}

/// A process row's workload names, NULL columns (or no row) as `None`.
#[derive(Default)]
struct Workload {
    container_name: Option<String>,
    pod: Option<String>,
    pod_namespace: Option<String>,
    unit: Option<String>,
}

impl ProcessInfo {
    /// `namespace/pod`, the way `kubectl` users name a pod across namespaces.
    fn pod_key(&self) -> Option<String> {
        let w = &self.workload;
        let pod = w.pod.as_deref()?;
        Some(match w.pod_namespace.as_deref() {
            Some(ns) => format!("{ns}/{pod}"),
            None => pod.to_owned(),
        })
    }

    /// The user's name, or the uid as text when it has none.
    fn user_name(&self) -> String {
        if self.user.is_empty() {
            self.uid.to_string()
        } else {
            self.user.clone()
        }
    }

    /// The container, `None` on the host. Databases written before the writer stopped doing
    /// so hold the cgroup path of host processes (`/`, `/user.slice/...`): a container id never
    /// starts with a slash, so those read as the host too.
    fn container(&self) -> Option<String> {
        (!self.container.is_empty() && !self.container.starts_with('/'))
            .then(|| self.container.clone())
    }

    fn fields(&self) -> ProcessFields {
        ProcessFields {
            pid: self.pid,
            name: self.app.clone(),
            user: self.user_name(),
            container: self.container(),
            container_name: self.workload.container_name.clone(),
            pod: self.workload.pod.clone(),
            pod_namespace: self.workload.pod_namespace.clone(),
            unit: self.workload.unit.clone(),
        }
    }
}

pub(super) fn process_info(conn: &Connection, id: i64) -> rusqlite::Result<ProcessInfo> {
    conn.prepare_cached(
        "SELECT a.name, p.pid, u.uid, u.name, c.name, \
         w.container_name, w.pod, w.pod_namespace, w.unit FROM process p \
         JOIN app a ON a.id = p.app_id JOIN user u ON u.id = p.user_id \
         JOIN container c ON c.id = p.container_id \
         LEFT JOIN workload w ON w.process_id = p.id WHERE p.id = ?1",
    )?
    .query_row([id], |r| {
        Ok(ProcessInfo {
            app: r.get(0)?,
            pid: r.get(1)?,
            uid: r.get(2)?,
            user: r.get(3)?,
            container: r.get(4)?,
            workload: Workload {
                container_name: r.get(5)?,
                pod: r.get(6)?,
                pod_namespace: r.get(7)?,
                unit: r.get(8)?,
            },
        })
    })
}

/// The name remote address `addr` was last looked up by.
fn remote_name(conn: &Connection, addr: &str) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension as _;
    conn.prepare_cached(
        "SELECT n.name FROM remote r JOIN remote_name n ON n.remote_id = r.id WHERE r.addr = ?1",
    )?
    .query_row([addr], |r| r.get(0))
    .optional()
}

/// The text of an id in a one-column identity table; `sql` selects it by `?1`.
fn name_of(conn: &Connection, sql: &str, id: i64) -> rusqlite::Result<String> {
    conn.prepare_cached(sql)?.query_row([id], |r| r.get(0))
}

/// The last few answers, valid while the database is unchanged.
#[derive(Default)]
pub(crate) struct QueryCache {
    /// `PRAGMA data_version` when the entries were computed: it changes when another
    /// connection commits (our own writes clear the cache directly).
    data_version: i64,
    entries: VecDeque<((Query, Option<Tier>), Report)>,
    pub hits: u64,
}

impl QueryCache {
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn get(&mut self, data_version: i64, key: &(Query, Option<Tier>)) -> Option<Report> {
        if data_version != self.data_version {
            self.entries.clear();
            self.data_version = data_version;
        }
        let found = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone());
        self.hits += u64::from(found.is_some());
        found
    }

    pub fn put(&mut self, key: (Query, Option<Tier>), report: Report) {
        if self.entries.len() >= CACHE_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back((key, report));
    }
}
