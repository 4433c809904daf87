//! Section 3: the flood with and without kaipo, and attribution.

use std::fmt::Write as _;

use super::{int, median, pct, verdict, DATAGRAM, TARGET_RATIO};
use crate::bench::{
    collector::{Flood, Monitored, FLOOD_SECS, RECEIVER_CPU, ROUNDS, SENDER_CPU},
    topology::Topology,
    traffic::{BATCH, ETH_HEADER, PAYLOAD_64B_FRAME},
};
fn setup_text(topo: &Topology) -> String {
    format!(
        "Network: a sender namespace and a receiver namespace, each joined to the host by a veth \
         pair; the host forwards between its two ends (`{s}` and `{d}`, forwarding on for those two \
         only). `kaipo watch --json --interval 1s --iface {s} --iface {d}` runs on the host, so each \
         datagram passes `kaipo_sock_egress` (sender's socket), `kaipo_tc_ingress` (TCX ingress of \
         `{s}`), `kaipo_tc_egress` (TCX egress of `{d}`) and `kaipo_sock_ingress` (receiver's \
         socket), and nothing else per datagram. \
         Sender: one connected UDP socket, `sendmmsg` batches of {BATCH} datagrams of \
         {PAYLOAD_64B_FRAME}-byte payload ({DATAGRAM}-byte IP datagrams, {} -byte Ethernet frames as \
         the kernel counts them, without FCS) for {FLOOD_SECS} s, pinned to CPU {SENDER_CPU}. \
         Receiver: `recvmmsg` batches of {BATCH}, 32 MiB receive buffer, pinned to CPU \
         {RECEIVER_CPU}. kaipo itself is not pinned.",
        DATAGRAM + ETH_HEADER,
        s = topo.sender_if,
        d = topo.receiver_if,
    )
    .replace(" -byte", "-byte")
}

pub fn flood(
    without: &[Flood],
    with: &[Monitored],
    stats: &Monitored,
    quarter: &Monitored,
    topo: &Topology,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 3. 64-byte UDP flood, with and without kaipo\n");
    let _ = writeln!(s, "{}\n", setup_text(topo));
    let _ = writeln!(
        s,
        "{ROUNDS} rounds, each a flood without kaipo and one with it (the one with kaipo first \
         in even rounds), in one run. Delivered/s = datagrams the receiver got / the sender's \
         {FLOOD_SECS} s window (sent/s in brackets). \
         Since every datagram's whole path (send, forward, receive up to the socket queue) runs \
         on the sender's CPU, in softirq in the sender's context, that CPU is the bottleneck; \
         \"CPU per datagram\" is the sender's time on CPU (`/proc/thread-self/schedstat`, which \
         includes that softirq work as this kernel has no IRQ time accounting) plus that CPU's \
         `ksoftirqd`, over the datagrams sent. Other work on the machine lowers delivered/s but \
         not CPU per datagram as much; \"waited\" is how much of its window the sender spent \
         runnable but waiting for its CPU, and \"other work\" the machine's busy time \
         (`/proc/stat`) not spent by the sender, the receiver or `ksoftirqd`, in CPUs (2 CPUs \
         here; the two may share a physical core, so work on the receiver's CPU can slow the \
         sender's too).\n"
    );
    let _ = writeln!(
        s,
        "| round | without kaipo: delivered/s (sent/s) | with kaipo: delivered/s (sent/s) | with / without | CPU per datagram without / with | waited without / with | other work without / with | socket drops without / with | other `kaipo_*` programs loaded without / with |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let cell = |f: &Flood| {
        format!(
            "{} ({})",
            int(f.delivered_pps() as u64),
            int(f.sent_pps() as u64)
        )
    };
    let drops = |f: &Flood| f.rcvbuf_errors.map_or_else(|| "?".into(), int);
    for (i, (a, b)) in without.iter().zip(with).enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} % | {:.0} / {:.0} ns | {:.1} / {:.1} % | {:.2} / {:.2} | {} / {} | {} / {} |",
            i + 1,
            cell(a),
            cell(&b.flood),
            100.0 * b.flood.delivered_pps() / a.delivered_pps().max(1.0),
            a.cpu_ns_per_datagram(),
            b.flood.cpu_ns_per_datagram(),
            100.0 * a.contention(),
            100.0 * b.flood.contention(),
            a.others_cpu,
            b.flood.others_cpu,
            drops(a),
            drops(&b.flood),
            a.foreign_programs,
            b.flood.foreign_programs
        );
    }
    let f = FloodFigures::new(without, with);
    let _ = writeln!(
        s,
        "| median | {} | {} | **{:.1} %** | {:.0} / {:.0} ns | | | | |\n",
        int(f.pps_without as u64),
        int(f.pps_with as u64),
        100.0 * f.pps_ratio,
        f.cpu_without,
        f.cpu_with,
    );
    let all_delivered = without
        .iter()
        .chain(with.iter().map(|m| &m.flood))
        .all(|f| f.received == f.sent);
    let _ = writeln!(
        s,
        "Delivered/s, median with / median without: **{:.1} %** (median of the per-round ratios \
         {:.1} %); target >= {:.0} %: {}. By CPU per datagram (median without / median with), \
         the rate the sender's CPU can sustain with kaipo is **{:.1} %** of what it sustains \
         without: {}; kaipo added {:.0} ns of CPU to each datagram. {}{}\n",
        100.0 * f.pps_ratio,
        100.0 * f.pps_ratio_of_rounds,
        100.0 * TARGET_RATIO,
        verdict(f.pps_ratio >= TARGET_RATIO),
        100.0 * f.cpu_ratio,
        verdict(f.cpu_ratio >= TARGET_RATIO),
        f.cpu_with - f.cpu_without,
        if all_delivered {
            "Every datagram sent was delivered in every round. "
        } else {
            "Some rounds lost datagrams (see socket drops). "
        },
        if f.max_contention > CONTENDED || f.max_others > OTHERS_QUIET {
            format!(
                "Other work shared the machine (up to {:.2} CPUs' worth; the sender waited up to \
                 {:.1} % of its window for its CPU), so delivered/s of those rounds says more \
                 about that work than about kaipo; CPU per datagram holds up better, but it too \
                 rises when the other CPU is busy.",
                f.max_others,
                100.0 * f.max_contention
            )
        } else {
            "The machine was otherwise quiet during these floods.".into()
        }
    );
    let _ = writeln!(s, "Attribution: what kaipo's JSON output gave the sender's and the receiver's pid (sum of `processes[].tx_bytes` / `rx_bytes` over all intervals), against the datagrams the sender handed to the kernel (× {DATAGRAM} IP-layer bytes) and the receiver got; and kaipo's interface packet counts.\n");
    let _ = writeln!(
        s,
        "| flood | sent | sender pid tx bytes: kaipo / expected | attributed | received | receiver pid rx bytes: kaipo / expected | attributed | `{}` rx packets | `{}` tx packets |",
        topo.sender_if, topo.receiver_if
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let runs = with
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("with kaipo, round {}", i + 1), m))
        .chain([
            ("with kaipo + BPF stats (section 2)".to_owned(), stats),
            ("with kaipo, ~1/4 rate (section 4)".to_owned(), quarter),
        ]);
    for (label, m) in runs {
        let f = &m.flood;
        let (tx_expected, rx_expected) = (f.sent * DATAGRAM, f.received * DATAGRAM);
        let _ = writeln!(
            s,
            "| {label} | {} | {} / {} | {} | {} | {} / {} | {} | {} | {} |",
            int(f.sent),
            int(m.sender.tx_bytes),
            int(tx_expected),
            pct(m.sender.tx_bytes as f64, tx_expected as f64),
            int(f.received),
            int(m.receiver.rx_bytes),
            int(rx_expected),
            pct(m.receiver.rx_bytes as f64, rx_expected as f64),
            int(m.sender_if.rx_packets),
            int(m.receiver_if.tx_packets),
        );
    }
    let ringbuf: u64 = with
        .iter()
        .chain([stats, quarter])
        .map(|m| m.ringbuf_full)
        .sum();
    let _ = writeln!(
        s,
        "\nkaipo's `lost.ringbuf_full` over these floods: {}.",
        int(ringbuf)
    );
    let send_errors: u64 = without
        .iter()
        .chain(with.iter().map(|m| &m.flood))
        .map(|f| f.send_errors)
        .sum();
    if send_errors > 0 {
        let _ = writeln!(
            s,
            "`sendmmsg` calls that failed with ENOBUFS: {}.",
            int(send_errors)
        );
    }
    let foreign = without
        .iter()
        .chain(with.iter().map(|m| &m.flood))
        .map(|f| f.foreign_programs)
        .max()
        .unwrap_or(0);
    if foreign > 0 {
        let _ = writeln!(
            s,
            "\nOther `kaipo_*` programs (another kaipo, such as a test run) were loaded during some \
             floods (up to {foreign}); their cgroup programs see this traffic too, in either kind of \
             round."
        );
    }
    for (i, m) in with.iter().enumerate() {
        let notes = m.stderr.trim();
        if !notes.is_empty() {
            let _ = writeln!(
                s,
                "\nkaipo's stderr in round {}: `{}`",
                i + 1,
                notes.replace('\n', " / ")
            );
        }
    }
    s
}

