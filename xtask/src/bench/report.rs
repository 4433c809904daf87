//! The figures as Markdown, ready to paste into BENCHMARKS.md.

use std::{fmt::Write as _, time::Duration};

use super::{
    breakdown::Piece,
    collector::{
        Flood, Flows, Monitored, BREAKDOWN_PASSES, BREAKDOWN_SECS, FLOOD_SECS, RECEIVER_CPU,
        ROUNDS, SENDER_CPU,
    },
    kaipo::{self, HeldMap},
    testrun::Costs,
    topology::Topology,
    traffic::{BATCH, ETH_HEADER, IP_UDP_HEADERS, PAYLOAD_64B_FRAME},
};

const TARGET_NS: u128 = 50;
const TARGET_RATIO: f64 = 0.97;
const TARGET_CPU_PCT: f64 = 2.0;
const TARGET_RSS_KIB: u64 = 64 * 1024;
/// IP-layer bytes of one flood datagram.
const DATAGRAM: u64 = PAYLOAD_64B_FRAME as u64 + IP_UDP_HEADERS;

pub struct Machine {
    kernel: String,
    cpus: usize,
    cpu_model: String,
    mem: String,
    date: String,
    commit: String,
    load_start: String,
    bpf_stats_sysctl: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn output(cmd: &mut std::process::Command) -> Option<String> {
    super::run_output(cmd).ok().map(|s| s.trim().to_owned())
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "?".into());
        let mem_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        let root = crate::workspace_root();
        let git = |args: &[&str]| {
            output(
                std::process::Command::new("git")
                    .arg("-C")
                    .arg(&root)
                    .args(args),
            )
        };
        let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
        let dirty = git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "kaipo-ebpf",
            "kaipo-common",
            "kaipo-user",
        ])
        .is_some_and(|s| !s.is_empty());
        Self {
            kernel: read("/proc/sys/kernel/osrelease"),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            mem: format!("{:.1} GiB", mem_kib as f64 / (1024.0 * 1024.0)),
            date: output(std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
                .unwrap_or_else(|| "?".into()),
            commit: if dirty {
                format!("{commit} with uncommitted changes in kaipo-ebpf/kaipo-common/kaipo-user")
            } else {
                commit
            },
            load_start: load_average(),
            bpf_stats_sysctl: read("/proc/sys/kernel/bpf_stats_enabled"),
        }
    }
}

fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 1234567 as "1,234,567".
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn pct(part: f64, whole: f64) -> String {
    if whole == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2} %", 100.0 * part / whole)
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

pub fn header(m: &Machine) -> String {
    format!(
        "## Collector (`cargo xtask bench collector`)\n\n\
         - Command: `cargo xtask bench collector` (as root; it builds `target/release/kaipo` first)\n\
         - Machine: Linux {}, {} CPUs ({}), {} RAM\n\
         - Date: {}; kaipo at {}\n\
         - Load average (1/5/15 min) at the start: {}; `kernel.bpf_stats_enabled` = {}\n",
        m.kernel, m.cpus, m.cpu_model, m.mem, m.date, m.commit, m.load_start, m.bpf_stats_sysctl
    )
}

