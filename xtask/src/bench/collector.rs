//! `cargo xtask bench collector`: runs every measurement and prints the figures as Markdown.
//!
//! Progress goes to stderr and the figures to stdout, each section as soon as it is measured.
//! Nothing here passes or fails on a figure: the run exits non-zero only when something could
//! not be set up or measured at all.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::{
    baseline,
    breakdown::{self, Piece},
    kaipo::{self, HeldMap, Kaipo, ProgramStats, Reported},
    pause, report, testrun,
    topology::Topology,
    traffic::PAYLOAD_64B_FRAME,
    workloads,
};

/// Length of each flood.
pub const FLOOD_SECS: f64 = 4.0;
/// Rounds of (without kaipo, with kaipo). Other work on a small machine comes and goes; many
/// short alternating rounds keep it from landing on one side only.
pub const ROUNDS: usize = 5;
/// Length of each flood of the breakdown (section 3b), and how often each piece is measured.
pub const BREAKDOWN_SECS: f64 = 2.0;
pub const BREAKDOWN_PASSES: usize = 4;
pub const TEST_RUN_REPEAT: u32 = 1_000_000;
pub const TEST_RUN_ROUNDS: usize = 5;
pub const PREFILLED_FLOWS: u32 = 10_000;
pub const SENDER_CPU: usize = 0;
pub const RECEIVER_CPU: usize = 1;
const FLOOD_PORT: u16 = 9000;

pub fn run() -> anyhow::Result<()> {
    let (bench, started) = start_bench("Collector", "collector", COLLECTOR_BLOCKS)?;

    progress("section 1: BPF_PROG_TEST_RUN of the interface programs");
    let costs = testrun::measure(TEST_RUN_REPEAT, TEST_RUN_ROUNDS, PREFILLED_FLOWS)?;
    emit(&report::costs(&costs));

    progress("warming up: 1 s flood without kaipo");
    let none = BTreeSet::new();
    let warm = bench.flood(1.0, None, &none, &mut |_| Ok(()))?;
    if warm.received == 0 {
        bail!(
            "no datagram crossed the benchmark network (sent {})",
            warm.sent
        );
    }

    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 1..=ROUNDS {
        // Which flood goes first alternates by round, so that a machine slowing down (or
        // speeding up) within a round favours neither.
        for monitored in [round % 2 == 0, round % 2 == 1] {
            if monitored {
                progress(&format!(
                    "section 3: flood round {round}/{ROUNDS}: with kaipo"
                ));
                with.push(bench.monitored_flood(FLOOD_SECS, None, false, None, false)?);
            } else {
                progress(&format!(
                    "section 3: flood round {round}/{ROUNDS}: without kaipo"
                ));
                without.push(bench.flood(FLOOD_SECS, None, &none, &mut |_| Ok(()))?);
            }
        }
    }
    let (bases, pieces) = bench.breakdown(&Piece::ALL, BREAKDOWN_PASSES, PAYLOAD_64B_FRAME)?;
    progress("section 2: flood with kaipo and BPF run-time statistics");
    let stats = bench.monitored_flood(FLOOD_SECS, None, true, None, false)?;
    progress("section 2: flood with kaipo --no-flows and BPF run-time statistics");
    let stats_no_flows = bench.monitored_flood(FLOOD_SECS, None, true, None, true)?;
    // A quarter of what the sender's CPU sustains with kaipo (by CPU per datagram), rather than
    // of the delivered rate, which other work on the machine may have pulled down.
    let cpu_per_datagram =
        report::median(with.iter().map(|m| m.flood.cpu_ns_per_datagram()).collect());
    let quarter_pps = (1e9 / cpu_per_datagram.max(1.0) / 4.0).max(1.0) as u64;
    progress(&format!(
        "section 4: flood with kaipo at ~1/4 rate ({quarter_pps} datagrams/s)"
    ));
    let quarter = bench.monitored_flood(FLOOD_SECS, Some(quarter_pps), false, None, false)?;
    emit(&report::stats(&stats, &bench.topo));
    emit(&report::stats_without_flows(&stats_no_flows));
    emit(&report::flood(
        &without,
        &with,
        &stats,
        &quarter,
        &bench.topo,
    ));
    emit(&report::breakdown(&bases, &pieces, &bench.topo));
    emit(&report::cpu(&with, &quarter));

    progress("section 5: 100,000 flows");
    let flows_100k = bench.flows(100_000)?;
    progress("section 5: 150,000 flows (more than the flow map holds)");
    let flows_150k = bench.flows(150_000)?;
    emit(&report::flows(&flows_100k, &flows_150k, &bench.topo));
    emit(&workloads::section(
        &bench,
        workloads::SECS,
        workloads::ROUNDS,
        &workloads::Workload::ALL,
        false,
        true,
    )?);
    drop(bench);

    emit(&report::summary(
        &costs,
        &without,
        (&stats, &stats_no_flows),
        &with,
        &quarter,
        &flows_100k,
        &flows_150k,
    ));
    emit(&report::footer(started.elapsed()));
    Ok(())
}

