//! `cargo xtask bench store`: what history costs. CPU per interval written, the time of a
//! month-long report, bytes per day of history, and memory over an hour of load. Everything
//! runs in a scratch directory under the system temp dir, removed at the end.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use kaipo::store::{
    Dimension, IfaceRow, IntervalBatch, Query, Report, Retention, Store, TrafficRow,
    DEFAULT_WRITE_INTERVAL,
};

/// 2026-01-01 00:00:00 UTC: simulated time starts on a day boundary.
const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

const INGEST_PROCESSES: u32 = 2000;
const INGEST_REMOTES: u32 = 5;
const INGEST_INTERVALS: u32 = 200;
const QUERY_APPS: u32 = 1000;
const QUERY_DAYS: i64 = 30;
const SIZE_PROCESSES: u32 = 200;
const SIZE_REMOTES: u32 = 5;
const RSS_INTERVALS: u32 = 3600;
const RSS_SAMPLE_EVERY: u32 = 300;

const TARGET_WRITE_MS: f64 = 5.0;
const TARGET_QUERY_MS: f64 = 200.0;
const TARGET_DAY_MIB: f64 = 50.0;

pub fn run() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let started = Instant::now();
    eprintln!("store bench: ingest ({INGEST_INTERVALS} intervals of 10,000 rows)");
    let ingest = ingest(&scratch.0.join("ingest.db"))?;
    if std::env::var("TMP_ONLY_INGEST").is_ok() {
        let n = ingest.write_ms.len() as f64;
        eprintln!("write {:.2} ms (p50 {:.2}) maintain {:.2} ms first {:.1}", ingest.write_ms.iter().sum::<f64>() / n, median(ingest.write_ms.clone()), ingest.maintain_ms_total / n, ingest.first_write_ms);
        return Ok(());
    }
    eprintln!("store bench: memory over an hour of 10,000-row intervals");
    let rss = rss(&scratch.0.join("rss.db"))?;
    eprintln!("store bench: size of a day of 1000 busy sockets");
    let size_60 = size(&scratch.0.join("size60.db"), DEFAULT_WRITE_INTERVAL)?;
    let size_10 = size(&scratch.0.join("size10.db"), Duration::from_secs(10))?;
    eprintln!("store bench: {QUERY_DAYS} days of per-minute history for {QUERY_APPS} apps");
    let query = query(&scratch.0.join("query.db"))?;
    print!("{}", report(&ingest, &rss, &size_60, &size_10, &query, started.elapsed()));
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
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
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

struct Ingest {
    first_write_ms: f64,
    write_ms: Vec<f64>,
    wall_ms: Vec<f64>,
    maintain_ms_total: f64,
    minutes_rolled: u32,
}

fn ingest(path: &Path) -> anyhow::Result<Ingest> {
    let (mut store, _) = Store::open(path, &Retention::default())?;
    let mut rng = Rng(0x5eed);
    let mut b = template(INGEST_PROCESSES, INGEST_REMOTES);
    let second = Duration::from_secs(1);
    refresh(&mut b, &mut rng, T0 + 1000, second);
    // The first interval also creates 2000 processes and 10,000 remotes.
    let c = cpu_us();
    store.write(&b)?;
    let first_write_ms = (cpu_us() - c) as f64 / 1000.0;
    store.maintain(b.ts_ms)?;
    let mut out = Ingest {
        first_write_ms,
        write_ms: Vec::new(),
        wall_ms: Vec::new(),
        maintain_ms_total: 0.0,
        minutes_rolled: 0,
    };
    for i in 1..=INGEST_INTERVALS {
        refresh(&mut b, &mut rng, T0 + 1000 * (i64::from(i) + 1), second);
        let (c, w) = (cpu_us(), Instant::now());
        store.write(&b)?;
        out.write_ms.push((cpu_us() - c) as f64 / 1000.0);
        out.wall_ms.push(w.elapsed().as_secs_f64() * 1000.0);
        let c = cpu_us();
        let stats = store.maintain(b.ts_ms)?;
        out.maintain_ms_total += (cpu_us() - c) as f64 / 1000.0;
        out.minutes_rolled += u32::from(stats.closed_until_ms.is_some());
    }
    Ok(out)
}

struct Rss {
    /// (simulated minutes, VmRSS in KiB)
    samples: Vec<(u32, u64)>,
}

