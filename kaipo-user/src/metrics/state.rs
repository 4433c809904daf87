//! The counters `/metrics` shows, and how apps and workloads share a bounded number of series.
//!
//! At most `top_apps` apps have their own `kaipo_app_*` series; every other app's traffic goes
//! to `app="other"` (see `ranked` for how the shown set is chosen and why every series only
//! grows). An app that drops out of the top N loses its series (Prometheus marks it stale);
//! should it come back, its series resumes from the value it had. The price: an app's series
//! holds its traffic while it was among the shown apps, not its whole history.
//!
//! Workloads (container name, pod and namespace, systemd unit) get `kaipo_workload_*` series
//! bounded the same way and by the same `top_apps`, the rest summed in one series whose labels
//! all read `(other)`, a value no container, pod or unit name can take. Unknown parts are empty
//! labels, as Prometheus reads a missing label.

use std::collections::{BTreeMap, HashMap};

use super::{
    exposition::{family, sample, Kind},
    process::ProcessStats,
    ranked::Ranked,
    ProgramStat,
};
use crate::{
    collect::MapUsage,
    model::{Attribution, Lost},
    pipeline::{totals::Counts, LiveInterval},
    store::{TrafficRow, UNATTRIBUTED_APP},
};

pub use super::ranked::{MAX_TRACKED as MAX_TRACKED_APPS, SWAP_MARGIN};
pub const OTHER_APP: &str = "other";
/// Every label of the workload series that sums the workloads without a series of their own.
pub const OTHER_WORKLOAD: &str = "(other)";

/// The labels of one workload series: container name, pod, pod namespace, unit; empty when
/// unknown.
pub type WorkloadLabels = [String; 4];

fn workload_of(row: &TrafficRow) -> WorkloadLabels {
    [&row.container_name, &row.pod, &row.pod_namespace, &row.unit]
        .map(|v| v.clone().unwrap_or_default())
}

#[derive(Debug)]
pub struct MetricsState {
    top_apps: usize,
    interfaces: BTreeMap<String, Counts>,
    apps: Ranked<String>,
    workloads: Ranked<WorkloadLabels>,
    unattributed: Counts,
    attributed: Counts,
    /// The interfaces' link-layer bytes since start, attributed and not (by cause).
    attribution: Attribution,
    lost: Lost,
    intervals: u64,
    programs: Vec<ProgramStat>,
    maps: Option<MapUsage>,
}

impl MetricsState {
    pub fn new(top_apps: usize) -> Self {
        Self {
            top_apps,
            interfaces: BTreeMap::new(),
            apps: Ranked::default(),
            workloads: Ranked::default(),
            unattributed: Counts::default(),
            attributed: Counts::default(),
            attribution: Attribution::default(),
            lost: Lost::default(),
            intervals: 0,
            programs: Vec::new(),
            maps: None,
        }
    }

    /// Takes effect at the next interval (a SIGHUP reload).
    pub fn set_top_apps(&mut self, n: usize) {
        self.top_apps = n;
    }

    /// What the collector says of the kernel side: its programs' run time and how full its
    /// maps are.
    pub fn set_kernel(&mut self, programs: Vec<ProgramStat>, maps: Option<MapUsage>) {
        self.programs = programs;
        self.maps = maps;
    }

    pub fn observe(&mut self, live: &LiveInterval) {
        let r = &live.record;
        self.intervals += 1;
        self.lost.add(&r.lost);
        self.attribution.add(&r.attribution);
        for i in &r.interfaces {
            let c = self.interfaces.entry(i.name.clone()).or_default();
            c.add(&Counts {
                rx_bytes: i.rx_bytes,
                tx_bytes: i.tx_bytes,
                rx_packets: i.rx_packets,
                tx_packets: i.tx_packets,
            });
        }
        let mut deltas: HashMap<String, Counts> = HashMap::new();
        let mut workloads: HashMap<WorkloadLabels, Counts> = HashMap::new();
        for row in &live.traffic {
            let c = Counts {
                rx_bytes: row.rx_bytes,
                tx_bytes: row.tx_bytes,
                rx_packets: row.rx_packets,
                tx_packets: row.tx_packets,
            };
            if row.app == UNATTRIBUTED_APP && row.pid == 0 {
                self.unattributed.add(&c);
            } else {
                self.attributed.add(&c);
                match deltas.get_mut(row.app.as_str()) {
                    Some(sum) => sum.add(&c),
                    None => {
                        deltas.insert(row.app.clone(), c);
                    }
                }
                workloads.entry(workload_of(row)).or_default().add(&c);
            }
        }
        self.apps
            .observe(self.top_apps, deltas.iter().map(|(k, c)| (k, *c)));
        self.workloads
            .observe(self.top_apps, workloads.iter().map(|(k, c)| (k, *c)));
    }

