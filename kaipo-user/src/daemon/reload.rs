//! What the daemon changes on SIGHUP, and the metrics endpoint it starts with.
//!
//! A reload rereads the configuration file. A file that does not parse or validate changes
//! nothing: the daemon keeps running with the configuration it had and logs why. Settings
//! that shape what was set up at start (database, socket, interfaces, intervals, metrics
//! address) are logged as needing a restart; the rest (metrics top-N, alert rules, `[names]`)
//! apply from the next interval. Counters are never reset. A quota rule that is new or changed reads this
//! month's usage from history, like the daemon's start does.

use std::{
    net::SocketAddr,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::{
    alert::{
        quota,
        rules::{RuleKind, Scope},
        Rule,
    },
    config::{Config, MetricsConfig},
    metrics::{MetricsState, SharedMetrics},
    pipeline::bus::StoreJob,
};

/// The metrics endpoint, bound before privileges are dropped.
pub struct MetricsEndpoint {
    pub state: SharedMetrics,
    /// Keeps the kernel's BPF run-time statistics on for as long as it is open.
    _bpf_stats: Option<OwnedFd>,
}

pub async fn start_metrics(
    addr: SocketAddr,
    config: &MetricsConfig,
    host: Option<&str>,
) -> anyhow::Result<(MetricsEndpoint, tokio::net::TcpListener)> {
    let listener = crate::metrics::server::bind(addr).await?;
    let bpf_stats = if config.bpf_stats {
        match enable_bpf_stats() {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!(
                    "BPF run-time statistics stay off ({e}); kaipo_bpf_program_* will read 0"
                );
                None
            }
        }
    } else {
        None
    };
    eprintln!("kaipo: serving metrics on http://{addr}/metrics");
    let endpoint = MetricsEndpoint {
        state: Arc::new(Mutex::new(MetricsState::with_labels(
            config.top_apps,
            config.labels.clone(),
            crate::metrics::host_label(config, host),
        ))),
        _bpf_stats: bpf_stats,
    };
    Ok((endpoint, listener))
}

/// Turns the kernel's BPF run-time statistics on while the returned fd is open.
#[cfg(target_os = "linux")]
fn enable_bpf_stats() -> Result<OwnedFd, String> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| e.to_string())
}

#[cfg(not(target_os = "linux"))]
fn enable_bpf_stats() -> Result<OwnedFd, String> {
    Err("BPF exists on Linux only".to_owned())
}

/// The configuration in force and everyone a reload must tell.
pub struct LiveConfig {
    pub current: Config,
    pub path: PathBuf,
    pub metrics: Option<SharedMetrics>,
    pub alerting: Option<Arc<Mutex<crate::alert::Alerting>>>,
    /// Where quota rules a reload adds or changes read this month's history.
    pub history: Option<History>,
    /// The engine's names (`[names]`), which it takes at its next close.
    pub naming: Option<tokio::sync::watch::Sender<crate::config::names::NamingSettings>>,
}

/// The store worker's queue and the query slots it shares with the API server.
#[derive(Clone)]
pub struct History {
    pub jobs: mpsc::Sender<StoreJob>,
    pub slots: Arc<Semaphore>,
}

/// Room for one question to the store worker, taken before the rules change.
struct Ticket {
    scope: Scope,
    slot: mpsc::OwnedPermit<StoreJob>,
    permit: OwnedSemaphorePermit,
}

impl LiveConfig {
    pub fn new(current: Config, path: PathBuf) -> Self {
        Self {
            current,
            path,
            metrics: None,
            alerting: None,
            history: None,
            naming: None,
        }
    }

