//! Scrape cost with many apps and interfaces, for `cargo xtask bench metrics` (feature
//! `bench`).

use std::time::{Duration, Instant};

use super::{fixtures::synthetic_interval, process, MetricsState};

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

/// What a fleet node's daemon faces: one interval with 10,000 processes of 10,000 apps and
/// 100,000 connections (10 remotes each), labels app and container, top 20. Returns the time
/// grouping the rows takes (on the aggregator's task, outside the lock), the time the
/// grouped interval takes to fold in (under the lock a scrape waits for), the median scrape
/// after it, and the number of samples the scrape holds.
pub fn bench_many_processes() -> (Duration, Duration, Duration, usize) {
    use crate::{metrics::labels::LabelKind, store::TrafficRow};
    let mut interval = synthetic_interval(1000, &[("eth0", 1_000_000)], &[]);
    interval.traffic = (0..100_000u32)
        .map(|i| {
            let p = i / 10;
            TrafficRow {
                app: format!("app-{p:05}"),
                pid: 1000 + p,
                container: (p % 3 == 0).then(|| format!("{:012x}", p % 50)),
                remote: format!("192.0.2.{}", i % 10),
                service: "https".into(),
                tx_bytes: 100 + u64::from(p),
                tx_packets: 1,
                ..TrafficRow::default()
            }
        })
        .collect();
    let mut state =
        MetricsState::with_labels(20, vec![LabelKind::App, LabelKind::Container], "n".into());
    let start = Instant::now();
    let grouped = MetricsState::group(state.labels(), &interval);
    let group = start.elapsed();
    let start = Instant::now();
    state.observe_grouped(&interval, grouped);
    let apply = start.elapsed();
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let start = Instant::now();
            let body = state.render(process::read().as_ref());
            std::hint::black_box(body.len());
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    (group, apply, times[times.len() / 2], state.series_count())
}

#[cfg(test)]
mod tests {
    #[test]
    fn many_processes_keep_the_series_bounded() {
        let (group, apply, scrape, series) = super::bench_many_processes();
        eprintln!(
            "10k processes, 100k connections: grouped {group:?}, folded in {apply:?}, scrape \
             {scrape:?}, {series} samples"
        );
        // 1 interface x 4 + (20 shown + other) x 2 directions x 2 families + 2 workloads (no
        // container, pod or unit, and "(other)") x 2 x 2 + 4 + 1 + 4 causes + 10 lost + 1 + 1
        // (no ratio: nothing split; no process figures in the count).
        assert_eq!(series, 4 + 21 * 4 + 8 + 4 + 1 + 4 + 10 + 1 + 1);
    }

    #[test]
    fn the_scrape_benchmark_renders_every_series() {
        let took = super::bench_scrape();
        eprintln!("scrape with 1000 apps and 100 interfaces: {took:?}");
        assert!(took > std::time::Duration::ZERO);
    }
}
