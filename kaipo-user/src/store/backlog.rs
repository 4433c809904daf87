//! Rows that could not be written (disk full, read-only filesystem, I/O error), held in memory
//! until the database accepts writes again.
//!
//! Held rows are summed per (time bucket, process, remote, service) and per (time bucket,
//! interface), so the memory follows the number of distinct keys rather than the length of the
//! outage. Buckets start at one minute; when the slots run out they are merged into hours, then
//! days, which keeps every byte and packet and only blurs when within the outage they
//! happened. The bound is [`MAX_SLOTS`] slots (about 70 bytes each) plus [`MAX_NAME_BYTES`] of
//! names, about 25 MB in all. Only a row that needs a new slot or a new name once everything
//! is merged into days and full is dropped, and counted.

use std::collections::HashMap;

use super::{
    ids::{truncate, ProcessRef, MAX_CMDLINE},
    write::{Counters, Pending, PendingIface},
    IntervalBatch, TrafficRow,
};

/// Distinct (bucket, key) slots held at most, traffic and interfaces together.
pub const MAX_SLOTS: usize = 100_000;
/// Bytes of names (apps, command lines, users, containers, remotes, services, interfaces)
/// held at most.
pub const MAX_NAME_BYTES: usize = 16 << 20;

/// Bucket lengths in seconds, finest first.
const RESOLUTIONS: [i64; 3] = [60, 3600, 86_400];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HeldProcess {
    app: String,
    pid: u32,
    start_time: u64,
    cmdline: String,
    uid: u32,
    user: String,
    container: String,
    workload: [Option<String>; 4],
}

impl HeldProcess {
    fn of_row(r: &TrafficRow) -> Self {
        Self {
            app: r.app.clone(),
            pid: r.pid,
            start_time: r.start_time,
            cmdline: truncate(&r.cmdline, MAX_CMDLINE).to_owned(),
            uid: r.uid,
            user: r.user.clone().unwrap_or_default(),
            container: r.container.clone().unwrap_or_default(),
            workload: [
                r.container_name.clone(),
                r.pod.clone(),
                r.pod_namespace.clone(),
                r.unit.clone(),
            ],
        }
    }

    fn bytes(&self) -> usize {
        let workload: usize = self.workload.iter().flatten().map(String::len).sum();
        self.app.len() + self.cmdline.len() + self.user.len() + self.container.len() + workload
    }
}

#[derive(Default)]
pub(crate) struct Backlog {
    processes: HashMap<HeldProcess, u32>,
    /// Remotes, services and interface names share one table of small ids.
    names: HashMap<String, u32>,
    /// (bucket start in seconds, process, remote, service)
    traffic: HashMap<(i64, u32, u32, u32), Counters>,
    /// (bucket start in seconds, interface)
    ifaces: HashMap<(i64, u32), Counters>,
    /// Index into [`RESOLUTIONS`].
    resolution: usize,
    name_bytes: usize,
    dropped_rows: u64,
}

