//! What the daemon checks before it starts and gives up once the collector runs, per system.

/// Linux: capabilities, checked up front and reduced after start ([`super::privilege`]).
#[cfg(target_os = "linux")]
mod imp {
    use std::path::Path;

    use anyhow::Context as _;

    use crate::{
        api::protocol::{SandboxLayer, SandboxStatus},
        collect::{backend::Collector, ebpf},
        daemon::privilege,
        platform::{Host, Platform as _},
        sandbox::{
            account::{self, Target},
            landlock::{self, Allowed},
        },
    };

    /// Says what is missing before anything else fails for the same reason less helpfully,
    /// and decides who the daemon becomes (a missing configured user fails here, before
    /// anything is created).
    pub fn check(user: Option<&str>) -> anyhow::Result<Target> {
        if !Host::is_superuser() {
            let missing = crate::privilege::missing(crate::privilege::effective_caps());
            if !missing.is_empty() {
                return Err(ebpf::EbpfCollectError::NotPermitted {
                    missing: missing.join(", "),
                }
                .into());
            }
        }
        let target = account::target(user)?;
        // Switching needs CAP_SETUID and CAP_SETGID (and CAP_CHOWN to hand over the folders).
        if let Target::User(a) = &target {
            let caps = crate::privilege::effective_caps();
            let lacking: Vec<&str> = [(6u32, "CAP_SETGID"), (7, "CAP_SETUID"), (0, "CAP_CHOWN")]
                .into_iter()
                .filter(|(c, _)| caps & (1u64 << c) == 0)
                .map(|(_, n)| n)
                .collect();
            if !lacking.is_empty() {
                return Ok(Target::StayRoot(format!(
                    "switching to user {} needs {}, which this process lacks",
                    a.name,
                    lacking.join(", ")
                )));
            }
        }
        Ok(target)
    }

    /// What to keep once the collector runs, worked out while the system can still be read.
    pub struct Plan {
        kept: Vec<privilege::Kept>,
        target: Target,
        /// None: Landlock not asked for.
        allowed: Option<Allowed>,
    }

    pub fn plan(
        collector: &Collector,
        target: Target,
        db: &Path,
        socket: &Path,
        config: &Path,
        landlock: bool,
    ) -> Plan {
        Plan {
            kept: privilege::needed_after_start(
                collector.holds_netlink_filters(),
                matches!(collector.kind(), crate::collect::BackendKind::Pcap),
                &privilege::kernel_release(),
                &privilege::unprivileged_bpf_disabled(),
            ),
            target,
            allowed: landlock.then(|| Allowed::for_daemon(db, socket, config)),
        }
    }

    /// Gives the daemon's user the folders it writes to, then drops everything but the plan,
    /// switches user, restricts files and system calls. Returns what is in force.
    pub fn drop_unneeded(plan: Plan, db: &Path, socket: &Path) -> anyhow::Result<SandboxStatus> {
        let mut target = plan.target;
        if let Target::User(a) = &target {
            let handed = account::hand_over(db, a).and_then(|()| account::hand_over(socket, a));
            if let Err(e) = handed {
                target = Target::StayRoot(e.to_string());
            }
        }
        let account = match &target {
            Target::User(a) => Some(a),
            Target::StayRoot(_) => None,
        };
        let held = privilege::drop_all_but(&plan.kept, account).context("dropping privileges")?;
        // Both restrict this thread and the threads it starts; the daemon has one yet.
        let landlock = match plan.allowed.as_ref().map(landlock::restrict) {
            None => SandboxLayer {
                in_force: false,
                detail: landlock::OFF.into(),
            },
            Some(Ok(o)) => SandboxLayer {
                in_force: o.in_force,
                detail: o.detail,
            },
            Some(Err(e)) => SandboxLayer {
                in_force: false,
                detail: format!("the ruleset could not be built: {e}"),
            },
        };
        let seccomp = crate::sandbox::seccomp_layer();
        let (user, uid, stays_root) = match target {
            Target::User(a) => (a.name, a.uid, None),
            Target::StayRoot(why) => ("root".to_owned(), 0, Some(why)),
        };
        Ok(SandboxStatus {
            user,
            uid,
            stays_root,
            capabilities: privilege::held_names(&plan.kept, held),
            no_new_privs: true,
            seccomp,
            landlock,
        })
    }
}

/// macOS: no capabilities to split root into. The daemon needs root for the BPF devices and
/// to see every process's sockets (lsof lists only the caller's own without it), and keeps it.
#[cfg(target_os = "macos")]
mod imp {
    use std::path::Path;

    use crate::{
        api::protocol::{SandboxLayer, SandboxStatus},
        collect::backend::Collector,
        platform::{Host, Platform as _},
    };

    /// Nothing to decide: the daemon stays root.
    pub struct Target;

    pub fn check(_user: Option<&str>) -> anyhow::Result<Target> {
        if !Host::is_superuser() {
            anyhow::bail!(
                "the daemon needs root on macOS: capturing opens /dev/bpf*, and only root sees \
                 every process's sockets; run it with sudo"
            );
        }
        Ok(Target)
    }

    pub struct Plan;

    pub fn plan(_: &Collector, _: Target, _: &Path, _: &Path, _: &Path, _: bool) -> Plan {
        Plan
    }

    pub fn drop_unneeded(_: Plan, _: &Path, _: &Path) -> anyhow::Result<SandboxStatus> {
        let absent = |what: &str| SandboxLayer {
            in_force: false,
            detail: format!("{what} is Linux-only"),
        };
        Ok(SandboxStatus {
            user: "root".into(),
            uid: 0,
            stays_root: Some(
                "macOS has no capabilities to split root into; the daemon stays root".into(),
            ),
            capabilities: vec!["all".into()],
            no_new_privs: false,
            seccomp: absent("seccomp"),
            landlock: absent("Landlock"),
        })
    }
}

pub use self::imp::{check, drop_unneeded, plan};