/// `cargo xtask bench runtime`: section 2 alone, `rounds` times over, the two floods taking
/// turns; then kaipo's own kernel time per datagram of each round.
pub fn run_runtime(rounds: usize, against: Option<&Path>) -> anyhow::Result<()> {
    let (mut bench, started) = start_bench("Kernel run time", "runtime", COLLECTOR_BLOCKS)?;
    bench.companion = against.map(Path::to_path_buf);
    progress("warming up: 1 s flood without kaipo");
    bench.flood(1.0, None, &BTreeSet::new(), &mut |_| Ok(()))?;
    let (mut with_flows, mut without_flows) = (Vec::new(), Vec::new());
    let (mut against_with, mut against_without) = (Vec::new(), Vec::new());
    let companion = |m: &Monitored, out: &mut Vec<f64>| {
        let Some(programs) = &m.companion_programs else {
            return;
        };
        if let Some(own) = report::own_kernel_ns_of(programs, m) {
            emit(&format!(
                "The other build ({}) beside it: {own:.1} ns of its own kernel time per \
                 datagram; {}.\n",
                against.map_or_else(String::new, |p| p.display().to_string()),
                programs
                    .iter()
                    .filter(|(_, _, runs)| *runs > 0)
                    .map(|(name, ns, runs)| format!(
                        "`{name}` {:.1} ns per run",
                        *ns as f64 / *runs as f64
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            out.push(own);
        }
    };
    for round in 1..=rounds.max(1) {
        // Programs attached later run later on each hook, with the packet's lines warmer: the
        // two builds take turns.
        bench.companion_first = round % 2 == 0;
        progress(&format!("round {round}: flood with kaipo --iface (flows)"));
        let m = bench.monitored_flood(FLOOD_SECS, None, true, None, false)?;
        emit(&report::stats(&m, &bench.topo));
        with_flows.extend(report::own_kernel_ns(&m));
        companion(&m, &mut against_with);
        progress(&format!(
            "round {round}: flood with kaipo, no interface named"
        ));
        let m = bench.monitored_flood(FLOOD_SECS, None, true, None, true)?;
        emit(&report::stats_without_flows(&m));
        without_flows.extend(report::own_kernel_ns(&m));
        companion(&m, &mut against_without);
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|ns| format!("{ns:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    emit(&format!(
        "kaipo's own kernel time per datagram above the floor of its hooks, round by round \
         (target <= {:.0} ns): with flows {} ns (median {:.1}); no interface named {} ns \
         (median {:.1}).\n",
        report::TARGET_OWN_NS,
        list(&with_flows),
        report::median(with_flows.clone()),
        list(&without_flows),
        report::median(without_flows.clone()),
    ));
    if against.is_some() {
        emit(&format!(
            "The other build, beside it in the same floods (it attaches second in odd rounds, \
             first in even ones): with flows {} ns (median {:.1}); no interface named {} ns \
             (median {:.1}).\n",
            list(&against_with),
            report::median(against_with.clone()),
            list(&against_without),
            report::median(against_without.clone()),
        ));
    }
    emit(&report::footer(started.elapsed()));
    Ok(())
}

/// `cargo xtask bench breakdown`: section 3b alone.
pub fn run_breakdown(only: &[Piece], passes: usize, payload: usize) -> anyhow::Result<()> {
    let (bench, started) =
        start_bench("Where the flood's cost goes", "breakdown", COLLECTOR_BLOCKS)?;
    progress("warming up: 1 s flood without kaipo");
    bench.flood(1.0, None, &BTreeSet::new(), &mut |_| Ok(()))?;
    let pieces = if only.is_empty() {
        &Piece::ALL[..]
    } else {
        only
    };
    let (bases, pieces) = bench.breakdown(pieces, passes.max(1), payload)?;
    emit(&report::breakdown(&bases, &pieces, &bench.topo));
    emit(&report::footer(started.elapsed()));
    Ok(())
}

/// Blocks of 10.213.x.0/24 the collector's network takes (see `Topology::create_in`).
pub(super) const COLLECTOR_BLOCKS: std::ops::RangeInclusive<u8> = 200..=255;

/// What every `bench` over the collector's network does first: as root, kaipo built, the
/// report's header printed (`title`, `which` as in [`report::header_for`]), the network made
/// in a free block of `blocks` (so that benchmarks with different blocks can run side by
/// side). Returns the bench and when it started.
pub(super) fn start_bench(
    title: &str,
    which: &str,
    blocks: std::ops::RangeInclusive<u8>,
) -> anyhow::Result<(Bench, Instant)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`bench {which}` loads eBPF programs and creates network namespaces: run it as root");
    }
    super::catch_signals();
    let started = Instant::now();
    let bin = build_kaipo()?;
    let machine = report::Machine::read();
    emit(&report::header_for(&machine, title, which));
    let bench = Bench {
        topo: Topology::create_in(blocks)?,
        exe: std::env::current_exe().context("finding the xtask binary")?,
        bin,
        companion: None,
        companion_first: false,
    };
    Ok((bench, started))
}

/// Builds `target/release/kaipo` and returns its path.
pub(super) fn build_kaipo() -> anyhow::Result<PathBuf> {
    progress("building kaipo: cargo build --release -p kaipo-user");
    crate::run(crate::cargo().args(["build", "--release", "-p", "kaipo-user"]))?;
    let bin = target_dir().join("release").join("kaipo");
    anyhow::ensure!(bin.exists(), "{} was not built", bin.display());
    Ok(bin)
}

pub(super) fn progress(what: &str) {
    eprintln!("bench: {what}");
}

pub(super) fn emit(markdown: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{markdown}");
    let _ = out.flush();
}

/// Busy time of all CPUs together since boot, from the first line of `/proc/stat`, in ns.
fn machine_busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: all but idle, iowait and steal.
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    busy * 1_000_000_000 / kaipo::clock_ticks_per_sec()
}

/// The pid of `ksoftirqd/<cpu>`.
pub(super) fn ksoftirqd_pid(cpu: usize) -> Option<u32> {
    let name = format!("ksoftirqd/{cpu}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// Each piece with the floods measured while it was attached.
type PieceFloods = Vec<(Piece, Vec<Flood>)>;

impl Bench {
    /// Each piece `passes` times, each time right after a flood with nothing attached.
    fn breakdown(
        &self,
        pieces: &[Piece],
        passes: usize,
        payload: usize,
    ) -> anyhow::Result<(Vec<Flood>, PieceFloods)> {
        let none = BTreeSet::new();
        let mut bases = Vec::new();
        let mut measured: Vec<(Piece, Vec<Flood>)> =
            pieces.iter().map(|p| (*p, Vec::new())).collect();
        for pass in 1..=passes {
            for (piece, floods) in &mut measured {
                progress(&format!(
                    "section 3b, pass {pass}/{passes}: without kaipo, then {}",
                    piece.describe(&self.topo)
                ));
                bases
                    .push(self.flood_sized(BREAKDOWN_SECS, None, payload, &none, &mut |_| Ok(()))?);
                let attached = breakdown::attach(*piece, &self.topo)?;
                floods
                    .push(self.flood_sized(BREAKDOWN_SECS, None, payload, &none, &mut |_| Ok(()))?);
                drop(attached);
            }
        }
        Ok((bases, measured))
    }
}

/// A traffic helper running in a namespace; killed on drop unless it finished.
pub(super) struct Helper {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    what: &'static str,
}

impl Helper {
    fn spawn(mut cmd: Command, what: &'static str) -> anyhow::Result<Self> {
        super::die_with_parent(&mut cmd, libc::SIGKILL);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {what}"))?;
        let stdout = BufReader::new(child.stdout.take().context("helper stdout")?);
        Ok(Self {
            child: Some(child),
            stdout,
            what,
        })
    }

    /// The helper's pid (`ip netns exec` execs in place, so it is the program's).
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(super) fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the {} exited early", self.what);
        }
        Ok(line.trim().to_owned())
    }

    /// Waits for the helper to exit and returns its JSON report.
    pub(super) fn finish(mut self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let mut child = self.child.take().context("helper already finished")?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Err(err) = super::check_interrupted() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the {} did not finish within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            bail!("the {} failed: {status}", self.what);
        }
        let line = self.read_line()?;
        serde_json::from_str(&line).with_context(|| format!("the {} printed {line:?}", self.what))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(super) fn num(v: &serde_json::Value, key: &str) -> anyhow::Result<u64> {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no {key} in {v}"))
}

/// Points in a flood at which a caller takes its readings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    /// The receiver is ready; the sender is about to start.
    Start,
    /// The sender has finished.
    SenderDone,
    /// The receiver has drained its socket and finished.
    ReceiverDone,
}

/// One flood as the sender and the receiver saw it.
#[derive(Clone, Debug)]
pub struct Flood {
    pub sender_pid: u32,
    pub receiver_pid: u32,
    pub sent: u64,
    pub send_errors: u64,
    pub elapsed: Duration,
    pub received: u64,
    pub rcvbuf_errors: Option<u64>,
    /// Programs named `kaipo_*` not held by this flood's kaipo (if any), loaded as the sender
    /// finished: another kaipo (a test run) whose cgroup programs see this traffic too.
    pub foreign_programs: usize,
    /// The sender's own time on CPU (which, without IRQ time accounting, includes the softirq
    /// work done in its context: here the whole forward and receive path) and time it spent
    /// runnable but waiting for its CPU, in ns.
    pub sender_on_cpu_ns: u64,
    pub sender_run_delay_ns: u64,
    /// Time `ksoftirqd` of the sender's CPU ran during the flood: softirq work the kernel
    /// deferred instead of doing it in the sender's context.
    pub ksoftirqd_ns: u64,
    /// CPUs' worth of other work on the machine during the flood (busy time in `/proc/stat`
    /// minus the sender, the receiver and ksoftirqd): 1.0 is one CPU kept busy.
    pub others_cpu: f64,
}

impl Flood {
    /// CPU time the sender's CPU spent per datagram sent: the sender (with the softirq work
    /// done in its context) plus that CPU's ksoftirqd. Unlike datagrams per second, this does
    /// not change when other work takes turns on the CPU.
    pub fn cpu_ns_per_datagram(&self) -> f64 {
        (self.sender_on_cpu_ns + self.ksoftirqd_ns) as f64 / self.sent.max(1) as f64
    }

    /// Share of the window the sender spent waiting for its CPU, taken by other work.
    pub fn contention(&self) -> f64 {
        self.sender_run_delay_ns as f64 / self.elapsed.as_nanos().max(1) as f64
    }

    pub fn sent_pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    /// Delivered datagrams over the sender's window (the receiver's drain after the window
    /// belongs to datagrams sent in it).
    pub fn delivered_pps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }
}

