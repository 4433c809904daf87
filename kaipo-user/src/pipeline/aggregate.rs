//! The stats aggregator: folds live intervals into totals since start, gathers them into one
//! store batch per store interval, and publishes a snapshot per live interval.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{atomic::Ordering, Arc, OnceLock},
};

use tokio::sync::mpsc;

use super::{
    bus::{send_or_count, BusStats, Publisher, StoreJob},
    totals::{AppTotal, Counts, HostTotals, InterfaceTotal, ProcessTotal, Totals},
    LiveInterval,
};
use crate::{
    model::IntervalRecord,
    store::{IfaceRow, IntervalBatch, TrafficRow, UNATTRIBUTED_APP},
};

/// Processes kept in the totals; past this, those quiet the longest are dropped (counted).
pub const MAX_PROCESSES: usize = 4096;
/// (app, user) pairs kept in the totals.
pub const MAX_APPS: usize = 1024;

/// What one live interval looked like, and what has come of everything so far.
pub struct Snapshot {
    pub record: IntervalRecord,
    pub totals: Totals,
    /// The wire line for callers who see everything, rendered once by the first who needs it.
    pub full_line: OnceLock<String>,
}

/// A total and the part of it from the latest live interval.
#[derive(Clone, Debug, Default)]
struct Tracked<T> {
    info: T,
    total: Counts,
    last: Counts,
    last_tick: u64,
}

impl<T> Tracked<T> {
    fn new(info: T) -> Self {
        Self {
            info,
            total: Counts::default(),
            last: Counts::default(),
            last_tick: 0,
        }
    }

    fn add(&mut self, c: &Counts, tick: u64) {
        if self.last_tick != tick {
            self.last = Counts::default();
            self.last_tick = tick;
        }
        self.total.add(c);
        self.last.add(c);
    }

    /// The latest interval's part, if the latest interval is `tick`.
    fn last_at(&self, tick: u64) -> Counts {
        if self.last_tick == tick {
            self.last
        } else {
            Counts::default()
        }
    }
}

#[derive(Default)]
struct PendingBatch {
    ticks: u32,
    /// End of the grid slot the batch is stamped with: it closes on the first live interval
    /// that reaches it, however late that is.
    closes_at_ms: u64,
    traffic: HashMap<(u32, u64, String, String, String), TrafficRow>,
    interfaces: BTreeMap<String, Counts>,
}

pub struct Aggregator {
    store_interval_ms: u64,
    batch: PendingBatch,
    /// End of the slot of the last batch handed out: the next one is stamped after it.
    last_slot_end_ms: u64,
    tick: u64,
    since_ms: u64,
    last_interval_ms: u64,
    interfaces: BTreeMap<String, Tracked<()>>,
    apps: HashMap<(String, u32), Tracked<Option<String>>>,
    processes: HashMap<(u32, u64), Tracked<ProcessTotal>>,
    unattributed: Counts,
    attributed: Counts,
    host: HostTotals,
    processes_evicted: u64,
    /// Whether the collector joins interface bytes to sockets; without, the totals carry no
    /// attribution rather than one of nothing.
    flows: bool,
}

fn counts_of(row: &TrafficRow) -> Counts {
    Counts {
        rx_bytes: row.rx_bytes,
        tx_bytes: row.tx_bytes,
        rx_packets: row.rx_packets,
        tx_packets: row.tx_packets,
    }
}

impl Aggregator {
    /// Store batches are the slots of a grid of `store_interval_ms` of wall-clock time (whole
    /// minutes for a 60 s interval): each batch is stamped with the end of its slot and the
    /// slot's length, so history lands on the grid and within one bucket of each coarser tier
    /// (the store files a batch by its start), however late the live intervals come.
    /// Whether the collector counts flows; without (`--no-flows`), the totals carry no
    /// attribution.
    pub fn flows(mut self, flows: bool) -> Self {
        self.flows = flows;
        self
    }

    pub fn new(store_interval_ms: u64, since_ms: u64) -> Self {
        Self {
            store_interval_ms: store_interval_ms.max(1),
            batch: PendingBatch::default(),
            last_slot_end_ms: 0,
            tick: 0,
            since_ms,
            last_interval_ms: 0,
            interfaces: BTreeMap::new(),
            apps: HashMap::new(),
            processes: HashMap::new(),
            unattributed: Counts::default(),
            attributed: Counts::default(),
            flows: true,
            host: HostTotals::default(),
            processes_evicted: 0,
        }
    }

