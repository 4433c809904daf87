use super::*;
use crate::metrics::fixtures::synthetic_interval;

const MINUTE: u64 = 60_000;

/// A deterministic wobble of +-10% around `level`, different each minute.
fn wobble(level: u64, minute: u64) -> u64 {
    let x = (minute.wrapping_mul(2_654_435_761) >> 7) % 21;
    level * (90 + x) / 100
}

/// Two weeks of one-minute intervals for app "db": 50 kB/s, but 2 MB/s from 02:00 to 03:00
/// UTC every day (a nightly backup). `inject` adds (minute, bytes/s) anomalies.
fn series(inject: &[(u64, u64)]) -> Vec<(u64, u64)> {
    (0..14 * 24 * 60)
        .map(|m| {
            let hour = m / 60 % 24;
            let level = if hour == 2 { 2_000_000 } else { 50_000 };
            let extra = inject
                .iter()
                .find(|(at, _)| *at == m)
                .map_or(0, |(_, b)| *b);
            (m, wobble(level, m) + extra)
        })
        .collect()
}

/// Minutes with a finding, feeding one-minute intervals.
fn detect(series: &[(u64, u64)]) -> Vec<u64> {
    let mut b = Baseline::new(6.0);
    let mut found = Vec::new();
    for (m, rate) in series {
        let mut live = synthetic_interval((m + 1) * MINUTE, &[], &[("db", rate * 60)]);
        live.record.interval_ms = MINUTE;
        let findings = b.analyze(&live);
        if !findings.is_empty() {
            assert_eq!(findings[0].key, "db");
            found.push(*m);
        }
    }
    found
}

#[test]
fn the_clean_series_with_its_nightly_backup_raises_nothing() {
    assert_eq!(detect(&series(&[])), Vec::<u64>::new());
}

#[test]
fn injected_anomalies_are_found_at_their_minutes_only() {
    // Second week: 1 MB/s at 14:00 on day 9 for five minutes, and a backup-sized burst at
    // 04:10 on day 10, outside the backup's hour.
    let day = 24 * 60;
    let first: Vec<(u64, u64)> = (0..5).map(|i| (9 * day + 14 * 60 + i, 1_000_000)).collect();
    let second = [(10 * day + 4 * 60 + 10, 2_000_000)];
    let injected: Vec<(u64, u64)> = first.iter().chain(second.iter()).copied().collect();
    let want: Vec<u64> = injected.iter().map(|(m, _)| *m).collect();
    assert_eq!(detect(&series(&injected)), want);
}

#[test]
fn a_finding_carries_the_baseline_and_the_observed_rate() {
    let mut b = Baseline::new(4.0);
    for i in 0..20 {
        b.learn("app", i * 1000, 10_000.0);
    }
    let live = synthetic_interval(20_000, &[], &[("app", 100_000)]);
    let f = b.analyze(&live);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].observed, f[0].baseline, f[0].deviation),
        (100_000.0, 10_000.0, 1024.0)
    );
    assert_eq!(f[0].score, 90_000.0 / 1024.0);
}
