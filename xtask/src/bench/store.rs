//! `cargo xtask bench store`: what history costs. CPU per interval written, the time of a
//! month-long report, bytes per day of history, and memory over an hour of load. Everything
//! runs in a scratch directory under the system temp dir, removed at the end.

mod ingest;
mod query;
mod report;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use kaipo::store::{
    Dimension, IfaceRow, IntervalBatch, Query, Retention, Store, TrafficRow, DEFAULT_WRITE_INTERVAL,
};

/// 2026-01-01 00:00:00 UTC: simulated time starts on a day boundary.
const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

const QUERY_APPS: u32 = 1000;
const QUERY_DAYS: i64 = 30;
const SIZE_PROCESSES: u32 = 200;
const SIZE_REMOTES: u32 = 5;
const RSS_INTERVALS: u32 = 3600;
const RSS_SAMPLE_EVERY: u32 = 300;

pub fn run() -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "store bench: this is a debug build; for figures that mean something run \
             `cargo run --release -p xtask -- bench store`"
        );
    }
    let scratch = Scratch::new()?;
    let started = Instant::now();
    eprintln!(
        "store bench: ingest ({} intervals of 10,000 rows)",
        ingest::INTERVALS
    );
    let ingest = ingest::run(&scratch.0.join("ingest.db"))?;
    if std::env::var_os("KAIPO_BENCH_STORE_INGEST_ONLY").is_some() {
        print!("{}", report::ingest_only(&ingest));
        return Ok(());
    }
    eprintln!("store bench: memory over an hour of 10,000-row intervals");
    let rss = rss(&scratch.0.join("rss.db"))?;
    eprintln!("store bench: size of a day of 1000 busy sockets");
    let size_60 = size(&scratch.0.join("size60.db"), DEFAULT_WRITE_INTERVAL)?;
    let size_10 = size(&scratch.0.join("size10.db"), Duration::from_secs(10))?;
    eprintln!("store bench: {QUERY_DAYS} days of per-minute history for {QUERY_APPS} apps");
    let query = query::run(&scratch.0.join("query.db"))?;
    print!(
        "{}",
        report::render(&ingest, &rss, &size_60, &size_10, &query, started.elapsed())
    );
    Ok(())
}