/// The targets and what this run measured against them.
pub fn summary(
    c: &Costs,
    without: &[Flood],
    with: &[Monitored],
    quarter: &Monitored,
    a: &Flows,
    b: &Flows,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### Targets\n");
    let _ = writeln!(s, "| target | measured | |");
    let _ = writeln!(s, "| --- | --- | --- |");
    let programs: Vec<String> = c
        .programs
        .iter()
        .map(|(name, _, many)| format!("`{name}` {} ns", many.median().as_nanos()))
        .collect();
    let worst = c
        .programs
        .iter()
        .map(|(_, _, many)| many.median().as_nanos())
        .max();
    let _ = writeln!(
        s,
        "| <= {TARGET_NS} ns per packet per program at 10k flows (`BPF_PROG_TEST_RUN`) | {} | {} |",
        programs.join(", "),
        verdict(worst.is_some_and(|w| w <= TARGET_NS))
    );
    let f = FloodFigures::new(without, with);
    let _ = writeln!(
        s,
        "| >= {:.0} % of unmonitored delivered datagrams/s | delivered/s: {:.1} % ({} vs {} /s, medians); rate the sender's CPU sustains, by CPU per datagram: {:.1} % ({:.0} vs {:.0} ns) | {} / {} |",
        100.0 * TARGET_RATIO,
        100.0 * f.pps_ratio,
        int(f.pps_with as u64),
        int(f.pps_without as u64),
        100.0 * f.cpu_ratio,
        f.cpu_with,
        f.cpu_without,
        verdict(f.pps_ratio >= TARGET_RATIO),
        verdict(f.cpu_ratio >= TARGET_RATIO)
    );
    let share = |m: &Monitored| 100.0 * m.sched_cpu_secs / m.window.as_secs_f64();
    let ticks = |m: &Monitored| 100.0 * m.cpu_secs / m.window.as_secs_f64();
    let full = median(with.iter().map(share).collect());
    let full_ticks = median(with.iter().map(ticks).collect());
    let _ = writeln!(
        s,
        "| kaipo userspace CPU < {TARGET_CPU_PCT} % of one core, not growing with packet rate | \
         {full:.2} % at {} /s, {:.2} % at {} /s (`schedstat`; `stat` ticks: {full_ticks:.2} % / {:.2} %) | {} |",
        int(median(with.iter().map(|m| m.flood.sent_pps()).collect()) as u64),
        share(quarter),
        int(quarter.flood.sent_pps() as u64),
        ticks(quarter),
        verdict(full_ticks < TARGET_CPU_PCT && ticks(quarter) < TARGET_CPU_PCT)
    );
    let _ = writeln!(
        s,
        "| RSS < 64 MiB at 100k flows | VmHWM {}, VmRSS {} | {} |",
        mib(a.vm_hwm_kib),
        mib(a.vm_rss_kib),
        verdict(a.vm_hwm_kib < TARGET_RSS_KIB)
    );
    let total = |f: &Flows| f.maps.iter().map(|m| m.memlock).sum::<u64>();
    let _ = writeln!(
        s,
        "| maps bounded | {} of BPF maps at {} flows, {} at {} flows | {} |",
        mib(total(a) / 1024),
        int(a.flows_sent),
        mib(total(b) / 1024),
        int(b.flows_sent),
        verdict(total(b) <= total(a))
    );
    let _ = writeln!(
        s,
        "| evictions counted | {} at {} flows, {} at {} flows (`lost.flow_evictions`) | {} |",
        int(a.reported_evictions),
        int(a.flows_sent),
        int(b.reported_evictions),
        int(b.flows_sent),
        verdict(a.reported_evictions == 0 && b.reported_evictions > 0)
    );
    s
}

pub fn footer(took: Duration) -> String {
    format!(
        "Load average at the end: {}. The whole benchmark took {:.0} s.\n",
        load_average(),
        took.as_secs_f64()
    )
}

pub fn costs(c: &Costs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### 1. Per-packet cost of the interface programs (`BPF_PROG_TEST_RUN`)\n"
    );
    let _ = writeln!(
        s,
        "kaipo's object loaded as `kaipo watch` loads it (flow tracking on, FLOWS sized {}), the two \
         interface programs loaded but not attached, and run by the kernel on a {}-byte IPv4/UDP \
         Ethernet frame ({PAYLOAD_64B_FRAME}-byte payload): {} repeats per test run; the figure is the \
         kernel's average per run, median of {} test runs (min-max). First with only the frame's own \
         flow in FLOWS, then after inserting {} more flows from userspace (ifindex 1, other ports).\n",
        int(u64::from(kaipo_common::MAX_FLOWS)),
        c.frame_len,
        int(u64::from(c.repeat)),
        c.rounds,
        int(c.flows_prefilled.saturating_sub(2)),
    );
    let _ = writeln!(
        s,
        "| program | 1 flow in FLOWS | {} live flows in FLOWS | empty program of the same type (test-run floor) | target: <= {TARGET_NS} ns at 10k flows |",
        int(c.flows_prefilled)
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- |");
    let cell = |t: &super::testrun::Timing| {
        format!(
            "{} ns ({}-{})",
            t.median().as_nanos(),
            t.min().as_nanos(),
            t.max().as_nanos()
        )
    };
    for (name, one, many) in &c.programs {
        let empty = c
            .empty
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "-".into(), |(_, t)| cell(t));
        let _ = writeln!(
            s,
            "| `{name}` | {} | {} | {empty} | {} |",
            cell(one),
            cell(many),
            verdict(many.median().as_nanos() <= TARGET_NS)
        );
    }
    let _ = writeln!(
        s,
        "\nBPF run-time statistics during these test runs: {}.",
        if c.stats_runs == 0 {
            "off (kaipo's programs' `run_cnt` stayed 0)".to_owned()
        } else {
            format!(
                "**on** (another process held them on; `run_cnt` reached {}), so each run also \
                 includes two clock reads",
                int(c.stats_runs)
            )
        }
    );
    s
}

