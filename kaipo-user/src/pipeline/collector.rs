//! The collector stage: the interval engine with the bus as its sink. Each closed live
//! interval goes onto the bus with its traffic broken down into store rows.
//!
//! Backpressure: an interval is closed only when the bus has room for it. When it has none,
//! the tick is skipped and counted; the kernel keeps counting, so the next interval covers the
//! gap.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use super::{bus::BusStats, LiveInterval};
use crate::{
    collect::backend::Collector,
    engine::{ClosedInterval, Engine, Ready, Schedule, Sink},
};

/// Runs until `stop` turns true (or its sender goes), then closes a final interval, waits for
/// room on the bus for it and detaches every program.
pub async fn run(
    engine: Engine,
    live_interval: Duration,
    bus: mpsc::Sender<LiveInterval>,
    stats: Arc<BusStats>,
    mut stop: watch::Receiver<bool>,
    metrics: Option<crate::metrics::SharedMetrics>,
) -> anyhow::Result<()> {
    let mut sink = BusSink {
        bus,
        stats,
        metrics,
        permit: None,
    };
    let schedule = Schedule {
        interval: live_interval,
        duration: None,
    };
    engine
        .run(schedule, &mut sink, super::bus::stopped(&mut stop))
        .await
}

struct BusSink {
    bus: mpsc::Sender<LiveInterval>,
    stats: Arc<BusStats>,
    metrics: Option<crate::metrics::SharedMetrics>,
    /// Room on the bus reserved by `ready` for the interval about to close.
    permit: Option<mpsc::OwnedPermit<LiveInterval>>,
}

impl Sink for BusSink {
    fn wants_rows(&self) -> bool {
        true
    }

    async fn ready(&mut self, final_interval: bool) -> Ready {
        let reserved = if final_interval {
            // The last interval waits for room: it must not be lost.
            self.bus.clone().reserve_owned().await.ok()
        } else {
            match self.bus.clone().try_reserve_owned() {
                Ok(permit) => Some(permit),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats
                        .intervals_deferred
                        .fetch_add(1, Ordering::Relaxed);
                    return Ready::Later;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => None,
            }
        };
        match reserved {
            Some(permit) => {
                self.permit = Some(permit);
                Ready::Now
            }
            // The aggregator is gone; nothing would receive the interval.
            None => Ready::Stop,
        }
    }

    async fn deliver(
        &mut self,
        interval: ClosedInterval,
        collector: &Collector,
    ) -> anyhow::Result<bool> {
        let maps = collector.map_usage();
        *self.stats.maps.lock().unwrap_or_else(|p| p.into_inner()) = maps;
        if let Some(metrics) = &self.metrics {
            // Read here because only this stage holds the programs.
            let programs = collector
                .program_stats()
                .into_iter()
                .map(
                    |(name, run_time_ns, run_count)| crate::metrics::ProgramStat {
                        name,
                        run_time_ns,
                        run_count,
                    },
                )
                .collect();
            metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_kernel(programs, maps);
        }
        let Some(permit) = self.permit.take() else {
            return Ok(false);
        };
        permit.send(LiveInterval {
            record: interval.record,
            traffic: interval.rows,
            final_interval: interval.final_interval,
        });
        Ok(true)
    }
}