fn rss(path: &Path) -> anyhow::Result<Rss> {
    let (mut store, _) = Store::open(path, &Retention::default())?;
    let mut rng = Rng(0xfeed);
    let mut b = template(INGEST_PROCESSES, INGEST_REMOTES);
    let mut samples = vec![(0, rss_kib())];
    for i in 1..=RSS_INTERVALS {
        let ts = T0 + 1000 * i64::from(i);
        refresh(&mut b, &mut rng, ts, Duration::from_secs(1));
        store.write(&b)?;
        store.maintain(ts)?;
        if i % RSS_SAMPLE_EVERY == 0 {
            // A report now and then, as `kaipo report` against the daemon would ask.
            store.query(&Query { from_ms: ts - HOUR, to_ms: ts, by: Dimension::App, top: 10, uid: None })?;
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
    let retention = Retention { interval: Duration::from_secs(25 * 3600), ..Retention::default() };
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
        let list = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        Ok(conn.query_row(
            &format!("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({list})"),
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    let rows = |table: &str| -> anyhow::Result<u64> {
        Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))? as u64)
    };
    let mut tiers = Vec::new();
    for tier in ["interval", "minute", "hour", "day"] {
        let (t, i) = (format!("traffic_{tier}"), format!("iface_{tier}"));
        tiers.push((tier, rows(&t)? + rows(&i)?, bytes(&[&t, &i])?));
    }
    let identities = ["app", "user", "container", "process", "iface", "remote", "service", "meta"];
    let mut ident_names: Vec<String> = identities.iter().map(|s| s.to_string()).collect();
    let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'index'")?;
    ident_names.extend(stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?);
    let refs: Vec<&str> = ident_names.iter().map(String::as_str).collect();
    let ident_rows = identities.iter().map(|t| rows(t)).sum::<anyhow::Result<u64>>()?;
    tiers.push(("identities", ident_rows, bytes(&refs)?));
    let file_bytes = std::fs::metadata(path)?.len();
    Ok(Size { interval, writes, tiers, file_bytes })
}

struct QueryBench {
    fill_s: f64,
    rollup_s: f64,
    minute_rows: u64,
    first_ms: f64,
    uncached_ms: Vec<f64>,
    cached_ms: Vec<f64>,
    report: Report,
    three_days_ms: Vec<f64>,
}

/// Fills the minute tier straight from SQL: identity rows for 1000 apps (one process each),
/// then per day one `INSERT ... SELECT` over a recursive CTE of that day's minutes crossed with
/// the processes, in key order, on a separate connection with `synchronous = OFF`. The hour
/// and day tiers are then built by the store's own `maintain`.
fn fill_minutes(path: &Path, end_min: i64) -> anyhow::Result<u64> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = OFF;
         BEGIN;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {QUERY_APPS})
         INSERT INTO app (id, name) SELECT x, 'app' || x FROM n;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20)
         INSERT INTO user (id, uid, name) SELECT x, 999 + x, 'user' || x FROM n;
         INSERT INTO container (id, name) VALUES (1, '');
         INSERT INTO process (id, pid, start_time, app_id, user_id, container_id, cmdline)
             SELECT id, 10000 + id, id * 13, id, 1 + id % 20, 1, '/usr/bin/app' || id || ' --serve'
             FROM app;
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50)
         INSERT INTO remote (id, addr) SELECT x, '192.0.2.' || x FROM n;
         INSERT INTO service (id, name) VALUES (1, 'https'), (2, 'http'), (3, 'dns'), (4, 'ssh'), (5, 'tcp/8080');
         COMMIT;"
    ))?;
    let start_min = end_min - QUERY_DAYS * 1440;
    for day in 0..QUERY_DAYS {
        let lo = start_min + day * 1440;
        let tx = conn.transaction()?;
        tx.execute(
            "WITH RECURSIVE m(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM m WHERE x < ?2)
             INSERT INTO traffic_minute
                 (ts, process_id, remote_id, service_id, rx_bytes, tx_bytes, rx_packets, tx_packets)
             SELECT m.x, p.id, 1 + p.id % 50, 1 + p.id % 5,
                    1 + (p.id * 7919 + m.x * 104729) % 5000000,
                    1 + (p.id * 104729 + m.x * 7919) % 500000,
                    1 + (p.id + m.x) % 4000, 1 + (p.id * 3 + m.x) % 400
             FROM m CROSS JOIN process p",
            [lo, lo + 1439],
        )?;
        tx.commit()?;
    }
    Ok(conn.query_row("SELECT count(*) FROM traffic_minute", [], |r| r.get::<_, i64>(0))? as u64)
}

