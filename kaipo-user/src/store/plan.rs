//! Which tier answers a range, and which stretches of which tiers hold it completely.
//!
//! The tier follows the span of the range: up to 2 hours the interval tier, up to 3 days
//! minutes, up to 90 days hours, beyond that days; if that tier's retention no longer reaches
//! back to the start, the next coarser one that does.
//!
//! Each tier holds only closed buckets (see `rollup`), so a range is stitched together from
//! tiers: a tier where its buckets are complete and fit inside the range, finer tiers for the
//! edges and for the newest, still open part.

use super::{rollup::Marks, schema::unit_secs, Tier};

/// The finest tier whose buckets suit a range of `span_s` seconds.
pub(crate) fn tier_for_span(span_s: i64) -> Tier {
    match span_s {
        s if s <= 2 * 3600 => Tier::Interval,
        s if s <= 3 * 86_400 => Tier::Minute,
        s if s <= 90 * 86_400 => Tier::Hour,
        _ => Tier::Day,
    }
}

/// The tier a range is answered in: by span, then coarser until retention reaches `from_s`.
pub(crate) fn choose_tier(marks: &Marks, from_s: i64, span_s: i64) -> Tier {
    let mut tier = tier_for_span(span_s);
    while from_s < marks.kept(tier).saturating_mul(unit_secs(tier)) {
        tier = match coarser(tier) {
            Some(t) => t,
            None => break,
        };
    }
    tier
}

fn coarser(t: Tier) -> Option<Tier> {
    match t {
        Tier::Interval => Some(Tier::Minute),
        Tier::Minute => Some(Tier::Hour),
        Tier::Hour => Some(Tier::Day),
        Tier::Day => None,
    }
}

fn finer(t: Tier) -> Option<Tier> {
    match t {
        Tier::Interval => None,
        Tier::Minute => Some(Tier::Interval),
        Tier::Hour => Some(Tier::Minute),
        Tier::Day => Some(Tier::Hour),
    }
}

/// A run of buckets `lo..hi` of one tier, in that tier's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub tier: Tier,
    pub lo: i64,
    pub hi: i64,
}

/// Covers `lo_s..hi_s` (seconds) with the coarsest complete buckets, `coarsest` at most.
pub(crate) fn plan(marks: &Marks, lo_s: i64, hi_s: i64, coarsest: Tier, out: &mut Vec<Segment>) {
    if lo_s >= hi_s {
        return;
    }
    let Some(next) = finer(coarsest) else {
        // The interval tier holds everything not yet expired.
        out.push(Segment {
            tier: Tier::Interval,
            lo: lo_s,
            hi: hi_s,
        });
        return;
    };
    let u = unit_secs(coarsest);
    let c_lo = (marks.kept(coarsest).saturating_mul(u)).max(ceil_to(lo_s, u));
    let c_hi = (marks.rolled(coarsest).saturating_mul(u)).min(hi_s.div_euclid(u) * u);
    if c_lo < c_hi {
        plan(marks, lo_s, c_lo, next, out);
        out.push(Segment {
            tier: coarsest,
            lo: c_lo / u,
            hi: c_hi / u,
        });
        plan(marks, c_hi, hi_s, next, out);
    } else {
        plan(marks, lo_s, hi_s, next, out);
    }
}

/// The smallest multiple of `unit` at or above `v`.
pub(crate) fn ceil_to(v: i64, unit: i64) -> i64 {
    v.div_euclid(unit) * unit + if v.rem_euclid(unit) == 0 { 0 } else { unit }
}
