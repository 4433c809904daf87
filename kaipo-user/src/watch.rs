//! `kaipo watch`: each interval, who used the network, as a table or as JSON lines.

use std::{io::Write, time::Duration};

use anyhow::Context as _;

use crate::{
    collect::backend::{BackendChoice, Collector, IngressHook, StartOptions},
    engine::{ClosedInterval, Engine, EngineOptions, Schedule, Sink},
    format,
    model::IntervalRecord,
    platform::StopSignals,
};

#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub ifaces: Vec<String>,
    pub json: bool,
    pub include_loopback: bool,
    /// Rows per table section; JSON always carries every row.
    pub top: usize,
    pub backend: BackendChoice,
    /// Capture filter for the pcap backend.
    pub pcap_filter: Option<String>,
    /// Capture in libpcap's immediate mode.
    pub pcap_immediate: bool,
    /// eBPF backend: the hook for incoming frames.
    pub ingress_hook: IngressHook,
}

/// Runs until `duration` has passed or SIGINT/SIGTERM (Ctrl-C on Windows) arrives. Output goes to `out`; notes
/// about degraded pieces go to stderr.
pub async fn run(opts: &WatchOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let engine = Engine::start(&EngineOptions {
        collect: StartOptions {
            ifaces: opts.ifaces.clone(),
            backend: opts.backend,
            pcap_filter: opts.pcap_filter.clone(),
            pcap_immediate: opts.pcap_immediate,
            ingress_hook: opts.ingress_hook,
        },
        include_loopback: opts.include_loopback,
    })?;
    for degradation in engine.degradations() {
        eprintln!("kaipo: degraded: {degradation}");
    }
    let mut stop_signals = StopSignals::new().context("installing the signal handlers")?;
    let mut sink = PrintSink {
        out,
        json: opts.json,
        top: opts.top,
    };
    let schedule = Schedule {
        interval: opts.interval,
        duration: opts.duration,
    };
    engine.run(schedule, &mut sink, stop_signals.recv()).await
}

struct PrintSink<'a> {
    out: &'a mut dyn Write,
    json: bool,
    top: usize,
}

impl Sink for PrintSink<'_> {
    async fn deliver(
        &mut self,
        interval: ClosedInterval,
        _collector: &Collector,
    ) -> anyhow::Result<bool> {
        let record = &interval.record;
        let written = if self.json {
            serde_json::to_writer(&mut *self.out, record)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(self.out))
        } else {
            write_table(self.out, record, self.top)
        };
        written
            .and_then(|()| self.out.flush())
            .context("writing output")?;
        Ok(true)
    }
}

fn write_table(out: &mut dyn Write, r: &IntervalRecord, top: usize) -> std::io::Result<()> {
    let over = Duration::from_millis(r.interval_ms.max(1));
    let rate = |n| format::rate(n, over);
    writeln!(
        out,
        "--- {:.2}s, backend {} ---",
        over.as_secs_f64(),
        r.backend
    )?;
    writeln!(
        out,
        "{:<16} {:>12} {:>12} {:>10} {:>10}",
        "INTERFACE", "RX", "TX", "RX PKTS", "TX PKTS"
    )?;
    for i in &r.interfaces {
        writeln!(
            out,
            "{:<16} {:>12} {:>12} {:>10} {:>10}",
            i.name,
            rate(i.rx_bytes),
            rate(i.tx_bytes),
            i.rx_packets,
            i.tx_packets
        )?;
    }
    writeln!(
        out,
        "{:>8} {:<16} {:<10} {:>12} {:>12}  COMMAND",
        "PID", "NAME", "USER", "RX", "TX"
    )?;
    for p in r.processes.iter().take(top) {
        let user = p.user.clone().unwrap_or_else(|| p.uid.to_string());
        let mut cmd: String = p.cmdline.chars().take(60).collect();
        if p.exited {
            cmd.push_str(" (exited)");
        }
        writeln!(
            out,
            "{:>8} {:<16} {:<10} {:>12} {:>12}  {cmd}",
            p.pid,
            p.name,
            user,
            rate(p.rx_bytes),
            rate(p.tx_bytes)
        )?;
    }
    writeln!(
        out,
        "{:<6} {:<46} {:<46} {:>8} {:>12} {:>12}",
        "PROTO", "LOCAL", "REMOTE", "PID", "RX", "TX"
    )?;
    for c in r.connections.iter().take(top) {
        writeln!(
            out,
            "{:<6} {:<46} {:<46} {:>8} {:>12} {:>12}",
            c.proto,
            c.local,
            c.remote,
            c.pid,
            rate(c.rx_bytes),
            rate(c.tx_bytes)
        )?;
    }
    let l = &r.lost;
    writeln!(
        out,
        "unattributed: rx {} tx {}   lost: ring buffer {} socket map {} flow evictions {}",
        format::bytes(r.unattributed.rx_bytes),
        format::bytes(r.unattributed.tx_bytes),
        l.ringbuf_full,
        l.sock_map_full,
        l.flow_evictions
    )?;
    writeln!(out)
}
