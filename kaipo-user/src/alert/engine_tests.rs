use std::time::Duration;

use super::*;
use crate::{
    alert::{rules::Direction, State},
    metrics::fixtures::synthetic_interval,
};

fn rate_rule(name: &str, scope: Scope, target: Option<&str>, above: u64, for_s: u64) -> Rule {
    Rule {
        name: name.into(),
        kind: RuleKind::Rate,
        scope,
        target: target.map(str::to_owned),
        direction: Direction::Tx,
        above: Some(above),
        for_: Duration::from_secs(for_s),
        learn: Duration::from_secs(3600),
        score: None,
        quota: None,
    }
}

/// Feeds one-second intervals ending at 1000, 2000, ...; `tx[i]` bytes from app "up" in
/// interval i. Returns (interval end, state, key, observed rate) per notification.
fn run(engine: &mut AlertEngine, tx: &[u64]) -> Vec<(u64, State, String, Option<u64>)> {
    let mut out = Vec::new();
    for (i, bytes) in tx.iter().enumerate() {
        let end = 1000 * (i as u64 + 1);
        let live = synthetic_interval(
            end,
            &[("eth0", 10 * bytes)],
            &[("up", *bytes), ("quiet", 1)],
        );
        for n in engine.evaluate(&live) {
            out.push((end, n.state, n.key.clone(), n.evidence.observed_bytes_per_s));
        }
    }
    out
}

#[test]
fn fires_once_after_the_duration_and_clears_when_the_rate_falls() {
    let mut e = AlertEngine::new(vec![rate_rule("burst", Scope::App, None, 1000, 3)]);
    // Above from the interval ending at 3000 (it started at 2000); three seconds later, at
    // 5000, it fires; it clears at 8000 when the rate is back to the threshold.
    let got = run(&mut e, &[10, 500, 2000, 2000, 2000, 5000, 1500, 1000, 10]);
    assert_eq!(
        got,
        [
            (5000, State::Firing, "up".to_owned(), Some(2000)),
            (8000, State::Cleared, "up".to_owned(), Some(1000)),
        ]
    );
    assert!(e.active().is_empty());
}

#[test]
fn the_evidence_says_what_when_and_against_what() {
    let mut e = AlertEngine::new(vec![rate_rule("burst", Scope::App, Some("up"), 1000, 1)]);
    let live = synthetic_interval(5000, &[], &[("up", 4000)]);
    let fired = e.evaluate(&live);
    assert_eq!(fired.len(), 1);
    let n = &fired[0];
    assert_eq!(
        (n.rule.as_str(), n.key.as_str(), n.fired_ms),
        ("burst", "up", 5000)
    );
    assert_eq!(n.evidence.observed_bytes_per_s, Some(4000));
    assert_eq!(n.evidence.threshold_bytes_per_s, Some(1000));
    assert_eq!(n.evidence.since_ms, Some(4000));
    assert_eq!(
        n.summary,
        "app up: 4000 B/s over 1000 B/s since 1970-01-01T00:00:04Z"
    );
    assert_eq!(e.active(), fired);
    let json: serde_json::Value = serde_json::from_str(&n.to_json("h1")).unwrap();
    assert_eq!(json["state"], "firing");
    assert_eq!(json["host"], "h1");
    assert_eq!(json["evidence"]["threshold_bytes_per_s"], 1000);
    assert_eq!(json["cleared_ms"], serde_json::Value::Null);
}

#[test]
fn a_short_spike_does_not_fire_and_other_keys_are_apart() {
    let mut e = AlertEngine::new(vec![rate_rule("burst", Scope::App, None, 1000, 3)]);
    assert!(run(&mut e, &[5000, 5000, 10, 5000, 5000, 10]).is_empty());
    // Interfaces are a scope of their own: eth0 carries ten times "up".
    let mut e = AlertEngine::new(vec![rate_rule("nic", Scope::Interface, None, 1000, 0)]);
    let mut rule = rate_rule("nic", Scope::Interface, None, 1000, 0);
    rule.direction = Direction::Rx;
    e.set_rules(vec![rule], 0);
    let got = run(&mut e, &[10, 200]);
    assert_eq!(got, [(2000, State::Firing, "eth0".to_owned(), Some(2000))]);
}

