//! `kaipo live`: finds where the dashboard's figures come from, then runs it.
//!
//! A running daemon is asked first: it needs no privileges and has history. Without one (and
//! on Windows, where no daemon runs), a privileged caller gets a collector inside this process
//! (live views only). Anyone else is told what to do.

#[cfg(unix)]
mod daemon;

use std::{cell::RefCell, rc::Rc, time::Duration};

use tokio::sync::mpsc;

use crate::{
    model::IntervalRecord,
    ui::{self, HeaderInfo, LiveSource, LiveUpdate, SourceKind, Theme},
    watch::{self, RecordSink, WatchOptions},
};

#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The daemon's socket.
    #[cfg(unix)]
    pub socket: std::path::PathBuf,
    pub ifaces: Vec<String>,
    pub interval: Duration,
    pub include_loopback: bool,
    pub collect: crate::cli::BackendArgs,
}

/// Snapshots waiting for the dashboard; a dashboard that falls behind skips intervals rather
/// than letting them pile up.
const QUEUE: usize = 4;

pub async fn run(opts: &LiveOptions) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    #[cfg(unix)]
    let no_daemon = match daemon::show(opts, theme).await {
        Ok(shown) => return shown,
        Err(err @ crate::daemon::client::ClientError::NotRunning { .. }) => err,
        Err(err) => return Err(err.into()),
    };
    // Only Linux can tell up front that the collector would lack privileges; on macOS
    // libpcap's own error says so, with the fix in that system's terms.
    #[cfg(target_os = "macos")]
    let _ = no_daemon;
    #[cfg(target_os = "linux")]
    {
        use crate::platform::Platform as _;
        let root = crate::platform::Host::is_superuser();
        let pcap_only = opts.collect.backend == crate::collect::backend::BackendChoice::Pcap;
        let missing = crate::privilege::missing(crate::privilege::effective_caps());
        if !root && !pcap_only && !missing.is_empty() {
            anyhow::bail!(
                "{no_daemon}; or run `sudo kaipo live`, which counts by itself without a daemon"
            );
        }
    }
    embedded(opts, theme).await
}

async fn embedded(opts: &LiveOptions, theme: Theme) -> anyhow::Result<()> {
    let watch_opts = WatchOptions {
        interval: opts.interval,
        duration: None,
        ifaces: opts.ifaces.clone(),
        json: true,
        include_loopback: opts.include_loopback,
        top: 0,
        backend: opts.collect.backend,
        pcap_filter: opts.collect.filter.clone(),
        pcap_immediate: opts.collect.pcap_immediate,
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