    /// Folds one live interval in. Returns the store batch when the interval reached the end
    /// of a store interval (or is the final one).
    pub fn add(&mut self, live: &LiveInterval) -> Option<IntervalBatch> {
        self.tick += 1;
        let tick = self.tick;
        let r = &live.record;
        if self.batch.ticks == 0 {
            // The slot the interval starts in; never one already handed out, even when the
            // interval reaches back before the last close (a late tick, a clock step back),
            // so no two batches share a stamp.
            let start = r.ts_ms.saturating_sub(r.interval_ms);
            let slot_end = (start / self.store_interval_ms + 1) * self.store_interval_ms;
            self.batch.closes_at_ms =
                slot_end.max(self.last_slot_end_ms.saturating_add(self.store_interval_ms));
        }
        self.last_interval_ms = r.interval_ms;
        self.host.add(r);
        for iface in &r.interfaces {
            let c = Counts {
                rx_bytes: iface.rx_bytes,
                tx_bytes: iface.tx_bytes,
                rx_packets: iface.rx_packets,
                tx_packets: iface.tx_packets,
            };
            self.interfaces
                .entry(iface.name.clone())
                .or_insert_with(|| Tracked::new(()))
                .add(&c, tick);
            self.batch
                .interfaces
                .entry(iface.name.clone())
                .or_default()
                .add(&c);
        }
        for row in &live.traffic {
            self.add_row(row, r, tick);
        }
        self.batch.ticks += 1;
        self.bound();
        (live.final_interval || r.ts_ms >= self.batch.closes_at_ms)
            .then(|| self.flush())
            .flatten()
    }

    fn add_row(&mut self, row: &TrafficRow, record: &IntervalRecord, tick: u64) {
        let c = counts_of(row);
        let key = (
            row.pid,
            row.start_time,
            row.app.clone(),
            row.remote.clone(),
            row.service.clone(),
        );
        match self.batch.traffic.get_mut(&key) {
            Some(pending) => {
                pending.rx_bytes += row.rx_bytes;
                pending.tx_bytes += row.tx_bytes;
                pending.rx_packets += row.rx_packets;
                pending.tx_packets += row.tx_packets;
                // A name found later in the batch (reverse DNS answers after the first
                // interval a remote shows in) is kept.
                if row.remote_name.is_some() {
                    pending.remote_name.clone_from(&row.remote_name);
                }
            }
            None => {
                self.batch.traffic.insert(key, row.clone());
            }
        }
        if row.app == UNATTRIBUTED_APP && row.pid == 0 {
            self.unattributed.add(&c);
            return;
        }
        self.attributed.add(&c);
        self.apps
            .entry((row.app.clone(), row.uid))
            .or_insert_with(|| Tracked::new(row.user.clone()))
            .add(&c, tick);
        let seen = record.processes.iter().find(|p| p.pid == row.pid);
        let process = self
            .processes
            .entry((row.pid, row.start_time))
            .or_insert_with(|| {
                Tracked::new(ProcessTotal {
                    pid: row.pid,
                    start_time: row.start_time,
                    ..ProcessTotal::default()
                })
            });
        let info = &mut process.info;
        info.app.clone_from(&row.app);
        info.cmdline.clone_from(&row.cmdline);
        info.uid = row.uid;
        info.user.clone_from(&row.user);
        info.container.clone_from(&row.container);
        info.container_name.clone_from(&row.container_name);
        info.pod.clone_from(&row.pod);
        info.pod_namespace.clone_from(&row.pod_namespace);
        info.unit.clone_from(&row.unit);
        info.last_seen_ms = record.ts_ms;
        if let Some(p) = seen {
            info.name.clone_from(&p.name);
            info.exited = p.exited;
        } else if info.name.is_empty() {
            info.name.clone_from(&row.app);
        }
        process.add(&c, tick);
    }

    /// Keeps the totals' maps bounded, dropping whatever has been quiet the longest.
    fn bound(&mut self) {
        if self.processes.len() > MAX_PROCESSES {
            let evicted = evict_quietest(&mut self.processes, MAX_PROCESSES);
            self.processes_evicted += evicted as u64;
        }
        if self.apps.len() > MAX_APPS {
            evict_quietest(&mut self.apps, MAX_APPS);
        }
    }

