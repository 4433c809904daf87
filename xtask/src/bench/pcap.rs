//! `cargo xtask bench pcap`: the collector benchmark's 64-byte UDP flood with `kaipo watch
//! --backend pcap` and `kaipo watch --backend ebpf` side by side, and with nethogs, bandwhich
//! and iftop where they are installed, in rounds with an unmonitored flood in each and the
//! monitors' order rotating; then each process-attributing pcap tool once more inside the
//! sender's namespace, where it can see the sender's socket; and the figures as Markdown.
//!
//! Reuses the collector benchmark's network ([`Topology`]), flood and kaipo runner; progress
//! goes to stderr and the figures to stdout.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{bail, Context as _};

use super::{
    collector::{self, Bench, Flood, Monitored, FLOOD_SECS, RECEIVER_CPU, SENDER_CPU},
    kaipo,
    report::{self, int, median, mib},
    rivals::{self, Linger, Rival, Told, Watched, FRAME_BYTES, IP_BYTES},
    topology::{Topology, SENDER_NS_IF},
};

/// Rounds of (no monitor, then every monitor once).
pub const ROUNDS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unmonitored,
    Pcap,
    Ebpf,
    Rival(Rival),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Unmonitored => "no monitor".into(),
            Mode::Pcap => "kaipo `--backend pcap`".into(),
            Mode::Ebpf => "kaipo `--backend ebpf`".into(),
            Mode::Rival(r) => r.name().into(),
        }
    }
}

/// One flood under one mode.
struct Run {
    round: usize,
    mode: Mode,
    flood: Flood,
    kaipo: Option<Monitored>,
    rival: Option<(Watched, Told)>,
}

/// What one monitored run says, whichever the monitor.
struct Row {
    cpu_pct: f64,
    rss_kib: u64,
    /// What the monitor counted on the two host ends, and its share of 2 × sent.
    seen: Option<(String, f64)>,
    /// Drops the monitor reported; `None` where it reports none at all.
    drops: Option<u64>,
    lost: String,
    /// Share of the sender's bytes the monitor gave the sender's process.
    attributed: Option<f64>,
    /// For the other tools: CPU seconds they still used after the sender stopped, and over how
    /// many seconds (until their total stopped growing).
    after: Option<(f64, f64)>,
}

impl Run {
    fn row(&self) -> Option<Row> {
        let f = &self.flood;
        if let Some(m) = &self.kaipo {
            let (a, b) = seen(m);
            let lost = m
                .lost
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k} {}", int(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            return Some(Row {
                cpu_pct: 100.0 * m.cpu_secs / m.window.as_secs_f64().max(1e-9),
                rss_kib: m.vm_hwm_kib,
                seen: Some((
                    format!("{} packets", int(a + b)),
                    (a + b) as f64 / (2 * f.sent).max(1) as f64,
                )),
                drops: Some(drops(self.mode, m)),
                lost: if lost.is_empty() { "none".into() } else { lost },
                attributed: Some(m.sender.tx_bytes as f64 / (f.sent * IP_BYTES).max(1) as f64),
                after: None,
            });
        }
        let (w, told) = self.rival.as_ref()?;
        let Mode::Rival(rival) = self.mode else {
            return None;
        };
        let per = told.bytes_per_datagram;
        Some(Row {
            cpu_pct: w.cpu_pct(),
            rss_kib: w.vm_hwm_kib,
            seen: told.bytes.map(|b| {
                (
                    format!("{} B", int(b)),
                    b as f64 / (2 * f.sent * per).max(1) as f64,
                )
            }),
            drops: None,
            lost: "not reported".into(),
            attributed: rival
                .attributes()
                .then_some(told.sender_bytes)
                .flatten()
                .map(|b| b as f64 / (f.sent * per).max(1) as f64),
            after: Some((w.cpu_after_secs, w.after.as_secs_f64())),
        })
    }
}

