//! `kaipo live` fed by a running daemon (Linux and macOS, where the daemon runs): live
//! snapshots over its socket, and history from its store.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{LiveOptions, QUEUE};
use crate::{
    api::client::{self, ClientError},
    model::{Attribution, IntervalRecord},
    store::Report,
    ui::{HeaderInfo, HistoryRange, LiveSource, LiveUpdate, SourceKind, Theme},
};

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

/// Shows the daemon's figures until the dashboard closes. `Err` when no daemon could be
/// subscribed to, which leaves the caller to count by itself.
pub async fn show(opts: &LiveOptions, theme: Theme) -> Result<anyhow::Result<()>, ClientError> {
    let subscription = client::subscribe(&opts.socket).await?;
    Ok(follow(opts, theme, subscription).await)
}

async fn follow(
    opts: &LiveOptions,
    theme: Theme,
    subscription: client::Subscription,
) -> anyhow::Result<()> {
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
            if tx.send((record, alerts.clone())).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    };
    let source = DaemonSource::new(rx, opts.socket.clone(), degradations);
    tokio::select! {
        shown = super::run_ui(source, opts.reverse_dns, theme) => shown,
        read = reader => {
            read?;
            anyhow::bail!("the kaipo daemon stopped")
        }
    }
}

struct DaemonSource {
    rx: mpsc::Receiver<(IntervalRecord, Vec<String>)>,
    socket: PathBuf,
    degradations: Vec<String>,
    /// The monitored interfaces' bytes in the snapshots seen since the dashboard started,
    /// attributed or not: the header's share is theirs, as with the embedded collector.
    /// A caller who may not see interface traffic gets empty attributions, so no share.
    attribution: Attribution,
}

impl DaemonSource {
    fn new(
        rx: mpsc::Receiver<(IntervalRecord, Vec<String>)>,
        socket: PathBuf,
        degradations: Vec<String>,
    ) -> Self {
        Self {
            rx,
            socket,
            degradations,
            attribution: Attribution::default(),
        }
    }
}

impl LiveSource for DaemonSource {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        let Some((record, alerts)) = self.rx.recv().await else {
            return Ok(None);
        };
        self.attribution.add(&record.attribution);
        let header = HeaderInfo {
            backend: record.backend.to_string(),
            degradations: self.degradations.clone(),
            lost_total: None,
            attributed_ratio: self.attribution.ratio(),
            source: SourceKind::Daemon,
            alerts,
        };
        Ok(Some(LiveUpdate::new(record, header)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        collect::BackendKind,
        model::{Bytes, Lost, UnattributedCauses},
    };

    fn record(interface_bytes: u64, attributed_bytes: u64) -> IntervalRecord {
        let attribution = Attribution {
            interface_bytes,
            attributed_bytes,
            unattributed: UnattributedCauses {
                kernel: interface_bytes - attributed_bytes,
                ..UnattributedCauses::default()
            },
        };
        IntervalRecord {
            ts_ms: 1_795_684_400_000,
            interval_ms: 1000,
            backend: BackendKind::Ebpf,
            interfaces: Vec::new(),
            processes: Vec::new(),
            connections: Vec::new(),
            unattributed: Bytes::default(),
            attributed_ratio: attribution.ratio(),
            attribution,
            lost: Lost::default(),
        }
    }

    /// The share covers every snapshot since the dashboard started, not the newest alone:
    /// 900 of 1000 bytes, then 100 of 1000, is 50 %.
    #[tokio::test]
    async fn the_attributed_ratio_adds_up_the_snapshots_seen() -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel(4);
        let mut source = DaemonSource::new(rx, PathBuf::from("/nonexistent"), Vec::new());
        tx.send((record(1000, 900), Vec::new())).await?;
        tx.send((record(1000, 100), vec!["app x over 1 B/s".into()]))
            .await?;
        tx.send((record(0, 0), Vec::new())).await?;
        drop(tx);
        let mut ratios = Vec::new();
        while let Some(update) = source.next().await? {
            assert_eq!(update.header.source, SourceKind::Daemon);
            ratios.push(update.header.attributed_ratio);
        }
        assert_eq!(ratios, [Some(0.9), Some(0.5), Some(0.5)]);
        Ok(())
    }
}
