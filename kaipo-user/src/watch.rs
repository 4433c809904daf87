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
    /// Rows per table section, 0 for all; JSON always carries every row.
    pub top: usize,
    /// Print totals since start instead of each interval's figures.
    pub cumulative: bool,
    pub backend: BackendChoice,
    /// Capture filter for the pcap backend.
    pub pcap_filter: Option<String>,
    /// Capture in libpcap's immediate mode.
    pub pcap_immediate: bool,
    /// eBPF backend: the hook for incoming frames.
    pub ingress_hook: IngressHook,
    /// eBPF backend: flows on or off; `None`: on only with interfaces named.
    pub flows: Option<bool>,
    /// The user's service and network names.
    pub names: crate::config::names::SharedNames,
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
            flows: opts.flows,
            ..Default::default()
        },
        include_loopback: opts.include_loopback,
        names: opts.names.clone(),
    })?;
    for degradation in engine.degradations() {
        eprintln!("kaipo: degraded: {degradation}");
    }
    let mut stop_signals = StopSignals::new().context("installing the signal handlers")?;
    // The collector is attached: from here on only the steady state's system calls.
    #[cfg(target_os = "linux")]
    {
        let seccomp = crate::sandbox::seccomp_layer();
        if !seccomp.in_force {
            eprintln!("kaipo: degraded: seccomp not in force: {}", seccomp.detail);
        }
    }
    let mut sink = PrintSink {
        out,
        json: opts.json,
        top: if opts.top == 0 { usize::MAX } else { opts.top },
        cumulative: opts.cumulative.then(Cumulative::default),
        buf: Vec::new(),
        flows: engine.collector().tracks_flows(),
    };
    let schedule = Schedule {
        interval: opts.interval,
        duration: opts.duration,
    };
    engine.run(schedule, &mut sink, stop_signals.recv()).await
}

struct PrintSink<'a> {
    out: &'a mut dyn Write,
    /// One interval's output, built before it is written.
    buf: Vec<u8>,
    json: bool,
    top: usize,
    /// Totals since start, with `--cumulative`.
    cumulative: Option<Cumulative>,
    /// Whether interface bytes are joined to sockets (not without flows).
    flows: bool,
}

impl Sink for PrintSink<'_> {
    async fn deliver(
        &mut self,
        interval: ClosedInterval,
        _collector: &Collector,
    ) -> anyhow::Result<bool> {
        let cumulative = self.cumulative.is_some();
        let record = match &mut self.cumulative {
            Some(totals) => totals.add(&interval.record),
            None => &interval.record,
        };
        // The record is put together in memory and written at once: standard output is
        // line-buffered, and a record of thousands of connections written piece by piece
        // would cost a search for a newline per piece and a system call per kilobyte.
        self.buf.clear();
        let built = if self.json {
            serde_json::to_writer(&mut self.buf, record)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(self.buf))
        } else {
            write_table(&mut self.buf, record, self.top, cumulative, self.flows)
        };
        built
            .and_then(|()| self.out.write_all(&self.buf))
            .and_then(|()| self.out.flush())
            .context("writing output")?;
        // A burst's record is not kept for good.
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new();
        }
        Ok(true)
    }
}

/// Running totals since start, for `--cumulative`: the interval records added up, each
/// process and connection under its own key.
#[derive(Default)]
struct Cumulative {
    record: Option<IntervalRecord>,
}

impl Cumulative {
    fn add(&mut self, r: &IntervalRecord) -> &IntervalRecord {
        if self.record.is_none() {
            return self.record.insert(r.clone());
        }
        let acc = self.record.get_or_insert_with(|| r.clone());
        acc.ts_ms = r.ts_ms;
        acc.interval_ms += r.interval_ms;
        acc.backend = r.backend;
        for i in &r.interfaces {
            match acc.interfaces.iter_mut().find(|a| a.name == i.name) {
                Some(a) => {
                    a.rx_bytes += i.rx_bytes;
                    a.tx_bytes += i.tx_bytes;
                    a.rx_packets += i.rx_packets;
                    a.tx_packets += i.tx_packets;
                }
                None => acc.interfaces.push(i.clone()),
            }
        }
        for p in &r.processes {
            match acc.processes.iter_mut().find(|a| a.pid == p.pid) {
                Some(a) => {
                    let (rx, tx, rxp, txp) = (a.rx_bytes, a.tx_bytes, a.rx_packets, a.tx_packets);
                    *a = p.clone();
                    a.rx_bytes += rx;
                    a.tx_bytes += tx;
                    a.rx_packets += rxp;
                    a.tx_packets += txp;
                }
                None => acc.processes.push(p.clone()),
            }
        }
        for c in &r.connections {
            let same = |a: &&mut crate::model::ConnectionRecord| {
                (a.pid, &a.proto, &a.local, &a.remote) == (c.pid, &c.proto, &c.local, &c.remote)
            };
            match acc.connections.iter_mut().find(same) {
                Some(a) => {
                    a.rx_bytes += c.rx_bytes;
                    a.tx_bytes += c.tx_bytes;
                    a.state.clone_from(&c.state);
                }
                None => acc.connections.push(c.clone()),
            }
        }
        acc.unattributed.rx_bytes += r.unattributed.rx_bytes;
        acc.unattributed.tx_bytes += r.unattributed.tx_bytes;
        acc.attribution.add(&r.attribution);
        acc.attributed_ratio = acc.attribution.ratio().or(acc.attributed_ratio);
        acc.lost.add(&r.lost);
        acc.processes.sort_by(|a, b| {
            (b.rx_bytes + b.tx_bytes)
                .cmp(&(a.rx_bytes + a.tx_bytes))
                .then(a.pid.cmp(&b.pid))
        });
        acc.connections
            .sort_by_key(|c| std::cmp::Reverse(c.rx_bytes + c.tx_bytes));
        acc
    }
}