fn query(path: &Path) -> anyhow::Result<QueryBench> {
    let retention = Retention { minute: Duration::from_secs(31 * 86_400), ..Retention::default() };
    drop(Store::open(path, &retention)?);
    let end = T0 + QUERY_DAYS * DAY;
    let t = Instant::now();
    let minute_rows = fill_minutes(path, end / MINUTE)?;
    let fill_s = t.elapsed().as_secs_f64();
    let (mut store, _) = Store::open(path, &retention)?;
    let now = end + 2 * MINUTE;
    let t = Instant::now();
    store.maintain(now)?;
    let rollup_s = t.elapsed().as_secs_f64();
    drop(store);

    // A fresh reader, as `kaipo report --since 30d --by app` would open it.
    let mut store = Store::open_read_only(path)?;
    let q = |to_ms: i64, days: i64| Query { from_ms: to_ms - days * DAY, to_ms, by: Dimension::App, top: 0, uid: None };
    let timed = |store: &mut Store, q: &Query| -> anyhow::Result<(f64, Report)> {
        let t = Instant::now();
        let r = store.query(q)?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, r))
    };
    let (first_ms, report) = timed(&mut store, &q(now, QUERY_DAYS))?;
    let mut uncached_ms = Vec::new();
    let mut cached_ms = Vec::new();
    let mut three_days_ms = Vec::new();
    for k in 1..=5 {
        // A different end by a second: the same work, but not the cached answer.
        uncached_ms.push(timed(&mut store, &q(now + 1000 * k, QUERY_DAYS))?.0);
        cached_ms.push(timed(&mut store, &q(now, QUERY_DAYS))?.0);
        three_days_ms.push(timed(&mut store, &q(now + 1000 * k, 3))?.0);
    }
    Ok(QueryBench { fill_s, rollup_s, minute_rows, first_ms, uncached_ms, cached_ms, report, three_days_ms })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "?".into());
    format!(
        "Linux {}, {} CPUs ({model})",
        read("/proc/sys/kernel/osrelease").trim(),
        std::thread::available_parallelism().map_or(0, usize::from)
    )
}

