//! The database file itself: creating it with the right mode, and moving a damaged one aside.

use std::{
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use super::StoreError;

/// History says who talked to whom: readable by root and the group, nobody else.
pub const FILE_MODE: u32 = 0o640;
#[cfg(unix)]
const DIR_MODE: u32 = 0o750;

/// SQLite's companion files in WAL mode; they belong to the database file and move with it.
const COMPANIONS: [&str; 2] = ["-wal", "-shm"];

/// Creates the directory and an empty file if missing; true when the file was created.
pub fn create(path: &Path) -> Result<bool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
            builder
                .create(dir)
                .map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file_err = |source| StoreError::CreateFile {
        path: path.to_path_buf(),
        source,
    };
    match options.open(path) {
        Ok(file) => {
            // The umask may have taken bits away; the mode is a promise, so set it exactly.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                    .map_err(file_err)?;
            }
            #[cfg(not(unix))]
            drop(file);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(file_err(e)),
    }
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Renames `path` (and its `-wal` and `-shm` files, so the moved copy stays readable) to
/// `<path>.corrupt-<unix time>`, never overwriting an earlier one. Returns the new path.
pub fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut to = with_suffix(path, &format!(".corrupt-{secs}"));
    let mut n = 1;
    while to.exists() || COMPANIONS.iter().any(|c| with_suffix(&to, c).exists()) {
        to = with_suffix(path, &format!(".corrupt-{secs}-{n}"));
        n += 1;
    }
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|source| StoreError::MoveAside {
            path: from.to_path_buf(),
            to: to.to_path_buf(),
            source,
        })
    };
    rename(path, &to)?;
    for c in COMPANIONS {
        let companion = with_suffix(path, c);
        if companion.exists() {
            rename(&companion, &with_suffix(&to, c))?;
        }
    }
    Ok(to)
}

/// Whether the filesystem that holds (or would hold) `path` is mounted read-only or has no
/// space left for unprivileged writers: SQLite does not always say so in its error codes (a
/// read-only mount can show as "unable to open").
#[cfg(unix)]
pub(crate) fn filesystem_unwritable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Some(existing) = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
    else {
        return false;
    };
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs fills the zeroed struct; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_flag & libc::ST_RDONLY != 0 || st.f_bavail == 0
}

/// Elsewhere (Windows, where no daemon runs) SQLite's error codes are all there is.
#[cfg(not(unix))]
pub(crate) fn filesystem_unwritable(_path: &Path) -> bool {
    false
}
