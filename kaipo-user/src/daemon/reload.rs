//! What the daemon changes on SIGHUP, and the metrics endpoint it starts with.
//!
//! A reload rereads the configuration file. A file that does not parse or validate changes
//! nothing: the daemon keeps running with the configuration it had and logs why. Settings
//! that shape what was set up at start (database, socket, interfaces, intervals, metrics
//! address) are logged as needing a restart; the rest (metrics top-N, alert rules) apply from
//! the next interval. Counters are never reset.

use std::{
    net::SocketAddr,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{
    config::{Config, MetricsConfig},
    metrics::{MetricsState, SharedMetrics},
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
        state: Arc::new(Mutex::new(MetricsState::new(config.top_apps))),
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
}

impl LiveConfig {
    pub fn new(current: Config, path: PathBuf) -> Self {
        Self {
            current,
            path,
            metrics: None,
            alerting: None,
        }
    }

    /// Rereads the file; on error keeps everything as it is.
    pub fn reload(&mut self) {
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kaipo: SIGHUP: keeping the previous configuration: {e}");
                return;
            }
        };
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
            a.lock()
                .unwrap_or_else(|p| p.into_inner())
                .reconfigure(&new.alerts, crate::daemon::store_worker::now_ms());
        }
        eprintln!(
            "kaipo: SIGHUP: reloaded {} ({} alert rules)",
            self.path.display(),
            new.alerts.rule.len()
        );
        self.current = new;
    }
}
