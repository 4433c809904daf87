//! The key of an encrypted history database (`[storage] encryption_key_file`): SQLCipher,
//! AES-256 in CBC mode with an HMAC per page, the whole file including its header.
//!
//! The key file holds either 64 hex digits (a raw 256-bit key, used as it is) or a passphrase
//! (its first line; SQLCipher derives the key with PBKDF2, which costs a fraction of a second
//! per connection). `credential:NAME` reads the systemd credential NAME
//! (`$CREDENTIALS_DIRECTORY/NAME`, from `LoadCredential=` or `LoadCredentialEncrypted=`).
//! kaipo keeps the key in one buffer, wiped when the store that uses it is dropped; it is
//! handed to SQLCipher through `sqlite3_key`, never through SQL text.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
};

use rusqlite::Connection;
use zeroize::Zeroizing;

use super::StoreError;

/// The first 16 bytes of every unencrypted SQLite database.
pub const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A database key, read from its file. Wiped from memory when dropped.
pub struct StoreKey {
    #[cfg_attr(
        not(target_os = "linux"),
        expect(dead_code, reason = "only SQLCipher (Linux) takes a key")
    )]
    secret: Zeroizing<Vec<u8>>,
    /// Where it came from, for messages (never the key itself).
    source: PathBuf,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey(from {})", self.source.display())
    }
}

/// Where `setting` points: a file, or a systemd credential.
pub fn key_path(setting: &Path) -> Result<PathBuf, StoreError> {
    let Some(name) = setting.to_str().and_then(|s| s.strip_prefix("credential:")) else {
        return Ok(setting.to_owned());
    };
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Ok(Path::new(&dir).join(name)),
        None => Err(StoreError::KeyFile {
            key_file: setting.to_owned(),
            detail: "CREDENTIALS_DIRECTORY is not set: systemd credentials exist only for a \
                     service with LoadCredential= (or use the path of a key file)"
                .into(),
        }),
    }
}

impl StoreKey {
    /// Reads the key named by `setting` (a path or `credential:NAME`).
    pub fn load(setting: &Path) -> Result<StoreKey, StoreError> {
        let path = key_path(setting)?;
        let err = |detail: String| StoreError::KeyFile {
            key_file: path.clone(),
            detail,
        };
        let mut raw = Zeroizing::new(Vec::new());
        fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut raw))
            .map_err(|e| err(e.to_string()))?;
        let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
        let mut line = &raw[..line_end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() {
            return Err(err(
                "the file is empty; write 64 hex digits (for example: openssl rand -hex 32) or a \
                 passphrase on its first line"
                    .into(),
            ));
        }
        let mut secret = Zeroizing::new(Vec::with_capacity(line.len() + 3));
        if line.len() == 64 && line.iter().all(u8::is_ascii_hexdigit) {
            // SQLCipher's form for a raw key: x'…', no key derivation.
            secret.extend_from_slice(b"x'");
            secret.extend_from_slice(line);
            secret.push(b'\'');
        } else {
            secret.extend_from_slice(line);
        }
        Ok(StoreKey {
            secret,
            source: path,
        })
    }

    /// The key as SQLCipher takes it (raw `x'…'` form or passphrase).
    #[cfg(target_os = "linux")]
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The file the key came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Keys `conn`: the first thing done on a connection, before any read.
    #[cfg(target_os = "linux")]
    pub(crate) fn apply(&self, conn: &Connection) -> rusqlite::Result<()> {
        // SQLCipher logs a failed page check to stderr; kaipo says what it means instead.
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
        let len = libc::c_int::try_from(self.secret.len())
            .map_err(|_| rusqlite::Error::InvalidParameterName("key too long".into()))?;
        // SAFETY: the handle is this open connection's; SQLCipher copies the `len` bytes
        // behind the pointer before returning.
        let rc =
            unsafe { rusqlite::ffi::sqlite3_key(conn.handle(), self.secret.as_ptr().cast(), len) };
        if rc != rusqlite::ffi::SQLITE_OK {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rc),
                Some("setting the database key".into()),
            ));
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn apply(&self, _conn: &Connection) -> rusqlite::Result<()> {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
            Some("encryption at rest needs kaipo's Linux build (SQLCipher)".into()),
        ))
    }
}

/// Whether the file at `path` starts like an unencrypted SQLite database; None when it is
/// missing or empty (a new database).
pub fn is_plain(path: &Path) -> Option<bool> {
    let mut header = [0u8; 16];
    let mut f = fs::File::open(path).ok()?;
    let n = f.read(&mut header).ok()?;
    if n == 0 {
        return None;
    }
    Some(n == 16 && &header == PLAIN_HEADER)
}

/// For readers without a key: a file that is not plain SQLite but made of whole pages (as an
/// encrypted one always is) may be encrypted rather than damaged; say both.
pub(crate) fn check_unkeyed_reader(path: &Path) -> Result<(), StoreError> {
    let whole_pages = fs::metadata(path).is_ok_and(|m| m.len() >= 512 && m.len() % 512 == 0);
    match is_plain(path) {
        Some(false) if whole_pages => Err(StoreError::EncryptedOrDamaged {
            path: path.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Before anything is opened for writing or moved: with a key, the file must be encrypted
/// and the key must open it; a wrong key, or a plain file, is an error that changes nothing.
pub(crate) fn check(path: &Path, key: Option<&StoreKey>) -> Result<(), StoreError> {
    let Some(key) = key else {
        return Ok(());
    };
    match is_plain(path) {
        None => Ok(()),
        Some(true) => Err(StoreError::NotEncrypted {
            path: path.to_owned(),
            key_file: key.source.clone(),
        }),
        Some(false) => {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags)
                .map_err(super::open::db_err(path, "opening"))?;
            key.apply(&conn)
                .map_err(super::open::db_err(path, "setting the key"))?;
            match conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            }) {
                Ok(_) => Ok(()),
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
                    Err(StoreError::WrongKey {
                        path: path.to_owned(),
                        key_file: key.source.clone(),
                    })
                }
                Err(e) => Err(super::open::db_err(path, "reading with the key")(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kaipo-key-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hex_keys_are_raw_and_anything_else_a_passphrase() {
        let dir = scratch("forms");
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        fs::write(dir.join("hex"), format!("{hex}\n")).unwrap();
        let key = StoreKey::load(&dir.join("hex")).unwrap();
        assert_eq!(&key.secret[..], format!("x'{hex}'").as_bytes());
        fs::write(dir.join("pass"), "correct horse battery\r\nsecond line\n").unwrap();
        let key = StoreKey::load(&dir.join("pass")).unwrap();
        assert_eq!(&key.secret[..], b"correct horse battery");
        assert_eq!(
            format!("{key:?}"),
            format!("StoreKey(from {})", dir.join("pass").display())
        );
        fs::write(dir.join("empty"), "\n").unwrap();
        let err = StoreKey::load(&dir.join("empty")).unwrap_err().to_string();
        assert!(
            err.contains("the file is empty; write 64 hex digits"),
            "{err}"
        );
        let err = StoreKey::load(&dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "cannot read the database key {}: No such file or directory (os error 2); \
                 nothing was changed",
                dir.join("missing").display()
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
