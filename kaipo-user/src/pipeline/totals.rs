//! Totals since the daemon started, per interface, app and process, with the rate of the last
//! live interval: what `kaipo status` and each live snapshot show. These types are part of the
//! daemon's wire protocol (see `api::protocol`), so their JSON shape is stable.

use serde::{Deserialize, Serialize};

use crate::model::{Attribution, IntervalRecord, Lost};

/// Bytes and packets in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.rx_bytes += other.rx_bytes;
        self.tx_bytes += other.tx_bytes;
        self.rx_packets += other.rx_packets;
        self.tx_packets += other.tx_packets;
    }

    pub fn bytes(&self) -> u64 {
        self.rx_bytes + self.tx_bytes
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Bytes per second over `interval_ms`.
    pub fn rate(&self, interval_ms: u64) -> Rates {
        let per_s = |n: u64| {
            if interval_ms == 0 {
                0
            } else {
                (u128::from(n) * 1000 / u128::from(interval_ms)) as u64
            }
        };
        Rates {
            rx_bytes_per_s: per_s(self.rx_bytes),
            tx_bytes_per_s: per_s(self.tx_bytes),
        }
    }
}

/// Bytes per second over the last live interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub rx_bytes_per_s: u64,
    pub tx_bytes_per_s: u64,
}

/// Link-layer traffic of one monitored interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceTotal {
    pub name: String,
    #[serde(flatten)]
    pub rate: Rates,
    #[serde(flatten)]
    pub total: Counts,
}

/// IP-layer traffic of every process of one app (executable name) and user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTotal {
    pub app: String,
    pub uid: u32,
    pub user: Option<String>,
    #[serde(flatten)]
    pub rate: Rates,
    #[serde(flatten)]
    pub total: Counts,
}

/// IP-layer traffic of one process (pid and start time: a reused pid is another process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessTotal {
    pub pid: u32,
    /// Start time in clock ticks since boot, 0 when unknown.
    pub start_time: u64,
    /// The command name (comm).
    pub name: String,
    /// The executable's file name, or the command name when it cannot be read.
    pub app: String,
    pub cmdline: String,
    pub uid: u32,
    pub user: Option<String>,
    pub container: Option<String>,
    /// Container name, Kubernetes pod and namespace, systemd unit, as in `watch --json`.
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    pub exited: bool,
    /// When it last had traffic, milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
    #[serde(flatten)]
    pub rate: Rates,
    #[serde(flatten)]
    pub total: Counts,
}

/// What the collector as a whole counted since start, apart from any process: every lost
/// counter and the interfaces' attribution, each interval's added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostTotals {
    pub lost: Lost,
    pub attribution: Attribution,
}

impl HostTotals {
    pub fn add(&mut self, record: &IntervalRecord) {
        self.lost.add(&record.lost);
        self.attribution.add(&record.attribution);
    }
}

/// Everything since start, as one caller may see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// When counting started, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Length of the last live interval, which the rates are over.
    pub last_interval_ms: u64,
    /// Empty for callers who see only their own processes.
    pub interfaces: Vec<InterfaceTotal>,
    /// Largest first.
    pub apps: Vec<AppTotal>,
    /// Largest first.
    pub processes: Vec<ProcessTotal>,
    /// Traffic of sockets without a known owner (zero for callers who see only their own).
    pub unattributed: Counts,
    /// Process traffic since start (IP layer), evicted processes included.
    pub attributed: Counts,
    /// Every lost counter summed since start. Absent for callers who see only their own
    /// processes: what the collector lost cannot be tied to a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
    /// The monitored interfaces' link-layer bytes since start, split into attributed bytes
    /// and unattributed bytes by cause (each interval's [`Attribution`] summed). Absent for
    /// callers who see only their own processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// Processes dropped from `processes` to bound memory (their traffic stays in `apps` and
    /// `attributed`).
    pub processes_evicted: u64,
}

impl Totals {
    /// What a caller who sees only `uid`'s processes may see; `top` bounds apps and processes.
    pub fn for_caller(&self, only_uid: Option<u32>, top: Option<usize>) -> Totals {
        let top = top.unwrap_or(usize::MAX);
        let mut out = Totals {
            since_ms: self.since_ms,
            last_interval_ms: self.last_interval_ms,
            ..Totals::default()
        };
        let mine = |uid: u32| only_uid.is_none_or(|u| u == uid);
        out.apps = self
            .apps
            .iter()
            .filter(|a| mine(a.uid))
            .take(top)
            .cloned()
            .collect();
        out.processes = self
            .processes
            .iter()
            .filter(|p| mine(p.uid))
            .take(top)
            .cloned()
            .collect();
        if only_uid.is_none() {
            out.interfaces = self.interfaces.clone();
            out.unattributed = self.unattributed;
            out.attributed = self.attributed;
            out.lost = self.lost;
            out.attribution = self.attribution;
            out.processes_evicted = self.processes_evicted;
        } else {
            for app in &out.apps {
                out.attributed.add(&app.total);
            }
        }
        out
    }

