//! The daemon's side of the store: opening it with the daemon's file ownership, and the
//! [`History`] the store worker drives.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::store_worker::History;
use crate::store::{
    HistoryLock, IntervalBatch, OpenNote, Query, Report, Retention, Store, FILE_MODE,
};

impl History for Store {
    fn write(&mut self, batch: &IntervalBatch) -> Result<(), String> {
        Store::write(self, batch).map_err(|e| e.to_string())
    }

    fn maintain(&mut self, now_ms: i64) -> Result<(), String> {
        Store::maintain(self, now_ms)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn query(&mut self, query: &Query) -> Result<Report, String> {
        Store::query(self, query).map_err(|e| e.to_string())
    }

    fn backlog_len(&self) -> usize {
        Store::backlog_len(self)
    }

    fn set_names(&mut self, names: crate::config::names::SharedNames) {
        Store::set_names(self, names);
    }

    fn take_note(&mut self) -> Option<String> {
        let note = Store::take_note(self)?;
        Some(format!(
            "history database {}: {note}",
            self.path().display()
        ))
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Files and folders this start created, removed again when the start fails (an interface
/// that does not exist, a port in use) so that a daemon that never ran leaves nothing behind.
/// Whatever was there before is never touched.
#[derive(Debug, Default)]
pub struct StartFiles {
    files: Vec<PathBuf>,
    /// Outermost first.
    dirs: Vec<PathBuf>,
    kept: bool,
}

impl StartFiles {
    /// Folders created for something else this start makes (the socket's), outermost first.
    pub fn add_dirs(&mut self, dirs: Vec<PathBuf>) {
        self.dirs.extend(dirs);
    }

    /// The daemon started: everything created stays.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for StartFiles {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
        // Innermost first, and only when empty: something else may have appeared in them.
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The history as the daemon holds it while it runs.
pub struct Opened {
    pub store: Store,
    /// What opening had to say when it is worth saying (a damaged file moved aside, an
    /// upgrade, a file that cannot be written yet).
    pub note: Option<String>,
    /// Keeps a second daemon off this database.
    pub lock: HistoryLock,
    pub files: StartFiles,
}

/// Locks and opens (or creates) the history. When group `kaipo` exists, a folder created here
/// and the database belong to it, so its members can also read history with `kaipo report
/// --db`; the database is 0640 either way. A second daemon on the same database is refused
/// before anything is changed. A read-only or full filesystem does not stop the start: the
/// store holds history in memory until it can write it.
pub fn open(
    path: &Path,
    group: Option<u32>,
    key: Option<std::sync::Arc<crate::store::StoreKey>>,
) -> anyhow::Result<Opened> {
    let mut files = StartFiles::default();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            files.dirs = super::create_parents(path)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
                .with_context(|| format!("setting the mode of {}", dir.display()))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(dir, None, Some(gid))
                    .with_context(|| format!("giving {} to group kaipo", dir.display()))?;
            }
        }
    }
    let lock = HistoryLock::acquire(path)?;
    if lock.created() {
        files.files.push(lock.path().to_owned());
    }
    let companions = [
        path.to_owned(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ];
    if !path.exists() {
        files.files.extend(companions.iter().cloned());
    }
    // The store's errors name the database and what failed.
    let (store, note) = Store::open_or_hold(path, &Retention::default(), key)?;
    if store.is_open() {
        // WAL mode's companions are created by SQLite with the database's mode and owner.
        for file in &companions {
            if !file.exists() {
                continue;
            }
            fs::set_permissions(file, fs::Permissions::from_mode(FILE_MODE))
                .with_context(|| format!("setting the mode of {}", file.display()))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(file, None, Some(gid))
                    .with_context(|| format!("giving {} to group kaipo", file.display()))?;
            }
        }
    }
    let note = match note {
        OpenNote::Opened => None,
        OpenNote::Created => {
            log::info!("created the history database {}", path.display());
            None
        }
        other => Some(format!("history database {}: {other}", path.display())),
    };
    Ok(Opened {
        store,
        note,
        lock,
        files,
    })
}
