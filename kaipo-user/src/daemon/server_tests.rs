use std::sync::OnceLock;

use serde_json::Value;
use tokio::{net::unix::OwnedWriteHalf, task::JoinHandle};

use super::*;
use crate::{
    collect::BackendKind,
    model::Lost,
    model::{Bytes, IntervalRecord, ProcessRecord},
    pipeline::{
        bus::{self, Publisher},
        totals::{ProcessTotal, Totals},
    },
    store::{Dimension, ReportRow},
};

struct Rig {
    shared: Arc<Shared>,
    publisher: Publisher<Snapshot>,
}

/// A server without a socket path, with a store that answers each query with the uid it was
/// asked for.
fn rig(limits: Limits) -> Rig {
    let stats = Arc::new(BusStats::default());
    let (publisher, subscriptions) = bus::publisher(Arc::clone(&stats));
    let (store_tx, mut store_rx) = bus::store_queue();
    tokio::spawn(async move {
        while let Some(job) = store_rx.recv().await {
            if let StoreJob::Query { query, reply, .. } = job {
                let row = ReportRow {
                    key: format!("{:?}", query.uid),
                    ..ReportRow::default()
                };
                let _ = reply.send(Ok(Report {
                    rows: vec![row],
                    ..Report::default()
                }));
            }
        }
    });
    let info = DaemonInfo {
        pid: 1,
        started_ms: 0,
        backend: "ebpf".into(),
        degradations: Vec::new(),
        interval_ms: 60_000,
        live_interval_ms: 1000,
        include_loopback: false,
        interfaces: vec!["eth0".into()],
        sandbox: Default::default(),
    };
    let shared = Shared::new(
        info,
        subscriptions,
        store_tx,
        Arc::new(Mutex::new(StoreStatus::default())),
        stats,
        limits,
    );
    Rig {
        shared: Arc::new(shared),
        publisher,
    }
}

/// A snapshot with one process of root and one of uid 1000, padded to about `pad` bytes.
fn snapshot(ts_ms: u64, pad: usize) -> Arc<Snapshot> {
    let process = |pid, uid| ProcessRecord {
        exe: None,
        pid,
        name: "p".into(),
        cmdline: "x".repeat(pad / 2),
        uid,
        user: None,
        container: None,
        container_name: None,
        pod: None,
        pod_namespace: None,
        unit: None,
        netns: None,
        exited: false,
        rx_bytes: 1,
        tx_bytes: 1,
        rx_packets: 1,
        tx_packets: 1,
    };
    let total = |pid, uid| ProcessTotal {
        pid,
        uid,
        ..ProcessTotal::default()
    };
    Arc::new(Snapshot {
        record: IntervalRecord {
            attributed_ratio: None,
            attribution: Default::default(),
            ts_ms,
            interval_ms: 1000,
            backend: BackendKind::Ebpf,
            interfaces: Vec::new(),
            processes: vec![process(10, 0), process(20, 1000)],
            connections: Vec::new(),
            unattributed: Bytes::default(),
            lost: Lost::default(),
        },
        totals: Totals {
            processes: vec![total(10, 0), total(20, 1000)],
            ..Totals::default()
        },
        full_line: OnceLock::new(),
    })
}

struct Client {
    reader: LineReader,
    write: OwnedWriteHalf,
    server: JoinHandle<()>,
}

impl Client {
    /// Connects as `uid`, seeing only its own processes when `limited`.
    fn start(rig: &Rig, uid: u32, limited: bool) -> Client {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let shared = Arc::clone(&rig.shared);
        let caller = Caller {
            uid,
            gid: uid,
            pid: None,
            groups: Vec::new(),
        };
        let only_uid = limited.then_some(uid);
        let server = tokio::spawn(async move {
            serve_client(theirs, &caller, only_uid, &shared).await;
        });
        let (read, write) = ours.into_split();
        Client {
            reader: LineReader::new(read, 1 << 24),
            write,
            server,
        }
    }

    async fn send(&self, line: &str) {
        write_all(&self.write, line.as_bytes()).await.unwrap();
    }

