//! Turning per-interval deltas into the rates, totals and sparklines the tables show.
//!
//! Rates are a moving average over the last [`SMOOTHING_INTERVALS`] intervals, computed as
//! the bytes of those intervals over their summed length: a bursty process reads steadily,
//! a stalled one falls to zero within three intervals, and an interval that ran long (a busy
//! collector) counts by its real length instead of as an equal.

use std::collections::VecDeque;

/// Intervals averaged into a rate.
pub const SMOOTHING_INTERVALS: usize = 3;
/// How much history a sparkline covers, in milliseconds.
pub const SPARKLINE_WINDOW_MS: u64 = 60_000;
/// Bounds a sparkline's memory when intervals are very short (a 10 ms interval would
/// otherwise keep 6000 samples per process).
const SPARKLINE_MAX_SAMPLES: usize = 240;

/// Bytes received and sent during one interval of `ms` milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub rx: u64,
    pub tx: u64,
    pub ms: u64,
}

impl Sample {
    pub fn rx_per_sec(&self) -> u64 {
        per_sec(self.rx, self.ms) as u64
    }

    pub fn tx_per_sec(&self) -> u64 {
        per_sec(self.tx, self.ms) as u64
    }
}

fn per_sec(bytes: u64, ms: u64) -> f64 {
    if ms == 0 {
        0.0
    } else {
        bytes as f64 * 1000.0 / ms as f64
    }
}

/// The last [`SMOOTHING_INTERVALS`] samples, newest last.
#[derive(Clone, Debug, Default)]
pub struct Smoothed {
    ring: [Sample; SMOOTHING_INTERVALS],
    /// Where the next sample goes.
    next: usize,
    len: usize,
}

impl Smoothed {
    pub fn push(&mut self, sample: Sample) {
        self.ring[self.next] = sample;
        self.next = (self.next + 1) % SMOOTHING_INTERVALS;
        self.len = (self.len + 1).min(SMOOTHING_INTERVALS);
    }

    /// Adds to the newest sample: a second record with the same key in one interval.
    pub fn merge_last(&mut self, rx: u64, tx: u64) {
        if self.len == 0 {
            return;
        }
        let last = (self.next + SMOOTHING_INTERVALS - 1) % SMOOTHING_INTERVALS;
        self.ring[last].rx = self.ring[last].rx.saturating_add(rx);
        self.ring[last].tx = self.ring[last].tx.saturating_add(tx);
    }

    pub fn last(&self) -> Option<Sample> {
        (self.len > 0)
            .then(|| self.ring[(self.next + SMOOTHING_INTERVALS - 1) % SMOOTHING_INTERVALS])
    }

    fn window(&self) -> Sample {
        self.ring[..self.len]
            .iter()
            .fold(Sample::default(), |sum, s| Sample {
                rx: sum.rx.saturating_add(s.rx),
                tx: sum.tx.saturating_add(s.tx),
                ms: sum.ms.saturating_add(s.ms),
            })
    }

    /// Bytes per second received over the window.
    pub fn rx(&self) -> f64 {
        let w = self.window();
        per_sec(w.rx, w.ms)
    }

    pub fn tx(&self) -> f64 {
        let w = self.window();
        per_sec(w.tx, w.ms)
    }

    pub fn both(&self) -> f64 {
        let w = self.window();
        per_sec(w.rx.saturating_add(w.tx), w.ms)
    }
}

/// Per-interval samples covering the last [`SPARKLINE_WINDOW_MS`], oldest first.
#[derive(Clone, Debug, Default)]
pub struct RateHistory {
    samples: VecDeque<Sample>,
    span_ms: u64,
}

impl RateHistory {
    pub fn push(&mut self, sample: Sample) {
        self.samples.push_back(sample);
        self.span_ms = self.span_ms.saturating_add(sample.ms);
        while self.span_ms > SPARKLINE_WINDOW_MS || self.samples.len() > SPARKLINE_MAX_SAMPLES {
            let Some(old) = self.samples.pop_front() else {
                break;
            };
            self.span_ms -= old.ms;
        }
    }