    /// Rereads the file. A file that cannot be read, parsed or validated changes nothing and is
    /// logged in one line naming the file, the line, the key and the reason, which is also
    /// returned.
    pub async fn reload(&mut self) -> Result<(), String> {
        #[cfg(debug_assertions)]
        if std::env::var_os(PANIC_ON_RELOAD).is_some() {
            panic!("{PANIC_ON_RELOAD} is set");
        }
        #[cfg(all(debug_assertions, target_os = "linux"))]
        if let Some(path) = std::env::var_os(PROBE_ON_RELOAD) {
            sandbox_probe(std::path::Path::new(&path));
        }
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                let line = format!(
                    "kaipo: SIGHUP: keeping the previous configuration: {:#}",
                    anyhow::Error::from(e)
                );
                eprintln!("{line}");
                return Err(line);
            }
        };
        let tickets = self.take_tickets(&new).await;
        let restart = self.current.restart_needed(&new);
        if !restart.is_empty() {
            eprintln!(
                "kaipo: SIGHUP: {} changed; this takes a restart (the old values stay in force)",
                restart.join(", ")
            );
        }
        if let Some(m) = &self.metrics {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_top_apps(new.metrics.top_apps);
        }
        if let Some(a) = &self.alerting {
            let now = crate::daemon::store_worker::now_ms();
            // The rules change and history's question is queued without an await between: a
            // store batch closed before counts as history, one closed after as pending.
            let unseeded = a
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reconfigure(&new.alerts, now);
            if !unseeded.is_empty() {
                seed_from_history(Arc::clone(a), unseeded, tickets, now);
            }
        }
        if new.names != self.current.names {
            self.apply_names(&new).await;
        }
        eprintln!(
            "kaipo: SIGHUP: reloaded {} ({} alert rules)",
            self.path.display(),
            new.alerts.rule.len()
        );
        self.current = new;
        Ok(())
    }

    /// Hands `new`'s `[names]` to the engine (from its next interval) and to the store (for
    /// reports by network).
    async fn apply_names(&self, new: &Config) {
        let settings = new.naming_settings();
        if let Some(h) = &self.history {
            if h.jobs
                .send(StoreJob::Names(settings.names.clone()))
                .await
                .is_err()
            {
                log::warn!("the store worker has stopped; reports keep the old network names");
            }
        }
        if let Some(tx) = &self.naming {
            tx.send_replace(settings.clone());
        }
        eprintln!(
            "kaipo: SIGHUP: names: {} services, {} networks, reverse DNS {}",
            new.names.services.len(),
            new.names.networks.len(),
            if settings.reverse_dns { "on" } else { "off" }
        );
    }

    /// Room in the store worker's queue for each scope of the quota rules `new` adds or
    /// changes.
    async fn take_tickets(&self, new: &Config) -> Vec<Ticket> {
        let Some(h) = &self.history else {
            return Vec::new();
        };
        let mut scopes: Vec<Scope> = new
            .alerts
            .rule
            .iter()
            .filter(|r| r.kind == RuleKind::Quota && !self.current.alerts.rule.contains(r))
            .map(|r| r.scope)
            .collect();
        scopes.sort_by_key(|s| *s == Scope::Interface);
        scopes.dedup();
        let mut tickets = Vec::new();
        for scope in scopes {
            let (Ok(permit), Ok(slot)) = (
                Arc::clone(&h.slots).acquire_owned().await,
                h.jobs.clone().reserve_owned().await,
            ) else {
                log::warn!("the store worker has stopped; quotas count from now");
                break;
            };
            tickets.push(Ticket {
                scope,
                slot,
                permit,
            });
        }
        tickets
    }
}

/// Asks history for this month's usage of each rule in `rules` and adds it to what the engine
/// counted since the last stored batch.
fn seed_from_history(
    alerting: Arc<Mutex<crate::alert::Alerting>>,
    rules: Vec<Rule>,
    tickets: Vec<Ticket>,
    now_ms: u64,
) {
    let mut answers = Vec::new();
    for t in tickets {
        let (reply, answer) = oneshot::channel();
        t.slot.send(StoreJob::Query {
            query: quota::month_query(t.scope, now_ms),
            reply,
            permit: t.permit,
        });
        answers.push((t.scope, answer));
    }
    tokio::spawn(async move {
        let (month_start, _) = quota::month_bounds(now_ms);
        let mut reports = Vec::new();
        for (scope, answer) in answers {
            match answer.await {
                Ok(Ok(report)) => reports.push((scope, report)),
                Ok(Err(e)) => log::warn!("quotas: reading history: {e}"),
                Err(_) => log::warn!("quotas: the store worker stopped before answering"),
            }
        }
        let mut a = alerting.lock().unwrap_or_else(|p| p.into_inner());
        for rule in &rules {
            let Some((_, report)) = reports.iter().find(|(s, _)| *s == rule.scope) else {
                continue;
            };
            let stored = quota::usage_in(report, rule);
            a.add_stored_usage(rule, month_start, stored);
            eprintln!(
                "kaipo: SIGHUP: quota '{}' counts {stored} bytes from this month's history",
                rule.name
            );
        }
    });
}

/// Debug builds only: a reload panics when this is set, to test that a panic in any task
/// ends the daemon with a failure.
#[cfg(debug_assertions)]
pub const PANIC_ON_RELOAD: &str = "KAIPO_TEST_PANIC_ON_RELOAD";

/// Debug builds only: a reload first tries what the sandbox must refuse, running a program and
/// reading the file this names, and logs each outcome, to test the running daemon's filters.
#[cfg(all(debug_assertions, target_os = "linux"))]
pub const PROBE_ON_RELOAD: &str = "KAIPO_TEST_SANDBOX_PROBE_ON_RELOAD";

