//! `kaipo watch`: each interval, who used the network, as a table or as JSON lines.

use std::{
    io::Write,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

use crate::{
    accounting::{Accountant, IntervalDelta},
    collect::{
        backend::{self, BackendChoice, Collector, Events, IngressHook, StartOptions},
        BackendKind, Event,
    },
    format,
    model::{Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord},
    platform::{Host, Platform as _, StopSignals},
    procinfo::ProcessResolver,
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

/// Where each closed interval goes.
pub trait RecordSink {
    /// Takes one interval; `Ok(false)` asks the loop to stop after it.
    fn deliver(&mut self, record: IntervalRecord) -> anyhow::Result<bool>;
}

/// Runs until `duration` has passed or SIGINT/SIGTERM (Ctrl-C on Windows) arrives. Output goes to `out`; notes
/// about degraded pieces go to stderr.
pub async fn run(opts: &WatchOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut sink = PrintSink {
        out,
        json: opts.json,
        top: opts.top,
    };
    drive(opts, &mut sink, |degradations| {
        for degradation in degradations {
            eprintln!("kaipo: degraded: {degradation}");
        }
    })
    .await
}

struct PrintSink<'a> {
    out: &'a mut dyn Write,
    json: bool,
    top: usize,
}

impl RecordSink for PrintSink<'_> {
    fn deliver(&mut self, record: IntervalRecord) -> anyhow::Result<bool> {
        let written = if self.json {
            serde_json::to_writer(&mut *self.out, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(self.out))
        } else {
            write_table(self.out, &record, self.top)
        };
        written
            .and_then(|()| self.out.flush())
            .context("writing output")?;
        Ok(true)
    }
}

/// The collector's interval loop: starts the eBPF collector, hands its degradations to
/// `started`, then closes an interval every `opts.interval` into `sink` until the duration
/// ends, a signal arrives or the sink asks to stop. The programs are detached on return.
pub async fn drive(
    opts: &WatchOptions,
    sink: &mut dyn RecordSink,
    started: impl FnOnce(&[crate::collect::Degradation]),
) -> anyhow::Result<()> {
    let (mut collector, mut events) = backend::start(&StartOptions {
        ifaces: opts.ifaces.clone(),
        backend: opts.backend,
        pcap_filter: opts.pcap_filter.clone(),
        pcap_immediate: opts.pcap_immediate,
        ingress_hook: opts.ingress_hook,
    })?;
    started(collector.degradations());
    let mut stop_signals = StopSignals::new().context("installing the signal handlers")?;

    let mut state = WatchState {
        accountant: Accountant::new(opts.include_loopback),
        resolver: ProcessResolver::new("/proc", "/etc"),
        events: Vec::with_capacity(1024),
        malformed_reported: 0,
        backend: collector.kind(),
    };
    let started = Instant::now();
    let mut last_tick = started;
    let mut ticker = tokio::time::interval_at((started + opts.interval).into(), opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let stop = tokio::select! {
            ready = events.readable() => {
                ready.context("waiting on the event ring buffer")?;
                state.drain(&mut events);
                continue;
            }
            _ = ticker.tick() => {
                opts.duration.is_some_and(|d| started.elapsed() + opts.interval / 2 >= d)
            }
            () = stop_signals.recv() => true,
        };
        let now = Instant::now();
        let delta = state.close_interval(&mut collector, &mut events, stop)?;
        let record = state.record(delta, now.duration_since(last_tick), now);
        last_tick = now;
        if !sink.deliver(record)? || stop {
            break;
        }
    }
    // Dropping the collector detaches every program.
    drop(collector);
    Ok(())
}

/// The interval loop's state, shared with the daemon's collector (`pipeline::collector`).
pub struct WatchState {
    pub accountant: Accountant,
    pub resolver: ProcessResolver,
    pub events: Vec<Event>,
    pub malformed_reported: u64,
    pub backend: BackendKind,
}

