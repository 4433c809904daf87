//! `cargo xtask bench pcap`: the collector benchmark's 64-byte UDP flood with `kaipo watch
//! --backend pcap` and `kaipo watch --backend ebpf` side by side, in alternating rounds with an
//! unmonitored flood in each, and the figures as Markdown.
//!
//! Reuses the collector benchmark's network ([`Topology`]), flood and kaipo runner; progress
//! goes to stderr and the figures to stdout.

use std::{fmt::Write as _, time::Instant};

use anyhow::{bail, Context as _};

use super::{
    collector::{self, Bench, Flood, Monitored, FLOOD_SECS, RECEIVER_CPU, SENDER_CPU},
    report::{self, int, median, mib},
    topology::Topology,
};

/// Rounds of (without kaipo, pcap, eBPF); the order of the two backends alternates by round.
pub const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unmonitored,
    Pcap,
    Ebpf,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Unmonitored => "without kaipo",
            Mode::Pcap => "`--backend pcap`",
            Mode::Ebpf => "`--backend ebpf`",
        }
    }
}

/// One round's flood under one mode.
struct Run {
    round: usize,
    mode: Mode,
    flood: Flood,
    kaipo: Option<Monitored>,
}

pub fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the pcap benchmark loads eBPF programs, captures with libpcap and creates network namespaces: run it as root");
    }
    super::catch_signals();
    let started = Instant::now();
    let bin = collector::build_kaipo()?;
    let machine = report::Machine::read();
    collector::emit(&report::header_for(&machine, "pcap backend", "pcap"));

    let bench = Bench {
        topo: Topology::create()?,
        exe: std::env::current_exe().context("finding the xtask binary")?,
        bin,
    };
    let none = Default::default();
    collector::progress("warming up: 1 s flood without kaipo");
    let warm = bench.flood(1.0, None, &none, &mut |_| Ok(()))?;
    if warm.received == 0 {
        bail!(
            "no datagram crossed the benchmark network (sent {})",
            warm.sent
        );
    }

    let mut runs = Vec::new();
    for round in 1..=ROUNDS {
        let order = if round % 2 == 1 {
            [Mode::Unmonitored, Mode::Pcap, Mode::Ebpf]
        } else {
            [Mode::Unmonitored, Mode::Ebpf, Mode::Pcap]
        };
        for mode in order {
            collector::progress(&format!(
                "flood round {round}/{ROUNDS}: {}",
                mode.label().trim_matches('`')
            ));
            let run = match mode {
                Mode::Unmonitored => Run {
                    round,
                    mode,
                    flood: bench.flood(FLOOD_SECS, None, &none, &mut |_| Ok(()))?,
                    kaipo: None,
                },
                Mode::Pcap | Mode::Ebpf => {
                    let backend = if mode == Mode::Pcap { "pcap" } else { "ebpf" };
                    let m = bench.monitored_flood(FLOOD_SECS, None, false, Some(backend))?;
                    Run {
                        round,
                        mode,
                        flood: m.flood.clone(),
                        kaipo: Some(m),
                    }
                }
            };
            runs.push(run);
        }
    }
    collector::emit(&figures(&runs, &bench.topo));
    drop(bench);
    collector::emit(&report::footer(started.elapsed()));
    Ok(())
}

/// Packets kaipo saw on the two host ends: rx + tx of each.
fn seen(m: &Monitored) -> (u64, u64) {
    let s = m.sender_if.rx_packets + m.sender_if.tx_packets;
    let r = m.receiver_if.rx_packets + m.receiver_if.tx_packets;
    (s, r)
}

/// Drops kaipo reported: `lost.capture_drops` for pcap, every `lost.*` for eBPF.
fn drops(mode: Mode, m: &Monitored) -> u64 {
    match mode {
        Mode::Pcap => m.lost.get("capture_drops").copied().unwrap_or(0),
        _ => m.lost.values().sum(),
    }
}

fn cpu_pct(m: &Monitored) -> f64 {
    100.0 * m.cpu_secs / m.window.as_secs_f64().max(1e-9)
}