fn report(ingest: &Ingest, rss: &Rss, s60: &Size, s10: &Size, q: &QueryBench, took: Duration) -> String {
    let mut o = String::new();
    let profile = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    let n = ingest.write_ms.len() as f64;
    let write_mean = ingest.write_ms.iter().sum::<f64>() / n;
    let wall_mean = ingest.wall_ms.iter().sum::<f64>() / n;
    let maintain_mean = ingest.maintain_ms_total / n;
    let uncached = median(q.uncached_ms.clone());
    let tier_mib = |s: &Size, name: &str| s.tiers.iter().find(|t| t.0 == name).map_or(0.0, |t| mib(t.2));
    let day_adds = ["minute", "hour", "day"].iter().map(|t| tier_mib(s60, t)).sum::<f64>();
    let after_warmup: Vec<u64> = rss.samples.iter().filter(|(m, _)| *m >= 10).map(|s| s.1).collect();
    let (lo, hi) = (after_warmup.iter().min().copied().unwrap_or(0), after_warmup.iter().max().copied().unwrap_or(0));
    let _ = writeln!(o, "## Store (`cargo xtask bench store`)\n");
    let _ = writeln!(o, "- Command: `cargo xtask bench store` ({profile}; took {:.0} s)", took.as_secs_f64());
    let _ = writeln!(o, "- Machine: {}", machine());
    let _ = writeln!(o, "- Daemon write interval assumed for sizes: {} s (`store::DEFAULT_WRITE_INTERVAL`)\n", DEFAULT_WRITE_INTERVAL.as_secs());
    let _ = writeln!(o, "| measure | figure | target |\n| --- | --- | --- |");
    let _ = writeln!(
        o,
        "| ingest: CPU per `write` of a 10,000-row interval (2000 processes × 5 remotes), mean of {} | {write_mean:.2} ms (p50 {:.2}, p99 {:.2}, max {:.2}; wall {wall_mean:.2} ms) | < {TARGET_WRITE_MS} ms: {} |",
        ingest.write_ms.len(),
        median(ingest.write_ms.clone()),
        percentile(ingest.write_ms.clone(), 0.99),
        ingest.write_ms.iter().copied().fold(0.0, f64::max),
        verdict(write_mean < TARGET_WRITE_MS)
    );
    let _ = writeln!(
        o,
        "| ingest: CPU of `maintain` (rollups, retention) per interval, same run ({} minutes closed) | {maintain_mean:.2} ms | — |",
        ingest.minutes_rolled
    );
    let _ = writeln!(o, "| ingest: CPU of the first `write` (creates 2000 processes, 10,000 remotes) | {:.1} ms | — |", ingest.first_write_ms);
    let _ = writeln!(
        o,
        "| query: `--since 30d --by app`, {QUERY_APPS} apps, {} tier, first run (fresh reader) | {:.1} ms | < {TARGET_QUERY_MS} ms: {} |",
        q.report.tier.map_or("?".into(), |t| format!("{t:?}").to_lowercase()),
        q.first_ms,
        verdict(q.first_ms < TARGET_QUERY_MS)
    );
    let _ = writeln!(o, "| query: the same, median of 5 runs not served from the cache | {uncached:.1} ms | < {TARGET_QUERY_MS} ms: {} |", verdict(uncached < TARGET_QUERY_MS));
    let _ = writeln!(o, "| query: the same, from the cache (median of 5) | {:.3} ms | — |", median(q.cached_ms.clone()));
    let _ = writeln!(o, "| query: `--since 3d --by app` (minute tier), median of 5 | {:.1} ms | — |", median(q.three_days_ms.clone()));
    let _ = writeln!(
        o,
        "| size: interval tier holding 24 h of 1000 busy sockets at {} s | {:.1} MiB | < {TARGET_DAY_MIB} MiB: {} |",
        s60.interval.as_secs(),
        tier_mib(s60, "interval"),
        verdict(tier_mib(s60, "interval") < TARGET_DAY_MIB)
    );
    let _ = writeln!(o, "| size: what a day adds to the minute + hour + day tiers | {day_adds:.1} MiB | < {TARGET_DAY_MIB} MiB: {} |", verdict(day_adds < TARGET_DAY_MIB));
    let _ = writeln!(
        o,
        "| size: interval tier, 24 h at {} s instead (for comparison) | {:.1} MiB | — |",
        s10.interval.as_secs(),
        tier_mib(s10, "interval")
    );
    let _ = writeln!(
        o,
        "| memory: VmRSS from simulated minute 10 to 60 of 10,000-row 1 s intervals | {:.1} to {:.1} MiB (spread {:.1} MiB) | flat |\n",
        lo as f64 / 1024.0,
        hi as f64 / 1024.0,
        (hi - lo) as f64 / 1024.0
    );
    for s in [s60, s10] {
        let _ = writeln!(o, "Size after a simulated day at {} s intervals ({} writes of 1000 rows), rollups and VACUUM:\n", s.interval.as_secs(), s.writes);
        let _ = writeln!(o, "| tables | rows | MiB | bytes/row |\n| --- | --- | --- | --- |");
        for (name, rows, bytes) in &s.tiers {
            let per_row = if *rows == 0 { 0.0 } else { *bytes as f64 / *rows as f64 };
            let _ = writeln!(o, "| {name} | {rows} | {:.2} | {per_row:.1} |", mib(*bytes));
        }
        let _ = writeln!(o, "| whole file | | {:.2} | |\n", mib(s.file_bytes));
    }
    let _ = writeln!(
        o,
        "Query data: {} minute rows ({QUERY_DAYS} days × 1440 minutes × {QUERY_APPS} apps) inserted with SQL \
         `INSERT ... SELECT` from a recursive CTE, one transaction per day, `synchronous = OFF` \
         ({:.1} s); hour and day tiers built by `Store::maintain` ({:.1} s). The report has {} rows and \
         {} series points.\n",
        q.minute_rows,
        q.fill_s,
        q.rollup_s,
        q.report.rows.len(),
        q.report.series.len()
    );
    let samples: Vec<String> = rss.samples.iter().map(|(m, k)| format!("{m} min: {:.1}", *k as f64 / 1024.0)).collect();
    let _ = writeln!(o, "VmRSS (MiB) every simulated 5 minutes: {}", samples.join(", "));
    o
}
