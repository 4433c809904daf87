//! Confinement once kaipo's collector runs (Linux): the daemon becomes a dedicated user with
//! only the capabilities it still uses ([`account`], `daemon::privilege`), limits its files
//! with Landlock ([`landlock`]) and its system calls with seccomp ([`seccomp`]); `watch` and
//! `live` apply the seccomp filter to their own collector. Each layer that cannot be put in
//! force says why, in `kaipo status` and `kaipo doctor`.

pub mod account;
pub mod landlock;
pub mod seccomp;

use crate::api::protocol::SandboxLayer;

/// Applies the seccomp filter (for `watch` and `live` once their collector is attached) and
/// says what happened.
pub fn seccomp_layer() -> SandboxLayer {
    match seccomp::install() {
        Ok(n) => SandboxLayer {
            in_force: true,
            detail: format!("{n} system calls allowed, others fail with EPERM"),
        },
        Err(e) => SandboxLayer {
            in_force: false,
            detail: e.to_string(),
        },
    }
}
