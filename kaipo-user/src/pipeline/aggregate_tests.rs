use super::*;
use crate::{
    collect::BackendKind,
    model::Lost,
    model::{Bytes, InterfaceRecord, ProcessRecord},
    pipeline::bus,
};

fn row(pid: u32, app: &str, uid: u32, remote: &str, service: &str, tx: u64) -> TrafficRow {
    TrafficRow {
        app: app.into(),
        pid,
        start_time: u64::from(pid) * 10,
        cmdline: format!("{app} --flag"),
        uid,
        user: Some(format!("user{uid}")),
        container: None,
        container_name: None,
        pod: None,
        pod_namespace: None,
        unit: None,
        remote: remote.into(),
        remote_name: None,
        service: service.into(),
        rx_bytes: 0,
        tx_bytes: tx,
        rx_packets: 0,
        tx_packets: tx / 100,
    }
}

fn live(ts_ms: u64, traffic: Vec<TrafficRow>, eth0_rx: u64) -> LiveInterval {
    let processes = traffic
        .iter()
        .filter(|r| r.pid != 0)
        .map(|r| ProcessRecord {
            exe: None,
            pid: r.pid,
            name: format!("{}-comm", r.app),
            cmdline: r.cmdline.clone(),
            uid: r.uid,
            user: r.user.clone(),
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns: None,
            exited: false,
            rx_bytes: r.rx_bytes,
            tx_bytes: r.tx_bytes,
            rx_packets: r.rx_packets,
            tx_packets: r.tx_packets,
        })
        .collect();
    LiveInterval {
        record: IntervalRecord {
            attributed_ratio: None,
            attribution: Default::default(),
            ts_ms,
            interval_ms: 1000,
            backend: BackendKind::Ebpf,
            interfaces: vec![
                InterfaceRecord {
                    name: "eth0".into(),
                    rx_bytes: eth0_rx,
                    tx_bytes: 0,
                    rx_packets: eth0_rx / 100,
                    tx_packets: 0,
                },
                InterfaceRecord {
                    name: "eth1".into(),
                    rx_bytes: 0,
                    tx_bytes: 0,
                    rx_packets: 0,
                    tx_packets: 0,
                },
            ],
            processes,
            connections: Vec::new(),
            unattributed: Bytes::default(),
            lost: Lost {
                ringbuf_full: 1,
                ..Lost::default()
            },
        },
        traffic,
        final_interval: false,
    }
}

#[test]
fn a_batch_closes_every_store_interval_with_rows_summed() {
    // Store intervals of 3 s: the batch that started at 0 closes on reaching 3000.
    let mut agg = Aggregator::new(3000, 0);
    let dns = |tx| row(7, "resolver", 1000, "10.0.0.53", "dns", tx);
    let https = |tx| row(7, "resolver", 1000, "10.0.0.9", "https", tx);
    assert!(agg
        .add(&live(1000, vec![dns(100), https(50)], 500))
        .is_none());
    assert!(agg.add(&live(2000, vec![dns(300)], 0)).is_none());
    let batch = agg
        .add(&live(3000, vec![https(25)], 700))
        .expect("third interval closes the batch");
    assert_eq!((batch.ts_ms, batch.interval_ms), (3000, 3000));
    let tx: Vec<(&str, u64)> = batch
        .traffic
        .iter()
        .map(|r| (r.service.as_str(), r.tx_bytes))
        .collect();
    assert_eq!(tx, [("dns", 400), ("https", 75)]);
    assert_eq!(batch.traffic[0].tx_packets, 4);
    // eth1 never had traffic: no row for it.
    assert_eq!(batch.interfaces.len(), 1);
    assert_eq!(
        (
            batch.interfaces[0].name.as_str(),
            batch.interfaces[0].rx_bytes
        ),
        ("eth0", 1200)
    );
    assert!(agg.flush().is_none(), "nothing pending right after a batch");
}

/// A remote named only from a later live interval (reverse DNS answers after the first one it
/// shows in) keeps the name in the batch, with every interval's bytes.
#[test]
fn a_name_found_later_in_the_batch_is_kept() {
    let mut agg = Aggregator::new(3000, 0);
    let peer = |tx, name: Option<&str>| TrafficRow {
        remote_name: name.map(str::to_owned),
        ..row(7, "sender", 1000, "10.0.0.9", "udp/9000", tx)
    };
    assert!(agg.add(&live(1000, vec![peer(100, None)], 0)).is_none());
    assert!(agg
        .add(&live(2000, vec![peer(200, Some("peer.example"))], 0))
        .is_none());
    let batch = agg
        .add(&live(3000, vec![peer(300, None)], 0))
        .expect("third interval closes the batch");
    let rows: Vec<(Option<&str>, u64)> = batch
        .traffic
        .iter()
        .map(|r| (r.remote_name.as_deref(), r.tx_bytes))
        .collect();
    assert_eq!(rows, [(Some("peer.example"), 600)]);
}

