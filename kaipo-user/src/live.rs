//! `kaipo live`: finds where the dashboard's figures come from, then runs it.
//!
//! A running daemon is asked first: it needs no privileges and has history. Without one, a
//! privileged caller gets a collector inside this process (live views only). Anyone else is told
//! what to do.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::{
    daemon::client::{self, ClientError},
    model::IntervalRecord,
    privilege,
    store::Report,
    ui::{self, HeaderInfo, HistoryRange, LiveSource, LiveUpdate, SourceKind, Theme},
    watch::{self, RecordSink, WatchOptions},
};

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub socket: PathBuf,
    pub ifaces: Vec<String>,
    pub interval: Duration,
    pub include_loopback: bool,
    pub collect: crate::cli::BackendArgs,
}

/// Snapshots between two looks at the daemon's firing alerts.
const ALERT_REFRESH: u64 = 3;

/// Summaries of the alerts still firing.
fn firing(alerts: &[crate::alert::Notification]) -> Vec<String> {
    alerts
        .iter()
        .filter(|a| a.cleared_ms.is_none())
        .map(|a| a.summary.clone())
        .collect()
}

/// Snapshots waiting for the dashboard; a dashboard that falls behind skips intervals rather
/// than letting them pile up.
const QUEUE: usize = 4;

pub async fn run(opts: &LiveOptions) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    match client::subscribe(&opts.socket).await {
        Ok(subscription) => {
            let degradations = match client::status(&opts.socket).await {
                Ok(status) => status
                    .degradations
                    .iter()
                    .map(|d| format!("{}: {}", d.what, d.why))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            // The subscription is read here, not inside `next()`, so the dashboard may drop a
            // pending `next()` (it does when a key arrives) without losing half a line.
            let socket = opts.socket.clone();
            let reader = async move {
                let mut subscription = subscription;
                let mut seen = 0u64;
                let mut alerts = Vec::new();
                while let Some(snapshot) = subscription.next().await? {
                    let share = snapshot.totals.attributed_share();
                    let record: IntervalRecord =
                        serde_json::from_value(serde_json::Value::Object(snapshot.interval))
                            .context("reading a snapshot from the daemon")?;
                    // Snapshots carry no alerts; the status answer does. Asked every few
                    // snapshots, it keeps the header's alerts fresh at little cost.
                    if seen.is_multiple_of(ALERT_REFRESH) {
                        if let Ok(status) = client::status(&socket).await {
                            alerts = firing(&status.alerts);
                        }
                    }
                    seen += 1;
                    if tx.send((record, share, alerts.clone())).await.is_err() {
                        break;
                    }
                }
                anyhow::Ok(())
            };
            let source = DaemonSource {
                rx,
                socket: opts.socket.clone(),
                degradations,
            };
            tokio::select! {
                shown = ui::run(source, theme) => shown,
                read = reader => {
                    read?;
                    anyhow::bail!("the kaipo daemon stopped")
                }
            }
        }
        Err(err @ ClientError::NotRunning { .. }) => embedded(opts, theme, err).await,
        Err(err) => Err(err.into()),
    }
}

async fn embedded(opts: &LiveOptions, theme: Theme, no_daemon: ClientError) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let pcap_only = opts.collect.backend == crate::collect::backend::BackendChoice::Pcap;
    if !root && !pcap_only && !privilege::missing(privilege::effective_caps()).is_empty() {
        anyhow::bail!(
            "{no_daemon}; or run `sudo kaipo live`, which counts by itself without a daemon"
        );
    }
    let watch_opts = WatchOptions {
        interval: opts.interval,
        duration: None,
        ifaces: opts.ifaces.clone(),
        json: true,
        include_loopback: opts.include_loopback,
        top: 0,
        backend: opts.collect.backend,
        pcap_filter: opts.collect.filter.clone(),
        ingress_hook: opts.collect.ingress_hook,
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let degradations = Rc::new(RefCell::new(Vec::new()));
    let mut sink = ChannelSink {
        tx,
        degradations: degradations.clone(),
        totals: Shares::default(),
    };
    let noted = degradations.clone();
    let collector = watch::drive(&watch_opts, &mut sink, move |found| {
        *noted.borrow_mut() = found.iter().map(ToString::to_string).collect();
    });
    tokio::select! {
        shown = ui::run(EmbeddedSource { rx }, theme) => shown,
        // Returns only on failure or a signal; dropping the dashboard restores the terminal
        // before the error is printed.
        collected = collector => collected,
    }
}

struct DaemonSource {
    rx: mpsc::Receiver<(IntervalRecord, Option<f64>, Vec<String>)>,
    socket: PathBuf,
    degradations: Vec<String>,
}

impl LiveSource for DaemonSource {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        Ok(self
            .rx
            .recv()
            .await
            .map(|(record, attributed_share, alerts)| {
                let header = HeaderInfo {
                    backend: record.backend.to_string(),
                    degradations: self.degradations.clone(),
                    lost_total: None,
                    attributed_share,
                    source: SourceKind::Daemon,
                    alerts,
                };
                LiveUpdate::new(record, header)
            }))
    }

    async fn history(&mut self, range: HistoryRange) -> anyhow::Result<Option<Report>> {
        Ok(Some(query_history(&self.socket, range).await?))
    }
}

async fn query_history(socket: &Path, range: HistoryRange) -> Result<Report, ClientError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    client::query(socket, &range.query(now_ms)).await
}

struct EmbeddedSource {
    rx: mpsc::Receiver<LiveUpdate>,
}

impl LiveSource for EmbeddedSource {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        Ok(self.rx.recv().await)
    }
}

/// Running sums for the attributed share: IP-layer process bytes over link-layer interface
/// bytes since the dashboard started.
#[derive(Default)]
struct Shares {
    attributed: u64,
    on_interfaces: u64,
}

struct ChannelSink {
    tx: mpsc::Sender<LiveUpdate>,
    degradations: Rc<RefCell<Vec<String>>>,
    totals: Shares,
}

impl RecordSink for ChannelSink {
    fn deliver(&mut self, record: IntervalRecord) -> anyhow::Result<bool> {
        self.totals.attributed += record
            .processes
            .iter()
            .map(|p| p.rx_bytes + p.tx_bytes)
            .sum::<u64>();
        self.totals.on_interfaces += record
            .interfaces
            .iter()
            .map(|i| i.rx_bytes + i.tx_bytes)
            .sum::<u64>();
        let share = (self.totals.on_interfaces > 0)
            .then(|| self.totals.attributed as f64 / self.totals.on_interfaces as f64);
        let header = HeaderInfo {
            backend: record.backend.to_string(),
            degradations: self.degradations.borrow().clone(),
            lost_total: None,
            attributed_share: share,
            source: SourceKind::Embedded,
            // Alert rules run in the daemon only.
            alerts: Vec::new(),
        };
        match self.tx.try_send(LiveUpdate::new(record, header)) {
            // A busy dashboard skips this interval; its rates cover the ones it shows.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(true),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(false),
        }
    }
}
