//! Privilege separation: once its programs are loaded and attached, the daemon keeps only the
//! capabilities it still uses, clears them from the bounding set so that nothing can get
//! them back, and sets no_new_privs.
//!
//! What is kept, and why:
//! - Nothing for the BPF maps. Reading, walking and deleting entries of a map through an fd
//!   the daemon already holds needs no capability since Linux 6.5 ("bpf: Move unprivileged
//!   checks into map_create() and bpf_prog_load()"). Before 6.5, every bpf() command was
//!   refused without CAP_BPF while `kernel.unprivileged_bpf_disabled` was set, so CAP_BPF is
//!   kept there.
//! - CAP_SYS_PTRACE, to name processes of other users by their executable. /proc/PID/exe (and
//!   ns/net) of another user's process, or of a non-dumpable one, is guarded by a ptrace access
//!   check; CAP_DAC_READ_SEARCH does not pass it. Without it, apps of other users would be
//!   named by their command name and root's by their executable, and the same program would
//!   show up under two names. The daemon stays uid 0 (it owns its database), so this adds
//!   little to what a compromised daemon could do anyway.
//! - CAP_NET_ADMIN only when a classifier had to be attached through netlink (kernels
//!   before 6.6): removing it at exit is a netlink request that needs it.
//!
//! Capabilities are per thread: this must run while the process has one thread, and every
//! thread started later inherits the reduced set.

use std::{fs, io};

use crate::privilege::{CAP_BPF, CAP_NET_ADMIN};

const CAP_SETPCAP: u32 = 8;
const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_PTRACE: u32 = 19;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "the daemon has {0} threads while dropping privileges; capabilities are per thread, so \
         this must happen before any thread starts"
    )]
    Threads(usize),
    // The io error follows in the chain.
    #[error("{what}")]
    Call {
        what: &'static str,
        source: io::Error,
    },
    #[error("after dropping privileges the kernel reports {field} {found:#x}, expected {want:#x}")]
    Verify {
        field: &'static str,
        found: u64,
        want: u64,
    },
}

/// A capability kept after start, and the reason, for the log and the README.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub cap: u32,
    pub name: &'static str,
    pub why: &'static str,
}

/// What the daemon still needs once everything is attached.
pub fn needed_after_start(
    netlink_filters: bool,
    pcap: bool,
    kernel_release: &str,
    unprivileged_bpf_disabled: &str,
) -> Vec<Kept> {
    let mut kept = vec![Kept {
        cap: CAP_SYS_PTRACE,
        name: "CAP_SYS_PTRACE",
        why: "reading /proc/PID/exe of other users' processes",
    }];
    let restricted = unprivileged_bpf_disabled.trim() != "0";
    if restricted && release_before(kernel_release, (6, 5)) {
        kept.push(Kept {
            cap: CAP_BPF,
            name: "CAP_BPF",
            why: "reading maps, which kernels before 6.5 refuse without it while \
                  kernel.unprivileged_bpf_disabled is set",
        });
    }
    if pcap {
        kept.push(Kept {
            cap: CAP_DAC_READ_SEARCH,
            name: "CAP_DAC_READ_SEARCH",
            why: "listing /proc/PID/fd of other users' processes, where the pcap backend finds \
                  socket owners",
        });
    }
    if netlink_filters {
        kept.push(Kept {
            cap: CAP_NET_ADMIN,
            name: "CAP_NET_ADMIN",
            why: "removing the classifiers attached through netlink at exit",
        });
    }
    kept
}

/// Whether a `uname -r` release is older than `major.minor`; unreadable means old.
fn release_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b) < (major, minor),
        _ => true,
    }
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
}

pub fn unprivileged_bpf_disabled() -> String {
    // A kernel without the knob lets anyone use bpf().
    fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap_or_else(|_| "0".into())
}

fn mask(kept: &[Kept]) -> u64 {
    kept.iter().fold(0, |m, k| m | (1u64 << k.cap))
}