    /// The pending batch, if any live interval went into it since the last one, stamped with
    /// its slot: a late close (a stalled tick that ended past the slot) keeps the slot, and a
    /// partial batch (the first, or the last before stopping) is still the whole slot.
    pub fn flush(&mut self) -> Option<IntervalBatch> {
        let b = std::mem::take(&mut self.batch);
        if b.ticks == 0 {
            return None;
        }
        self.last_slot_end_ms = b.closes_at_ms;
        let mut traffic: Vec<TrafficRow> = b.traffic.into_values().collect();
        traffic.sort_by(|a, b| (a.pid, &a.remote, &a.service).cmp(&(b.pid, &b.remote, &b.service)));
        Some(IntervalBatch {
            ts_ms: i64::try_from(b.closes_at_ms).unwrap_or(i64::MAX),
            interval_ms: u32::try_from(self.store_interval_ms).unwrap_or(u32::MAX),
            traffic,
            interfaces: b
                .interfaces
                .into_iter()
                .filter(|(_, c)| !c.is_zero())
                .map(|(name, c)| IfaceRow {
                    name,
                    rx_bytes: c.rx_bytes,
                    tx_bytes: c.tx_bytes,
                    rx_packets: c.rx_packets,
                    tx_packets: c.tx_packets,
                })
                .collect(),
        })
    }

    /// Everything so far, largest first.
    pub fn totals(&self) -> Totals {
        let tick = self.tick;
        let ms = self.last_interval_ms;
        let interfaces = self
            .interfaces
            .iter()
            .map(|(name, t)| InterfaceTotal {
                name: name.clone(),
                rate: t.last_at(tick).rate(ms),
                total: t.total,
            })
            .collect();
        let mut apps: Vec<AppTotal> = self
            .apps
            .iter()
            .map(|((app, uid), t)| AppTotal {
                app: app.clone(),
                uid: *uid,
                user: t.info.clone(),
                rate: t.last_at(tick).rate(ms),
                total: t.total,
            })
            .collect();
        apps.sort_by(|a, b| {
            (b.total.bytes(), &a.app, a.uid).cmp(&(a.total.bytes(), &b.app, b.uid))
        });
        let mut processes: Vec<ProcessTotal> = self
            .processes
            .values()
            .map(|t| ProcessTotal {
                rate: t.last_at(tick).rate(ms),
                total: t.total,
                ..t.info.clone()
            })
            .collect();
        processes.sort_by(|a, b| {
            (b.total.bytes(), a.pid, a.start_time).cmp(&(a.total.bytes(), b.pid, b.start_time))
        });
        Totals {
            since_ms: self.since_ms,
            last_interval_ms: ms,
            interfaces,
            apps,
            processes,
            unattributed: self.unattributed,
            attributed: self.attributed,
            lost: Some(self.host.lost),
            attribution: self.flows.then_some(self.host.attribution),
            processes_evicted: self.processes_evicted,
        }
    }
}

/// Drops the entries quiet the longest until a tenth below `max`, so that eviction does not
/// run on every interval once the map is full. Returns how many went.
fn evict_quietest<K: Clone + Eq + std::hash::Hash, T>(
    map: &mut HashMap<K, Tracked<T>>,
    max: usize,
) -> usize {
    let target = max - max / 10;
    let excess = map.len().saturating_sub(target);
    if excess == 0 {
        return 0;
    }
    let mut by_age: Vec<(u64, K)> = map.iter().map(|(k, t)| (t.last_tick, k.clone())).collect();
    by_age.select_nth_unstable_by_key(excess - 1, |(tick, _)| *tick);
    for (_, key) in &by_age[..excess] {
        map.remove(key);
    }
    excess
}

/// Runs the aggregator until the collector's side of the bus closes, then hands the last
/// batch to the store worker and tells it to finish. Batches that find the store worker's
/// queue full are dropped and counted; the last one waits for room.
pub async fn run(
    mut intervals: mpsc::Receiver<LiveInterval>,
    mut aggregator: Aggregator,
    store: mpsc::Sender<StoreJob>,
    publisher: Publisher<Snapshot>,
    stats: Arc<BusStats>,
    mut observers: Vec<Box<dyn super::IntervalObserver>>,
) {
    while let Some(live) = intervals.recv().await {
        stats.intervals.fetch_add(1, Ordering::Relaxed);
        let batch = aggregator.add(&live);
        let closed = batch.is_some();
        if let Some(batch) = batch {
            if live.final_interval {
                let _ = store.send(StoreJob::Write(batch)).await;
            } else {
                send_or_count(&store, StoreJob::Write(batch), &stats.batches_dropped);
            }
        }
        let totals = aggregator.totals();
        // No await from the batch's send to here: whoever queues a store query meanwhile sees
        // either the batch in history or the interval among the observers' pending counts.
        for observer in &mut observers {
            observer.observe(&live, &totals);
            if closed {
                observer.batch_closed();
            }
        }
        publisher.publish(Arc::new(Snapshot {
            record: live.record,
            totals,
            full_line: OnceLock::new(),
        }));
    }
    // Also reached when the collector failed without a final interval.
    if let Some(batch) = aggregator.flush() {
        let _ = store.send(StoreJob::Write(batch)).await;
    }
    let _ = store.send(StoreJob::Shutdown).await;
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
