//! What can stop the eBPF collector, each with what the user can do about it.

use aya::{programs::ProgramError, EbpfError};

use crate::collect::iface::IfaceError;

#[derive(Debug, thiserror::Error)]
pub enum EbpfCollectError {
    #[error(
        "kaipo needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, to load \
         its kernel programs (missing: {missing}); run it with sudo"
    )]
    NotPermitted { missing: String },
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error(
        "no cgroup v2 hierarchy is mounted and mounting one privately failed ({0}), so \
         per-socket counting cannot attach; run as root (CAP_SYS_ADMIN), or mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )]
    NoCgroup2(String),
    #[error("cannot open the cgroup v2 root {path}: {source}")]
    CgroupOpen {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the kernel has no BTF type information (/sys/kernel/btf/vmlinux), which the socket owner \
         hooks need; use a kernel built with CONFIG_DEBUG_INFO_BTF=y: {0}"
    )]
    Btf(String),
    #[error("loading kaipo's eBPF object failed: {0}")]
    Object(#[from] EbpfError),
    #[error("kaipo's eBPF object has no program or map named {0}; the build is inconsistent")]
    Missing(&'static str),
    #[error("kaipo's eBPF object cannot be prepared for loading ({0}); the build is inconsistent")]
    Patch(String),
    #[error("the kernel refused program {program}: {detail}")]
    Load {
        program: &'static str,
        detail: String,
    },
    #[error("attaching {program} to {target} failed: {detail}")]
    Attach {
        program: &'static str,
        target: String,
        detail: String,
    },
    #[error("reading kernel map {map}: {detail}")]
    Map { map: &'static str, detail: String },
}

/// Renders a program error with the end of the verifier log, which is where the reason is.
pub fn describe(err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if tail.is_empty() {
                format!("{io_error}")
            } else {
                format!("{io_error}; verifier: {}", tail.join(" | "))
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}
