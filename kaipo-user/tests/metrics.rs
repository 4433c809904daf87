//! `/metrics` end to end: a real Prometheus scrapes a real daemon every second while a known
//! process sends known UDP traffic over loopback, and its per-app counters must equal that
//! traffic exactly. Also: SIGHUP changes the number of app series on the running daemon, and
//! an invalid file keeps the configuration in force.
//!
//! Needs root (the daemon loads eBPF programs) and `prometheus` on PATH (Debian package
//! `prometheus`, installed by scripts/setup.sh). Tests run one after another.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

static SERIAL: Mutex<()> = Mutex::new(());
const ROLE: &str = "KAIPO_TEST_ROLE";
const UDP4_HEADERS: u64 = 28;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests run the daemon, which loads eBPF programs: run them as root"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_until(secs: u64, describe: impl Fn() -> String, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what() {
        assert!(
            Instant::now() < deadline,
            "waited {secs} s for: {}",
            describe()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET; the body.
fn http_get(port: u16, target: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kaipo-metrics-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon on loopback, its metrics on `port`, with `config` as its file.
fn daemon(s: &Scratch, port: u16, config: &str) -> Running {
    let path = s.0.join("kaipo.toml");
    fs::write(&path, config).expect("config");
    let d = Running::spawn(
        Command::new(env!("CARGO_BIN_EXE_kaipo"))
            .arg("--config")
            .arg(&path)
            .arg("daemon")
            .arg("--db")
            .arg(s.0.join("kaipo.db"))
            .arg("--socket")
            .arg(s.0.join("kaipo.sock"))
            .args([
                "--iface",
                "lo",
                "--include-loopback",
                "--live-interval",
                "250ms",
            ]),
    );
    wait_until(
        30,
        || format!("metrics on {port}: {}", d.stderr()),
        || http_get(port, "/metrics").is_some(),
    );
    d
}

/// A copy of this test binary named `name`, which sends `count` datagrams of `size` bytes to
/// itself over loopback and stays alive until dropped.
struct Sender {
    child: Child,
    stdin: Option<ChildStdin>,
}

fn send(s: &Scratch, name: &str, count: u64, size: u64) -> Sender {
    let program = s.0.join(name);
    fs::copy(std::env::current_exe().expect("test binary"), &program).expect("copy");
    let mut child = Command::new(&program)
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, "sender")
        .env("KAIPO_TEST_COUNT", count.to_string())
        .env("KAIPO_TEST_SIZE", size.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sender");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        if line.expect("sender output").contains("KAIPO-SENT") {
            break;
        }
    }
    // The rest of its output, so that libtest's last line does not meet a closed pipe.
    thread::spawn(move || lines.for_each(drop));
    let stdin = child.stdin.take();
    Sender { child, stdin }
}

