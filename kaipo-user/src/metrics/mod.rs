//! Prometheus metrics: `kaipo daemon` serves `/metrics` in the text exposition format 0.0.4
//! when `[metrics] listen` is set.
//!
//! [`state::MetricsState`] keeps its own counters, fed by every live interval through the
//! pipeline's observer hook, rather than reading the aggregator's totals: those forget quiet
//! apps to stay bounded, and a Prometheus counter must never go down.

#[cfg(feature = "bench")]
pub mod bench;
pub mod exposition;
#[cfg(any(test, feature = "bench"))]
pub mod fixtures;
pub mod labels;
pub mod process;
pub mod ranked;
#[cfg(unix)]
pub mod server;
pub mod state;

use std::sync::{Arc, Mutex};

pub use self::state::MetricsState;
use crate::pipeline::{totals::Totals, IntervalObserver, LiveInterval};

/// Kernel run time and run count of one eBPF program since it was loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStat {
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// The `host` label: the command line's, else the file's, else the host name.
pub fn host_label(config: &crate::config::MetricsConfig, flag: Option<&str>) -> String {
    match flag {
        Some(h) => h.to_owned(),
        None if !config.host.is_empty() => config.host.clone(),
        None => crate::alert::notification::host_name(),
    }
}

/// The state the scrape handler renders and the pipeline feeds.
pub type SharedMetrics = Arc<Mutex<MetricsState>>;

/// Feeds [`MetricsState`] from the aggregator's task.
pub struct MetricsObserver(pub SharedMetrics);

impl IntervalObserver for MetricsObserver {
    fn observe(&mut self, live: &LiveInterval, _totals: &Totals) {
        // A poisoned lock means a scrape panicked mid-render; the counters are still whole.
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        // The labels never change while the daemon runs (a restart takes them), so the rows
        // are grouped outside the lock and a scrape waits only for the small update.
        let labels = lock().labels().to_vec();
        let grouped = MetricsState::group(&labels, live);
        lock().observe_grouped(live, grouped);
    }
}
