//! `kaipo live`: finds where the dashboard's figures come from, then runs it.
//!
//! A running daemon is asked first: it needs no privileges and has history. Without one (and
//! on Windows, where no daemon runs), a privileged caller gets a collector inside this process
//! (live views only). Anyone else is told what to do.

#[cfg(unix)]
mod daemon;
#[cfg(unix)]
mod reverse;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::{
    collect::backend::{Collector, StartOptions},
    engine::{ClosedInterval, Engine, EngineOptions, Schedule, Sink},
    model::Attribution,
    ui::{self, HeaderInfo, LiveSource, LiveUpdate, SourceKind, Theme},
};

#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The daemon's socket.
    #[cfg(unix)]
    pub socket: std::path::PathBuf,
    pub interval: Duration,
    pub include_loopback: bool,
    /// How the embedded collector counts, when no daemon runs: interfaces and backend.
    pub collect: StartOptions,
    /// The user's service and network names, for the embedded collector.
    pub names: crate::config::names::SharedNames,
    /// Name remotes no DNS answer named by reverse DNS (rate-bounded, off the drawing path).
    pub reverse_dns: bool,
}

/// Snapshots waiting for the dashboard; a dashboard that falls behind skips intervals rather
/// than letting them pile up.
const QUEUE: usize = 4;

pub async fn run(opts: &LiveOptions) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    #[cfg(unix)]
    let no_daemon = match daemon::show(opts, theme).await {
        Ok(shown) => return shown,
        Err(err @ crate::api::client::ClientError::NotRunning { .. }) => err,
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
    let engine = Engine::start(&EngineOptions {
        collect: opts.collect.clone(),
        include_loopback: opts.include_loopback,
        names: opts.names.clone(),
    })?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut sink = ChannelSink {
        tx,
        degradations: engine
            .degradations()
            .iter()
            .map(ToString::to_string)
            .collect(),
        attribution: Attribution::default(),
    };
    let mut stop_signals = crate::platform::StopSignals::new()?;
    // The collector is attached: from here on only the steady state's system calls.
    #[cfg(target_os = "linux")]
    {
        let seccomp = crate::sandbox::seccomp_layer();
        if !seccomp.in_force {
            sink.degradations
                .push(format!("seccomp not in force: {}", seccomp.detail));
        }
    }
    let schedule = Schedule {
        interval: opts.interval,
        duration: None,
    };
    let collector = engine.run(schedule, &mut sink, stop_signals.recv());
    tokio::select! {
        shown = run_ui(EmbeddedSource { rx }, opts.reverse_dns, theme) => shown,
        // Returns only on failure or a signal; dropping the dashboard restores the terminal
        // before the error is printed.
        collected = collector => collected,
    }
}

/// The dashboard over `source`, with reverse-DNS names when asked for.
async fn run_ui(source: impl LiveSource, reverse_dns: bool, theme: Theme) -> anyhow::Result<()> {
    #[cfg(unix)]
    if reverse_dns {
        let named = reverse::WithReverseNames {
            inner: source,
            names: crate::dns::reverse::ReverseNames::system(),
        };
        return ui::run(named, theme).await;
    }
    #[cfg(not(unix))]
    let _ = reverse_dns;
    ui::run(source, theme).await
}

struct EmbeddedSource {
    rx: mpsc::Receiver<LiveUpdate>,
}

impl LiveSource for EmbeddedSource {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        Ok(self.rx.recv().await)
    }
}

struct ChannelSink {
    tx: mpsc::Sender<LiveUpdate>,
    degradations: Vec<String>,
    /// Monitored interfaces' bytes since the dashboard started, attributed or not.
    attribution: Attribution,
}

impl Sink for ChannelSink {
    async fn deliver(
        &mut self,
        interval: ClosedInterval,
        _collector: &Collector,
    ) -> anyhow::Result<bool> {
        let record = interval.record;
        self.attribution.add(&record.attribution);
        let header = HeaderInfo {
            backend: record.backend.to_string(),
            degradations: self.degradations.clone(),
            lost_total: None,
            attributed_ratio: self.attribution.ratio(),
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