pub fn run() -> anyhow::Result<()> {
    let (bench, started) =
        collector::start_bench("pcap backend", "pcap", collector::COLLECTOR_BLOCKS)?;

    let (rivals, missing) = rivals::find_all(&Rival::ALL);

    let topo = &bench.topo;
    let ifaces = [topo.sender_if.as_str(), topo.receiver_if.as_str()];
    let none = Default::default();
    collector::progress("warming up: 1 s flood without a monitor");
    let warm = bench.flood(1.0, None, &none, &mut |_| Ok(()))?;
    if warm.received == 0 {
        bail!(
            "no datagram crossed the benchmark network (sent {})",
            warm.sent
        );
    }

    let monitors: Vec<Mode> = [Mode::Pcap, Mode::Ebpf]
        .into_iter()
        .chain(rivals.iter().map(|(r, _)| Mode::Rival(*r)))
        .collect();
    let mut runs = Vec::new();
    for round in 1..=ROUNDS {
        let mut order = monitors.clone();
        let turn = (round - 1) % order.len();
        order.rotate_left(turn);
        for mode in std::iter::once(Mode::Unmonitored).chain(order) {
            collector::progress(&format!(
                "flood round {round}/{ROUNDS}: {}",
                mode.label().replace('`', "")
            ));
            runs.push(flood_under(&bench, &rivals, &ifaces, round, mode)?);
        }
    }

    let mut in_ns = Vec::new();
    for mode in std::iter::once(Mode::Pcap).chain(
        rivals
            .iter()
            .filter(|(r, _)| r.attributes())
            .map(|(r, _)| Mode::Rival(*r)),
    ) {
        collector::progress(&format!(
            "in the sender's namespace: {}",
            mode.label().replace('`', "")
        ));
        in_ns.push((mode, flood_in_sender_ns(&bench, &rivals, mode)?));
    }

    let mut s = figures(&runs, topo, &rivals, &missing);
    s.push_str(&attribution(&in_ns, &rivals));
    collector::emit(&s);
    drop(bench);
    collector::emit(&report::footer(started.elapsed()));
    Ok(())
}

fn flood_under(
    bench: &Bench,
    rivals: &[(Rival, PathBuf)],
    ifaces: &[&str],
    round: usize,
    mode: Mode,
) -> anyhow::Result<Run> {
    let (flood, kaipo, rival) = match mode {
        Mode::Unmonitored => (
            bench.flood(FLOOD_SECS, None, &Default::default(), &mut |_| Ok(()))?,
            None,
            None,
        ),
        Mode::Pcap | Mode::Ebpf => {
            let backend = if mode == Mode::Pcap { "pcap" } else { "ebpf" };
            let m = bench.monitored_flood(FLOOD_SECS, None, false, Some(backend), false)?;
            (m.flood.clone(), Some(m), None)
        }
        Mode::Rival(rival) => {
            let bin = path_of(rivals, rival)?;
            let w = rivals::rival_flood(bench, rival, bin, ifaces, None, FLOOD_SECS)?;
            let told = rivals::told(rival, &w.outputs, w.flood.sender_pid, &sender_comm(bench));
            (w.flood.clone(), None, Some((w, told)))
        }
    };
    Ok(Run {
        round,
        mode,
        flood,
        kaipo,
        rival,
    })
}

fn path_of(rivals: &[(Rival, PathBuf)], rival: Rival) -> anyhow::Result<&PathBuf> {
    rivals
        .iter()
        .find(|(r, _)| *r == rival)
        .map(|(_, p)| p)
        .with_context(|| format!("{} is not installed", rival.name()))
}

/// The sender's command name as tools that show names print it: the xtask binary's.
pub(super) fn sender_comm(bench: &Bench) -> String {
    let name = bench
        .exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The kernel keeps 15 characters of a command name.
    name.chars().take(15).collect()
}

/// What a monitor in the sender's namespace, on `kbs0`, made of one flood.
struct InNs {
    watched: Watched,
    /// (bytes the monitor gave the sender's pid, bytes the sender's datagrams are worth in its
    /// count).
    sender_bytes: u64,
    expected: u64,
}

