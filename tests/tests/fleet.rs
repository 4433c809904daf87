//! The fleet through Prometheus: two daemons labelled as two hosts (`--metrics-host`), a real
//! Prometheus (Debian package `prometheus`) scraping both with the shipped scrape config and
//! rules, and `kaipo report --prometheus` giving exact per-host and per-app totals.
//!
//! Both daemons watch one veth (10.232.0.0/16, this test's own range) with `--iface`, so
//! they count only the test's datagrams. Daemon A runs throughout; daemon B starts after the
//! first sender is done, so it sees only the second one: host A holds both senders' traffic,
//! host B the second's, and the second app's fleet total is twice its traffic.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use kaipo_tests::{child::Spawned, kaipo_bin, netns::TestNet, require_root, run};
use serde_json::Value;

const RANGE: &str = "10.232.0.0/16";
const UDP4_HEADERS: u64 = 28;
const STEP: Duration = Duration::from_secs(30);

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("kaipo-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The blackhole route for the test's range while its links exist, removed on drop.
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

/// A background process killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn http_get(port: u16, target: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(head.contains(" 200 "), "{head}");
    Ok(body.to_owned())
}

/// A daemon on `iface` whose samples say `host`; its metrics port.
fn daemon(dir: &Path, host: &str, iface: &str) -> anyhow::Result<(Background, u16)> {
    let port = free_port()?;
    let dir = dir.join(host);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("kaipo.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )?;
    let child = Command::new(kaipo_bin()?)
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .arg("--db")
        .arg(dir.join("kaipo.db"))
        .arg("--socket")
        .arg(dir.join("kaipo.sock"))
        .args(["--iface", iface, "--live-interval", "250ms"])
        .args(["--metrics-host", host])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting kaipo daemon")?;
    let d = Background(child);
    let start = Instant::now();
    // Serving metrics comes before the collector starts; the first interval after it.
    while !http_get(port, "/metrics").is_ok_and(|m| m.contains("kaipo_intervals_total{host=")) {
        ensure!(start.elapsed() < STEP, "daemon {host} did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((d, port))
}

/// `count` datagrams of `size` bytes from a host process named `name` to a sink in the
/// namespace; returns when the sink has them all.
fn send(net: &TestNet, dir: &Path, name: &str, count: u64, size: u64) -> anyhow::Result<()> {
    let traffic = PathBuf::from(env!("CARGO_BIN_EXE_kaipo-traffic"));
    let (sender, sink) = (dir.join(name), dir.join("kaipo-fleet-sink"));
    std::fs::copy(&traffic, &sender)?;
    if !sink.exists() {
        std::fs::copy(&traffic, &sink)?;
    }
    let mut cmd = net.command(&sink);
    cmd.args(["udp-sink", &format!("{}:0", net.ns_v4), &count.to_string()]);
    let mut sink = Spawned::spawn("sink", cmd)?;
    sink.expect("pid", STEP)?;
    let port: u16 = sink.expect_num("port", STEP)?;
    let mut cmd = Command::new(&sender);
    cmd.args([
        "udp-send",
        &format!("{}:{port}", net.ns_v4),
        &count.to_string(),
        &size.to_string(),
    ]);
    let mut sender = Spawned::spawn(name, cmd)?;
    sender.wait_success(STEP)?;
    sink.expect("received", STEP)?;
    Ok(())
}

/// deploy/prometheus with the scrape and evaluation intervals at 1 s and `ports` as targets.
fn prometheus(dir: &Path, ports: &[u16]) -> anyhow::Result<(Background, u16)> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let conf = dir.join("prometheus");
    std::fs::create_dir_all(conf.join("kaipo-targets"))?;
    for file in ["kaipo-rules.yml", "kaipo-alerts.yml"] {
        std::fs::copy(shipped.join(file), conf.join(file))?;
    }
    let text = std::fs::read_to_string(shipped.join("prometheus.yml"))?;
    let intervals = "  scrape_interval: 15s\n  evaluation_interval: 15s\n";
    ensure!(text.contains(intervals), "the shipped intervals moved");
    std::fs::write(
        conf.join("prometheus.yml"),
        text.replace(
            intervals,
            "  scrape_interval: 1s\n  evaluation_interval: 1s\n",
        ),
    )?;
    let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    std::fs::write(
        conf.join("kaipo-targets/test.json"),
        format!("[{{\"targets\": [{}]}}]", targets.join(",")),
    )?;
    let port = free_port()?;
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            conf.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("prometheus is not installed: apt-get install prometheus (scripts/setup.sh)")?;
    Ok((Background(child), port))
}

/// Every `(labels, value)` of an instant query.
fn prom_query(port: u16, query: &str) -> anyhow::Result<Vec<(Value, f64)>> {
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
    let v: Value = serde_json::from_str(&http_get(port, &format!("/api/v1/query?query={q}"))?)?;
    let Some(result) = v["data"]["result"].as_array() else {
        bail!("{query}: {v}");
    };
    Ok(result
        .iter()
        .map(|r| {
            (
                r["metric"].clone(),
                r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect())
}

fn report(prom_port: u16, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new(kaipo_bin()?)
        .args(["report", "--prometheus"])
        .arg(format!("http://127.0.0.1:{prom_port}"))
        .args(["--since", "10m"])
        .args(args))
}

/// `(key, rx_bytes, tx_bytes, tx_packets)` of each row of a JSON report.
fn rows(json: &str) -> anyhow::Result<Vec<(String, u64, u64, u64)>> {
    let v: Value = serde_json::from_str(json)?;
    let field = |r: &Value, f: &str| r[f].as_u64().unwrap_or(u64::MAX);
    Ok(v["rows"]
        .as_array()
        .context("rows")?
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or("?").to_owned(),
                field(r, "rx_bytes"),
                field(r, "tx_bytes"),
                field(r, "tx_packets"),
            )
        })
        .collect())
}

#[test]
fn prometheus_holds_exact_per_host_and_per_app_totals() -> anyhow::Result<()> {
    require_root()?;
    let scratch = Scratch::new()?;
    let _blackhole = Blackhole::add();
    let net = TestNet::without_ipv6_in(232)?;
    let (n1, s1, n2, s2) = (120_u64, 500_u64, 80_u64, 900_u64);
    let (x1, x2) = (n1 * (s1 + UDP4_HEADERS), n2 * (s2 + UDP4_HEADERS));

    let (_a, port_a) = daemon(&scratch.0, "fleet-a", &net.host_if)?;
    send(&net, &scratch.0, "kaipo-fleet-one", n1, s1)?;
    let (_b, port_b) = daemon(&scratch.0, "fleet-b", &net.host_if)?;
    send(&net, &scratch.0, "kaipo-fleet-two", n2, s2)?;
    let (_prom, prom_port) = prometheus(&scratch.0, &[port_a, port_b])?;

    // Prometheus has both hosts' last figures once both senders' series read their totals.
    let want = [
        ("fleet-a", "kaipo-fleet-one", x1),
        ("fleet-a", "kaipo-fleet-two", x2),
        ("fleet-b", "kaipo-fleet-two", x2),
    ];
    let start = Instant::now();
    loop {
        let mut ok = true;
        for (host, app, bytes) in want {
            let q =
                format!("kaipo_app_bytes_total{{host=\"{host}\",app=\"{app}\",direction=\"tx\"}}");
            let got = prom_query(prom_port, &q).unwrap_or_default();
            ok &= got.len() == 1 && got[0].1 == bytes as f64;
        }
        if ok {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never held {want:?}: {:?}",
            prom_query(prom_port, "kaipo_app_bytes_total{direction=\"tx\"}")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // No series of host B for the first sender: B started after it finished.
    let b_one = prom_query(
        prom_port,
        "kaipo_app_bytes_total{host=\"fleet-b\",app=\"kaipo-fleet-one\"}",
    )?;
    assert!(b_one.is_empty(), "{b_one:?}");

    let by_host = rows(&report(prom_port, &["--by", "host", "--format", "json"])?)?;
    assert_eq!(
        by_host,
        [
            ("fleet-a".to_owned(), x1 + x2, x1 + x2, n1 + n2),
            ("fleet-b".to_owned(), x2, x2, n2),
        ]
    );
    let by_app = rows(&report(prom_port, &["--by", "app", "--format", "json"])?)?;
    let app = |name: &str| by_app.iter().find(|r| r.0 == name).cloned();
    assert_eq!(
        app("kaipo-fleet-sink"),
        Some(("kaipo-fleet-sink".to_owned(), x1 + 2 * x2, 0, 0))
    );
    assert_eq!(
        app("kaipo-fleet-one"),
        Some(("kaipo-fleet-one".to_owned(), 0, x1, n1))
    );
    assert_eq!(
        app("kaipo-fleet-two"),
        Some(("kaipo-fleet-two".to_owned(), 0, 2 * x2, 2 * n2))
    );
    // The table and CSV carry the same figures.
    let csv = report(prom_port, &["--by", "host", "--format", "csv"])?;
    assert!(
        csv.lines().any(|l| l
            .trim_end()
            .ends_with(&format!(",host,fleet-b,{x2},{x2},{n2},{n2}"))),
        "{csv}"
    );
    let table = report(prom_port, &["--by", "host"])?;
    assert!(
        table.contains("fleet-a") && table.contains("fleet-b"),
        "{table}"
    );
    // The recording rules, evaluated every second on the shipped rule file (a rate needs two
    // scrapes, which the dashboard's rates below need too).
    let start = Instant::now();
    loop {
        let r = prom_query(
            prom_port,
            "host_app_direction:kaipo_app_bytes:rate5m{app=\"kaipo-fleet-two\",direction=\"tx\"}",
        )?;
        if r.len() == 2 {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the recording rule never had both hosts: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every query of the shipped Grafana dashboard runs on the real Prometheus; the totals
    // panel holds the exact figures and the top-hosts panels both hosts.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/kaipo-fleet.json"),
    )?)?;
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().context("panels")? {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().context("targets")? {
            let expr = target["expr"].as_str().context("expr")?;
            let q = expr
                .replace("$host", ".*")
                .replace("$job", ".*")
                .replace("$__rate_interval", "1m");
            let result = prom_query(prom_port, &q).with_context(|| format!("{title}: {q}"))?;
            panels += 1;
            let hosts = |r: &[(Value, f64)]| -> Vec<String> {
                let mut h: Vec<String> = r
                    .iter()
                    .filter_map(|(m, _)| m["host"].as_str().map(str::to_owned))
                    .collect();
                h.sort();
                h.dedup();
                h
            };
            match title {
                "Traffic since each daemon started" => {
                    let mut got: Vec<(String, String, f64)> = result
                        .iter()
                        .map(|(m, v)| {
                            (
                                m["host"].as_str().unwrap_or("?").to_owned(),
                                m["direction"].as_str().unwrap_or("?").to_owned(),
                                *v,
                            )
                        })
                        .collect();
                    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                    let f = |n: u64| n as f64;
                    assert_eq!(
                        got,
                        [
                            ("fleet-a".into(), "rx".into(), f(x1 + x2)),
                            ("fleet-a".into(), "tx".into(), f(x1 + x2)),
                            ("fleet-b".into(), "rx".into(), f(x2)),
                            ("fleet-b".into(), "tx".into(), f(x2)),
                        ]
                    );
                }
                "Top hosts: sent" | "Top hosts: received" | "Top apps per host" => {
                    assert_eq!(hosts(&result), ["fleet-a", "fleet-b"], "{title}");
                }
                _ => {}
            }
        }
    }
    assert_eq!(panels, 12);
    // The fleet dashboard's view: host as a column, each host's totals exact.
    let view = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let prom = kaipo::fleet::Prometheus::new(
                &format!("http://127.0.0.1:{prom_port}"),
                Duration::from_secs(10),
            )?;
            kaipo::fleet::live::poll(&prom, 0).await
        })?;
    let hosts: Vec<(&str, u64, u64)> = view
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.rx_total, h.tx_total))
        .collect();
    assert_eq!(hosts, [("fleet-a", x1 + x2, x1 + x2), ("fleet-b", x2, x2)]);
    let two_on_b = view
        .apps
        .iter()
        .find(|a| a.host == "fleet-b" && a.app.as_deref() == Some("kaipo-fleet-two"))
        .map(|a| (a.rx_total, a.tx_total));
    assert_eq!(two_on_b, Some((0, x2)));
    // Every frame on the veth was the test's, of known processes.
    assert!(
        view.hosts.iter().all(|h| h.attributed == Some(1.0)),
        "{view:?}"
    );
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(110, 20))?;
    terminal.draw(|f| {
        kaipo::fleet::live::draw(
            f,
            &view,
            kaipo::ui::theme::Theme::from_no_color(Some("1".into())),
        )
    })?;
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(screen.contains("kaipo fleet: 2 hosts"), "{screen}");
    assert!(screen.contains("kaipo-fleet-two"), "{screen}");

    // The same dashboard in a real terminal (tmux, a socket of its own): both hosts drawn,
    // q quits with status 0.
    let socket = format!("kaipo-fleet-{}", std::process::id());
    let exit_file = scratch.0.join("live-exit");
    let command = format!(
        "{} live --prometheus http://127.0.0.1:{prom_port} --interval 1s; echo $? > {}",
        kaipo_bin()?.display(),
        exit_file.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "fleet",
        "-x",
        "120",
        "-y",
        "30",
        &command,
    ])
    .context("tmux is installed (scripts/setup.sh)")?;
    ensure!(started.status.success(), "{started:?}");
    let start = Instant::now();
    let mut screen = String::new();
    while !(screen.contains("kaipo fleet: 2 hosts")
        && screen.contains("fleet-b")
        && screen.contains("kaipo-fleet-two"))
    {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = tmux(&["kill-server"]);
            bail!("the fleet dashboard never showed both hosts: {screen}");
        }
        std::thread::sleep(Duration::from_millis(200));
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "fleet"])?.stdout)
            .into_owned();
    }
    tmux(&["send-keys", "-t", "fleet", "q"])?;
    let start = Instant::now();
    while !exit_file.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tmux(&["kill-server"]);
    assert_eq!(std::fs::read_to_string(&exit_file)?.trim(), "0", "{screen}");

    // Bad input is an error that says what to do, not a panic.
    let err = Command::new(kaipo_bin()?)
        .args([
            "report",
            "--prometheus",
            "https://127.0.0.1:1",
            "--by",
            "host",
        ])
        .output()?;
    assert_eq!(err.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("https is not supported"),
        "{err:?}"
    );
    let remote = Command::new(kaipo_bin()?)
        .args(["report", "--prometheus"])
        .arg(format!("http://127.0.0.1:{prom_port}"))
        .args(["--by", "remote"])
        .output()?;
    assert!(
        String::from_utf8_lossy(&remote.stderr)
            .contains("carries a `remote` label: add \"remote\" to metrics.labels on the daemons"),
        "{remote:?}"
    );
    Ok(())
}