/// A flood with kaipo watching, and what was read about kaipo around it.
pub struct Monitored {
    pub flood: Flood,
    /// kaipo's utime + stime over the sender's window, in seconds, and the window.
    pub cpu_secs: f64,
    pub window: Duration,
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
    /// What kaipo reported for the sender, the receiver and the two interfaces.
    pub sender: Reported,
    pub receiver: Reported,
    pub sender_if: Reported,
    pub receiver_if: Reported,
    pub ringbuf_full: u64,
    /// Every `lost.*` counter kaipo reported, summed over its records.
    pub lost: std::collections::BTreeMap<String, u64>,
    /// kaipo's time on CPU over the window by the scheduler's count (`schedstat`), in seconds.
    pub sched_cpu_secs: f64,
    /// Per program: (name, run time ns, runs) from the start of the flood to the receiver's end.
    pub programs: Option<Vec<(String, u64, u64)>>,
    /// The same for the companion kaipo (see [`Bench::companion`]), when one ran.
    pub companion_programs: Option<Vec<(String, u64, u64)>>,
    /// With statistics on: an empty classifier attached beside kaipo's on the same two TCX hooks
    /// (ingress of the sender's end, egress of the receiver's), as (run time ns, runs).
    pub empty_classifier: Option<(u64, u64)>,
    /// The same for two empty cgroup_skb programs (ingress, egress) beside kaipo's at the
    /// cgroup v2 root.
    pub empty_cgroup_skb: Option<(u64, u64)>,
    pub stderr: String,
}

