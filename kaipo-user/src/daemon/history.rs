//! The daemon's side of the store: opening it with the daemon's file ownership, and the
//! [`History`] the store worker drives.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::store_worker::History;
use crate::store::{IntervalBatch, OpenNote, Query, Report, Retention, Store, FILE_MODE};

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
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens (or creates) the history. When group `kaipo` exists, a folder created here and the
/// database belong to it, so its members can also read history with `kaipo report --db`; the
/// database is 0640 either way. Returns what opening had to say when it is worth saying
/// (a damaged file moved aside, an upgrade).
pub fn open(path: &Path, group: Option<u32>) -> anyhow::Result<(Store, Option<String>)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            super::create_parents(path)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
                .with_context(|| format!("setting the mode of {}", dir.display()))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(dir, None, Some(gid))
                    .with_context(|| format!("giving {} to group kaipo", dir.display()))?;
            }
        }
    }
    // The store's errors name the database and what failed.
    let (store, note) = Store::open(path, &Retention::default())?;
    // WAL mode's companions are created by SQLite with the database's mode and owner.
    for file in [
        path.to_owned(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        if !file.exists() {
            continue;
        }
        fs::set_permissions(&file, fs::Permissions::from_mode(FILE_MODE))
            .with_context(|| format!("setting the mode of {}", file.display()))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&file, None, Some(gid))
                .with_context(|| format!("giving {} to group kaipo", file.display()))?;
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
    Ok((store, note))
}