    /// Apps with their own series now, largest first.
    pub fn shown_apps(&self) -> Vec<&str> {
        self.apps.shown().into_iter().map(String::as_str).collect()
    }

    /// Workloads with their own series now, largest first.
    pub fn shown_workloads(&self) -> Vec<&WorkloadLabels> {
        self.workloads.shown()
    }

    /// The interfaces' link-layer bytes split into attributed and unattributed by cause, and
    /// the attributed ratio since start. The ratio has no sample until an interface has had
    /// traffic: 0 would read as "nothing attributed".
    fn render_attribution(&self, out: &mut String) {
        let a = &self.attribution;
        family(
            out,
            "kaipo_interface_attributed_bytes_total",
            Kind::Counter,
            "Link-layer bytes on the monitored interfaces whose flow belongs to a socket of a known process, both directions.",
        );
        sample(
            out,
            "kaipo_interface_attributed_bytes_total",
            &[],
            a.attributed_bytes,
        );
        family(
            out,
            "kaipo_interface_unattributed_bytes_total",
            Kind::Counter,
            "Link-layer bytes on the monitored interfaces that no known process owns, by cause (forwarded, kernel, control, unknown).",
        );
        for (cause, n) in a.unattributed.fields() {
            sample(
                out,
                "kaipo_interface_unattributed_bytes_total",
                &[("cause", cause)],
                n,
            );
        }
        family(
            out,
            "kaipo_attributed_ratio",
            Kind::Gauge,
            "Share of the monitored interfaces' link-layer bytes since start that belong to known processes, 0 to 1.",
        );
        if let Some(ratio) = a.ratio() {
            sample(out, "kaipo_attributed_ratio", &[], ratio);
        }
    }

