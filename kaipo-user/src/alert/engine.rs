//! The alert engine: evaluates every rule on every live interval and says what fired and what
//! cleared. Pure (no I/O, time from the intervals), so it is tested on synthetic intervals.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use super::{
    notification::{Evidence, Notification},
    quota::{self, Usage},
    rules::{Direction, Rule, RuleKind, Scope},
};
use crate::{
    anomaly::{baseline::Baseline, Analyzer as _, Finding},
    pipeline::{totals::Counts, LiveInterval},
};

/// Deviations from the baseline an anomaly rule needs when it gives no `score`.
pub const DEFAULT_SCORE: f64 = 4.0;

/// Destinations remembered per app by new-destination rules; past this an app's learning
/// stops (and nothing new about it is reported), which bounds memory on a busy server.
pub const MAX_DESTINATIONS: usize = 4096;

/// Apps and interfaces whose traffic since the last store batch is remembered for quota
/// rules a reload may add; past this, newcomers are left out (their quota would start a batch
/// late) rather than memory growing with the number of apps.
pub const MAX_PENDING_KEYS: usize = 4096;

#[derive(Debug, Default)]
struct Condition {
    /// Start of the first interval of the current run above the threshold.
    above_since_ms: u64,
    fired_ms: Option<u64>,
}

pub struct AlertEngine {
    rules: Vec<Rule>,
    /// Per (rule, key): only keys above their threshold or firing are kept.
    conditions: HashMap<usize, HashMap<String, Condition>>,
    /// New-destination rules: per (rule, app), the destinations seen.
    seen: HashMap<(usize, String), HashSet<String>>,
    started_ms: Option<u64>,
    active: HashMap<(usize, String), Notification>,
    /// Quota rules: this month's usage of each rule's target.
    usage: HashMap<usize, Usage>,
    /// Per-app baselines, kept while any anomaly rule exists.
    baseline: Option<Baseline>,
    /// Traffic per app and per interface since the last store batch closed: what history
    /// does not hold yet, added to a quota rule's stored usage when a reload adds it.
    pending: HashMap<(Scope, String), Counts>,
}

