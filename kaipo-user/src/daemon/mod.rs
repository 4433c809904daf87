//! `kaipo daemon`: runs the collector and the pipeline, records history in the store, and
//! serves live figures and history to unprivileged clients over a Unix socket.
//!
//! Start-up does everything that needs privileges first (the database, the socket, loading and
//! attaching the kernel programs), then drops every capability it no longer needs
//! ([`privilege`]) before it reads a single request. SIGTERM and SIGINT close a final interval,
//! write everything to the store and detach the programs before the process exits.

pub mod access;
pub mod client;
mod history;
pub mod privilege;
pub mod protocol;
pub mod server;
pub mod status;
pub mod store_worker;
pub mod view;
pub mod wire;

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

use self::{
    protocol::{DegradationInfo, StoreStatus},
    server::{Limits, Shared},
    store_worker::now_ms,
    view::DaemonInfo,
};
use crate::{
    cli::DaemonArgs,
    collect::{ebpf, BackendKind},
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
}

impl From<&DaemonArgs> for DaemonOptions {
    fn from(args: &DaemonArgs) -> Self {
        Self {
            db: args.db.clone(),
            socket: args.socket.clone(),
            ifaces: args.ifaces.clone(),
            interval: args.interval,
            live_interval: args.live_interval,
            include_loopback: args.include_loopback,
        }
    }
}

/// Creates the missing folders above `path`, each 0755 whatever the umask.
pub(crate) fn create_parents(path: &Path) -> anyhow::Result<()> {
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
    Ok(())
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
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let missing = crate::privilege::missing(crate::privilege::effective_caps());
        if !missing.is_empty() {
            return Err(ebpf::EbpfCollectError::NotPermitted {
                missing: missing.join(", "),
            }
            .into());
        }
    }
    // Nothing the daemon creates is writable by others, nor its history readable by them;
    // the socket's own mode is set explicitly.
    // SAFETY: umask only sets this process's file creation mask.
    unsafe { libc::umask(0o027) };
    let live = opts.live_interval.min(opts.interval);
    let group = access::group_id(access::GROUP).unwrap_or_else(|err| {
        log::warn!("looking up group {}: {err}", access::GROUP);
        None
    });

    let (store, note) = history::open(&opts.db, group)?;
    if let Some(note) = &note {
        eprintln!("kaipo: {note}");
    }
    let listener = server::bind(&opts.socket)?;
    let _socket = RemoveOnDrop(opts.socket.clone());
    let collector_opts = ebpf::Options {
        ifaces: opts.ifaces.clone(),
        ..Default::default()
    };
    let (collector, events) =
        ebpf::start(&collector_opts).context("starting the eBPF collector")?;
    let degradations = collector.degradations().to_vec();
    for d in &degradations {
        eprintln!("kaipo: degraded: {d}");
    }
    let kept = privilege::needed_after_start(
        collector.holds_netlink_filters(),
        &privilege::kernel_release(),
        &privilege::unprivileged_bpf_disabled(),
    );
    let held = privilege::drop_all_but(&kept).context("dropping privileges")?;

    // Handlers before anything runs: a signal from here on stops the daemon cleanly.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    let stats = Arc::new(BusStats::default());
    let (publisher, subscriptions) = bus::publisher(Arc::clone(&stats));
    let (interval_tx, interval_rx) = mpsc::channel(INTERVAL_QUEUE);
    let (store_tx, store_rx) = bus::store_queue();
    let store_status = Arc::new(Mutex::new(StoreStatus {
        path: opts.db.display().to_string(),
        backlog: store.backlog_len() as u64,
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
        backend: BackendKind::Ebpf.to_string(),
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
    };
    eprintln!(
        "kaipo: daemon running (pid {}): interfaces {}, history {} every {} ms, socket {}; \
         capabilities kept: {}",
        info.pid,
        if interfaces.is_empty() {
            "none".to_owned()
        } else {
            interfaces.join(", ")
        },
        opts.db.display(),
        info.interval_ms,
        opts.socket.display(),
        privilege::names(&kept, held)
    );
    let shared = Arc::new(Shared::new(
        info,
        subscriptions,
        store_tx.clone(),
        store_status,
        Arc::clone(&stats),
        Limits::default(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(server::serve(listener, shared, stop_rx.clone()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = sighup.recv() => log::warn!("SIGHUP: reloading is not supported yet; ignored"),
            }
        }
        let _ = stop_tx.send(true);
    });

    let collected = collector::run(
        collector,
        events,
        live,
        opts.include_loopback,
        interval_tx,
        Arc::clone(&stats),
        stop_rx,
    );
    let aggregated = aggregate::run(
        interval_rx,
        Aggregator::new(opts.interval.as_millis() as u64, started_ms),
        store_tx,
        publisher,
        stats,
    );
    // The collector detaches the programs as it returns; the aggregator hands the last batch
    // to the store worker and tells it to finish.
    let (collected, ()) = tokio::join!(collected, aggregated);
    match tokio::task::spawn_blocking(move || store_thread.join()).await {
        Ok(Ok(())) => {}
        _ => log::error!("the store thread failed; the last batches may be missing"),
    }
    collected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_defaults() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["kaipo", "daemon"]).unwrap();
        let crate::cli::Command::Daemon(args) = cli.command else {
            panic!("not daemon")
        };
        let opts = DaemonOptions::from(&args);
        assert_eq!(opts.db, Path::new(protocol::DEFAULT_DB));
        assert_eq!(opts.socket, Path::new(protocol::DEFAULT_SOCKET));
        assert_eq!(opts.interval, crate::store::DEFAULT_WRITE_INTERVAL);
        assert_eq!(opts.live_interval, Duration::from_secs(1));
        assert!(opts.ifaces.is_empty() && !opts.include_loopback);
        let cli = crate::cli::Cli::try_parse_from([
            "kaipo",
            "status",
            "--json",
            "--socket",
            "/tmp/k.sock",
        ])
        .unwrap();
        let crate::cli::Command::Status(args) = cli.command else {
            panic!("not status")
        };
        assert!(args.json);
        assert_eq!(args.socket, Path::new("/tmp/k.sock"));
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