impl Backlog {
    /// Slots held.
    pub fn len(&self) -> usize {
        self.traffic.len() + self.ifaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows dropped since the store was opened because the backlog was full.
    pub fn dropped_rows(&self) -> u64 {
        self.dropped_rows
    }

    /// Forgets the held rows (they were written) and gives their memory back.
    pub fn clear(&mut self) {
        *self = Self {
            dropped_rows: self.dropped_rows,
            ..Self::default()
        };
    }

    /// Adds a batch whose interval started at `start_s` (seconds since the epoch).
    pub fn add(&mut self, start_s: i64, batch: &IntervalBatch) {
        for r in &batch.traffic {
            let held = HeldProcess::of_row(r);
            let key = match (
                self.intern_process(held),
                self.intern_name(&r.remote),
                self.intern_name(&r.service),
            ) {
                (Some(p), Some(rem), Some(svc)) => (p, rem, svc),
                _ => {
                    self.dropped_rows += 1;
                    continue;
                }
            };
            let c = Counters::of_traffic(r);
            if !self.insert(
                start_s,
                |bucket| Slot::Traffic((bucket, key.0, key.1, key.2)),
                &c,
            ) {
                self.dropped_rows += 1;
            }
        }
        for r in &batch.interfaces {
            let c = Counters::of_iface(r);
            let held = self
                .intern_name(&r.name)
                .is_some_and(|id| self.insert(start_s, |bucket| Slot::Iface((bucket, id)), &c));
            if !held {
                self.dropped_rows += 1;
            }
        }
    }

    /// The held rows, ready for [`super::write::store_rows`].
    pub fn rows(&self) -> (Vec<Pending<'_>>, Vec<PendingIface<'_>>) {
        let mut procs: Vec<Option<&HeldProcess>> = vec![None; self.processes.len()];
        for (p, &id) in &self.processes {
            procs[id as usize] = Some(p);
        }
        let mut names: Vec<&str> = vec![""; self.names.len()];
        for (n, &id) in &self.names {
            names[id as usize] = n;
        }
        let name = |id: u32| names.get(id as usize).copied().unwrap_or("");
        let traffic = self
            .traffic
            .iter()
            .filter_map(|(&(ts, p, remote, service), c)| {
                let p = procs.get(p as usize).copied().flatten()?;
                Some(Pending {
                    ts,
                    process: ProcessRef {
                        app: &p.app,
                        pid: p.pid,
                        start_time: p.start_time,
                        cmdline: &p.cmdline,
                        uid: p.uid,
                        user: &p.user,
                        container: &p.container,
                        workload: [0, 1, 2, 3].map(|i| p.workload[i].as_deref()),
                    },
                    remote: name(remote),
                    // Names are not held: the next rows after the outage bring them again.
                    remote_name: None,
                    service: name(service),
                    counters: *c,
                })
            })
            .collect();
        let ifaces = self
            .ifaces
            .iter()
            .map(|(&(ts, id), c)| PendingIface {
                ts,
                name: name(id),
                counters: *c,
            })
            .collect();
        (traffic, ifaces)
    }

    fn intern_process(&mut self, p: HeldProcess) -> Option<u32> {
        if let Some(&id) = self.processes.get(&p) {
            return Some(id);
        }
        if self.name_bytes + p.bytes() > MAX_NAME_BYTES {
            return None;
        }
        let id = u32::try_from(self.processes.len()).ok()?;
        self.name_bytes += p.bytes();
        self.processes.insert(p, id);
        Some(id)
    }

    fn intern_name(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.names.get(name) {
            return Some(id);
        }
        if self.name_bytes + name.len() > MAX_NAME_BYTES {
            return None;
        }
        let id = u32::try_from(self.names.len()).ok()?;
        self.name_bytes += name.len();
        self.names.insert(name.to_owned(), id);
        Some(id)
    }

    /// Adds counters to the slot `slot(bucket)`, merging buckets into coarser ones when no
    /// slot is left. False when even day buckets are full.
    fn insert(&mut self, start_s: i64, slot: impl Fn(i64) -> Slot, c: &Counters) -> bool {
        loop {
            let res = RESOLUTIONS[self.resolution];
            let key = slot(start_s.div_euclid(res) * res);
            let present = match &key {
                Slot::Traffic(k) => self.traffic.contains_key(k),
                Slot::Iface(k) => self.ifaces.contains_key(k),
            };
            if present || self.len() < MAX_SLOTS {
                let sum = match key {
                    Slot::Traffic(k) => self.traffic.entry(k).or_default(),
                    Slot::Iface(k) => self.ifaces.entry(k).or_default(),
                };
                sum.add(c);
                return true;
            }
            if !self.coarsen() {
                return false;
            }
        }
    }

    /// Merges every slot into the next coarser bucket length; false at the coarsest.
    fn coarsen(&mut self) -> bool {
        if self.resolution + 1 >= RESOLUTIONS.len() {
            return false;
        }
        self.resolution += 1;
        let res = RESOLUTIONS[self.resolution];
        let mut traffic = HashMap::with_capacity(self.traffic.len());
        for ((ts, p, r, s), c) in self.traffic.drain() {
            let sum: &mut Counters = traffic
                .entry((ts.div_euclid(res) * res, p, r, s))
                .or_default();
            sum.add(&c);
        }
        self.traffic = traffic;
        let mut ifaces = HashMap::with_capacity(self.ifaces.len());
        for ((ts, i), c) in self.ifaces.drain() {
            let sum: &mut Counters = ifaces.entry((ts.div_euclid(res) * res, i)).or_default();
            sum.add(&c);
        }
        self.ifaces = ifaces;
        true
    }
}

enum Slot {
    Traffic((i64, u32, u32, u32)),
    Iface((i64, u32)),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IfaceRow, TrafficRow};

