//! One writer per database: the daemon holds an advisory lock on `<db>.lock` for its whole
//! life. Two daemons writing one file would each add the same traffic (every packet stored
//! twice); SQLite's own locks only keep their transactions apart.
//!
//! The lock is `flock(2)` on a file of its own, not on the database: the database may be
//! moved aside (damage) and replaced while the daemon runs, and SQLite's POSIX locks on it
//! are released by any close of the file in the process. The lock file holds the holder's pid
//! so that the one refused can say who holds it. It is never removed while in use: removing it
//! would let a third daemon lock a new file beside the held one.

use std::{
    fs::{File, OpenOptions},
    io::{self, ErrorKind, Read as _, Seek as _, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::{file::with_suffix, StoreError, FILE_MODE};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct HistoryLock {
    _file: File,
    path: PathBuf,
    created: bool,
}

impl HistoryLock {
    /// Locks the database at `db` for this process, or says which daemon holds it. The folder
    /// must exist. On a read-only filesystem where the lock file cannot be created, the folder
    /// itself is locked: a daemon started there still keeps a second one away.
    pub fn acquire(db: &Path) -> Result<HistoryLock, StoreError> {
        let path = with_suffix(db, ".lock");
        let lock_err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let (file, created, writable) = match open_lock_file(&path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => {
                let dir = db
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                (File::open(dir).map_err(lock_err)?, false, false)
            }
            Err(e) => return Err(lock_err(e)),
        };
        // SAFETY: flock on a descriptor this function owns; LOCK_NB never blocks.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::WouldBlock {
                return Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    pid: holder_pid(&path),
                });
            }
            return Err(lock_err(e));
        }
        let mut file = file;
        if writable {
            // Best effort: the pid only makes the refusal's message better.
            let _ = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()));
        }
        Ok(HistoryLock {
            _file: file,
            path,
            created,
        })
    }

    /// The lock file (`<db>.lock`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this lock created its file (a start that fails removes it again).
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Opens (creating if needed, mode 0640) the lock file; read-only when it exists on a
/// read-only filesystem. Returns the file, whether it was created, and whether it is writable.
fn open_lock_file(path: &Path) -> io::Result<(File, bool, bool)> {
    let mut create = OpenOptions::new();
    create
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE);
    match create.open(path) {
        Ok(file) => return Ok((file, true, true)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem && path.exists() => {}
        Err(e) => return Err(e),
    }
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => Ok((file, false, true)),
        Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => {
            Ok((File::open(path)?, false, false))
        }
        Err(e) => Err(e),
    }
}

/// The pid the holder wrote into the lock file, if it is there and still running.
fn holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = TempDir::new("lock");
        let first = HistoryLock::acquire(&dir.db()).expect("the first lock");
        assert!(first.created());
        assert_eq!(
            fs::read_to_string(first.path()).expect("the lock file"),
            format!("{}\n", std::process::id())
        );
        // flock locks belong to an open file, so a second open in this process conflicts
        // just as another daemon's would.
        let err = HistoryLock::acquire(&dir.db()).expect_err("a second lock");
        let StoreError::Locked { pid, .. } = &err else {
            panic!("expected Locked, got {err:?}");
        };
        assert_eq!(*pid, Some(std::process::id()));
        assert!(
            err.to_string()
                .contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        let again = HistoryLock::acquire(&dir.db()).expect("free again");
        assert!(!again.created(), "the file is reused");
        assert!(!dir.db().exists(), "locking creates no database");
    }
}
