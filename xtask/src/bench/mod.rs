//! Benchmarks (`cargo xtask bench <which>`).

mod baseline;
mod breakdown;
mod churn;
mod collector;
mod fleet;
mod kaipo;
mod live;
mod pcap;
mod report;
mod rivals;
mod store;
mod tcp_traffic;
mod testrun;
mod toggle;
mod topology;
mod traffic;
mod workloads;

use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context as _};
use clap::Subcommand;

#[derive(Clone, Subcommand)]
pub enum Which {
    /// Per-packet cost of the kernel programs, a UDP flood with and without kaipo, and
    /// kaipo's own CPU and memory.
    Collector,
    /// The collector's UDP flood with `kaipo watch --backend pcap` and `--backend ebpf` side by
    /// side, and with nethogs, bandwhich and iftop where installed: throughput, packets seen,
    /// drops, each monitor's CPU and memory, attribution.
    Pcap,
    /// Only the per-packet cost of the interface programs (`BPF_PROG_TEST_RUN`), quickly.
    Testrun,
    /// Only the collector's section 2, quickly: kaipo's kernel run time per program under the
    /// flood, with and without flows, each set against empty programs on the same hooks.
    Runtime {
        /// How often each of the two floods is run.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Another kaipo binary (an earlier build, say) to watch beside this one in every
        /// flood: both measured under the same conditions.
        #[arg(long)]
        against: Option<std::path::PathBuf>,
    },
    /// Only the collector's section 3b, quickly: the flood with one piece of the kernel side
    /// attached at a time.
    Breakdown {
        /// Pieces to measure (all of section 3b's when none are named).
        #[arg(value_enum)]
        pieces: Vec<breakdown::Piece>,
        /// How often each piece is measured.
        #[arg(long, default_value_t = collector::BREAKDOWN_PASSES)]
        passes: usize,
        /// UDP payload of each datagram (22: 64-byte frames).
        #[arg(long, default_value_t = traffic::PAYLOAD_64B_FRAME)]
        payload: usize,
    },
    /// Only the collector's workload table, quickly: 64-byte and 1,400-byte UDP floods, TCP
    /// bulk and TCP request/response over 1,000 connections, each with no monitor, kaipo,
    /// nethogs and bandwhich.
    Workloads(workloads::WorkloadsArgs),
    /// The workloads with kaipo's per-packet programs (and empty ones on the same hooks)
    /// switched on and off every half second within one long run: their cost set against
    /// the stretches right around it, which this machine's drift from run to run does not
    /// move.
    Toggle(toggle::ToggleArgs),
    /// History: CPU per interval written, a month-long report, bytes per day, memory over time.
    Store,
    /// The dashboard: building and drawing one frame with 10k connections and 1k processes.
    Live,
    /// The daemon's extras: a /metrics scrape with 1k apps and 100 interfaces, and evaluating
    /// 1k alert rules on one interval.
    Metrics,
    /// A fleet report (`kaipo report --prometheus`) over 2 hosts x 30 days of one-minute
    /// samples backfilled into a local Prometheus.
    Fleet,
    /// The socket map under socket churn: a million short-lived sockets, then a known sender
    /// attributed exactly, map entries back to the live count, and the daemon's RSS and
    /// `kaipo status` time at 100,000 and 200,000 live sockets.
    Churn(churn::ChurnArgs),
    /// (Used by `churn`.) The known sender: datagrams from a process of its own.
    #[command(hide = true)]
    ChurnSend(churn::ChurnSendArgs),
    /// (Used by `churn`.) Holds live sockets until its stdin closes.
    #[command(hide = true)]
    ChurnHold(churn::ChurnHoldArgs),
    /// (Used by `collector` inside its namespaces.) A sendmmsg flood for a fixed time.
    #[command(hide = true)]
    FloodSend(traffic::FloodSendArgs),
    /// (Used by `collector`.) Counts datagrams with recvmmsg until they stop.
    #[command(hide = true)]
    FloodRecv(traffic::FloodRecvArgs),
    /// (Used by `workloads`.) One TCP connection written to for a fixed time.
    #[command(hide = true)]
    TcpBulkSend(tcp_traffic::TcpBulkSendArgs),
    /// (Used by `workloads`.) The server of the TCP loads.
    #[command(hide = true)]
    TcpServe(tcp_traffic::TcpServeArgs),
    /// (Used by `workloads`.) Request/response over many TCP connections.
    #[command(hide = true)]
    TcpRr(tcp_traffic::TcpRrArgs),
    /// (Used by `collector`.) One datagram to each of many distinct destinations.
    #[command(hide = true)]
    FlowsSend(traffic::FlowsSendArgs),
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Collector => collector::run(),
        Which::Fleet => fleet::run(),
        Which::Churn(args) => churn::run(&args),
        Which::ChurnSend(args) => churn::churn_send(&args),
        Which::ChurnHold(args) => churn::churn_hold(&args),
        Which::Pcap => pcap::run(),
        Which::Runtime { rounds, against } => collector::run_runtime(rounds, against.as_deref()),
        Which::Breakdown {
            pieces,
            passes,
            payload,
        } => collector::run_breakdown(&pieces, passes, payload),
        Which::Store => store::run(),
        Which::Live => live::run(),
        Which::Metrics => {
            let median = |f: &dyn Fn() -> std::time::Duration| {
                let mut v: Vec<_> = (0..11).map(|_| f()).collect();
                v.sort();
                v[5]
            };
            println!(
                "/metrics scrape, 1000 apps and 100 interfaces (median of 11): {:?}",
                median(&::kaipo::metrics::bench::bench_scrape)
            );
            let (group, apply, scrape, samples) = ::kaipo::metrics::bench::bench_many_processes();
            println!(
                "one interval of 10,000 processes and 100,000 connections, labels app and \
                 container, top 20: grouped in {group:?} (outside the lock), folded in \
                 {apply:?} (under it); /metrics scrape (median of 21) {scrape:?}; {samples} \
                 samples"
            );
            println!(
                "alert evaluation, 1000 rate rules on one interval of 1000 apps (median of 11): {:?}",
                median(&::kaipo::alert::bench::bench_alert_evaluation)
            );
            Ok(())
        }
        Which::Testrun => {
            let costs = testrun::measure(200_000, 5, 10_000)?;
            for p in &costs.programs {
                println!(
                    "{}: {:?} per packet with one flow; after {} other flows: {:?} in its cache \
                     slot, {:?} for a flow whose two slots are held",
                    p.name,
                    p.one.median(),
                    costs.prefill.per_program,
                    p.hit.median(),
                    p.busy.median(),
                );
            }
            println!(
                "cache slots taken {}, FLOWS entries {}",
                costs.prefill.cached, costs.prefill.in_map
            );
            Ok(())
        }
        Which::FloodSend(args) => traffic::flood_send(&args),
        Which::FloodRecv(args) => traffic::flood_recv(&args),
        Which::FlowsSend(args) => traffic::flows_send(&args),
        Which::TcpBulkSend(args) => tcp_traffic::tcp_bulk_send(&args),
        Which::TcpServe(args) => tcp_traffic::tcp_serve(&args),
        Which::TcpRr(args) => tcp_traffic::tcp_rr(&args),
        Which::Workloads(args) => workloads::run(&args),
        Which::Toggle(args) => toggle::run(&args),
    }
}

/// Runs a command that must succeed and returns its stdout.
fn run_output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into an error at the next wait, so that the drop guards remove the
/// namespaces and stop kaipo instead of the process dying with them in place.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Makes `cmd`'s process receive `signal` when this one dies, so that a benchmark killed with
/// SIGKILL leaves no kaipo or traffic helper behind (`ip netns exec` execs in place, and the
/// setting survives exec).
fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sleeps, but gives up early with an error on SIGINT/SIGTERM.
fn pause(d: std::time::Duration) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(std::time::Duration::from_millis(50)));
    }
}
