//! Other per-process bandwidth monitors (nethogs, bandwhich, iftop) under the pcap benchmark's
//! flood, measured from outside exactly as kaipo is: CPU time and peak memory from
//! `/proc/<pid>`, and what the tool itself printed about the traffic.
//!
//! The benchmark installs nothing: a tool that is not on the machine is skipped, and the report
//! says how to install it ([`Rival::install`]).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::{
    collector::{Bench, Flood, Moment},
    kaipo, pause,
    topology::Topology,
    traffic::{ETH_HEADER, IP_UDP_HEADERS, PAYLOAD_64B_FRAME},
};

/// IP-layer and link-layer bytes of one flood datagram.
pub const IP_BYTES: u64 = PAYLOAD_64B_FRAME as u64 + IP_UDP_HEADERS;
pub const FRAME_BYTES: u64 = IP_BYTES + ETH_HEADER;

/// Time a tool gets to open its captures and read the socket tables before the flood.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rival {
    Nethogs,
    Bandwhich,
    Iftop,
}

impl Rival {
    pub const ALL: [Rival; 3] = [Rival::Nethogs, Rival::Bandwhich, Rival::Iftop];

    pub fn name(self) -> &'static str {
        match self {
            Rival::Nethogs => "nethogs",
            Rival::Bandwhich => "bandwhich",
            Rival::Iftop => "iftop",
        }
    }

    /// How to put the tool on a Debian machine.
    pub fn install(self) -> &'static str {
        match self {
            Rival::Nethogs => "apt-get install -y nethogs",
            Rival::Bandwhich => "cargo install --locked bandwhich",
            Rival::Iftop => "apt-get install -y iftop",
        }
    }

    /// Whether the bytes the tool prints are link-layer (Ethernet header included) rather than
    /// IP-layer ones.
    pub fn counts_link_layer(self) -> bool {
        self == Rival::Nethogs
    }

    /// Whether the tool names processes at all (iftop shows hosts and ports only).
    pub fn attributes(self) -> bool {
        self != Rival::Iftop
    }

    /// The tool's binary: on `PATH`, in the sbin directories (root's tools live there), or
    /// where `cargo install` puts binaries.
    pub fn find(self) -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
        if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
            dirs.push(PathBuf::from(cargo_home).join("bin"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(home).join(".cargo/bin"));
        }
        dirs.push(PathBuf::from("/root/.cargo/bin"));
        dirs.into_iter()
            .map(|d| d.join(self.name()))
            .find(|p| p.is_file())
    }

    /// The argument lists, one per process the tool needs to watch `ifaces`.
    fn arg_lists(self, ifaces: &[&str]) -> Vec<Vec<String>> {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            // Trace mode (no terminal), TCP and UDP, totals in bytes, a report every second.
            Rival::Nethogs => {
                let mut args = own(&["-t", "-C", "-v", "2", "-d", "1"]);
                args.extend(ifaces.iter().map(|i| (*i).to_owned()));
                vec![args]
            }
            // Raw mode needs no terminal; one interface per process.
            Rival::Bandwhich => ifaces
                .iter()
                .map(|i| {
                    own(&[
                        "--raw",
                        "--no-resolve",
                        "--total-utilization",
                        "--interface",
                        i,
                    ])
                })
                .collect(),
            // Text mode, numeric, bytes; one interface per process.
            Rival::Iftop => ifaces
                .iter()
                .map(|i| own(&["-t", "-n", "-N", "-P", "-B", "-i", i]))
                .collect(),
        }
    }

    /// The command lines as the report shows them.
    pub fn describe(self, ifaces: &[&str]) -> String {
        self.arg_lists(ifaces)
            .iter()
            .map(|args| format!("`{} {}`", self.name(), args.join(" ")))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Seconds between the tool's reports.
    pub fn every(self) -> Duration {
        match self {
            Rival::Iftop => Duration::from_secs(2),
            _ => Duration::from_secs(1),
        }
    }

    /// The signal that makes the tool exit (bandwhich's raw mode ignores SIGINT).
    fn stop_signal(self) -> libc::c_int {
        match self {
            Rival::Bandwhich => libc::SIGTERM,
            _ => libc::SIGINT,
        }
    }

    pub fn commands(self, bin: &Path, ifaces: &[&str], ns: Option<&str>) -> Vec<Command> {
        self.arg_lists(ifaces)
            .into_iter()
            .map(|args| {
                // iftop writes its text reports through stdio: line buffering lets them be
                // read as they come (stdbuf execs in place, so the pid stays iftop's).
                let (program, mut args) = if self == Rival::Iftop {
                    let mut a = vec!["-oL".to_owned(), bin.display().to_string()];
                    a.extend(args);
                    (PathBuf::from("stdbuf"), a)
                } else {
                    (bin.to_owned(), args)
                };
                let mut cmd = match ns {
                    Some(ns) => Topology::command_in(ns, &program),
                    None => Command::new(&program),
                };
                cmd.args(args.drain(..));
                cmd
            })
            .collect()
    }
}

