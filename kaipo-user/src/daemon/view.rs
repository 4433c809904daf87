//! What each caller may see. Root and group `kaipo` see everything; anyone else sees their own
//! processes (and the connections and totals that belong to them) and nothing that belongs to
//! the host as a whole, since none of it can be tied to a user: no interfaces, no unattributed
//! traffic, no attribution of interface bytes, no lost counters, no database path or error.

use std::collections::HashSet;

use crate::{
    api::protocol::{ok_line, CallerInfo, DegradationInfo, SnapshotOut, StatusReport, StoreStatus},
    model::{Bytes, IntervalRecord, Lost},
    pipeline::{aggregate::Snapshot, bus::BusCounts, totals::Totals},
};

/// Apps and processes in each snapshot's totals (status has them all).
pub const SNAPSHOT_TOP: usize = 100;

/// What does not change while the daemon runs.
#[derive(Clone, Debug)]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_ms: u64,
    pub backend: String,
    pub degradations: Vec<DegradationInfo>,
    pub interval_ms: u64,
    pub live_interval_ms: u64,
    pub include_loopback: bool,
    pub interfaces: Vec<String>,
    pub sandbox: crate::api::protocol::SandboxStatus,
}

/// The snapshot line (newline included) for a caller limited to `only_uid`, or for everyone.
pub fn snapshot_line(snapshot: &Snapshot, only_uid: Option<u32>) -> String {
    match only_uid {
        None => snapshot
            .full_line
            .get_or_init(|| {
                let totals = snapshot.totals.for_caller(None, Some(SNAPSHOT_TOP));
                ok_line(
                    "snapshot",
                    &SnapshotOut {
                        record: &snapshot.record,
                        totals: &totals,
                    },
                )
            })
            .clone(),
        Some(uid) => {
            let record = record_for(&snapshot.record, uid);
            let totals = snapshot.totals.for_caller(Some(uid), Some(SNAPSHOT_TOP));
            ok_line(
                "snapshot",
                &SnapshotOut {
                    record: &record,
                    totals: &totals,
                },
            )
        }
    }
}

/// An interval record cut down to `uid`'s processes and their connections.
pub fn record_for(record: &IntervalRecord, uid: u32) -> IntervalRecord {
    let processes: Vec<_> = record
        .processes
        .iter()
        .filter(|p| p.uid == uid)
        .cloned()
        .collect();
    let pids: HashSet<u32> = processes.iter().map(|p| p.pid).collect();
    IntervalRecord {
        ts_ms: record.ts_ms,
        interval_ms: record.interval_ms,
        backend: record.backend,
        interfaces: Vec::new(),
        processes,
        connections: record
            .connections
            .iter()
            .filter(|c| pids.contains(&c.pid))
            .cloned()
            .collect(),
        unattributed: Bytes::default(),
        // Interface traffic is not theirs to see, so neither is its attribution; what the
        // collector lost belongs to no user either.
        attributed_ratio: None,
        attribution: Default::default(),
        lost: Lost::default(),
    }
}

