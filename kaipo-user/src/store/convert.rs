//! `kaipo store encrypt|decrypt`: rewriting the history database with or without its key,
//! every row kept (counted in both files before the new one replaces the old).
//!
//! The daemon must not run on the file: the history lock says so. The new file is written
//! beside the old one (`PATH.converting`), checked table by table, given the old one's owner
//! and mode, and renamed over it; until that rename the old file is untouched.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OpenFlags};

use super::{
    key::{self, StoreKey},
    open::db_err,
    schema::{self, FileKind},
    HistoryLock, StoreError,
};

/// Which way to convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

/// What a conversion did: the rows of each table, equal in the old and the new file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub tables: Vec<(String, u64)>,
}

impl Converted {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn invalid(path: &Path, detail: String) -> StoreError {
    StoreError::Convert {
        path: path.to_owned(),
        detail,
    }
}

/// Rows of every table of schema `db` ("main" or "converted").
fn counts(conn: &Connection, db: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut names: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM {db}.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let n: i64 = conn.query_row(
                &format!(
                    "SELECT count(*) FROM {db}.\"{}\"",
                    name.replace('"', "\"\"")
                ),
                [],
                |r| r.get(0),
            )?;
            Ok((name, n as u64))
        })
        .collect()
}

/// Encrypts or decrypts the database at `path` with `key`.
pub fn convert(path: &Path, key: &StoreKey, direction: Direction) -> Result<Converted, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound {
            path: path.to_owned(),
        });
    }
    let lock = HistoryLock::acquire(path)?;
    let result = convert_locked(path, key, direction);
    let created = lock.created().then(|| lock.path().to_owned());
    drop(lock);
    if let Some(lock_file) = created {
        let _ = fs::remove_file(lock_file);
    }
    result
}

fn convert_locked(
    path: &Path,
    key: &StoreKey,
    direction: Direction,
) -> Result<Converted, StoreError> {
    match (direction, key::is_plain(path)) {
        (_, None) => {
            return Err(StoreError::NotFound {
                path: path.to_owned(),
            })
        }
        (Direction::Encrypt, Some(false)) => {
            return Err(invalid(
                path,
                "it is already encrypted, or not an SQLite database at all".into(),
            ))
        }
        (Direction::Decrypt, Some(true)) => {
            return Err(invalid(path, "it is not encrypted".into()));
        }
        (Direction::Decrypt, Some(false)) => key::check(path, Some(key))?,
        (Direction::Encrypt, Some(true)) => {}
    }
    let err = |context| db_err(path, context);
    // CREATE for the attached file: the main one exists (checked above).
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err("opening"))?;
    if direction == Direction::Decrypt {
        key.apply(&conn).map_err(err("setting the key"))?;
    }
    match schema::classify(&conn).map_err(err("reading the header"))? {
        FileKind::Kaipo { .. } => {}
        FileKind::Empty => {
            return Err(StoreError::NotFound {
                path: path.to_owned(),
            })
        }
        FileKind::Foreign(detail) => {
            return Err(invalid(
                path,
                format!("not a kaipo history database ({detail})"),
            ))
        }
        FileKind::Damaged(detail) => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                detail,
            })
        }
    }
    // Everything in the main file, so that the -wal holds nothing the new file would miss.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(err("checkpointing"))?;
    let target = with_suffix(path, ".converting");
    let _ = fs::remove_file(&target);
    let target_str = target
        .to_str()
        .ok_or_else(|| invalid(path, "its path is not UTF-8".into()))?;
    // The key travels as a bound value, never in SQL text; empty means no encryption.
    let new_key: &[u8] = match direction {
        Direction::Encrypt => key.secret(),
        Direction::Decrypt => b"",
    };
    conn.execute(
        "ATTACH DATABASE ?1 AS converted KEY ?2",
        rusqlite::params![target_str, new_key],
    )
    .map_err(err("creating the converted file"))?;
    type Counts = Vec<(String, u64)>;
    let exported = (|| -> rusqlite::Result<(Counts, Counts)> {
        conn.query_row("SELECT sqlcipher_export('converted')", [], |_| Ok(()))?;
        // sqlcipher_export copies tables and rows; the header fields kaipo reads go too.
        let app_id: i32 = conn.query_row("PRAGMA main.application_id", [], |r| r.get(0))?;
        let version: i64 = conn.query_row("PRAGMA main.user_version", [], |r| r.get(0))?;
        conn.execute_batch(&format!(
            "PRAGMA converted.application_id = {app_id}; PRAGMA converted.user_version = {version};"
        ))?;
        Ok((counts(&conn, "main")?, counts(&conn, "converted")?))
    })();
    let detached = conn.execute_batch("DETACH DATABASE converted");
    let (before, after) = match exported {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&target);
            return Err(err("copying every table")(e));
        }
    };
    detached.map_err(err("closing the converted file"))?;
    if before != after {
        let _ = fs::remove_file(&target);
        return Err(invalid(
            path,
            format!(
                "the converted copy does not hold the same rows ({before:?} against {after:?})"
            ),
        ));
    }
    drop(conn);
    // The last connection closed: SQLite removed the -wal and -shm. Should one remain, it
    // would be replayed into the new file on the next open.
    for companion in ["-wal", "-shm"] {
        let c = with_suffix(path, companion);
        if c.exists() && fs::metadata(&c).is_ok_and(|m| m.len() > 0) && companion == "-wal" {
            let _ = fs::remove_file(&target);
            return Err(invalid(
                path,
                format!("{} is still there after closing", c.display()),
            ));
        }
        let _ = fs::remove_file(&c);
    }
    let meta = fs::metadata(path).map_err(|source| StoreError::CreateFile {
        path: target.clone(),
        source,
    })?;
    let place = |r: std::io::Result<()>| {
        r.map_err(|source| StoreError::CreateFile {
            path: target.clone(),
            source,
        })
    };
    place(fs::set_permissions(
        &target,
        fs::Permissions::from_mode(meta.mode() & 0o7777),
    ))?;
    // The same owner and group where this process may give them (root may; the owner
    // converting their own file keeps them anyway).
    let _ = std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid()));
    place(fs::File::open(&target).and_then(|f| f.sync_all()))?;
    place(fs::rename(&target, path))?;
    Ok(Converted { tables: after })
}
