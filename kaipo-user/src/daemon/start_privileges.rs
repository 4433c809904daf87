//! What the daemon checks before it starts and gives up once the collector runs, per system.

/// Linux: capabilities, checked up front and reduced after start ([`super::privilege`]).
#[cfg(target_os = "linux")]
mod imp {
    use anyhow::Context as _;

    use crate::{
        collect::{backend::Collector, ebpf},
        daemon::privilege,
        platform::{Host, Platform as _},
    };

    /// Says what is missing before anything else fails for the same reason less helpfully.
    pub fn check() -> anyhow::Result<()> {
        if !Host::is_superuser() {
            let missing = crate::privilege::missing(crate::privilege::effective_caps());
            if !missing.is_empty() {
                return Err(ebpf::EbpfCollectError::NotPermitted {
                    missing: missing.join(", "),
                }
                .into());
            }
        }
        Ok(())
    }

    /// What to keep once the collector runs, worked out while the system can still be read.
    pub struct Plan(Vec<privilege::Kept>);

    pub fn plan(collector: &Collector) -> Plan {
        Plan(privilege::needed_after_start(
            collector.holds_netlink_filters(),
            &privilege::kernel_release(),
            &privilege::unprivileged_bpf_disabled(),
        ))
    }

    /// Drops everything but the plan; returns the capabilities kept, in words.
    pub fn drop_unneeded(plan: &Plan) -> anyhow::Result<String> {
        let held = privilege::drop_all_but(&plan.0).context("dropping privileges")?;
        Ok(privilege::names(&plan.0, held))
    }
}

/// macOS: no capabilities to split root into. The daemon needs root for the BPF devices and
/// to see every process's sockets (lsof lists only the caller's own without it), and keeps it.
#[cfg(target_os = "macos")]
mod imp {
    use crate::{
        collect::backend::Collector,
        platform::{Host, Platform as _},
    };

    pub fn check() -> anyhow::Result<()> {
        if !Host::is_superuser() {
            anyhow::bail!(
                "the daemon needs root on macOS: capturing opens /dev/bpf*, and only root sees \
                 every process's sockets; run it with sudo"
            );
        }
        Ok(())
    }

    pub struct Plan;

    pub fn plan(_: &Collector) -> Plan {
        Plan
    }

    pub fn drop_unneeded(_: &Plan) -> anyhow::Result<String> {
        Ok("all (macOS has no capabilities to drop; the daemon stays root)".to_owned())
    }
}

pub use self::imp::{check, drop_unneeded, plan};
