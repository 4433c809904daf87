//! What can go wrong with the history database, each with what the user can do about it.

use std::{io, path::PathBuf};

use rusqlite::ErrorCode;

/// Each message names its cause once: a variant with a `source` leaves it to the error chain
/// (`{:#}` prints it), and the SQLite and held variants, whose text the daemon's status shows
/// alone, say their cause in the message and end the chain there (rusqlite's own chain would
/// repeat the same words twice more).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the history directory {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot create the history database {path}")]
    CreateFile { path: PathBuf, source: io::Error },
    #[error("no history database at {path}; start the kaipo daemon to record history")]
    NotFound { path: PathBuf },
    #[error(
        "{path} is not a kaipo history database ({detail}); point kaipo at another file, or \
         move this one away and let the daemon start a fresh one"
    )]
    Foreign { path: PathBuf, detail: String },
    #[error(
        "the history database {path} is damaged ({detail}); the kaipo daemon moves it aside \
         (beside it, as .corrupt-<unix time>; never deleted) and starts a fresh one"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the history database {path} has schema version {found}, newer than this kaipo \
         understands ({supported}); upgrade kaipo"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "the history database {path} has schema version {found}, older than this kaipo reads \
         ({supported}); start the kaipo daemon once to upgrade it"
    )]
    NeedsUpgrade {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("cannot move the damaged history database {path} aside to {to}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("history database {path}: {context}: {cause}{}", hint(.cause))]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        cause: rusqlite::Error,
    },
    #[error("the history database {path} is open read-only; only the daemon writes history")]
    ReadOnly { path: PathBuf },
    #[error(
        "another kaipo daemon{} is recording history in {path}; stop it first, or give this \
         one another --db",
        holder(*.pid)
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock {path} for this daemon")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "the history database {path} cannot be written yet ({reason}); history is held in \
         memory until it can"
    )]
    NotOpen { path: PathBuf, reason: String },
    #[error("cannot read the database key {key_file}: {detail}; nothing was changed")]
    KeyFile { key_file: PathBuf, detail: String },
    #[error(
        "cannot read the history database {path} with the key from {key_file}: the key is \
         wrong, or the file is not an encrypted kaipo database; nothing was changed (the file \
         is left as it is)"
    )]
    WrongKey { path: PathBuf, key_file: PathBuf },
    #[error(
        "the history database {path} is not encrypted, but a key is set ({key_file}); encrypt \
         it with `kaipo store encrypt --db {path}`, or remove [storage] encryption_key_file; \
         nothing was changed"
    )]
    NotEncrypted { path: PathBuf, key_file: PathBuf },
    #[error(
        "the history database {path} is not a plain SQLite file: it is encrypted (set [storage] \
         encryption_key_file to its key) or damaged"
    )]
    EncryptedOrDamaged { path: PathBuf },
    #[error("cannot convert the history database {path}: {detail}; nothing was changed")]
    Convert { path: PathBuf, detail: String },
    #[error("invalid interval batch: {0}")]
    InvalidBatch(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The write failed, but nothing was lost: the rows wait in memory (see
    /// [`super::Store::backlog_len`]) and go out with the next write that succeeds.
    #[error(
        "{error}; {held_rows} rows of history are held in memory and will be written as soon \
         as the database accepts writes again{}",
        dropped_note(*.dropped_rows)
    )]
    Held {
        held_rows: usize,
        /// Rows dropped so far because the held rows reached their bound.
        dropped_rows: u64,
        error: Box<StoreError>,
    },
}

impl StoreError {
    pub(crate) fn sqlite(
        path: &std::path::Path,
        context: &'static str,
        e: rusqlite::Error,
    ) -> Self {
        Self::Sqlite {
            path: path.to_path_buf(),
            context,
            cause: e,
        }
    }

    /// The SQLite error underneath, if there is one.
    pub fn sqlite_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Sqlite { cause, .. } => cause.sqlite_error_code(),
            Self::Held { error, .. } => error.sqlite_code(),
            _ => None,
        }
    }

    /// True when the database ran out of space (disk, filesystem quota or size limit).
    pub fn is_full(&self) -> bool {
        self.sqlite_code() == Some(ErrorCode::DiskFull)
    }

    /// True when the file could not be created or written because its filesystem is full or
    /// read-only: a state that may pass, unlike a damaged or foreign file.
    pub fn is_unwritable(&self) -> bool {
        let io_kind = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::ReadOnlyFilesystem
                    | io::ErrorKind::StorageFull
                    | io::ErrorKind::QuotaExceeded
            )
        };
        match self {
            Self::CreateDir { source, .. } | Self::CreateFile { source, .. } => io_kind(source),
            Self::Held { error, .. } => error.is_unwritable(),
            _ => matches!(
                self.sqlite_code(),
                Some(ErrorCode::DiskFull | ErrorCode::ReadOnly)
            ),
        }
    }
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Whether an SQLite error means the file's content cannot be trusted, rather than that it
/// cannot be reached.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// What to do about the common failures, appended to the message.
fn hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => " (the filesystem holding it is full: free some space)",
        Some(ErrorCode::ReadOnly) => {
            " (the file or its filesystem is read-only: check the mount and the file mode)"
        }
        Some(ErrorCode::SystemIoFailure) => " (I/O error: check the disk and the kernel log)",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another process holds the database locked: is a second kaipo daemon running?)"
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            " (cannot open it: check that the directory exists and the permissions allow access)"
        }
        _ => "",
    }
}

fn dropped_note(dropped: u64) -> String {
    if dropped == 0 {
        String::new()
    } else {
        format!(" ({dropped} rows were dropped because the memory set aside for them is full)")
    }
}
