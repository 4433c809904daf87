//! One run of known traffic, read from every surface kaipo has: `kaipo watch --json`, the
//! daemon's snapshots, `kaipo status --json`, `kaipo report --format json`, `/metrics` and the
//! dashboard's rows. Each figure must be the same everywhere, to the byte, and the attributed
//! share must be what the traffic makes it.
//!
//! The traffic: UDP from a host process into namespace A across monitored veth `A`, a TCP
//! transfer (large enough for segmentation offload) into namespace B across monitored veth `B`,
//! and UDP into namespace C across veth `C`, which is not monitored. Neighbours are static and
//! IPv6 is off, so every frame on A and B is a datagram or segment of a known process: the
//! share is exactly 1. Before this was built, the same traffic read as a share near 2 (a
//! sender and a receiver counted against one crossing) and C's processes showed up although
//! C was not monitored.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use kaipo_tests::{child::Spawned, kaipo_bin, require_root, run, tcp};
use serde_json::Value;

const TRAFFIC: &str = env!("CARGO_BIN_EXE_kaipo-traffic");
const STEP: Duration = Duration::from_secs(30);
const UDP_COUNT: u64 = 300;
const UDP_SIZE: u64 = 500;
const TCP_BYTES: u64 = 3_000_000;
const RANGE: &str = "10.217.0.0/16";

/// Rx bytes, rx packets, tx bytes, tx packets.
type Figures = [u64; 4];