/// The cgroup v2 root, opened for attaching programs.
fn cgroup_root() -> anyhow::Result<std::fs::File> {
    let root = ::kaipo::collect::ebpf::cgroup2_root().context("no cgroup v2 mount")?;
    std::fs::File::open(&root).with_context(|| format!("opening {}", root.display()))
}

/// kaipo facing 100k or 150k flows.
pub struct Flows {
    pub flows_sent: u64,
    pub maps: Vec<HeldMap>,
    pub state: kaipo::FlowState,
    pub sender_ifindex: u32,
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub reported_evictions: u64,
    pub reported_map_full: u64,
}

pub(super) struct Bench {
    pub(super) topo: Topology,
    pub(super) exe: PathBuf,
    pub(super) bin: PathBuf,
    /// Another kaipo binary that watches beside `bin` in floods with statistics (`bench
    /// runtime --against`): both builds under the same flood, their programs on the same hooks.
    pub(super) companion: Option<PathBuf>,
    /// Whether the companion starts (and so attaches) first; `bench runtime` turns it round by
    /// round.
    pub(super) companion_first: bool,
}

impl Bench {
    pub(super) fn helper(
        &self,
        ns: &str,
        args: &[String],
        what: &'static str,
    ) -> anyhow::Result<Helper> {
        let mut cmd = Topology::command_in(ns, &self.exe);
        cmd.arg("bench").args(args);
        Helper::spawn(cmd, what)
    }

