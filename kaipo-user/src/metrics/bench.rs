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

#[cfg(test)]
mod tests {
    #[test]
    fn the_scrape_benchmark_renders_every_series() {
        let took = super::bench_scrape();
        eprintln!("scrape with 1000 apps and 100 interfaces: {took:?}");
        assert!(took > std::time::Duration::ZERO);
    }
}
