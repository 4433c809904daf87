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
//! Layout: `schema`. Rollups and retention: `rollup`. Failed writes: `backlog`.

mod backlog;
mod error;
mod file;
mod ids;
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

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use backlog::{MAX_NAME_BYTES, MAX_SLOTS};
pub use error::StoreError;
pub use file::FILE_MODE;
pub use query::TOP_CHARTED;
pub use rollup::{MaintainStats, Retention};
pub use schema::SCHEMA_VERSION;
pub use types::*;

use self::{
    backlog::Backlog,
    error::is_corruption,
    ids::Ids,
    query::QueryCache,
    rollup::Marks,
    schema::FileKind,
    write::{Counters, Pending, PendingIface},
};

/// How often the daemon should write a batch. Size follows rows: a row per process, remote
/// and service per interval costs about 33 bytes, so 1000 busy sockets cost ~45 MiB per day in
/// the interval tier at 60 s but ~270 MiB at 10 s. The live views (`kaipo watch`, the
/// dashboard) keep their own one-second figures in memory; history does not need them.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_secs(60);

/// How long a connection waits for a lock held by another one (a checkpoint, the reader's
/// snapshot setup) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Leeway past the longest interval before a minute counts as closed: the batch that started
/// in it may be written a moment after the minute ended. Rows that come later still count.
const ROLLUP_SLACK_MS: i64 = 1000;

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
}

fn db_err<'a>(
    path: &'a Path,
    context: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |e| {
        if is_corruption(&e) {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        } else {
            StoreError::sqlite(path, context, e)
        }
    }
}

impl Store {
    /// Opens the history at `path` for writing, creating the directory and the file (mode
    /// 0640) when missing and upgrading an older layout. A damaged file or another program's
    /// database is moved aside (never deleted) and a fresh one started; the note says so.
    pub fn open(
        path: impl AsRef<Path>,
        retention: &Retention,
    ) -> Result<(Store, OpenNote), StoreError> {
        let path = path.as_ref();
        let created = file::create(path)?;
        // Look with a read-only connection first: a read-write one would checkpoint or delete
        // a -wal file on close, and that may hold the only copy of the last commits.
        let unusable = match Self::inspect(path)?.1 {
            FileKind::Foreign(detail) => Some(format!("not kaipo's: {detail}")),
            FileKind::Damaged(detail) => Some(format!("damaged: {detail}")),
            FileKind::Empty | FileKind::Kaipo { .. } => None,
        };
        let reason = match unusable {
            None => match Self::open_writer(path, retention) {
                Ok((store, _)) if created => return Ok((store, OpenNote::Created)),
                // Damage found only further in, while upgrading or reading the marks.
                Err(StoreError::Corrupt { detail, .. }) => format!("damaged: {detail}"),
                other => return other,
            },
            Some(reason) => reason,
        };
        let moved_to = file::move_aside(path)?;
        log::warn!(
            "{}: {reason}; moved to {}",
            path.display(),
            moved_to.display()
        );
        file::create(path)?;
        let (store, _) = Self::open_writer(path, retention)?;
        Ok((store, OpenNote::Replaced { moved_to, reason }))
    }

