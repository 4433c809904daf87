//! Per-packet cost measured within one run (`cargo xtask bench toggle`): each workload runs once
//! for a long window per set of hooks, and the hooks' programs are attached and detached in
//! turn every half second or so. Each attached stretch is compared with the detached stretches
//! right before and after it, so whatever makes whole runs drift on this machine (the rates of
//! two runs a minute apart differ by up to 15 %) weighs on both sides of each comparison
//! alike.
//!
//! Four sets of hooks: kaipo's programs where `kaipo watch --iface <both host ends>` puts
//! them, kaipo's socket pair alone (`--no-flows`), and programs that do nothing on those same
//! two sets of hooks (the floors). kaipo's object is loaded as kaipo loads it, its socket
//! lifecycle hooks attached for the whole run; only the per-packet programs are switched. No
//! kaipo userspace runs (it is not on the packet path; `bench workloads` measures it).

use std::{
    fmt::Write as _,
    fs::File,
    os::fd::{AsFd as _, OwnedFd},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use kaipo::collect::{backend::IngressHook, ebpf};

use super::{
    baseline, breakdown,
    collector::{self, Bench},
    report::{self, median},
    topology::{ifindex, Topology},
    workloads::{self, Workload},
};

/// Length of each workload's run per set of hooks, and of each stretch.
pub const SECS: f64 = 30.0;
pub const WINDOW_MS: u64 = 500;

#[derive(Clone, Debug, clap::Args)]
pub struct ToggleArgs {
    /// Length of each run, in seconds (one run per workload and set of hooks).
    #[arg(long, default_value_t = SECS)]
    pub secs: f64,
    /// Length of each stretch with the programs attached or detached, in milliseconds.
    #[arg(long, default_value_t = WINDOW_MS)]
    pub window_ms: u64,
    /// Workloads to run (all when none are named).
    #[arg(long = "only", value_enum)]
    pub only: Vec<Workload>,
    /// Sets of hooks to switch (all five when none are named).
    #[arg(long = "hooks", value_enum)]
    pub hooks: Vec<Hooks>,
    /// One run per workload for all the sets together, which take their attached stretches in
    /// turn (detached, first set, detached, second set, ...): the sets then meet the same
    /// conditions, where separate runs minutes apart do not.
    #[arg(long)]
    pub interleave: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hooks {
    /// kaipo's per-packet programs as `kaipo watch --iface` on the two host ends attaches them.
    Kaipo,
    /// kaipo's two socket programs alone (`--no-flows`).
    KaipoNoFlows,
    /// Programs that do nothing on every hook of `Kaipo`.
    Empty,
    /// Programs that do nothing on the two cgroup_skb hooks.
    EmptyNoFlows,
    /// The least a program on the two cgroup_skb hooks does to count a packet against its
    /// socket (see `baseline::load_least_counter`).
    LeastCounter,
}

impl Hooks {
    const ALL: [Self; 5] = [
        Self::Kaipo,
        Self::KaipoNoFlows,
        Self::LeastCounter,
        Self::Empty,
        Self::EmptyNoFlows,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Kaipo => "kaipo (flows on)",
            Self::KaipoNoFlows => "kaipo --no-flows",
            Self::Empty => "empty programs on kaipo's hooks",
            Self::EmptyNoFlows => "empty programs on --no-flows's hooks",
            Self::LeastCounter => "least per-socket counter on --no-flows's hooks",
        }
    }

    fn flows(self) -> bool {
        matches!(self, Self::Kaipo | Self::Empty)
    }
}

/// Where a program goes.
#[derive(Clone, Copy)]
enum Target {
    /// The cgroup v2 root, ingress or egress.
    Cgroup { ingress: bool },
    /// An interface's TCX ingress or egress.
    Tcx { ifindex: u32, ingress: bool },
}

/// Loaded programs and where they go; [`Switch::on`] attaches them all, and dropping what it
/// returns detaches them.
struct Switch {
    programs: Vec<(OwnedFd, Target)>,
    cgroup: File,
}

impl Switch {
    fn on(&self) -> anyhow::Result<Vec<OwnedFd>> {
        let mut links = Vec::with_capacity(self.programs.len());
        for (prog, target) in &self.programs {
            links.push(match *target {
                Target::Cgroup { ingress } => baseline::attach_cgroup(
                    prog,
                    &self.cgroup,
                    if ingress {
                        baseline::BPF_CGROUP_INET_INGRESS
                    } else {
                        baseline::BPF_CGROUP_INET_EGRESS
                    },
                )?,
                Target::Tcx { ifindex, ingress } => baseline::attach_tcx(prog, ifindex, ingress)?,
            });
        }
        Ok(links)
    }
}

/// kaipo's object when the hooks are its own (kept loaded for the run), and the switch.
fn prepare(hooks: Hooks, topo: &Topology) -> anyhow::Result<(Option<impl Sized>, Switch)> {
    let root = ebpf::cgroup2_root().context("no cgroup v2 mount")?;
    let cgroup = File::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let ends = [ifindex(&topo.sender_if)?, ifindex(&topo.receiver_if)?];
    let mut targets = vec![
        Target::Cgroup { ingress: true },
        Target::Cgroup { ingress: false },
    ];
    if hooks.flows() {
        for ifindex in ends {
            targets.push(Target::Tcx {
                ifindex,
                ingress: true,
            });
            targets.push(Target::Tcx {
                ifindex,
                ingress: false,
            });
        }
    }
    let mut programs = Vec::new();
    let held = match hooks {
        Hooks::Empty | Hooks::EmptyNoFlows => {
            for target in targets {
                let prog = match target {
                    Target::Cgroup { .. } => {
                        baseline::load_empty(baseline::PROG_TYPE_CGROUP_SKB, 0, 1)?
                    }
                    Target::Tcx { .. } => {
                        baseline::load_empty(baseline::PROG_TYPE_SCHED_CLS, 0, -1)?
                    }
                };
                programs.push((prog, target));
            }
            None
        }
        Hooks::LeastCounter => {
            for target in targets {
                programs.push((baseline::load_least_counter()?, target));
            }
            None
        }
        Hooks::Kaipo | Hooks::KaipoNoFlows => {
            let (btf, mut object, slots) = breakdown::load_kaipo(topo)?;
            // The lifecycle hooks stay on for the whole run: they do not run per packet.
            ebpf::attach::cgroup_sock(&mut object, "kaipo_sock_create", &cgroup)?;
            ebpf::attach::cgroup_sock(&mut object, "kaipo_sock_release", &cgroup)?;
            for (name, tracepoint, _) in ebpf::attach::TRACEPOINTS {
                ebpf::attach::tp_btf(&mut object, name, tracepoint, &btf)?;
            }
            ebpf::attach::load_socket_counters(&mut object)?;
            if hooks.flows() {
                ebpf::attach::load_interface_programs(&mut object, IngressHook::Tc)?;
            }
            for target in targets {
                let name = match target {
                    Target::Cgroup { ingress: true } => "kaipo_sock_ingress",
                    Target::Cgroup { ingress: false } => "kaipo_sock_egress",
                    Target::Tcx { ingress: true, .. } => "kaipo_tc_ingress",
                    Target::Tcx { ingress: false, .. } => "kaipo_tc_egress",
                };
                let fd = object
                    .program(name)
                    .with_context(|| format!("no {name}"))?
                    .fd()?
                    .as_fd()
                    .try_clone_to_owned()?;
                programs.push((fd, target));
            }
            Some((object, slots))
        }
    };
    Ok((held, Switch { programs, cgroup }))
}

/// The receiving host end's counter that follows the workload's progress: frames forwarded
/// toward the receiver (bytes for TCP bulk).
fn progress_counter(workload: Workload, topo: &Topology) -> String {
    let name = if workload == Workload::TcpBulk {
        "tx_bytes"
    } else {
        "tx_packets"
    };
    format!("/sys/class/net/{}/statistics/{name}", topo.receiver_if)
}

fn read_counter(path: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} holds {text:?}"))
}