impl WatchState {
    /// Reads the counters and closes an interval. Events first, then counters, then events
    /// again: an owner or close that raced with the read is applied before the interval is
    /// closed. `final_interval` flushes bytes still waiting for an owner.
    pub fn close_interval(
        &mut self,
        collector: &mut Collector,
        events: &mut Events,
        final_interval: bool,
    ) -> anyhow::Result<IntervalDelta> {
        self.drain(events);
        let sample = collector.sample()?;
        self.drain(events);
        let malformed = events.malformed() - self.malformed_reported;
        self.malformed_reported = events.malformed();
        let delta = self.accountant.finish(&sample, malformed, final_interval);
        collector.forget_sockets(&self.accountant.take_forgotten());
        Ok(delta)
    }

    pub fn drain(&mut self, stream: &mut Events) {
        stream.drain(&mut self.events);
        let now = Instant::now();
        for event in self.events.drain(..) {
            self.accountant.on_event(&event);
            let comm = crate::accounting::comm_to_string(&event.comm);
            match event.kind {
                kaipo_common::EVENT_SOCK_OWNER => {
                    self.resolver.hint(event.tgid, &comm, event.uid, now);
                    // Read /proc now, while a short-lived process is most likely still there.
                    let _ = self.resolver.lookup(event.tgid, now);
                }
                kaipo_common::EVENT_PROC_EXIT => {
                    self.resolver.note_exit(event.tgid, &comm, event.uid, now);
                }
                _ => {}
            }
        }
    }

    pub fn record(
        &mut self,
        delta: IntervalDelta,
        elapsed: Duration,
        now: Instant,
    ) -> IntervalRecord {
        let exited: std::collections::HashSet<u32> =
            delta.exited.iter().map(|(tgid, _, _)| *tgid).collect();
        let mut processes: Vec<ProcessRecord> = delta
            .processes
            .values()
            .map(|(owner, traffic)| {
                let info = self.resolver.lookup(owner.tgid, now);
                // Without process details, only an exit the collector reported says gone.
                let gone = exited.contains(&owner.tgid)
                    || (Host::PROCESS_DETAILS
                        && info.as_ref().is_none_or(|i| i.start_time_ticks == 0));
                ProcessRecord {
                    pid: owner.tgid,
                    name: info
                        .as_ref()
                        .map_or_else(|| owner.comm.clone(), |i| i.name.clone()),
                    cmdline: info.as_ref().map(|i| i.cmdline.clone()).unwrap_or_default(),
                    uid: info.as_ref().map_or(owner.uid, |i| i.uid),
                    user: info.as_ref().and_then(|i| i.user.clone()),
                    container: info.as_ref().and_then(|i| i.container.clone()),
                    netns: info.as_ref().and_then(|i| i.netns_inode),
                    exited: gone,
                    rx_bytes: traffic.rx_bytes,
                    tx_bytes: traffic.tx_bytes,
                    rx_packets: traffic.rx_packets,
                    tx_packets: traffic.tx_packets,
                }
            })
            .collect();
        processes.sort_by(|a, b| {
            (b.rx_bytes + b.tx_bytes)
                .cmp(&(a.rx_bytes + a.tx_bytes))
                .then(a.pid.cmp(&b.pid))
        });
        let connections = delta
            .connections
            .iter()
            .map(|c| {
                let e = &c.endpoints;
                let ports = format::has_ports(e.proto);
                ConnectionRecord {
                    pid: c.owner.tgid,
                    proto: format::proto_name(e.proto),
                    local: format::endpoint(e.family, &e.local_addr, e.local_port, ports),
                    remote: if e.many_remotes {
                        "*".into()
                    } else {
                        format::endpoint(e.family, &e.remote_addr, e.remote_port, ports)
                    },
                    rx_bytes: c.traffic.rx_bytes,
                    tx_bytes: c.traffic.tx_bytes,
                }
            })
            .collect();
        let interfaces = delta
            .interfaces
            .iter()
            .map(|(iface, c)| InterfaceRecord {
                name: iface.name.clone(),
                rx_bytes: c.rx_bytes,
                tx_bytes: c.tx_bytes,
                rx_packets: c.rx_packets,
                tx_packets: c.tx_packets,
            })
            .collect();
        self.resolver.expire(now);
        IntervalRecord {
            ts_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            interval_ms: elapsed.as_millis() as u64,
            backend: self.backend,
            interfaces,
            processes,
            connections,
            unattributed: Bytes {
                rx_bytes: delta.unattributed.rx_bytes,
                tx_bytes: delta.unattributed.tx_bytes,
            },
            lost: delta.lost,
        }
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
