//! Harness for kaipo's end-to-end tests: throwaway network namespaces joined to the host by a
//! veth pair, child processes whose stdout is read line by line with deadlines, and a `kaipo
//! watch --json` run whose records are summed per process and per interface.
//!
//! Everything here needs root. A test that cannot get it fails: a skipped test is one that
//! cannot fail.

pub mod child;
pub mod netns;
pub mod tcp;
pub mod watch;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

/// Fails unless this process is root and `ip` (iproute2) runs.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "kaipo's end-to-end tests need root (euid is {euid}): they create network \
             namespaces and load eBPF programs; run them as root, e.g. `sudo -E cargo test -p \
             kaipo-tests`"
        );
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.as_ref().is_ok_and(|o| o.status.success()) {
        bail!("kaipo's end-to-end tests need root and iproute2's `ip` on PATH: {ip:?}");
    }
    Ok(())
}

/// Runs a command to completion and returns its stdout; a non-zero exit is an error that quotes
/// the command and its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8"))
}

/// The `kaipo` binary under test: `$KAIPO_BIN`, else the one next to this test's own target
/// directory (so `CARGO_TARGET_DIR` is honoured), else `<workspace>/target/<profile>/kaipo`.
pub fn kaipo_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KAIPO_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("KAIPO_BIN is {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    let mut tried = Vec::new();
    // Test executables live in target/<profile>/deps.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_owned()))
    {
        tried.push(dir.join("kaipo"));
    }
    let in_workspace = workspace.join("target").join(profile).join("kaipo");
    if !tried.contains(&in_workspace) {
        tried.push(in_workspace);
    }
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the kaipo binary is not built (looked at {}); run `cargo build -p kaipo-user` first, \
         or set KAIPO_BIN",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