fn setup_text(topo: &Topology) -> String {
    format!(
        "Network: a sender namespace and a receiver namespace, each joined to the host by a veth \
         pair; the host forwards between its two ends (`{s}` and `{d}`, forwarding on for those two \
         only). `kaipo watch --json --interval 1s --iface {s} --iface {d}` runs on the host, so each \
         datagram passes `kaipo_sock_egress` (sender's socket), `kaipo_xdp` (generic mode, ingress \
         of `{s}`), `kaipo_tc_egress` (egress of `{d}`) and `kaipo_sock_ingress` (receiver's \
         socket), and the `sock_send_length`/`sock_recv_length` tracepoints once per datagram. \
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

pub fn stats(m: &Monitored, topo: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### 2. Kernel run time per program under load (BPF run-time statistics)\n"
    );
    let _ = writeln!(
        s,
        "`BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)` held open during one full-rate {FLOOD_SECS} s flood \
         (section 3's setup, `{}`/`{}`) with `kaipo watch` attached; `run_time_ns` and `run_cnt` of \
         each program kaipo holds (found through its fds, named `kaipo_*`), read just before the \
         sender started and after the receiver finished. {} datagrams sent, {} delivered.\n",
        topo.sender_if,
        topo.receiver_if,
        int(m.flood.sent),
        int(m.flood.received)
    );
    let _ = writeln!(
        s,
        "| program | runs | runs per datagram sent | ns per run |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
    let sent = m.flood.sent.max(1) as f64;
    let mut total_ns = 0;
    for (name, ns, runs) in m.programs.iter().flatten() {
        total_ns += ns;
        let per_run = if *runs == 0 {
            "-".into()
        } else {
            format!("{:.1}", *ns as f64 / *runs as f64)
        };
        let _ = writeln!(
            s,
            "| `{name}` | {} | {:.3} | {per_run} |",
            int(*runs),
            *runs as f64 / sent
        );
    }
    let _ = writeln!(
        s,
        "\nAll of kaipo's programs together: {:.1} ns of BPF run time per datagram sent (with the \
         statistics' own clock reads included).",
        total_ns as f64 / sent
    );
    if m.flood.foreign_programs > 0 {
        let _ = writeln!(s, "\n{}", foreign_note(m.flood.foreign_programs));
    }
    s
}

fn foreign_note(n: usize) -> String {
    format!(
        "Note: {n} other `kaipo_*` programs (another kaipo, e.g. a test run) were loaded during this \
         flood; their cgroup programs see these datagrams too."
    )
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
        "{ROUNDS} rounds, each a flood without kaipo then one with it, in one run. Delivered/s = \
         datagrams the receiver got / the sender's {FLOOD_SECS} s window (sent/s in brackets). \
         Since every datagram's whole path (send, forward, receive up to the socket queue) runs \
         on the sender's CPU, in softirq in the sender's context, that CPU is the bottleneck; \
         \"CPU per datagram\" is the sender's time on CPU (`/proc/thread-self/schedstat`, which \
         includes that softirq work as this kernel has no IRQ time accounting) plus that CPU's \
         `ksoftirqd`, over the datagrams sent. Other work on the machine lowers delivered/s but \
         not CPU per datagram; \"waited\" is how much of its window the sender spent runnable \
         but waiting for its CPU.\n"
    );
    let _ = writeln!(
        s,
        "| round | without kaipo: delivered/s (sent/s) | with kaipo: delivered/s (sent/s) | with / without | CPU per datagram without / with | waited without / with | socket drops without / with | other `kaipo_*` programs loaded without / with |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
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
            "| {} | {} | {} | {:.1} % | {:.0} / {:.0} ns | {:.1} / {:.1} % | {} / {} | {} / {} |",
            i + 1,
            cell(a),
            cell(&b.flood),
            100.0 * b.flood.delivered_pps() / a.delivered_pps().max(1.0),
            a.cpu_ns_per_datagram(),
            b.flood.cpu_ns_per_datagram(),
            100.0 * a.contention(),
            100.0 * b.flood.contention(),
            drops(a),
            drops(&b.flood),
            a.foreign_programs,
            b.flood.foreign_programs
        );
    }
    let f = FloodFigures::new(without, with);
    let _ = writeln!(
        s,
        "| median | {} | {} | **{:.1} %** | {:.0} / {:.0} ns | | | |\n",
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
        if f.max_contention > CONTENDED {
            format!(
                "In some floods the sender waited up to {:.1} % of its window for its CPU: \
                 other work shared the machine, so delivered/s of those rounds says more about \
                 that work than about kaipo; CPU per datagram is the figure to go by.",
                100.0 * f.max_contention
            )
        } else {
            "The sender never waited more than 5 % of its window for its CPU.".into()
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

/// Section 3's headline figures, shared with the summary.
struct FloodFigures {
    pps_without: f64,
    pps_with: f64,
    /// Median with / median without, of delivered/s.
    pps_ratio: f64,
    pps_ratio_of_rounds: f64,
    /// Median CPU ns per datagram.
    cpu_without: f64,
    cpu_with: f64,
    /// cpu_without / cpu_with: the sustainable rate with kaipo as a share of the one without.
    cpu_ratio: f64,
    max_contention: f64,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl FloodFigures {
    fn new(without: &[Flood], with: &[Monitored]) -> Self {
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
        }
    }
}

pub fn breakdown(bases: &[Flood], pieces: &[(Piece, Vec<Flood>)], topo: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 3b. Where the flood's cost goes\n");
    let reference = median(bases.iter().map(Flood::cpu_ns_per_datagram).collect());
    let spread = |floods: &[Flood]| {
        let v: Vec<f64> = floods.iter().map(Flood::cpu_ns_per_datagram).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.0}-{hi:.0}")
    };
    let _ = writeln!(
        s,
        "The same flood ({BREAKDOWN_SECS} s each), with one piece of kaipo's kernel side attached at \
         a time straight from kaipo's object (no kaipo userspace, which is not on the packet path). \
         Each piece is measured {BREAKDOWN_PASSES} times, each time right after a flood with \
         nothing attached; the reference is the median CPU per datagram (as in section 3) of \
         those {} floods without anything: {reference:.0} ns ({} ns). The empty XDP programs \
         separate the price of generic-mode XDP itself from that of kaipo's code: before a \
         generic XDP program runs, the kernel reallocates the head of every skb with less than \
         256 bytes of headroom, and for a program loaded with `BPF_F_XDP_HAS_FRAGS` it copies the \
         skb into page-pool pages instead (`skb_cow_data_for_xdp`).\n",
        bases.len(),
        spread(bases),
    );
    let _ = writeln!(
        s,
        "| attached | CPU per datagram (median of {BREAKDOWN_PASSES}, range) | added per datagram | sustainable rate with / without |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
    for (piece, floods) in pieces {
        let with = median(floods.iter().map(Flood::cpu_ns_per_datagram).collect());
        let _ = writeln!(
            s,
            "| {} | {with:.0} ns ({}) | {:.0} ns | {:.1} % |",
            piece.describe(topo),
            spread(floods),
            with - reference,
            100.0 * ratio(reference, with),
        );
    }
    let waited = bases
        .iter()
        .chain(pieces.iter().flat_map(|(_, f)| f))
        .map(Flood::contention)
        .fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "\nThe sender waited for its CPU up to {:.1} % of a window in these floods.",
        100.0 * waited
    );
    s
}

pub fn cpu(with: &[Monitored], quarter: &Monitored) -> String {
    let mut s = String::new();
    let tck = kaipo::clock_ticks_per_sec();
    let _ = writeln!(
        s,
        "### 4. kaipo's own CPU time and memory during the flood\n"
    );
    let _ = writeln!(
        s,
        "utime + stime of the kaipo process from `/proc/<pid>/stat` ({tck} ticks/s, so one tick is \
         {:.2} % of one core over {FLOOD_SECS} s) just before the sender started and just after it \
         finished, over that window; `VmHWM`/`VmRSS` from `/proc/<pid>/status` after the flood. The \
         reduced rate sleeps between batches to aim at a quarter of the rate the sender's CPU \
         sustains with kaipo (1 s / median CPU per datagram of section 3).\n",
        100.0 / (tck as f64 * FLOOD_SECS)
    );
    let _ = writeln!(
        s,
        "| flood | datagrams/s sent | kaipo utime+stime (`stat`) | % of one core | on-CPU time (`schedstat`) | % of one core | VmHWM | VmRSS |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let row = |label: &str, m: &Monitored| {
        let w = m.window.as_secs_f64();
        format!(
            "| {label} | {} | {:.2} s over {w:.2} s | {} | {:.1} ms | {} | {} | {} |",
            int(m.flood.sent_pps() as u64),
            m.cpu_secs,
            pct(m.cpu_secs, w),
            1000.0 * m.sched_cpu_secs,
            pct(m.sched_cpu_secs, w),
            mib(m.vm_hwm_kib),
            mib(m.vm_rss_kib)
        )
    };
    for (i, m) in with.iter().enumerate() {
        let _ = writeln!(s, "{}", row(&format!("full rate, round {}", i + 1), m));
    }
    let _ = writeln!(s, "{}", row("~1/4 rate", quarter));
    let full = median(
        with.iter()
            .map(|m| 100.0 * m.cpu_secs / m.window.as_secs_f64())
            .collect(),
    );
    let low = 100.0 * quarter.cpu_secs / quarter.window.as_secs_f64();
    let one_tick = 100.0 / (tck as f64 * quarter.window.as_secs_f64());
    let sched_full = median(
        with.iter()
            .map(|m| 100.0 * m.sched_cpu_secs / m.window.as_secs_f64())
            .collect(),
    );
    let sched_low = 100.0 * quarter.sched_cpu_secs / quarter.window.as_secs_f64();
    let _ = writeln!(
        s,
        "\nMedian at full rate {full:.2} % (`stat`) / {sched_full:.3} % (`schedstat`), at ~1/4 rate \
         {low:.2} % / {sched_low:.3} % of one core. Target < {TARGET_CPU_PCT} % of one core: {}; \
         not growing with packet rate (full-rate `stat` figure within one tick of the ~1/4-rate \
         one, or below it): {}.",
        verdict(full < TARGET_CPU_PCT && low < TARGET_CPU_PCT),
        verdict(full <= low + one_tick + 1e-9)
    );
    s
}

fn map_rows(a: &Flows, b: &Flows) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| map | type | max_entries | memlock at {} flows | memlock at {} flows |",
        int(a.flows_sent),
        int(b.flows_sent)
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: |");
    let mut names: Vec<&str> = a
        .maps
        .iter()
        .chain(&b.maps)
        .map(|m| m.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let find = |f: &'_ Flows, name: &str| f.maps.iter().find(|m| m.name == name).cloned();
    for name in names {
        let (x, y) = (find(a, name), find(b, name));
        let Some(any) = x.clone().or_else(|| y.clone()) else {
            continue;
        };
        let mem = |m: Option<HeldMap>| m.map_or_else(|| "-".into(), |m| kib(m.memlock / 1024));
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            if name.is_empty() { "?" } else { name },
            kaipo::map_type_name(any.map_type),
            int(any.max_entries),
            mem(x),
            mem(y)
        );
    }
    let total = |f: &Flows| mib(f.maps.iter().map(|m| m.memlock).sum::<u64>() / 1024);
    let _ = writeln!(s, "| total | | | {} | {} |", total(a), total(b));
    s
}

fn kib(kib: u64) -> String {
    format!("{} KiB", int(kib))
}

pub fn flows(a: &Flows, b: &Flows, topo: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 5. 100,000 and 150,000 concurrent flows\n");
    let _ = writeln!(
        s,
        "A fresh `kaipo watch --json --interval 200ms --iface {}` for each case (only the sender's \
         host end, so each flow is one FLOWS entry, on its XDP side); the sender namespace sends one \
         {PAYLOAD_64B_FRAME}-byte datagram to each of 2 receiver addresses × 50,000 ports (a second \
         socket, i.e. another source port, for flows past 100,000). Nothing listens on those ports, \
         so the receiver answers with the few ICMP errors its rate limit allows. Read 2.6 s after \
         the burst (kaipo counts FLOWS every 10th interval, so one count falls after it): kaipo's \
         maps from `/proc/<pid>/fdinfo` (memlock) and the kernel's map info (names), FLOWS and \
         COUNTERS read directly, kaipo's VmRSS/VmHWM; evictions also as kaipo's JSON reports them \
         (`lost.flow_evictions`, summed over all intervals). kaipo's JSON has no flow count, so \
         \"flows seen\" is its `FLOW_CREATED` counter.\n",
        topo.sender_if
    );
    let _ = writeln!(
        s,
        "| | {} flows | {} flows |",
        int(a.flows_sent),
        int(b.flows_sent)
    );
    let _ = writeln!(s, "| --- | ---: | ---: |");
    let live_on = |f: &Flows| f.state.live.get(&f.sender_ifindex).copied().unwrap_or(0);
    let live_all = |f: &Flows| f.state.live.values().sum::<u64>();
    let mut row = |label: &str, value: &dyn Fn(&Flows) -> String| {
        let _ = writeln!(s, "| {label} | {} | {} |", value(a), value(b));
    };
    row("datagrams sent", &|f| int(f.flows_sent));
    row("flows kaipo created (`FLOW_CREATED`)", &|f| {
        int(f.state.created)
    });
    row("live FLOWS entries (on the monitored veth / all)", &|f| {
        format!("{} / {}", int(live_on(f)), int(live_all(f)))
    });
    row("evictions, kaipo JSON `lost.flow_evictions`", &|f| {
        int(f.reported_evictions)
    });
    row("evictions, created - live from the maps", &|f| {
        int(f.state.created.saturating_sub(live_all(f)))
    });
    row(
        "flows that found no room (`FLOW_MAP_FULL` / JSON `flow_map_full`)",
        &|f| format!("{} / {}", int(f.state.map_full), int(f.reported_map_full)),
    );
    row("kaipo VmRSS / VmHWM", &|f| {
        format!("{} / {}", mib(f.vm_rss_kib), mib(f.vm_hwm_kib))
    });
    row("BPF map memory (memlock, all kaipo's maps)", &|f| {
        mib(f.maps.iter().map(|m| m.memlock).sum::<u64>() / 1024)
    });
    let _ = writeln!(s, "\nkaipo's BPF maps, per `/proc/<pid>/fdinfo`:\n");
    s.push_str(&map_rows(a, b));
    let total = |f: &Flows| f.maps.iter().map(|m| m.memlock).sum::<u64>();
    let bounded = total(b) <= total(a);
    let _ = writeln!(
        s,
        "\nTargets: RSS < 64 MiB at 100k flows: {} ({}); maps bounded (same memlock at 100k and \
         150k flows, no more at 150k than at 100k): {}; evictions counted (150k case reports > 0 in kaipo's JSON): {}; no \
         evictions at 100k: {}.",
        verdict(a.vm_hwm_kib < TARGET_RSS_KIB),
        mib(a.vm_hwm_kib),
        verdict(bounded),
        verdict(b.reported_evictions > 0),
        verdict(a.reported_evictions == 0)
    );
    s
}
