//! `kaipo report --prometheus`: a report over every host Prometheus scrapes, with the exact
//! traffic of each series over the range, grouped by host or by one label.
//!
//! PromQL's `increase()` extrapolates to the ends of its window, so its figures are not the
//! bytes that were counted. Here each counter series' growth over `(from, to]` is its last
//! value in the range minus its last value before it (0 for a series that began inside the
//! range: kaipo's series start at 0, or resume from where they stood, which the base covers).
//! A series that was reset inside the range (a daemon restarted) is summed sample by sample
//! instead, each drop counted as a restart from 0. Four instant queries per metric, plus
//! the raw samples of the metric only when some series was reset.

use std::collections::{BTreeMap, HashMap};

use super::{
    prom::{duration_ms, Labels, Prometheus},
    FleetError,
};
use crate::model::{Dimension, Query, Report, ReportRow, SeriesPoint};

/// Buckets of the traffic-over-time chart.
const CHART_POINTS: i64 = 60;

/// The growth of every series of `metric` over `(from_ms, to_ms]`, keyed by its labels
/// without `__name__`.
pub async fn growth(
    prom: &Prometheus,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(Labels, u64)>, FleetError> {
    let range = duration_ms(to_ms - from_ms);
    let (from, to) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
    let last = format!("last_over_time({metric}[{range}])");
    let resets = format!("resets({metric}[{range}])");
    let mins = format!("min_over_time({metric}[{range}])");
    let (end, base, resets, mins) = tokio::try_join!(
        prom.instant(&last, to),
        prom.instant(&last, from),
        prom.instant(&resets, to),
        prom.instant(&mins, to),
    )?;
    let key = |mut l: Labels| {
        l.remove("__name__");
        l
    };
    let base: HashMap<Labels, f64> = base.into_iter().map(|s| (key(s.labels), s.value)).collect();
    let reset: HashMap<Labels, bool> = resets
        .into_iter()
        .map(|s| (key(s.labels), s.value > 0.0))
        .collect();
    let mins: HashMap<Labels, f64> = mins.into_iter().map(|s| (key(s.labels), s.value)).collect();
    let mut out = Vec::with_capacity(end.len());
    let mut walk = Vec::new();
    for s in end {
        let labels = key(s.labels);
        let before = base.get(&labels).copied().unwrap_or(0.0);
        // A drop at the start of the range (below the value before it) is a reset too.
        let dropped = reset.get(&labels).copied().unwrap_or(false)
            || mins.get(&labels).is_some_and(|m| *m < before);
        if dropped {
            walk.push((labels, before));
        } else {
            out.push((labels, counter(s.value - before)));
        }
    }
    if !walk.is_empty() {
        let raw = prom.raw(&format!("{metric}[{range}]"), to).await?;
        let raw: HashMap<Labels, Vec<f64>> = raw
            .into_iter()
            .map(|s| (key(s.labels), s.points.iter().map(|p| p.1).collect()))
            .collect();
        for (labels, before) in walk {
            let points = raw.get(&labels).map(Vec::as_slice).unwrap_or(&[]);
            out.push((labels, summed_with_resets(before, points)));
        }
    }
    Ok(out)
}

/// The growth of a counter from `before` through `points`, a drop being a restart from 0.
pub fn summed_with_resets(before: f64, points: &[f64]) -> u64 {
    let mut total = 0.0;
    let mut prev = before;
    for &v in points {
        total += if v >= prev { v - prev } else { v };
        prev = v;
    }
    counter(total)
}

fn counter(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// The label a dimension groups by, and the metrics (bytes, packets) it reads.
fn source(by: Dimension) -> Result<(&'static str, &'static str, &'static str), FleetError> {
    let app = ("kaipo_app_bytes_total", "kaipo_app_packets_total");
    let label =
        match by {
            Dimension::Host => "host",
            Dimension::App => "app",
            Dimension::User => "user",
            Dimension::Container => "container",
            Dimension::Service => "service",
            Dimension::Remote => "remote",
            Dimension::Interface => {
                return Ok((
                    "interface",
                    "kaipo_interface_bytes_total",
                    "kaipo_interface_packets_total",
                ))
            }
            // Every daemon exports its workloads (container name, pod, unit) whatever
            // `metrics.labels` says.
            Dimension::Pod => {
                return Ok((
                    "pod",
                    "kaipo_workload_bytes_total",
                    "kaipo_workload_packets_total",
                ))
            }
            Dimension::Unit => {
                return Ok((
                    "unit",
                    "kaipo_workload_bytes_total",
                    "kaipo_workload_packets_total",
                ))
            }
            Dimension::Network => return Err(FleetError::Dimension(
                "--by network groups by the names in a host's own config, which the metrics do \
                 not carry; run a local report instead"
                    .into(),
            )),
            Dimension::Process => {
                return Err(FleetError::Dimension(
                    "--by process is not in the metrics (one series per process would be \
                 unbounded); run a local report on that host instead"
                        .into(),
                ))
            }
        };
    Ok((label, app.0, app.1))
}

/// Adds one series' growth to its row.
fn add(row: &mut ReportRow, labels: &Labels, n: u64, packets: bool) {
    let rx = labels.get("direction").is_some_and(|d| d == "rx");
    match (packets, rx) {
        (false, true) => row.rx_bytes += n,
        (false, false) => row.tx_bytes += n,
        (true, true) => row.rx_packets += n,
        (true, false) => row.tx_packets += n,
    }
}

/// Rows of `label`'s values, largest first (names break ties), every row kept.
fn group(
    bytes: &[(Labels, u64)],
    packets: &[(Labels, u64)],
    label: &str,
) -> (Vec<ReportRow>, ReportRow) {
    let mut rows: BTreeMap<String, ReportRow> = BTreeMap::new();
    let mut total = ReportRow::default();
    for (series, is_packets) in [(bytes, false), (packets, true)] {
        for (labels, n) in series {
            let key = labels.get(label).cloned().unwrap_or_default();
            let row = rows.entry(key.clone()).or_insert_with(|| ReportRow {
                key,
                ..ReportRow::default()
            });
            add(row, labels, *n, is_packets);
            add(&mut total, labels, *n, is_packets);
        }
    }
    let mut rows: Vec<ReportRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        (b.rx_bytes + b.tx_bytes)
            .cmp(&(a.rx_bytes + a.tx_bytes))
            .then_with(|| a.key.cmp(&b.key))
    });
    (rows, total)
}