/// One process of a watching tool, with its output collected by threads as it comes.
struct Proc {
    child: Option<Child>,
    pid: u32,
    stdout: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(
    mut from: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            lock(&into).push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

fn lock(s: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proc {
    fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        super::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let threads = vec![
            collect(child.stdout.take().context("stdout")?, Arc::clone(&stdout)),
            collect(child.stderr.take().context("stderr")?, Arc::clone(&stderr)),
        ];
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            stdout,
            threads,
            stderr,
        })
    }

    fn output(&self) -> String {
        lock(&self.stdout).clone()
    }

    /// `signal`, then SIGKILL if it lingers; returns (stdout, stderr).
    fn stop(&mut self, signal: libc::c_int) -> (String, String) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, which stays ours until we wait on it.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.output(), lock(&self.stderr).clone())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the total a tool has reported so far from its outputs.
pub type TotalOf = Box<dyn Fn(&[String]) -> Option<u64>>;

/// How long to keep a tool running after the flood.
pub enum Linger {
    /// A fixed time, then the signal.
    Fixed(Duration, libc::c_int),
    /// Until the total the tool reports (read from its outputs so far) has not grown for one
    /// report interval, or `max`; then the signal.
    UntilSteady {
        every: Duration,
        total: TotalOf,
        max: Duration,
        signal: libc::c_int,
    },
}

/// A load (the pcap benchmark's flood, or one of the collector's workloads) with some tool
/// watching, and what was read about the tool around it.
pub struct Watched<L = Flood> {
    pub flood: L,
    /// utime + stime of all the tool's processes over the sender's window, in seconds.
    pub cpu_secs: f64,
    /// The same by the scheduler's count (`/proc/<pid>/task/*/schedstat`), finer than ticks.
    pub sched_cpu_secs: f64,
    pub window: Duration,
    /// utime + stime from the sender's end until the tool stopped, in seconds, and how long
    /// that was: work the tool still had queued when the traffic stopped.
    pub cpu_after_secs: f64,
    pub after: Duration,
    /// `VmHWM` summed over the tool's processes.
    pub vm_hwm_kib: u64,
    /// Each process's stdout.
    pub outputs: Vec<String>,
}

impl<L> Watched<L> {
    pub fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu_secs / self.window.as_secs_f64().max(1e-9)
    }
}

/// Starts `cmds`, gives them [`SETTLE`] to get going, floods for `secs`, lets them go on as
/// `linger` says, and stops them.
pub fn watched_flood(
    bench: &Bench,
    secs: f64,
    cmds: Vec<Command>,
    linger: &Linger,
) -> anyhow::Result<Watched> {
    watched(cmds, linger, |at| {
        bench.flood(secs, None, &Default::default(), at)
    })
}

