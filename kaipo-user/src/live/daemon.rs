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
    model::IntervalRecord,
    store::Report,
    ui::{self, HeaderInfo, HistoryRange, LiveSource, LiveUpdate, SourceKind, Theme},
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
            let share = snapshot.totals.attributed_ratio();
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
