//! `kaipo status`: what the running daemon sees now, asked over its socket. Needs no
//! privileges; callers who are not root nor in group `kaipo` see only their own processes.

use std::{io::Write, path::Path};

use crate::{
    api::{client, protocol::StatusReport},
    format,
    model::Lost,
};

/// Rows per table section; `--json` has them all.
const TOP: usize = 10;

pub async fn run(socket: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let status = client::status(socket).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &status)?;
        writeln!(out)?;
    } else {
        write_table(out, &status)?;
    }
    out.flush()?;
    Ok(())
}

/// `sockets 1,204 of 262,144 (0.5%), flows 88 of 131,072 (0.1%)`.
fn maps_line(m: &crate::collect::MapUsage) -> String {
    let part = |name: &str, n: u64, max: u64| {
        format!(
            "{name} {} of {} ({:.1}%)",
            format::count(n),
            format::count(max),
            n as f64 * 100.0 / max.max(1) as f64
        )
    };
    let mut line = part("sockets", m.sockets, m.sockets_max);
    if let (Some(n), Some(max)) = (m.flows, m.flows_max) {
        line.push_str(", ");
        line.push_str(&part("flows", n, max));
    }
    line
}

fn per_s(n: u64) -> String {
    format!("{}/s", format::bytes(n))
}

