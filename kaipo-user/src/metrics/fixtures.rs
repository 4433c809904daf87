//! Synthetic live intervals for the metrics, alert and anomaly tests and for the benchmarks;
//! compiled only into tests and the `bench` feature, never into the shipped library.

use crate::{
    collect::BackendKind,
    model::Lost,
    model::{Bytes, InterfaceRecord, IntervalRecord},
    pipeline::LiveInterval,
    store::TrafficRow,
};

/// A live interval ending at `ts_ms` (1 s long): interfaces with `(name, rx bytes)`, apps with
/// `(name, tx bytes)`, one process each (pid = index + 100).
pub fn synthetic_interval(
    ts_ms: u64,
    ifaces: &[(&str, u64)],
    apps: &[(&str, u64)],
) -> LiveInterval {
    let traffic = apps
        .iter()
        .enumerate()
        .map(|(i, (app, tx))| TrafficRow {
            app: (*app).to_owned(),
            pid: 100 + i as u32,
            uid: 0,
            service: "https".into(),
            remote: "192.0.2.1".into(),
            tx_bytes: *tx,
            tx_packets: tx.div_ceil(1000),
            ..TrafficRow::default()
        })
        .collect();
    LiveInterval {
        record: IntervalRecord {
            ts_ms,
            interval_ms: 1000,
            backend: BackendKind::Ebpf,
            interfaces: ifaces
                .iter()
                .map(|(name, rx)| InterfaceRecord {
                    name: (*name).to_owned(),
                    rx_bytes: *rx,
                    tx_bytes: 0,
                    rx_packets: rx.div_ceil(1000),
                    tx_packets: 0,
                })
                .collect(),
            processes: Vec::new(),
            connections: Vec::new(),
            unattributed: Bytes::default(),
            attributed_ratio: None,
            attribution: Default::default(),
            lost: Lost::default(),
        },
        traffic,
        final_interval: false,
    }
}
