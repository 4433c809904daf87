//! Alert delivery: to a webhook receiver (a TcpListener made here) and a syslog socket (a Unix
//! datagram socket made here), exactly once per state change and with the evidence; a
//! hanging endpoint holds up nothing. Then once end to end with the real daemon (root).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    os::unix::net::UnixDatagram,
    path::PathBuf,
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use kaipo::{
    alert::{AlertObserver, Alerting, AlertsConfig},
    collect::BackendKind,
    model::{Bytes, IntervalRecord, Lost},
    pipeline::{totals::Totals, IntervalObserver as _, LiveInterval},
    store::TrafficRow,
};
use serde_json::Value;

/// Accepts connections and sends each request body down the channel, answering 200 (or
/// never answering when `hang`).
fn receiver(hang: bool) -> (u16, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            if hang {
                held.push(stream);
                continue;
            }
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = tx.send(serde_json::from_slice(&body).expect("a JSON body"));
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, rx)
}

fn syslog_socket(name: &str) -> (PathBuf, UnixDatagram) {
    let path = std::env::temp_dir().join(format!("kaipo-syslog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("syslog socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (path, sock)
}

fn config(webhook: String, syslog: &std::path::Path, timeout: &str, retries: u32) -> AlertsConfig {
    let text = format!(
        "[alerts]\nwebhook = \"{webhook}\"\nwebhook_timeout = \"{timeout}\"\nwebhook_retries = {retries}\n\
         syslog = true\nsyslog_socket = \"{}\"\n\
         [[alerts.rule]]\nname = \"burst\"\nkind = \"rate\"\nscope = \"app\"\ndirection = \"tx\"\nabove = 1000\nfor = \"2s\"\n",
        syslog.display()
    );
    kaipo::config::Config::parse(&text, "t".as_ref())
        .expect("a valid config")
        .alerts
}

/// A one-second live interval ending at `ts_ms` in which each app of `apps` (pids from 100,
/// root) sent its bytes. The library's own fixture is built only into its unit tests.
fn synthetic_interval(ts_ms: u64, apps: &[(&str, u64)]) -> LiveInterval {
    LiveInterval {
        record: IntervalRecord {
            ts_ms,
            interval_ms: 1000,
            backend: BackendKind::Ebpf,
            interfaces: Vec::new(),
            processes: Vec::new(),
            connections: Vec::new(),
            unattributed: Bytes::default(),
            attributed_ratio: None,
            attribution: Default::default(),
            lost: Lost::default(),
        },
        traffic: apps
            .iter()
            .enumerate()
            .map(|(i, (app, tx))| TrafficRow {
                app: (*app).to_owned(),
                pid: 100 + i as u32,
                service: "https".into(),
                remote: "192.0.2.1".into(),
                tx_bytes: *tx,
                tx_packets: tx.div_ceil(1000),
                ..TrafficRow::default()
            })
            .collect(),
        final_interval: false,
    }
}

/// Feeds one-second intervals of app "up" sending `tx[i]` bytes.
fn feed(observer: &mut AlertObserver, tx: &[u64]) {
    for (i, bytes) in tx.iter().enumerate() {
        let live = synthetic_interval(1000 * (i as u64 + 1), &[("up", *bytes)]);
        observer.observe(&live, &Totals::default());
    }
}

/// A runtime driven by a thread of its own, as the daemon's runs beside the pipeline: the
/// webhook task runs while the test thread feeds intervals.
fn runtime() -> tokio::runtime::Handle {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.handle().clone();
    thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    handle
}

#[test]
fn webhook_and_syslog_get_firing_once_and_cleared_with_evidence() {
    let rt = runtime();
    let _guard = rt.enter();
    let (port, bodies) = receiver(false);
    let (path, syslog) = syslog_socket("ok");
    let alerting = Arc::new(Mutex::new(Alerting::new(&config(
        format!("http://127.0.0.1:{port}/hook"),
        &path,
        "2s",
        0,
    ))));
    let mut observer = AlertObserver(Arc::clone(&alerting));
    // Above from the interval ending at 2000 (started at 1000): fires at 3000, still above
    // at 4000 (no second notification), clears at 5000.
    feed(&mut observer, &[10, 3000, 4000, 5000, 500]);
    let firing = bodies
        .recv_timeout(Duration::from_secs(10))
        .expect("firing notification");
    assert_eq!(firing["state"], "firing");
    assert_eq!(firing["rule"], "burst");
    assert_eq!(firing["key"], "up");
    assert_eq!(firing["fired_ms"], 3000);
    assert_eq!(firing["evidence"]["observed_bytes_per_s"], 4000);
    assert_eq!(firing["evidence"]["threshold_bytes_per_s"], 1000);
    assert_eq!(firing["evidence"]["since_ms"], 1000);
    assert_eq!(firing["version"], 1);
    let cleared = bodies
        .recv_timeout(Duration::from_secs(10))
        .expect("cleared notification");
    assert_eq!(cleared["state"], "cleared");
    assert_eq!(cleared["cleared_ms"], 5000);
    assert_eq!(cleared["fired_ms"], 3000);
    assert_eq!(cleared["evidence"]["observed_bytes_per_s"], 500);
    assert!(
        bodies.recv_timeout(Duration::from_millis(500)).is_err(),
        "exactly two notifications"
    );
    let mut buf = [0u8; 4096];
    let line = |buf: &mut [u8]| {
        let n = syslog.recv(buf).expect("a syslog line");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = line(&mut buf);
    assert!(first.starts_with("<28>1 1970-01-01T00:00:03Z "), "{first}");
    assert!(
        first.contains(" kaipo ") && first.contains("\"state\":\"firing\""),
        "{first}"
    );
    let second = line(&mut buf);
    assert!(
        second.starts_with("<29>1 1970-01-01T00:00:05Z "),
        "{second}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_hanging_webhook_blocks_nothing() {
    let rt = runtime();
    let _guard = rt.enter();
    let (port, _never) = receiver(true);
    let (path, syslog) = syslog_socket("hang");
    let alerting = Arc::new(Mutex::new(Alerting::new(&config(
        format!("http://127.0.0.1:{port}/"),
        &path,
        "30s",
        5,
    ))));
    let mut observer = AlertObserver(Arc::clone(&alerting));
    // 100 fire-and-clear cycles: 200 notifications, far more than the webhook queue holds.
    // Syslog must get each one meanwhile (read after each cycle: the test's socket queue is
    // short, as a real syslog daemon reads as lines come).
    let mut buf = [0u8; 4096];
    let mut observing = Duration::ZERO;
    for cycle in 0..100u64 {
        let start = Instant::now();
        for (i, bytes) in [5000, 5000, 5000, 10].iter().enumerate() {
            let live = synthetic_interval(1000 * (cycle * 4 + i as u64 + 1), &[("up", *bytes)]);
            observer.observe(&live, &Totals::default());
        }
        observing += start.elapsed();
        for state in ["firing", "cleared"] {
            let n = syslog
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("cycle {cycle}, {state}: {e}"));
            assert!(String::from_utf8_lossy(&buf[..n]).contains(&format!("\"state\":\"{state}\"")));
        }
    }
    assert!(
        observing < Duration::from_secs(1),
        "400 intervals took {observing:?}"
    );
    let stats = alerting.lock().unwrap().webhook_stats().expect("a webhook");
    // One in flight (hanging), 64 queued, the rest dropped and counted.
    assert_eq!(
        stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
        200 - 1 - 64
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn rules_are_checked_with_their_line() {
    let text = "[alerts]\n[[alerts.rule]]\nname = \"a\"\nkind = \"rate\"\n\n[[alerts.rule]]\nname = \"b\"\nkind = \"rate\"\nabove = 5\n[[alerts.rule]]\nname = \"c\"\nkind = \"new_destination\"\nscope = \"user\"\n";
    let err = kaipo::config::Config::parse(text, "k.toml".as_ref())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "k.toml, line 3, key alerts.rule 'a': kind = \"rate\" needs above = BYTES_PER_SECOND"
    );
    let err = kaipo::config::Config::parse(
        &text.replace("kind = \"rate\"\n\n", "kind = \"rate\"\nabove = 1\n"),
        "k.toml".as_ref(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, "k.toml, line 11, key alerts.rule 'c': kind = \"new_destination\" allows only scope = \"app\"");
    let err =
        kaipo::config::Config::parse("[alerts]\nwebhook = \"https://x/\"\n", "k.toml".as_ref())
            .unwrap_err()
            .to_string();
    assert_eq!(err, "k.toml, line 2, key alerts.webhook: 'https://x/' is not supported; allowed: http://HOST[:PORT]/PATH (plain HTTP, no TLS)");
}

/// Not a test of its own: a child started from this binary with KAIPO_TEST_ROLE=stream sends
/// 1000-byte datagrams over loopback every 5 ms until its stdin closes.
#[test]
fn child_role() {
    if std::env::var("KAIPO_TEST_ROLE").as_deref() != Ok("stream") {
        return;
    }
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
    tx.connect(rx.local_addr().expect("addr")).expect("connect");
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        let _ = stop_tx.send(());
    });
    let mut buf = [0u8; 2048];
    while stop_rx.try_recv().is_err() {
        tx.send(&[0x5a; 1000]).expect("send");
        rx.recv(&mut buf).expect("recv");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_daemon_fires_a_webhook_shows_the_alert_in_status_and_clears_it() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs the daemon, which loads eBPF programs: run it as root"
    );
    let dir = std::env::temp_dir().join(format!("kaipo-alerts-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let (port, bodies) = receiver(false);
    let config = dir.join("kaipo.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\nwebhook = \"http://127.0.0.1:{port}/hook\"\n\
             [[alerts.rule]]\nname = \"streaming\"\nkind = \"rate\"\ntarget = \"kaipo-streamer\"\nabove = 50000\nfor = \"1s\"\n"
        ),
    )
    .expect("config");
    let socket = dir.join("kaipo.sock");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .arg("--db")
        .arg(dir.join("kaipo.db"))
        .arg("--socket")
        .arg(&socket)
        .args([
            "--iface",
            "lo",
            "--include-loopback",
            "--live-interval",
            "250ms",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let status = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(kaipo::api::client::status(&socket))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not answer in 30 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let program = dir.join("kaipo-streamer");
    std::fs::copy(std::env::current_exe().expect("test binary"), &program).expect("copy");
    let mut streamer = std::process::Command::new(&program)
        .args(["--exact", "child_role", "--test-threads=1"])
        .env("KAIPO_TEST_ROLE", "stream")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("streamer");
    let firing = bodies
        .recv_timeout(Duration::from_secs(20))
        .expect("a firing notification");
    assert_eq!(
        (firing["state"].as_str(), firing["key"].as_str()),
        (Some("firing"), Some("kaipo-streamer"))
    );
    let rate = firing["evidence"]["observed_bytes_per_s"]
        .as_u64()
        .expect("a rate");
    assert!(rate > 50_000, "{firing}");
    let active = status().expect("status").alerts;
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(
        (active[0].rule.as_str(), active[0].key.as_str()),
        ("streaming", "kaipo-streamer")
    );
    drop(streamer.stdin.take());
    let _ = streamer.wait();
    let cleared = bodies
        .recv_timeout(Duration::from_secs(20))
        .expect("a cleared notification");
    assert_eq!(cleared["state"], "cleared");
    assert_eq!(cleared["fired_ms"], firing["fired_ms"]);
    assert!(status().expect("status").alerts.is_empty());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
