//! Scrape cost with many apps and interfaces, for `cargo xtask bench`, and the synthetic
//! intervals it (and the metrics and alert tests) feed in.

use std::time::{Duration, Instant};

use super::{process, MetricsState};
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

/// Median time to render `/metrics` with 1000 apps (`top_apps` = 1000, the most allowed, so
/// every app has its series) and 100 interfaces.
pub fn bench_scrape() -> Duration {
    let names: Vec<String> = (0..1000).map(|i| format!("app-{i:04}")).collect();
    let ifaces: Vec<String> = (0..100).map(|i| format!("eth{i}")).collect();
    let apps: Vec<(&str, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), 1000 + i as u64))
        .collect();
    let ifs: Vec<(&str, u64)> = ifaces.iter().map(|n| (n.as_str(), 1_000_000)).collect();
    let mut state = MetricsState::new(crate::config::MAX_TOP_APPS);
    state.observe(&synthetic_interval(1000, &ifs, &apps));
    let mut times: Vec<Duration> = (0..51)
        .map(|_| {
            let start = Instant::now();
            // What a scrape does: read kaipo's own figures and render everything.
            let body = state.render(process::read().as_ref());
            std::hint::black_box(body.len());
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scrape_benchmark_renders_every_series() {
        let took = super::bench_scrape();
        eprintln!("scrape with 1000 apps and 100 interfaces: {took:?}");
        assert!(took > std::time::Duration::ZERO);
    }
}
