//! Monthly quotas: usage since the first of the month (UTC), read from the store at start and
//! whenever a reload adds or changes a rule and counted live after, and a forecast of when the
//! quota will be used up at the month's average rate so far.

use crate::report::time::{civil, parse_instant};

/// The UTC month around `ms`: its first instant and the first instant of the next.
pub fn month_bounds(ms: u64) -> (u64, u64) {
    let [y, m, ..] = civil(ms as i64);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let at =
        |y: i64, m: i64| parse_instant(&format!("{y:04}-{m:02}-01T00:00:00Z")).unwrap_or(0) as u64;
    (at(y, m), at(ny, nm))
}

/// Usage of one quota rule's target this month.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub month_start_ms: u64,
    pub bytes: u64,
}

impl Usage {
    /// Adds traffic that ended at `end_ms`; a new month starts from zero.
    pub fn add(&mut self, end_ms: u64, bytes: u64) {
        let (start, _) = month_bounds(end_ms.saturating_sub(1));
        if start != self.month_start_ms {
            *self = Usage {
                month_start_ms: start,
                bytes: 0,
            };
        }
        self.bytes += bytes;
    }

    /// When `quota` is (or will be) reached at this month's average rate so far; None when
    /// nothing was used yet.
    pub fn forecast(&self, quota: u64, now_ms: u64) -> Option<u64> {
        if self.bytes >= quota {
            return Some(now_ms);
        }
        let elapsed = now_ms.checked_sub(self.month_start_ms).filter(|e| *e > 0)?;
        (self.bytes > 0).then(|| {
            let ms = u128::from(quota) * u128::from(elapsed) / u128::from(self.bytes);
            self.month_start_ms + u64::try_from(ms).unwrap_or(u64::MAX - self.month_start_ms)
        })
    }
}

/// The question to ask history for every `scope` quota this month: from the first of the
/// month to the first of the next, so that a batch stamped with the end of a slot still to
/// come (the last one a stopped daemon wrote) counts as `kaipo report --since` counts it.
pub fn month_query(scope: super::rules::Scope, now_ms: u64) -> crate::store::Query {
    use crate::store::{Dimension, Query};
    let (start, end) = month_bounds(now_ms);
    Query {
        from_ms: start as i64,
        to_ms: end as i64,
        by: if scope == super::rules::Scope::Interface {
            Dimension::Interface
        } else {
            Dimension::App
        },
        top: 0,
        uid: None,
        per: None,
    }
}

/// `rule`'s target's bytes in an answer to [`month_query`]; 0 when it has no row.
pub fn usage_in(report: &crate::store::Report, rule: &super::Rule) -> u64 {
    report
        .rows
        .iter()
        .find(|r| Some(&r.key) == rule.target.as_ref())
        .map_or(0, |row| {
            rule.direction.bytes_of(&crate::pipeline::totals::Counts {
                rx_bytes: row.rx_bytes,
                tx_bytes: row.tx_bytes,
                rx_packets: row.rx_packets,
                tx_packets: row.tx_packets,
            })
        })
}

/// What the store says `rule`'s target used this month.
pub fn usage_from_store(
    store: &mut crate::store::Store,
    rule: &super::Rule,
    now_ms: u64,
) -> Option<Usage> {
    let q = month_query(rule.scope, now_ms);
    let report = store
        .query(&q)
        .map_err(|e| log::warn!("quota {}: reading history: {e}", rule.name))
        .ok()?;
    Some(Usage {
        month_start_ms: q.from_ms as u64,
        bytes: usage_in(&report, rule),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_2026: u64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    #[test]
    fn months_and_forecasts() {
        assert_eq!(month_bounds(NOV_2026 + 5), (NOV_2026, 1_796_083_200_000));
        assert_eq!(month_bounds(NOV_2026 - 1).1, NOV_2026);
        let mut u = Usage::default();
        u.add(NOV_2026 + 1000, 10);
        // 10 days in, 1 GB used: 3 GB is reached on day 30.
        u.add(NOV_2026 + 10 * 86_400_000, 1_000_000_000 - 10);
        assert_eq!(
            u.forecast(3_000_000_000, NOV_2026 + 10 * 86_400_000),
            Some(NOV_2026 + 30 * 86_400_000)
        );
        // December starts from zero.
        u.add(1_796_083_200_000 + 1000, 5);
        assert_eq!(
            u,
            Usage {
                month_start_ms: 1_796_083_200_000,
                bytes: 5
            }
        );
    }
}