/// Starts `cmds`, gives them [`SETTLE`] to get going, runs `load` (which calls back at each
/// [`Moment`]; the tool's CPU is read at `Start` and `SenderDone`), lets them go on as `linger`
/// says, and stops them.
pub fn watched<L>(
    cmds: Vec<Command>,
    linger: &Linger,
    load: impl FnOnce(&mut dyn FnMut(Moment) -> anyhow::Result<()>) -> anyhow::Result<L>,
) -> anyhow::Result<Watched<L>> {
    let mut procs = cmds
        .into_iter()
        .map(Proc::spawn)
        .collect::<anyhow::Result<Vec<_>>>()?;
    pause(SETTLE)?;
    for p in &mut procs {
        if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            let (_, err) = p.stop(libc::SIGKILL);
            bail!(
                "the watching tool exited before the flood ({status}): {}",
                err.trim()
            );
        }
    }
    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    let ticks = || -> anyhow::Result<u64> { pids.iter().map(|&pid| kaipo::cpu_ticks(pid)).sum() };
    let sched = || -> anyhow::Result<u64> { pids.iter().map(|&pid| kaipo::cpu_ns(pid)).sum() };
    let mut cpu = (0u64, 0u64);
    let mut sched_ns = (0u64, 0u64);
    let mut window = (Instant::now(), Instant::now());
    let flood = load(&mut |moment| {
        match moment {
            Moment::Start => {
                window.0 = Instant::now();
                cpu.0 = ticks()?;
                sched_ns.0 = sched()?;
            }
            Moment::SenderDone => {
                cpu.1 = ticks()?;
                sched_ns.1 = sched()?;
                window.1 = Instant::now();
            }
            Moment::ReceiverDone => {}
        }
        Ok(())
    })?;
    let signal = match linger {
        Linger::Fixed(d, signal) => {
            pause(*d)?;
            *signal
        }
        Linger::UntilSteady {
            every,
            total,
            max,
            signal,
        } => {
            let outputs = || procs.iter().map(Proc::output).collect::<Vec<_>>();
            let mut last = total(&outputs());
            let until = Instant::now() + *max;
            loop {
                pause(*every + Duration::from_millis(100))?;
                let now = total(&outputs());
                if now == last || Instant::now() > until {
                    break;
                }
                last = now;
            }
            *signal
        }
    };
    let (after, cpu_after) = (window.1.elapsed(), ticks()?.saturating_sub(cpu.1));
    let vm_hwm_kib = pids
        .iter()
        .map(|&pid| kaipo::status_kib(pid, "VmHWM"))
        .sum::<anyhow::Result<u64>>()?;
    let mut outputs = Vec::new();
    for p in &mut procs {
        let (out, err) = p.stop(signal);
        if out.trim().is_empty() {
            bail!("the watching tool printed nothing: {}", err.trim());
        }
        outputs.push(out);
    }
    let tick = kaipo::clock_ticks_per_sec() as f64;
    Ok(Watched {
        flood,
        cpu_secs: (cpu.1 - cpu.0) as f64 / tick,
        sched_cpu_secs: sched_ns.1.saturating_sub(sched_ns.0) as f64 / 1e9,
        window: window.1 - window.0,
        cpu_after_secs: cpu_after as f64 / tick,
        after,
        vm_hwm_kib,
        outputs,
    })
}

/// A rival watching `ifaces` (in namespace `ns`, if given) through one flood, kept running
/// until its reported total stops growing (at most 20 s after the flood).
pub fn rival_flood(
    bench: &Bench,
    rival: Rival,
    bin: &Path,
    ifaces: &[&str],
    ns: Option<&str>,
    secs: f64,
) -> anyhow::Result<Watched> {
    rival_load(rival, bin, ifaces, ns, |at| {
        bench.flood(secs, None, &Default::default(), at)
    })
}

