//! Totals since the daemon started, per interface, app and process, with the rate of the last
//! live interval: what `kaipo status` and each live snapshot show. These types are part of the
//! daemon's wire protocol (see `api::protocol`), so their JSON shape is stable.

use serde::{Deserialize, Serialize};

use crate::model::Lost;

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
    pub exited: bool,
    /// When it last had traffic, milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
    #[serde(flatten)]
    pub rate: Rates,
    #[serde(flatten)]
    pub total: Counts,
}

/// [`Lost`] summed since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostTotals {
    pub ringbuf_full: u64,
    pub sock_map_full: u64,
    pub owner_map_full: u64,
    pub flow_map_full: u64,
    pub flow_evictions: u64,
    pub iface_map_full: u64,
    pub malformed_events: u64,
}

impl LostTotals {
    pub fn add(&mut self, l: &Lost) {
        self.ringbuf_full += l.ringbuf_full;
        self.sock_map_full += l.sock_map_full;
        self.owner_map_full += l.owner_map_full;
        self.flow_map_full += l.flow_map_full;
        self.flow_evictions += l.flow_evictions;
        self.iface_map_full += l.iface_map_full;
        self.malformed_events += l.malformed_events;
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
    pub lost: LostTotals,
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
            lost: self.lost,
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
            out.processes_evicted = self.processes_evicted;
        } else {
            for app in &out.apps {
                out.attributed.add(&app.total);
            }
        }
        out
    }

    /// Process bytes over interface bytes since start. Processes are counted at the IP layer
    /// and interfaces at the link layer, and a process may also use interfaces that are not
    /// monitored, so this is a gauge (about 0.96 when everything on Ethernet is attributed),
    /// not an exact fraction. None without interface traffic.
    pub fn attributed_share(&self) -> Option<f64> {
        let on_ifaces: u64 = self.interfaces.iter().map(|i| i.total.bytes()).sum();
        (on_ifaces > 0).then(|| self.attributed.bytes() as f64 / on_ifaces as f64)
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
        assert_eq!(mine.attributed_share(), None);
        let everything = all.for_caller(None, Some(1));
        assert_eq!(everything.processes.len(), 1);
        assert_eq!(everything.unattributed.rx_bytes, 10);
        assert_eq!(everything.attributed_share(), Some(0.4));
    }
}
