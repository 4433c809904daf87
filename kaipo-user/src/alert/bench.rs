//! Alert evaluation cost, for `cargo xtask bench metrics` (feature `bench`).

use std::time::{Duration, Instant};

use super::{
    rules::{Direction, Rule, RuleKind, Scope},
    AlertEngine,
};
use crate::metrics::fixtures::synthetic_interval;

/// Median time to evaluate 1000 rate rules (each on its own app, half of them above their
/// threshold) over one interval of 1000 apps.
pub fn bench_alert_evaluation() -> Duration {
    let names: Vec<String> = (0..1000).map(|i| format!("app-{i:04}")).collect();
    let rules = names
        .iter()
        .enumerate()
        .map(|(i, n)| Rule {
            name: format!("r{i}"),
            kind: RuleKind::Rate,
            scope: Scope::App,
            target: Some(n.clone()),
            direction: Direction::Both,
            above: Some(if i % 2 == 0 { 10 } else { u64::MAX }),
            for_: Duration::from_secs(60),
            learn: Duration::from_secs(3600),
            score: None,
            quota: None,
        })
        .collect();
    let apps: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 100_000)).collect();
    let mut engine = AlertEngine::new(rules);
    let mut times: Vec<Duration> = (0..51u64)
        .map(|i| {
            let live = synthetic_interval(1000 * (i + 1), &[("eth0", 1000)], &apps);
            let start = Instant::now();
            std::hint::black_box(engine.evaluate(&live));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_evaluation_benchmark_runs() {
        let took = super::bench_alert_evaluation();
        eprintln!("alert evaluation, 1000 rules: {took:?}");
        assert!(took > std::time::Duration::ZERO);
    }
}