#[test]
fn batches_close_on_wall_clock_boundaries() {
    let mut agg = Aggregator::new(60_000, 0);
    let at = |ts: u64, ms: u64| {
        let mut l = live(ts, vec![row(1, "a", 0, "", "udp/9", 1)], 0);
        l.record.interval_ms = ms;
        l
    };
    assert!(agg.add(&at(59_500, 800)).is_none());
    let first = agg.add(&at(60_300, 800)).expect("crossed the minute");
    // Stamped with its slot of the grid, not with the tick that closed it.
    assert_eq!((first.ts_ms, first.interval_ms), (60_000, 60_000));
    // The next batch starts after the minute and runs to the next one.
    assert!(agg.add(&at(61_300, 1000)).is_none());
    assert!(agg.add(&at(119_900, 58_600)).is_none());
    let second = agg.add(&at(120_100, 200)).expect("crossed the next minute");
    assert_eq!((second.ts_ms, second.interval_ms), (120_000, 60_000));
}

/// Under load the live ticks come late, irregular, or cover several store slots at once
/// (the collector's queue pushes back by not closing an interval). Every batch still lands on
/// the grid, keeps the slot it began in, and no two batches share a stamp.
#[test]
fn batches_stay_on_the_grid_under_load() {
    let mut agg = Aggregator::new(60_000, 0);
    let at = |ts: u64, ms: u64, tx: u64, last: bool| {
        let mut l = live(ts, vec![row(1, "a", 0, "", "udp/9", tx)], 0);
        l.record.interval_ms = ms;
        l.final_interval = last;
        l
    };
    let mut batches = Vec::new();
    for live in [
        at(59_700, 700, 1, false),
        // A late tick: it ends at an odd second past the minute.
        at(61_900, 2200, 2, false),
        at(62_100, 1000, 4, false),
        // A stall across two boundaries: the batch still closes in the slot it began in.
        at(185_000, 122_900, 8, false),
        // An interval that reaches back into a slot already handed out.
        at(186_000, 67_000, 16, false),
        at(200_000, 14_000, 32, true),
    ] {
        batches.extend(agg.add(&live));
    }
    let stamps: Vec<(i64, u32, u64)> = batches
        .iter()
        .map(|b| (b.ts_ms, b.interval_ms, b.traffic[0].tx_bytes))
        .collect();
    assert_eq!(
        stamps,
        [
            (60_000, 60_000, 1 + 2),
            (120_000, 60_000, 4 + 8),
            (180_000, 60_000, 16),
            (240_000, 60_000, 32),
        ]
    );
}

#[test]
fn the_final_interval_flushes_a_partial_batch() {
    let mut agg = Aggregator::new(10_000, 0);
    assert!(agg
        .add(&live(1000, vec![row(1, "a", 0, "", "udp/9", 10)], 0))
        .is_none());
    let mut last = live(1500, vec![row(1, "a", 0, "", "udp/9", 5)], 0);
    last.final_interval = true;
    let batch = agg.add(&last).expect("final interval flushes");
    // A partial batch is still its whole slot.
    assert_eq!((batch.ts_ms, batch.interval_ms), (10_000, 10_000));
    assert_eq!(batch.traffic[0].tx_bytes, 15);
}

#[test]
fn totals_add_up_and_rates_follow_the_last_interval() {
    let mut agg = Aggregator::new(100_000, 42);
    let unattributed = TrafficRow {
        app: UNATTRIBUTED_APP.into(),
        tx_bytes: 30,
        ..TrafficRow::default()
    };
    agg.add(&live(
        1000,
        vec![
            row(1, "curl", 0, "1.1.1.1", "https", 1000),
            row(2, "curl", 1000, "1.1.1.1", "https", 400),
            unattributed,
        ],
        2000,
    ));
    agg.add(&live(
        2000,
        vec![row(2, "curl", 1000, "8.8.8.8", "dns", 200)],
        0,
    ));
    let t = agg.totals();
    assert_eq!(t.since_ms, 42);
    let pids: Vec<(u32, u64, u64)> = t
        .processes
        .iter()
        .map(|p| (p.pid, p.total.tx_bytes, p.rate.tx_bytes_per_s))
        .collect();
    assert_eq!(pids, [(1, 1000, 0), (2, 600, 200)]);
    assert_eq!(t.processes[1].name, "curl-comm");
    assert_eq!(t.processes[1].start_time, 20);
    assert_eq!(t.processes[1].last_seen_ms, 2000);
    let apps: Vec<(&str, u32, u64)> = t
        .apps
        .iter()
        .map(|a| (a.app.as_str(), a.uid, a.total.tx_bytes))
        .collect();
    assert_eq!(apps, [("curl", 0, 1000), ("curl", 1000, 600)]);
    assert_eq!(t.unattributed.tx_bytes, 30);
    assert_eq!(t.attributed.tx_bytes, 1600);
    assert_eq!(t.interfaces[0].total.rx_bytes, 2000);
    assert_eq!(t.interfaces[0].rate.rx_bytes_per_s, 0);
    assert_eq!(t.lost.map(|l| l.ringbuf_full), Some(2));
}