    /// The share of the monitored interfaces' link-layer bytes since start that belong to
    /// flows of known processes' sockets, 0.0 to 1.0 (both sides counted at the link layer,
    /// so the share cannot pass 1). None without interface traffic, or for a caller who sees
    /// only their own processes.
    pub fn attributed_ratio(&self) -> Option<f64> {
        self.attribution.as_ref().and_then(Attribution::ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rx: u64, tx: u64) -> Counts {
        Counts {
            rx_bytes: rx,
            tx_bytes: tx,
            rx_packets: rx / 100,
            tx_packets: tx / 100,
        }
    }

    #[test]
    fn rates_are_per_second_of_the_interval() {
        let r = counts(1500, 0).rate(500);
        assert_eq!((r.rx_bytes_per_s, r.tx_bytes_per_s), (3000, 0));
        assert_eq!(counts(1, 1).rate(0), Rates::default());
    }

    #[test]
    fn a_caller_limited_to_a_uid_sees_only_its_own() {
        let process = |pid, uid, bytes| ProcessTotal {
            pid,
            uid,
            total: counts(bytes, 0),
            ..ProcessTotal::default()
        };
        let app = |name: &str, uid, bytes| AppTotal {
            app: name.into(),
            uid,
            total: counts(bytes, 0),
            ..AppTotal::default()
        };
        let all = Totals {
            interfaces: vec![InterfaceTotal {
                name: "eth0".into(),
                total: counts(5000, 5000),
                ..InterfaceTotal::default()
            }],
            apps: vec![app("curl", 0, 3000), app("curl", 1000, 1000)],
            processes: vec![process(1, 0, 3000), process(2, 1000, 1000)],
            unattributed: counts(10, 0),
            attributed: counts(4000, 0),
            lost: Some(Lost {
                ringbuf_full: 3,
                ..Lost::default()
            }),
            attribution: Some(Attribution {
                interface_bytes: 10_000,
                attributed_bytes: 4_000,
                ..Attribution::default()
            }),
            ..Totals::default()
        };
        let mine = all.for_caller(Some(1000), None);
        assert!(mine.interfaces.is_empty());
        assert_eq!(
            mine.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(mine.apps.len(), 1);
        assert_eq!(mine.apps[0].uid, 1000);
        assert_eq!(mine.unattributed, Counts::default());
        assert_eq!(mine.attributed.rx_bytes, 1000);
        assert_eq!(mine.attributed_ratio(), None);
        assert_eq!((mine.lost, mine.attribution), (None, None));
        let json = serde_json::to_value(&mine).unwrap();
        assert!(json.get("lost").is_none() && json.get("attribution").is_none());
        let everything = all.for_caller(None, Some(1));
        assert_eq!(everything.processes.len(), 1);
        assert_eq!(everything.unattributed.rx_bytes, 10);
        assert_eq!(everything.attributed_ratio(), Some(0.4));
        assert_eq!(everything.lost.map(|l| l.ringbuf_full), Some(3));
    }

    /// Two intervals of a host whose process traffic, counted at the IP layer, exceeds the
    /// interfaces' link-layer bytes (loopback counted, a process on an unmonitored link):
    /// dividing the one by the other gave 1.36. The ratio is of link-layer bytes to
    /// link-layer bytes, and every lost counter is summed, capture drops included.
    #[test]
    fn host_totals_sum_attribution_and_every_lost_counter() {
        let record = |iface, attributed, forwarded, kernel, icmp_arp, unknown_owner, drops| {
            let mut r = crate::metrics::fixtures::synthetic_interval(1000, &[], &[]).record;
            r.attribution = Attribution {
                interface_bytes: iface,
                attributed_bytes: attributed,
                unattributed: crate::model::UnattributedCauses {
                    forwarded,
                    kernel,
                    icmp_arp,
                    unknown_owner,
                },
            };
            r.lost.capture_drops = drops;
            r.lost.malformed_events = 1;
            r
        };
        let mut host = HostTotals::default();
        host.add(&record(6_000, 4_500, 1_000, 300, 150, 50, 7));
        host.add(&record(4_000, 3_000, 0, 500, 450, 50, 5));
        let totals = Totals {
            interfaces: vec![InterfaceTotal {
                name: "eth0".into(),
                total: counts(5_000, 5_000),
                ..InterfaceTotal::default()
            }],
            attributed: counts(9_000, 4_600),
            lost: Some(host.lost),
            attribution: Some(host.attribution),
            ..Totals::default()
        };
        assert_eq!(totals.attributed_ratio(), Some(0.75));
        let a = totals.attribution.unwrap();
        assert_eq!((a.interface_bytes, a.attributed_bytes), (10_000, 7_500));
        assert_eq!(
            a.unattributed.fields().collect::<Vec<_>>(),
            [
                ("forwarded", 1_000),
                ("kernel", 800),
                ("icmp_arp", 600),
                ("unknown_owner", 100)
            ]
        );
        assert_eq!(
            a.attributed_bytes + a.unattributed.total(),
            a.interface_bytes
        );
        assert_eq!(host.lost.capture_drops, 12);
        assert_eq!(host.lost.malformed_events, 2);
        assert_eq!(host.lost.total(), 14);
    }
}
