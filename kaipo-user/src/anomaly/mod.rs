//! Anomaly detection: analyzers look at every live interval and report findings, which alert
//! rules of kind `anomaly` turn into alerts. Another detector is one file implementing
//! [`Analyzer`].

pub mod baseline;
pub mod history;

use serde::{Deserialize, Serialize};

use crate::pipeline::LiveInterval;

/// Something unusual about one key (an app) in one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The analyzer's name.
    pub analyzer: String,
    /// What is unusual (an app name).
    pub key: String,
    /// How unusual: standard deviations from the baseline for [`baseline::Baseline`].
    pub score: f64,
    /// The rate seen, bytes per second.
    pub observed: f64,
    /// The rate expected, bytes per second, and its standard deviation.
    pub baseline: f64,
    pub deviation: f64,
}

pub trait Analyzer: Send + Sync {
    fn name(&self) -> &str;
    /// Findings about this interval; the analyzer updates what it has learnt.
    fn analyze(&mut self, interval: &LiveInterval) -> Vec<Finding>;
}
