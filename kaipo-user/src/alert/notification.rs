//! What an alert says: the webhook's JSON body, the syslog line and the status entry.

use serde::{Deserialize, Serialize};

use super::rules::{Rule, RuleKind, Scope};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Firing,
    Cleared,
}

/// The figures behind an alert. Fields that do not apply to the rule's kind are null.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The rate in the latest interval (rate rules), or the new destination's traffic.
    pub observed_bytes_per_s: Option<u64>,
    pub threshold_bytes_per_s: Option<u64>,
    /// Since when the condition has held, milliseconds since the Unix epoch.
    pub since_ms: Option<u64>,
    pub remote: Option<String>,
    /// New-destination rules: the name the app looked the remote up by (DNS answers), when
    /// known.
    #[serde(default)]
    pub remote_name: Option<String>,
    pub service: Option<String>,
    /// Anomaly rules: the app's usual rate for this hour of the week, its usual deviation,
    /// and how many deviations above it the observed rate is.
    pub baseline_bytes_per_s: Option<u64>,
    pub deviation_bytes_per_s: Option<u64>,
    pub score: Option<f64>,
    /// Quota rules: bytes used this month, the quota, and when it is forecast to be (or
    /// was) reached.
    pub used_bytes: Option<u64>,
    pub quota_bytes: Option<u64>,
    pub forecast_ms: Option<u64>,
}

/// One notification: an alert that fired, or one that cleared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub state: State,
    pub rule: String,
    pub kind: RuleKind,
    pub scope: Scope,
    /// Which app, pid, user, container or interface.
    pub key: String,
    pub summary: String,
    pub evidence: Evidence,
    pub fired_ms: u64,
    /// When it cleared; null while firing. A new-destination alert is an event and has none.
    pub cleared_ms: Option<u64>,
    /// Why it cleared.
    pub reason: Option<String>,
}

impl Notification {
    pub(super) fn firing(rule: &Rule, key: &str, now_ms: u64, evidence: Evidence) -> Self {
        let summary = match rule.kind {
            RuleKind::Rate => format!(
                "{} {key}: {} B/s over {} B/s since {}",
                scope_name(rule.scope),
                evidence.observed_bytes_per_s.unwrap_or(0),
                evidence.threshold_bytes_per_s.unwrap_or(0),
                crate::report::time::rfc3339(evidence.since_ms.unwrap_or(now_ms) as i64)
            ),
            RuleKind::Anomaly => format!(
                "app {key}: {} B/s against a usual {} B/s (deviation {} B/s) for this hour of \
                 the week, score {:.2}",
                evidence.observed_bytes_per_s.unwrap_or(0),
                evidence.baseline_bytes_per_s.unwrap_or(0),
                evidence.deviation_bytes_per_s.unwrap_or(0),
                evidence.score.unwrap_or(0.0)
            ),
            RuleKind::Quota => format!(
                "{} {key}: {} of {} bytes used this month; {}",
                scope_name(rule.scope),
                evidence.used_bytes.unwrap_or(0),
                evidence.quota_bytes.unwrap_or(0),
                quota_outlook(&evidence)
            ),
            RuleKind::NewDestination => {
                // Any may be unknown; no stray space when one is. A name comes first, its
                // address after it in parentheses.
                let remote = match (&evidence.remote_name, &evidence.remote) {
                    (Some(name), Some(addr)) => Some(format!("{name} ({addr})")),
                    (name, addr) => name.clone().or_else(|| addr.clone()),
                };
                let what: Vec<&str> = [remote.as_deref(), evidence.service.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect();
                format!("app {key}: new destination {}", what.join(" "))
            }
        };
        Self {
            state: State::Firing,
            rule: rule.name.clone(),
            kind: rule.kind,
            scope: rule.scope,
            key: key.to_owned(),
            summary,
            evidence,
            fired_ms: now_ms,
            cleared_ms: None,
            reason: None,
        }
    }

    pub(super) fn cleared(mut self, now_ms: u64, reason: &str) -> Self {
        self.state = State::Cleared;
        self.cleared_ms = Some(now_ms);
        self.reason = Some(reason.to_owned());
        self.summary = format!("cleared: {}", self.summary);
        self
    }

    /// The webhook body.
    pub fn to_json(&self, host: &str) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            version: u32,
            host: &'a str,
            #[serde(flatten)]
            alert: &'a Notification,
        }
        serde_json::to_string(&Body {
            version: 1,
            host,
            alert: self,
        })
        .unwrap_or_default()
    }

    /// An RFC 5424 line: facility daemon, warning when firing, notice when cleared; the
    /// JSON body as structured-data-free message text.
    pub fn to_syslog(&self, host: &str, pid: u32, now_ms: u64) -> String {
        let severity = match self.state {
            State::Firing => 4,
            State::Cleared => 5,
        };
        format!(
            "<{}>1 {} {host} kaipo {pid} alert - {}",
            3 * 8 + severity,
            crate::report::time::rfc3339(now_ms as i64),
            self.to_json(host)
        )
    }
}