#[test]
fn a_reload_that_removes_a_rule_clears_its_alerts_and_keeps_the_others() {
    let keep = rate_rule("keep", Scope::App, None, 1000, 0);
    let drop = rate_rule("drop", Scope::App, None, 500, 0);
    let mut e = AlertEngine::new(vec![drop.clone(), keep.clone()]);
    assert_eq!(run(&mut e, &[2000]).len(), 2);
    let cleared = e.set_rules(vec![keep], 1500);
    assert_eq!(cleared.len(), 1);
    assert_eq!(
        (
            cleared[0].rule.as_str(),
            cleared[0].state,
            cleared[0].cleared_ms
        ),
        ("drop", State::Cleared, Some(1500))
    );
    assert_eq!(
        e.active()
            .iter()
            .map(|n| n.rule.as_str())
            .collect::<Vec<_>>(),
        ["keep"]
    );
    // Still firing: no second notification for "keep".
    let live = synthetic_interval(2000, &[], &[("up", 2000)]);
    assert!(e.evaluate(&live).is_empty());
}

#[test]
fn a_new_destination_after_learning_is_reported_once() {
    let rule = Rule {
        name: "peer".into(),
        kind: RuleKind::NewDestination,
        scope: Scope::App,
        target: None,
        direction: Direction::Both,
        above: None,
        for_: Duration::from_secs(60),
        learn: Duration::from_secs(2),
        score: None,
        quota: None,
    };
    let mut e = AlertEngine::new(vec![rule]);
    let at = |end: u64, remote: &str| {
        let mut live = synthetic_interval(end, &[], &[("app", 100)]);
        live.traffic[0].remote = remote.into();
        live
    };
    assert!(e.evaluate(&at(1000, "192.0.2.1")).is_empty(), "learning");
    assert!(e.evaluate(&at(4000, "192.0.2.1")).is_empty(), "known");
    let got = e.evaluate(&at(5000, "198.51.100.7"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].evidence.remote.as_deref(), Some("198.51.100.7"));
    assert_eq!(got[0].evidence.service.as_deref(), Some("https"));
    assert_eq!(
        got[0].summary,
        "app app: new destination 198.51.100.7 https"
    );
    assert!(
        e.evaluate(&at(6000, "198.51.100.7")).is_empty(),
        "reported once"
    );
}

#[test]
fn a_sustained_anomaly_fires_with_its_baseline_and_clears() {
    let rule = Rule {
        name: "odd".into(),
        kind: RuleKind::Anomaly,
        scope: Scope::App,
        target: None,
        direction: Direction::Both,
        above: None,
        for_: Duration::from_secs(2),
        learn: Duration::from_secs(3600),
        score: Some(5.0),
        quota: None,
    };
    let mut e = AlertEngine::new(vec![rule]);
    // 20 s at 10 kB/s teach the baseline (one hour-of-week slot; "quiet" sends 1 B/s), then
    // 60 kB/s for 4 s, then back to normal.
    let mut tx = vec![10_000; 20];
    tx.extend([60_000; 4]);
    tx.extend([10_000; 2]);
    let got = run(&mut e, &tx);
    // Anomalous from the interval starting at 20000: two seconds later, at 22000, it fires;
    // the first normal interval (ending at 25000) clears it.
    assert_eq!(
        got,
        [
            (22000, State::Firing, "up".to_owned(), Some(60_000)),
            (25000, State::Cleared, "up".to_owned(), Some(60_000)),
        ]
    );
    let _ = e
        .baseline_mut()
        .expect("a baseline while an anomaly rule exists");
}

#[test]
fn a_quota_fires_on_its_forecast_with_the_date_and_clears_in_a_new_month() {
    const NOV: u64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    const DAY: u64 = 86_400_000;
    let rule = Rule {
        name: "monthly".into(),
        kind: RuleKind::Quota,
        scope: Scope::App,
        target: Some("up".into()),
        direction: Direction::Both,
        above: None,
        for_: Duration::ZERO,
        learn: Duration::from_secs(3600),
        score: None,
        quota: Some(3_000_000_000),
    };
    let mut e = AlertEngine::new(vec![rule]);
    // The store said 900 MB by day 10: on pace for 2.7 GB, under the quota.
    e.seed_quota("monthly", NOV, 900_000_000);
    assert!(e
        .evaluate(&synthetic_interval(NOV + 10 * DAY, &[], &[("up", 0)]))
        .is_empty());
    // 200 MB more in one second: 1.1 GB by day 10, so 3 GB on the 28th: fires.
    let got = e.evaluate(&synthetic_interval(
        NOV + 10 * DAY + 1000,
        &[],
        &[("up", 200_000_000)],
    ));
    assert_eq!(got.len(), 1);
    let ev = &got[0].evidence;
    assert_eq!(
        (ev.used_bytes, ev.quota_bytes),
        (Some(1_100_000_000), Some(3_000_000_000))
    );
    assert_eq!(ev.forecast_ms, Some(1_795_847_566_363));
    assert_eq!(
        got[0].summary,
        "app up: 1100000000 of 3000000000 bytes used this month; at this rate the quota is reached by 2026-11-28T06:32:46.363Z"
    );
    let dec = NOV + 30 * DAY;
    let got = e.evaluate(&synthetic_interval(dec + 1000, &[], &[("up", 10)]));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].state, got[0].reason.as_deref()),
        (State::Cleared, Some("a new month began"))
    );
}