    /// The whole exposition.
    pub fn render(&self, process: Option<&ProcessStats>) -> String {
        let mut out = String::with_capacity(256 + 200 * (self.interfaces.len() + self.top_apps));
        let dirs = |c: &Counts| {
            [
                ("rx", c.rx_bytes, c.rx_packets),
                ("tx", c.tx_bytes, c.tx_packets),
            ]
        };
        family(
            &mut out,
            "kaipo_interface_bytes_total",
            Kind::Counter,
            "Link-layer bytes per monitored interface and direction (rx received, tx sent).",
        );
        for (name, c) in &self.interfaces {
            for (d, bytes, _) in dirs(c) {
                sample(
                    &mut out,
                    "kaipo_interface_bytes_total",
                    &[("interface", name), ("direction", d)],
                    bytes,
                );
            }
        }
        family(
            &mut out,
            "kaipo_interface_packets_total",
            Kind::Counter,
            "Packets per monitored interface and direction.",
        );
        for (name, c) in &self.interfaces {
            for (d, _, packets) in dirs(c) {
                sample(
                    &mut out,
                    "kaipo_interface_packets_total",
                    &[("interface", name), ("direction", d)],
                    packets,
                );
            }
        }
        let mut apps: Vec<(&str, &Counts)> = self
            .apps
            .series()
            .into_iter()
            .map(|(n, c)| (n.as_str(), c))
            .collect();
        apps.push((OTHER_APP, self.apps.other()));
        for (metric, help, packets) in [
            ("kaipo_app_bytes_total", "IP-layer bytes per app (executable) and direction; apps outside the top N are summed as app=\"other\".", false),
            ("kaipo_app_packets_total", "IP-layer packets per app and direction.", true),
        ] {
            family(&mut out, metric, Kind::Counter, help);
            for (app, c) in &apps {
                for (d, bytes, pkts) in dirs(c) {
                    sample(&mut out, metric, &[("app", app), ("direction", d)], if packets { pkts } else { bytes });
                }
            }
        }
        let other = [(); 4].map(|()| OTHER_WORKLOAD.to_owned());
        let mut workloads = self.workloads.series();
        workloads.push((&other, self.workloads.other()));
        for (metric, help, packets) in [
            ("kaipo_workload_bytes_total", "IP-layer bytes per workload (container name, Kubernetes pod and namespace, systemd unit; empty when unknown) and direction; workloads outside the top N are summed with every label \"(other)\".", false),
            ("kaipo_workload_packets_total", "IP-layer packets per workload and direction.", true),
        ] {
            family(&mut out, metric, Kind::Counter, help);
            for ([container, pod, namespace, unit], c) in &workloads {
                for (d, bytes, pkts) in dirs(c) {
                    let labels = [
                        ("container", container.as_str()),
                        ("pod", pod.as_str()),
                        ("namespace", namespace.as_str()),
                        ("unit", unit.as_str()),
                        ("direction", d),
                    ];
                    sample(&mut out, metric, &labels, if packets { pkts } else { bytes });
                }
            }
        }
        for (metric, help, c) in [
            (
                "kaipo_attributed_bytes_total",
                "IP-layer bytes of sockets whose process is known.",
                &self.attributed,
            ),
            (
                "kaipo_unattributed_bytes_total",
                "IP-layer bytes of sockets without a known owner.",
                &self.unattributed,
            ),
        ] {
            family(&mut out, metric, Kind::Counter, help);
            for (d, bytes, _) in dirs(c) {
                sample(&mut out, metric, &[("direction", d)], bytes);
            }
        }
        self.render_attribution(&mut out);
        family(
            &mut out,
            "kaipo_lost_events_total",
            Kind::Counter,
            "What the collector could not record, by reason (the field names of the lost counters in kaipo watch --json).",
        );
        for (reason, n) in self.lost.fields() {
            sample(
                &mut out,
                "kaipo_lost_events_total",
                &[("reason", reason)],
                n,
            );
        }
        // The same figure as reason="flow_evictions" above, kept under its own name for the
        // dashboards and alerts written against it.
        family(
            &mut out,
            "kaipo_flow_evictions_total",
            Kind::Counter,
            "Flows the kernel evicted from the full flow map (least recently used first); the same figure as kaipo_lost_events_total{reason=\"flow_evictions\"}.",
        );
        sample(
            &mut out,
            "kaipo_flow_evictions_total",
            &[],
            self.lost.flow_evictions,
        );
        family(
            &mut out,
            "kaipo_intervals_total",
            Kind::Counter,
            "Live intervals closed.",
        );
        sample(&mut out, "kaipo_intervals_total", &[], self.intervals);
        if !self.programs.is_empty() {
            family(&mut out, "kaipo_bpf_program_run_seconds_total", Kind::Counter,
                "Kernel time spent in each of kaipo's eBPF programs (needs BPF statistics enabled).");
            for p in &self.programs {
                sample(
                    &mut out,
                    "kaipo_bpf_program_run_seconds_total",
                    &[("program", &p.name)],
                    p.run_time_ns as f64 / 1e9,
                );
            }
            family(
                &mut out,
                "kaipo_bpf_program_runs_total",
                Kind::Counter,
                "Runs of each of kaipo's eBPF programs.",
            );
            for p in &self.programs {
                sample(
                    &mut out,
                    "kaipo_bpf_program_runs_total",
                    &[("program", &p.name)],
                    p.run_count,
                );
            }
        }
        if let Some(m) = self.maps {
            let rows: Vec<(&str, u64, u64)> = [
                Some(("sockets", m.sockets, m.sockets_max)),
                m.flows.zip(m.flows_max).map(|(n, max)| ("flows", n, max)),
            ]
            .into_iter()
            .flatten()
            .collect();
            family(
                &mut out,
                "kaipo_bpf_map_entries",
                Kind::Gauge,
                "Entries in kaipo's kernel maps at the last interval (sockets: live and not yet read closed sockets; flows: flows on the monitored interfaces).",
            );
            for (map, n, _) in &rows {
                sample(&mut out, "kaipo_bpf_map_entries", &[("map", map)], *n);
            }
            family(
                &mut out,
                "kaipo_bpf_map_capacity",
                Kind::Gauge,
                "Capacity of kaipo's kernel maps: a full socket map stops counting new sockets (lost reason sock_map_full), a full flow map evicts flows.",
            );
            for (map, _, max) in &rows {
                sample(&mut out, "kaipo_bpf_map_capacity", &[("map", map)], *max);
            }
        }
        if let Some(p) = process {
            family(
                &mut out,
                "process_cpu_seconds_total",
                Kind::Counter,
                "User and system CPU time of the kaipo daemon.",
            );
            sample(&mut out, "process_cpu_seconds_total", &[], p.cpu_seconds);
            family(
                &mut out,
                "process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory of the kaipo daemon.",
            );
            sample(
                &mut out,
                "process_resident_memory_bytes",
                &[],
                p.resident_bytes,
            );
            family(
                &mut out,
                "process_start_time_seconds",
                Kind::Gauge,
                "Start of the kaipo daemon, seconds since the Unix epoch.",
            );
            sample(
                &mut out,
                "process_start_time_seconds",
                &[],
                p.start_time_seconds,
            );
        }
        out
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