    pub(super) fn flood(
        &self,
        secs: f64,
        pps: Option<u64>,
        ours: &BTreeSet<u32>,
        at: &mut dyn FnMut(Moment) -> anyhow::Result<()>,
    ) -> anyhow::Result<Flood> {
        self.flood_sized(secs, pps, PAYLOAD_64B_FRAME, ours, at)
    }

    /// [`Bench::flood`] with datagrams of `payload` bytes.
    pub(super) fn flood_sized(
        &self,
        secs: f64,
        pps: Option<u64>,
        payload: usize,
        ours: &BTreeSet<u32>,
        at: &mut dyn FnMut(Moment) -> anyhow::Result<()>,
    ) -> anyhow::Result<Flood> {
        let dst = format!("{}:{FLOOD_PORT}", self.topo.receiver_addrs[0]);
        let mut receiver = self.helper(
            &self.topo.receiver_ns,
            &[
                "flood-recv".into(),
                "--bind".into(),
                dst.clone(),
                "--cpu".into(),
                RECEIVER_CPU.to_string(),
                "--max-secs".into(),
                (secs + 20.0).to_string(),
            ],
            "flood receiver",
        )?;
        let ready = receiver.read_line()?;
        anyhow::ensure!(ready == "ready", "the flood receiver said {ready:?}");
        // The CPU time of everything this flood runs, apart from the sender, which reports its
        // own; the rest of the machine's busy time is other work.
        let ksoftirqd = ksoftirqd_pid(SENDER_CPU);
        let receiver_pid = receiver.pid();
        let side_tasks = || {
            (
                ksoftirqd.map_or(0, kaipo::cpu_ns_of_task),
                receiver_pid.map_or(0, kaipo::cpu_ns_of_task),
            )
        };
        let (side_before, busy_before) = (side_tasks(), machine_busy_ns());
        at(Moment::Start)?;
        let mut send_args = vec![
            "flood-send".into(),
            "--dst".into(),
            dst,
            "--secs".into(),
            secs.to_string(),
            "--cpu".into(),
            SENDER_CPU.to_string(),
            "--payload".into(),
            payload.to_string(),
        ];
        if let Some(pps) = pps {
            send_args.extend(["--pps".into(), pps.to_string()]);
        }
        let sender = self.helper(&self.topo.sender_ns, &send_args, "flood sender")?;
        let sent = sender.finish(Duration::from_secs_f64(secs + 20.0))?;
        let (side_after, busy_after) = (side_tasks(), machine_busy_ns());
        at(Moment::SenderDone)?;
        let sender_on_cpu_ns = num(&sent, "on_cpu_ns")?;
        let elapsed = Duration::from_nanos(num(&sent, "elapsed_ns")?);
        let ksoftirqd_ns = side_after.0.saturating_sub(side_before.0);
        let receiver_ns = side_after.1.saturating_sub(side_before.1);
        let others_ns = busy_after
            .saturating_sub(busy_before)
            .saturating_sub(sender_on_cpu_ns + ksoftirqd_ns + receiver_ns);
        let foreign_programs = kaipo::foreign_kaipo_programs(ours);
        let received = receiver.finish(Duration::from_secs(30))?;
        at(Moment::ReceiverDone)?;
        Ok(Flood {
            sender_pid: num(&sent, "pid")? as u32,
            receiver_pid: num(&received, "pid")? as u32,
            sent: num(&sent, "sent")?,
            send_errors: num(&sent, "send_errors")?,
            elapsed,
            received: num(&received, "received")?,
            rcvbuf_errors: received
                .get("rcvbuf_errors")
                .and_then(serde_json::Value::as_u64),
            foreign_programs,
            sender_on_cpu_ns,
            sender_run_delay_ns: num(&sent, "run_delay_ns")?,
            ksoftirqd_ns,
            others_cpu: others_ns as f64 / elapsed.as_nanos().max(1) as f64,
        })
    }

