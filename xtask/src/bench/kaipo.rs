//! The real `kaipo watch` as the benchmark runs it, and what the benchmark reads about it from
//! outside: `/proc/<pid>` (CPU time, memory, its BPF fds) and the kernel's program and map info.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use aya::maps::{Array, Map, MapData, MapInfo, PerCpuArray, PerCpuHashMap};
use kaipo_common::{counter, maps, FlowCounters, FlowKey, FlowSlot, FLOW_SLOT_EMPTY};

/// kaipo's programs, by full name; the kernel keeps only the first 15 characters.
pub const PROGRAMS: [&str; 8] = [
    "kaipo_xdp",
    "kaipo_tc_ingress",
    "kaipo_tc_egress",
    "kaipo_sock_ingress",
    "kaipo_sock_egress",
    "kaipo_sock_create",
    "kaipo_sock_release",
    "kaipo_proc_exit",
];

/// A running `kaipo watch --json`, stopped (SIGKILL) on drop if [`Kaipo::stop`] was not called.
pub struct Kaipo {
    child: Option<Child>,
    pub pid: u32,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<String>>,
}

impl Kaipo {
    /// Starts kaipo on `ifaces` and waits for its first interval, by which time every program
    /// is attached. `backend` is passed as `--backend` (`ebpf`, `pcap`); `None` leaves kaipo's
    /// default.
    pub fn start(
        bin: &Path,
        ifaces: &[&str],
        interval: &str,
        backend: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut args = vec!["--interval", interval];
        if let Some(backend) = backend {
            args.extend(["--backend", backend]);
        }
        for iface in ifaces {
            args.extend(["--iface", iface]);
        }
        Self::start_with(bin, &args)
    }

    /// Starts `kaipo watch --json` with `args` and waits for its first interval.
    pub fn start_with(bin: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["watch", "--json"]).args(args);
        // SIGTERM: kaipo detaches and exits cleanly on it.
        super::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        let (first_tx, first_rx) = mpsc::channel();
        let out = child.stdout.take().context("kaipo's stdout")?;
        let stdout = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if lines.is_empty() {
                    let _ = first_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        let mut err = child.stderr.take().context("kaipo's stderr")?;
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let mut kaipo = Self {
            child: Some(child),
            pid,
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            super::check_interrupted()?;
            if first_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Ok(kaipo);
            }
            let exited = kaipo
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let status = kaipo.child.take().map(|mut c| {
                    let _ = c.kill();
                    c.wait()
                });
                let stderr = kaipo
                    .stderr
                    .take()
                    .and_then(|h| h.join().ok())
                    .unwrap_or_default();
                bail!("kaipo watch did not start ({status:?}): {}", stderr.trim());
            }
        }
    }

    /// SIGINT, which makes kaipo print the last (partial) interval and detach; returns every
    /// JSON record it printed and its stderr.
    pub fn stop(mut self) -> anyhow::Result<(Vec<serde_json::Value>, String)> {
        let mut child = self.child.take().context("kaipo already stopped")?;
        // SAFETY: kill(2) on our own child's pid, which stays ours until we wait on it.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            bail!("kaipo watch exited with {status}: {}", stderr.trim());
        }
        let records = lines
            .iter()
            .map(|l| serde_json::from_str(l).with_context(|| format!("kaipo printed {l:?}")))
            .collect::<anyhow::Result<_>>()?;
        Ok((records, stderr))
    }
}

impl Drop for Kaipo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sums of what kaipo reported over all its records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reported {
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
}