fn flood_in_sender_ns(
    bench: &Bench,
    rivals: &[(Rival, PathBuf)],
    mode: Mode,
) -> anyhow::Result<InNs> {
    let ns = &bench.topo.sender_ns;
    match mode {
        Mode::Pcap => {
            let mut cmd = Topology::command_in(ns, &bench.bin);
            cmd.args([
                "watch",
                "--json",
                "--interval",
                "1s",
                "--backend",
                "pcap",
                "--iface",
                SENDER_NS_IF,
            ]);
            // kaipo prints its last, partial interval when it gets SIGINT.
            let linger = Linger::Fixed(std::time::Duration::from_millis(200), libc::SIGINT);
            let w = rivals::watched_flood(bench, FLOOD_SECS, vec![cmd], &linger)?;
            let records: Vec<serde_json::Value> = w
                .outputs
                .iter()
                .flat_map(|o| o.lines())
                .map(|l| serde_json::from_str(l).with_context(|| format!("kaipo printed {l:?}")))
                .collect::<anyhow::Result<_>>()?;
            let sender = kaipo::process_totals(&records, w.flood.sender_pid);
            Ok(InNs {
                sender_bytes: sender.tx_bytes,
                expected: w.flood.sent * IP_BYTES,
                watched: w,
            })
        }
        Mode::Rival(rival) => {
            let bin = path_of(rivals, rival)?;
            let w = rivals::rival_flood(bench, rival, bin, &[SENDER_NS_IF], Some(ns), FLOOD_SECS)?;
            let told = rivals::told(rival, &w.outputs, w.flood.sender_pid, &sender_comm(bench));
            Ok(InNs {
                sender_bytes: told.sender_bytes.unwrap_or(0),
                expected: w.flood.sent * told.bytes_per_datagram,
                watched: w,
            })
        }
        _ => bail!("no namespace run for {}", mode.label()),
    }
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

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1} %", 100.0 * v))
}

