//! A `kaipo watch --json` run: started, awaited until its first record (programs attached, one
//! interval closed), then awaited until it stops by itself after `--duration`, with its records
//! summed per process and per interface.

use std::{collections::BTreeSet, fmt::Write as _, process::Command, time::Duration};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::child::Spawned;

pub const INTERVAL: Duration = Duration::from_millis(200);
/// Loading and verifying the programs of a debug build can take a few seconds on a busy machine.
const FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after `--duration` kaipo may take to print its last record and exit.
const EXIT_GRACE: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    pub ts_ms: u64,
    pub interval_ms: u64,
    pub interfaces: Vec<InterfaceRecord>,
    pub processes: Vec<ProcessRecord>,
    pub connections: Vec<ConnectionRecord>,
    pub unattributed: Bytes,
    pub attributed_ratio: Option<f64>,
    /// The lost counters by name.
    #[serde(default)]
    pub lost: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct InterfaceRecord {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    pub exited: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ConnectionRecord {
    pub pid: u32,
    pub proto: String,
    pub local: String,
    pub remote: String,
    #[serde(default)]
    pub remote_name: Option<String>,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub state: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Bytes {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Bytes and packets both ways, summed over intervals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl Totals {
    fn add(&mut self, rx_bytes: u64, tx_bytes: u64, rx_packets: u64, tx_packets: u64) {
        self.rx_bytes += rx_bytes;
        self.tx_bytes += tx_bytes;
        self.rx_packets += rx_packets;
        self.tx_packets += tx_packets;
    }
}

/// What to run kaipo with; the interval is always [`INTERVAL`].
#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub ifaces: Vec<String>,
    pub duration: Duration,
    pub include_loopback: bool,
    /// `--ingress-hook`, when not kaipo's default.
    pub ingress_hook: Option<&'static str>,
}

impl WatchConfig {
    pub fn new(iface: &str, duration: Duration) -> Self {
        Self {
            ifaces: vec![iface.to_owned()],
            duration,
            include_loopback: false,
            ingress_hook: None,
        }
    }
}

pub struct Watch {
    child: Spawned,
    records: Vec<Record>,
    duration: Duration,
}

impl Watch {
    /// Starts kaipo and returns once its first record arrived.
    pub fn start(config: &WatchConfig) -> anyhow::Result<Self> {
        crate::require_root()?;
        let mut cmd = Command::new(crate::kaipo_bin()?);
        cmd.args([
            "watch",
            "--json",
            "--interval",
            &format!("{}ms", INTERVAL.as_millis()),
        ])
        .args(["--duration", &format!("{}ms", config.duration.as_millis())]);
        for iface in &config.ifaces {
            cmd.args(["--iface", iface]);
        }
        if config.include_loopback {
            cmd.arg("--include-loopback");
        }
        if let Some(hook) = config.ingress_hook {
            cmd.args(["--ingress-hook", hook]);
        }
        let mut child = Spawned::spawn("kaipo watch", cmd)?;
        let line = child
            .next_line(FIRST_RECORD_TIMEOUT)
            .context("waiting for kaipo's first record")?;
        let first = parse(&line, 0)?;
        Ok(Self {
            child,
            records: vec![first],
            duration: config.duration,
        })
    }

    /// The `prog_type` of every BPF program kaipo holds a descriptor of, from
    /// `/proc/PID/fdinfo` (6 is XDP).
    pub fn held_program_types(&self) -> anyhow::Result<Vec<u32>> {
        let dir = format!("/proc/{}/fdinfo", self.child.pid());
        let mut types = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            // A descriptor can close while the folder is read.
            let Ok(info) = std::fs::read_to_string(entry?.path()) else {
                continue;
            };
            types.extend(
                info.lines()
                    .filter_map(|l| l.strip_prefix("prog_type:"))
                    .filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
        Ok(types)
    }

    /// Stops kaipo now with SIGINT (it closes the interval under way and exits) and returns all
    /// its records. For runs whose length should not depend on how long kaipo took to start.
    pub fn stop(self) -> anyhow::Result<Run> {
        self.child.interrupt()?;
        self.collect(EXIT_GRACE)
    }

    /// Waits for kaipo to stop after `--duration` and returns all its records.
    pub fn finish(self) -> anyhow::Result<Run> {
        let timeout = self.duration + EXIT_GRACE;
        self.collect(timeout)
    }

    fn collect(mut self, timeout: Duration) -> anyhow::Result<Run> {
        let lines = self
            .child
            .rest_of_output(timeout)
            .context("waiting for kaipo to finish")?;
        self.child.wait_success(Duration::from_secs(5))?;
        for line in lines {
            let record = parse(&line, self.records.len())?;
            self.records.push(record);
        }
        Ok(Run {
            records: self.records,
            stderr: self.child.stderr(),
        })
    }
}

fn parse(line: &str, index: usize) -> anyhow::Result<Record> {
    serde_json::from_str(line)
        .with_context(|| format!("kaipo record {index} is not the documented JSON: {line}"))
}

/// A finished kaipo run.
pub struct Run {
    pub records: Vec<Record>,
    pub stderr: String,
}

impl Run {
    /// A process's traffic over the whole run.
    pub fn process(&self, pid: u32) -> Totals {
        let mut t = Totals::default();
        for p in self
            .records
            .iter()
            .flat_map(|r| &r.processes)
            .filter(|p| p.pid == pid)
        {
            t.add(p.rx_bytes, p.tx_bytes, p.rx_packets, p.tx_packets);
        }
        t
    }

    /// Every name the run gave `pid`.
    pub fn names(&self, pid: u32) -> BTreeSet<String> {
        let rows = self.records.iter().flat_map(|r| &r.processes);
        rows.filter(|p| p.pid == pid)
            .map(|p| p.name.clone())
            .collect()
    }

    /// An interface's traffic over the records from `from` on (0: all of them).
    pub fn interface(&self, name: &str, from: usize) -> Totals {
        let mut t = Totals::default();
        for i in self
            .records
            .iter()
            .skip(from)
            .flat_map(|r| &r.interfaces)
            .filter(|i| i.name == name)
        {
            t.add(i.rx_bytes, i.tx_bytes, i.rx_packets, i.tx_packets);
        }
        t
    }

    /// Interval by interval, what the run said about `pids` and what it left unattributed: the
    /// evidence a failed assertion needs.
    pub fn timeline(&self, pids: &[u32]) -> String {
        let mut out = String::new();
        for (i, r) in self.records.iter().enumerate() {
            let _ = write!(
                out,
                "\n  #{i} ts {} {}ms: unattributed rx {} tx {}",
                r.ts_ms, r.interval_ms, r.unattributed.rx_bytes, r.unattributed.tx_bytes
            );
            for p in r.processes.iter().filter(|p| pids.contains(&p.pid)) {
                let _ = write!(
                    out,
                    "; pid {} {:?}{} rx {}/{} tx {}/{}",
                    p.pid,
                    p.name,
                    if p.exited { " (exited)" } else { "" },
                    p.rx_bytes,
                    p.rx_packets,
                    p.tx_bytes,
                    p.tx_packets
                );
            }
            for c in r.connections.iter().filter(|c| pids.contains(&c.pid)) {
                let _ = write!(
                    out,
                    "; {} {} {} -> {} rx {} tx {}",
                    c.pid, c.proto, c.local, c.remote, c.rx_bytes, c.tx_bytes
                );
            }
        }
        if !self.stderr.trim().is_empty() {
            let _ = write!(out, "\n  kaipo stderr: {}", self.stderr.trim());
        }
        out
    }

    /// Fails unless at least one record follows the first, i.e. the traffic had a window.
    pub fn ensure_intervals(&self, at_least: usize) -> anyhow::Result<()> {
        if self.records.len() < at_least {
            bail!(
                "kaipo printed {} records, expected at least {at_least}",
                self.records.len()
            );
        }
        Ok(())
    }
}