    /// The next answer; None once the server closed (a reset counts: closing a socket with
    /// unread input resets it, as after an oversized request).
    async fn line(&mut self) -> Option<Value> {
        match self.reader.next_line().await {
            Ok(Line::Line(l)) => Some(serde_json::from_slice(&l).unwrap()),
            Ok(Line::Eof) => None,
            Ok(Line::TooLong) => panic!("answer too long"),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading an answer: {e}"),
        }
    }
}

fn query_line(uid: Option<u32>) -> String {
    Request::Query(Query {
        from_ms: 0,
        to_ms: 1,
        by: Dimension::App,
        top: 0,
        uid,
        per: None,
    })
    .to_line()
}

#[tokio::test]
async fn each_caller_gets_what_they_may_see() {
    let rig = rig(Limits::default());
    rig.publisher.publish(snapshot(1, 10));
    let mut root = Client::start(&rig, 0, false);
    root.send("{\"v\":1,\"op\":\"status\"}\n").await;
    let status = root.line().await.unwrap();
    assert_eq!(status["ok"], true);
    assert_eq!(
        status["status"]["totals"]["processes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(status["status"]["interfaces"][0], "eth0");
    assert_eq!(status["status"]["bus"]["clients"], 1);
    // Several requests on one connection; a privileged query keeps its uid.
    root.send(&query_line(Some(7))).await;
    assert_eq!(
        root.line().await.unwrap()["report"]["rows"][0]["key"],
        "Some(7)"
    );

    let mut user = Client::start(&rig, 1000, true);
    user.send("{\"v\":1,\"op\":\"status\"}\n").await;
    let status = user.line().await.unwrap();
    let processes = status["status"]["totals"]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1);
    assert_eq!(processes[0]["pid"], 20);
    assert_eq!(status["status"]["interfaces"], serde_json::json!([]));
    assert_eq!(status["status"]["caller"]["privileged"], false);
    // Whatever uid a limited caller asks for, it gets its own.
    for asked in [None, Some(0)] {
        user.send(&query_line(asked)).await;
        assert_eq!(
            user.line().await.unwrap()["report"]["rows"][0]["key"],
            "Some(1000)"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_an_error_and_a_closed_connection() {
    let rig = rig(Limits::default());
    let long = format!(
        "{{\"v\":1,\"op\":\"status\",\"pad\":\"{}\"}}\n",
        "x".repeat(MAX_LINE)
    );
    let cases = [
        ("{\"v\":1,\"op\":\n", "not valid JSON"),
        ("{\"v\":1,\"op\":\"shutdown\"}\n", "unknown op"),
        (
            "{\"v\":9,\"op\":\"status\"}\n",
            "unsupported protocol version 9",
        ),
        (long.as_str(), "longer than 65536 bytes"),
        (
            "{\"v\":1,\"op\":\"query\",\"query\":{\"from_ms\":2000,\"to_ms\":1000,\"by\":\"app\",\"top\":0}}\n",
            "from_ms 2000 is after to_ms 1000",
        ),
    ];
    for (request, expected) in cases {
        let mut client = Client::start(&rig, 1000, true);
        client.send(request).await;
        let answer = client.line().await.unwrap();
        assert_eq!(answer["ok"], false);
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
        assert_eq!(client.line().await, None, "disconnected after {expected}");
        client.server.await.unwrap();
    }
    assert_eq!(
        rig.shared.stats.counts().clients,
        0,
        "every slot was given back"
    );
    let mut fine = Client::start(&rig, 1000, true);
    fine.send("{\"v\":1,\"op\":\"status\"}\n").await;
    assert_eq!(fine.line().await.unwrap()["ok"], true);
}

#[tokio::test]
async fn a_slow_subscriber_loses_snapshots_without_holding_up_anyone() {
    let rig = rig(Limits::default());
    let mut slow = Client::start(&rig, 0, false);
    let mut fast = Client::start(&rig, 1000, true);
    slow.send("{\"v\":1,\"op\":\"subscribe\"}\n").await;
    fast.send("{\"v\":1,\"op\":\"subscribe\"}\n").await;
    // Both are subscribed once the counter says so.
    while rig.shared.stats.counts().subscribers < 2 {
        tokio::task::yield_now().await;
    }
    // `slow` reads nothing while 60 snapshots of ~8 KiB go out: its socket's buffer (about
    // 200 KiB) fills up, and then its queue overflows. `fast` gets every one, in order, filtered to its uid.
    let published = 60;
    for ts in 1..=published {
        rig.publisher.publish(snapshot(ts, 8192));
        let got = fast.line().await.unwrap();
        assert_eq!(got["snapshot"]["ts_ms"], ts);
        assert_eq!(got["snapshot"]["processes"][0]["pid"], 20);
        assert_eq!(got["snapshot"]["processes"].as_array().unwrap().len(), 1);
    }
    // Another client is answered meanwhile.
    let mut other = Client::start(&rig, 0, false);
    other.send("{\"v\":1,\"op\":\"status\"}\n").await;
    assert_eq!(other.line().await.unwrap()["ok"], true);
    // Now `slow` catches up: what it did not get was counted, and nothing else is missing.
    let mut received = 0;
    let mut last = 0;
    while last < published {
        let got = slow.line().await.unwrap();
        let ts = got["snapshot"]["ts_ms"].as_u64().unwrap();
        assert!(ts > last, "in order");
        last = ts;
        received += 1;
    }
    let dropped = rig.shared.stats.counts().snapshots_dropped;
    assert!(dropped > 0, "the slow subscriber fell behind");
    assert_eq!(
        dropped + received,
        published,
        "every snapshot delivered or counted"
    );
}

#[tokio::test]
async fn connections_per_user_and_idle_time_are_bounded() {
    let rig = rig(Limits {
        max_per_user: 1,
        idle: Duration::from_millis(100),
        ..Limits::default()
    });
    let first = Client::start(&rig, 1000, true);
    first.send("{\"v\":1,\"op\":\"subscribe\"}\n").await;
    while rig.shared.stats.counts().subscribers < 1 {
        tokio::task::yield_now().await;
    }
    let mut second = Client::start(&rig, 1000, true);
    let refused = second.line().await.unwrap();
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("too many connections from uid 1000"));
    assert_eq!(second.line().await, None);
    // Root is not limited per user; a silent connection is closed after the idle time.
    let mut silent = Client::start(&rig, 0, false);
    let closed = silent.line().await.unwrap();
    assert!(closed["error"]
        .as_str()
        .unwrap()
        .contains("no request for too long"));
    assert_eq!(silent.line().await, None);
}

/// A subscriber that never reads is dropped after the write timeout; the snapshots it lagged
/// behind on, the one being written to it and those still queued for it are all counted, so
/// that what it received plus what was counted is everything published.
#[tokio::test]
async fn a_subscriber_dropped_for_not_reading_is_counted_in_full() {
    let rig = rig(Limits {
        write_timeout: Duration::from_millis(100),
        ..Limits::default()
    });
    let deaf = Client::start(&rig, 0, false);
    deaf.send("{\"v\":1,\"op\":\"subscribe\"}\n").await;
    while rig.shared.stats.counts().subscribers < 1 {
        tokio::task::yield_now().await;
    }
    // All published before the server's task runs again: it finds 52 overwritten and 8
    // queued, of 64 KiB each, more than the socket's buffer takes.
    let published = 60;
    for ts in 1..=published {
        rig.publisher.publish(snapshot(ts, 64 * 1024));
    }
    let Client {
        mut reader, server, ..
    } = deaf;
    server.await.unwrap();
    assert_eq!(rig.shared.stats.counts().subscribers, 0, "dropped");
    // Whole lines that made it into the socket before the drop; a line cut short does not
    // count as received.
    let mut received = 0;
    loop {
        match reader.next_line().await {
            Ok(Line::Line(l)) if serde_json::from_slice::<Value>(&l).is_ok() => received += 1,
            Ok(Line::Line(_)) => {}
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => panic!("a line too long"),
        }
    }
    let dropped = rig.shared.stats.counts().snapshots_dropped;
    assert!(
        received < 8,
        "the socket's buffer filled: {received} received"
    );
    assert_eq!(dropped, published - received, "{received} received");
}
