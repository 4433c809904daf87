//! The SQLite time-series store: history in tiers rolled up automatically.
//!
//! The daemon [`Store::write`]s one [`IntervalBatch`] per interval (one transaction each) and
//! calls [`Store::maintain`] after it; `kaipo report` opens the same file with
//! [`Store::open_read_only`] and asks [`Store::query`]. The database is in WAL mode, so readers
//! never wait for the writer and a SIGKILL loses at most the transaction in flight.
//!
//! History lives in four tiers: per interval (kept 24 h), per minute (30 days), per hour
//! (1 year) and per UTC day (forever); see [`Retention`]. A batch is stamped with its start,
//! so an interval's traffic lands in the minute, hour and day it began in. Rollups are exact:
//! every tier gives the same totals for a range aligned to its buckets.
//!
//! Layout: `schema`; the interval tier's traffic is packed, a blob per interval (`packed`).
//! Rollups and retention: `rollup`; the writer sums the minute tier's traffic in memory as it
//! writes (`minutes`). Failed writes: `backlog`. Damage: `open` (found at start by `quick_check`,
//! or by a write) and `file` (moving it aside). One writer per file: `lock`.

mod backlog;
#[cfg(target_os = "linux")]
pub mod convert;
mod error;
mod file;
mod ids;
pub mod key;
#[cfg(unix)]
mod lock;
mod minutes;
mod open;
mod packed;
mod periods;
mod plan;
mod query;
mod rollup;
mod schema;
pub mod types;
mod write;

#[cfg(test)]
mod tests;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::config::names::SharedNames;
use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use backlog::{MAX_NAME_BYTES, MAX_SLOTS};
pub use error::StoreError;
pub use file::FILE_MODE;
pub use key::StoreKey;
#[cfg(unix)]
pub use lock::HistoryLock;
pub use query::TOP_CHARTED;
pub use rollup::{MaintainStats, Retention};
pub use schema::SCHEMA_VERSION;
pub use types::*;

use self::{
    backlog::Backlog,
    ids::Ids,
    minutes::MinuteSums,
    open::db_err,
    query::QueryCache,
    rollup::Marks,
    write::{Counters, Pending, PendingIface},
};

/// How often the daemon should write a batch. Size follows rows: a row per process, remote
/// and service per interval costs about 17 bytes packed, so 1000 busy sockets take ~23 MiB
/// per day in the interval tier at 60 s but ~140 MiB at 10 s (`cargo xtask bench store`). The
/// live views (`kaipo watch`, the dashboard) keep their own one-second figures in memory;
/// history does not need them.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_secs(60);

/// How long a connection waits for a lock held by another one (a checkpoint, the reader's
/// snapshot setup) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Leeway past the longest interval before a minute counts as closed: the batch that started
/// in it may be written a moment after the minute ended. Rows that come later still count.
const ROLLUP_SLACK_MS: i64 = 1000;

/// Minute rows `maintain` writes per call ahead of a minute's closing (a few milliseconds of
/// CPU), so the 10,000 of a busy minute spread over the calls between its end and its closing.
pub(crate) const SLICE_ROWS: usize = 4096;

/// How [`Store::open`] found the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenNote {
    Created,
    Opened,
    Upgraded {
        from: u32,
    },
    /// The file was damaged or another program's; it was moved to `moved_to` and a fresh
    /// database created in its place.
    Replaced {
        moved_to: PathBuf,
        reason: String,
    },
    /// The file could not be opened for writing (read-only or full filesystem); history is
    /// held in memory and the file opened with the first write that can.
    Held {
        reason: String,
    },
}

impl fmt::Display for OpenNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created => write!(f, "created"),
            Self::Opened => write!(f, "opened"),
            Self::Upgraded { from } => {
                write!(f, "upgraded from schema {from} to {SCHEMA_VERSION}")
            }
            Self::Replaced { moved_to, reason } => write!(
                f,
                "moved the unusable file to {} and started fresh ({reason})",
                moved_to.display()
            ),
            Self::Held { reason } => write!(
                f,
                "cannot be written yet, so history is held in memory until it can ({reason})"
            ),
        }
    }
}

/// An open history database: the daemon's writer or a report's reader.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    retention: Retention,
    marks: Marks,
    ids: Ids,
    backlog: Backlog,
    last_error: Option<String>,
    /// Longest interval written since opening: how long a minute may still receive rows.
    max_interval_ms: i64,
    cache: QueryCache,
    /// The writer's minute sums, ahead of the minute rollup.
    minutes: MinuteSums,
    /// Why the file is not open yet (see [`Store::open_or_hold`]); `conn` is then an empty
    /// in-memory stand-in.
    unopened: Option<String>,
    /// What happened to the file since the last [`Store::take_note`] (a damaged file moved
    /// aside by a write).
    note: Option<OpenNote>,
    /// The key of an encrypted file, kept to open it again (after a full disk, or damage);
    /// wiped when the last holder drops it.
    key: Option<std::sync::Arc<StoreKey>>,
    /// The reader's network names, which reports by network group remotes by.
    names: SharedNames,
}

