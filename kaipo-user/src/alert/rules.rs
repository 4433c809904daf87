//! `[alerts]` in the configuration file: where alerts go and the rules that raise them.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::config::value::duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// `http://HOST[:PORT]/PATH` to POST each notification to; "" for none. Plain HTTP only.
    pub webhook: String,
    #[serde(with = "duration")]
    pub webhook_timeout: Duration,
    /// Further attempts after a failed POST, 0.5 s apart and doubling.
    pub webhook_retries: u32,
    /// Also write each notification to syslog.
    pub syslog: bool,
    /// The syslog daemon's datagram socket.
    pub syslog_socket: PathBuf,
    pub rule: Vec<Rule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook: String::new(),
            webhook_timeout: Duration::from_secs(5),
            webhook_retries: 3,
            syslog: false,
            syslog_socket: "/dev/log".into(),
            rule: Vec::new(),
        }
    }
}

/// One `[[alerts.rule]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique; names the alert in every notification.
    pub name: String,
    pub kind: RuleKind,
    /// What a rate is measured per (rate rules).
    #[serde(default)]
    pub scope: Scope,
    /// Only this app, process (pid), user, container or interface; without it, each one in
    /// the scope is watched on its own.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub direction: Direction,
    /// Rate rules: bytes per second the rate must exceed.
    #[serde(default)]
    pub above: Option<u64>,
    /// How long the condition must hold before the alert fires (rate rules).
    #[serde(rename = "for", with = "duration", default = "default_for")]
    pub for_: Duration,
    /// New-destination rules: how long an app's destinations are learnt before a new one
    /// raises an alert.
    #[serde(with = "duration", default = "default_learn")]
    pub learn: Duration,
    /// Anomaly rules: deviations above the app's baseline for its hour of the week
    /// (default 4).
    #[serde(default)]
    pub score: Option<f64>,
    /// Quota rules: bytes per calendar month (UTC).
    #[serde(default)]
    pub quota: Option<u64>,
}

fn default_for() -> Duration {
    Duration::from_secs(60)
}

fn default_learn() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A rate above `above` for `for`.
    Rate,
    /// An app talks to a remote address or service it had not used during `learn`.
    NewDestination,
    /// An app's rate is `score` deviations above its baseline for `for` (see
    /// `anomaly::baseline`).
    Anomaly,
    /// `target`'s traffic this month (UTC) reached `quota`, or is forecast to reach it before
    /// the month ends at its average rate so far.
    Quota,
}

impl RuleKind {
    /// Every kind, in the order the README and `kaipo config init` show them.
    pub const ALL: [RuleKind; 4] = [
        RuleKind::Rate,
        RuleKind::Quota,
        RuleKind::NewDestination,
        RuleKind::Anomaly,
    ];

    /// The name a configuration file gives it.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Rate => "rate",
            RuleKind::NewDestination => "new_destination",
            RuleKind::Anomaly => "anomaly",
            RuleKind::Quota => "quota",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    App,
    Process,
    User,
    Container,
    Interface,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Rx,
    Tx,
    /// Received and sent together.
    #[default]
    Both,
}

impl Direction {
    /// The bytes of `c` this direction counts.
    pub fn bytes_of(self, c: &crate::pipeline::totals::Counts) -> u64 {
        match self {
            Direction::Rx => c.rx_bytes,
            Direction::Tx => c.tx_bytes,
            Direction::Both => c.bytes(),
        }
    }
}

impl AlertsConfig {
    /// What serde cannot check; `Err((rule name or key, message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !self.webhook.is_empty() {
            super::webhook::Endpoint::parse(&self.webhook)
                .map_err(|m| ("alerts.webhook".to_owned(), m))?;
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.rule {
            let at = || format!("alerts.rule '{}'", r.name);
            if !names.insert(&r.name) {
                return Err((
                    at(),
                    "another rule has this name; allowed: unique names".into(),
                ));
            }
            match r.kind {
                RuleKind::Rate if r.above.is_none() => {
                    return Err((
                        at(),
                        "kind = \"rate\" needs above = BYTES_PER_SECOND".into(),
                    ))
                }
                RuleKind::NewDestination | RuleKind::Anomaly if r.scope != Scope::App => {
                    return Err((
                        at(),
                        format!(
                            "kind = \"{}\" allows only scope = \"app\"",
                            r.kind.name()
                        ),
                    ))
                }
                RuleKind::Quota
                    if r.quota.is_none()
                        || r.target.is_none()
                        || !matches!(r.scope, Scope::App | Scope::Interface) =>
                {
                    return Err((
                        at(),
                        "kind = \"quota\" needs quota = BYTES, target = NAME and scope = \"app\" or \"interface\"".into(),
                    ))
                }
                RuleKind::Anomaly if r.score.is_some_and(|s| !(s > 0.0 && s.is_finite())) => {
                    return Err((at(), "score must be a number above 0".into()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}