    /// Opens read-only and says what the file is; content SQLite cannot read shows as
    /// [`FileKind::Damaged`].
    fn inspect(path: &Path) -> Result<(Connection, FileKind), StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(db_err(path, "opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err(path, "setting the busy timeout"))?;
        let kind = match schema::classify(&conn) {
            Ok(kind) => kind,
            Err(e) if is_corruption(&e) => FileKind::Damaged(e.to_string()),
            Err(e) => return Err(db_err(path, "reading the header")(e)),
        };
        Ok((conn, kind))
    }

    fn open_writer(path: &Path, retention: &Retention) -> Result<(Store, OpenNote), StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(db_err(path, "opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err(path, "setting the busy timeout"))?;
        let kind = schema::classify(&conn).map_err(db_err(path, "reading the header"))?;
        let version = match kind {
            FileKind::Empty => 0,
            FileKind::Kaipo { version } if version > SCHEMA_VERSION => {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found: version,
                    supported: SCHEMA_VERSION,
                })
            }
            FileKind::Kaipo { version } => version,
            FileKind::Foreign(detail) => {
                return Err(StoreError::Foreign {
                    path: path.to_path_buf(),
                    detail,
                })
            }
            FileKind::Damaged(detail) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail,
                })
            }
        };
        // NORMAL is durable against a crash of kaipo (SIGKILL, panic) in WAL mode; only a
        // power cut can lose the last commits, and never consistency.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA journal_size_limit = 67108864;",
        )
        .map_err(db_err(path, "switching to WAL mode"))?;
        conn.set_prepared_statement_cache_capacity(64);
        let note = {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err(path, "starting the schema update"))?;
            let note = match version {
                0 => schema::create(&tx).map(|()| OpenNote::Created),
                SCHEMA_VERSION => Ok(OpenNote::Opened),
                from => schema::upgrade(&tx, from).map(|()| OpenNote::Upgraded { from }),
            };
            let note = note.map_err(db_err(path, "creating or upgrading the schema"))?;
            tx.commit().map_err(db_err(path, "committing the schema"))?;
            note
        };
        let marks = Marks::load(&conn).map_err(db_err(path, "reading the rollup marks"))?;
        Ok((Self::new(conn, path, false, retention.clone(), marks), note))
    }

    /// Opens the history at `path` for queries only; works while the daemon writes. Never
    /// changes the file, even when it is damaged.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let (conn, kind) = Self::inspect(path)?;
        let p = path.to_path_buf();
        match kind {
            FileKind::Empty => return Err(StoreError::NotFound { path: p }),
            FileKind::Foreign(detail) => return Err(StoreError::Foreign { path: p, detail }),
            FileKind::Damaged(detail) => return Err(StoreError::Corrupt { path: p, detail }),
            FileKind::Kaipo { version } if version != SCHEMA_VERSION => {
                let (found, supported) = (version, SCHEMA_VERSION);
                return Err(if version > SCHEMA_VERSION {
                    StoreError::TooNew {
                        path: p,
                        found,
                        supported,
                    }
                } else {
                    StoreError::NeedsUpgrade {
                        path: p,
                        found,
                        supported,
                    }
                });
            }
            FileKind::Kaipo { .. } => {}
        }
        let marks = Marks::load(&conn).map_err(db_err(path, "reading the rollup marks"))?;
        Ok(Self::new(conn, path, true, Retention::default(), marks))
    }

    fn new(
        conn: Connection,
        path: &Path,
        read_only: bool,
        retention: Retention,
        marks: Marks,
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
        }
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
    /// visible to queries until written.
    pub fn write(&mut self, batch: &IntervalBatch) -> Result<(), StoreError> {
        self.require_writable()?;
        write::validate(batch).map_err(StoreError::InvalidBatch)?;
        self.cache.clear();
        self.max_interval_ms = self.max_interval_ms.max(i64::from(batch.interval_ms));
        let start_s = (batch.ts_ms - i64::from(batch.interval_ms)).div_euclid(1000);
        let retrying = !self.backlog.is_empty();
        if retrying {
            self.backlog.add(start_s, batch);
        }
        let path = &self.path;
        let result = (|| {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            if retrying {
                let (traffic, ifaces) = self.backlog.rows();
                write::store_rows(&tx, &mut self.ids, &self.marks, traffic, ifaces)?;
            } else {
                let traffic = batch.traffic.iter().map(|r| Pending::of_row(start_s, r));
                let ifaces = batch.interfaces.iter().map(|r| PendingIface {
                    ts: start_s,
                    name: &r.name,
                    counters: Counters::of_iface(r),
                });
                write::store_rows(&tx, &mut self.ids, &self.marks, traffic, ifaces)?;
            }
            tx.commit()
        })()
        .map_err(db_err(path, "writing an interval"));
        match result {
            Ok(()) => {
                self.backlog.clear();
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                // Ids handed out inside the rolled back transaction do not exist.
                self.ids.clear();
                if !retrying {
                    self.backlog.add(start_s, batch);
                }
                self.last_error = Some(e.to_string());
                Err(StoreError::Held {
                    held_rows: self.backlog.len(),
                    dropped_rows: self.backlog.dropped_rows(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// Rolls up buckets that closed by `now_ms` and applies retention, in one transaction.
    /// Returns at once, touching nothing, unless a minute closed since the last call, so the
    /// daemon can call it after every write.
    pub fn maintain(&mut self, now_ms: i64) -> Result<MaintainStats, StoreError> {
        self.require_writable()?;
        let grace = self.max_interval_ms.saturating_add(ROLLUP_SLACK_MS);
        let closed_minute = now_ms.saturating_sub(grace).div_euclid(60_000);
        if closed_minute <= self.marks.rolled(Tier::Minute) {
            return Ok(MaintainStats::default());
        }
        let mut marks = self.marks;
        let path = &self.path;
        let stats = (|| {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let now_s = now_ms.div_euclid(1000);
            let stats = rollup::run(&tx, &mut marks, &self.retention, now_s, closed_minute)?;
            tx.commit()?;
            Ok(stats)
        })()
        .map_err(db_err(path, "rolling up history"))?;
        self.marks = marks;
        self.cache.clear();
        Ok(stats)
    }

    /// Answers a history question in the tier that suits its range (rules in `query`).
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
            let report = query::run(&tx, q, forced)?;
            tx.commit()?;
            Ok(report)
        })()
        .map_err(db_err(path, "querying"))?;
        self.cache.put(key, report.clone());
        Ok(report)
    }
}