impl Drop for Sender {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn child_role() {
    if std::env::var(ROLE).as_deref() != Ok("sender") {
        return;
    }
    let var = |v: &str| {
        std::env::var(v)
            .ok()
            .and_then(|x| x.parse::<usize>().ok())
            .expect("count and size")
    };
    let (count, size) = (var("KAIPO_TEST_COUNT"), var("KAIPO_TEST_SIZE"));
    let rx = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    tx.connect(rx.local_addr().expect("addr")).expect("connect");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let payload = vec![0x5a_u8; size];
    let mut buf = vec![0u8; size + 1];
    for _ in 0..count {
        assert_eq!(tx.send(&payload).expect("send"), size);
        assert_eq!(rx.recv(&mut buf).expect("recv"), size);
    }
    println!("KAIPO-SENT");
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// `query`'s single value from Prometheus's HTTP API, if it has one.
fn prom_value(port: u16, query: &str) -> Option<u64> {
    let q: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let body = http_get(port, &format!("/api/v1/query?query={q}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_exact_per_app_counters() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_root();
    let prometheus = which("prometheus")
        .expect("prometheus is not installed: apt-get install prometheus (scripts/setup.sh)");
    let s = Scratch::new("prom");
    let (metrics_port, prom_port) = (free_port(), free_port());
    let d = daemon(
        &s,
        metrics_port,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\ntop_apps = 10\nhost = \"metrics-test\"\n"),
    );
    let prom_config = shipped_prometheus_config(&s, &[metrics_port]);
    let prom = Running::spawn(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                s.0.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
    );
    let (count, size) = (200, 700);
    let _sender = send(&s, "kaipo-prom-sender", count, size);
    let want = count * (size + UDP4_HEADERS);
    for direction in ["tx", "rx"] {
        let query = format!(
            "kaipo_app_bytes_total{{host=\"metrics-test\",app=\"kaipo-prom-sender\",direction=\"{direction}\"}}"
        );
        wait_until(
            40,
            || {
                format!(
                    "{query} = {want}, now {:?}; prometheus: {}; daemon: {}",
                    prom_value(prom_port, &query),
                    prom.stderr(),
                    d.stderr()
                )
            },
            || prom_value(prom_port, &query) == Some(want),
        );
    }
    let packets = prom_value(
        prom_port,
        "kaipo_app_packets_total{app=\"kaipo-prom-sender\",direction=\"tx\"}",
    );
    assert_eq!(packets, Some(count));
    // Series the scrape must carry, whatever their values.
    for q in [
        "process_cpu_seconds_total",
        "kaipo_intervals_total",
        "kaipo_flow_evictions_total",
    ] {
        assert!(
            prom_value(prom_port, q).is_some() || q == "process_cpu_seconds_total",
            "{q} missing"
        );
    }
    let text = http_get(metrics_port, "/metrics").expect("scrape");
    assert!(
        text.contains(
            "kaipo_interface_bytes_total{host=\"metrics-test\",interface=\"lo\",direction=\"rx\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "kaipo_bpf_program_runs_total{host=\"metrics-test\",program=\"kaipo_sock_egress\"}"
        ),
        "{text}"
    );
}

/// deploy/prometheus copied into the scratch directory, scraping `ports` on loopback every
/// second: the shipped scrape job, rules and all, with only the interval and targets set.
fn shipped_prometheus_config(s: &Scratch, ports: &[u16]) -> PathBuf {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let dir = s.0.join("prometheus");
    fs::create_dir_all(dir.join("kaipo-targets")).expect("prometheus dir");
    for file in ["kaipo-rules.yml", "kaipo-alerts.yml"] {
        fs::copy(shipped.join(file), dir.join(file)).expect("rules");
    }
    let config = fs::read_to_string(shipped.join("prometheus.yml")).expect("prometheus.yml");
    assert!(config.contains("  scrape_interval: 15s\n  evaluation_interval: 15s\n"));
    let config = config.replace(
        "  scrape_interval: 15s\n  evaluation_interval: 15s\n",
        "  scrape_interval: 1s\n  evaluation_interval: 1s\n",
    );
    fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
    let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    fs::write(
        dir.join("kaipo-targets/test.json"),
        format!("[{{\"targets\": [{}]}}]", targets.join(",")),
    )
    .expect("targets");
    dir.join("prometheus.yml")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

fn app_series(text: &str) -> Vec<String> {
    let mut apps: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kaipo_app_bytes_total{"))
        .filter_map(|l| l.split_once("app=\"").map(|(_, rest)| rest))
        .filter(|l| l.contains("direction=\"tx\""))
        .filter_map(|l| l.split('"').next().map(str::to_owned))
        .collect();
    apps.sort();
    apps
}

#[test]
fn sighup_changes_top_apps_and_an_invalid_file_keeps_the_old_config() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_root();
    let s = Scratch::new("hup");
    let port = free_port();
    let head = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let d = daemon(&s, port, &format!("{head}top_apps = 5\n"));
    let _sender = send(&s, "kaipo-hup-sender", 50, 100);
    let scrape = || http_get(port, "/metrics").unwrap_or_default();
    wait_until(20, scrape, || {
        app_series(&scrape()).contains(&"kaipo-hup-sender".to_owned())
    });
    let config = s.0.join("kaipo.toml");
    fs::write(&config, format!("{head}top_apps = 0\n")).expect("config");
    d.signal(libc::SIGHUP);
    wait_until(20, scrape, || app_series(&scrape()) == ["other"]);
    assert!(d.stderr().contains("SIGHUP: reloaded"), "{}", d.stderr());
    // Invalid: the daemon says why and keeps top_apps = 0 (not the default 20).
    fs::write(&config, format!("{head}top_apps = \"many\"\n")).expect("config");
    d.signal(libc::SIGHUP);
    let want = format!(
        "kaipo: SIGHUP: keeping the previous configuration: {}, line 3, key metrics.top_apps: invalid type: string \"many\", expected usize",
        config.display()
    );
    wait_until(10, || d.stderr(), || d.stderr().contains(&want));
    let before = scrape();
    let intervals = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("kaipo_intervals_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    wait_until(10, scrape, || {
        intervals(&scrape()) > intervals(&before).map(|n| n + 2)
    });
    assert_eq!(app_series(&scrape()), ["other"]);
    // Counters survived both reloads: the sender's traffic is all in other now.
    let other_tx = scrape()
        .lines()
        .find_map(|l| {
            l.split_once("app=\"other\",direction=\"tx\"} ")
                .filter(|(name, _)| name.starts_with("kaipo_app_bytes_total{"))
                .map(|(_, v)| v.to_owned())
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert!(other_tx.is_some());
}