impl Store {
    fn new(
        conn: Connection,
        path: &Path,
        read_only: bool,
        retention: Retention,
        marks: Marks,
        minutes: MinuteSums,
    ) -> Self {
        Self {
            conn,
            path: path.to_path_buf(),
            read_only,
            retention,
            marks,
            ids: Ids::default(),
            backlog: Backlog::default(),
            last_error: None,
            max_interval_ms: 0,
            cache: QueryCache::default(),
            minutes,
            unopened: None,
            note: None,
            key: None,
            names: SharedNames::default(),
        }
    }

    /// The network names reports by network use from now on (a reload may change them).
    pub fn set_names(&mut self, names: SharedNames) {
        if self.names != names {
            self.cache.clear();
        }
        self.names = names;
    }

    /// What happened to the file since the last call: a damaged file that a write found and
    /// moved aside, or an upgrade done when a held store could open its file.
    pub fn take_note(&mut self) -> Option<OpenNote> {
        self.note.take()
    }

    /// False while a store from [`Store::open_or_hold`] waits for its file.
    pub fn is_open(&self) -> bool {
        self.unopened.is_none()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Slots of rows held in memory because writes failed (0 when all is written).
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Rows lost since opening because writes failed for so long that the held rows reached
    /// their bound ([`MAX_SLOTS`], [`MAX_NAME_BYTES`]).
    pub fn dropped_rows(&self) -> u64 {
        self.backlog.dropped_rows()
    }

    /// Why the last write failed, while rows are held; `None` once a write succeeded.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn require_writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Adds one interval to history, in one transaction. When the database refuses (disk
    /// full, read-only filesystem, I/O error) the rows are held in memory and the error is
    /// [`StoreError::Held`]; each later write first retries them, so nothing is lost while
    /// the space is missing (within the bound described in `backlog`). Held rows are not
    /// visible to queries until written. A write that finds the file damaged moves it aside
    /// (never deleting it), starts a fresh one and writes the held rows there; see
    /// [`Store::take_note`].
    pub fn write(&mut self, batch: &IntervalBatch) -> Result<(), StoreError> {
        self.require_writable()?;
        write::validate(batch).map_err(StoreError::InvalidBatch)?;
        self.cache.clear();
        self.max_interval_ms = self.max_interval_ms.max(i64::from(batch.interval_ms));
        let start_s = (batch.ts_ms - i64::from(batch.interval_ms)).div_euclid(1000);
        if self.unopened.is_some() {
            self.backlog.add(start_s, batch);
            if let Err(e) = self.open_held() {
                return Err(self.held(e));
            }
            return self.flush(None);
        }
        if !self.backlog.is_empty() {
            self.backlog.add(start_s, batch);
            return self.flush(None);
        }
        self.flush(Some((start_s, batch)))
    }

    /// Writes `fresh` alone, or the held rows when it is `None`; on failure `fresh` joins the
    /// held rows. Damage found on the way sends the held rows to a fresh file.
    fn flush(&mut self, fresh: Option<(i64, &IntervalBatch)>) -> Result<(), StoreError> {
        let e = match self.store(fresh) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some((start_s, batch)) = fresh {
            self.backlog.add(start_s, batch);
        }
        let StoreError::Corrupt { detail, .. } = &e else {
            return Err(self.held(e));
        };
        if let Err(e) = self.replace_damaged(format!("damaged: {detail}")) {
            return Err(self.held(e));
        }
        self.store(None).map_err(|e| self.held(e))
    }

    /// One transaction: `fresh`'s rows, or the held ones when it is `None`.
    fn store(&mut self, fresh: Option<(i64, &IntervalBatch)>) -> Result<(), StoreError> {
        let path = &self.path;
        let result = (|| {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let rows = match fresh {
                None => {
                    let (traffic, ifaces) = self.backlog.rows();
                    write::store_rows(&tx, &mut self.ids, &self.marks, traffic, ifaces)?
                }
                Some((start_s, batch)) => {
                    let traffic = batch.traffic.iter().map(|r| Pending::of_row(start_s, r));
                    let ifaces = batch.interfaces.iter().map(|r| PendingIface {
                        ts: start_s,
                        name: &r.name,
                        counters: Counters::of_iface(r),
                    });
                    write::store_rows(&tx, &mut self.ids, &self.marks, traffic, ifaces)?
                }
            };
            tx.commit()?;
            Ok(rows)
        })()
        .map_err(db_err(path, "writing an interval"));
        match result {
            Ok(rows) => {
                self.minutes.add(self.marks.rolled(Tier::Minute), &rows);
                self.backlog.clear();
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                // Ids handed out inside the rolled back transaction do not exist.
                self.ids.clear();
                Err(e)
            }
        }
    }

    /// Records `e` as the last error and wraps it with what is held.
    fn held(&mut self, e: StoreError) -> StoreError {
        self.last_error = Some(e.to_string());
        StoreError::Held {
            held_rows: self.backlog.len(),
            dropped_rows: self.backlog.dropped_rows(),
            error: Box::new(e),
        }
    }

    /// Rolls up buckets that closed by `now_ms` and applies retention, in one transaction.
    /// Until a minute closes it does little, so the daemon can call it after every write:
    /// once a minute has ended, each call writes a slice of its sums ahead of the closing
    /// (see `minutes`), which nothing reads before the rollup mark moves.
    /// A rollup that finds the file damaged moves it aside and starts a fresh one, as a
    /// write does.
    pub fn maintain(&mut self, now_ms: i64) -> Result<MaintainStats, StoreError> {
        match self.maintain_once(now_ms) {
            Err(StoreError::Corrupt { detail, .. }) => {
                self.replace_damaged(format!("damaged: {detail}"))?;
                Ok(MaintainStats::default())
            }
            other => other,
        }
    }

    fn maintain_once(&mut self, now_ms: i64) -> Result<MaintainStats, StoreError> {
        self.require_writable()?;
        if self.unopened.is_some() {
            // Nothing is written yet; the rollups catch up once the file opens.
            return Ok(MaintainStats::default());
        }
        let grace = self.max_interval_ms.saturating_add(ROLLUP_SLACK_MS);
        let closed_minute = now_ms.saturating_sub(grace).div_euclid(60_000);
        let rolled = self.marks.rolled(Tier::Minute);
        let path = &self.path;
        if closed_minute <= rolled {
            let ended = now_ms.div_euclid(60_000);
            if self.minutes.holds_before(ended) {
                let rows = self.minutes.slice(ended, SLICE_ROWS);
                (|| {
                    let tx =
                        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
                    self.minutes.write(&tx, rolled, &rows)?;
                    tx.commit()
                })()
                .map_err(db_err(path, "rolling up history"))?;
                self.minutes.written(&rows, false);
            }
            return Ok(MaintainStats::default());
        }
        let mut marks = self.marks;
        let rows = self.minutes.slice(closed_minute, usize::MAX);
        let stats = (|| {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            self.minutes.write(&tx, rolled, &rows)?;
            let now_s = now_ms.div_euclid(1000);
            let sql_until = self.minutes.sql_until();
            let mut stats = rollup::run(
                &tx,
                &mut marks,
                &self.retention,
                now_s,
                closed_minute,
                sql_until,
            )?;
            stats.rows_rolled_up += self.minutes.ahead() + rows.len() as u64;
            tx.commit()?;
            Ok(stats)
        })()
        .map_err(db_err(path, "rolling up history"))?;
        self.minutes.written(&rows, true);
        self.marks = marks;
        self.cache.clear();
        Ok(stats)
    }

    /// Answers a history question in the tier that suits its range (rules in `plan`).
    /// Asking the same question again before anything changed is answered from a cache.
    pub fn query(&mut self, q: &Query) -> Result<Report, StoreError> {
        self.answer(q, None)
    }

    /// Like [`Store::query`], but reads every figure from `tier` (and finer tiers for buckets
    /// `tier` does not hold yet): for comparisons and for callers that want one resolution.
    pub fn query_tier(&mut self, q: &Query, tier: Tier) -> Result<Report, StoreError> {
        self.answer(q, Some(tier))
    }

    fn answer(&mut self, q: &Query, forced: Option<Tier>) -> Result<Report, StoreError> {
        if q.from_ms >= q.to_ms {
            return Err(StoreError::InvalidQuery(format!(
                "the range {}..{} ms is empty",
                q.from_ms, q.to_ms
            )));
        }
        if let Some(reason) = &self.unopened {
            return Err(StoreError::NotOpen {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        let path = &self.path;
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db_err(path, "querying"))?;
        let key = (q.clone(), forced);
        if let Some(report) = self.cache.get(version, &key) {
            return Ok(report);
        }
        let report = (|| {
            // One read transaction: the rollup marks and the rows come from one snapshot,
            // even while the daemon rolls up.
            let tx = self.conn.unchecked_transaction()?;
            let report = query::run(&tx, q, forced, &self.names)?;
            tx.commit()?;
            Ok(report)
        })()
        .map_err(db_err(path, "querying"))?;
        self.cache.put(key, report.clone());
        Ok(report)
    }
}