fn field(v: &serde_json::Value, name: &str) -> u64 {
    v.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// A process's traffic summed over `records`.
pub fn process_totals(records: &[serde_json::Value], pid: u32) -> Reported {
    let mut sum = Reported::default();
    for p in records
        .iter()
        .filter_map(|r| r.get("processes")?.as_array())
        .flatten()
        .filter(|p| field(p, "pid") == u64::from(pid))
    {
        sum.tx_bytes += field(p, "tx_bytes");
        sum.tx_packets += field(p, "tx_packets");
        sum.rx_bytes += field(p, "rx_bytes");
        sum.rx_packets += field(p, "rx_packets");
    }
    sum
}

/// An interface's link-layer counters summed over `records`.
pub fn interface_totals(records: &[serde_json::Value], name: &str) -> Reported {
    let mut sum = Reported::default();
    for i in records
        .iter()
        .filter_map(|r| r.get("interfaces")?.as_array())
        .flatten()
        .filter(|i| i.get("name").and_then(serde_json::Value::as_str) == Some(name))
    {
        sum.tx_bytes += field(i, "tx_bytes");
        sum.tx_packets += field(i, "tx_packets");
        sum.rx_bytes += field(i, "rx_bytes");
        sum.rx_packets += field(i, "rx_packets");
    }
    sum
}

/// `lost.<name>` summed over `records`.
pub fn lost_total(records: &[serde_json::Value], name: &str) -> u64 {
    records
        .iter()
        .filter_map(|r| r.get("lost"))
        .map(|l| field(l, name))
        .sum()
}

/// Every `lost.*` counter summed over `records`, by name.
pub fn lost_totals(records: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for lost in records.iter().filter_map(|r| r.get("lost")?.as_object()) {
        for (name, v) in lost {
            *out.entry(name.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
        }
    }
    out
}

/// utime + stime of a whole process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may itself hold spaces and parentheses; the third
    // field overall (state) comes first, so utime (14th) and stime (15th) are at 11 and 12.
    let rest = stat.rsplit_once(')').context("odd /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?)
    };
    Ok(num(11)? + num(12)?)
}

/// Time on CPU of every thread of a process, in ns, from `/proc/<pid>/task/*/schedstat`: the
/// scheduler's own accounting, finer than the clock ticks of `stat`.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(text) = fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Time on CPU of one task, in ns (`/proc/<pid>/schedstat`), 0 if it cannot be read.
pub fn cpu_ns_of_task(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// A `Vm*` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// One BPF map a process holds, as `/proc/<pid>/fdinfo` and the kernel's map info describe it.
#[derive(Clone, Debug)]
pub struct HeldMap {
    pub id: u32,
    pub name: String,
    pub map_type: u32,
    pub max_entries: u64,
    pub memlock: u64,
}

/// The BPF maps and programs a process holds open (directly, or through links).
pub struct HeldObjects {
    pub maps: Vec<HeldMap>,
    pub programs: BTreeSet<u32>,
}

pub fn held_objects(pid: u32) -> anyhow::Result<HeldObjects> {
    let mut maps = BTreeMap::new();
    let mut programs = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let is_map = target == "anon_inode:bpf-map";
        if !is_map && target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link" {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let get = |key: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        if is_map {
            let Some(id) = get("map_id") else { continue };
            let id = id as u32;
            let name = MapInfo::from_id(id)
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                .unwrap_or_default();
            maps.insert(
                id,
                HeldMap {
                    id,
                    name,
                    map_type: get("map_type").unwrap_or(0) as u32,
                    max_entries: get("max_entries").unwrap_or(0),
                    memlock: get("memlock").unwrap_or(0),
                },
            );
        } else if let Some(id) = get("prog_id") {
            programs.insert(id as u32);
        }
    }
    Ok(HeldObjects {
        maps: maps.into_values().collect(),
        programs,
    })
}

/// The kernel's name of a map type number (`enum bpf_map_type`), for the common ones.
pub fn map_type_name(t: u32) -> String {
    match t {
        1 => "hash".into(),
        2 => "array".into(),
        5 => "percpu_hash".into(),
        6 => "percpu_array".into(),
        9 => "lru_hash".into(),
        10 => "lru_percpu_hash".into(),
        27 => "ringbuf".into(),
        other => format!("type {other}"),
    }
}

/// Run time and run count of programs, by full name.
#[derive(Clone, Debug, Default)]
pub struct ProgramStats(pub BTreeMap<String, (u64, u64)>);

