//! The dedicated user the daemon becomes once its programs are attached: looked up, given the
//! folders it writes to, and switched to with the capabilities it still needs.

use std::{
    ffi::CString,
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// The user `kaipo install-service` creates and the daemon becomes by default.
pub const DEFAULT_USER: &str = crate::config::DEFAULT_DAEMON_USER;

/// A user of this system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user named `name`, or None when there is none.
pub fn lookup(name: &str) -> io::Result<Option<Account>> {
    let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    crate::platform::with_name_buffer(|buf| {
        // SAFETY: an all-zero `passwd` is a valid value to be overwritten.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf` holds `buf.len()` bytes for
        // the strings getpwnam_r stores; only the ids are read from the result, before `pw`
        // or `buf` change again.
        let ret = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        let account = (!found.is_null()).then(|| Account {
            name: name.to_owned(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        });
        (ret, account)
    })
}

/// Who the daemon becomes, decided before anything is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Switch to this user.
    User(Account),
    /// Stay root, for this reason (said by `status` and `doctor`).
    StayRoot(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "daemon.user is {0:?} but there is no such user; create it (useradd --system --no-create-home \
         --shell /usr/sbin/nologin {0}), or set daemon.user = \"root\" to keep the daemon root"
    )]
    NoSuchUser(String),
    #[error("looking up user {name:?}")]
    Lookup { name: String, source: io::Error },
    #[error(
        "user {name} would not be able to write {folder}: it holds files other than kaipo's ({other}) \
         and is not writable by {name}; give kaipo a folder of its own or set daemon.user = \"root\""
    )]
    SharedFolder {
        name: String,
        folder: PathBuf,
        other: String,
    },
    #[error("giving {path} to user {name}")]
    Chown {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Decides who the daemon becomes: `configured` (from `--user` or `daemon.user`), or the
/// default user when there is one. `root` (or uid 0) means staying root.
pub fn target(configured: Option<&str>) -> Result<Target, AccountError> {
    let name = configured.unwrap_or(DEFAULT_USER);
    let found = lookup(name).map_err(|source| AccountError::Lookup {
        name: name.to_owned(),
        source,
    })?;
    match found {
        Some(a) if a.uid == 0 => Ok(Target::StayRoot(format!(
            "daemon.user is {name:?}, which is root"
        ))),
        Some(a) => Ok(Target::User(a)),
        None if configured.is_none() => Ok(Target::StayRoot(format!(
            "there is no user {DEFAULT_USER} (kaipo install-service creates it)"
        ))),
        None => Err(AccountError::NoSuchUser(name.to_owned())),
    }
}

/// Whether every entry of `folder` belongs to kaipo's file `name` (`kaipo.db`, `kaipo.db-wal`,
/// `kaipo.db.lock`, `kaipo.db.corrupt-…`); the first other one otherwise.
fn foreign_entry(folder: &Path, name: &str) -> io::Result<Option<String>> {
    for entry in fs::read_dir(folder)? {
        let entry = entry?.file_name();
        let entry = entry.to_string_lossy();
        if !entry.starts_with(name) {
            return Ok(Some(entry.into_owned()));
        }
    }
    Ok(None)
}

fn writable_by(meta: &fs::Metadata, account: &Account) -> bool {
    let mode = meta.mode();
    (meta.uid() == account.uid && mode & 0o300 == 0o300)
        || (meta.gid() == account.gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003
}

/// Gives `account` the folder of `file` and every kaipo file in it, so that it can write,
/// create (`-wal`, `-shm`, a fresh database after damage) and remove (the socket at exit)
/// there. Only the owner changes; the group and modes stay as the daemon set them. A folder
/// shared with other files is left alone if the user can already write it, and refused
/// otherwise: handing /var/lib to a service user would be far worse than staying root.
pub fn hand_over(file: &Path, account: &Account) -> Result<(), AccountError> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let chown_err = |path: &Path| {
        let path = path.to_owned();
        move |source| AccountError::Chown {
            name: account.name.clone(),
            path,
            source,
        }
    };
    let meta = fs::metadata(&folder).map_err(chown_err(&folder))?;
    match foreign_entry(&folder, &name).map_err(chown_err(&folder))? {
        None => {
            std::os::unix::fs::chown(&folder, Some(account.uid), None)
                .map_err(chown_err(&folder))?;
        }
        Some(_) if writable_by(&meta, account) => {}
        Some(other) => {
            return Err(AccountError::SharedFolder {
                name: account.name.clone(),
                folder,
                other,
            })
        }
    }
    for entry in fs::read_dir(&folder).map_err(chown_err(&folder))? {
        let entry = entry.map_err(chown_err(&folder))?;
        if entry.file_name().to_string_lossy().starts_with(&name) {
            let path = entry.path();
            // Not following links: a link named like kaipo's file must not give its target away.
            std::os::unix::fs::lchown(&path, Some(account.uid), None).map_err(chown_err(&path))?;
        }
    }
    Ok(())
}

/// Becomes `account` (user, group, no other groups) keeping the permitted capabilities, so
/// that the caller can set what stays effective. Must run while the process has one thread:
/// the raw system calls change only the calling thread.
pub fn become_user(account: &Account) -> io::Result<()> {
    let check = |ret: libc::c_long| {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }.into())?;
    let gid = account.gid;
    // SAFETY: one gid, read from a valid array that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_setgroups, 1, &raw const gid) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    let uid = account.uid;
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) }.into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn root_stays_root_and_a_missing_default_user_is_a_reason_not_an_error() {
        assert_eq!(
            target(Some("root")).unwrap(),
            Target::StayRoot("daemon.user is \"root\", which is root".into())
        );
        let err = target(Some("kaipo-no-such-user-17")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "daemon.user is \"kaipo-no-such-user-17\" but there is no such user; create it"
            ),
            "{err}"
        );
        assert_eq!(
            lookup("nobody").unwrap().map(|a| a.uid),
            Some(65534),
            "Debian's nobody"
        );
    }

    #[test]
    fn a_folder_of_its_own_is_handed_over_a_shared_one_is_not() {
        let base = std::env::temp_dir().join(format!("kaipo-account-{}", std::process::id()));
        let own = base.join("own");
        let shared = base.join("shared");
        fs::create_dir_all(&own).unwrap();
        fs::create_dir_all(&shared).unwrap();
        for f in ["kaipo.db", "kaipo.db-wal", "kaipo.db.lock"] {
            fs::write(own.join(f), "").unwrap();
            fs::write(shared.join(f), "").unwrap();
        }
        fs::write(shared.join("other.conf"), "").unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = Account {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        if fs::metadata(&base).unwrap().uid() == 0 && lookup("root").is_ok() {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                hand_over(&own.join("kaipo.db"), &nobody).unwrap();
                for p in [own.clone(), own.join("kaipo.db"), own.join("kaipo.db.lock")] {
                    assert_eq!(fs::metadata(&p).unwrap().uid(), 65534, "{}", p.display());
                }
                let err = hand_over(&shared.join("kaipo.db"), &nobody).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!(
                        "user nobody would not be able to write {}: it holds files other than \
                         kaipo's (other.conf) and is not writable by nobody; give kaipo a folder \
                         of its own or set daemon.user = \"root\"",
                        shared.display()
                    )
                );
                assert_eq!(fs::metadata(shared.join("kaipo.db")).unwrap().uid(), 0);
            }
        }
        fs::remove_dir_all(&base).unwrap();
    }
}
