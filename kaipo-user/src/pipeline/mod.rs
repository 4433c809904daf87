//! The daemon's processing pipeline.
//!
//! ```text
//! collector ──bus──▶ aggregator ──▶ store worker      (batches; dropped and counted when full)
//!  (live intervals,      │
//!   bounded)             ├────────▶ subscribers       (snapshots; a slow one misses some, counted)
//!                        └────────▶ latest snapshot   (what `status` answers from)
//! ```
//!
//! Every queue is bounded. The collector's queue pushes back without losing anything: when the
//! aggregator has no room, the collector does not close the interval, the kernel keeps
//! counting, and the next interval covers both. Further down, what cannot wait is dropped and
//! counted in [`bus::BusStats`], which `kaipo status` shows.

pub mod aggregate;
pub mod bus;
#[cfg(unix)]
pub mod collector;
pub mod totals;

use crate::{model::IntervalRecord, store::TrafficRow};

/// A consumer of every live interval (metrics, alerts), called on the aggregator's task right
/// after the interval is folded in. It must not block: anything slow belongs on its own task
/// behind a bounded queue.
pub trait IntervalObserver: Send {
    fn observe(&mut self, live: &LiveInterval, totals: &totals::Totals);

    /// The interval last observed closed a store batch: history holds everything observed so
    /// far (unless the store had no room for it).
    fn batch_closed(&mut self) {}
}

/// One closed live interval, as the collector hands it to the aggregator.
#[derive(Clone, Debug)]
pub struct LiveInterval {
    /// The interval as `kaipo watch --json` prints it.
    pub record: IntervalRecord,
    /// Its traffic per process, remote and service (unattributed traffic as one row), in the
    /// shape the store keeps.
    pub traffic: Vec<TrafficRow>,
    /// The last interval before the daemon stops: the aggregator flushes its batch.
    pub final_interval: bool,
}