fn figures(runs: &[Run], topo: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Each flood: one sender (`sendmmsg`, 64-byte frames, pinned to CPU {SENDER_CPU}) for {FLOOD_SECS} s \
         through `{}` → host forwarding → `{}` to one receiver (`recvmmsg`, CPU {RECEIVER_CPU}). \
         {ROUNDS} rounds, each: a flood without kaipo, then `kaipo watch --json --interval 1s \
         --iface {} --iface {}` with `--backend pcap` and with `--backend ebpf` (order alternating \
         by round). \"Seen\" is `interfaces[].rx_packets + tx_packets` from kaipo's JSON for the two \
         host ends; every datagram crosses both, so full visibility is 2 × datagrams sent. Drops: \
         `lost.capture_drops` for pcap, the sum of every `lost.*` for eBPF. CPU: kaipo's utime + \
         stime (`/proc/PID/stat`) over the sender's window, as % of one core (clock ticks: 0.0 % means under one tick per window); RSS: `VmHWM`. \
         The last column is the machine's busy time outside the sender, the receiver and \
         ksoftirqd, in CPUs: it includes kaipo itself.\n",
        topo.sender_if, topo.receiver_if, topo.sender_if, topo.receiver_if
    );
    let _ = writeln!(
        s,
        "| Round | kaipo | sent (kpps) | received (kpps) | seen on host veths (packets) | seen / (2 × sent) | drops | lost.* reported | kaipo CPU (% of a core) | kaipo peak RSS |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let f = &r.flood;
        let (seen_s, drops_s, lost_s, cpu_s, rss_s, share_s) = match &r.kaipo {
            None => (
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ),
            Some(m) => {
                let (a, b) = seen(m);
                let lost = m
                    .lost
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| format!("{k} {}", int(*v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    format!("{} ({} + {})", int(a + b), int(a), int(b)),
                    int(drops(r.mode, m)),
                    if lost.is_empty() { "none".into() } else { lost },
                    format!("{:.1} %", cpu_pct(m)),
                    mib(m.vm_hwm_kib),
                    format!(
                        "{:.1} %",
                        100.0 * (a + b) as f64 / (2 * f.sent).max(1) as f64
                    ),
                )
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {seen_s} | {share_s} | {drops_s} | {lost_s} | {cpu_s} | {rss_s} |",
            r.round,
            r.mode.label(),
            f.sent_pps() / 1e3,
            f.delivered_pps() / 1e3,
        );
    }

    let of = |mode: Mode| runs.iter().filter(move |r| r.mode == mode);
    let base = median(
        of(Mode::Unmonitored)
            .map(|r| r.flood.delivered_pps())
            .collect(),
    );
    let _ = writeln!(s, "\nMedians over the {ROUNDS} rounds:\n");
    let _ = writeln!(
        s,
        "| kaipo | received (kpps) | vs without kaipo | seen / (2 × sent) | drops per flood | kaipo CPU (% of a core) | kaipo peak RSS (max) | other busy CPUs, incl. kaipo |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for mode in [Mode::Unmonitored, Mode::Pcap, Mode::Ebpf] {
        let pps = median(of(mode).map(|r| r.flood.delivered_pps()).collect());
        let others = median(of(mode).map(|r| r.flood.others_cpu).collect());
        let vs = if mode == Mode::Unmonitored {
            "–".to_owned()
        } else {
            format!("{:+.1} %", 100.0 * (pps / base.max(1e-9) - 1.0))
        };
        let monitored: Vec<_> = of(mode)
            .filter_map(|r| r.kaipo.as_ref().map(|m| (r, m)))
            .collect();
        let (share, drop_s, cpu, rss) = if monitored.is_empty() {
            ("–".into(), "–".into(), "–".into(), "–".into())
        } else {
            let share = median(
                monitored
                    .iter()
                    .map(|(r, m)| {
                        let (a, b) = seen(m);
                        100.0 * (a + b) as f64 / (2 * r.flood.sent).max(1) as f64
                    })
                    .collect(),
            );
            let d = median(
                monitored
                    .iter()
                    .map(|(r, m)| drops(r.mode, m) as f64)
                    .collect(),
            );
            let cpu = median(monitored.iter().map(|(_, m)| cpu_pct(m)).collect());
            let rss = monitored
                .iter()
                .map(|(_, m)| m.vm_hwm_kib)
                .max()
                .unwrap_or(0);
            (
                format!("{share:.1} %"),
                int(d as u64),
                format!("{cpu:.1} %"),
                mib(rss),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {vs} | {share} | {drop_s} | {cpu} | {rss} | {others:.2} |",
            mode.label(),
            pps / 1e3,
        );
    }
    s
}
