//! The collector benchmark's workload table (`cargo xtask bench workloads` alone): a 64-byte
//! UDP flood, 1,400-byte UDP datagrams, one TCP bulk connection and TCP request/response over
//! 1,000 connections, each with no monitor, with `kaipo watch --json` (eBPF backend), with
//! nethogs and with bandwhich, in alternating short rounds.
//!
//! Reuses the collector's network ([`Topology`]), flood and helpers, and the rivals' runner.
//! Progress goes to stderr and the figures, as Markdown, to stdout. Nothing here passes or fails
//! on a figure.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    breakdown::{self, Piece},
    collector::{self, ksoftirqd_pid, num, Bench, Moment, RECEIVER_CPU, SENDER_CPU},
    kaipo::{self, Kaipo, Reported},
    pcap::sender_comm,
    report::{self, int, median, mib},
    rivals::{self, Rival},
    traffic::{snmp_value, ETH_HEADER, IP_UDP_HEADERS, PAYLOAD_64B_FRAME},
};

/// Length of each run's timed window, and rounds of (no monitor, then each monitor once).
pub const SECS: f64 = 3.0;
pub const ROUNDS: usize = 5;
/// Connections of the request/response load, and its request and response sizes.
pub const RR_CONNS: usize = 1_000;
pub const RR_REQUEST: usize = 64;
pub const RR_RESPONSE: usize = 64;
const BIG_PAYLOAD: usize = 1_400;
const BULK_PORT: u16 = 9001;
const RR_PORT: u16 = 9002;
/// Header bytes of a TCP segment as Linux sends it here: IPv4 20 + TCP 20 + the timestamp
/// option 12.
const TCP_SEGMENT_HEADERS: u64 = 52;
/// What a SYN or SYN-ACK carries on top of that: MSS, SACK permitted and window scale options.
const TCP_SYN_EXTRA: u64 = 8;
/// kaipo's userspace CPU target, % of one core, at every rate.
const TARGET_USERSPACE_PCT: f64 = 1.0;
/// kaipo's attribution counts as complete when every run gave the load's processes at least
/// this share of the reference bytes (100.00 % as printed).
const FULL_ATTRIBUTION: f64 = 0.999_95;

#[derive(Clone, Debug, clap::Args)]
pub struct WorkloadsArgs {
    /// Length of each run, in seconds.
    #[arg(long, default_value_t = SECS)]
    pub secs: f64,
    /// Rounds of (no monitor, then each monitor once) per workload.
    #[arg(long, default_value_t = ROUNDS)]
    pub rounds: usize,
    /// Workloads to run (all when none are named).
    #[arg(long = "only", value_enum)]
    pub only: Vec<Workload>,
    /// Only kaipo against no monitor (quicker comparisons of kaipo builds).
    #[arg(long)]
    pub kaipo_only: bool,
    /// Also run each workload under programs that do nothing on the hooks kaipo uses (with and
    /// without flows): the most any monitor counting there could keep.
    #[arg(long)]
    pub floors: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Udp64,
    Udp1400,
    TcpBulk,
    TcpRr,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Udp64,
        Workload::Udp1400,
        Workload::TcpBulk,
        Workload::TcpRr,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Workload::Udp64 => "64-byte UDP flood",
            Workload::Udp1400 => "1,400-byte UDP",
            Workload::TcpBulk => "TCP bulk",
            Workload::TcpRr => "TCP request/response, 1,000 connections",
        }
    }

    /// What one unit of work is, for rates and CPU per unit.
    fn unit(self) -> &'static str {
        match self {
            Workload::Udp64 | Workload::Udp1400 => "datagram",
            Workload::TcpBulk => "MB",
            Workload::TcpRr => "transaction",
        }
    }

    /// Units in one counted thing (bulk counts bytes, shown per MB).
    fn per_unit(self) -> f64 {
        if self == Workload::TcpBulk {
            1e6
        } else {
            1.0
        }
    }

    fn payload(self) -> Option<usize> {
        match self {
            Workload::Udp64 => Some(PAYLOAD_64B_FRAME),
            Workload::Udp1400 => Some(BIG_PAYLOAD),
            _ => None,
        }
    }

    /// The issue's target for the rate with kaipo over the rate without.
    pub(super) fn target(self) -> Option<f64> {
        match self {
            Workload::Udp64 => Some(0.95),
            Workload::Udp1400 | Workload::TcpBulk => Some(0.99),
            Workload::TcpRr => None,
        }
    }

    pub(super) fn describe(self, secs: f64) -> String {
        match self {
            Workload::Udp64 | Workload::Udp1400 => {
                let p = self.payload().unwrap_or(0);
                format!(
                    "{}: the collector's flood (one connected UDP socket, `sendmmsg` batches of \
                     64 for {secs} s, pinned to CPU {SENDER_CPU}; `recvmmsg` receiver on CPU \
                     {RECEIVER_CPU}) with {p}-byte payloads ({} IP-layer bytes per datagram). \
                     Rate: datagrams delivered over the sender's window (× {} for IP bytes/s). \
                     CPU per datagram: the sender's time on CPU (schedstat, with the softirq \
                     work done in its context) plus CPU {SENDER_CPU}'s `ksoftirqd`, over the \
                     datagrams sent, as in section 3.",
                    self.label(),
                    p as u64 + IP_UDP_HEADERS,
                    p as u64 + IP_UDP_HEADERS,
                )
            }
            Workload::TcpBulk => format!(
                "{}: one connection; the sender (CPU {SENDER_CPU}) writes 256 KiB buffers for \
                 {secs} s, then shuts down and waits for the receiver's FIN, which the receiver \
                 (CPU {RECEIVER_CPU}, 256 KiB reads) sends once it has read everything. Rate: \
                 bytes the receiver read over the sender's first write to that FIN. CPU per MB: \
                 the sender's time on CPU over that window (its schedstat), the receiver's and \
                 both CPUs' `ksoftirqd` over the same window (read from outside), over the MB \
                 (10^6 bytes) read.",
                self.label()
            ),
            Workload::TcpRr => format!(
                "{}: a client (CPU {SENDER_CPU}, one thread, epoll) opens {RR_CONNS} \
                 connections to a server (CPU {RECEIVER_CPU}, one thread, epoll) before the \
                 window; then for {secs} s keeps one {RR_REQUEST}-byte request in flight on \
                 each, the next going as soon as the {RR_RESPONSE}-byte response is in; the \
                 requests in flight at the end finish, then both close. Rate: responses \
                 received over the window (first request to last response). CPU per \
                 transaction: client + server + both CPUs' `ksoftirqd` over the window, as for \
                 bulk. TCP_NODELAY on every socket.",
                self.label()
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Monitor {
    Unmonitored,
    Kaipo,
    /// `kaipo watch --no-flows`: the socket programs alone on the packet path.
    KaipoNoFlows,
    /// Programs that do nothing on the hooks kaipo uses: every one of them with `true` (the
    /// socket pair and the classifiers on both host ends), the socket pair alone with `false`
    /// (the hooks of `--no-flows`).
    Floor(bool),
    Rival(Rival),
}

impl Monitor {
    fn label(self) -> String {
        match self {
            Monitor::Unmonitored => "no monitor".into(),
            Monitor::Kaipo => "kaipo --iface (flows)".into(),
            Monitor::KaipoNoFlows => "kaipo, no interface named (no flows)".into(),
            Monitor::Floor(true) => "empty programs on kaipo's hooks".into(),
            Monitor::Floor(false) => "empty programs on --no-flows's hooks".into(),
            Monitor::Rival(r) => r.name().into(),
        }
    }
}

/// Byte and packet counters of one interface (`/sys/class/net/<if>/statistics`, the kernel's
/// own count: link-layer bytes, Ethernet header included, no FCS; one GSO packet counts once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Link {
    rx_bytes: u64,
    rx_packets: u64,
    tx_bytes: u64,
    tx_packets: u64,
}

impl Link {
    fn read(iface: &str) -> anyhow::Result<Self> {
        let get = |name: &str| -> anyhow::Result<u64> {
            let path = format!("/sys/class/net/{iface}/statistics/{name}");
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            text.trim()
                .parse()
                .with_context(|| format!("{path} holds {text:?}"))
        };
        Ok(Self {
            rx_bytes: get("rx_bytes")?,
            rx_packets: get("rx_packets")?,
            tx_bytes: get("tx_bytes")?,
            tx_packets: get("tx_packets")?,
        })
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
        }
    }

    /// (rx, tx) bytes at the IP layer (`link_layer` false) or as counted (true).
    fn bytes(self, link_layer: bool) -> (u64, u64) {
        if link_layer {
            (self.rx_bytes, self.tx_bytes)
        } else {
            (
                self.rx_bytes.saturating_sub(ETH_HEADER * self.rx_packets),
                self.tx_bytes.saturating_sub(ETH_HEADER * self.tx_packets),
            )
        }
    }
}

/// The TCP counters of one namespace (`Tcp:` of its `/proc/net/snmp`). `OutSegs` counts every
/// segment, each of a GSO packet's and retransmissions included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TcpMib {
    out_segs: u64,
    active_opens: u64,
    passive_opens: u64,
    retrans_segs: u64,
}

