//! Where notifications go: the webhook, syslog and the status answer's list of firing alerts.

use std::sync::{Arc, Mutex};

use super::{
    notification, quota, syslog, webhook, ActiveAlerts, AlertEngine, AlertsConfig, Notification,
};
use crate::pipeline::{totals::Totals, IntervalObserver, LiveInterval};

/// The engine and where its notifications go, fed by the aggregator's task.
pub struct Alerting {
    engine: AlertEngine,
    webhook: Option<webhook::Webhook>,
    syslog: Option<syslog::Syslog>,
    pub active: ActiveAlerts,
    host: String,
}

impl Alerting {
    /// Starts the webhook task (on the current runtime) when one is configured.
    pub fn new(config: &AlertsConfig) -> Alerting {
        let mut a = Alerting {
            engine: AlertEngine::new(config.rule.clone()),
            webhook: None,
            syslog: None,
            active: Arc::new(Mutex::new(Vec::new())),
            host: notification::host_name(),
        };
        a.configure_outputs(config);
        a
    }

    fn configure_outputs(&mut self, config: &AlertsConfig) {
        self.webhook = webhook::Endpoint::parse(&config.webhook)
            .ok()
            .map(|e| webhook::Webhook::spawn(e, config.webhook_timeout, config.webhook_retries));
        self.syslog = config
            .syslog
            .then(|| syslog::Syslog::new(&config.syslog_socket));
    }

    /// A reload: new rules and outputs; alerts of removed or changed rules clear. Returns the
    /// quota rules that are new or changed: they count from what history does not hold yet,
    /// and wait for [`Self::add_stored_usage`] with what it does.
    pub fn reconfigure(&mut self, config: &AlertsConfig, now_ms: u64) -> Vec<super::Rule> {
        self.configure_outputs(config);
        let unseeded: Vec<super::Rule> = config
            .rule
            .iter()
            .filter(|r| r.kind == super::rules::RuleKind::Quota && !self.engine.rules().contains(r))
            .cloned()
            .collect();
        let cleared = self.engine.set_rules(config.rule.clone(), now_ms);
        self.deliver(&cleared, now_ms);
        unseeded
    }

    /// History's answer for a quota rule [`Self::reconfigure`] returned.
    pub fn add_stored_usage(&mut self, rule: &super::Rule, month_start_ms: u64, bytes: u64) {
        self.engine.add_stored_usage(rule, month_start_ms, bytes);
    }

    /// Seeds each quota rule's usage this month from the store.
    pub fn seed_quotas(&mut self, store: &mut crate::store::Store, now_ms: u64) {
        let seeds: Vec<(String, quota::Usage)> = self
            .engine
            .quota_rules()
            .filter_map(|r| Some((r.name.clone(), quota::usage_from_store(store, r, now_ms)?)))
            .collect();
        for (name, u) in seeds {
            self.engine.seed_quota(&name, u.month_start_ms, u.bytes);
        }
    }

    /// The anomaly baselines, while any anomaly rule exists.
    pub fn baseline_mut(&mut self) -> Option<&mut crate::anomaly::baseline::Baseline> {
        self.engine.baseline_mut()
    }

    /// The webhook's delivery counters, when one is configured.
    pub fn webhook_stats(&self) -> Option<Arc<webhook::WebhookStats>> {
        self.webhook.as_ref().map(|w| Arc::clone(&w.stats))
    }

    fn deliver(&mut self, notes: &[Notification], now_ms: u64) {
        for n in notes {
            log::warn!("alert: {}", n.summary);
            if let Some(w) = &self.webhook {
                w.send(n.to_json(&self.host));
            }
            if let Some(s) = &mut self.syslog {
                s.send(&n.to_syslog(&self.host, std::process::id(), now_ms));
            }
        }
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = self.engine.active();
    }
}

/// Shared so that a SIGHUP reload can reach the engine.
pub struct AlertObserver(pub Arc<Mutex<Alerting>>);

impl IntervalObserver for AlertObserver {
    fn observe(&mut self, live: &LiveInterval, _totals: &Totals) {
        let mut a = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let notes = a.engine.evaluate(live);
        a.deliver(&notes, live.record.ts_ms);
    }

    fn batch_closed(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .engine
            .batch_closed();
    }
}
