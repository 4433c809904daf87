//! Opening the database: as the daemon's writer (creating, upgrading, or replacing an unusable
//! file) or as a report's reader (never changing anything).

use std::{path::Path, sync::Arc};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{
    error::is_corruption,
    file, key,
    minutes::MinuteSums,
    rollup::Marks,
    schema::{self, FileKind},
    OpenNote, Retention, Store, StoreError, StoreKey, BUSY_TIMEOUT, SCHEMA_VERSION,
};

/// Maps an SQLite error to [`StoreError`], telling damage apart from everything else.
pub(crate) fn db_err<'a>(
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
        Self::open_with_key(path, retention, None)
    }

    /// [`Store::open`] of a database encrypted with `key` (or not, for None). A wrong key, or
    /// a key for a file that is not encrypted, is an error that changes nothing: such a file
    /// is never taken for damage.
    pub fn open_with_key(
        path: impl AsRef<Path>,
        retention: &Retention,
        key: Option<Arc<StoreKey>>,
    ) -> Result<(Store, OpenNote), StoreError> {
        let path = path.as_ref();
        key::check(path, key.as_deref())?;
        let mut opened = Self::open_keyed(path, retention, key.as_deref())?;
        opened.0.key = key;
        Ok(opened)
    }

    fn open_keyed(
        path: &Path,
        retention: &Retention,
        key: Option<&StoreKey>,
    ) -> Result<(Store, OpenNote), StoreError> {
        let created = file::create(path)?;
        // A header can be sound over damaged tables, and damage found only by a write would
        // fail every batch; so every page is read once here (`quick_check`: 0.3 s for a 200 MB
        // file in the page cache on a small VM, plus reading the file once from a cold disk),
        // before a writer opens.
        // Look with a read-only connection first: a read-write one would checkpoint or delete
        // a -wal file on close, and that may hold the only copy of the last commits.
        let (conn, kind) = Self::inspect(path, key)?;
        let unusable = match kind {
            FileKind::Foreign(detail) => Some(format!("not kaipo's: {detail}")),
            FileKind::Damaged(detail) => Some(format!("damaged: {detail}")),
            FileKind::Kaipo { .. } => match schema::quick_check(&conn) {
                Ok(None) => None,
                Ok(Some(problems)) => Some(format!("damaged: {problems}")),
                Err(e) if is_corruption(&e) => Some(format!("damaged: {e}")),
                Err(e) => return Err(db_err(path, "checking the file")(e)),
            },
            FileKind::Empty => None,
        };
        drop(conn);
        // Without a key, an encrypted file cannot be told from noise: say what it may be.
        let unusable = unusable.map(|reason| {
            if key.is_none() && key::is_plain(path) == Some(false) {
                format!(
                    "{reason}; if it is an encrypted kaipo database, move it back and set \
                     [storage] encryption_key_file"
                )
            } else {
                reason
            }
        });
        let reason = match unusable {
            None => match Self::open_writer(path, retention, key) {
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
        let (store, _) = Self::open_writer(path, retention, key)?;
        Ok((store, OpenNote::Replaced { moved_to, reason }))
    }

    /// Like [`Store::open`], but a filesystem that is read-only or full does not stop the
    /// daemon: the store starts with nothing open, holds what it is given in memory (see
    /// `backlog`) and opens the file with the first write that can. The note says so.
    pub fn open_or_hold(
        path: impl AsRef<Path>,
        retention: &Retention,
        key: Option<Arc<StoreKey>>,
    ) -> Result<(Store, OpenNote), StoreError> {
        let path = path.as_ref();
        match Self::open_with_key(path, retention, key.clone()) {
            Ok(opened) => Ok(opened),
            Err(e) if e.is_unwritable() || file::filesystem_unwritable(path) => {
                let reason = e.to_string();
                let conn = Connection::open_in_memory().map_err(db_err(path, "opening"))?;
                let mut store = Self::new(
                    conn,
                    path,
                    false,
                    retention.clone(),
                    Marks::default(),
                    MinuteSums::new(None),
                );
                store.unopened = Some(reason.clone());
                store.last_error = Some(reason.clone());
                store.key = key;
                Ok((store, OpenNote::Held { reason }))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the file of a store started by [`Store::open_or_hold`], keeping what it holds.
    pub(crate) fn open_held(&mut self) -> Result<(), StoreError> {
        let (fresh, note) = Self::open_with_key(&self.path, &self.retention, self.key.clone())?;
        self.adopt(fresh);
        log::info!("history database {}: {note}", self.path.display());
        // Said even when plain, to replace the note that history was held.
        self.note = Some(note);
        Ok(())
    }

    /// Moves the damaged file aside and starts a fresh one, keeping the held rows. When the
    /// fresh one cannot be opened, the store waits for it as [`Store::open_or_hold`] does.
    pub(crate) fn replace_damaged(&mut self, reason: String) -> Result<(), StoreError> {
        let path = self.path.clone();
        // The connection lets go of the file (and its -wal and -shm) before they move.
        let placeholder = Connection::open_in_memory().map_err(db_err(&path, "opening"))?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        self.unopened = Some(reason.clone());
        let moved_to = file::move_aside(&path)?;
        log::warn!(
            "{}: {reason}; moved to {}",
            path.display(),
            moved_to.display()
        );
        self.note = Some(OpenNote::Replaced { moved_to, reason });
        file::create(&path)?;
        let (fresh, _) = Self::open_writer(&path, &self.retention, self.key.as_deref())?;
        self.adopt(fresh);
        Ok(())
    }

    /// Takes the connection and what was read from the file of `fresh`; the held rows, the
    /// counts and the settings stay.
    fn adopt(&mut self, fresh: Store) {
        self.conn = fresh.conn;
        self.marks = fresh.marks;
        self.minutes = fresh.minutes;
        self.ids.clear();
        self.cache.clear();
        self.unopened = None;
    }

    /// Opens read-only and says what the file is; content SQLite cannot read shows as
    /// [`FileKind::Damaged`].
    fn inspect(path: &Path, key: Option<&StoreKey>) -> Result<(Connection, FileKind), StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(db_err(path, "opening"))?;
        if let Some(key) = key {
            key.apply(&conn).map_err(db_err(path, "setting the key"))?;
        }
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err(path, "setting the busy timeout"))?;
        let kind = match schema::classify(&conn) {
            Ok(kind) => kind,
            Err(e) if is_corruption(&e) => FileKind::Damaged(e.to_string()),
            Err(e) => return Err(db_err(path, "reading the header")(e)),
        };
        Ok((conn, kind))
    }

    pub(super) fn open_writer(
        path: &Path,
        retention: &Retention,
        key: Option<&StoreKey>,
    ) -> Result<(Store, OpenNote), StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(db_err(path, "opening"))?;
        if let Some(key) = key {
            key.apply(&conn).map_err(db_err(path, "setting the key"))?;
        }
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
        // power cut can lose the last commits, and never consistency. Checkpoints every 200
        // pages (SQLite's default is 1000): the same pages are copied either way, but a busy
        // interval (about 40 pages) then never pays for 25 intervals' worth at once.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA journal_size_limit = 67108864; PRAGMA wal_autocheckpoint = 200;",
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
        let last_ts =
            MinuteSums::last_ts(&conn).map_err(db_err(path, "reading the interval tier"))?;
        let minutes = MinuteSums::new(last_ts);
        Ok((
            Self::new(conn, path, false, retention.clone(), marks, minutes),
            note,
        ))
    }

    /// Opens the history at `path` for queries only; works while the daemon writes. Never
    /// changes the file, even when it is damaged.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Self::open_read_only_with_key(path, None)
    }

    /// [`Store::open_read_only`] of a database encrypted with `key` (or not, for None).
    pub fn open_read_only_with_key(
        path: impl AsRef<Path>,
        key: Option<&StoreKey>,
    ) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            });
        }
        match key {
            Some(_) => key::check(path, key)?,
            None => key::check_unkeyed_reader(path)?,
        }
        let (conn, kind) = Self::inspect(path, key)?;
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
        Ok(Self::new(
            conn,
            path,
            true,
            Retention::default(),
            marks,
            MinuteSums::new(None),
        ))
    }
}