    pub fn samples(&self) -> impl ExactSizeIterator<Item = &Sample> + DoubleEndedIterator {
        self.samples.iter()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Bytes since the dashboard started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub rx: u64,
    pub tx: u64,
}

/// Rate, totals and optionally a sparkline of one row, fed one interval at a time.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    pub rate: Smoothed,
    pub history: Option<RateHistory>,
    pub totals: Totals,
    /// The interval this meter last received a sample in.
    interval: u64,
}

impl Meter {
    pub fn with_history() -> Self {
        Self {
            history: Some(RateHistory::default()),
            ..Self::default()
        }
    }

    /// Counts traffic in interval number `interval` (numbered from 1).
    pub fn add(&mut self, interval: u64, rx: u64, tx: u64, ms: u64) {
        if self.interval == interval {
            self.rate.merge_last(rx, tx);
        } else {
            self.rate.push(Sample { rx, tx, ms });
            self.interval = interval;
        }
        self.totals.rx = self.totals.rx.saturating_add(rx);
        self.totals.tx = self.totals.tx.saturating_add(tx);
    }

    /// Ends interval `interval`: a row without traffic in it gets a zero sample, so its rate
    /// decays instead of freezing at its last value.
    pub fn close(&mut self, interval: u64, ms: u64) {
        if self.interval != interval {
            self.rate.push(Sample { rx: 0, tx: 0, ms });
            self.interval = interval;
        }
        if let (Some(history), Some(last)) = (self.history.as_mut(), self.rate.last()) {
            history.push(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_bytes_of_the_last_three_intervals_over_their_length() {
        let mut meter = Meter::with_history();
        meter.add(1, 1000, 100, 1000);
        meter.close(1, 1000);
        assert_eq!((meter.rate.rx(), meter.rate.tx()), (1000.0, 100.0));
        meter.add(2, 2000, 0, 1000);
        meter.close(2, 1000);
        assert_eq!(meter.rate.rx(), 1500.0);
        meter.add(3, 6000, 500, 2000);
        meter.close(3, 2000);
        // (1000 + 2000 + 6000) bytes over 4 s.
        assert_eq!(meter.rate.rx(), 2250.0);
        assert_eq!(meter.rate.tx(), 150.0);
        assert_eq!(meter.rate.both(), 2400.0);
        // The first interval falls out of the window; an interval without traffic counts zero.
        meter.close(4, 1000);
        assert_eq!(meter.rate.rx(), 2000.0);
        assert_eq!(meter.totals, Totals { rx: 9000, tx: 600 });
        let sparkline: Vec<u64> = meter
            .history
            .as_ref()
            .map(|h| h.samples().map(Sample::rx_per_sec).collect())
            .unwrap_or_default();
        assert_eq!(sparkline, vec![1000, 2000, 3000, 0]);
    }

    #[test]
    fn a_second_record_in_one_interval_adds_up() {
        let mut meter = Meter::default();
        meter.add(1, 300, 30, 1000);
        meter.add(1, 200, 20, 1000);
        meter.close(1, 1000);
        assert_eq!((meter.rate.rx(), meter.rate.tx()), (500.0, 50.0));
        assert_eq!(meter.totals, Totals { rx: 500, tx: 50 });
    }

    #[test]
    fn sparkline_keeps_sixty_seconds() {
        let mut history = RateHistory::default();
        for i in 0..75 {
            history.push(Sample {
                rx: i,
                tx: 0,
                ms: 1000,
            });
        }
        assert_eq!(history.len(), 60);
        assert_eq!(history.samples().next().map(|s| s.rx), Some(15));
        let mut short = RateHistory::default();
        for _ in 0..1000 {
            short.push(Sample {
                rx: 1,
                tx: 0,
                ms: 10,
            });
        }
        assert_eq!(short.len(), SPARKLINE_MAX_SAMPLES);
    }
}
