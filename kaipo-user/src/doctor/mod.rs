//! `kaipo doctor`: what this machine lets kaipo do. On Linux every kernel program is loaded and
//! attached for real (to the cgroup root and the loopback interface) and detached again, so a
//! "works" here means it worked, not that a version number looked right. On macOS and Windows,
//! where eBPF does not exist, a capture is opened for real instead.

#[cfg(target_os = "linux")]
mod container;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod pcap_only;

use std::io::Write;

use serde::Serialize;

#[cfg(target_os = "linux")]
use self::linux::{ebpf_checks, pcap_check, sandbox_checks};
#[cfg(not(target_os = "linux"))]
use self::pcap_only::{ebpf_checks, pcap_check, sandbox_checks};
use crate::platform::{Host, Platform as _};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works with less: kaipo runs, but this piece is missing or slower.
    Degraded,
    /// kaipo cannot run its eBPF collector until this is fixed.
    Failed,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do about it, when there is something to do.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(name: &str, status: Status, detail: impl Into<String>, fix: &str) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub async fn run(json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let checks = diagnose();
    if json {
        serde_json::to_writer_pretty(&mut *out, &checks)?;
        writeln!(out)?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok      ",
                Status::Degraded => "degraded",
                Status::Failed => "FAILED  ",
            };
            writeln!(out, "{mark} {:<28} {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "         {:<28} fix: {fix}", "")?;
            }
        }
        writeln!(out)?;
        writeln!(out, "{}", summary(&checks, Host::NO_EBPF))?;
    }
    out.flush()?;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| c.name.as_str())
        .collect();
    // Failed eBPF checks with a working libpcap still leave a collector that runs.
    let runs = checks
        .iter()
        .any(|c| c.name == "backend" && c.status != Status::Failed);
    if !runs {
        anyhow::bail!("failed checks: {}", failed.join(", "));
    }
    Ok(())
}

/// The closing line: which collector runs, and with what missing.
fn summary(checks: &[Check], no_ebpf: Option<&str>) -> String {
    // The sandbox checks say how kaipo is confined, not what it can collect.
    let checks: Vec<&Check> = checks
        .iter()
        .filter(|c| !c.name.starts_with("sandbox"))
        .collect();
    let failed = checks.iter().filter(|c| c.status == Status::Failed).count();
    let degraded = checks
        .iter()
        .filter(|c| c.status == Status::Degraded)
        .count();
    let backend = checks
        .iter()
        .find(|c| c.name == "backend")
        .map(|c| c.status);
    match (backend, failed, degraded) {
        (Some(Status::Ok), _, n) if no_ebpf.is_some() => {
            format!(
                "kaipo runs here with its libpcap backend ({n} degraded piece(s), eBPF among \
                 them)."
            )
        }
        (Some(Status::Ok), _, 0) => "kaipo's eBPF collector runs here with everything.".into(),
        (Some(Status::Ok), _, n) => {
            format!("kaipo's eBPF collector runs here, with {n} degraded piece(s).")
        }
        (Some(Status::Degraded), n, _) => {
            format!("kaipo runs here with its libpcap backend; eBPF cannot: {n} check(s) failed.")
        }
        (_, n, _) => format!("kaipo cannot collect here: {n} check(s) failed."),
    }
}

/// Runs every check. Stops trying programs once something they all need is missing, but always
/// reports each check.
pub fn diagnose() -> Vec<Check> {
    let ebpf = ebpf_checks();
    let ebpf_ok = Host::NO_EBPF.is_none() && ebpf.iter().all(|c| c.status != Status::Failed);
    // In a container, what it was started without comes first, in the runtime's words.
    #[cfg(target_os = "linux")]
    let mut checks = match container::detect() {
        Some(rt) => container::checks(&rt, &container::Found::read()),
        None => Vec::new(),
    };
    #[cfg(not(target_os = "linux"))]
    let mut checks = Vec::new();
    checks.extend(ebpf);
    let pcap = pcap_check();
    let pcap_ok = pcap.status == Status::Ok;
    checks.push(pcap);
    checks.push(backend_check(ebpf_ok, pcap_ok, Host::NO_EBPF));
    checks.extend(sandbox_checks());
    checks
}

/// Which backend `--backend auto` picks, from what the checks found.
fn backend_check(ebpf_ok: bool, pcap_ok: bool, no_ebpf: Option<&str>) -> Check {
    match (ebpf_ok, pcap_ok) {
        (true, _) => Check::ok("backend", "`--backend auto` uses eBPF here"),
        (false, true) => match no_ebpf {
            Some(why) => Check::ok("backend", format!("`--backend auto` uses libpcap: {why}")),
            None => Check::bad(
                "backend",
                Status::Degraded,
                "`--backend auto` uses libpcap here, because eBPF cannot run (see the failed \
                 checks)",
                "fix the eBPF checks above for exact per-process figures at lower cost",
            ),
        },
        (false, false) => Check::bad(
            "backend",
            Status::Failed,
            match no_ebpf {
                Some(_) => "libpcap cannot capture here, and eBPF is Linux-only",
                None => "neither eBPF nor libpcap can run here",
            },
            "run kaipo as root, or fix the checks above",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_linux_libpcap_runs_because_ebpf_is_absent() {
        let why = Some("eBPF is Linux-only; on macOS kaipo counts with libpcap, through /dev/bpf*");
        let backend = backend_check(false, true, why);
        assert_eq!(backend.status, Status::Ok);
        assert_eq!(
            backend.detail,
            "`--backend auto` uses libpcap: eBPF is Linux-only; on macOS kaipo counts with \
             libpcap, through /dev/bpf*"
        );
        let checks = [
            Check::bad("eBPF", Status::Degraded, "eBPF is Linux-only", "none"),
            Check::ok("libpcap", "available"),
            backend,
        ];
        assert_eq!(
            summary(&checks, why),
            "kaipo runs here with its libpcap backend (1 degraded piece(s), eBPF among them)."
        );
        let failed = backend_check(false, false, why);
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(
            failed.detail,
            "libpcap cannot capture here, and eBPF is Linux-only"
        );
    }

    #[test]
    fn on_linux_the_ebpf_checks_decide() {
        assert_eq!(
            backend_check(true, false, None).detail,
            "`--backend auto` uses eBPF here"
        );
        let fallback = backend_check(false, true, None);
        assert_eq!(fallback.status, Status::Degraded);
        let checks = [
            Check::bad("kernel BTF", Status::Failed, "missing", "fix"),
            fallback,
        ];
        assert_eq!(
            summary(&checks, None),
            "kaipo runs here with its libpcap backend; eBPF cannot: 1 check(s) failed."
        );
        assert_eq!(
            summary(&[Check::ok("backend", "eBPF")], None),
            "kaipo's eBPF collector runs here with everything."
        );
    }
}
