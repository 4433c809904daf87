//! The counters `/metrics` shows, and how apps share a bounded number of series.
//!
//! An "app" here is one key of the labels chosen in `metrics.labels` (by default the app name
//! alone; see [`super::labels`]). At most `top_apps` keys have their own `kaipo_app_*` series;
//! every other key's traffic goes to the series whose labels all read `other`. Each byte is counted in exactly one series at the moment it is seen: in
//! its app's series while that app is shown, in `other` while it is not. So every series only
//! ever grows, and `sum(rate(kaipo_app_bytes_total[...]))` is exactly the attributed traffic.
//! An app that drops out of the top N loses its series (Prometheus marks it stale); should it
//! come back, its series resumes from the value it had. The price: an app's series holds its
//! traffic while it was among the shown apps, not its whole history.
//!
//! Which apps are shown follows their total since the daemon started, with hysteresis: an app
//! replaces the weakest shown one only when its total is more than [`SWAP_MARGIN`] larger, so
//! two apps of similar size do not trade places every interval.
//!
//! Workloads (container name, pod and namespace, systemd unit) get `kaipo_workload_*` series
//! bounded the same way and by the same `top_apps` (see `ranked`), the rest summed in one
//! series whose labels all read `(other)`, a value no container, pod or unit name can take.
//! Unknown parts are empty labels, as Prometheus reads a missing label.

use std::collections::{BTreeMap, HashMap};

