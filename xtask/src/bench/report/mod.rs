//! The figures as Markdown, ready to paste into BENCHMARKS.md: one function per section, and
//! the machine, the targets and the helpers they share here.

mod costs;
mod flood;
mod flows;
mod load;

pub use self::{
    costs::costs,
    flood::flood,
    flows::flows,
    load::{
        breakdown, cpu, own_kernel_ns, own_kernel_ns_of, stats, stats_without_flows, TARGET_OWN_NS,
    },
};

use std::{fmt::Write as _, time::Duration};

use self::flood::FloodFigures;
use super::{
    collector::{Flood, Flows, Monitored},
    testrun::Costs,
    traffic::{IP_UDP_HEADERS, PAYLOAD_64B_FRAME},
};

const TARGET_NS: u128 = 50;
const TARGET_RATIO: f64 = 0.97;
const TARGET_CPU_PCT: f64 = 2.0;
const TARGET_RSS_KIB: u64 = 64 * 1024;
/// IP-layer bytes of one flood datagram.
pub(super) const DATAGRAM: u64 = PAYLOAD_64B_FRAME as u64 + IP_UDP_HEADERS;

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
pub(super) fn int(n: u64) -> String {
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

pub(super) fn mib(kib: u64) -> String {
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

/// The heading of `cargo xtask bench <which>`, titled `title`, and the machine.
pub fn header_for(m: &Machine, title: &str, which: &str) -> String {
    format!(
        "## {title} (`cargo xtask bench {which}`)\n\n\
         - Command: `cargo xtask bench {which}` (as root; it builds `target/release/kaipo` first)\n\
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
    // Section 2's floods: with flows (the two host ends named), then without (kaipo's default
    // with no interface named).
    (stats, stats_no_flows): (&Monitored, &Monitored),
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
        .map(|p| {
            format!(
                "`{}` {} ns (a flow whose two cache slots other flows hold: {} ns)",
                p.name,
                p.hit.median().as_nanos(),
                p.busy.median().as_nanos()
            )
        })
        .collect();
    let worst = c.programs.iter().map(|p| p.hit.median().as_nanos()).max();
    let _ = writeln!(
        s,
        "| <= {TARGET_NS} ns per packet per program at 10k flows (`BPF_PROG_TEST_RUN`) | {} | {} |",
        programs.join(", "),
        verdict(worst.is_some_and(|w| w <= TARGET_NS))
    );
    if let Some(own) = own_kernel_ns(stats) {
        let _ = writeln!(
            s,
            "| kaipo's own kernel time per datagram above the empty-program floor of its hooks <= \
             {:.0} ns (BPF run-time statistics, section 2), with flows (`--iface` on both host \
             ends) | {own:.1} ns | {} |",
            TARGET_OWN_NS,
            verdict(own <= TARGET_OWN_NS)
        );
    }
    if let Some(own) = own_kernel_ns(stats_no_flows) {
        let _ = writeln!(
            s,
            "| the same without flows: `kaipo watch` with no interface named, its default (spelled \
             `--no-flows` here; socket programs only; section 2, without flows) | {own:.1} ns | \
             {} |",
            verdict(own <= TARGET_OWN_NS)
        );
    }
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