/// The report `query` asks for, from every host `prom` scrapes.
pub async fn fetch(prom: &Prometheus, query: &Query) -> Result<Report, FleetError> {
    let (label, bytes_metric, packets_metric) = source(query.by)?;
    if query.per.is_some() {
        return Err(FleetError::Dimension(
            "--per is not available with --prometheus; use --by".into(),
        ));
    }
    let (bytes, packets) = tokio::try_join!(
        growth(prom, bytes_metric, query.from_ms, query.to_ms),
        growth(prom, packets_metric, query.from_ms, query.to_ms),
    )?;
    if bytes.is_empty() {
        return Err(FleetError::NoSeries {
            url: prom.url(),
            metric: bytes_metric.to_owned(),
        });
    }
    if !bytes.iter().any(|(l, _)| l.contains_key(label)) {
        return Err(FleetError::Dimension(format!(
            "no {bytes_metric} series at {} carries a `{label}` label: add \"{label}\" to \
             metrics.labels on the daemons",
            prom.url()
        )));
    }
    let (mut rows, total) = group(&bytes, &packets, label);
    let top_apps = if bytes_metric == "kaipo_app_bytes_total" {
        let (mut apps, _) = group(&bytes, &packets, "app");
        apps.truncate(10);
        apps
    } else {
        Vec::new()
    };
    if query.top > 0 {
        rows.truncate(query.top);
    }
    let series = chart(prom, bytes_metric, query.from_ms, query.to_ms).await?;
    Ok(Report {
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        by: Some(query.by),
        tier: None,
        rows,
        total,
        series,
        top_apps,
        top_remotes: Vec::new(),
        per: None,
        periods: Vec::new(),
    })
}

/// Traffic over time for the HTML chart: `increase()` per bucket, which extrapolates within
/// each bucket (a picture of the shape, not the exact totals the rows hold).
async fn chart(
    prom: &Prometheus,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<SeriesPoint>, FleetError> {
    let step_ms = ((to_ms - from_ms) / CHART_POINTS).max(1000);
    let query = format!(
        "sum by (direction) (increase({metric}[{}]))",
        duration_ms(step_ms)
    );
    let series = prom
        .range(
            &query,
            (from_ms + step_ms) as f64 / 1000.0,
            to_ms as f64 / 1000.0,
            step_ms as f64 / 1000.0,
        )
        .await?;
    let mut points: BTreeMap<i64, SeriesPoint> = BTreeMap::new();
    for s in series {
        let rx = s.labels.get("direction").is_some_and(|d| d == "rx");
        for (t, v) in s.points {
            let ts_ms = (t * 1000.0).round() as i64 - step_ms;
            let p = points.entry(ts_ms).or_insert_with(|| SeriesPoint {
                ts_ms,
                ..SeriesPoint::default()
            });
            if rx {
                p.rx_bytes += counter(v);
            } else {
                p.tx_bytes += counter(v);
            }
        }
    }
    Ok(points.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn resets_count_from_zero() {
        // 100 before the range, up to 250, a restart, then 40 more: 150 + 40.
        assert_eq!(summed_with_resets(100.0, &[180.0, 250.0, 10.0, 40.0]), 190);
        // A restart right at the start: the first sample is the new run's.
        assert_eq!(summed_with_resets(500.0, &[30.0, 70.0]), 70);
        assert_eq!(summed_with_resets(0.0, &[]), 0);
    }

    #[test]
    fn rows_group_by_one_label_largest_first() {
        let bytes = vec![
            (
                labels(&[("host", "a"), ("app", "curl"), ("direction", "tx")]),
                500,
            ),
            (
                labels(&[("host", "a"), ("app", "curl"), ("direction", "rx")]),
                20,
            ),
            (
                labels(&[("host", "b"), ("app", "curl"), ("direction", "tx")]),
                300,
            ),
            (
                labels(&[("host", "b"), ("app", "sshd"), ("direction", "tx")]),
                900,
            ),
        ];
        let packets = vec![(
            labels(&[("host", "b"), ("app", "sshd"), ("direction", "tx")]),
            3,
        )];
        let (rows, total) = group(&bytes, &packets, "host");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].key.as_str(), rows[0].tx_bytes, rows[0].tx_packets),
            ("b", 1200, 3)
        );
        assert_eq!(
            (rows[1].key.as_str(), rows[1].tx_bytes, rows[1].rx_bytes),
            ("a", 500, 20)
        );
        assert_eq!(
            (total.tx_bytes, total.rx_bytes, total.tx_packets),
            (1700, 20, 3)
        );
        let (apps, _) = group(&bytes, &packets, "app");
        assert_eq!(apps[0].key, "sshd");
        assert_eq!(apps[1].tx_bytes, 800);
    }

    #[test]
    fn unbounded_dimensions_are_refused() {
        assert_eq!(
            source(Dimension::Process).unwrap_err().to_string(),
            "--by process is not in the metrics (one series per process would be unbounded); \
             run a local report on that host instead"
        );
        assert_eq!(source(Dimension::Host).unwrap().0, "host");
    }
}