/// When the quota was or will be reached: said as a fact once it is, as a forecast before.
fn quota_outlook(evidence: &Evidence) -> String {
    let at = |ms: u64| crate::report::time::rfc3339(ms as i64);
    let reached = evidence.used_bytes >= evidence.quota_bytes;
    match evidence.forecast_ms {
        Some(ms) if reached => format!("the quota was reached at {}", at(ms)),
        None if reached => "the quota is reached".into(),
        Some(ms) => format!("at this rate the quota is reached by {}", at(ms)),
        None => "at this rate the quota is not reached this month".into(),
    }
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::App => "app",
        Scope::Process => "pid",
        Scope::User => "user",
        Scope::Container => "container",
        Scope::Interface => "interface",
    }
}

/// This machine's name, for notifications.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "-".into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::rules::Direction;

    fn rule(kind: RuleKind) -> Rule {
        Rule {
            name: "r".into(),
            kind,
            scope: Scope::App,
            target: None,
            direction: Direction::Both,
            above: None,
            for_: Duration::ZERO,
            learn: Duration::ZERO,
            score: None,
            quota: None,
        }
    }

    /// The old summaries said "quota reached by ... at this rate" of a forecast and "quota
    /// reached never at this rate", and left a trailing space after a destination without a
    /// service.
    #[test]
    fn summaries_read_as_sentences() {
        let quota = |used, forecast_ms| {
            Notification::firing(
                &rule(RuleKind::Quota),
                "up",
                0,
                Evidence {
                    used_bytes: Some(used),
                    quota_bytes: Some(3_000),
                    forecast_ms,
                    ..Evidence::default()
                },
            )
            .summary
        };
        assert_eq!(
            quota(3_100, Some(1_795_847_566_363)),
            "app up: 3100 of 3000 bytes used this month; the quota was reached at \
             2026-11-28T06:32:46.363Z"
        );
        assert_eq!(
            quota(1_100, Some(1_795_847_566_363)),
            "app up: 1100 of 3000 bytes used this month; at this rate the quota is reached by \
             2026-11-28T06:32:46.363Z"
        );
        assert_eq!(
            quota(1_100, None),
            "app up: 1100 of 3000 bytes used this month; at this rate the quota is not reached \
             this month"
        );
        let new = Notification::firing(
            &rule(RuleKind::NewDestination),
            "curl",
            0,
            Evidence {
                remote: Some("198.51.100.7".into()),
                ..Evidence::default()
            },
        );
        assert_eq!(new.summary, "app curl: new destination 198.51.100.7");
        let named = Notification::firing(
            &rule(RuleKind::NewDestination),
            "curl",
            0,
            Evidence {
                remote: Some("198.51.100.7".into()),
                remote_name: Some("api.stripe.com".into()),
                service: Some("https".into()),
                ..Evidence::default()
            },
        );
        assert_eq!(
            named.summary,
            "app curl: new destination api.stripe.com (198.51.100.7) https"
        );
        let odd = Notification::firing(
            &rule(RuleKind::Anomaly),
            "db",
            0,
            Evidence {
                observed_bytes_per_s: Some(90_000),
                baseline_bytes_per_s: Some(10_000),
                deviation_bytes_per_s: Some(2_000),
                score: Some(40.0 / 3.0),
                ..Evidence::default()
            },
        );
        assert_eq!(
            odd.summary,
            "app db: 90000 B/s against a usual 10000 B/s (deviation 2000 B/s) for this hour of \
             the week, score 13.33"
        );
    }
}
