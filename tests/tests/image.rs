//! The container image: `xtask image` builds it from the kaipo binary under test, `podman load`
//! reads the archive back, and the daemon inside, started with exactly the flags of the
//! README's `podman run` line, counts a host process's datagrams over a veth (10.232.0.0/16)
//! exactly and serves them on /metrics; `kaipo doctor` in the same container finds nothing
//! missing. Needs root and podman (Debian package, scripts/setup.sh); podman here runs with
//! runc and bounded descriptor and process limits.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use kaipo_tests::{child::Spawned, kaipo_bin, netns::TestNet, require_root, run};

const RANGE: &str = "10.232.0.0/16";
const UDP4_HEADERS: u64 = 28;
const STEP: Duration = Duration::from_secs(30);
/// What this machine's podman needs on every `run`, besides the documented flags.
const LOCAL_RUN: [&str; 6] = [
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// Removes the container, the image and the scratch directory, whatever happened.
struct Cleanup {
    dir: PathBuf,
    container: String,
    image: String,
    blackhole: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "--time", "2", &self.container])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.blackhole {
            let _ = Command::new("ip")
                .args(["route", "del", "blackhole", RANGE])
                .output();
        }
    }
}

/// The flags of the README's `podman run -d --name kaipo ...` line, without `-d`, the name,
/// the history volume and the image.
fn documented_flags() -> anyhow::Result<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let mut words = Vec::new();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("podman run -d --name kaipo "));
    for line in lines.by_ref() {
        let line = line.trim();
        words.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_owned),
        );
        if !line.ends_with('\\') {
            break;
        }
    }
    ensure!(
        words.len() > 4 && words.last().is_some_and(|w| w == "localhost/kaipo:latest"),
        "README has no `podman run -d --name kaipo ... localhost/kaipo:latest` line: {words:?}"
    );
    words.pop();
    let mut flags = Vec::new();
    let mut it = words.into_iter().skip(2).peekable();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-d" => {}
            "--name" => {
                it.next();
            }
            "-v" if it.peek().is_some_and(|v| v.starts_with("kaipo-history:")) => {
                it.next();
            }
            _ => flags.push(w),
        }
    }
    Ok(flags)
}

fn metrics(port: u16) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(head.contains(" 200 "), "{head}");
    Ok(body.to_owned())
}

fn sample(text: &str, name_and_labels: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[test]
fn the_image_counts_a_host_process_exactly() -> anyhow::Result<()> {
    require_root()?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-image-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("history"))?;
    let cleanup = Cleanup {
        dir: dir.clone(),
        container: format!("kaipo-image-test-{pid}"),
        image: format!("localhost/kaipo-image-test-{pid}:latest"),
        blackhole: Command::new("ip")
            .args(["route", "add", "blackhole", RANGE])
            .status()
            .is_ok_and(|s| s.success()),
    };

    // Build, then load it back from the archive as a user of the image would.
    let kaipo = kaipo_bin()?;
    let xtask = kaipo.with_file_name("xtask");
    let archive = dir.join("kaipo-image.tar");
    run(Command::new(&xtask)
        .args(["image", "--binary"])
        .arg(&kaipo)
        .args(["--tag", &cleanup.image, "--output"])
        .arg(&archive))
    .context("xtask image (build the workspace's binaries first: cargo build --bins)")?;
    run(Command::new("podman").args(["rmi", &cleanup.image]))?;
    let loaded = run(Command::new("podman").arg("load").arg("-i").arg(&archive))?;
    ensure!(loaded.contains(&cleanup.image), "{loaded}");

    let flags = documented_flags()?;
    let doctor = Command::new("podman")
        .args(["run", "--rm"])
        .args(LOCAL_RUN)
        .args(&flags)
        .args([&cleanup.image, "doctor"])
        .output()?;
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&doctor.stderr)
    );
    assert!(
        said.contains("ok       container                    running in a Podman container"),
        "{said}"
    );
    assert!(
        said.contains("kaipo's eBPF collector runs here with everything."),
        "{said}"
    );

    let net = TestNet::without_ipv6_in(232)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join("kaipo.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\nhost = \"image-test\"\n"),
    )?;
    run(Command::new("podman")
        .args(["run", "-d", "--name", &cleanup.container])
        .args(LOCAL_RUN)
        .args(&flags)
        .arg("-v")
        .arg(format!("{}:/etc/kaipo/kaipo.toml:ro", config.display()))
        .arg("-v")
        .arg(format!("{}:/var/lib/kaipo", dir.join("history").display()))
        .args([
            &cleanup.image,
            "daemon",
            "--iface",
            &net.host_if,
            "--live-interval",
            "250ms",
        ]))?;
    let start = Instant::now();
    while !metrics(port).is_ok_and(|m| m.contains("kaipo_intervals_total{host=\"image-test\"}")) {
        let logs =
            run(Command::new("podman").args(["logs", &cleanup.container])).unwrap_or_default();
        ensure!(
            start.elapsed() < STEP,
            "the daemon in the container did not come up: {logs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A host process (outside the container) sends to a sink in the namespace.
    let traffic = PathBuf::from(env!("CARGO_BIN_EXE_kaipo-traffic"));
    let sender = dir.join("kaipo-image-sender");
    std::fs::copy(&traffic, &sender)?;
    let (count, size) = (150_u64, 600_u64);
    let mut sink = net.command(&traffic);
    sink.args(["udp-sink", &format!("{}:0", net.ns_v4), &count.to_string()]);
    let mut sink = Spawned::spawn("sink", sink)?;
    sink.expect("pid", STEP)?;
    let sink_port: u16 = sink.expect_num("port", STEP)?;
    let mut send = Command::new(&sender);
    send.args([
        "udp-send",
        &format!("{}:{sink_port}", net.ns_v4),
        &count.to_string(),
        &size.to_string(),
    ]);
    Spawned::spawn("sender", send)?.wait_success(STEP)?;
    sink.expect("received", STEP)?;

    let want = count * (size + UDP4_HEADERS);
    let key =
        "kaipo_app_bytes_total{host=\"image-test\",app=\"kaipo-image-sender\",direction=\"tx\"}";
    let start = Instant::now();
    loop {
        let text = metrics(port)?;
        if sample(&text, key) == Some(want) {
            assert_eq!(
                sample(
                    &text,
                    "kaipo_app_packets_total{host=\"image-test\",app=\"kaipo-image-sender\",direction=\"tx\"}"
                ),
                Some(count)
            );
            assert_eq!(
                sample(
                    &text,
                    "kaipo_app_bytes_total{host=\"image-test\",app=\"kaipo-traffic\",direction=\"rx\"}"
                ),
                Some(want),
                "{text}"
            );
            break;
        }
        ensure!(start.elapsed() < STEP, "{key} never read {want}: {text}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(net);
    drop(cleanup);
    Ok(())
}
