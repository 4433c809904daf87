//! Sections 2, 3b and 4: where the flood's cost goes, in the kernel and in kaipo.

use std::fmt::Write as _;

use super::{flood::ratio, int, median, mib, pct, verdict, DATAGRAM, TARGET_CPU_PCT};
use crate::bench::{
    breakdown::Piece,
    collector::{Flood, Monitored, BREAKDOWN_SECS, FLOOD_SECS},
    kaipo,
    topology::Topology,
};
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
    program_table(&mut s, m);
    if let Some((ns, runs)) = m.empty_classifier.filter(|(_, runs)| *runs > 0) {
        let floor = ns as f64 / runs as f64;
        let above = |name: &str| {
            m.programs
                .iter()
                .flatten()
                .find(|(n, _, r)| n == name && *r > 0)
                .map_or_else(
                    || "-".to_owned(),
                    |(_, n, r)| format!("{:.1} ns", *n as f64 / *r as f64 - floor),
                )
        };
        let _ = writeln!(
            s,
            "\nAn empty classifier (`r0 = TC_ACT_UNSPEC; exit`) attached after kaipo's on the same \
             two TCX hooks during this flood ran {} times at {floor:.1} ns per run: what the \
             statistics charge a program that does nothing (their clock reads and the call). Above \
             it, `kaipo_tc_ingress` costs {} and `kaipo_tc_egress` {} per run.",
            int(runs),
            above("kaipo_tc_ingress"),
            above("kaipo_tc_egress"),
        );
    }
    if let (Some((ns, runs)), Some(own)) = (
        m.empty_cgroup_skb.filter(|(_, runs)| *runs > 0),
        own_kernel_ns(m),
    ) {
        let _ = writeln!(
            s,
            "\nTwo empty cgroup_skb programs (`r0 = 1; exit`, ingress and egress) attached beside \
             kaipo's at the cgroup v2 root ran {} times at {:.1} ns per run. Each of kaipo's \
             programs less the empty program of its hook, times its runs per datagram, summed: \
             **{own:.1} ns of kaipo's own kernel time per datagram sent** above the floor of the \
             hooks it uses (target: <= {TARGET_OWN_NS:.0} ns).",
            int(runs),
            ns as f64 / runs as f64,
        );
    }
    if m.flood.foreign_programs > 0 {
        let _ = writeln!(s, "\n{}", foreign_note(m.flood.foreign_programs));
    }
    s
}

/// Section 2's table of kaipo's programs and their total per datagram.
fn program_table(s: &mut String, m: &Monitored) {
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
}

/// Section 2 again for `kaipo watch --no-flows`: the socket programs alone on the packet path.
pub fn stats_without_flows(m: &Monitored) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#### Without flows (`kaipo watch` with no interface named, its default)\n"
    );
    let _ = writeln!(
        s,
        "The same flood and statistics with `kaipo watch --json --interval 1s --no-flows` (no \
         interface named: every interface that is up is counted, from the kernel's own \
         counters, and no kaipo program runs on an interface). {} datagrams sent, {} \
         delivered.\n",
        int(m.flood.sent),
        int(m.flood.received)
    );
    program_table(&mut s, m);
    if let (Some((ns, runs)), Some(own)) = (
        m.empty_cgroup_skb.filter(|(_, runs)| *runs > 0),
        own_kernel_ns(m),
    ) {
        let _ = writeln!(
            s,
            "\nThe empty cgroup_skb pair beside kaipo's ran {} times at {:.1} ns per run. kaipo's \
             own kernel time per datagram sent above the floor of the hooks it uses (cgroup_skb \
             only): **{own:.1} ns** (target: <= {TARGET_OWN_NS:.0} ns). Attribution in this \
             flood: sender {} of {} bytes, receiver {} of {}.",
            int(runs),
            ns as f64 / runs as f64,
            int(m.sender.tx_bytes),
            int(m.flood.sent * DATAGRAM),
            int(m.receiver.rx_bytes),
            int(m.flood.received * DATAGRAM),
        );
    }
    if m.flood.foreign_programs > 0 {
        let _ = writeln!(s, "\n{}", foreign_note(m.flood.foreign_programs));
    }
    s
}

/// The bound on kaipo's own kernel time per datagram, above the empty programs.
pub const TARGET_OWN_NS: f64 = 100.0;

/// kaipo's own kernel time per datagram sent: each program's run time less what an empty
/// program on its kind of hook costs per run (the statistics' charge and the call), times its
/// runs. Programs off the packet path (socket creation and release, process exit) count whole.
pub fn own_kernel_ns(m: &Monitored) -> Option<f64> {
    own_kernel_ns_of(m.programs.as_ref()?, m)
}

/// [`own_kernel_ns`] of `programs`, held by a kaipo that ran beside the one of `m` (its floors
/// and datagrams are those of `m`).
pub fn own_kernel_ns_of(programs: &[(String, u64, u64)], m: &Monitored) -> Option<f64> {
    let per_run = |(ns, runs): (u64, u64)| (runs > 0).then(|| ns as f64 / runs as f64);
    let tc = per_run(m.empty_classifier?)?;
    let cgroup = per_run(m.empty_cgroup_skb?)?;
    let sent = m.flood.sent.max(1) as f64;
    let own: f64 = programs
        .iter()
        .map(|(name, ns, runs)| {
            let floor = match name.as_str() {
                "kaipo_tc_ingress" | "kaipo_tc_egress" | "kaipo_xdp" => tc,
                "kaipo_sock_ingress" | "kaipo_sock_egress" => cgroup,
                _ => 0.0,
            };
            (*ns as f64 - floor * *runs as f64).max(0.0)
        })
        .sum();
    Some(own / sent)
}

fn foreign_note(n: usize) -> String {
    format!(
        "Note: {n} other `kaipo_*` programs (another kaipo, e.g. a test run) were loaded during this \
         flood; their cgroup programs see these datagrams too."
    )
}

pub fn breakdown(bases: &[Flood], pieces: &[(Piece, Vec<Flood>)], topo: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 3b. Where the flood's cost goes\n");
    let passes = pieces.first().map_or(0, |(_, floods)| floods.len());
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
         Each piece is measured {passes} times, each time right after a flood with \
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
        "| attached | CPU per datagram (median of {passes}, range) | added per datagram | sustainable rate with / without |"
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
    let others = bases
        .iter()
        .chain(pieces.iter().flat_map(|(_, f)| f))
        .map(|f| f.others_cpu)
        .fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "\nDuring these floods the sender waited for its CPU up to {:.1} % of a window and other \
         work took up to {others:.2} CPUs; differences smaller than the spread of the reference \
         are noise.",
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
    let full_ticks = median(with.iter().map(|m| m.cpu_secs * tck as f64).collect());
    let low_ticks = quarter.cpu_secs * tck as f64;
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
        // In ticks, not percentages: the two windows differ by a few milliseconds, which
        // moves one tick's percentage.
        verdict(full_ticks <= low_ticks + 1.0 + 1e-9)
    );
    s
}