fn figures(
    runs: &[Run],
    topo: &Topology,
    rivals: &[(Rival, PathBuf)],
    missing: &[Rival],
) -> String {
    let ifaces = [topo.sender_if.as_str(), topo.receiver_if.as_str()];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Each flood: one sender (`sendmmsg`, 64-byte frames, pinned to CPU {SENDER_CPU}) for {FLOOD_SECS} s \
         through `{}` → host forwarding → `{}` to one receiver (`recvmmsg`, CPU {RECEIVER_CPU}). \
         {ROUNDS} rounds, each: a flood with no monitor, then one flood under each monitor (the \
         order rotating by round), every monitor in the host's namespace watching the two host ends:\n",
        topo.sender_if, topo.receiver_if
    );
    let _ = writeln!(
        s,
        "- kaipo: `kaipo watch --json --interval 1s --iface {} --iface {}` with `--backend pcap` and with `--backend ebpf`",
        ifaces[0], ifaces[1]
    );
    rivals::write_list(&mut s, rivals, missing, &ifaces, "");
    let _ = writeln!(
        s,
        "\nThe other tools start 2 s before the flood and keep running after it until the total \
         they print stops growing from one report to the next (at most 20 s), so that their \
         last report covers everything they will ever count of it. \"Seen\": for kaipo, \
         `interfaces[].rx_packets + tx_packets` of the two host ends from its JSON; for the \
         others, the total their own output gives (nethogs `-v 2`: link-layer bytes, \
         {FRAME_BYTES} per datagram; bandwhich `--total-utilization`: the `process:` lines of \
         its last report, {IP_BYTES} IP-layer bytes per datagram; iftop: the last `Cumulative` \
         total, {IP_BYTES} per datagram, three significant digits), summed over the tool's \
         processes. Every datagram crosses both host ends, so full visibility is 2 × sent. \
         Drops: kaipo's `lost.capture_drops` for pcap, the sum of every `lost.*` for eBPF; \
         nethogs, bandwhich and iftop print no drop counter, so only \"seen\" shows what they \
         missed. CPU: utime + stime (`/proc/PID/stat`, all the tool's processes) over the \
         sender's window, as % of one core (clock ticks: 0.0 % means under one tick per \
         window); \"CPU after the sender stopped\": the same from the sender's end until the \
         tool was stopped (backlog it was still working through; kaipo is stopped as soon as \
         the receiver is done, so it has no such figure). RSS: `VmHWM`, summed over the tool's \
         processes. \"Sender attributed\": bytes the monitor gave the sender's process \
         against the sender's datagrams; the sender's socket lives in its own network \
         namespace, which tools that read the host's socket tables cannot see (see the \
         namespace table below). The last column of the medians is the machine's busy time \
         outside the sender, the receiver and ksoftirqd, in CPUs: it includes the monitor.\n"
    );
    let _ = writeln!(
        s,
        "| Round | monitor | sent (kpps) | received (kpps) | seen on host ends | seen / (2 × sent) | drops reported | CPU (% of a core) | peak RSS | sender attributed | CPU after the sender stopped |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let f = &r.flood;
        let cells = match r.row() {
            None => [
                "–".to_owned(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ],
            Some(row) => [
                row.seen.as_ref().map_or("?".into(), |(t, _)| t.clone()),
                pct(row.seen.as_ref().map(|(_, v)| *v)),
                row.drops.map_or(row.lost.clone(), |d| {
                    if row.lost == "none" {
                        int(d)
                    } else {
                        format!("{} ({})", int(d), row.lost)
                    }
                }),
                format!("{:.1} %", row.cpu_pct),
                mib(row.rss_kib),
                pct(row.attributed),
                row.after.map_or("–".into(), |(cpu, secs)| {
                    format!("{cpu:.2} s in {secs:.1} s")
                }),
            ],
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {} |",
            r.round,
            r.mode.label(),
            f.sent_pps() / 1e3,
            f.delivered_pps() / 1e3,
            cells.join(" | "),
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
        "| monitor | received (kpps) | vs no monitor | seen / (2 × sent) | drops reported per flood | CPU (% of a core) | peak RSS (max) | sender attributed | other busy CPUs, incl. the monitor |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    let modes = [Mode::Unmonitored, Mode::Pcap, Mode::Ebpf]
        .into_iter()
        .chain(rivals.iter().map(|(r, _)| Mode::Rival(*r)));
    for mode in modes {
        let pps = median(of(mode).map(|r| r.flood.delivered_pps()).collect());
        let others = median(of(mode).map(|r| r.flood.others_cpu).collect());
        let vs = if mode == Mode::Unmonitored {
            "–".to_owned()
        } else {
            format!("{:+.1} %", 100.0 * (pps / base.max(1e-9) - 1.0))
        };
        let rows: Vec<Row> = of(mode).filter_map(Run::row).collect();
        let cells = if rows.is_empty() {
            [
                "–".to_owned(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]
        } else {
            let med_opt = |get: &dyn Fn(&Row) -> Option<f64>| {
                let v: Vec<f64> = rows.iter().filter_map(get).collect();
                (!v.is_empty()).then(|| median(v))
            };
            let drops = med_opt(&|r| r.drops.map(|d| d as f64))
                .map_or("not reported".into(), |d| int(d as u64));
            [
                pct(med_opt(&|r| r.seen.as_ref().map(|(_, v)| *v))),
                drops,
                format!("{:.1} %", median(rows.iter().map(|r| r.cpu_pct).collect())),
                mib(rows.iter().map(|r| r.rss_kib).max().unwrap_or(0)),
                pct(med_opt(&|r| r.attributed)),
            ]
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {vs} | {} | {others:.2} |",
            mode.label(),
            pps / 1e3,
            cells.join(" | "),
        );
    }
    s
}

fn attribution(in_ns: &[(Mode, InNs)], rivals: &[(Rival, PathBuf)]) -> String {
    let mut s = String::new();
    if in_ns.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nAttribution where the tools can see the sender's socket: one more {FLOOD_SECS} s flood \
         per tool, the tool now running inside the sender's namespace (`ip netns exec`) on its \
         end of the pair, `{SENDER_NS_IF}` (kaipo: `kaipo watch --json --interval 1s --backend \
         pcap --iface {SENDER_NS_IF}`; {}). Bytes the tool gave the sender's process (kaipo and \
         nethogs: by pid; bandwhich: by command name, which only the sender has in that \
         namespace) against the sender's datagrams at the tool's layer. kaipo's eBPF backend \
         attributes across namespaces from the host: its row in the tables above.\n",
        rivals
            .iter()
            .filter(|(r, _)| r.attributes())
            .map(|(r, _)| r.describe(&[SENDER_NS_IF]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "| tool (in the sender's namespace) | sent (kpps) | received (kpps) | sender's bytes: attributed / expected | attributed | CPU (% of a core) | peak RSS |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for (mode, r) in in_ns {
        let f = &r.watched.flood;
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {} / {} | {} | {:.1} % | {} |",
            mode.label(),
            f.sent_pps() / 1e3,
            f.delivered_pps() / 1e3,
            int(r.sender_bytes),
            int(r.expected),
            pct(Some(r.sender_bytes as f64 / r.expected.max(1) as f64)),
            r.watched.cpu_pct(),
            mib(r.watched.vm_hwm_kib),
        );
    }
    s
}