#[test]
fn process_totals_stay_bounded() {
    let mut agg = Aggregator::new(10_000_000, 0);
    let n = MAX_PROCESSES as u32 + 1;
    for pid in 1..=n {
        agg.add(&live(
            u64::from(pid),
            vec![row(pid, "w", 0, "", "udp/1", 1)],
            0,
        ));
    }
    let t = agg.totals();
    assert!(t.processes.len() <= MAX_PROCESSES);
    assert_eq!(t.processes_evicted as usize + t.processes.len(), n as usize);
    // The newest survive; everything stays in the app and attributed totals.
    assert!(t.processes.iter().any(|p| p.pid == n));
    assert!(!t.processes.iter().any(|p| p.pid == 1));
    assert_eq!(t.apps[0].total.tx_bytes, u64::from(n));
    assert_eq!(t.attributed.tx_bytes, u64::from(n));
}

#[tokio::test]
async fn run_stores_batches_publishes_snapshots_and_finishes_the_store() {
    let stats = Arc::new(BusStats::default());
    let (publisher, subs) = bus::publisher(Arc::clone(&stats));
    let (tx, rx) = mpsc::channel(4);
    let (store_tx, mut store_rx) = bus::store_queue();
    let task = tokio::spawn(run(
        rx,
        Aggregator::new(2000, 0),
        store_tx,
        publisher,
        Arc::clone(&stats),
        Vec::new(),
    ));
    for ts in [1000, 2000, 3000] {
        tx.send(live(ts, vec![row(5, "app", 0, "", "udp/7", 10)], 0))
            .await
            .unwrap();
    }
    // The collector stops without a final interval: the partial batch is flushed all the same.
    drop(tx);
    task.await.unwrap();
    let mut written = Vec::new();
    let mut shut_down = false;
    while let Ok(job) = store_rx.try_recv() {
        match job {
            StoreJob::Write(b) => written.push((b.ts_ms, b.traffic[0].tx_bytes)),
            StoreJob::Shutdown => shut_down = true,
            StoreJob::Query { .. } => panic!("no query was sent"),
            StoreJob::Names(_) => panic!("no names were sent"),
        }
    }
    assert_eq!(written, [(2000, 20), (4000, 10)]);
    assert!(shut_down);
    let latest = subs.latest().unwrap();
    assert_eq!(latest.record.ts_ms, 3000);
    assert_eq!(latest.totals.processes[0].total.tx_bytes, 30);
    assert_eq!(stats.counts().intervals, 3);
    assert_eq!(stats.counts().batches_dropped, 0);
}

/// Records what the aggregator told it, in order.
struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

impl crate::pipeline::IntervalObserver for Recorder {
    fn observe(&mut self, live: &LiveInterval, _totals: &Totals) {
        self.0
            .lock()
            .unwrap()
            .push(format!("interval {}", live.record.ts_ms));
    }
    fn batch_closed(&mut self) {
        self.0.lock().unwrap().push("batch closed".into());
    }
}

/// Observers hear of a closed batch after the interval that closed it, which the batch holds:
/// quota rules count what came after as not yet in history.
#[tokio::test]
async fn observers_hear_of_each_batch_after_its_last_interval() {
    let stats = Arc::new(BusStats::default());
    let (publisher, _subs) = bus::publisher(Arc::clone(&stats));
    let (tx, rx) = mpsc::channel(8);
    let (store_tx, _store_rx) = bus::store_queue();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let task = tokio::spawn(run(
        rx,
        Aggregator::new(2000, 0),
        store_tx,
        publisher,
        stats,
        vec![Box::new(Recorder(Arc::clone(&heard)))],
    ));
    for ts in [1000, 2000, 3000, 4000, 5000] {
        tx.send(live(ts, vec![row(5, "app", 0, "", "udp/7", 10)], 0))
            .await
            .unwrap();
    }
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        *heard.lock().unwrap(),
        [
            "interval 1000",
            "interval 2000",
            "batch closed",
            "interval 3000",
            "interval 4000",
            "batch closed",
            "interval 5000",
        ]
    );
}

/// A daemon without flows hands out totals with no attribution at all (not one of zero bytes,
/// which would read as "nothing attributed"); with flows, the attribution is there.
#[test]
fn without_flows_the_totals_carry_no_attribution() {
    let rows = || vec![row(7, "sender", 1000, "10.0.0.9", "udp/9000", 500)];
    let mut with = Aggregator::new(3000, 0);
    let mut without = Aggregator::new(3000, 0).flows(false);
    with.add(&live(1000, rows(), 0));
    without.add(&live(1000, rows(), 0));
    assert!(with.totals().attribution.is_some());
    assert_eq!(without.totals().attribution, None);
    assert_eq!(without.totals().attributed_ratio(), None);
}