#[cfg(all(debug_assertions, target_os = "linux"))]
fn sandbox_probe(path: &std::path::Path) {
    let program = c"/bin/true";
    let argv = [program.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: NUL-terminated argument and environment arrays of valid strings. Should the
    // call succeed, the daemon becomes /bin/true and exits 0, which the test notices.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let exec = std::io::Error::last_os_error();
    let read = match std::fs::read(path) {
        Ok(bytes) => format!("{} bytes", bytes.len()),
        Err(e) => e.to_string(),
    };
    eprintln!(
        "kaipo: sandbox probe: execve /bin/true: {exec}; read {}: {read}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that would lower `metrics.top_apps` and add a rule but fails its check leaves
    /// the configuration in force as it was, and the reason is one line with the file, line
    /// and key; a good file then applies.
    #[test]
    fn a_bad_file_changes_nothing_and_says_where() {
        let dir = std::env::temp_dir().join(format!("kaipo-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kaipo.toml");
        let start = Config::parse("[metrics]\ntop_apps = 30\n", &path).unwrap();
        let mut live = LiveConfig::new(start.clone(), path.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bad = "[metrics]\ntop_apps = 5\n[alerts]\n[[alerts.rule]]\nname = \"q\"\nkind = \"quota\"\nquota = 10\ntarget = \"x\"\nwebhok = \"\"\n";
        std::fs::write(&path, bad).unwrap();
        let err = rt.block_on(live.reload()).unwrap_err();
        assert_eq!(
            err,
            format!(
                "kaipo: SIGHUP: keeping the previous configuration: {}, line 9, key \
                 alerts.rule.webhok: unknown field `webhok`, expected one of `name`, `kind`, \
                 `scope`, `target`, `direction`, `above`, `for`, `learn`, `score`, `quota`",
                path.display()
            )
        );
        assert_eq!(live.current, start);
        // A file that cannot be read says why: the cause used to be left out.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = rt.block_on(live.reload()).unwrap_err();
        assert_eq!(
            err,
            format!(
                "kaipo: SIGHUP: keeping the previous configuration: reading {}: Is a directory \
                 (os error 21)",
                path.display()
            )
        );
        assert_eq!(live.current, start);
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, bad.replace("webhok = \"\"\n", "")).unwrap();
        rt.block_on(live.reload()).unwrap();
        assert_eq!(live.current.metrics.top_apps, 5);
        assert_eq!(live.current.alerts.rule.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `[names]` applies on reload: the engine's next close sees the new service name and
    /// reverse DNS on, and the store the new networks; a bad file hands neither anything.
    #[test]
    fn names_apply_on_reload_and_a_bad_file_changes_none() {
        use kaipo_common::PROTO_UDP;

        let dir = std::env::temp_dir().join(format!("kaipo-reload-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kaipo.toml");
        let start = Config::parse("[names.services]\n\"udp/9000\" = \"old\"\n", &path).unwrap();
        let (naming_tx, mut naming_rx) = tokio::sync::watch::channel(start.naming_settings());
        naming_rx.mark_unchanged();
        let (jobs, mut store_rx) = mpsc::channel(8);
        let mut live = LiveConfig::new(start.clone(), path.clone());
        live.naming = Some(naming_tx);
        live.history = Some(History {
            jobs,
            slots: Arc::new(Semaphore::new(1)),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        std::fs::write(
            &path,
            "[names]\nreverse_dns = \"yes\"\n[names.services]\n\"udp/9000\" = \"new\"\n",
        )
        .unwrap();
        let err = rt.block_on(live.reload()).unwrap_err();
        assert!(err.contains("line 2, key names.reverse_dns"), "{err}");
        assert!(!naming_rx.has_changed().unwrap());
        assert!(store_rx.try_recv().is_err());
        assert_eq!(live.current, start);
        std::fs::write(
            &path,
            "[names]\nreverse_dns = true\n[names.services]\n\"udp/9000\" = \"new\"\n\
             [names.networks]\n\"10.234.0.0/16\" = \"lab\"\n",
        )
        .unwrap();
        rt.block_on(live.reload()).unwrap();
        assert!(naming_rx.has_changed().unwrap());
        let settings = naming_rx.borrow_and_update().clone();
        assert_eq!(settings.names.service(PROTO_UDP, 9000), Some("new"));
        assert!(settings.reverse_dns);
        let Ok(StoreJob::Names(names)) = store_rx.try_recv() else {
            panic!("the store was not told");
        };
        assert_eq!(names.network_of_text("10.234.5.6"), Some("lab"));
        // The same file again: nothing to hand on.
        rt.block_on(live.reload()).unwrap();
        assert!(!naming_rx.has_changed().unwrap());
        assert!(store_rx.try_recv().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