fn quota_rule(name: &str, quota: u64, for_s: u64) -> Rule {
    Rule {
        name: name.into(),
        kind: RuleKind::Quota,
        scope: Scope::App,
        target: Some("up".into()),
        direction: Direction::Both,
        above: None,
        for_: Duration::from_secs(for_s),
        learn: Duration::from_secs(3600),
        score: None,
        quota: Some(quota),
    }
}

/// A quota that is used up fires on the interval that shows it, whatever its `for` (it used
/// to wait the default minute); a forecast still waits.
#[test]
fn a_used_up_quota_fires_at_once_and_a_forecast_waits_its_hold() {
    const NOV: u64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    const DAY: u64 = 86_400_000;
    let mut e = AlertEngine::new(vec![quota_rule("monthly", 1_000_000, 60)]);
    e.seed_quota("monthly", NOV, 999_000);
    let t = NOV + 10 * DAY;
    // 999,500 by day 10: forecast well before the month ends, but it must hold for 60 s.
    assert!(e
        .evaluate(&synthetic_interval(t, &[], &[("up", 500)]))
        .is_empty());
    // 1,000,000 reached one second later: fires now, not 59 s later.
    let got = e.evaluate(&synthetic_interval(t + 1000, &[], &[("up", 500)]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].state, State::Firing);
    assert_eq!(
        (got[0].evidence.used_bytes, got[0].fired_ms),
        (Some(1_000_000), t + 1000)
    );
    // Forecast only: nothing before the hold is over.
    let mut e = AlertEngine::new(vec![quota_rule("monthly", 1_000_000, 2)]);
    e.seed_quota("monthly", NOV, 900_000);
    let fired: Vec<u64> = (1..=3)
        .flat_map(|s| e.evaluate(&synthetic_interval(t + s * 1000, &[], &[("up", 1)])))
        .map(|n| n.fired_ms)
        .collect();
    assert_eq!(fired, [t + 2000]);
}

/// A quota rule changed by a reload starts from what no store batch holds yet, and history's
/// answer adds the rest: here 7,000 bytes stored, then 300 + 200 in intervals after the last
/// batch, then 50 after the reload.
#[test]
fn a_changed_quota_counts_history_and_what_no_batch_holds() {
    const NOV: u64 = 1_793_491_200_000;
    let t = NOV + 5 * 86_400_000;
    let old = quota_rule("monthly", 1_000_000, 0);
    let mut e = AlertEngine::new(vec![old.clone()]);
    e.seed_quota("monthly", NOV, 6_000);
    e.evaluate(&synthetic_interval(t, &[], &[("up", 1_000)]));
    e.batch_closed();
    e.evaluate(&synthetic_interval(t + 1000, &[], &[("up", 300)]));
    e.evaluate(&synthetic_interval(t + 2000, &[], &[("up", 200)]));
    let new = quota_rule("monthly", 7_400, 0);
    assert!(e.set_rules(vec![new.clone()], t + 2500).is_empty());
    assert!(e
        .evaluate(&synthetic_interval(t + 3000, &[], &[("up", 50)]))
        .is_empty());
    // History says 7,000 (6,000 + the 1,000 batch): 7,550 in all, over 7,400.
    e.add_stored_usage(&new, NOV, 7_000);
    // A late answer for a rule that has changed again counts nowhere.
    e.add_stored_usage(&old, NOV, 1_000_000);
    let got = e.evaluate(&synthetic_interval(t + 4000, &[], &[("up", 0)]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].evidence.used_bytes, got[0].fired_ms),
        (Some(7_550), t + 4000)
    );
}