fn call(ret: libc::c_int, what: &'static str) -> Result<(), PrivilegeError> {
    if ret < 0 {
        return Err(PrivilegeError::Call {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Drops every capability but `keep` (as far as this process has them) from the effective,
/// permitted, inheritable, ambient and bounding sets, becomes `account` when given (keeping
/// those capabilities across the switch), sets no_new_privs, and checks the result in
/// /proc/self/status. Returns the capability mask now held.
///
/// The kept capabilities are effective and permitted but not ambient: ambient capabilities
/// only matter across execve, which the daemon never calls (its seccomp filter refuses it), and
/// would hand them to any program it ran.
pub fn drop_all_but(
    keep: &[Kept],
    account: Option<&crate::sandbox::account::Account>,
) -> Result<u64, PrivilegeError> {
    let threads = fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads != 1 {
        return Err(PrivilegeError::Threads(threads));
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let permitted = status_field(&status, "CapPrm").unwrap_or(0);
    let had_setpcap = status_field(&status, "CapEff").unwrap_or(0) & (1 << CAP_SETPCAP) != 0;
    let want = mask(keep) & permitted;
    let last_cap: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next. A process
    // started with a few file capabilities and without CAP_SETPCAP cannot shrink it; then
    // no_new_privs alone keeps it from gaining more through exec.
    if had_setpcap {
        for cap in (0..=last_cap).filter(|c| want & (1u64 << c) == 0) {
            // SAFETY: prctl with integer arguments only.
            let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            call(ret, "dropping a capability from the bounding set")?;
        }
    }
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    call(ret, "clearing the ambient capabilities")?;
    if let Some(account) = account {
        crate::sandbox::account::become_user(account).map_err(|source| PrivilegeError::Call {
            what: "switching to the daemon's user",
            source,
        })?;
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: want as u32,
            permitted: want as u32,
            inheritable: 0,
        },
        CapData {
            effective: (want >> 32) as u32,
            permitted: (want >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: a version 3 header with two data structs, as capset(2) requires; both outlive
    // the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    call(ret as libc::c_int, "capset")?;
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    call(ret, "setting no_new_privs")?;

    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut checks = vec![
        ("CapEff", want),
        ("CapPrm", want),
        ("CapInh", 0),
        ("CapAmb", 0),
    ];
    if had_setpcap {
        checks.push(("CapBnd", want));
    }
    checks.push(("NoNewPrivs", 1));
    if let Some(account) = account {
        // Real, effective, saved and filesystem ids alike.
        let uid = status_field(&status, "Uid").unwrap_or(u64::MAX);
        if uid != u64::from(account.uid) {
            return Err(PrivilegeError::Verify {
                field: "Uid",
                found: uid,
                want: u64::from(account.uid),
            });
        }
        let all_same = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| {
                ids.split_whitespace()
                    .all(|id| id == account.uid.to_string())
            });
        if !all_same {
            return Err(PrivilegeError::Verify {
                field: "Uid (all four)",
                found: uid,
                want: u64::from(account.uid),
            });
        }
    }
    for (field, expected) in checks {
        let found = status_field(&status, field).unwrap_or(u64::MAX);
        if found != expected {
            return Err(PrivilegeError::Verify {
                field,
                found,
                want: expected,
            });
        }
    }
    Ok(want)
}

/// A field of /proc/PID/status: the capability sets are hex, NoNewPrivs is decimal, Uid its
/// first (real) id.
pub fn status_field(status: &str, field: &str) -> Option<u64> {
    let value = status.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })?;
    let value = value.split_whitespace().next()?;
    if field.starts_with("Cap") {
        u64::from_str_radix(value, 16).ok()
    } else {
        value.parse().ok()
    }
}

/// Names of the kept capabilities in `mask`.
pub fn held_names(kept: &[Kept], mask: u64) -> Vec<String> {
    kept.iter()
        .filter(|k| mask & (1u64 << k.cap) != 0)
        .map(|k| k.name.to_owned())
        .collect()
}

/// Names of the capabilities in `mask`, for messages.
pub fn names(kept: &[Kept], mask: u64) -> String {
    let names: Vec<&str> = kept
        .iter()
        .filter(|k| mask & (1u64 << k.cap) != 0)
        .map(|k| k.name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(kept: &[Kept]) -> Vec<&'static str> {
        kept.iter().map(|k| k.name).collect()
    }

    #[test]
    fn keeps_cap_bpf_only_where_map_reads_need_it() {
        assert_eq!(
            caps(&needed_after_start(false, false, "6.18.44-fc", "2\n")),
            ["CAP_SYS_PTRACE"]
        );
        assert_eq!(
            caps(&needed_after_start(false, false, "6.5.0", "1")),
            ["CAP_SYS_PTRACE"]
        );
        assert_eq!(
            caps(&needed_after_start(false, false, "6.1.0-13-amd64", "2")),
            ["CAP_SYS_PTRACE", "CAP_BPF"]
        );
        assert_eq!(
            caps(&needed_after_start(false, false, "5.15.0", "0")),
            ["CAP_SYS_PTRACE"]
        );
        assert_eq!(
            caps(&needed_after_start(false, false, "garbage", "2")),
            ["CAP_SYS_PTRACE", "CAP_BPF"]
        );
    }

    #[test]
    fn keeps_net_admin_for_a_netlink_classifier() {
        assert_eq!(
            caps(&needed_after_start(true, false, "6.1.0", "0")),
            ["CAP_SYS_PTRACE", "CAP_NET_ADMIN"]
        );
    }

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tkaipo\nCapPrm:\t0000000000080000\nCapBnd:\t000001ffffffffff\n\
                      NoNewPrivs:\t1\n";
        assert_eq!(status_field(status, "CapPrm"), Some(1 << CAP_SYS_PTRACE));
        assert_eq!(status_field(status, "CapBnd"), Some((1 << 41) - 1));
        assert_eq!(status_field(status, "NoNewPrivs"), Some(1));
        assert_eq!(status_field(status, "CapEff"), None);
        let kept = needed_after_start(false, false, "6.18", "2");
        assert_eq!(names(&kept, 1 << CAP_SYS_PTRACE), "CAP_SYS_PTRACE");
        assert_eq!(names(&kept, 0), "none");
    }
}
