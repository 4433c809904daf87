//! The daemon's Landlock ruleset: once started it may write only in its database and socket
//! folders, and read only /proc, /sys, /etc (users, groups and name lookups), /usr (the
//! resolver's modules, loaded on first use) and its configuration file. Descriptors opened
//! before (maps, programs, the socket, the database) are not affected.
//!
//! Off unless asked for (`daemon.landlock`): a Landlock domain also limits ptrace access to
//! processes inside it (security/landlock/task.c), and reading another process's
//! /proc/PID/exe, /proc/PID/fd or /proc/PID/ns is a ptrace access check. With the ruleset on,
//! processes are named by their command name and the pcap backend finds no socket owners.

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access as _, AccessFs, LandlockStatus, Ruleset, RulesetAttr as _,
    RulesetCreatedAttr as _, RulesetStatus, ABI,
};

/// Why the ruleset is off unless asked for.
pub const OFF: &str = "off (daemon.landlock = true or --landlock turns it on): a Landlock domain \
     also keeps the daemon from reading /proc/PID/exe of processes outside it, so processes \
     would be named by their command name instead of their executable";

/// The newest ABI kaipo asks for; older kernels enforce what they know (best effort).
const WANTED_ABI: ABI = ABI::V5;

/// Read-only everywhere the daemon runs.
pub const READ_ONLY: [&str; 4] = ["/proc", "/sys", "/etc", "/usr"];

/// What the daemon may touch after start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// Folders it may write in (and create and remove files).
    pub read_write: Vec<PathBuf>,
    /// Files and folders it may read.
    pub read_only: Vec<PathBuf>,
}

impl Allowed {
    /// The database's and the socket's folders writable; `config` (or its folder, for a
    /// file that does not exist yet and may be created before a reload) readable.
    pub fn for_daemon(db: &Path, socket: &Path, config: &Path) -> Self {
        let folder = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut read_write = vec![folder(db)];
        if !read_write.contains(&folder(socket)) {
            read_write.push(folder(socket));
        }
        let mut read_only: Vec<PathBuf> = READ_ONLY.iter().map(PathBuf::from).collect();
        read_only.push(if config.exists() {
            config.to_owned()
        } else {
            folder(config)
        });
        Self {
            read_write,
            read_only,
        }
    }
}

/// Whether the ruleset is in force, in words for `status` and `doctor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub in_force: bool,
    pub detail: String,
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Restricts this thread and every thread it starts later (so: call it while the process has
/// one thread). A kernel without Landlock is not an error: the outcome says why.
pub fn restrict(allowed: &Allowed) -> Result<Outcome, landlock::RulesetError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(WANTED_ABI))?
        .create()?
        .add_rules(path_beneath_rules(
            &allowed.read_write,
            AccessFs::from_all(WANTED_ABI),
        ))?
        .add_rules(path_beneath_rules(
            &allowed.read_only,
            AccessFs::from_read(WANTED_ABI),
        ))?
        .restrict_self()?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => Some(effective_abi as i32),
        _ => None,
    };
    let scope = format!(
        "files limited to {} (read-write) and {} (read-only)",
        describe(&allowed.read_write),
        describe(&allowed.read_only)
    );
    Ok(match (status.ruleset, status.landlock) {
        (RulesetStatus::FullyEnforced, _) => Outcome {
            in_force: true,
            detail: format!("{scope}, Landlock ABI {}", abi.unwrap_or_default()),
        },
        (RulesetStatus::PartiallyEnforced, _) => Outcome {
            in_force: true,
            detail: format!(
                "{scope}, Landlock ABI {} (partly: this kernel predates some of the rights \
                 kaipo asks for)",
                abi.unwrap_or_default()
            ),
        },
        (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => Outcome {
            in_force: false,
            detail: "the kernel has Landlock but it is not enabled (add landlock to the lsm= \
                     boot parameter)"
                .into(),
        },
        (RulesetStatus::NotEnforced, LandlockStatus::NotImplemented) => Outcome {
            in_force: false,
            detail: "the kernel was built without Landlock (CONFIG_SECURITY_LANDLOCK, Linux 5.13+)"
                .into(),
        },
        (RulesetStatus::NotEnforced, _) => Outcome {
            in_force: false,
            detail: "the kernel did not enforce the ruleset".into(),
        },
    })
}

/// What this kernel offers, without restricting anything (for `doctor`).
pub fn kernel_abi() -> Result<i32, String> {
    // SAFETY: the version query of landlock_create_ruleset takes no attributes.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v >= 1 {
        return Ok(v as i32);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => Err(
            "the kernel has Landlock but it is not enabled (add landlock to the lsm= boot \
             parameter)"
                .into(),
        ),
        _ => Err(
            "the kernel was built without Landlock (CONFIG_SECURITY_LANDLOCK, Linux 5.13+)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_writes_its_two_folders_and_reads_its_config() {
        let a = Allowed::for_daemon(
            Path::new("/var/lib/kaipo/kaipo.db"),
            Path::new("/run/kaipo/kaipo.sock"),
            Path::new("/nonexistent-17/kaipo.toml"),
        );
        assert_eq!(
            a.read_write,
            [PathBuf::from("/var/lib/kaipo"), PathBuf::from("/run/kaipo")]
        );
        assert_eq!(
            a.read_only,
            ["/proc", "/sys", "/etc", "/usr", "/nonexistent-17"].map(PathBuf::from)
        );
        let a = Allowed::for_daemon(
            Path::new("/srv/k/kaipo.db"),
            Path::new("/srv/k/kaipo.sock"),
            Path::new("/etc/hostname"),
        );
        assert_eq!(a.read_write, [PathBuf::from("/srv/k")]);
        assert_eq!(a.read_only[4], PathBuf::from("/etc/hostname"));
    }
}