fn add(a: Figures, b: Figures) -> Figures {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

fn of(v: &Value) -> Figures {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    [
        n("rx_bytes"),
        n("rx_packets"),
        n("tx_bytes"),
        n("tx_packets"),
    ]
}

/// A namespace joined to the host by a veth, with IPv6 off and static neighbours.
struct Link {
    ns: String,
    host_if: String,
    ns_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Link {
    fn new(tag: char, block: u8) -> anyhow::Result<Self> {
        let pid = std::process::id() % 100_000;
        let link = Self {
            ns: format!("kq-{pid}-{tag}"),
            host_if: format!("kq{pid}{tag}"),
            ns_if: format!("kr{pid}{tag}"),
            host_ip: format!("10.217.{block}.1"),
            ns_ip: format!("10.217.{block}.2"),
        };
        run(Command::new("ip").args(["netns", "add", &link.ns]))?;
        run(Command::new("ip").args([
            "link",
            "add",
            &link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &link.ns_if,
        ]))?;
        run(Command::new("ip").args(["link", "set", &link.ns_if, "netns", &link.ns]))?;
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", link.host_if),
            "1",
        )?;
        link.in_ns(&format!(
            "echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6 && ip addr add {}/30 dev {} && \
             ip link set {} up && ip link set lo up",
            link.ns_if, link.ns_ip, link.ns_if, link.ns_if
        ))?;
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/30", link.host_ip),
            "dev",
            &link.host_if,
        ]))?;
        run(Command::new("ip").args(["link", "set", &link.host_if, "up"]))?;
        let host_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", link.host_if))?;
        let ns_mac = link.in_ns(&format!("cat /sys/class/net/{}/address", link.ns_if))?;
        run(Command::new("ip").args([
            "neigh",
            "replace",
            &link.ns_ip,
            "lladdr",
            ns_mac.trim(),
            "dev",
            &link.host_if,
            "nud",
            "permanent",
        ]))?;
        link.in_ns(&format!(
            "ip neigh replace {} lladdr {} dev {} nud permanent",
            link.host_ip,
            host_mac.trim(),
            link.ns_if
        ))?;
        Ok(link)
    }

    fn in_ns(&self, script: &str) -> anyhow::Result<String> {
        run(Command::new("ip").args(["netns", "exec", &self.ns, "sh", "-c", script]))
    }

    fn traffic(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, TRAFFIC]).args(args);
        cmd
    }

    /// The kernel's counters of the host end.
    fn kernel(&self) -> anyhow::Result<Figures> {
        let read = |field: &str| -> anyhow::Result<u64> {
            let path = format!("/sys/class/net/{}/statistics/{field}", self.host_if);
            Ok(std::fs::read_to_string(&path)?.trim().parse()?)
        };
        Ok([
            read("rx_bytes")?,
            read("rx_packets")?,
            read("tx_bytes")?,
            read("tx_packets")?,
        ])
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// The test's blackhole route for its whole range, removed on drop.
struct Blackhole(bool);

impl Blackhole {
    fn add() -> Self {
        Self(
            Command::new("ip")
                .args(["route", "add", "blackhole", RANGE])
                .status()
                .is_ok_and(|s| s.success()),
        )
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        if self.0 {
            let _ = Command::new("ip")
                .args(["route", "del", "blackhole", RANGE])
                .output();
        }
    }
}

/// The daemon, killed on drop if it did not stop by itself.
struct Daemon {
    child: Child,
    dir: PathBuf,
    metrics_port: u16,
}

impl Daemon {
    fn start(dir: &Path, ifaces: &[&str]) -> anyhow::Result<Self> {
        let metrics_port = free_port()?;
        let config = dir.join("kaipo.toml");
        std::fs::write(
            &config,
            format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
        )?;
        let mut cmd = Command::new(kaipo_bin()?);
        cmd.arg("--config")
            .arg(&config)
            .arg("daemon")
            .arg("--db")
            .arg(dir.join("kaipo.db"))
            .arg("--socket")
            .arg(dir.join("kaipo.sock"))
            .args(["--interval", "1s", "--live-interval", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for iface in ifaces {
            cmd.args(["--iface", iface]);
        }
        let daemon = Self {
            child: cmd.spawn().context("starting kaipo daemon")?,
            dir: dir.to_owned(),
            metrics_port,
        };
        let start = Instant::now();
        while daemon.status().is_err() || metrics(metrics_port).is_err() {
            ensure!(start.elapsed() < STEP, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(daemon)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("kaipo.sock")
    }

    fn status(&self) -> anyhow::Result<Value> {
        let out = run(Command::new(kaipo_bin()?)
            .args(["status", "--json", "--socket"])
            .arg(self.socket()))?;
        Ok(serde_json::from_str(&out)?)
    }

    /// SIGTERM: the daemon writes its last interval and exits 0.
    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the daemon exited with {status}");
                return Ok(());
            }
            ensure!(start.elapsed() < STEP, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn metrics(port: u16) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(STEP))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    ensure!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{text}"
    );
    Ok(body.to_owned())
}

/// The value of a series in an exposition, by its whole name and labels.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        without_host(l)
            .strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

/// A sample line without the `host` label every sample carries (first of its labels).
fn without_host(line: &str) -> String {
    let Some((name, rest)) = line.split_once("{host=\"") else {
        return line.to_owned();
    };
    let Some((_, after)) = rest.split_once('"') else {
        return line.to_owned();
    };
    match after.strip_prefix(',') {
        Some(labels) => format!("{name}{{{labels}"),
        None => format!("{name}{}", after.strip_prefix('}').unwrap_or(after)),
    }
}

/// The daemon's snapshots, read on a thread of their own from subscription to `stop`.
struct Snapshots {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Value>>>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Snapshots {
    fn subscribe(socket: PathBuf) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let mut sub = kaipo::api::client::subscribe(&socket).await?;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(snapshot) = sub.next_as::<Value>().await? else {
                            break;
                        };
                        seen.lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push(snapshot);
                    }
                    anyhow::Ok(())
                })
            }
        });
        let start = Instant::now();
        while seen.lock().map(|s| s.is_empty()).unwrap_or(true) {
            ensure!(start.elapsed() < STEP, "no snapshot from the daemon");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { stop, seen, thread })
    }

    fn finish(self) -> anyhow::Result<Vec<Value>> {
        self.stop.store(true, Ordering::Relaxed);
        // The loop sees the flag when the next snapshot arrives, within a live interval.
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the snapshot thread panicked"))??;
        let seen = self.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(seen.clone())
    }
}

/// Per pid, the figures summed over interval records.
fn per_pid<'a>(records: impl Iterator<Item = &'a Value>) -> BTreeMap<u32, Figures> {
    let mut out = BTreeMap::new();
    for record in records {
        for p in record["processes"].as_array().into_iter().flatten() {
            let pid = p["pid"].as_u64().unwrap_or(0) as u32;
            let total = out.entry(pid).or_insert([0; 4]);
            *total = add(*total, of(p));
        }
    }
    out
}