/// One interval (or, with `--cumulative`, the totals since start) as a table. Per interval,
/// every byte figure is a rate per second; cumulative, every byte figure is a total. Packets
/// are counts in either case.
fn write_table(
    out: &mut dyn Write,
    r: &IntervalRecord,
    top: usize,
    cumulative: bool,
    flows: bool,
) -> std::io::Result<()> {
    let over = Duration::from_millis(r.interval_ms.max(1));
    let figure = |n: u64| {
        if cumulative {
            format::bytes(n)
        } else {
            format::rate(n, over)
        }
    };
    let (rx, tx) = if cumulative {
        ("RX", "TX")
    } else {
        ("RX/s", "TX/s")
    };
    if cumulative {
        writeln!(
            out,
            "--- totals over {:.2}s since start, backend {} ---",
            over.as_secs_f64(),
            r.backend
        )?;
    } else {
        writeln!(
            out,
            "--- {:.2}s interval, backend {}, bytes per second ---",
            over.as_secs_f64(),
            r.backend
        )?;
    }
    writeln!(
        out,
        "{:<16} {:>12} {:>12} {:>10} {:>10}",
        "INTERFACE", rx, tx, "RX PKTS", "TX PKTS"
    )?;
    for i in &r.interfaces {
        writeln!(
            out,
            "{:<16} {:>12} {:>12} {:>10} {:>10}",
            i.name,
            figure(i.rx_bytes),
            figure(i.tx_bytes),
            i.rx_packets,
            i.tx_packets
        )?;
    }
    writeln!(
        out,
        "{:>8} {:<16} {:<10} {:>12} {:>12}  COMMAND",
        "PID", "NAME", "USER", rx, tx
    )?;
    for p in r.processes.iter().take(top) {
        let user = p.user.clone().unwrap_or_else(|| p.uid.to_string());
        // A command line may hold line breaks and tabs (`python3 -c '...'`): one line a row.
        let mut cmd: String = p
            .cmdline
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(60)
            .collect();
        if p.exited {
            cmd.push_str(" (exited)");
        }
        writeln!(
            out,
            "{:>8} {:<16} {:<10} {:>12} {:>12}  {cmd}",
            p.pid,
            p.name,
            user,
            figure(p.rx_bytes),
            figure(p.tx_bytes)
        )?;
    }
    writeln!(
        out,
        "{:<6} {:<46} {:<46} {:<12} {:>8} {:>12} {:>12}",
        "PROTO", "LOCAL", "REMOTE", "SERVICE", "PID", rx, tx
    )?;
    for c in r.connections.iter().take(top) {
        writeln!(
            out,
            "{:<6} {:<46} {:<46} {:<12} {:>8} {:>12} {:>12}",
            c.proto,
            c.local,
            c.remote,
            c.service,
            c.pid,
            figure(c.rx_bytes),
            figure(c.tx_bytes)
        )?;
    }
    let attributed = match r.attributed_ratio {
        Some(ratio) => format!("{:.1} % of interface bytes attributed", ratio * 100.0),
        None if !flows => {
            "attributed share not measured (flows off: name interfaces with --iface, or add \
             --flows)"
                .into()
        }
        None => "attributed share unknown (no interface traffic)".into(),
    };
    let causes: Vec<String> = r
        .attribution
        .unattributed
        .fields()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {}", figure(n)))
        .collect();
    if causes.is_empty() {
        writeln!(out, "{attributed}")?;
    } else {
        writeln!(out, "{attributed}; the rest: {}", causes.join(", "))?;
    }
    writeln!(
        out,
        "sockets without a known owner: {} {}, {} {}",
        rx,
        figure(r.unattributed.rx_bytes),
        tx,
        figure(r.unattributed.tx_bytes),
    )?;
    let lost: Vec<String> = r
        .lost
        .fields()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !lost.is_empty() {
        writeln!(out, "lost: {}", lost.join(", "))?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        collect::BackendKind,
        model::{Attribution, Bytes, ConnectionRecord, InterfaceRecord, Lost, ProcessRecord},
    };

    fn record(tx: u64, lost_ring: u64) -> IntervalRecord {
        IntervalRecord {
            ts_ms: 1_000,
            interval_ms: 1_000,
            backend: BackendKind::Ebpf,
            interfaces: vec![InterfaceRecord {
                name: "veth0".into(),
                rx_bytes: 0,
                tx_bytes: tx + tx / 10,
                rx_packets: 0,
                tx_packets: 10,
            }],
            processes: (0..3)
                .map(|i| ProcessRecord {
                    pid: 100 + i,
                    name: format!("p{i}"),
                    cmdline: "python3 -c \nimport socket\n".into(),
                    uid: 0,
                    user: Some("root".into()),
                    container: None,
                    container_name: None,
                    pod: None,
                    pod_namespace: None,
                    unit: None,
                    exe: None,
                    netns: None,
                    exited: false,
                    rx_bytes: 0,
                    tx_bytes: tx * u64::from(3 - i),
                    rx_packets: 0,
                    tx_packets: 1,
                })
                .collect(),
            connections: vec![ConnectionRecord {
                pid: 100,
                proto: "udp".into(),
                local: "10.0.0.1:40000".into(),
                remote: "10.0.0.2:9999".into(),
                remote_name: None,
                service: "udp/9999".into(),
                network: None,
                state: None,
                rx_bytes: 0,
                tx_bytes: tx,
            }],
            unattributed: Bytes::default(),
            attributed_ratio: Some(0.5),
            attribution: Attribution {
                interface_bytes: 2 * tx,
                attributed_bytes: tx,
                unattributed: crate::model::UnattributedCauses {
                    forwarded: tx,
                    ..Default::default()
                },
            },
            lost: Lost {
                ringbuf_full: lost_ring,
                capture_drops: 3,
                ..Lost::default()
            },
        }
    }

    fn process_rows(text: &str) -> usize {
        text.lines()
            .filter(|l| l.trim_start().starts_with("10") && l.contains(" p"))
            .count()
    }

    fn table(r: &IntervalRecord, top: usize, cumulative: bool) -> String {
        let mut out = Vec::new();
        write_table(&mut out, r, top, cumulative, true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_table_says_per_second_and_lists_every_lost_counter_that_is_not_zero() {
        let text = table(&record(2048, 7), usize::MAX, false);
        assert!(text.starts_with("--- 1.00s interval, backend ebpf, bytes per second ---\n"));
        assert!(text.contains("RX/s"), "{text}");
        assert!(
            text.contains("lost: ringbuf_full 7, capture_drops 3\n"),
            "{text}"
        );
        assert!(
            text.contains("50.0 % of interface bytes attributed; the rest: forwarded 2.0 KiB/s")
        );
        assert!(text.contains("udp/9999"));
        assert_eq!(process_rows(&text), 3, "{text}");
        assert!(
            text.contains("python3 -c  import socket "),
            "one line a row: {text}"
        );
        // `--top 1` keeps one process row.
        assert_eq!(process_rows(&table(&record(2048, 0), 1, false)), 1);
        assert!(!table(&record(2048, 0), 1, false).contains("ringbuf_full"));
    }

    #[test]
    fn cumulative_adds_up_every_interval() {
        let mut c = Cumulative::default();
        c.add(&record(1000, 1));
        let total = c.add(&record(500, 2)).clone();
        assert_eq!(total.interval_ms, 2_000);
        assert_eq!(total.processes[0].tx_bytes, 4_500);
        assert_eq!(total.processes[2].tx_bytes, 1_500);
        assert_eq!(total.connections[0].tx_bytes, 1_500);
        assert_eq!(total.interfaces[0].tx_bytes, 1_650);
        assert_eq!(total.lost.ringbuf_full, 3);
        assert_eq!(total.lost.capture_drops, 6);
        assert_eq!(total.attribution.interface_bytes, 3_000);
        assert_eq!(total.attributed_ratio, Some(0.5));
        let text = table(&total, usize::MAX, true);
        assert!(
            text.starts_with("--- totals over 2.00s since start, backend ebpf ---\n"),
            "{text}"
        );
        assert!(text.contains("4.4 KiB"), "{text}");
    }
}