/// A rival watching `ifaces` (in namespace `ns`, if given) through `load` (as in [`watched`]),
/// kept running until its reported total stops growing (at most 20 s after the load).
pub fn rival_load<L>(
    rival: Rival,
    bin: &Path,
    ifaces: &[&str],
    ns: Option<&str>,
    load: impl FnOnce(&mut dyn FnMut(Moment) -> anyhow::Result<()>) -> anyhow::Result<L>,
) -> anyhow::Result<Watched<L>> {
    let linger = Linger::UntilSteady {
        every: rival.every(),
        total: Box::new(move |outs| told(rival, outs, 0, "").bytes),
        max: Duration::from_secs(20),
        signal: rival.stop_signal(),
    };
    watched(rival.commands(bin, ifaces, ns), &linger, load)
}

/// What a tool's own output says about a flood.
#[derive(Clone, Copy, Debug, Default)]
pub struct Told {
    /// Bytes it counted on the watched interfaces over its whole run.
    pub bytes: Option<u64>,
    /// Bytes one datagram is worth in its count, on one interface.
    pub bytes_per_datagram: u64,
    /// Bytes it gave the sender's process.
    pub sender_bytes: Option<u64>,
}

/// Reads `outputs` of `rival` for the totals and the bytes of process `sender_pid`, whose
/// command name is `sender_comm`.
pub fn told(rival: Rival, outputs: &[String], sender_pid: u32, sender_comm: &str) -> Told {
    match rival {
        Rival::Nethogs => nethogs(outputs, sender_pid),
        Rival::Bandwhich => bandwhich(outputs, sender_comm),
        Rival::Iftop => Told {
            bytes: outputs.iter().map(|o| iftop_total(o)).sum::<Option<u64>>(),
            bytes_per_datagram: IP_BYTES,
            sender_bytes: None,
        },
    }
}

/// nethogs `-t -v 2`: after each `Refreshing:` line, one `program/pid/uid<TAB>sent<TAB>received`
/// line per process, in total bytes since it started (link layer: the capture length). The last
/// block holds the totals.
fn nethogs(outputs: &[String], sender_pid: u32) -> Told {
    let mut told = Told {
        bytes_per_datagram: FRAME_BYTES,
        ..Told::default()
    };
    for out in outputs {
        let Some((_, last)) = out.rsplit_once("Refreshing:") else {
            continue;
        };
        let (mut all, mut sender) = (0.0, 0.0);
        for line in last.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [who, sent, received] = fields[..] else {
                continue;
            };
            let (Ok(sent), Ok(received)) =
                (sent.trim().parse::<f64>(), received.trim().parse::<f64>())
            else {
                continue;
            };
            all += sent + received;
            // `program/pid/uid`, where the program may itself hold slashes.
            let pid = who.rsplit('/').nth(1).and_then(|p| p.parse::<u32>().ok());
            if pid == Some(sender_pid) {
                sender += sent;
            }
        }
        *told.bytes.get_or_insert(0) += all.round() as u64;
        *told.sender_bytes.get_or_insert(0) += sender.round() as u64;
    }
    told
}

/// bandwhich `--raw --total-utilization`: after each `Refreshing:` line, one `process: <time>
/// "<name>" up/down Bps: <up>/<down> connections: <n>` line per process, with its bytes since
/// bandwhich started (IP layer). The last block holds the totals. Its raw lines carry the
/// name, not the pid.
fn bandwhich(outputs: &[String], sender_comm: &str) -> Told {
    let mut told = Told {
        bytes_per_datagram: IP_BYTES,
        ..Told::default()
    };
    for out in outputs {
        let Some((_, last)) = out.rsplit_once("Refreshing:") else {
            continue;
        };
        let (mut all, mut sender) = (0u64, 0u64);
        for line in last.lines().filter(|l| l.starts_with("process:")) {
            let Some((up, down)) = line
                .split_once("up/down Bps: ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|v| v.split_once('/'))
            else {
                continue;
            };
            let (Ok(up), Ok(down)) = (up.parse::<u64>(), down.parse::<u64>()) else {
                continue;
            };
            all += up + down;
            if line.contains(&format!("\"{sender_comm}\"")) {
                sender += up;
            }
        }
        *told.bytes.get_or_insert(0) += all;
        *told.sender_bytes.get_or_insert(0) += sender;
    }
    told
}

/// The last `Cumulative (sent/received/total):` total of iftop's text output, in bytes (iftop
/// prints three significant digits, with 1024-byte units).
fn iftop_total(out: &str) -> Option<u64> {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("Cumulative (sent/received/total):"))?;
    let total = line.split_whitespace().last()?;
    let split = total.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = total.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number.parse::<f64>().ok()? * scale).round() as u64)
}

