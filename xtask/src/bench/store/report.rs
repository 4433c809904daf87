//! The figures as Markdown, ready for BENCHMARKS.md.

use std::{fmt::Write as _, time::Duration};

use kaipo::store::DEFAULT_WRITE_INTERVAL;

use super::{
    ingest::{Ingest, INTERVALS, KEEP_INTERVALS},
    query::QueryBench,
    Rss, Size, QUERY_APPS, QUERY_DAYS,
};

const TARGET_WRITE_MS: f64 = 5.0;
const TARGET_QUERY_MS: f64 = 200.0;
const TARGET_DAY_MIB: f64 = 50.0;

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
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "Linux {}, {} CPUs ({model})",
        read("/proc/sys/kernel/osrelease").trim(),
        std::thread::available_parallelism().map_or(0, usize::from)
    )
}

/// A table row: what was measured, the figure, and the target with its verdict (or "—").
fn line(o: &mut String, measure: String, figure: String, target: Option<(&str, bool)>) {
    let target = target.map_or("—".to_owned(), |(t, met)| {
        format!("{t}: {}", verdict(met))
    });
    let _ = writeln!(o, "| {measure} | {figure} | {target} |");
}

pub(super) fn render(
    ingest: &Ingest,
    rss: &Rss,
    s60: &Size,
    s10: &Size,
    q: &QueryBench,
    took: Duration,
) -> String {
    let mut o = String::new();
    // SQLite and the store are compiled without optimisation in a debug build, which makes
    // every figure several times worse than what the release `kaipo` binary does.
    let command = if cfg!(debug_assertions) {
        "`cargo xtask bench store` (debug build: unoptimised, not representative)"
    } else {
        "`cargo run --release -p xtask -- bench store` (release build, as `kaipo` is shipped)"
    };
    let uncached = median(q.uncached_ms.clone());
    let tier = |s: &Size, name: &str| {
        s.tiers
            .iter()
            .find(|t| t.0 == name)
            .map_or(0.0, |t| mib(t.2))
    };
    let day_adds: f64 = ["minute", "hour", "day"].iter().map(|t| tier(s60, t)).sum();
    let warm: Vec<u64> = rss
        .samples
        .iter()
        .filter(|s| s.0 >= 10)
        .map(|s| s.1)
        .collect();
    let (lo, hi) = (
        warm.iter().min().copied().unwrap_or(0),
        warm.iter().max().copied().unwrap_or(0),
    );
    let _ = writeln!(o, "## Store (`cargo xtask bench store`)\n");
    let _ = writeln!(o, "- Command: {command}, {:.0} s", took.as_secs_f64());
    let _ = writeln!(o, "- Machine: {}", machine());
    let _ = writeln!(
        o,
        "- Daemon write interval for the sizes: {} s (`store::DEFAULT_WRITE_INTERVAL`)\n",
        DEFAULT_WRITE_INTERVAL.as_secs()
    );
    let _ = writeln!(o, "| measure | figure | target |\n| --- | --- | --- |");
    ingest_lines(&mut o, ingest);
    let tier_name = q
        .report
        .tier
        .map_or("?".into(), |t| format!("{t:?}").to_lowercase());
    line(
        &mut o,
        format!("query: `--since 30d --by app`, {QUERY_APPS} apps ({tier_name} tier), first run, fresh reader"),
        format!("{:.1} ms", q.first_ms),
        Some(("< 200 ms", q.first_ms < TARGET_QUERY_MS)),
    );
    line(
        &mut o,
        "query: the same, median of 5 runs not answered from the cache".into(),
        format!("{uncached:.1} ms"),
        Some(("< 200 ms", uncached < TARGET_QUERY_MS)),
    );
    line(
        &mut o,
        "query: the same, answered from the cache (median of 5)".into(),
        format!("{:.3} ms", median(q.cached_ms.clone())),
        None,
    );
    line(
        &mut o,
        "query: `--since 3d --by app` (minute tier), median of 5".into(),
        format!("{:.1} ms", median(q.three_days_ms.clone())),
        None,
    );
    line(
        &mut o,
        format!(
            "size: interval tier holding 24 h of 1000 busy sockets at {} s",
            s60.interval.as_secs()
        ),
        format!("{:.1} MiB", tier(s60, "interval")),
        Some(("< 50 MiB", tier(s60, "interval") < TARGET_DAY_MIB)),
    );
    line(
        &mut o,
        "size: what a day of them adds to the minute + hour + day tiers".into(),
        format!("{day_adds:.1} MiB"),
        Some(("< 50 MiB", day_adds < TARGET_DAY_MIB)),
    );
    line(
        &mut o,
        format!(
            "size: interval tier, 24 h at {} s instead, for comparison",
            s10.interval.as_secs()
        ),
        format!("{:.1} MiB", tier(s10, "interval")),
        None,
    );
    line(
        &mut o,
        "memory: VmRSS from simulated minute 10 to 60 of 10,000-row 1 s intervals".into(),
        format!("{:.1} to {:.1} MiB", lo as f64 / 1024.0, hi as f64 / 1024.0),
        Some(("flat", hi - lo < 4096)),
    );
    for s in [s60, s10] {
        let _ = writeln!(
            o,
            "\nA simulated day at {} s intervals ({} writes of 1000 rows), after rollups and VACUUM:\n",
            s.interval.as_secs(),
            s.writes
        );
        let _ = writeln!(
            o,
            "| tables | rows | MiB | bytes/row |\n| --- | --- | --- | --- |"
        );
        for (name, rows, bytes) in &s.tiers {
            let per_row = *bytes as f64 / (*rows).max(1) as f64;
            let _ = writeln!(o, "| {name} | {rows} | {:.2} | {per_row:.1} |", mib(*bytes));
        }
        let _ = writeln!(o, "| whole file | | {:.2} | |", mib(s.file_bytes));
    }
    let _ = writeln!(
        o,
        "\nQuery data: {} minute rows ({QUERY_DAYS} days × 1440 minutes × {QUERY_APPS} apps), \
         inserted by SQL (`INSERT ... SELECT` over a recursive CTE, a transaction per day, \
         `synchronous = OFF`) in {:.1} s; the hour and day tiers built by `Store::maintain` in \
         {:.1} s. The report has {} rows and {} series points.",
        q.minute_rows,
        q.fill_s,
        q.rollup_s,
        q.report.rows.len(),
        q.report.series.len()
    );
    let samples: Vec<String> = rss
        .samples
        .iter()
        .map(|(m, k)| format!("{m} min {:.1}", *k as f64 / 1024.0))
        .collect();
    let _ = writeln!(
        o,
        "\nVmRSS (MiB) every simulated 5 minutes: {}.",
        samples.join(", ")
    );
    o
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// "mean (p50, p99, max)" of per-interval figures.
fn spread(v: &[f64]) -> String {
    format!(
        "{:.2} ms (p50 {:.2}, p99 {:.2}, max {:.2})",
        mean(v),
        median(v.to_vec()),
        percentile(v.to_vec(), 0.99),
        v.iter().copied().fold(0.0, f64::max)
    )
}

/// The ingest rows of the table: the whole cost per interval against the target, then its
/// parts.
fn ingest_lines(o: &mut String, ingest: &Ingest) {
    let total = ingest.total_ms();
    let n = total.len();
    line(
        o,
        format!(
            "ingest: CPU per 1 s interval of 10,000 rows (2000 processes × 5 remotes), all of \
             it: `write` + `maintain` (rollups, expiry, checkpoints), {n} intervals"
        ),
        format!(
            "{} (wall mean {:.2})",
            spread(&total),
            mean(&ingest.wall_ms)
        ),
        Some(("< 5 ms mean", mean(&total) < TARGET_WRITE_MS)),
    );
    line(
        o,
        "ingest: the same, its p99".into(),
        format!("{:.2} ms", percentile(total.clone(), 0.99)),
        Some(("< 5 ms", percentile(total, 0.99) < TARGET_WRITE_MS)),
    );
    line(
        o,
        "ingest: of which `write`".into(),
        spread(&ingest.write_ms),
        None,
    );
    line(
        o,
        format!(
            "ingest: of which `maintain` ({} minutes rolled up, an hour, {} rows expired)",
            ingest.minutes_rolled, ingest.rows_expired
        ),
        spread(&ingest.maintain_ms),
        None,
    );
    line(
        o,
        "ingest: CPU of the first `write` (creates 2000 processes, 10,000 remotes)".into(),
        format!("{:.1} ms", ingest.first_write_ms),
        None,
    );
}

/// Just the ingest figures (`KAIPO_BENCH_STORE_INGEST_ONLY` set), for quick comparisons.
pub(super) fn ingest_only(ingest: &Ingest) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ingest: {INTERVALS} intervals, interval rows kept {} s\n",
        KEEP_INTERVALS.as_secs()
    );
    let _ = writeln!(o, "| measure | figure | target |\n| --- | --- | --- |");
    ingest_lines(&mut o, ingest);
    o
}
