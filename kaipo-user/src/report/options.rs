//! What `kaipo report` is asked for, as plain values, and the [`Query`] that asks it.

use std::{path::PathBuf, time::Duration};

use super::{dimension_title, time, ExportFormat};
use crate::model::{Dimension, Period, Periods, Query};

/// What `kaipo report` is asked for, as plain values (the command line converts into this
/// once, in `cli.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// History up to now, when no `from_ms` is given.
    pub since: Duration,
    pub from_ms: Option<i64>,
    /// Exclusive end; `None` is now.
    pub to_ms: Option<i64>,
    /// What rows are grouped by; `None` is by app, or with `per` no split.
    pub by: Option<Dimension>,
    /// Totals per calendar period instead of per key.
    pub per: Option<Period>,
    /// Rows, largest first (per period with `per` and `by` app); 0 for all.
    pub top: usize,
    /// `None`: from the extension of `output`, else a table.
    pub format: Option<ExportFormat>,
    pub output: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    /// The key of an encrypted database (`[storage] encryption_key_file`).
    pub key_file: Option<PathBuf>,
    /// The reader's names, for reports by network read from the file directly.
    pub names: crate::config::names::SharedNames,
    /// Report over the fleet from this Prometheus server (`http://HOST:PORT`) instead of
    /// this host's history.
    pub prometheus: Option<String>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            since: Duration::from_secs(86_400),
            from_ms: None,
            to_ms: None,
            by: None,
            per: None,
            top: 20,
            format: None,
            output: None,
            db: None,
            socket: None,
            key_file: None,
            names: Default::default(),
            prometheus: None,
        }
    }
}

impl ReportOptions {
    /// The question these options ask, given the time now.
    pub fn query(&self, now_ms: i64) -> anyhow::Result<Query> {
        let (from_ms, to_ms) = time::resolve_range(self.since, self.from_ms, self.to_ms, now_ms)
            .map_err(anyhow::Error::msg)?;
        if self.by == Some(Dimension::Host) && self.prometheus.is_none() {
            anyhow::bail!(
                "--by host needs --prometheus URL: this host's history is one host's; a fleet \
                 report reads every host's metrics from Prometheus"
            );
        }
        let per = match (self.per, self.by) {
            (None, _) => None,
            (Some(period), None) => Some(Periods {
                period,
                by_app: false,
            }),
            (Some(period), Some(Dimension::App)) => Some(Periods {
                period,
                by_app: true,
            }),
            (Some(_), Some(other)) => anyhow::bail!(
                "--per splits periods by app only, not by {}; use --by app or leave --by out",
                dimension_title(Some(other))
            ),
        };
        // No uid filter: reading the database directly is governed by its file permissions,
        // and the daemon applies the caller's uid itself from the socket's peer credentials.
        Ok(Query {
            from_ms,
            to_ms,
            by: self.by.unwrap_or(Dimension::App),
            top: self.top,
            uid: None,
            per,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_make_the_query() {
        const NOW: i64 = 1_795_600_800_500;
        let q = ReportOptions::default().query(NOW).unwrap();
        assert_eq!(
            q,
            Query {
                from_ms: 1_795_600_801_000 - 86_400_000,
                to_ms: 1_795_600_801_000,
                by: Dimension::App,
                top: 20,
                uid: None,
                per: None,
            }
        );
        let per = |by| {
            ReportOptions {
                per: Some(Period::Day),
                by,
                ..Default::default()
            }
            .query(NOW)
        };
        let periods = |by_app| {
            Some(Periods {
                period: Period::Day,
                by_app,
            })
        };
        assert_eq!(per(None).unwrap().per, periods(false));
        assert_eq!(per(Some(Dimension::App)).unwrap().per, periods(true));
        assert_eq!(
            per(Some(Dimension::Remote)).unwrap_err().to_string(),
            "--per splits periods by app only, not by remote; use --by app or leave --by out"
        );
    }
}