/// Which of `wanted` are installed (with their paths) and which are not; a missing one is
/// said on stderr with how to install it.
pub fn find_all(wanted: &[Rival]) -> (Vec<(Rival, PathBuf)>, Vec<Rival>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for &rival in wanted {
        match rival.find() {
            Some(path) => found.push((rival, path)),
            None => {
                super::collector::progress(&format!(
                    "{} is not installed; skipping it (install: `{}`)",
                    rival.name(),
                    rival.install()
                ));
                missing.push(rival);
            }
        }
    }
    (found, missing)
}

/// One Markdown list item per rival: how each found was run (`how` follows its command), and
/// how to install each missing one.
pub fn write_list(
    s: &mut String,
    rivals: &[(Rival, PathBuf)],
    missing: &[Rival],
    ifaces: &[&str],
    how: &str,
) {
    use std::fmt::Write as _;
    for (rival, path) in rivals {
        let _ = writeln!(
            s,
            "- {}: {} (`{}`){how}",
            rival.name(),
            rival.describe(ifaces),
            path.display()
        );
    }
    for rival in missing {
        let _ = writeln!(
            s,
            "- {}: **not installed, not measured** (install: `{}`)",
            rival.name(),
            rival.install()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nethogs_last_block_and_the_senders_line() {
        let out = "Refreshing:\nunknown UDP/0/0\t0\t6.24602e+06\n\nRefreshing:\n\
                   /usr/bin/xtask/4242/0\t1.5e+06\t0\nunknown UDP/0/0\t0\t1.04832e+07\n\
                   unknown TCP/0/0\t0\t0\n\n";
        let t = nethogs(&[out.to_owned()], 4242);
        assert_eq!(t.bytes, Some(11_983_200));
        assert_eq!(t.sender_bytes, Some(1_500_000));
    }

    #[test]
    fn bandwhich_last_block() {
        let out = "Refreshing:\n<NO TRAFFIC>\n\nRefreshing:\n\
                   process: <1795694425> \"<UNKNOWN>\" up/down Bps: 0/748400 connections: 1\n\n\
                   Refreshing:\n\
                   process: <1795694426> \"<UNKNOWN>\" up/down Bps: 0/1906497 connections: 1\n\
                   process: <1795694426> \"xtask\" up/down Bps: 5000/0 connections: 1\n\
                   connection: <1795694426> <kcs>:9000 => 10.214.0.2:38108 (udp) up/down Bps: 0/1906497 process: \"<UNKNOWN>\"\n";
        let t = bandwhich(&[out.to_owned()], "xtask");
        assert_eq!(t.bytes, Some(1_911_497));
        assert_eq!(t.sender_bytes, Some(5000));
    }

    #[test]
    fn iftop_cumulative_total() {
        let out = "Cumulative (sent/received/total):   0B     1.06MB     1.06MB\n\
                   Cumulative (sent/received/total):   0B     3.20MB     3.20MB\n";
        assert_eq!(iftop_total(out), Some(3_355_443));
        assert_eq!(iftop_total("nothing"), None);
    }
}
