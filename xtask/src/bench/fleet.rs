//! `cargo xtask bench fleet`: `kaipo report --prometheus` over 2 hosts x 30 days of
//! one-minute samples, against a local Prometheus whose history is backfilled with
//! `promtool tsdb create-blocks-from openmetrics` (each host: 10 apps and `other`, two
//! directions, bytes and packets: 44 series, 43,200 samples each).

use std::{
    fmt::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

const HOSTS: [&str; 2] = ["bench-a", "bench-b"];
const APPS: usize = 10;
const MINUTES: u64 = 30 * 24 * 60;

pub fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("kaipo-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(dir: &std::path::Path) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    // Whole minutes, ending two hours back: the backfill may not write into the head block's
    // range, which the running server owns.
    let end = (now - 7200) / 60 * 60;
    let start = end - MINUTES * 60;
    let input = dir.join("history.om");
    let mut text = String::with_capacity(200 << 20);
    let mut expected: u64 = 0;
    for (metric, per_minute) in [
        ("kaipo_app_bytes_total", 6000_u64),
        ("kaipo_app_packets_total", 6),
    ] {
        writeln!(text, "# TYPE {} counter", metric.trim_end_matches("_total"))?;
        for host in HOSTS {
            for app in (0..APPS)
                .map(|i| format!("app-{i}"))
                .chain(["other".to_owned()])
            {
                for direction in ["rx", "tx"] {
                    for m in 0..=MINUTES {
                        writeln!(
                            text,
                            "{metric}{{host=\"{host}\",app=\"{app}\",direction=\"{direction}\"}} {} {}",
                            m * per_minute,
                            start + m * 60
                        )?;
                    }
                    if metric == "kaipo_app_bytes_total" && host == "bench-a" && direction == "tx" {
                        expected += MINUTES * per_minute;
                    }
                }
            }
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&input, &text)?;
    drop(text);
    let tsdb = dir.join("tsdb");
    let started = Instant::now();
    crate::run(
        Command::new("promtool")
            // Month-long blocks rather than the default two hours: 2 blocks, not 360.
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                "--max-block-duration=744h",
            ])
            .arg(&input)
            .arg(&tsdb)
            .stdout(Stdio::null()),
    )
    .context("promtool (Debian package prometheus)")?;
    std::fs::remove_file(&input)?;
    println!(
        "backfilled {} series x {} samples in {:?}",
        HOSTS.len() * (APPS + 1) * 4,
        MINUTES + 1,
        started.elapsed()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1m\n",
    )?;
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=60d")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let outcome = (|| -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{port}");
        let kaipo = crate::workspace_root().join(if cfg!(debug_assertions) {
            "target/debug/kaipo"
        } else {
            "target/release/kaipo"
        });
        let report = |by: &str| {
            Command::new(&kaipo)
                .args([
                    "report",
                    "--prometheus",
                    &url,
                    "--by",
                    by,
                    "--format",
                    "json",
                ])
                .arg("--from")
                .arg(start.to_string())
                .arg("--to")
                .arg((end + 1).to_string())
                .output()
        };
        let ready = Instant::now();
        while !report("host")?.status.success() {
            if ready.elapsed() > Duration::from_secs(120) {
                bail!("Prometheus did not come up with the backfilled blocks");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for by in ["host", "app"] {
            let mut times = Vec::new();
            let mut last = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let out = report(by)?;
                times.push(t.elapsed());
                if !out.status.success() {
                    bail!("{}", String::from_utf8_lossy(&out.stderr));
                }
                last = out.stdout;
            }
            times.sort();
            let v: serde_json::Value = serde_json::from_slice(&last)?;
            if by == "host" {
                let a_tx = v["rows"]
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["key"] == "bench-a"))
                    .and_then(|r| r["tx_bytes"].as_u64());
                if a_tx != Some(expected) {
                    bail!("bench-a sent {a_tx:?}, expected {expected}");
                }
            }
            println!(
                "kaipo report --prometheus --by {by} over 30 days of 2 hosts (median of 5): {:?}",
                times[2]
            );
        }
        Ok(())
    })();
    let _ = prom.kill();
    let _ = prom.wait();
    outcome
}