/// One stretch: which set was attached (by its place in the run's sets; none: detached), what
/// the counter moved, over how long.
#[derive(Clone, Copy, Debug)]
struct Stretch {
    set: Option<usize>,
    count: u64,
    took: Duration,
}

impl Stretch {
    fn rate(self) -> f64 {
        self.count as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Runs `workload` once under the sets of `hooks`, switching every `window` between detached
/// and each set in turn; the stretches in order, the first detached.
fn run_one(
    bench: &Bench,
    workload: Workload,
    hooks: &[Hooks],
    secs: f64,
    window: Duration,
) -> anyhow::Result<Vec<Stretch>> {
    let mut held = Vec::new();
    let mut switches = Vec::new();
    for &set in hooks {
        let (h, switch) = prepare(set, &bench.topo)?;
        held.push(h);
        switches.push(switch);
    }
    let counter = progress_counter(workload, &bench.topo);
    // Stretches end a second before the load does, so none sees it wind down.
    let stretches = ((secs - 1.0).max(0.0) / window.as_secs_f64()) as usize;
    anyhow::ensure!(
        stretches >= 3,
        "{secs} s runs hold too few stretches of {window:?}"
    );
    let (start_tx, start_rx) = mpsc::channel::<()>();
    let toggler = std::thread::spawn(move || -> anyhow::Result<Vec<Stretch>> {
        if start_rx.recv().is_err() {
            return Ok(Vec::new());
        }
        // Switching takes time too (attaching to the cgroup root takes milliseconds), so the
        // stretches are counted against the clock: a count fixed in advance ran past the end
        // of the load, and stretches that moved nothing then read as sets that stop traffic.
        let last_end = Instant::now() + Duration::from_secs_f64((secs - 1.0).max(0.0));
        let mut out = Vec::with_capacity(stretches);
        let mut links = None;
        for i in 0..stretches {
            if Instant::now() + window > last_end {
                break;
            }
            let set = (i % 2 == 1).then(|| (i / 2) % switches.len());
            links = None;
            if let Some(set) = set {
                links = Some(switches[set].on()?);
            }
            // Read after switching, so the switch's own time is in no stretch.
            let (before, from) = (read_counter(&counter)?, Instant::now());
            std::thread::sleep(window);
            let (after, to) = (read_counter(&counter)?, Instant::now());
            out.push(Stretch {
                set,
                count: after.saturating_sub(before),
                took: to - from,
            });
        }
        drop(links);
        Ok(out)
    });
    let mut start = Some(start_tx);
    let load = workloads::run_load(bench, workload, secs, &Default::default(), &mut |moment| {
        if moment == collector::Moment::Start {
            if let Some(tx) = start.take() {
                let _ = tx.send(());
            }
        }
        Ok(())
    });
    drop(start);
    let stretches = toggler
        .join()
        .map_err(|_| anyhow::anyhow!("the switching thread panicked"))??;
    load?;
    drop(held);
    Ok(stretches)
}

/// What the stretches say of one set: each of its attached stretches over the mean of the two
/// detached neighbours.
struct Outcome {
    ratios: Vec<f64>,
    /// All the set's attached stretches' rate over all detached ones'.
    pooled: f64,
}

fn outcome(stretches: &[Stretch], set: usize) -> Outcome {
    let mut ratios = Vec::new();
    for i in 1..stretches.len().saturating_sub(1) {
        let (prev, cur, next) = (stretches[i - 1], stretches[i], stretches[i + 1]);
        if cur.set == Some(set) && prev.set.is_none() && next.set.is_none() {
            let off = (prev.rate() + next.rate()) / 2.0;
            if off > 0.0 {
                ratios.push(cur.rate() / off);
            }
        }
    }
    let sum = |which: Option<usize>| {
        let (count, took) = stretches
            .iter()
            .filter(|s| s.set == which)
            .fold((0u64, 0f64), |(c, t), s| {
                (c + s.count, t + s.took.as_secs_f64())
            });
        count as f64 / took.max(1e-9)
    };
    Outcome {
        ratios,
        pooled: sum(Some(set)) / sum(None).max(1e-9),
    }
}

/// The `q` quantile (0..=1) of `v`, by nearest rank.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let at = ((v.len() - 1) as f64 * q).round() as usize;
    v[at]
}

fn pct(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

pub fn run(args: &ToggleArgs) -> anyhow::Result<()> {
    let (bench, started) = collector::start_bench(
        "per-packet cost within one run",
        "toggle",
        workloads::WORKLOADS_BLOCKS,
    )?;
    let only = workloads::chosen(&args.only);
    let window = Duration::from_millis(args.window_ms.max(50));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Switched on and off within one run\n\n\
         The collector's network (`{}` → host forwarding → `{}`). {} The \
         rate of a stretch is what the receiving host end's kernel counter moved \
         (`tx_packets`; `tx_bytes` under TCP bulk) over its length; each attached stretch is \
         set against the mean of the detached stretches on either side of it. Sets of hooks:\n\n\
         - kaipo (flows on): kaipo's object loaded as `kaipo watch --iface {0} --iface {1}` \
         loads it; switched: `kaipo_sock_ingress` and `kaipo_sock_egress` at the cgroup v2 \
         root, `kaipo_tc_ingress` and `kaipo_tc_egress` on both host ends (TCX); attached for \
         the whole run: the socket lifecycle hooks and the process-exit tracepoint; no kaipo \
         process (`bench workloads` measures kaipo's userspace).\n\
         - kaipo --no-flows: the same with only the two socket programs switched.\n\
         - empty programs on kaipo's hooks: programs that do nothing (`r0 = verdict; exit`) on \
         the same six hooks: the least any program there costs.\n\
         - least per-socket counter on --no-flows's hooks: on the two cgroup_skb hooks, the \
         least work a program can do to count a packet against its socket: the socket's cookie \
         (one helper call), the array element its low 16 bits pick, two atomic adds (bytes, \
         packets). What any exact per-socket count costs at the least, whatever it does besides.\n\
         - empty programs on --no-flows's hooks: on the two cgroup_skb hooks alone.\n\n\
         The loads, as in section 6 of `bench collector` (their own rate and CPU figures are \
         not used here):\n",
        bench.topo.sender_if,
        bench.topo.receiver_if,
        if args.interleave {
            format!(
                "Each workload runs once for {} s for all the sets of hooks together (after a \
                 1 s warm-up of its own); during the run the programs are detached, then one \
                 set attached, then detached, then the next set attached, and so on, {} ms \
                 each, starting detached.",
                args.secs,
                window.as_millis()
            )
        } else {
            format!(
                "Each workload runs once for {} s per set of hooks (after a 1 s warm-up of its \
                 own); during the run the set's programs are detached and attached in turn, {} \
                 ms each way, starting detached.",
                args.secs,
                window.as_millis()
            )
        },
    );
    for &w in only {
        let _ = writeln!(s, "- {}", w.describe(args.secs));
    }
    let _ = writeln!(s);
    let hook_sets = if args.hooks.is_empty() {
        &Hooks::ALL[..]
    } else {
        &args.hooks
    };
    let mut summary = Vec::new();
    for &workload in only {
        let _ = writeln!(s, "#### {}\n", workload.label());
        let _ = writeln!(
            s,
            "| hooks | attached stretches | attached / detached (median) | quartiles | lowest, highest | pooled |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        let mut row = Vec::new();
        // Each set alone in its own run, or all of them together in one.
        let runs: Vec<&[Hooks]> = if args.interleave {
            vec![hook_sets]
        } else {
            hook_sets.chunks(1).collect()
        };
        let mut results = Vec::new();
        for sets in runs {
            let names: Vec<_> = sets.iter().map(|h| h.label()).collect();
            collector::progress(&format!(
                "toggle: {}: warming up, then {}",
                workload.label(),
                names.join(", ")
            ));
            workloads::run_load(&bench, workload, 1.0, &Default::default(), &mut |_| Ok(()))?;
            let stretches = run_one(&bench, workload, sets, args.secs, window)?;
            for (i, &hooks) in sets.iter().enumerate() {
                results.push((hooks, outcome(&stretches, i)));
            }
        }
        for (hooks, o) in results {
            let med = median(o.ratios.clone());
            let _ = writeln!(
                s,
                "| {} | {} | **{}** | {} – {} | {} – {} | {} |",
                hooks.label(),
                o.ratios.len(),
                pct(med),
                pct(quantile(o.ratios.clone(), 0.25)),
                pct(quantile(o.ratios.clone(), 0.75)),
                pct(quantile(o.ratios.clone(), 0.0)),
                pct(quantile(o.ratios.clone(), 1.0)),
                pct(o.pooled),
            );
            row.push((hooks, med));
        }
        let _ = writeln!(s);
        summary.push((workload, row));
    }
    let _ = writeln!(
        s,
        "#### Summary\n\nMedian of attached over detached, per workload; the target is the \
         issue's, for the rate with kaipo against none.\n\n\
         | workload | kaipo | kaipo --no-flows | least per-socket counter | floor: empty programs on kaipo's hooks | floor: on --no-flows's hooks | target |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    );
    for (w, row) in summary {
        let cell = |hooks: Hooks| {
            row.iter()
                .find(|(h, _)| *h == hooks)
                .map_or("–".to_owned(), |(_, med)| pct(*med))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            w.label(),
            cell(Hooks::Kaipo),
            cell(Hooks::KaipoNoFlows),
            cell(Hooks::LeastCounter),
            cell(Hooks::Empty),
            cell(Hooks::EmptyNoFlows),
            w.target()
                .map_or("–".into(), |t| format!(">= {:.0} %", 100.0 * t)),
        );
    }
    let _ = writeln!(s);
    collector::emit(&s);
    drop(bench);
    collector::emit(&report::footer(started.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stretch(on: bool, count: u64) -> Stretch {
        attached(on.then_some(0), count)
    }

    fn attached(set: Option<usize>, count: u64) -> Stretch {
        Stretch {
            set,
            count,
            took: Duration::from_millis(500),
        }
    }

    #[test]
    fn each_attached_stretch_is_set_against_its_two_neighbours() {
        // Off 100, on 90, off 80, on 72, off 60: the machine slows down by a fifth per
        // stretch, and the programs cost 10 % against the mean of the neighbours.
        let s = [
            stretch(false, 1000),
            stretch(true, 810),
            stretch(false, 800),
            stretch(true, 630),
            stretch(false, 600),
        ];
        let o = outcome(&s, 0);
        assert_eq!(o.ratios.len(), 2);
        assert!((o.ratios[0] - 0.9).abs() < 1e-9, "{:?}", o.ratios);
        assert!((o.ratios[1] - 0.9).abs() < 1e-9, "{:?}", o.ratios);
        // Pooled: (810 + 630) / 2 stretches against (1000 + 800 + 600) / 3.
        assert!((o.pooled - 720.0 / 800.0).abs() < 1e-9, "{}", o.pooled);
    }

    #[test]
    fn a_trailing_attached_stretch_has_no_ratio() {
        let s = [stretch(false, 100), stretch(true, 50)];
        assert!(outcome(&s, 0).ratios.is_empty());
    }

    #[test]
    fn interleaved_sets_each_take_their_own_stretches() {
        // Detached 100, set 0 at 90, detached 100, set 1 at 50, detached 100, set 0 at 80,
        // detached 100.
        let s = [
            attached(None, 100),
            attached(Some(0), 90),
            attached(None, 100),
            attached(Some(1), 50),
            attached(None, 100),
            attached(Some(0), 80),
            attached(None, 100),
        ];
        let first = outcome(&s, 0);
        assert_eq!(first.ratios, vec![0.9, 0.8]);
        assert!((first.pooled - 0.85).abs() < 1e-9, "{}", first.pooled);
        let second = outcome(&s, 1);
        assert_eq!(second.ratios, vec![0.5]);
        assert!((second.pooled - 0.5).abs() < 1e-9, "{}", second.pooled);
        assert!(outcome(&s, 2).ratios.is_empty());
    }
}