    /// A flood with `kaipo watch` on both host ends; `backend` as in [`Kaipo::start`].
    pub(super) fn monitored_flood(
        &self,
        secs: f64,
        pps: Option<u64>,
        with_stats: bool,
        backend: Option<&str>,
        no_flows: bool,
    ) -> anyhow::Result<Monitored> {
        // Held only for this flood: with statistics on, every program run also reads the clock
        // twice, which would be charged to kaipo in the other floods.
        let stats_fd = if with_stats {
            Some(aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?)
        } else {
            None
        };
        let topo = &self.topo;
        let start = |bin: &Path| {
            if no_flows {
                // No interface can be named: kaipo counts every interface that is up.
                Kaipo::start_with(bin, &["--interval", "1s", "--no-flows"])
            } else {
                Kaipo::start(bin, &[&topo.sender_if, &topo.receiver_if], "1s", backend)
            }
        };
        let companion_bin = self.companion.as_deref().filter(|_| with_stats);
        let first = self.companion_first;
        let mut companion = None;
        if let Some(bin) = companion_bin.filter(|_| first) {
            companion = Some(start(bin)?);
        }
        let kaipo = start(&self.bin)?;
        if let Some(bin) = companion_bin.filter(|_| !first) {
            companion = Some(start(bin)?);
        }
        // With statistics on, do-nothing programs beside kaipo's on the same hooks (a classifier
        // on the two TCX hooks, a cgroup_skb pair at the root): what the statistics report for
        // them is the floor of each kind of hook, their own price and clock reads included.
        let empty = if with_stats {
            let ifindex = super::topology::ifindex;
            let tc = baseline::load_empty(baseline::PROG_TYPE_SCHED_CLS, 0, -1)?;
            let mut held = vec![
                baseline::attach_tcx(&tc, ifindex(&topo.sender_if)?, true)?,
                baseline::attach_tcx(&tc, ifindex(&topo.receiver_if)?, false)?,
            ];
            held.push(tc);
            let root = cgroup_root()?;
            for kind in [
                baseline::BPF_CGROUP_INET_INGRESS,
                baseline::BPF_CGROUP_INET_EGRESS,
            ] {
                let prog = baseline::load_empty(baseline::PROG_TYPE_CGROUP_SKB, 0, 1)?;
                held.push(baseline::attach_cgroup(&prog, &root, kind)?);
                held.push(prog);
            }
            Some(held)
        } else {
            None
        };
        let mut empty_stats = ((0, 0), (0, 0));
        let mut empty_cg = ((0, 0), (0, 0));
        let pid = kaipo.pid;
        let held = kaipo::held_objects(pid)?;
        let companion_held = match &companion {
            Some(c) => kaipo::held_objects(c.pid)?.programs,
            None => BTreeSet::new(),
        };
        let all_programs: BTreeSet<u32> = held.programs.union(&companion_held).copied().collect();
        let mut companion_programs = (ProgramStats::default(), ProgramStats::default());
        let mut cpu = (0u64, 0u64);
        let mut sched = (0u64, 0u64);
        let mut window = (Instant::now(), Instant::now());
        let mut programs = (ProgramStats::default(), ProgramStats::default());
        let flood = self.flood(secs, pps, &all_programs, &mut |moment| {
            match moment {
                Moment::Start => {
                    if with_stats {
                        programs.0 = ProgramStats::read(&held.programs)?;
                        companion_programs.0 = ProgramStats::read(&companion_held)?;
                        empty_stats.0 =
                            baseline::empty_program_stats(baseline::PROG_TYPE_SCHED_CLS)?;
                        empty_cg.0 = baseline::empty_program_stats(baseline::PROG_TYPE_CGROUP_SKB)?;
                    }
                    window.0 = Instant::now();
                    cpu.0 = kaipo::cpu_ticks(pid)?;
                    sched.0 = kaipo::cpu_ns(pid)?;
                }
                Moment::SenderDone => {
                    cpu.1 = kaipo::cpu_ticks(pid)?;
                    sched.1 = kaipo::cpu_ns(pid)?;
                    window.1 = Instant::now();
                }
                Moment::ReceiverDone => {
                    if with_stats {
                        programs.1 = ProgramStats::read(&held.programs)?;
                        companion_programs.1 = ProgramStats::read(&companion_held)?;
                        empty_stats.1 =
                            baseline::empty_program_stats(baseline::PROG_TYPE_SCHED_CLS)?;
                        empty_cg.1 = baseline::empty_program_stats(baseline::PROG_TYPE_CGROUP_SKB)?;
                    }
                }
            }
            Ok(())
        })?;
        let vm_hwm_kib = kaipo::status_kib(pid, "VmHWM")?;
        let vm_rss_kib = kaipo::status_kib(pid, "VmRSS")?;
        drop(empty);
        let (records, stderr) = kaipo.stop()?;
        if let Some(c) = companion {
            c.stop()?;
        }
        drop(stats_fd);
        Ok(Monitored {
            empty_classifier: with_stats.then(|| {
                (
                    empty_stats.1 .0 - empty_stats.0 .0,
                    empty_stats.1 .1 - empty_stats.0 .1,
                )
            }),
            empty_cgroup_skb: with_stats
                .then(|| (empty_cg.1 .0 - empty_cg.0 .0, empty_cg.1 .1 - empty_cg.0 .1)),
            cpu_secs: (cpu.1 - cpu.0) as f64 / kaipo::clock_ticks_per_sec() as f64,
            sched_cpu_secs: (sched.1 - sched.0) as f64 / 1e9,
            window: window.1 - window.0,
            vm_hwm_kib,
            vm_rss_kib,
            sender: kaipo::process_totals(&records, flood.sender_pid),
            receiver: kaipo::process_totals(&records, flood.receiver_pid),
            sender_if: kaipo::interface_totals(&records, &topo.sender_if),
            receiver_if: kaipo::interface_totals(&records, &topo.receiver_if),
            ringbuf_full: kaipo::lost_total(&records, "ringbuf_full"),
            lost: kaipo::lost_totals(&records),
            programs: with_stats.then(|| programs.1.since(&programs.0)),
            companion_programs: companion_bin
                .map(|_| companion_programs.1.since(&companion_programs.0)),
            stderr,
            flood,
        })
    }