/// Per interface name, the figures summed over interval records.
fn per_iface<'a>(records: impl Iterator<Item = &'a Value>) -> BTreeMap<String, Figures> {
    let mut out = BTreeMap::new();
    for record in records {
        for i in record["interfaces"].as_array().into_iter().flatten() {
            let name = i["name"].as_str().unwrap_or_default().to_owned();
            let total = out.entry(name).or_insert([0; 4]);
            *total = add(*total, of(i));
        }
    }
    out
}

/// The dashboard fed with the daemon's snapshots, as `kaipo live` is: its totals per pid, and
/// the screen it draws.
fn dashboard(snapshots: &[Value]) -> anyhow::Result<(BTreeMap<u32, Figures>, String)> {
    use kaipo::ui::{HeaderInfo, LiveState, LiveUpdate, Theme};
    let mut state = LiveState::new(Theme::default());
    state.resize(200, 50);
    let now = Instant::now();
    let mut pids = std::collections::BTreeSet::new();
    for snapshot in snapshots {
        let record: kaipo::model::IntervalRecord = serde_json::from_value(snapshot.clone())?;
        pids.extend(record.processes.iter().map(|p| p.pid));
        state.ingest(LiveUpdate::new(record, HeaderInfo::default()), now);
    }
    let mut totals = BTreeMap::new();
    for pid in pids {
        if let Some(track) = state.process(pid) {
            // The dashboard keeps bytes since start per process; packets are not shown.
            let t = track.meter.totals;
            totals.insert(pid, [t.rx, 0, t.tx, 0]);
        }
    }
    let backend = ratatui::backend::TestBackend::new(200, 50);
    let mut terminal = ratatui::Terminal::new(backend)?;
    terminal.draw(|frame| kaipo::ui::draw::draw(frame, &state))?;
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .chunks(200)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect();
    Ok((totals, screen))
}

fn bytes_only(f: Figures) -> Figures {
    [f[0], 0, f[2], 0]
}

