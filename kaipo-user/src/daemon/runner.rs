//! The daemon's start-up, run and shutdown (see the module above).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use super::{
    access, history, reload, server,
    server::{Limits, Shared},
    start_privileges,
    store_worker::{self, now_ms},
    view::DaemonInfo,
};
use crate::{
    api::protocol::{DegradationInfo, StoreStatus},
    config::Config,
    pipeline::{
        aggregate::{self, Aggregator},
        bus::{self, BusStats, INTERVAL_QUEUE},
        collector,
    },
};

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub db: PathBuf,
    pub socket: PathBuf,
    /// Empty: every interface that is up, except loopback.
    pub ifaces: Vec<String>,
    /// Length of one stored interval.
    pub interval: Duration,
    /// How often live figures are refreshed; at most `interval`.
    pub live_interval: Duration,
    pub include_loopback: bool,
    /// `--metrics-host`: the `host` label over `metrics.host`.
    pub metrics_host: Option<String>,
    pub backend: crate::collect::backend::BackendChoice,
    pub pcap_filter: Option<String>,
    pub pcap_immediate: bool,
    pub ingress_hook: crate::collect::backend::IngressHook,
    /// Flows on or off (`--flows`, `--no-flows`, `daemon.flows`); `None`: on only with
    /// interfaces named.
    pub flows: Option<bool>,
    /// The configuration file, reread on SIGHUP, and what it said at start.
    pub config_path: PathBuf,
    pub config: Config,
    /// Who the daemon becomes after start (`daemon.user`); None: `kaipo` where it exists.
    pub user: Option<String>,
    /// Confine files with Landlock after start (`daemon.landlock`).
    pub landlock: bool,
    /// The key of the encrypted database (`[storage] encryption_key_file`).
    pub key_file: Option<PathBuf>,
}

/// Creates the missing folders above `path`, each 0755 whatever the umask. Returns the ones
/// it created, outermost first.
pub(crate) fn create_parents(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_owned());
        dir = d.parent();
    }
    for d in missing.iter().rev() {
        fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", d.display()))?;
    }
    missing.reverse();
    Ok(missing)
}