/// Share of its window a sender may wait for its CPU before the flood counts as contended.
const CONTENDED: f64 = 0.05;
/// Other work, in CPUs, below which the machine counts as quiet.
const OTHERS_QUIET: f64 = 0.1;

/// Section 3's headline figures, shared with the summary.
pub(super) struct FloodFigures {
    pub(super) pps_without: f64,
    pub(super) pps_with: f64,
    /// Median with / median without, of delivered/s.
    pub(super) pps_ratio: f64,
    pub(super) pps_ratio_of_rounds: f64,
    /// Median CPU ns per datagram.
    pub(super) cpu_without: f64,
    pub(super) cpu_with: f64,
    /// cpu_without / cpu_with: the sustainable rate with kaipo as a share of the one without.
    pub(super) cpu_ratio: f64,
    pub(super) max_contention: f64,
    pub(super) max_others: f64,
}

pub(super) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl FloodFigures {
    pub(super) fn new(without: &[Flood], with: &[Monitored]) -> Self {
        let with: Vec<&Flood> = with.iter().map(|m| &m.flood).collect();
        let pps_without = median(without.iter().map(Flood::delivered_pps).collect());
        let pps_with = median(with.iter().map(|f| f.delivered_pps()).collect());
        let cpu_without = median(without.iter().map(Flood::cpu_ns_per_datagram).collect());
        let cpu_with = median(with.iter().map(|f| f.cpu_ns_per_datagram()).collect());
        Self {
            pps_without,
            pps_with,
            pps_ratio: ratio(pps_with, pps_without),
            pps_ratio_of_rounds: median(
                without
                    .iter()
                    .zip(&with)
                    .map(|(a, b)| ratio(b.delivered_pps(), a.delivered_pps()))
                    .collect(),
            ),
            cpu_without,
            cpu_with,
            cpu_ratio: ratio(cpu_without, cpu_with),
            max_contention: without
                .iter()
                .chain(with.iter().copied())
                .map(Flood::contention)
                .fold(0.0, f64::max),
            max_others: without
                .iter()
                .chain(with.iter().copied())
                .map(|f| f.others_cpu)
                .fold(0.0, f64::max),
        }
    }
}