impl AlertEngine {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut e = Self {
            rules: Vec::new(),
            conditions: HashMap::new(),
            seen: HashMap::new(),
            started_ms: None,
            active: HashMap::new(),
            baseline: None,
            usage: HashMap::new(),
            pending: HashMap::new(),
        };
        e.set_rules(rules, 0);
        e
    }

    /// The baselines anomaly rules judge by, to fill from stored history.
    pub fn baseline_mut(&mut self) -> Option<&mut Baseline> {
        self.baseline.as_mut()
    }

    /// The baseline reports nothing below every anomaly rule's score.
    fn min_score(rules: &[Rule]) -> Option<f64> {
        rules
            .iter()
            .filter(|r| r.kind == RuleKind::Anomaly)
            .map(|r| r.score.unwrap_or(DEFAULT_SCORE))
            .reduce(f64::min)
    }

    /// New rules (a reload). Alerts of rules that are gone or changed clear; unchanged rules
    /// keep their state.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now_ms: u64) -> Vec<Notification> {
        let keep: Vec<Option<usize>> = self
            .rules
            .iter()
            .map(|old| rules.iter().position(|r| r == old))
            .collect();
        let mut out = Vec::new();
        let remap = |i: usize| keep.get(i).copied().flatten();
        for ((i, key), n) in std::mem::take(&mut self.active) {
            match remap(i) {
                Some(j) => {
                    self.active.insert((j, key), n);
                }
                None => out.push(n.cleared(now_ms, "the rule was changed or removed")),
            }
        }
        self.conditions = std::mem::take(&mut self.conditions)
            .into_iter()
            .filter_map(|(i, c)| Some((remap(i)?, c)))
            .collect();
        self.usage = std::mem::take(&mut self.usage)
            .into_iter()
            .filter_map(|(i, u)| Some((remap(i)?, u)))
            .collect();
        self.seen = std::mem::take(&mut self.seen)
            .into_iter()
            .filter_map(|((i, k), s)| Some(((remap(i)?, k), s)))
            .collect();
        // Quota rules that are new or changed start from what history does not hold yet; the
        // caller adds the stored part ([`Self::add_stored_usage`]) once the store answers.
        let (month_start, _) = quota::month_bounds(now_ms);
        let taken: HashSet<usize> = keep.iter().flatten().copied().collect();
        for (j, r) in rules.iter().enumerate() {
            if r.kind == RuleKind::Quota && !taken.contains(&j) && now_ms > 0 {
                let bytes = self.pending_bytes(r);
                self.usage.insert(
                    j,
                    Usage {
                        month_start_ms: month_start,
                        bytes,
                    },
                );
            }
        }
        match (Self::min_score(&rules), &mut self.baseline) {
            (None, b) => *b = None,
            (Some(min), Some(b)) => b.min_score = min,
            (Some(min), b) => *b = Some(Baseline::new(min)),
        }
        self.rules = rules;
        out.sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)));
        out
    }

    /// What `rule`'s target sent or received since the last store batch closed.
    fn pending_bytes(&self, rule: &Rule) -> u64 {
        let Some(target) = &rule.target else {
            return 0;
        };
        self.pending
            .get(&(rule.scope, target.clone()))
            .map_or(0, |c| rule.direction.bytes_of(c))
    }

    /// A store batch closed with every interval evaluated so far: history now holds them.
    pub fn batch_closed(&mut self) {
        self.pending.clear();
    }

    /// The rules in force.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Adds what history held for `rule` this month when it was added or changed (the live
    /// part is counted since); nothing when the rule changed again or the month turned.
    pub fn add_stored_usage(&mut self, rule: &Rule, month_start_ms: u64, bytes: u64) {
        let Some(i) = self.rules.iter().position(|r| r == rule) else {
            return;
        };
        if let Some(u) = self
            .usage
            .get_mut(&i)
            .filter(|u| u.month_start_ms == month_start_ms)
        {
            u.bytes = u.bytes.saturating_add(bytes);
        }
    }

    /// Counts the interval's traffic per app and per interface until the next batch closes.
    fn remember_pending(
        &mut self,
        by_scope: &mut HashMap<Scope, HashMap<String, Counts>>,
        live: &LiveInterval,
    ) {
        for scope in [Scope::App, Scope::Interface] {
            let per_key = by_scope
                .entry(scope)
                .or_insert_with(|| per_key(live, scope));
            for (key, c) in per_key.iter() {
                let slot = (scope, key.clone());
                let room = self.pending.len() < MAX_PENDING_KEYS;
                match self.pending.get_mut(&slot) {
                    Some(p) => p.add(c),
                    None if room => {
                        self.pending.insert(slot, *c);
                    }
                    None => {}
                }
            }
        }
    }

    /// Alerts firing now, by rule and key.
    pub fn active(&self) -> Vec<Notification> {
        let mut v: Vec<Notification> = self.active.values().cloned().collect();
        v.sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)));
        v
    }

    pub fn evaluate(&mut self, live: &LiveInterval) -> Vec<Notification> {
        let r = &live.record;
        let end = r.ts_ms;
        let start = end.saturating_sub(r.interval_ms);
        let started = *self.started_ms.get_or_insert(start);
        let mut out = Vec::new();
        let mut by_scope: HashMap<Scope, HashMap<String, Counts>> = HashMap::new();
        // Analyzers run once per interval, whatever the number of anomaly rules.
        let mut findings: Option<Vec<Finding>> = None;
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            match rule.kind {
                RuleKind::Rate => {
                    let per_key = by_scope
                        .entry(rule.scope)
                        .or_insert_with(|| per_key(live, rule.scope));
                    let rule = rule.clone();
                    self.evaluate_rate(i, &rule, per_key, (start, end), &mut out);
                }
                RuleKind::Quota => {
                    let per_key = by_scope
                        .entry(rule.scope)
                        .or_insert_with(|| per_key(live, rule.scope));
                    let rule = rule.clone();
                    self.evaluate_quota(i, &rule, per_key, (start, end), &mut out);
                }
                RuleKind::Anomaly => {
                    if findings.is_none() {
                        findings = Some(match &mut self.baseline {
                            Some(b) => b.analyze(live),
                            None => Vec::new(),
                        });
                    }
                    let rule = rule.clone();
                    let f = findings.clone().unwrap_or_default();
                    self.evaluate_anomaly(i, &rule, &f, (start, end), &mut out);
                }
                RuleKind::NewDestination => {
                    let learning = end.saturating_sub(started) < rule.learn.as_millis() as u64;
                    let rule = rule.clone();
                    self.evaluate_destinations(i, &rule, live, learning, end, &mut out);
                }
            }
        }
        self.remember_pending(&mut by_scope, live);
        out
    }

    /// Rate rules: a key's condition holds while its rate is above the threshold.
    fn evaluate_rate(
        &mut self,
        i: usize,
        rule: &Rule,
        per_key: &HashMap<String, Counts>,
        span: (u64, u64),
        out: &mut Vec<Notification>,
    ) {
        let (start, end) = span;
        let threshold = rule.above.unwrap_or(u64::MAX);
        let ms = end - start;
        let rate_of = |c: &Counts| {
            let bytes = match rule.direction {
                Direction::Rx => c.rx_bytes,
                Direction::Tx => c.tx_bytes,
                Direction::Both => c.bytes(),
            };
            (bytes * 1000).checked_div(ms).unwrap_or(0)
        };
        // A rule with a target looks up one key rather than scanning them all: a thousand
        // rules on a thousand apps stay a thousand lookups.
        let candidates: Vec<(&String, &Counts)> = match &rule.target {
            Some(t) => per_key.get_key_value(t).into_iter().collect(),
            None => per_key.iter().collect(),
        };
        let hits: HashMap<String, Evidence> = candidates
            .into_iter()
            .map(|(k, c)| (k, rate_of(c)))
            .filter(|(_, rate)| *rate > threshold)
            .map(|(k, rate)| {
                let e = Evidence {
                    observed_bytes_per_s: Some(rate),
                    threshold_bytes_per_s: Some(threshold),
                    ..Evidence::default()
                };
                (k.clone(), e)
            })
            .collect();
        let now = |k: &str| Evidence {
            observed_bytes_per_s: Some(per_key.get(k).map_or(0, rate_of)),
            ..Evidence::default()
        };
        let why = "the rate fell to the threshold or below";
        self.evaluate_condition(i, rule, hits, now, span, why, out);
    }

    /// Sets a quota rule's usage this month (from the store at start), by rule name.
    pub fn seed_quota(&mut self, rule: &str, month_start_ms: u64, bytes: u64) {
        if let Some(i) = self.rules.iter().position(|r| r.name == rule) {
            self.usage.insert(
                i,
                Usage {
                    month_start_ms,
                    bytes,
                },
            );
        }
    }

    /// The quota rules, for seeding: (name, scope, target, direction).
    pub fn quota_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.kind == RuleKind::Quota)
    }

    /// Quota rules: the condition holds while the quota is reached or forecast to be reached
    /// before the month ends.
    fn evaluate_quota(
        &mut self,
        i: usize,
        rule: &Rule,
        per_key: &HashMap<String, Counts>,
        span: (u64, u64),
        out: &mut Vec<Notification>,
    ) {
        let (_, end) = span;
        let Some(target) = rule.target.clone() else {
            return;
        };
        let quota = rule.quota.unwrap_or(u64::MAX);
        let bytes = per_key
            .get(&target)
            .map_or(0, |c| rule.direction.bytes_of(c));
        let usage = self.usage.entry(i).or_default();
        let month_before = usage.month_start_ms;
        usage.add(end, bytes);
        let usage = *usage;
        if month_before != 0 && month_before != usage.month_start_ms {
            // A new month: whatever fired last month clears now, whatever the forecast.
            self.evaluate_condition(
                i,
                rule,
                HashMap::new(),
                |_| Evidence::default(),
                span,
                "a new month began",
                out,
            );
        }
        let forecast = usage.forecast(quota, end);
        let (_, month_end) = quota::month_bounds(end.saturating_sub(1));
        let evidence = Evidence {
            used_bytes: Some(usage.bytes),
            quota_bytes: Some(quota),
            forecast_ms: forecast,
            ..Evidence::default()
        };
        let hits: HashMap<String, Evidence> = forecast
            .filter(|f| *f < month_end)
            .map(|_| (target.clone(), evidence.clone()))
            .into_iter()
            .collect();
        let why = "the forecast moved past the end of the month";
        // A quota already used up fires on this interval; only a forecast waits for `for`,
        // so that one burst early in the month does not raise it.
        let reached = usage.bytes >= quota;
        let hold = if reached { Duration::ZERO } else { rule.for_ };
        let rule = Rule {
            for_: hold,
            ..rule.clone()
        };
        self.evaluate_condition(i, &rule, hits, |_| Evidence::default(), span, why, out);
        if let Some(n) = self.active.get_mut(&(i, target)) {
            n.evidence.used_bytes = evidence.used_bytes;
            n.evidence.forecast_ms = evidence.forecast_ms;
        }
    }

    /// Anomaly rules: a key's condition holds while an analyzer finds it at least `score`
    /// deviations off its baseline.
    fn evaluate_anomaly(
        &mut self,
        i: usize,
        rule: &Rule,
        findings: &[Finding],
        span: (u64, u64),
        out: &mut Vec<Notification>,
    ) {
        let min = rule.score.unwrap_or(DEFAULT_SCORE);
        let hits = findings
            .iter()
            .filter(|f| f.score >= min && rule.target.as_deref().is_none_or(|t| t == f.key))
            .map(|f| {
                let e = Evidence {
                    observed_bytes_per_s: Some(f.observed as u64),
                    baseline_bytes_per_s: Some(f.baseline as u64),
                    deviation_bytes_per_s: Some(f.deviation as u64),
                    score: Some((f.score * 100.0).round() / 100.0),
                    ..Evidence::default()
                };
                (f.key.clone(), e)
            })
            .collect();
        let why = "the rate is back within its baseline";
        self.evaluate_condition(i, rule, hits, |_| Evidence::default(), span, why, out);
    }

    /// Fires a key once its condition has held for the rule's `for`, and clears it in the
    /// first interval the condition does not hold.
    #[expect(
        clippy::too_many_arguments,
        reason = "private; a struct would only rename them"
    )]
    fn evaluate_condition(
        &mut self,
        i: usize,
        rule: &Rule,
        hits: HashMap<String, Evidence>,
        now: impl Fn(&str) -> Evidence,
        (start, end): (u64, u64),
        why_cleared: &str,
        out: &mut Vec<Notification>,
    ) {
        let mut keys: Vec<&String> = hits.keys().collect();
        keys.sort();
        let conditions = self.conditions.entry(i).or_default();
        for key in keys {
            let evidence = hits[key].clone();
            let cond = conditions.entry(key.clone()).or_insert(Condition {
                above_since_ms: start,
                fired_ms: None,
            });
            if cond.fired_ms.is_none() && end - cond.above_since_ms >= rule.for_.as_millis() as u64
            {
                cond.fired_ms = Some(end);
                let since = Some(cond.above_since_ms);
                let e = Evidence {
                    since_ms: since,
                    ..evidence
                };
                let n = Notification::firing(rule, key, end, e);
                self.active.insert((i, key.clone()), n.clone());
                out.push(n);
            } else if let Some(n) = self.active.get_mut(&(i, key.clone())) {
                n.evidence.observed_bytes_per_s = evidence.observed_bytes_per_s;
            }
        }
        let mut ended: Vec<String> = conditions
            .keys()
            .filter(|k| !hits.contains_key(*k))
            .cloned()
            .collect();
        ended.sort();
        for key in ended {
            conditions.remove(&key);
            if let Some(mut n) = self.active.remove(&(i, key.clone())) {
                let observed = now(&key).observed_bytes_per_s;
                n.evidence.observed_bytes_per_s = observed.or(n.evidence.observed_bytes_per_s);
                out.push(n.cleared(end, why_cleared));
            }
        }
    }

    fn evaluate_destinations(
        &mut self,
        i: usize,
        rule: &Rule,
        live: &LiveInterval,
        learning: bool,
        end: u64,
        out: &mut Vec<Notification>,
    ) {
        for row in &live.traffic {
            if row.pid == 0 || rule.target.as_deref().is_some_and(|t| t != row.app) {
                continue;
            }
            let seen = self.seen.entry((i, row.app.clone())).or_default();
            let dest = if row.remote.is_empty() {
                row.service.clone()
            } else {
                format!("{} {}", row.remote, row.service)
            };
            if seen.contains(&dest) || seen.len() >= MAX_DESTINATIONS {
                continue;
            }
            seen.insert(dest);
            if !learning {
                // An event, not a condition: it fires and clears in the same notification.
                let n = Notification::firing(
                    rule,
                    &row.app,
                    end,
                    Evidence {
                        remote: Some(row.remote.clone()).filter(|r| !r.is_empty()),
                        remote_name: row.remote_name.clone(),
                        service: Some(row.service.clone()),
                        observed_bytes_per_s: Some(
                            (row.rx_bytes + row.tx_bytes) * 1000 / live.record.interval_ms.max(1),
                        ),
                        ..Evidence::default()
                    },
                );
                out.push(n);
            }
        }
    }
}

/// Traffic of the interval per key of `scope`.
fn per_key(live: &LiveInterval, scope: Scope) -> HashMap<String, Counts> {
    let mut out: HashMap<String, Counts> = HashMap::new();
    if scope == Scope::Interface {
        for i in &live.record.interfaces {
            out.entry(i.name.clone()).or_default().add(&Counts {
                rx_bytes: i.rx_bytes,
                tx_bytes: i.tx_bytes,
                rx_packets: i.rx_packets,
                tx_packets: i.tx_packets,
            });
        }
        return out;
    }
    for row in live.traffic.iter().filter(|r| r.pid != 0) {
        let key = match scope {
            Scope::App => row.app.clone(),
            Scope::Process => row.pid.to_string(),
            Scope::User => row.user.clone().unwrap_or_else(|| row.uid.to_string()),
            Scope::Container => match &row.container {
                Some(c) => c.clone(),
                None => continue,
            },
            Scope::Interface => continue,
        };
        out.entry(key).or_default().add(&Counts {
            rx_bytes: row.rx_bytes,
            tx_bytes: row.tx_bytes,
            rx_packets: row.rx_packets,
            tx_packets: row.tx_packets,
        });
    }
    out
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