/// Removes the socket when the daemon ends, however it ends short of a kill.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub async fn run(opts: &DaemonOptions) -> anyhow::Result<()> {
    let started_ms = now_ms();
    // Said before anything else fails for the same reason in a less helpful way.
    let target = start_privileges::check(opts.user.as_deref())?;
    // Nothing the daemon creates is writable by others, nor its history readable by them;
    // the socket's own mode is set explicitly.
    // SAFETY: umask only sets this process's file creation mask.
    unsafe { libc::umask(0o027) };
    let live = opts.live_interval.min(opts.interval);
    let group = access::group_id(access::GROUP).unwrap_or_else(|err| {
        log::warn!("looking up group {}: {err}", access::GROUP);
        None
    });

    // Dropped in the reverse order: the store closes before a failed start removes what it
    // created, and the lock goes last.
    // Read while the key file can still be reached (before Landlock and the user switch).
    let key = match &opts.key_file {
        Some(file) => Some(Arc::new(crate::store::StoreKey::load(file)?)),
        None => None,
    };
    let opened = history::open(&opts.db, group, key)?;
    let mut start_files = opened.files;
    let _history_lock = opened.lock;
    let note = opened.note;
    let mut store = opened.store;
    let naming = opts.config.naming_settings();
    store.set_names(naming.names.clone());
    // Also when no rule is set: a reload may add some.
    let mut alerting = crate::alert::Alerting::new(&opts.config.alerts);
    alerting.seed_quotas(&mut store, started_ms);
    if let Some(baseline) = alerting.baseline_mut() {
        let hours = crate::anomaly::history::learn(baseline, &mut store, started_ms);
        eprintln!("kaipo: anomaly baselines learnt from {hours} hours of history");
    }
    let alerting = Arc::new(Mutex::new(alerting));
    if let Some(note) = &note {
        eprintln!("kaipo: {note}");
    }
    start_files.add_dirs(create_parents(&opts.socket)?);
    let listener = server::bind(&opts.socket)?;
    let _socket = RemoveOnDrop(opts.socket.clone());
    let (collector, events) =
        crate::collect::backend::start(&crate::collect::backend::StartOptions {
            ifaces: opts.ifaces.clone(),
            backend: opts.backend,
            pcap_filter: opts.pcap_filter.clone(),
            pcap_immediate: opts.pcap_immediate,
            ingress_hook: opts.ingress_hook,
            flows: opts.flows,
            ..Default::default()
        })
        .context("starting the collector")?;
    let degradations = collector.degradations().to_vec();
    let collector_kind = collector.kind();
    let tracks_flows = collector.tracks_flows();
    for d in &degradations {
        eprintln!("kaipo: degraded: {d}");
    }
    let plan = start_privileges::plan(
        &collector,
        target,
        &opts.db,
        &opts.socket,
        &opts.config_path,
        opts.landlock,
    );
    // Bound and switched on while privileges last: a port under 1024 needs
    // CAP_NET_BIND_SERVICE, and enabling BPF statistics needs CAP_SYS_ADMIN.
    let (metrics, metrics_listener) = match opts.config.metrics.listen {
        Some(addr) => {
            let (m, l) =
                reload::start_metrics(addr, &opts.config.metrics, opts.metrics_host.as_deref())
                    .await
                    .with_context(|| format!("serving metrics on {addr}"))?;
            (Some(m), Some(l))
        }
        None => (None, None),
    };
    // The remote API's port, certificate, key and tokens, while they can still be read.
    #[cfg(target_os = "linux")]
    let remote = super::remote::prepare(&opts.config.api).await?;
    let sandbox = start_privileges::drop_unneeded(plan, &opts.db, &opts.socket)?;

    // Handlers before anything runs: a signal from here on stops the daemon cleanly.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    let stats = Arc::new(BusStats::default());
    let (publisher, subscriptions) = bus::publisher(Arc::clone(&stats));
    let (interval_tx, interval_rx) = mpsc::channel(INTERVAL_QUEUE);
    let (store_tx, store_rx) = bus::store_queue();
    let store_status = Arc::new(Mutex::new(StoreStatus {
        path: Some(opts.db.display().to_string()),
        backlog: store.backlog_len() as u64,
        last_error: store.last_error().map(str::to_owned),
        last_error_ms: store.last_error().map(|_| now_ms()),
        note,
        ..StoreStatus::default()
    }));
    let store_thread = store_worker::spawn(store, store_rx, Arc::clone(&store_status))
        .context("starting the store thread")?;
    let interfaces: Vec<String> = collector
        .interfaces()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let info = DaemonInfo {
        pid: std::process::id(),
        started_ms,
        backend: collector_kind.to_string(),
        degradations: degradations
            .iter()
            .map(|d| DegradationInfo {
                what: d.what.clone(),
                why: d.why.clone(),
            })
            .collect(),
        interval_ms: opts.interval.as_millis() as u64,
        live_interval_ms: live.as_millis() as u64,
        include_loopback: opts.include_loopback,
        interfaces: interfaces.clone(),
        sandbox: sandbox.clone(),
    };
    eprintln!(
        "kaipo: daemon running (pid {}): interfaces {}, history {} every {} ms, socket {}; \
         user {}, capabilities kept: {}",
        info.pid,
        if interfaces.is_empty() {
            "none".to_owned()
        } else {
            interfaces.join(", ")
        },
        opts.db.display(),
        info.interval_ms,
        opts.socket.display(),
        sandbox.user,
        if sandbox.capabilities.is_empty() {
            "none".to_owned()
        } else {
            sandbox.capabilities.join(", ")
        }
    );
    if let Some(why) = &sandbox.stays_root {
        eprintln!("kaipo: the daemon stays root: {why}");
    }
    for (name, layer) in [
        ("seccomp", &sandbox.seccomp),
        ("landlock", &sandbox.landlock),
    ] {
        let state = if layer.in_force {
            "in force"
        } else {
            "not in force"
        };
        eprintln!("kaipo: {name} {state}: {}", layer.detail);
    }
    let mut shared = Shared::new(
        info,
        subscriptions,
        store_tx.clone(),
        store_status,
        Arc::clone(&stats),
        Limits::default(),
    );
    shared.alerts = Arc::clone(&alerting.lock().unwrap_or_else(|p| p.into_inner()).active);
    let history = reload::History {
        jobs: store_tx.clone(),
        slots: Arc::clone(&shared.query_slots),
    };
    let shared = Arc::new(shared);
    let (stop_tx, stop_rx) = watch::channel(false);
    #[cfg(target_os = "linux")]
    if let Some(remote) = remote {
        eprintln!("kaipo: remote API on https://{}", remote.addr);
        tokio::spawn(super::remote::serve(
            remote,
            Arc::clone(&shared),
            stop_rx.clone(),
        ));
    }
    tokio::spawn(server::serve(listener, shared, stop_rx.clone()));
    let mut observers: Vec<Box<dyn crate::pipeline::IntervalObserver>> = Vec::new();
    observers.push(Box::new(crate::alert::AlertObserver(Arc::clone(&alerting))));
    let mut live_config = reload::LiveConfig::new(opts.config.clone(), opts.config_path.clone());
    live_config.alerting = Some(alerting);
    live_config.history = Some(history);
    let (naming_tx, naming_rx) = watch::channel(naming);
    live_config.naming = Some(naming_tx);
    if let (Some(m), Some(listener)) = (&metrics, metrics_listener) {
        tokio::spawn(crate::metrics::server::serve(
            listener,
            Arc::clone(&m.state),
            stop_rx.clone(),
        ));
        observers.push(Box::new(crate::metrics::MetricsObserver(Arc::clone(
            &m.state,
        ))));
        live_config.metrics = Some(Arc::clone(&m.state));
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = sighup.recv() => {
                    let _ = live_config.reload().await;
                }
            }
        }
        let _ = stop_tx.send(true);
    });

    // The baseline is read last, so the first interval covers only time the daemon ran.
    let mut engine = crate::engine::Engine::with_collector(
        collector,
        events,
        opts.include_loopback,
        !opts.ifaces.is_empty(),
    )?;
    // Reverse DNS's thread starts here, after the sandbox: its lookups run as the daemon's
    // user, reading /etc and asking over UDP or TCP like any client.
    engine.follow_naming(naming_rx);
    start_files.keep();
    let collected = collector::run(
        engine,
        live,
        interval_tx,
        Arc::clone(&stats),
        stop_rx,
        metrics.as_ref().map(|m| Arc::clone(&m.state)),
    );
    let aggregated = aggregate::run(
        interval_rx,
        Aggregator::new(opts.interval.as_millis() as u64, started_ms).flows(tracks_flows),
        store_tx,
        publisher,
        stats,
        observers,
    );
    // The collector detaches the programs as it returns; the aggregator hands the last batch
    // to the store worker and tells it to finish.
    let (collected, ()) = tokio::join!(collected, aggregated);
    match tokio::task::spawn_blocking(move || store_thread.join()).await {
        Ok(Ok(())) => {}
        _ => log::error!("the store thread failed; the last batches may be missing"),
    }
    drop(metrics);
    collected
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database the daemon cannot open (here a folder where the file should be) is named
    /// once, and so is SQLite's complaint: the message used to carry the path twice and
    /// "disk I/O error" three times, once per layer of the chain.
    #[test]
    fn a_history_that_cannot_open_names_its_cause_once() {
        let root = std::env::temp_dir().join(format!("kaipo-open-err-{}", std::process::id()));
        let db = root.join("kaipo.db");
        fs::create_dir_all(&db).unwrap();
        let err = history::open(&db, None, None)
            .err()
            .expect("a folder is no database");
        let text = format!("{err:#}");
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(text.matches(db.to_str().unwrap()).count(), 1, "{text}");
        let parts: Vec<&str> = text.split(": ").collect();
        let mut unique = parts.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), parts.len(), "a part repeats in {text}");
        assert_eq!(text.matches("disk I/O error").count(), 1, "{text}");
    }

    #[test]
    fn parents_are_created_world_readable() {
        let root = std::env::temp_dir().join(format!("kaipo-parents-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // SAFETY: umask only sets this process's file creation mask.
        let old = unsafe { libc::umask(0o077) };
        create_parents(&root.join("a/b/kaipo.sock")).unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        for dir in [root.clone(), root.join("a"), root.join("a/b")] {
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o755, "{}", dir.display());
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