use super::{
    exposition::{family, sample_with, Kind, Value},
    labels::{key_ref, LabelKind},
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

/// A newcomer must exceed the weakest shown app's total by this fraction to replace it.
pub const SWAP_MARGIN: f64 = 0.10;
/// Apps tracked at most; past this, the smallest never-shown apps are forgotten (their traffic
/// is already in `other`).
pub const MAX_TRACKED_APPS: usize = 10_000;
pub const OTHER_APP: &str = super::labels::OTHER;
/// Intervals an interface may be absent before its series go.
pub const INTERFACE_GRACE: u64 = 300;
/// Interfaces with series at most.
pub const MAX_INTERFACES: usize = 1024;
/// Every label of the workload series that sums the workloads without a series of their own.
pub const OTHER_WORKLOAD: &str = "(other)";

/// The labels of one workload series: container name, pod, pod namespace, unit; empty when
/// unknown.
pub type WorkloadLabels = [String; 4];

fn workload_of(row: &TrafficRow) -> WorkloadLabels {
    [&row.container_name, &row.pod, &row.pod_namespace, &row.unit]
        .map(|v| v.clone().unwrap_or_default())
}

#[derive(Debug, Default)]
struct App {
    /// Everything since start: what ranking follows.
    total: u64,
    /// What its own series shows: traffic seen while it was shown.
    own: Counts,
    shown: bool,
}

/// An interval's traffic grouped by the per-app key ([`MetricsState::group`]).
#[derive(Debug, Default)]
pub struct Grouped {
    keys: HashMap<Box<[String]>, Counts>,
    workloads: HashMap<WorkloadLabels, Counts>,
    unattributed: Counts,
}

#[derive(Debug)]
pub struct MetricsState {
    top_apps: usize,
    /// The labels of the per-app series, in the order the keys hold their values.
    labels: Vec<LabelKind>,
    /// The `host` label every sample carries.
    host: String,
    /// Per interface: its counts since start and the last interval it was in.
    interfaces: BTreeMap<String, (Counts, u64)>,
    apps: HashMap<Box<[String]>, App>,
    other: Counts,
    unattributed: Counts,
    attributed: Counts,
    /// The interfaces' link-layer bytes since start, attributed and not (by cause).
    attribution: Attribution,
    lost: Lost,
    intervals: u64,
    programs: Vec<ProgramStat>,
    workloads: Ranked<WorkloadLabels>,
    maps: Option<MapUsage>,
}

impl MetricsState {
    /// Apps named by the app label alone, on a host called `host`.
    pub fn new(top_apps: usize) -> Self {
        Self::with_labels(top_apps, vec![LabelKind::App], "host".into())
    }

    pub fn with_labels(top_apps: usize, labels: Vec<LabelKind>, host: String) -> Self {
        Self {
            top_apps,
            labels,
            host,
            interfaces: BTreeMap::new(),
            apps: HashMap::new(),
            other: Counts::default(),
            unattributed: Counts::default(),
            attributed: Counts::default(),
            attribution: Attribution::default(),
            lost: Lost::default(),
            intervals: 0,
            programs: Vec::new(),
            workloads: Ranked::default(),
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

    /// The labels the per-app series carry.
    pub fn labels(&self) -> &[LabelKind] {
        &self.labels
    }

    /// An interval's traffic per key and its unattributed part: the costly half of
    /// [`Self::observe`], which needs no `&mut self`, so the daemon does it before it takes
    /// the lock a scrape waits for.
    pub fn group(labels: &[LabelKind], live: &LiveInterval) -> Grouped {
        let mut grouped: HashMap<Vec<std::borrow::Cow<'_, str>>, Counts> = HashMap::new();
        let mut unattributed = Counts::default();
        let mut workloads: HashMap<WorkloadLabels, Counts> = HashMap::new();
        for row in &live.traffic {
            let c = Counts {
                rx_bytes: row.rx_bytes,
                tx_bytes: row.tx_bytes,
                rx_packets: row.rx_packets,
                tx_packets: row.tx_packets,
            };
            if row.app == UNATTRIBUTED_APP && row.pid == 0 {
                unattributed.add(&c);
            } else {
                grouped.entry(key_ref(labels, row)).or_default().add(&c);
                workloads.entry(workload_of(row)).or_default().add(&c);
            }
        }
        // Owned keys once per distinct key, not once per row.
        Grouped {
            keys: grouped
                .into_iter()
                .map(|(k, c)| (k.into_iter().map(std::borrow::Cow::into_owned).collect(), c))
                .collect(),
            workloads,
            unattributed,
        }
    }

    pub fn observe(&mut self, live: &LiveInterval) {
        let grouped = Self::group(&self.labels, live);
        self.observe_grouped(live, grouped);
    }

    /// [`Self::observe`] with the traffic already grouped by [`Self::group`] with this
    /// state's labels.
    pub fn observe_grouped(&mut self, live: &LiveInterval, grouped: Grouped) {
        let r = &live.record;
        self.intervals += 1;
        self.lost.add(&r.lost);
        self.attribution.add(&r.attribution);
        for i in &r.interfaces {
            let (c, seen) = self.interfaces.entry(i.name.clone()).or_default();
            *seen = self.intervals;
            c.add(&Counts {
                rx_bytes: i.rx_bytes,
                tx_bytes: i.tx_bytes,
                rx_packets: i.rx_packets,
                tx_packets: i.tx_packets,
            });
        }
        // Totals first and the shown set after, so that an app entering the top N in this
        // interval has this interval's traffic in its own series.
        self.unattributed.add(&grouped.unattributed);
        let deltas = grouped.keys;
        for c in deltas.values() {
            self.attributed.add(c);
        }
        for (name, c) in &deltas {
            match self.apps.get_mut(name) {
                Some(app) => app.total += c.bytes(),
                None => {
                    self.apps.insert(
                        name.clone(),
                        App {
                            total: c.bytes(),
                            ..App::default()
                        },
                    );
                }
            }
        }
        self.forget_gone_interfaces();
        self.rebalance();
        for (name, c) in &deltas {
            match self.apps.get_mut(name) {
                Some(app) if app.shown => app.own.add(c),
                _ => self.other.add(c),
            }
        }
        self.bound();
        self.workloads.observe(
            self.top_apps,
            grouped.workloads.iter().map(|(k, c)| (k, *c)),
        );
    }

    /// Workloads with their own series now, largest first.
    pub fn shown_workloads(&self) -> Vec<&WorkloadLabels> {
        self.workloads.shown()
    }

    /// Interfaces come and go with containers (a veth each): one absent for
    /// [`INTERFACE_GRACE`] intervals loses its series, and past [`MAX_INTERFACES`] the longest
    /// absent go first, so the `interface` label stays bounded. One that comes back starts
    /// again from 0, which Prometheus reads as a counter reset.
    fn forget_gone_interfaces(&mut self) {
        let now = self.intervals;
        self.interfaces
            .retain(|_, (_, seen)| now.saturating_sub(*seen) < INTERFACE_GRACE);
        if self.interfaces.len() > MAX_INTERFACES {
            let mut by_age: Vec<(u64, String)> = self
                .interfaces
                .iter()
                .map(|(name, (_, seen))| (*seen, name.clone()))
                .collect();
            by_age.sort_unstable();
            let excess = self.interfaces.len() - MAX_INTERFACES;
            for (_, name) in by_age.into_iter().take(excess) {
                self.interfaces.remove(&name);
            }
        }
    }

    /// Brings the shown set to the `top_apps` largest, within the hysteresis margin.
    fn rebalance(&mut self) {
        let mut shown: Vec<(u64, &Box<[String]>)> = Vec::new();
        let mut hidden: Vec<(u64, &Box<[String]>)> = Vec::new();
        for (name, app) in &self.apps {
            if app.shown {
                shown.push((app.total, name));
            } else if app.total > 0 {
                hidden.push((app.total, name));
            }
        }
        // Weakest shown first, strongest hidden first; names break ties so that the choice
        // does not depend on hash order.
        shown.sort_unstable();
        hidden.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let excess = shown.len().saturating_sub(self.top_apps);
        let mut demote: Vec<Box<[String]>> =
            shown[..excess].iter().map(|(_, n)| (*n).clone()).collect();
        let shown = &shown[excess..];
        let room = self.top_apps - shown.len();
        let mut promote: Vec<Box<[String]>> = hidden
            .iter()
            .take(room)
            .map(|(_, n)| (*n).clone())
            .collect();
        for (&(weak, weak_name), &(strong, strong_name)) in
            shown.iter().zip(hidden.iter().skip(room))
        {
            if (strong as f64) <= weak as f64 * (1.0 + SWAP_MARGIN) {
                break;
            }
            demote.push(weak_name.clone());
            promote.push(strong_name.clone());
        }
        for (names, shown) in [(demote, false), (promote, true)] {
            for name in names {
                if let Some(app) = self.apps.get_mut(&name) {
                    app.shown = shown;
                }
            }
        }
    }

    fn bound(&mut self) {
        if self.apps.len() <= MAX_TRACKED_APPS {
            return;
        }
        // Never-shown apps first: forgetting them changes no series. An app that had a
        // series and comes back after being forgotten starts its series again from zero,
        // which Prometheus reads as a counter reset; only 10k apps of churn reach this.
        let mut victims: Vec<(bool, u64, Box<[String]>)> = self
            .apps
            .iter()
            .filter(|(_, a)| !a.shown)
            .map(|(n, a)| (!a.own.is_zero(), a.total, n.clone()))
            .collect();
        victims.sort_unstable();
        let excess = self.apps.len() - (MAX_TRACKED_APPS - MAX_TRACKED_APPS / 10);
        for (_, _, name) in victims.into_iter().take(excess) {
            self.apps.remove(&name);
        }
    }

    /// Keys with their own series now, largest first, their values joined by `/`.
    pub fn shown_apps(&self) -> Vec<String> {
        let mut v: Vec<(&Box<[String]>, &App)> =
            self.apps.iter().filter(|(_, a)| a.shown).collect();
        v.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n.join("/")).collect()
    }

    /// Series in the exposition now (each sample line counts once).
    pub fn series_count(&self) -> usize {
        self.render(None)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
    }

    /// One sample line, with the `host` label first.
    fn sample(&self, out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Value) {
        sample_with(out, name, &[("host", &self.host)], labels, value);
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
        self.sample(
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
            self.sample(
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
            self.sample(out, "kaipo_attributed_ratio", &[], ratio);
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
        for (name, (c, _)) in &self.interfaces {
            for (d, bytes, _) in dirs(c) {
                self.sample(
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
        for (name, (c, _)) in &self.interfaces {
            for (d, _, packets) in dirs(c) {
                self.sample(
                    &mut out,
                    "kaipo_interface_packets_total",
                    &[("interface", name), ("direction", d)],
                    packets,
                );
            }
        }
        let mut apps: Vec<(&[String], &Counts)> = self
            .apps
            .iter()
            .filter(|(_, a)| a.shown)
            .map(|(n, a)| (&n[..], &a.own))
            .collect();
        apps.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let other = vec![OTHER_APP.to_owned(); self.labels.len()];
        apps.push((&other, &self.other));
        for (metric, help, packets) in [
            ("kaipo_app_bytes_total", "IP-layer bytes per app (executable) and direction; apps outside the top N are summed as app=\"other\".", false),
            ("kaipo_app_packets_total", "IP-layer packets per app and direction.", true),
        ] {
            family(&mut out, metric, Kind::Counter, help);
            for (key, c) in &apps {
                let mut labels: Vec<(&str, &str)> = self
                    .labels
                    .iter()
                    .zip(key.iter())
                    .map(|(k, v)| (k.name(), v.as_str()))
                    .collect();
                labels.push(("direction", ""));
                for (d, bytes, pkts) in dirs(c) {
                    if let Some(last) = labels.last_mut() {
                        last.1 = d;
                    }
                    self.sample(&mut out, metric, &labels, if packets { pkts } else { bytes });
                }
            }
        }
        let other_workload = [(); 4].map(|()| OTHER_WORKLOAD.to_owned());
        let mut workloads = self.workloads.series();
        workloads.push((&other_workload, self.workloads.other()));
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
                    self.sample(&mut out, metric, &labels, if packets { pkts } else { bytes });
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
                self.sample(&mut out, metric, &[("direction", d)], bytes);
            }
        }
        // Without flows (`--no-flows`: the eBPF collector reports no flow map) nothing joins
        // interface bytes to processes; no figure rather than a zero.
        if self.maps.is_none_or(|m| m.flows_max.is_some()) {
            self.render_attribution(&mut out);
        }
        family(
            &mut out,
            "kaipo_lost_events_total",
            Kind::Counter,
            "What the collector could not record, by reason (the field names of the lost counters in kaipo watch --json).",
        );
        for (reason, n) in self.lost.fields() {
            self.sample(
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
        self.sample(
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
        self.sample(&mut out, "kaipo_intervals_total", &[], self.intervals);
        if !self.programs.is_empty() {
            family(&mut out, "kaipo_bpf_program_run_seconds_total", Kind::Counter,
                "Kernel time spent in each of kaipo's eBPF programs (needs BPF statistics enabled).");
            for p in &self.programs {
                self.sample(
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
                self.sample(
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
                "Entries in kaipo's kernel maps at the last interval (sockets: sockets counted in slots and in the shared socket map, live and closed but not yet read; flows: flows on the monitored interfaces).",
            );
            for (map, n, _) in &rows {
                self.sample(&mut out, "kaipo_bpf_map_entries", &[("map", map)], *n);
            }
            family(
                &mut out,
                "kaipo_bpf_map_capacity",
                Kind::Gauge,
                "Capacity of kaipo's kernel maps (sockets: slots and shared socket map together): with both full new sockets go uncounted (lost reason sock_map_full), a full flow map evicts flows.",
            );
            for (map, _, max) in &rows {
                self.sample(&mut out, "kaipo_bpf_map_capacity", &[("map", map)], *max);
            }
        }
        if let Some(p) = process {
            family(
                &mut out,
                "process_cpu_seconds_total",
                Kind::Counter,
                "User and system CPU time of the kaipo daemon.",
            );
            self.sample(&mut out, "process_cpu_seconds_total", &[], p.cpu_seconds);
            family(
                &mut out,
                "process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory of the kaipo daemon.",
            );
            self.sample(
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
            self.sample(
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