impl ProgramStats {
    /// The programs with these ids whose names start with `kaipo_`.
    pub fn read(ids: &BTreeSet<u32>) -> anyhow::Result<Self> {
        let mut out = BTreeMap::new();
        for info in aya::programs::loaded_programs() {
            let info = info.context("listing loaded BPF programs")?;
            if !ids.contains(&info.id()) {
                continue;
            }
            let Some(name) = info.name_as_str().filter(|n| n.starts_with("kaipo_")) else {
                continue;
            };
            let full = PROGRAMS
                .iter()
                .find(|p| p.starts_with(name))
                .map_or_else(|| name.to_owned(), |p| (*p).to_owned());
            let entry = out.entry(full).or_insert((0, 0));
            entry.0 += info.run_time().as_nanos() as u64;
            entry.1 += info.run_count();
        }
        Ok(Self(out))
    }

    /// Per program: (run time in ns, runs) between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Vec<(String, u64, u64)> {
        self.0
            .iter()
            .map(|(name, (ns, runs))| {
                let (ns0, runs0) = earlier.0.get(name).copied().unwrap_or_default();
                (name.clone(), ns - ns0, runs - runs0)
            })
            .collect()
    }
}

/// Programs named `kaipo_*` that are loaded but not held by any process in `ours`: another
/// kaipo (a test, another engineer's run) whose cgroup programs also see our traffic.
pub fn foreign_kaipo_programs(ours: &BTreeSet<u32>) -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|i| !ours.contains(&i.id()))
        .filter(|i| i.name_as_str().is_some_and(|n| n.starts_with("kaipo_")))
        .count()
}

/// What kaipo's flow map and counters hold, read from the kernel.
#[derive(Clone, Debug, Default)]
pub struct FlowState {
    /// Live entries per ifindex.
    pub live: BTreeMap<u32, u64>,
    pub created: u64,
    pub map_full: u64,
    /// Taken flow-cache slots (over all CPUs) per ifindex.
    pub cached: BTreeMap<u32, u64>,
    /// Flows that took a free cache slot, and flows that took one over from a quiet flow.
    pub slot_taken: u64,
    pub slot_handovers: u64,
}

pub fn flow_state(maps: &[HeldMap]) -> anyhow::Result<FlowState> {
    let find = |name: &str| {
        maps.iter()
            .find(|m| m.name == name)
            .with_context(|| format!("kaipo holds no {name} map"))
    };
    let flows = MapData::from_id(find(maps::FLOWS)?.id)?;
    let flows: PerCpuHashMap<_, FlowKey, FlowCounters> =
        PerCpuHashMap::try_from(Map::PerCpuLruHashMap(flows))?;
    let mut live = BTreeMap::new();
    for key in flows.keys().filter_map(Result::ok) {
        *live.entry(key.ifindex).or_insert(0) += 1;
    }
    let cache_map = find(maps::FLOW_CACHE)?;
    let cache = MapData::from_id(cache_map.id)?;
    // One run of slots per CPU in a plain array.
    let cache: Array<_, FlowSlot> = Array::try_from(Map::Array(cache))?;
    let mut cached = BTreeMap::new();
    for index in 0..u32::try_from(cache_map.max_entries)? {
        let slot = cache.get(&index, 0)?;
        if slot.direction() != FLOW_SLOT_EMPTY {
            *cached.entry(slot.key.ifindex).or_insert(0) += 1;
        }
    }
    let counters = MapData::from_id(find(maps::COUNTERS)?.id)?;
    let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(Map::PerCpuArray(counters))?;
    let slot = |s: u32| -> anyhow::Result<u64> { Ok(counters.get(&s, 0)?.iter().sum()) };
    Ok(FlowState {
        live,
        created: slot(counter::FLOW_CREATED)?,
        map_full: slot(counter::FLOW_MAP_FULL)?,
        cached,
        slot_taken: slot(counter::FLOW_SLOT_TAKEN)?,
        slot_handovers: slot(counter::FLOW_SLOT_HANDOVER)?,
    })
}