#[test]
fn every_surface_shows_the_same_figures() -> anyhow::Result<()> {
    require_root()?;
    let _route = Blackhole::add();
    let a = Link::new('a', (std::process::id() % 60 * 3) as u8)?;
    let b = Link::new('b', (std::process::id() % 60 * 3 + 1) as u8)?;
    let c = Link::new('c', (std::process::id() % 60 * 3 + 2) as u8)?;
    let dir = std::env::temp_dir().join(format!("kaipo-consistency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let daemon = Daemon::start(&dir, &[&a.host_if, &b.host_if])?;
    let mut watch = Spawned::spawn("kaipo watch", {
        let mut cmd = Command::new(kaipo_bin()?);
        cmd.args(["watch", "--json", "--interval", "500ms"])
            .args(["--iface", &a.host_if, "--iface", &b.host_if]);
        cmd
    })?;
    let mut watched: Vec<Value> = vec![serde_json::from_str(&watch.next_line(STEP)?)?];
    let snapshots = Snapshots::subscribe(daemon.socket())?;
    let kernel_before = [a.kernel()?, b.kernel()?];

    // UDP into A: a sink in the namespace, a sender on the host.
    let mut sink_a = Spawned::spawn(
        "udp-sink a",
        a.traffic(&[
            "udp-sink",
            &format!("{}:0", a.ns_ip),
            &UDP_COUNT.to_string(),
        ]),
    )?;
    let sink_a_pid: u32 = sink_a.expect_num("pid", STEP)?;
    let port_a: u16 = sink_a.expect_num("port", STEP)?;
    let mut send_a = Spawned::spawn("udp-send a", {
        let mut cmd = Command::new(TRAFFIC);
        cmd.args(["udp-send", &format!("{}:{port_a}", a.ns_ip)])
            .args([UDP_COUNT.to_string(), UDP_SIZE.to_string()]);
        cmd
    })?;
    let send_a_pid: u32 = send_a.expect_num("pid", STEP)?;
    send_a.expect("sent", STEP)?;
    send_a.wait_success(STEP)?;
    sink_a.wait_success(STEP)?;

    // TCP into B: a server in the namespace, a client on the host.
    let mut server = Spawned::spawn(
        "tcp-serve b",
        b.traffic(&[
            "tcp-serve",
            &format!("{}:0", b.ns_ip),
            &TCP_BYTES.to_string(),
            "1000",
        ]),
    )?;
    let server_pid: u32 = server.expect_num("pid", STEP)?;
    let port_b: u16 = server.expect_num("port", STEP)?;
    let mut client = Spawned::spawn("tcp-send b", {
        let mut cmd = Command::new(TRAFFIC);
        cmd.args(["tcp-send", &format!("{}:{port_b}", b.ns_ip)])
            .args([TCP_BYTES.to_string(), "1000".to_owned()]);
        cmd
    })?;
    let client_pid: u32 = client.expect_num("pid", STEP)?;
    tcp::expect_sent(&mut client, TCP_BYTES, STEP)?;
    client.expect("done", STEP)?;
    client.wait_success(STEP)?;
    tcp::expect_sent(&mut server, 1000, STEP)?;
    server.expect("done", STEP)?;
    server.wait_success(STEP)?;

    // UDP into C, which nobody asked to monitor.
    let mut sink_c = Spawned::spawn(
        "udp-sink c",
        c.traffic(&["udp-sink", &format!("{}:0", c.ns_ip), "100"]),
    )?;
    let sink_c_pid: u32 = sink_c.expect_num("pid", STEP)?;
    let port_c: u16 = sink_c.expect_num("port", STEP)?;
    let mut send_c = Spawned::spawn("udp-send c", {
        let mut cmd = Command::new(TRAFFIC);
        cmd.args(["udp-send", &format!("{}:{port_c}", c.ns_ip), "100", "300"]);
        cmd
    })?;
    let send_c_pid: u32 = send_c.expect_num("pid", STEP)?;
    send_c.wait_success(STEP)?;
    sink_c.wait_success(STEP)?;

    // Two live intervals and a bit: everything is in the daemon's totals.
    std::thread::sleep(Duration::from_millis(2600));
    let kernel_after = [a.kernel()?, b.kernel()?];
    let status = daemon.status()?;
    let exposition = metrics(daemon.metrics_port)?;
    let snapshots = snapshots.finish()?;
    watch.interrupt()?;
    for line in watch.rest_of_output(STEP)? {
        watched.push(serde_json::from_str(&line)?);
    }
    watch.wait_success(STEP)?;
    let socket_report_dir = daemon.dir.clone();
    daemon.stop()?;
    let report: Value = serde_json::from_str(&run(Command::new(kaipo_bin()?)
        .args([
            "report", "--by", "process", "--format", "json", "--top", "0", "--since", "1h",
        ])
        .arg("--db")
        .arg(socket_report_dir.join("kaipo.db")))?)?;

    // The figures of each surface, per pid.
    let from_watch = per_pid(watched.iter());
    let from_snapshots = per_pid(snapshots.iter());
    let mut from_status = BTreeMap::new();
    for p in status["totals"]["processes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        from_status.insert(p["pid"].as_u64().unwrap_or(0) as u32, of(p));
    }
    let mut from_report = BTreeMap::new();
    for row in report["rows"].as_array().into_iter().flatten() {
        let pid = row["pid"].as_u64().context("report rows carry a pid")? as u32;
        let total = from_report.entry(pid).or_insert([0; 4]);
        *total = add(*total, of(row));
    }
    let (from_dashboard, screen) = dashboard(&snapshots)?;

    // Shown with --nocapture: the figures behind a pass.
    println!(
        "watch {from_watch:?}\nstatus ratio {:?} attribution {}\nmetrics ratio {:?}",
        status["attributed_ratio"],
        status["totals"]["attribution"],
        series(&exposition, "kaipo_attributed_ratio")
    );
    let udp_ip = UDP_COUNT * (UDP_SIZE + 28);
    let expected_exact = [
        (send_a_pid, [0, 0, udp_ip, UDP_COUNT]),
        (sink_a_pid, [udp_ip, UDP_COUNT, 0, 0]),
    ];
    for (pid, want) in expected_exact {
        assert_eq!(from_watch.get(&pid), Some(&want), "watch, pid {pid}");
    }
    for pid in [send_a_pid, sink_a_pid, client_pid, server_pid] {
        let want = from_watch
            .get(&pid)
            .copied()
            .context("watch saw every process")?;
        assert!(want[0] + want[2] > 0, "pid {pid} has traffic");
        assert_eq!(
            from_snapshots.get(&pid),
            Some(&want),
            "snapshots, pid {pid}"
        );
        assert_eq!(from_status.get(&pid), Some(&want), "status, pid {pid}");
        assert_eq!(from_report.get(&pid), Some(&want), "report, pid {pid}");
        assert_eq!(
            from_dashboard.get(&pid),
            Some(&bytes_only(want)),
            "dashboard, pid {pid}"
        );
        assert!(
            screen.contains(&format!(" {pid} ")),
            "the dashboard shows pid {pid}:\n{screen}"
        );
    }
    // The TCP transfer: at least its payload, each way as the other end saw it.
    let (c, s) = (from_watch[&client_pid], from_watch[&server_pid]);
    assert!(
        c[2] > TCP_BYTES && c[2] == s[0] && c[0] == s[2],
        "{c:?} {s:?}"
    );
    // C was not monitored: its processes are nowhere.
    for pid in [send_c_pid, sink_c_pid] {
        for (surface, figures) in [
            ("watch", &from_watch),
            ("snapshots", &from_snapshots),
            ("status", &from_status),
            ("report", &from_report),
        ] {
            assert_eq!(
                figures.get(&pid),
                None,
                "{surface} shows pid {pid} of unmonitored C"
            );
        }
    }

    // Interfaces: kaipo's figures are the kernel's own, on every surface.
    let watch_ifaces = per_iface(watched.iter());
    let snapshot_ifaces = per_iface(snapshots.iter());
    for (i, link) in [&a, &b].into_iter().enumerate() {
        let k = kernel_after[i];
        let k0 = kernel_before[i];
        let kernel = [k[0] - k0[0], k[1] - k0[1], k[2] - k0[2], k[3] - k0[3]];
        assert_eq!(
            watch_ifaces.get(&link.host_if),
            Some(&kernel),
            "watch, {}",
            link.host_if
        );
        assert_eq!(
            snapshot_ifaces.get(&link.host_if),
            Some(&kernel),
            "snapshots, {}",
            link.host_if
        );
        let status_iface = status["totals"]["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["name"] == link.host_if.as_str())
            .map(of);
        assert_eq!(status_iface, Some(kernel), "status, {}", link.host_if);
        for (dir, bytes) in [("rx", kernel[0]), ("tx", kernel[2])] {
            let key = format!(
                "kaipo_interface_bytes_total{{interface=\"{}\",direction=\"{dir}\"}}",
                link.host_if
            );
            assert_eq!(series(&exposition, &key), Some(bytes as f64), "{key}");
        }
    }

    // The share: every frame on A and B belongs to a known process.
    let mut attributed = 0;
    let mut on_ifaces = 0;
    for record in &watched {
        attributed += record["attribution"]["attributed_bytes"]
            .as_u64()
            .unwrap_or(0);
        on_ifaces += record["attribution"]["interface_bytes"]
            .as_u64()
            .unwrap_or(0);
        if let Some(ratio) = record["attributed_ratio"].as_f64() {
            ensure!((0.0..=1.0).contains(&ratio), "ratio {ratio} out of 0..1");
        }
    }
    let kernel_bytes: u64 = (0..2)
        .map(|i| {
            let (k, k0) = (kernel_after[i], kernel_before[i]);
            k[0] - k0[0] + k[2] - k0[2]
        })
        .sum();
    assert_eq!(
        on_ifaces, kernel_bytes,
        "watch: the attribution covers every byte"
    );
    assert_eq!(attributed, on_ifaces, "watch: every byte attributed");
    assert_eq!(status["attributed_ratio"].as_f64(), Some(1.0), "status");
    assert_eq!(
        status["totals"]["attribution"]["attributed_bytes"].as_u64(),
        Some(kernel_bytes),
        "status"
    );
    assert_eq!(series(&exposition, "kaipo_attributed_ratio"), Some(1.0));
    assert_eq!(
        series(&exposition, "kaipo_interface_attributed_bytes_total"),
        Some(kernel_bytes as f64)
    );

    // Apps: the metric of the traffic generator's app adds up its processes' status figures.
    let app = status["totals"]["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["app"] == "kaipo-traffic")
        .map(of)
        .context("status lists the kaipo-traffic app")?;
    let sum = [send_a_pid, sink_a_pid, client_pid, server_pid]
        .iter()
        .map(|pid| from_status[pid])
        .fold([0; 4], add);
    assert_eq!(app, sum, "status: app totals");
    for (dir, bytes) in [("rx", app[0]), ("tx", app[2])] {
        let key = format!("kaipo_app_bytes_total{{app=\"kaipo-traffic\",direction=\"{dir}\"}}");
        assert_eq!(series(&exposition, &key), Some(bytes as f64), "{key}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