impl TcpMib {
    fn parse(snmp: &str) -> Option<Self> {
        let get = |name| snmp_value(snmp, "Tcp", name);
        Some(Self {
            out_segs: get("OutSegs")?,
            active_opens: get("ActiveOpens")?,
            passive_opens: get("PassiveOpens")?,
            retrans_segs: get("RetransSegs")?,
        })
    }

    fn read(ns: &str) -> anyhow::Result<Self> {
        let snmp = super::run_output(std::process::Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "cat",
            "/proc/net/snmp",
        ]))?;
        Self::parse(&snmp).with_context(|| format!("no TCP counters in {ns}'s /proc/net/snmp"))
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            out_segs: self.out_segs.saturating_sub(earlier.out_segs),
            active_opens: self.active_opens.saturating_sub(earlier.active_opens),
            passive_opens: self.passive_opens.saturating_sub(earlier.passive_opens),
            retrans_segs: self.retrans_segs.saturating_sub(earlier.retrans_segs),
        }
    }
}

/// What the load's two processes sent and received, each packet counted once as it leaves
/// one and once as it reaches the other: what a monitor should give their pids together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reference {
    ip_bytes: u64,
    packets: u64,
}

impl Reference {
    /// UDP: exact, from the generators' datagram counts.
    fn udp(payload: u64, sent: u64, received: u64) -> Self {
        Self {
            ip_bytes: (sent + received) * (payload + IP_UDP_HEADERS),
            packets: sent + received,
        }
    }

    /// TCP: the payload bytes the generators wrote and the kernel sent again (both
    /// directions) plus the headers of every segment both namespaces sent, retransmissions
    /// included (`OutSegs` leaves them out): [`TCP_SEGMENT_HEADERS`] each, and
    /// [`TCP_SYN_EXTRA`] more for each SYN and SYN-ACK. A model, exact while no segment
    /// carries other options (SACK blocks on ACKs after a loss).
    fn tcp(payload: u64, client_ns: TcpMib, server_ns: TcpMib) -> Self {
        let segs = client_ns.out_segs
            + client_ns.retrans_segs
            + server_ns.out_segs
            + server_ns.retrans_segs;
        let syns = client_ns.active_opens + server_ns.passive_opens;
        Self {
            ip_bytes: 2 * (payload + segs * TCP_SEGMENT_HEADERS + syns * TCP_SYN_EXTRA),
            packets: 2 * segs,
        }
    }
}

/// One run of a workload as its generators and the kernel saw it.
#[derive(Clone, Debug)]
pub(super) struct Load {
    sender_pid: u32,
    receiver_pid: u32,
    /// Units of work done (datagrams delivered, bytes read, transactions) and the window.
    units: u64,
    elapsed: Duration,
    /// CPU time of the load per unit (see [`Workload::describe`]), in ns.
    cpu_ns_per_unit: f64,
    /// Share of the window the sender spent runnable but waiting for its CPU.
    waited: f64,
    /// What the load's pids should be given together.
    reference: Reference,
    /// TCP: retransmitted segments (both namespaces).
    retransmits: u64,
    /// The two host ends' kernel counters over the whole load (set-up and close included).
    sender_if: Link,
    receiver_if: Link,
    /// Anything odd the generators reported (socket drops, unfinished requests).
    notes: Vec<String>,
    foreign_programs: usize,
}