/// `3d 4h`, `2h 05m`, `4m 10s`, `12s`, `500ms`.
fn uptime(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {:02}s", s % 60),
        (0, h, m) => format!("{h}h {m:02}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

pub fn write_table(out: &mut dyn Write, s: &StatusReport) -> std::io::Result<()> {
    let t = &s.totals;
    writeln!(
        out,
        "kaipo daemon {} (pid {}), up {}, backend {}; live every {}, stored every {}{}",
        s.version,
        s.pid,
        uptime(s.now_ms.saturating_sub(s.started_ms)),
        s.backend,
        uptime(s.live_interval_ms),
        uptime(s.interval_ms),
        if s.include_loopback {
            ", loopback counted"
        } else {
            ""
        }
    )?;
    if !s.caller.privileged {
        writeln!(
            out,
            "showing only the processes of uid {} (root and group kaipo see everything)",
            s.caller.uid
        )?;
    }
    for a in &s.alerts {
        writeln!(out, "ALERT {}: {}", a.rule, a.summary)?;
    }
    writeln!(out)?;
    if s.caller.privileged {
        writeln!(
            out,
            "{:<16} {:>12} {:>12} {:>12} {:>12}",
            "INTERFACE", "RX", "TX", "RX TOTAL", "TX TOTAL"
        )?;
        for i in &t.interfaces {
            writeln!(
                out,
                "{:<16} {:>12} {:>12} {:>12} {:>12}",
                i.name,
                per_s(i.rate.rx_bytes_per_s),
                per_s(i.rate.tx_bytes_per_s),
                format::bytes(i.total.rx_bytes),
                format::bytes(i.total.tx_bytes)
            )?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "{:<20} {:<10} {:>12} {:>12} {:>12} {:>12}",
        "APP", "USER", "RX", "TX", "RX TOTAL", "TX TOTAL"
    )?;
    for a in t.apps.iter().take(TOP) {
        let user = a.user.clone().unwrap_or_else(|| a.uid.to_string());
        writeln!(
            out,
            "{:<20} {:<10} {:>12} {:>12} {:>12} {:>12}",
            a.app,
            user,
            per_s(a.rate.rx_bytes_per_s),
            per_s(a.rate.tx_bytes_per_s),
            format::bytes(a.total.rx_bytes),
            format::bytes(a.total.tx_bytes)
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>8} {:<16} {:<10} {:>12} {:>12} {:>12} {:>12}  APP",
        "PID", "NAME", "USER", "RX", "TX", "RX TOTAL", "TX TOTAL"
    )?;
    for p in t.processes.iter().take(TOP) {
        let user = p.user.clone().unwrap_or_else(|| p.uid.to_string());
        writeln!(
            out,
            "{:>8} {:<16} {:<10} {:>12} {:>12} {:>12} {:>12}  {}{}",
            p.pid,
            p.name,
            user,
            per_s(p.rate.rx_bytes_per_s),
            per_s(p.rate.tx_bytes_per_s),
            format::bytes(p.total.rx_bytes),
            format::bytes(p.total.tx_bytes),
            p.app,
            if p.exited { " (exited)" } else { "" }
        )?;
    }
    let more = t.processes.len().saturating_sub(TOP);
    if more > 0 {
        writeln!(out, "... and {more} more (--json lists them all)")?;
    }
    writeln!(out)?;
    match t.attribution.as_ref().map(|a| (a, a.ratio())) {
        None => {}
        Some((_, None)) => writeln!(
            out,
            "attributed since start: no bytes on the monitored interfaces accounted yet"
        )?,
        Some((a, Some(ratio))) => {
            writeln!(
                out,
                "attributed since start: {:.1}% of {} on the monitored interfaces ({} to known \
                 processes)",
                ratio * 100.0,
                format::bytes(a.interface_bytes),
                format::bytes(a.attributed_bytes)
            )?;
            let causes: Vec<String> = a
                .unattributed
                .fields()
                .map(|(cause, n)| format!("{cause} {}", format::bytes(n)))
                .collect();
            writeln!(
                out,
                "unattributed since start: {} ({})",
                format::bytes(a.unattributed.total()),
                causes.join(", ")
            )?;
        }
    }
    if s.caller.privileged {
        writeln!(
            out,
            "sockets without a known owner since start: rx {}, tx {}",
            format::bytes(t.unattributed.rx_bytes),
            format::bytes(t.unattributed.tx_bytes)
        )?;
    }
    if let Some(lost) = &t.lost {
        writeln!(out, "lost since start: {}", lost_line(lost))?;
    }
    if let Some(m) = &s.maps {
        writeln!(out, "kernel maps: {}", maps_line(m))?;
    }
    let b = &s.bus;
    writeln!(
        out,
        "bus: {} intervals, {} deferred, {} store batches dropped, {} snapshots dropped for slow \
         subscribers; {} clients, {} subscribers",
        b.intervals,
        b.intervals_deferred,
        b.batches_dropped,
        b.snapshots_dropped,
        b.clients,
        b.subscribers
    )?;
    let st = &s.store;
    let last_write = st.last_write_ms.map_or_else(
        || "none yet".to_owned(),
        |ms| format!("{} ago", uptime(s.now_ms.saturating_sub(ms))),
    );
    write!(
        out,
        "store: {} batches written (last {}), backlog {}",
        st.batches_written, last_write, st.backlog
    )?;
    // Absent for callers who see only their own processes.
    if let Some(path) = &st.path {
        write!(
            out,
            "; {path}, last error: {}",
            st.last_error.as_deref().unwrap_or("none")
        )?;
    }
    writeln!(out)?;
    if let Some(note) = &st.note {
        writeln!(out, "store note: {note}")?;
    }
    for d in &s.degradations {
        writeln!(out, "degraded: {}: {}", d.what, d.why)?;
    }
    if let Some(sandbox) = &s.sandbox {
        sandbox_lines(sandbox, out)?;
    }
    Ok(())
}

/// Who the daemon runs as and which confinement layers are in force, or why not.
fn sandbox_lines(
    s: &crate::api::protocol::SandboxStatus,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let caps = if s.capabilities.is_empty() {
        "none".to_owned()
    } else {
        s.capabilities.join(", ")
    };
    write!(
        out,
        "sandbox: user {} (uid {}), capabilities {caps}",
        s.user, s.uid
    )?;
    if s.no_new_privs {
        write!(out, ", no_new_privs")?;
    }
    writeln!(out)?;
    if let Some(why) = &s.stays_root {
        writeln!(out, "sandbox: runs as root because {why}")?;
    }
    for (name, layer) in [("seccomp", &s.seccomp), ("landlock", &s.landlock)] {
        let state = if layer.in_force {
            "in force"
        } else {
            "not in force"
        };
        writeln!(out, "{name}: {state}: {}", layer.detail)?;
    }
    Ok(())
}

/// Every non-zero lost counter by its name (the same names as in `--json` and the
/// `reason` label of `kaipo_lost_events_total`), or `none`.
fn lost_line(lost: &Lost) -> String {
    let named: Vec<String> = lost
        .fields()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if named.is_empty() {
        "none".to_owned()
    } else {
        named.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::protocol::{CallerInfo, StoreStatus},
        model::{Attribution, UnattributedCauses},
        pipeline::{
            bus::BusCounts,
            totals::{Counts, ProcessTotal, Rates, Totals},
        },
    };

    #[test]
    fn formats_uptimes() {
        assert_eq!(uptime(500), "500ms");
        assert_eq!(uptime(12_000), "12s");
        assert_eq!(uptime(250_000), "4m 10s");
        assert_eq!(uptime(7_500_000), "2h 05m");
        assert_eq!(uptime(273_600_000), "3d 4h");
    }

    fn report(privileged: bool) -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            started_ms: 0,
            now_ms: 61_000,
            backend: "ebpf".into(),
            degradations: Vec::new(),
            interval_ms: 10_000,
            live_interval_ms: 1000,
            include_loopback: false,
            interfaces: Vec::new(),
            caller: CallerInfo {
                uid: if privileged { 0 } else { 1000 },
                privileged,
            },
            alerts: Vec::new(),
            sandbox: None,
            totals: Totals {
                processes: vec![ProcessTotal {
                    pid: 7,
                    name: "curl".into(),
                    app: "curl".into(),
                    uid: 1000,
                    user: Some("alice".into()),
                    rate: Rates {
                        rx_bytes_per_s: 2048,
                        tx_bytes_per_s: 0,
                    },
                    total: Counts {
                        rx_bytes: 4096,
                        ..Counts::default()
                    },
                    ..ProcessTotal::default()
                }],
                ..Totals::default()
            },
            attributed_ratio: None,
            bus: BusCounts::default(),
            store: StoreStatus::default(),
            maps: privileged.then_some(crate::collect::MapUsage {
                sockets: 1204,
                sockets_max: 262_144,
                flows: Some(88),
                flows_max: Some(131_072),
            }),
        }
    }

    #[test]
    fn a_privileged_table_says_how_full_the_kernel_maps_are() {
        let mut out = Vec::new();
        write_table(&mut out, &report(true)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "kernel maps: sockets 1,204 of 262,144 (0.5%), flows 88 of 131,072 (0.1%)"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_unprivileged_table_says_what_it_leaves_out() {
        let mut out = Vec::new();
        write_table(&mut out, &report(false)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("up 1m 01s"), "{text}");
        assert!(
            text.contains("showing only the processes of uid 1000"),
            "{text}"
        );
        assert!(!text.contains("INTERFACE"), "{text}");
        assert!(!text.contains("unattributed"), "{text}");
        assert!(!text.contains("attributed since start"), "{text}");
        assert!(!text.contains("lost since start"), "{text}");
        assert!(!text.contains("kernel maps"), "{text}");
        assert!(!text.contains("last error"), "{text}");
        let row = text.lines().find(|l| l.contains("curl")).unwrap();
        assert!(
            row.contains("2.0 KiB/s") && row.contains("4.0 KiB"),
            "{row}"
        );
    }

    /// The ratio is link-layer bytes over link-layer bytes with the rest broken down by cause,
    /// and every non-zero lost counter is named, capture drops too (the old line listed seven
    /// fixed counters and left capture drops out).
    #[test]
    fn a_privileged_table_has_the_ratio_its_causes_and_every_lost_counter() {
        let mut r = report(true);
        r.totals.attribution = Some(Attribution {
            interface_bytes: 10_240,
            attributed_bytes: 7_680,
            unattributed: UnattributedCauses {
                forwarded: 1_024,
                kernel: 512,
                icmp_arp: 512,
                unknown_owner: 512,
            },
        });
        r.attributed_ratio = r.totals.attributed_ratio();
        r.totals.lost = Some(Lost {
            ringbuf_full: 3,
            flow_evictions: 40,
            capture_drops: 12,
            ..Lost::default()
        });
        r.store.path = Some("/var/lib/kaipo/kaipo.db".into());
        let mut out = Vec::new();
        write_table(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} line in\n{text}"))
                .to_owned()
        };
        assert_eq!(
            line("attributed since start"),
            "attributed since start: 75.0% of 10.0 KiB on the monitored interfaces (7.5 KiB to \
             known processes)"
        );
        assert_eq!(
            line("unattributed since start"),
            "unattributed since start: 2.5 KiB (forwarded 1.0 KiB, kernel 512 B, icmp_arp 512 B, \
             unknown_owner 512 B)"
        );
        assert_eq!(
            line("lost since start"),
            "lost since start: ringbuf_full 3, flow_evictions 40, capture_drops 12"
        );
        assert!(line("store:").ends_with("; /var/lib/kaipo/kaipo.db, last error: none"));
        r.totals.lost = Some(Lost::default());
        r.totals.attribution = Some(Attribution::default());
        let mut out = Vec::new();
        write_table(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().any(|l| l == "lost since start: none"),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l
                == "attributed since start: no bytes on the monitored interfaces accounted yet"),
            "{text}"
        );
        assert!(!text.contains("unattributed since start"), "{text}");
    }

    #[test]
    fn says_who_the_daemon_runs_as_and_which_layers_hold() {
        use crate::api::protocol::{SandboxLayer, SandboxStatus};
        let mut text = Vec::new();
        let switched = SandboxStatus {
            user: "kaipo".into(),
            uid: 998,
            stays_root: None,
            capabilities: vec!["CAP_SYS_PTRACE".into()],
            no_new_privs: true,
            seccomp: SandboxLayer {
                in_force: true,
                detail: "125 system calls allowed, others fail with EPERM".into(),
            },
            landlock: SandboxLayer {
                in_force: false,
                detail: "the kernel was built without Landlock".into(),
            },
        };
        sandbox_lines(&switched, &mut text).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "sandbox: user kaipo (uid 998), capabilities CAP_SYS_PTRACE, no_new_privs\n\
             seccomp: in force: 125 system calls allowed, others fail with EPERM\n\
             landlock: not in force: the kernel was built without Landlock\n"
        );
        let mut text = Vec::new();
        let root = SandboxStatus {
            user: "root".into(),
            stays_root: Some("there is no user kaipo (kaipo install-service creates it)".into()),
            ..switched
        };
        sandbox_lines(&root, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "sandbox: runs as root because there is no user kaipo (kaipo install-service \
                 creates it)\n"
            ),
            "{text}"
        );
    }
}