    fn row(pid: u32, remote: &str, rx: u64) -> TrafficRow {
        TrafficRow {
            app: "app".to_owned(),
            pid,
            cmdline: "app --flag".to_owned(),
            remote: remote.to_owned(),
            service: "https".to_owned(),
            rx_bytes: rx,
            tx_bytes: 2 * rx,
            ..TrafficRow::default()
        }
    }

    fn totals(b: &Backlog) -> (i64, i64, usize) {
        let (traffic, ifaces) = b.rows();
        let rx = traffic.iter().map(|p| p.counters.rx_bytes).sum();
        let iface_rx = ifaces.iter().map(|p| p.counters.rx_bytes).sum();
        let buckets: std::collections::HashSet<i64> = traffic.iter().map(|p| p.ts).collect();
        (rx, iface_rx, buckets.len())
    }

    #[test]
    fn held_rows_merge_into_minutes_by_key() {
        let mut b = Backlog::default();
        let start = 1_700_000_000 - 1_700_000_000 % 60;
        for s in 0..120 {
            let batch = IntervalBatch {
                ts_ms: (start + s + 1) * 1000,
                interval_ms: 1000,
                traffic: vec![
                    row(1, "10.0.0.1", 10),
                    row(1, "10.0.0.2", 1),
                    row(1, "10.0.0.1", 5),
                ],
                interfaces: vec![IfaceRow {
                    name: "eth0".to_owned(),
                    rx_bytes: 3,
                    ..IfaceRow::default()
                }],
            };
            b.add(start + s, &batch);
        }
        // Two minutes × two remotes, plus two minutes of one interface.
        assert_eq!(b.len(), 6);
        assert_eq!(totals(&b), (120 * 16, 120 * 3, 2));
        let (traffic, _) = b.rows();
        let first = traffic
            .iter()
            .find(|p| p.ts == start && p.remote == "10.0.0.1")
            .expect("slot");
        assert_eq!(
            (first.counters.rx_bytes, first.counters.tx_bytes),
            (60 * 15, 60 * 30)
        );
        assert_eq!(first.process.cmdline, "app --flag");
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn a_long_outage_coarsens_buckets_and_keeps_every_byte() {
        let mut b = Backlog::default();
        let start = 1_699_920_000; // a UTC midnight
        let per_minute = 400;
        let minutes = (MAX_SLOTS / per_minute) as i64 + 30;
        for m in 0..minutes {
            let traffic: Vec<TrafficRow> = (0..per_minute as u32)
                .map(|i| row(i, &format!("10.0.{}.{}", i / 250, i % 250), 1))
                .collect();
            let batch = IntervalBatch {
                ts_ms: (start + m * 60 + 60) * 1000,
                interval_ms: 60_000,
                traffic,
                interfaces: vec![],
            };
            b.add(start + m * 60, &batch);
        }
        assert_eq!(b.dropped_rows(), 0);
        assert!(b.len() <= MAX_SLOTS);
        // 280 minutes no longer fit as minutes: they became five hours.
        let (rx, _, buckets) = totals(&b);
        assert_eq!(rx, minutes * per_minute as i64);
        assert_eq!(buckets, 5);
    }

    #[test]
    fn beyond_the_bound_rows_are_dropped_and_counted() {
        let mut b = Backlog::default();
        let traffic: Vec<TrafficRow> = (0..MAX_SLOTS as u32 + 10)
            .map(|i| row(i, "10.0.0.1", 1))
            .collect();
        let batch = IntervalBatch {
            ts_ms: 61_000,
            interval_ms: 1000,
            traffic,
            interfaces: vec![],
        };
        b.add(60, &batch);
        assert_eq!(b.len(), MAX_SLOTS);
        assert_eq!(b.dropped_rows(), 10);
        assert_eq!(totals(&b).0, MAX_SLOTS as i64);
        b.clear();
        assert_eq!(b.dropped_rows(), 10, "the count survives clearing");
    }
}