/// A directory for the databases, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("kaipo-bench-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// User plus system CPU time of this process, in microseconds.
fn cpu_us() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Reproducible irregular figures (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// `processes` × `remotes` busy sockets, one row each, as the daemon would send them: an app
/// per ten processes, twenty users, a cgroup path per app, a distinct remote per socket.
fn template(processes: u32, remotes: u32) -> IntervalBatch {
    const SERVICES: [&str; 5] = ["https", "http", "dns", "tcp/5432", "ssh"];
    let mut traffic = Vec::with_capacity((processes * remotes) as usize);
    for p in 0..processes {
        let app = format!("app{}", p / 10);
        for r in 0..remotes {
            let n = p * remotes + r;
            traffic.push(TrafficRow {
                app: app.clone(),
                pid: 10_000 + p,
                start_time: 4_000_000 + u64::from(p) * 17,
                cmdline: format!("/usr/bin/{app} --worker {p} --config /etc/{app}.toml"),
                uid: 1000 + p % 20,
                user: Some(format!("user{}", p % 20)),
                container: Some(format!("/system.slice/{app}.service")),
                remote: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
                service: SERVICES[r as usize % SERVICES.len()].to_owned(),
                ..TrafficRow::default()
            });
        }
    }
    IntervalBatch {
        ts_ms: T0,
        interval_ms: 0,
        traffic,
        interfaces: vec![iface("eth0"), iface("eth1")],
    }
}

fn iface(name: &str) -> IfaceRow {
    IfaceRow {
        name: name.to_owned(),
        ..IfaceRow::default()
    }
}

/// New counters for the interval ending at `ts_ms`: up to ~400 kB/s received per socket.
fn refresh(b: &mut IntervalBatch, rng: &mut Rng, ts_ms: i64, interval: Duration) {
    let secs = interval.as_secs().max(1);
    b.ts_ms = ts_ms;
    b.interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
    for r in &mut b.traffic {
        r.rx_bytes = 1 + rng.below(800_000 * secs);
        r.tx_bytes = 1 + rng.below(80_000 * secs);
        r.rx_packets = r.rx_bytes / 1400 + 1;
        r.tx_packets = r.tx_bytes / 600 + 1;
    }
    for i in &mut b.interfaces {
        i.rx_bytes = rng.below(1 << 32);
        i.tx_bytes = rng.below(1 << 30);
        i.rx_packets = i.rx_bytes / 1400;
        i.tx_packets = i.tx_bytes / 600;
    }
}

struct Rss {
    /// (simulated minutes, VmRSS in KiB)
    samples: Vec<(u32, u64)>,
}

fn rss(path: &Path) -> anyhow::Result<Rss> {
    let (mut store, _) = Store::open(path, &Retention::default())?;
    let mut rng = Rng(0xfeed);
    let mut b = template(ingest::PROCESSES, ingest::REMOTES);
    let mut samples = vec![(0, rss_kib())];
    for i in 1..=RSS_INTERVALS {
        let ts = T0 + 1000 * i64::from(i);
        refresh(&mut b, &mut rng, ts, Duration::from_secs(1));
        store.write(&b)?;
        store.maintain(ts)?;
        if i % RSS_SAMPLE_EVERY == 0 {
            // A report now and then, as `kaipo report` against the daemon would ask.
            store.query(&Query {
                per: None,
                from_ms: ts - HOUR,
                to_ms: ts,
                by: Dimension::App,
                top: 10,
                uid: None,
            })?;
            samples.push((i / 60, rss_kib()));
        }
    }
    Ok(Rss { samples })
}

struct Size {
    interval: Duration,
    writes: u32,
    /// (tier, rows, bytes) for interval, minute, hour, day; then identities.
    tiers: Vec<(&'static str, u64, u64)>,
    file_bytes: u64,
}

fn size(path: &Path, interval: Duration) -> anyhow::Result<Size> {
    // Interval rows kept a little over a day, so the full day is still there when measured.
    let retention = Retention {
        interval: Duration::from_secs(25 * 3600),
        ..Retention::default()
    };
    let (mut store, _) = Store::open(path, &retention)?;
    let mut rng = Rng(0xda7a);
    let mut b = template(SIZE_PROCESSES, SIZE_REMOTES);
    let step = i64::try_from(interval.as_millis())?;
    let writes = u32::try_from(DAY / step)?;
    for i in 1..=i64::from(writes) {
        refresh(&mut b, &mut rng, T0 + i * step, interval);
        store.write(&b)?;
        store.maintain(T0 + i * step)?;
    }
    // Close the last minute, hour and day.
    store.maintain(T0 + DAY + 2 * MINUTE + step)?;
    drop(store);
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("VACUUM")?;
    let bytes = |names: &[&str]| -> anyhow::Result<u64> {
        let list = names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(conn.query_row(
            &format!("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({list})"),
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    // Traffic rows; the interval tier packs an interval's rows into one (`rows` of them).
    let rows = |table: &str| -> anyhow::Result<u64> {
        let count = if table == "traffic_interval" {
            "coalesce(sum(rows), 0)"
        } else {
            "count(*)"
        };
        Ok(
            conn.query_row(&format!("SELECT {count} FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    };
    let mut tiers = Vec::new();
    for tier in ["interval", "minute", "hour", "day"] {
        let tables = ["traffic", "iface", "totals"].map(|f| format!("{f}_{tier}"));
        let n = tables
            .iter()
            .map(|t| rows(t))
            .sum::<anyhow::Result<u64>>()?;
        let mut names: Vec<&str> = tables.iter().map(String::as_str).collect();
        if tier == "interval" {
            // The index on the packed intervals' start belongs to the tier.
            names.push("traffic_interval_ts");
        }
        tiers.push((tier, n, bytes(&names)?));
    }
    let identities = [
        "app",
        "user",
        "container",
        "process",
        "iface",
        "remote",
        "service",
        "meta",
    ];
    let mut ident_names: Vec<String> = identities.iter().map(|s| s.to_string()).collect();
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name <> 'traffic_interval'",
    )?;
    ident_names.extend(
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?,
    );
    let refs: Vec<&str> = ident_names.iter().map(String::as_str).collect();
    let ident_rows = identities
        .iter()
        .map(|t| rows(t))
        .sum::<anyhow::Result<u64>>()?;
    tiers.push(("identities", ident_rows, bytes(&refs)?));
    let file_bytes = std::fs::metadata(path)?.len();
    Ok(Size {
        interval,
        writes,
        tiers,
        file_bytes,
    })
}