    /// kaipo on the sender's host end only (so each flow is one entry: its XDP side), and one
    /// datagram to each of `flows` destinations.
    fn flows(&self, flows: u32) -> anyhow::Result<Flows> {
        let topo = &self.topo;
        // kaipo reads every flow each 200 ms interval, so its own cost at this many flows shows.
        let kaipo = Kaipo::start(&self.bin, &[&topo.sender_if], "200ms", None)?;
        let pid = kaipo.pid;
        let dst = topo.receiver_addrs.map(|a| a.to_string()).join(",");
        let sent = self
            .helper(
                &topo.sender_ns,
                &[
                    "flows-send".into(),
                    "--dst".into(),
                    dst,
                    "--flows".into(),
                    flows.to_string(),
                    "--cpu".into(),
                    SENDER_CPU.to_string(),
                ],
                "flow sender",
            )?
            .finish(Duration::from_secs(60))?;
        // Let a flow-counting interval follow the burst, so kaipo's eviction figure covers it.
        pause(Duration::from_millis(2600))?;
        let held = kaipo::held_objects(pid)?;
        let state = kaipo::flow_state(&held.maps)?;
        let vm_rss_kib = kaipo::status_kib(pid, "VmRSS")?;
        let vm_hwm_kib = kaipo::status_kib(pid, "VmHWM")?;
        let (records, _stderr) = kaipo.stop()?;
        let ifindex = super::topology::ifindex(&topo.sender_if)?;
        Ok(Flows {
            flows_sent: num(&sent, "sent")?,
            maps: held.maps,
            state,
            sender_ifindex: ifindex,
            vm_rss_kib,
            vm_hwm_kib,
            reported_evictions: kaipo::lost_total(&records, "flow_evictions"),
            reported_map_full: kaipo::lost_total(&records, "flow_map_full"),
        })
    }
}