/// The answer to `status` for one caller.
pub fn status(
    info: &DaemonInfo,
    latest: Option<&Snapshot>,
    bus: BusCounts,
    store: StoreStatus,
    caller: CallerInfo,
    now_ms: u64,
) -> StatusReport {
    let only_uid = (!caller.privileged).then_some(caller.uid);
    let totals = match latest {
        Some(s) => s.totals.for_caller(only_uid, None),
        None => Totals {
            since_ms: info.started_ms,
            ..Totals::default()
        },
    };
    // Limited callers' totals carry no attribution, so their ratio is None too.
    let attributed_ratio = totals.attributed_ratio();
    let store = if only_uid.is_none() {
        store
    } else {
        StoreStatus {
            path: None,
            last_error: None,
            last_error_ms: None,
            note: None,
            ..store
        }
    };
    StatusReport {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: info.pid,
        started_ms: info.started_ms,
        now_ms,
        backend: info.backend.clone(),
        degradations: info.degradations.clone(),
        interval_ms: info.interval_ms,
        live_interval_ms: info.live_interval_ms,
        include_loopback: info.include_loopback,
        interfaces: if only_uid.is_none() {
            info.interfaces.clone()
        } else {
            Vec::new()
        },
        caller,
        totals,
        attributed_ratio,
        bus,
        store,
        alerts: Vec::new(),
        maps: None,
        sandbox: Some(info.sandbox.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::{
        collect::BackendKind,
        model::{Attribution, ConnectionRecord, InterfaceRecord, ProcessRecord},
        pipeline::totals::{Counts, ProcessTotal},
    };

    fn process(pid: u32, uid: u32) -> ProcessRecord {
        ProcessRecord {
            exe: None,
            pid,
            name: format!("p{pid}"),
            cmdline: String::new(),
            uid,
            user: None,
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns: None,
            exited: false,
            rx_bytes: 1,
            tx_bytes: 2,
            rx_packets: 1,
            tx_packets: 1,
        }
    }

    fn snapshot() -> Snapshot {
        let conn = |pid| ConnectionRecord {
            service: String::new(),
            network: None,
            state: None,
            pid,
            proto: "udp".into(),
            local: "127.0.0.1:1".into(),
            remote: "127.0.0.1:2".into(),
            remote_name: None,
            rx_bytes: 1,
            tx_bytes: 2,
        };
        let total = |pid, uid| ProcessTotal {
            pid,
            uid,
            total: Counts {
                tx_bytes: 10,
                ..Counts::default()
            },
            ..ProcessTotal::default()
        };
        Snapshot {
            record: IntervalRecord {
                attributed_ratio: None,
                attribution: Default::default(),
                ts_ms: 5,
                interval_ms: 1000,
                backend: BackendKind::Ebpf,
                interfaces: vec![InterfaceRecord {
                    name: "eth0".into(),
                    rx_bytes: 9,
                    tx_bytes: 9,
                    rx_packets: 1,
                    tx_packets: 1,
                }],
                processes: vec![process(1, 0), process(2, 1000)],
                connections: vec![conn(1), conn(2)],
                unattributed: Bytes {
                    rx_bytes: 3,
                    tx_bytes: 0,
                },
                lost: Lost {
                    ringbuf_full: 4,
                    ..Lost::default()
                },
            },
            totals: Totals {
                processes: vec![total(1, 0), total(2, 1000)],
                lost: Some(Lost {
                    ringbuf_full: 9,
                    capture_drops: 2,
                    ..Lost::default()
                }),
                attribution: Some(Attribution {
                    interface_bytes: 800,
                    attributed_bytes: 600,
                    ..Attribution::default()
                }),
                ..Totals::default()
            },
            full_line: OnceLock::new(),
        }
    }

    #[test]
    fn an_unprivileged_caller_sees_only_their_processes() {
        let snap = snapshot();
        let mine: serde_json::Value =
            serde_json::from_str(&snapshot_line(&snap, Some(1000))).unwrap();
        let s = &mine["snapshot"];
        assert_eq!(s["interfaces"], serde_json::json!([]));
        assert_eq!(s["processes"].as_array().unwrap().len(), 1);
        assert_eq!(s["processes"][0]["pid"], 2);
        assert_eq!(s["connections"].as_array().unwrap().len(), 1);
        assert_eq!(s["connections"][0]["pid"], 2);
        assert_eq!(s["unattributed"]["rx_bytes"], 0);
        assert_eq!(s["totals"]["processes"][0]["pid"], 2);
        assert_eq!(s["totals"]["processes"].as_array().unwrap().len(), 1);
        // What the collector lost is the host's, not this user's.
        assert_eq!(s["lost"]["ringbuf_full"], 0);
        assert!(s["totals"].get("lost").is_none(), "{s}");
        assert!(s["totals"].get("attribution").is_none(), "{s}");

        let all: serde_json::Value = serde_json::from_str(&snapshot_line(&snap, None)).unwrap();
        assert_eq!(all["snapshot"]["processes"].as_array().unwrap().len(), 2);
        assert_eq!(all["snapshot"]["interfaces"][0]["name"], "eth0");
        assert_eq!(all["snapshot"]["ts_ms"], 5);
        assert_eq!(all["snapshot"]["lost"]["ringbuf_full"], 4);
        assert_eq!(all["snapshot"]["totals"]["lost"]["ringbuf_full"], 9);
        assert_eq!(all["snapshot"]["totals"]["lost"]["capture_drops"], 2);
        assert_eq!(
            all["snapshot"]["totals"]["attribution"]["attributed_bytes"],
            600
        );
        assert!(snap.full_line.get().is_some(), "rendered once, then reused");
    }

    #[test]
    fn status_hides_interfaces_from_unprivileged_callers() {
        let info = DaemonInfo {
            pid: 1,
            started_ms: 0,
            backend: "ebpf".into(),
            degradations: Vec::new(),
            interval_ms: 10_000,
            live_interval_ms: 1000,
            include_loopback: false,
            interfaces: vec!["eth0".into()],
            sandbox: Default::default(),
        };
        let snap = snapshot();
        let caller = |uid, privileged| CallerInfo { uid, privileged };
        let store = || StoreStatus {
            path: Some("/var/lib/kaipo/kaipo.db".into()),
            batches_written: 3,
            last_error: Some("disk I/O error".into()),
            last_error_ms: Some(7),
            ..StoreStatus::default()
        };
        let mine = status(
            &info,
            Some(&snap),
            BusCounts::default(),
            store(),
            caller(1000, false),
            9,
        );
        assert!(mine.interfaces.is_empty());
        assert_eq!(mine.totals.processes.len(), 1);
        assert_eq!(mine.attributed_ratio, None);
        assert_eq!((mine.totals.lost, mine.totals.attribution), (None, None));
        assert_eq!(
            (
                mine.store.path,
                mine.store.last_error,
                mine.store.last_error_ms
            ),
            (None, None, None)
        );
        assert_eq!(mine.store.batches_written, 3);
        let all = status(
            &info,
            Some(&snap),
            BusCounts::default(),
            store(),
            caller(0, true),
            9,
        );
        assert_eq!(all.interfaces, ["eth0"]);
        assert_eq!(all.totals.processes.len(), 2);
        assert_eq!(all.attributed_ratio, Some(0.75));
        assert_eq!(all.totals.lost.map(|l| l.total()), Some(11));
        assert_eq!(all.store.path.as_deref(), Some("/var/lib/kaipo/kaipo.db"));
        assert_eq!(all.store.last_error.as_deref(), Some("disk I/O error"));
        let early = status(
            &info,
            None,
            BusCounts::default(),
            store(),
            caller(0, true),
            9,
        );
        assert!(early.totals.processes.is_empty());
    }
}
