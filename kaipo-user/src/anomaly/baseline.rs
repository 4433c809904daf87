//! Per-app baselines by hour of the week: an exponentially weighted mean and variance of each
//! app's rate for each of the 168 (app, hour-of-week) slots, so that a nightly backup at 02:00
//! on Sundays is normal then and only then.
//!
//! A value more than `min_score` deviations above its slot's mean is a finding. Findings are
//! not learnt from, so a long anomaly does not become the new normal; everything else is. A
//! slot needs `min_samples` values before it judges anything. Deviation has a floor
//! (`min_deviation`): a perfectly steady app would otherwise make any wobble infinitely
//! unusual.

use std::collections::HashMap;

use super::{Analyzer, Finding};
use crate::{pipeline::LiveInterval, store::UNATTRIBUTED_APP};

pub const HOURS_PER_WEEK: u64 = 168;
/// Apps with baselines at most; past this, new apps are not learnt.
pub const MAX_APPS: usize = 2048;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    mean: f64,
    var: f64,
    samples: u32,
}

pub struct Baseline {
    /// Weight of each new value (EWMA smoothing), 0 < alpha <= 1.
    pub alpha: f64,
    pub min_score: f64,
    pub min_samples: u32,
    /// Bytes per second.
    pub min_deviation: f64,
    slots: HashMap<String, Box<[Slot; HOURS_PER_WEEK as usize]>>,
}

/// The hour of the week (0 = Thursday 00:00 UTC, the Unix epoch's weekday) of `ts_ms`.
pub fn hour_of_week(ts_ms: u64) -> usize {
    (ts_ms / 3_600_000 % HOURS_PER_WEEK) as usize
}

impl Baseline {
    pub fn new(min_score: f64) -> Self {
        Self {
            alpha: 0.1,
            min_score,
            min_samples: 10,
            min_deviation: 1024.0,
            slots: HashMap::new(),
        }
    }

    /// Learns one rate (bytes per second) of `app` at `ts_ms`, from history or live.
    pub fn learn(&mut self, app: &str, ts_ms: u64, rate: f64) {
        if !self.slots.contains_key(app) && self.slots.len() >= MAX_APPS {
            return;
        }
        let slots = self
            .slots
            .entry(app.to_owned())
            .or_insert_with(|| Box::new([Slot::default(); HOURS_PER_WEEK as usize]));
        let s = &mut slots[hour_of_week(ts_ms)];
        if s.samples == 0 {
            s.mean = rate;
        } else {
            // West's incremental EWMA variance.
            let diff = rate - s.mean;
            let incr = self.alpha * diff;
            s.mean += incr;
            s.var = (1.0 - self.alpha) * (s.var + diff * incr);
        }
        s.samples = s.samples.saturating_add(1);
    }

    /// The score of `rate` against `app`'s slot at `ts_ms`, with the slot's mean and
    /// deviation, once the slot has enough samples.
    pub fn score(&self, app: &str, ts_ms: u64, rate: f64) -> Option<(f64, f64, f64)> {
        let s = self.slots.get(app)?[hour_of_week(ts_ms)];
        if s.samples < self.min_samples {
            return None;
        }
        let dev = s.var.sqrt().max(self.min_deviation);
        Some(((rate - s.mean) / dev, s.mean, dev))
    }

    /// Fills baselines from stored history: `rows` of (app, end of bucket, bytes, bucket
    /// length in ms).
    pub fn learn_history<'a>(&mut self, rows: impl IntoIterator<Item = (&'a str, u64, u64, u64)>) {
        for (app, ts_ms, bytes, len_ms) in rows {
            if len_ms > 0 {
                self.learn(app, ts_ms, bytes as f64 * 1000.0 / len_ms as f64);
            }
        }
    }
}

impl Analyzer for Baseline {
    fn name(&self) -> &str {
        "baseline"
    }

    fn analyze(&mut self, interval: &LiveInterval) -> Vec<Finding> {
        let r = &interval.record;
        if r.interval_ms == 0 {
            return Vec::new();
        }
        // The slot of the interval's middle: its end may already be in the next hour.
        let at = r.ts_ms.saturating_sub(r.interval_ms / 2);
        let mut per_app: HashMap<&str, u64> = HashMap::new();
        for row in interval
            .traffic
            .iter()
            .filter(|row| !(row.pid == 0 && row.app == UNATTRIBUTED_APP))
        {
            *per_app.entry(row.app.as_str()).or_default() += row.rx_bytes + row.tx_bytes;
        }
        // Apps with a baseline but silent now are at rate 0: learnt, never a finding (a
        // drop is not what this detector looks for).
        let silent: Vec<String> = self
            .slots
            .keys()
            .filter(|a| !per_app.contains_key(a.as_str()))
            .cloned()
            .collect();
        for app in silent {
            self.learn(&app, at, 0.0);
        }
        let mut out = Vec::new();
        for (app, bytes) in per_app {
            let rate = bytes as f64 * 1000.0 / r.interval_ms as f64;
            match self.score(app, at, rate) {
                Some((score, mean, dev)) if score >= self.min_score => out.push(Finding {
                    analyzer: self.name().to_owned(),
                    key: app.to_owned(),
                    score,
                    observed: rate,
                    baseline: mean,
                    deviation: dev,
                }),
                _ => self.learn(app, at, rate),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

#[cfg(test)]
#[path = "baseline_tests.rs"]
mod tests;