impl Load {
    fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Bytes of the load on the two host ends, both directions: each packet counted once on
    /// each end it crosses, as the monitors count it.
    fn link_total(&self, link_layer: bool) -> u64 {
        let (a, b) = self.sender_if.bytes(link_layer);
        let (c, d) = self.receiver_if.bytes(link_layer);
        a + b + c + d
    }
}

/// What was read about a monitor over one run.
#[derive(Clone, Debug)]
struct Watch {
    /// Time on CPU over the window (schedstat, all threads of all its processes), % of a core.
    cpu_pct: f64,
    rss_kib: u64,
    /// Bytes the monitor gave the load's processes, and what they are compared against.
    attributed: Option<(u64, u64)>,
    /// kaipo only: its per-pid bytes and packets, for the header check, and its `lost.*` sum.
    kaipo: Option<(Reported, Reported, u64)>,
    /// Rivals: total bytes they printed against the load's bytes on the two ends at their
    /// layer.
    seen: Option<(u64, u64)>,
    /// kaipo: packets it gave the two pids against the reference's.
    packets: Option<(u64, u64)>,
}

struct Run {
    round: usize,
    monitor: Monitor,
    load: Load,
    watch: Option<Watch>,
}

fn pct(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

fn ratio((a, b): (u64, u64)) -> f64 {
    a as f64 / b.max(1) as f64
}

/// Blocks of 10.213.x.0/24 for `bench workloads` and `bench toggle`: apart from the
/// collector's, so that either can run beside `bench collector` (not beside each other).
pub(super) const WORKLOADS_BLOCKS: std::ops::RangeInclusive<u8> = 150..=199;

/// The workloads asked for: all when none are named.
pub(super) fn chosen(only: &[Workload]) -> &[Workload] {
    if only.is_empty() {
        &Workload::ALL
    } else {
        only
    }
}

pub fn run(args: &WorkloadsArgs) -> anyhow::Result<()> {
    let (bench, started) =
        collector::start_bench("collector workloads", "workloads", WORKLOADS_BLOCKS)?;
    let only = chosen(&args.only);
    collector::emit(&section(
        &bench,
        args.secs,
        args.rounds.max(1),
        only,
        args.kaipo_only,
        args.floors,
    )?);
    drop(bench);
    collector::emit(&report::footer(started.elapsed()));
    Ok(())
}

/// Measures `workloads` on `bench`'s network and returns the section as Markdown.
pub fn section(
    bench: &Bench,
    secs: f64,
    rounds: usize,
    workloads: &[Workload],
    kaipo_only: bool,
    floors: bool,
) -> anyhow::Result<String> {
    let wanted: &[Rival] = if kaipo_only {
        &[]
    } else {
        &[Rival::Nethogs, Rival::Bandwhich]
    };
    let (rivals, missing) = rivals::find_all(wanted);
    let floor_monitors: &[Monitor] = if floors {
        &[Monitor::Floor(true), Monitor::Floor(false)]
    } else {
        &[]
    };
    let monitors: Vec<Monitor> = [Monitor::Kaipo, Monitor::KaipoNoFlows]
        .into_iter()
        .chain(floor_monitors.iter().copied())
        .chain(rivals.iter().map(|(r, _)| Monitor::Rival(*r)))
        .collect();
    let mut all = Vec::new();
    for &workload in workloads {
        collector::progress(&format!("workloads: warming up: {}", workload.label()));
        run_load(
            bench,
            workload,
            1.0_f64.min(secs),
            &BTreeSet::new(),
            &mut |_| Ok(()),
        )?;
        let mut runs = Vec::new();
        for round in 1..=rounds {
            // The run without a monitor takes its turn too: a machine that slows down (or
            // speeds up) over a round must not favour whatever always runs first.
            let mut order: Vec<Monitor> = std::iter::once(Monitor::Unmonitored)
                .chain(monitors.iter().copied())
                .collect();
            let turn = (round - 1) % order.len();
            order.rotate_left(turn);
            for monitor in order {
                collector::progress(&format!(
                    "workloads: {} round {round}/{rounds}: {}",
                    workload.label(),
                    monitor.label()
                ));
                runs.push(run_under(bench, &rivals, workload, secs, round, monitor)?);
            }
        }
        all.push((workload, runs));
    }
    Ok(figures(
        bench, secs, rounds, &all, &rivals, &missing, floors,
    ))
}

fn run_under(
    bench: &Bench,
    rivals: &[(Rival, PathBuf)],
    workload: Workload,
    secs: f64,
    round: usize,
    monitor: Monitor,
) -> anyhow::Result<Run> {
    let topo = &bench.topo;
    let ifaces = [topo.sender_if.as_str(), topo.receiver_if.as_str()];
    let (load, watch) = match monitor {
        Monitor::Unmonitored => (
            run_load(bench, workload, secs, &BTreeSet::new(), &mut |_| Ok(()))?,
            None,
        ),
        Monitor::Kaipo | Monitor::KaipoNoFlows => {
            let no_flows = monitor == Monitor::KaipoNoFlows;
            let (load, watch) = with_kaipo(bench, workload, secs, no_flows)?;
            (load, Some(watch))
        }
        Monitor::Floor(flows) => {
            let piece = if flows {
                Piece::EmptyAll
            } else {
                Piece::EmptyCgroupSkb
            };
            let _attached = breakdown::attach(piece, topo)?;
            (
                run_load(bench, workload, secs, &BTreeSet::new(), &mut |_| Ok(()))?,
                None,
            )
        }
        Monitor::Rival(rival) => {
            let bin = &rivals
                .iter()
                .find(|(r, _)| *r == rival)
                .context("rival not installed")?
                .1;
            let w = rivals::rival_load(rival, bin, &ifaces, None, |at| {
                run_load(bench, workload, secs, &BTreeSet::new(), at)
            })?;
            let told = rivals::told(rival, &w.outputs, w.flood.sender_pid, &sender_comm(bench));
            let link = rival.counts_link_layer();
            let load = w.flood.clone();
            let sender_tx = load.sender_if.bytes(link).0;
            let watch = Watch {
                cpu_pct: 100.0 * w.sched_cpu_secs / w.window.as_secs_f64().max(1e-9),
                rss_kib: w.vm_hwm_kib,
                attributed: told.sender_bytes.map(|b| (b, sender_tx)),
                kaipo: None,
                seen: told.bytes.map(|b| (b, load.link_total(link))),
                packets: None,
            };
            (load, Some(watch))
        }
    };
    Ok(Run {
        round,
        monitor,
        load,
        watch,
    })
}

/// One run of `workload` with `kaipo watch --json --backend ebpf` on the two host ends, or
/// with `--no-flows` (no interface can be named then: every interface that is up).
fn with_kaipo(
    bench: &Bench,
    workload: Workload,
    secs: f64,
    no_flows: bool,
) -> anyhow::Result<(Load, Watch)> {
    let topo = &bench.topo;
    let k = if no_flows {
        Kaipo::start_with(
            &bench.bin,
            &["--interval", "1s", "--backend", "ebpf", "--no-flows"],
        )?
    } else {
        Kaipo::start(
            &bench.bin,
            &[&topo.sender_if, &topo.receiver_if],
            "1s",
            Some("ebpf"),
        )?
    };
    let pid = k.pid;
    let held = kaipo::held_objects(pid)?;
    let mut sched = (0u64, 0u64);
    let mut window = (Instant::now(), Instant::now());
    let load = run_load(bench, workload, secs, &held.programs, &mut |moment| {
        match moment {
            Moment::Start => {
                window.0 = Instant::now();
                sched.0 = kaipo::cpu_ns(pid)?;
            }
            Moment::SenderDone => {
                sched.1 = kaipo::cpu_ns(pid)?;
                window.1 = Instant::now();
            }
            Moment::ReceiverDone => {}
        }
        Ok(())
    })?;
    let rss_kib = kaipo::status_kib(pid, "VmHWM")?;
    let (records, _stderr) = k.stop()?;
    let sender = kaipo::process_totals(&records, load.sender_pid);
    let receiver = kaipo::process_totals(&records, load.receiver_pid);
    let given = sender.tx_bytes + sender.rx_bytes + receiver.tx_bytes + receiver.rx_bytes;
    let lost = kaipo::lost_totals(&records).values().sum();
    let window = (window.1 - window.0).as_secs_f64().max(1e-9);
    let watch = Watch {
        cpu_pct: 100.0 * sched.1.saturating_sub(sched.0) as f64 / 1e9 / window,
        rss_kib,
        attributed: Some((given, load.reference.ip_bytes)),
        kaipo: Some((sender, receiver, lost)),
        seen: None,
        packets: Some((
            sender.tx_packets + sender.rx_packets + receiver.tx_packets + receiver.rx_packets,
            load.reference.packets,
        )),
    };
    Ok((load, watch))
}

/// One run of `workload`, calling `at` at each [`Moment`]; `ours` as in [`Bench::flood`].
pub(super) fn run_load(
    bench: &Bench,
    workload: Workload,
    secs: f64,
    ours: &BTreeSet<u32>,
    at: &mut dyn FnMut(Moment) -> anyhow::Result<()>,
) -> anyhow::Result<Load> {
    let topo = &bench.topo;
    let links = || -> anyhow::Result<(Link, Link)> {
        Ok((Link::read(&topo.sender_if)?, Link::read(&topo.receiver_if)?))
    };
    let before = links()?;
    let mut load = match workload.payload() {
        Some(payload) => {
            let f = bench.flood_sized(secs, None, payload, ours, at)?;
            let mut notes = Vec::new();
            if let Some(d) = f.rcvbuf_errors.filter(|d| *d > 0) {
                notes.push(format!("{} socket drops", int(d)));
            }
            if f.send_errors > 0 {
                notes.push(format!("{} ENOBUFS", int(f.send_errors)));
            }
            Load {
                sender_pid: f.sender_pid,
                receiver_pid: f.receiver_pid,
                units: f.received,
                elapsed: f.elapsed,
                cpu_ns_per_unit: f.cpu_ns_per_datagram(),
                waited: f.contention(),
                reference: Reference::udp(payload as u64, f.sent, f.received),
                retransmits: 0,
                sender_if: Link::default(),
                receiver_if: Link::default(),
                notes,
                foreign_programs: f.foreign_programs,
            }
        }
        None => tcp_load(bench, workload, secs, ours, at)?,
    };
    let after = links()?;
    load.sender_if = after.0.since(before.0);
    load.receiver_if = after.1.since(before.1);
    Ok(load)
}

/// TCP bulk or request/response: the server in the receiver's namespace, the client in the
/// sender's; see [`super::tcp_traffic`].
fn tcp_load(
    bench: &Bench,
    workload: Workload,
    secs: f64,
    ours: &BTreeSet<u32>,
    at: &mut dyn FnMut(Moment) -> anyhow::Result<()>,
) -> anyhow::Result<Load> {
    let topo = &bench.topo;
    let rr = workload == Workload::TcpRr;
    let port = if rr { RR_PORT } else { BULK_PORT };
    let addr = format!("{}:{port}", topo.receiver_addrs[0]);
    let mut serve = vec![
        "tcp-serve".to_owned(),
        "--bind".into(),
        addr.clone(),
        "--cpu".into(),
        RECEIVER_CPU.to_string(),
        "--max-secs".into(),
        (secs + 60.0).to_string(),
    ];
    let mut client = vec![
        "--dst".to_owned(),
        addr,
        "--secs".into(),
        secs.to_string(),
        "--cpu".into(),
        SENDER_CPU.to_string(),
    ];
    if rr {
        serve.extend([
            "--conns".into(),
            RR_CONNS.to_string(),
            "--request".into(),
            RR_REQUEST.to_string(),
            "--response".into(),
            RR_RESPONSE.to_string(),
        ]);
        client.splice(
            0..0,
            [
                "tcp-rr".to_owned(),
                "--conns".into(),
                RR_CONNS.to_string(),
                "--request".into(),
                RR_REQUEST.to_string(),
                "--response".into(),
                RR_RESPONSE.to_string(),
            ],
        );
    } else {
        client.insert(0, "tcp-bulk-send".into());
    }
    let mibs = || -> anyhow::Result<(TcpMib, TcpMib)> {
        Ok((
            TcpMib::read(&topo.sender_ns)?,
            TcpMib::read(&topo.receiver_ns)?,
        ))
    };
    let mibs_before = mibs()?;
    let mut server = bench.helper(&topo.receiver_ns, &serve, "TCP server")?;
    let ready = server.read_line()?;
    anyhow::ensure!(ready == "ready", "the TCP server said {ready:?}");
    let mut client = bench.helper(&topo.sender_ns, &client, "TCP client")?;
    let said = client.read_line()?;
    anyhow::ensure!(said == "connected", "the TCP client said {said:?}");
    // The server's and both ksoftirqds' CPU over the client's window, read from outside.
    let tasks: Vec<u32> = [
        ksoftirqd_pid(SENDER_CPU),
        ksoftirqd_pid(RECEIVER_CPU),
        server.pid(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let side = || -> u64 { tasks.iter().map(|&t| kaipo::cpu_ns_of_task(t)).sum() };
    let side_before = side();
    at(Moment::Start)?;
    let said = client.read_line()?;
    anyhow::ensure!(said == "done", "the TCP client said {said:?}");
    let side_ns = side().saturating_sub(side_before);
    at(Moment::SenderDone)?;
    let foreign_programs = kaipo::foreign_kaipo_programs(ours);
    let c = client.finish(Duration::from_secs(30))?;
    let s = server.finish(Duration::from_secs(30))?;
    let mibs_after = mibs()?;
    at(Moment::ReceiverDone)?;
    let parsed = TcpCounts::parse(&c, &s)?;
    let (client_ns, server_ns) = (
        mibs_after.0.since(mibs_before.0),
        mibs_after.1.since(mibs_before.1),
    );
    let payload_bytes =
        parsed.client_sent + parsed.server_sent + parsed.client_retrans + parsed.server_retrans;
    let units = if rr {
        parsed.transactions
    } else {
        parsed.server_received
    };
    let elapsed = Duration::from_nanos(parsed.elapsed_ns);
    Ok(Load {
        sender_pid: parsed.client_pid,
        receiver_pid: parsed.server_pid,
        units,
        elapsed,
        cpu_ns_per_unit: (parsed.client_on_cpu_ns + side_ns) as f64
            / (units as f64 / workload.per_unit()).max(1e-9),
        waited: parsed.client_run_delay_ns as f64 / parsed.elapsed_ns.max(1) as f64,
        reference: Reference::tcp(payload_bytes, client_ns, server_ns),
        retransmits: client_ns.retrans_segs + server_ns.retrans_segs,
        sender_if: Link::default(),
        receiver_if: Link::default(),
        notes: parsed.notes(rr),
        foreign_programs,
    })
}

/// What the TCP client and server printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TcpCounts {
    client_pid: u32,
    server_pid: u32,
    client_sent: u64,
    client_received: u64,
    server_sent: u64,
    server_received: u64,
    /// Responses the client got (request/response; 0 for bulk).
    transactions: u64,
    /// Requests the server answered.
    server_transactions: u64,
    elapsed_ns: u64,
    client_on_cpu_ns: u64,
    client_run_delay_ns: u64,
    accepted: u64,
    /// Payload bytes each side's kernel sent again (`tcpi_bytes_retrans`, summed).
    client_retrans: u64,
    server_retrans: u64,
    /// Connections the server did not close before the client gave up waiting.
    not_closed: u64,
    in_flight_at_end: u64,
}

impl TcpCounts {
    fn parse(client: &serde_json::Value, server: &serde_json::Value) -> anyhow::Result<Self> {
        let opt = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        Ok(Self {
            client_pid: num(client, "pid")? as u32,
            server_pid: num(server, "pid")? as u32,
            client_sent: num(client, "sent_bytes")?,
            client_received: num(client, "received_bytes")?,
            server_sent: num(server, "sent_bytes")?,
            server_received: num(server, "received_bytes")?,
            transactions: opt(client, "transactions").unwrap_or(0),
            server_transactions: num(server, "transactions")?,
            elapsed_ns: num(client, "elapsed_ns")?,
            client_on_cpu_ns: num(client, "on_cpu_ns")?,
            client_run_delay_ns: num(client, "run_delay_ns")?,
            accepted: num(server, "accepted")?,
            client_retrans: num(client, "retrans_bytes")?,
            server_retrans: num(server, "retrans_bytes")?,
            not_closed: opt(client, "not_closed_by_server").unwrap_or(0),
            in_flight_at_end: opt(client, "in_flight_at_end").unwrap_or(0),
        })
    }

    /// Where the two sides' counts disagree, or the load did not finish cleanly.
    fn notes(&self, rr: bool) -> Vec<String> {
        let mut notes = Vec::new();
        if self.client_sent != self.server_received {
            notes.push(format!(
                "client sent {} B, server read {} B",
                int(self.client_sent),
                int(self.server_received)
            ));
        }
        if self.server_sent != self.client_received {
            notes.push(format!(
                "server sent {} B, client read {} B",
                int(self.server_sent),
                int(self.client_received)
            ));
        }
        if rr && self.transactions != self.server_transactions {
            notes.push(format!(
                "{} responses received, {} sent",
                int(self.transactions),
                int(self.server_transactions)
            ));
        }
        if rr && self.accepted != RR_CONNS as u64 {
            notes.push(format!("{} connections accepted", self.accepted));
        }
        if self.in_flight_at_end > 0 {
            notes.push(format!("{} requests unanswered", self.in_flight_at_end));
        }
        if self.not_closed > 0 {
            notes.push(format!("{} connections not closed", self.not_closed));
        }
        notes
    }
}

/// A rate in the workload's unit, human-sized.
fn rate(workload: Workload, r: f64) -> String {
    match workload {
        Workload::TcpBulk => format!("{:.0} MB/s", r / 1e6),
        Workload::TcpRr => format!("{} tx/s", int(r.round() as u64)),
        _ => {
            let ip = workload.payload().unwrap_or(0) as u64 + IP_UDP_HEADERS;
            format!(
                "{} dg/s ({:.0} MB/s)",
                int(r.round() as u64),
                r * ip as f64 / 1e6
            )
        }
    }
}

fn cpu_per_unit(workload: Workload, ns: f64) -> String {
    if workload == Workload::TcpBulk {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Medians of one monitor's runs of one workload.
struct Medians {
    rate: f64,
    cpu_per_unit: f64,
    cpu_pct: Option<f64>,
    rss_kib: Option<u64>,
    /// Lowest attribution over the runs, and the median.
    attributed: Option<(f64, f64)>,
}

fn medians(runs: &[Run], monitor: Monitor) -> Option<Medians> {
    let of: Vec<&Run> = runs.iter().filter(|r| r.monitor == monitor).collect();
    if of.is_empty() {
        return None;
    }
    let watches: Vec<&Watch> = of.iter().filter_map(|r| r.watch.as_ref()).collect();
    let attributed: Vec<f64> = watches
        .iter()
        .filter_map(|w| w.attributed.map(ratio))
        .collect();
    Some(Medians {
        rate: median(of.iter().map(|r| r.load.rate()).collect()),
        cpu_per_unit: median(of.iter().map(|r| r.load.cpu_ns_per_unit).collect()),
        cpu_pct: (!watches.is_empty()).then(|| median(watches.iter().map(|w| w.cpu_pct).collect())),
        rss_kib: watches.iter().map(|w| w.rss_kib).max(),
        attributed: (!attributed.is_empty()).then(|| {
            (
                attributed.iter().copied().fold(f64::INFINITY, f64::min),
                median(attributed.clone()),
            )
        }),
    })
}

/// One workload's line of the summary: rates over the rate without a monitor, as (rate, rate
/// by CPU), medians of the rounds.
#[derive(Default)]
struct SummaryRow {
    /// kaipo with flows, and its attribution (lowest, median) and userspace CPU.
    kaipo: Option<(f64, f64)>,
    attributed: Option<(f64, f64)>,
    cpu: Option<f64>,
    /// kaipo with no interface named, and its attribution.
    no_flows: Option<(f64, f64)>,
    no_flows_attributed: Option<(f64, f64)>,
    nethogs: Option<(f64, f64)>,
    bandwhich: Option<(f64, f64)>,
    /// Empty programs on the hooks of each mode (rate only).
    floor_flows: Option<f64>,
    floor_no_flows: Option<f64>,
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn figures(
    bench: &Bench,
    secs: f64,
    rounds: usize,
    all: &[(Workload, Vec<Run>)],
    rivals: &[(Rival, PathBuf)],
    missing: &[Rival],
    floors: bool,
) -> String {
    let topo = &bench.topo;
    let ifaces = [topo.sender_if.as_str(), topo.receiver_if.as_str()];
    let mut s = String::new();
    let who = if rivals.is_empty() && missing.is_empty() {
        "kaipo (with and without flows)"
    } else {
        "kaipo (with and without flows), nethogs and bandwhich"
    };
    let _ = writeln!(
        s,
        "### 6. Workloads: {who} against no monitor\n\n\
         The collector's network (`{}` → host forwarding → `{}`). Each workload: a 1 s warm-up, \
         then {rounds} rounds, each a {secs} s run with no monitor and one under each \
         monitor, in an order rotating by round (the run without a monitor takes every place \
         in turn), every monitor in the host's namespace watching the two host ends:\n",
        ifaces[0], ifaces[1]
    );
    let _ = writeln!(
        s,
        "- kaipo --iface (flows): `kaipo watch --json --interval 1s --backend ebpf --iface {} \
         --iface {}`: kaipo's programs on the two host ends count every frame per flow (the \
         attributed share, and process figures scoped to those interfaces)\n\
         - kaipo, no interface named (no flows): `kaipo watch --json --interval 1s --backend \
         ebpf --no-flows`, which is what `kaipo watch` does with no interface named (every \
         interface that is up, from the kernel's counters; only the socket programs run per \
         packet)",
        ifaces[0], ifaces[1]
    );
    if floors {
        let _ = writeln!(
            s,
            "- empty programs on kaipo's hooks: programs that do nothing (`r0 = verdict; exit`) \
             where `kaipo watch --iface` on both host ends attaches its own: cgroup_skb ingress \
             and egress at the cgroup v2 root, TCX ingress and egress on `{}` and on `{}`; no \
             kaipo process. The most a monitor that runs a program on each of those hooks could \
             keep.\n\
             - empty programs on --no-flows's hooks: the two empty cgroup_skb programs alone \
             (the hooks kaipo uses per packet with no interface named).",
            ifaces[0], ifaces[1]
        );
    }
    rivals::write_list(
        &mut s,
        rivals,
        missing,
        &ifaces,
        ", started 2 s before the run and stopped once the total it prints stops growing (at \
         most 20 s after it)",
    );
    let _ = writeln!(s);
    for (workload, _) in all {
        let _ = writeln!(s, "- {}", workload.describe(secs));
    }
    let _ = writeln!(
        s,
        "\n\"Monitor CPU\": the monitor's time on CPU over the run's window (schedstat of every \
         thread of its processes), % of one core. \"Peak RSS\": `VmHWM` (summed over its \
         processes). \"Attributed\", for kaipo: the bytes its JSON gave the sender's and the \
         receiver's pids together (`processes[].tx_bytes + rx_bytes` of both, over all \
         intervals), against each packet of the load counted once as it leaves one process and \
         once as it reaches the other. For UDP that reference is exact: datagrams sent and \
         received by the generators' counts × IP-layer bytes. The TCP generators know only \
         their payload bytes, so for TCP it is a model: payload (both directions, plus what the kernel sent \
         again: `tcpi_bytes_retrans` of each socket) + {TCP_SEGMENT_HEADERS} header bytes \
         (IPv4, TCP, timestamp option) for each segment the two namespaces sent (`Tcp: \
         OutSegs + RetransSegs` of their `/proc/net/snmp`; each segment of a GSO packet \
         counts), + {TCP_SYN_EXTRA} for each SYN and SYN-ACK (`ActiveOpens`, `PassiveOpens`); \
         exact unless a segment carries other options (SACK blocks on ACKs after a loss: see \
         \"retransmitted segments\"). The notes give kaipo's packet count against 2 × those \
         segments (no model), and kaipo's bytes \
         against the host ends' own kernel counters (`/sys/class/net/<if>/statistics`, rx + tx \
         of both, minus {ETH_HEADER} bytes per packet), which count a GSO packet once with one \
         set of headers, so they fall short of kaipo's per-segment count under TCP bulk. Both \
         TCP sides close so that every packet, the last ACKs included, is sent or received \
         while its process holds the socket. For nethogs and bandwhich: the bytes their last \
         report gives the sender's process (nethogs by pid, bandwhich by command name), against \
         the sender's bytes on `{}` by its kernel counters at their layer (nethogs link layer, \
         bandwhich IP layer), which is what their capture on that interface gets; \"seen\": \
         the total they print against the same counters of both ends, rx + tx. The load's \
         sockets live in their own network namespaces, whose socket tables tools that read \
         the host's `/proc/net` cannot see (`cargo xtask bench pcap` measures them inside the \
         sender's namespace too).\n",
        ifaces[0]
    );

    let mut summary = Vec::new();
    for (workload, runs) in all {
        let w = *workload;
        let _ = writeln!(s, "#### {}\n", w.label());
        let _ = writeln!(
            s,
            "| round | monitor | rate | vs no monitor (same round) | CPU per {} | sender waited | monitor CPU (% of a core) | peak RSS | attributed | notes |",
            w.unit()
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in runs {
            let base = runs
                .iter()
                .find(|b| b.round == r.round && b.monitor == Monitor::Unmonitored)
                .map_or(0.0, |b| b.load.rate());
            let vs = if r.monitor == Monitor::Unmonitored {
                "–".to_owned()
            } else {
                pct(r.load.rate() / base.max(1e-9))
            };
            let mut notes = r.load.notes.clone();
            if r.load.foreign_programs > 0 {
                notes.push(format!(
                    "{} other `kaipo_*` programs loaded",
                    r.load.foreign_programs
                ));
            }
            if r.load.retransmits > 0 {
                notes.push(format!(
                    "{} retransmitted segments",
                    int(r.load.retransmits)
                ));
            }
            let (cpu, rss, attributed) = match &r.watch {
                None => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                Some(wa) => {
                    let attributed = wa.attributed.map_or("not reported".to_owned(), |a| {
                        format!("{} ({} / {} B)", pct(ratio(a)), int(a.0), int(a.1))
                    });
                    if let Some((_, _, lost)) = wa.kaipo {
                        if lost > 0 {
                            notes.push(format!("kaipo `lost.*` {}", int(lost)));
                        }
                        if let Some(p) = wa.packets {
                            notes.push(format!(
                                "packets {} ({} / {})",
                                pct(ratio(p)),
                                int(p.0),
                                int(p.1)
                            ));
                        }
                        if let Some((given, _)) = wa.attributed {
                            notes.push(format!(
                                "vs host ends' counters {}",
                                pct(ratio((given, r.load.link_total(false))))
                            ));
                        }
                    }
                    if let Some(seen) = wa.seen {
                        notes.push(format!("seen {}", pct(ratio(seen))));
                    }
                    (format!("{:.2} %", wa.cpu_pct), mib(wa.rss_kib), attributed)
                }
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {vs} | {} | {:.1} % | {cpu} | {rss} | {attributed} | {} |",
                r.round,
                r.monitor.label(),
                rate(w, r.load.rate()),
                cpu_per_unit(w, r.load.cpu_ns_per_unit),
                100.0 * r.load.waited,
                if notes.is_empty() {
                    "–".to_owned()
                } else {
                    notes.join("; ")
                },
            );
        }
        let Some(base) = medians(runs, Monitor::Unmonitored) else {
            continue;
        };
        let _ = writeln!(s, "\nMedians over the {rounds} rounds:\n");
        let _ = writeln!(
            s,
            "| monitor | rate | with / without | CPU per {} | sustainable rate by CPU (without / with) | monitor CPU (% of a core) | peak RSS (max) | attributed (lowest, median) |",
            w.unit()
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let monitors = [
            Monitor::Unmonitored,
            Monitor::Kaipo,
            Monitor::KaipoNoFlows,
            Monitor::Floor(true),
            Monitor::Floor(false),
        ]
        .into_iter()
        .chain(rivals.iter().map(|(r, _)| Monitor::Rival(*r)));
        let mut row = SummaryRow::default();
        for monitor in monitors {
            let Some(m) = medians(runs, monitor) else {
                continue;
            };
            let vs = m.rate / base.rate.max(1e-9);
            let by_cpu = base.cpu_per_unit / m.cpu_per_unit.max(1e-9);
            match monitor {
                Monitor::Kaipo => {
                    row.kaipo = Some((vs, by_cpu));
                    row.attributed = m.attributed;
                    row.cpu = m.cpu_pct;
                }
                Monitor::KaipoNoFlows => {
                    row.no_flows = Some((vs, by_cpu));
                    row.no_flows_attributed = m.attributed;
                }
                Monitor::Floor(true) => row.floor_flows = Some(vs),
                Monitor::Floor(false) => row.floor_no_flows = Some(vs),
                Monitor::Rival(Rival::Nethogs) => row.nethogs = Some((vs, by_cpu)),
                Monitor::Rival(Rival::Bandwhich) => row.bandwhich = Some((vs, by_cpu)),
                _ => {}
            }
            let unmonitored = monitor == Monitor::Unmonitored;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                monitor.label(),
                rate(w, m.rate),
                if unmonitored {
                    "–".into()
                } else {
                    format!("**{}**", pct(vs))
                },
                cpu_per_unit(w, m.cpu_per_unit),
                if unmonitored {
                    "–".into()
                } else {
                    pct(by_cpu)
                },
                m.cpu_pct.map_or("–".into(), |c| format!("{c:.2} %")),
                m.rss_kib.map_or("–".into(), mib),
                m.attributed.map_or("–".into(), |(lo, med)| format!(
                    "{} / {}",
                    pct(lo),
                    pct(med)
                )),
            );
        }
        let _ = writeln!(s);
        summary.push((w, row));
    }

    let _ = writeln!(
        s,
        "#### Summary\n\nRate with each monitor over the rate with none (medians of the rounds; \
         in brackets, the same by CPU per unit of work, median without / median with, which \
         other work on the machine moves less), kaipo's attribution (lowest over the rounds; \
         complete when it prints as 100.00 %), kaipo's userspace CPU (median), and the issue's \
         targets (the rate ones on the delivered rate).\n"
    );
    let _ = writeln!(
        s,
        "| workload | kaipo --iface (flows) | nethogs | bandwhich | kaipo attribution | kaipo CPU (% of a core) | targets | kaipo, no interface named (attribution) |{}",
        if floors {
            " floor: empty programs on kaipo's hooks / on --no-flows's |"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---|---:|{}",
        if floors { "---:|" } else { "" }
    );
    for (w, row) in summary {
        let SummaryRow {
            kaipo,
            nethogs,
            bandwhich,
            attributed,
            cpu,
            no_flows,
            no_flows_attributed,
            floor_flows,
            floor_no_flows,
        } = row;
        let mut targets = Vec::new();
        if let (Some(t), Some((k, _))) = (w.target(), kaipo) {
            targets.push(format!("rate >= {:.0} %: {}", 100.0 * t, verdict(k >= t)));
        }
        for (name, rival) in [("nethogs", nethogs), ("bandwhich", bandwhich)] {
            match (kaipo, rival) {
                (Some((k, _)), Some((r, _))) => {
                    targets.push(format!("ahead of {name}: {}", verdict(k > r)));
                }
                _ => targets.push(format!("ahead of {name}: not measured")),
            }
        }
        if let Some((lo, _)) = attributed {
            targets.push(format!(
                "100 % attributed: {}",
                verdict(lo >= FULL_ATTRIBUTION)
            ));
        }
        if let Some(c) = cpu {
            targets.push(format!(
                "userspace < {TARGET_USERSPACE_PCT:.0} % of a core: {}",
                verdict(c < TARGET_USERSPACE_PCT)
            ));
        }
        let cell = |v: Option<(f64, f64)>| {
            v.map_or("–".to_owned(), |(rate, by_cpu)| {
                format!("{} ({} by CPU)", pct(rate), pct(by_cpu))
            })
        };
        let no_flows = no_flows.map_or("–".to_owned(), |(rate, by_cpu)| {
            let target = w.target().map_or(String::new(), |t| {
                format!("; rate >= {:.0} %: {}", 100.0 * t, verdict(rate >= t))
            });
            format!(
                "{} ({}){target}",
                cell(Some((rate, by_cpu))),
                no_flows_attributed.map_or("–".into(), |(lo, _)| pct(lo))
            )
        });
        let floor = if floors {
            let one = |v: Option<f64>| v.map_or("–".to_owned(), pct);
            format!(" {} / {} |", one(floor_flows), one(floor_no_flows))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {no_flows} |{floor}",
            w.label(),
            cell(kaipo),
            cell(nethogs),
            cell(bandwhich),
            attributed.map_or("–".into(), |(lo, _)| pct(lo)),
            cpu.map_or("–".into(), |c| format!("{c:.2} %")),
            targets.join("; "),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_counts_from_the_generators_lines() {
        let client: serde_json::Value = serde_json::from_str(
            r#"{"pid":41,"connections":1000,"retrans_bytes":0,"not_closed_by_server":0,"transactions":5000,
                "in_flight_at_end":0,"sent_bytes":320000,"received_bytes":320000,
                "elapsed_ns":1000000000,"on_cpu_ns":900000000,"run_delay_ns":1000}"#,
        )
        .unwrap();
        let server: serde_json::Value = serde_json::from_str(
            r#"{"pid":42,"accepted":1000,"retrans_bytes":0,"closed_by_client":1000,"received_bytes":320000,
                "sent_bytes":319936,"transactions":4999,"on_cpu_ns":5,"run_delay_ns":6}"#,
        )
        .unwrap();
        let c = TcpCounts::parse(&client, &server).unwrap();
        assert_eq!((c.client_pid, c.server_pid), (41, 42));
        assert_eq!(c.transactions, 5000);
        assert_eq!(c.server_transactions, 4999);
        assert_eq!(c.client_received, 320_000);
        assert_eq!(c.server_sent, 319_936);
        assert_eq!(c.elapsed_ns, 1_000_000_000);
        let notes = c.notes(true);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("server sent 319,936 B"));
        assert!(notes[1].starts_with("5,000 responses received, 4,999 sent"));
        // A bulk line has no transactions; a missing required count is an error.
        let bulk: serde_json::Value = serde_json::from_str(
            r#"{"pid":1,"retrans_bytes":1448,"sent_bytes":10,"received_bytes":0,"elapsed_ns":5,"on_cpu_ns":1,"run_delay_ns":0}"#,
        )
        .unwrap();
        let srv: serde_json::Value = serde_json::from_str(
            r#"{"pid":2,"accepted":1,"retrans_bytes":0,"received_bytes":10,"sent_bytes":0,"transactions":0}"#,
        )
        .unwrap();
        let b = TcpCounts::parse(&bulk, &srv).unwrap();
        assert_eq!(b.transactions, 0);
        assert_eq!(b.client_retrans, 1448);
        assert!(b.notes(false).is_empty());
        let broken: serde_json::Value = serde_json::from_str(r#"{"pid":1}"#).unwrap();
        assert!(TcpCounts::parse(&broken, &srv).is_err());
    }

    #[test]
    fn tcp_reference_from_the_namespaces_counters() {
        let snmp = |segs: u64, active: u64, passive: u64| {
            format!(
                "Tcp: RtoAlgorithm ActiveOpens PassiveOpens AttemptFails OutSegs RetransSegs\n\
                 Tcp: 1 {active} {passive} 0 {segs} 2\nUdp: InDatagrams\nUdp: 0\n"
            )
        };
        let before = TcpMib::parse(&snmp(100, 5, 0)).unwrap();
        let after = TcpMib::parse(&snmp(1_100, 6, 0)).unwrap();
        let client = after.since(before);
        assert_eq!(
            client,
            TcpMib {
                out_segs: 1_000,
                active_opens: 1,
                passive_opens: 0,
                retrans_segs: 0,
            }
        );
        let server = TcpMib::parse(&snmp(400, 0, 1)).unwrap();
        assert_eq!(server.retrans_segs, 2);
        // 10,000 payload bytes; 1,402 segments (2 of them retransmissions, which OutSegs
        // leaves out) of 52 header bytes; a SYN and a SYN-ACK with 8 more each: counted once
        // leaving one process and once reaching the other.
        let r = Reference::tcp(10_000, client, server);
        assert_eq!(r.packets, 2_804);
        assert_eq!(r.ip_bytes, 2 * (10_000 + 1_402 * 52 + 2 * 8));
        assert!(TcpMib::parse("Udp: InDatagrams\nUdp: 0\n").is_none());
        let u = Reference::udp(22, 10, 9);
        assert_eq!((u.ip_bytes, u.packets), (19 * 50, 19));
    }

    #[test]
    fn link_counters_at_the_ip_layer() {
        let before = Link {
            rx_bytes: 1_000,
            rx_packets: 10,
            tx_bytes: 500,
            tx_packets: 5,
        };
        let after = Link {
            rx_bytes: 1_000 + 64 * 100,
            rx_packets: 110,
            tx_bytes: 500 + 66 * 10,
            tx_packets: 15,
        };
        let d = after.since(before);
        assert_eq!(d.bytes(true), (6_400, 660));
        assert_eq!(d.bytes(false), (50 * 100, 52 * 10));
    }
}
