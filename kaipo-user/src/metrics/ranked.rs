//! A bounded set of series: at most `top` keys have a series of their own, the rest share one
//! "other" series. Each byte is counted in exactly one series at the moment it is seen, so
//! every series only grows and their sum is the whole traffic. Which keys are shown follows
//! their total since start, with hysteresis ([`SWAP_MARGIN`]). Used for apps and for
//! workloads (container, pod, unit), each with its own bound.

use std::{collections::HashMap, hash::Hash};

use crate::pipeline::totals::Counts;

/// A newcomer must exceed the weakest shown key's total by this fraction to replace it.
pub const SWAP_MARGIN: f64 = 0.10;
/// Keys tracked at most; past this, the smallest never-shown keys are forgotten (their traffic
/// is already in "other").
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Default)]
struct Entry {
    /// Everything since start: what ranking follows.
    total: u64,
    /// What its own series shows: traffic seen while it was shown.
    own: Counts,
    shown: bool,
}

#[derive(Debug)]
pub struct Ranked<K> {
    entries: HashMap<K, Entry>,
    other: Counts,
}

impl<K> Default for Ranked<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            other: Counts::default(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> Ranked<K> {
    /// One interval's traffic per key: totals first and the shown set after, so that a key
    /// entering the top in this interval has this interval's traffic in its own series.
    pub fn observe<'a>(&mut self, top: usize, deltas: impl IntoIterator<Item = (&'a K, Counts)>)
    where
        K: 'a,
    {
        let deltas: Vec<(&K, Counts)> = deltas.into_iter().collect();
        for (key, c) in &deltas {
            match self.entries.get_mut(*key) {
                Some(e) => e.total += c.bytes(),
                None => {
                    self.entries.insert(
                        (*key).clone(),
                        Entry {
                            total: c.bytes(),
                            ..Entry::default()
                        },
                    );
                }
            }
        }
        self.rebalance(top);
        for (key, c) in &deltas {
            match self.entries.get_mut(*key) {
                Some(e) if e.shown => e.own.add(c),
                _ => self.other.add(c),
            }
        }
        self.bound();
    }

    /// Brings the shown set to the `top` largest, within the hysteresis margin.
    fn rebalance(&mut self, top: usize) {
        let mut shown: Vec<(u64, &K)> = Vec::new();
        let mut hidden: Vec<(u64, &K)> = Vec::new();
        for (key, e) in &self.entries {
            if e.shown {
                shown.push((e.total, key));
            } else if e.total > 0 {
                hidden.push((e.total, key));
            }
        }
        // Weakest shown first, strongest hidden first; keys break ties so that the choice
        // does not depend on hash order.
        shown.sort_unstable();
        hidden.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let excess = shown.len().saturating_sub(top);
        let mut demote: Vec<K> = shown[..excess].iter().map(|(_, k)| (*k).clone()).collect();
        let shown = &shown[excess..];
        let room = top - shown.len();
        let mut promote: Vec<K> = hidden
            .iter()
            .take(room)
            .map(|(_, k)| (*k).clone())
            .collect();
        for (&(weak, weak_key), &(strong, strong_key)) in shown.iter().zip(hidden.iter().skip(room))
        {
            if (strong as f64) <= weak as f64 * (1.0 + SWAP_MARGIN) {
                break;
            }
            demote.push(weak_key.clone());
            promote.push(strong_key.clone());
        }
        for (keys, shown) in [(demote, false), (promote, true)] {
            for key in keys {
                if let Some(e) = self.entries.get_mut(&key) {
                    e.shown = shown;
                }
            }
        }
    }

    fn bound(&mut self) {
        if self.entries.len() <= MAX_TRACKED {
            return;
        }
        // Never-shown keys first: forgetting them changes no series. A key that had a series
        // and comes back after being forgotten starts again from zero, which Prometheus reads
        // as a counter reset; only 10k keys of churn reach this.
        let mut victims: Vec<(bool, u64, K)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.shown)
            .map(|(k, e)| (!e.own.is_zero(), e.total, k.clone()))
            .collect();
        victims.sort_unstable();
        let excess = self.entries.len() - (MAX_TRACKED - MAX_TRACKED / 10);
        for (_, _, key) in victims.into_iter().take(excess) {
            self.entries.remove(&key);
        }
    }

    /// Keys with their own series now, largest first.
    pub fn shown(&self) -> Vec<&K> {
        let mut v: Vec<(&K, &Entry)> = self.entries.iter().filter(|(_, e)| e.shown).collect();
        v.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        v.into_iter().map(|(k, _)| k).collect()
    }

    /// The shown keys' series in key order; the "other" series comes apart.
    pub fn series(&self) -> Vec<(&K, &Counts)> {
        let mut v: Vec<(&K, &Counts)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.shown)
            .map(|(k, e)| (k, &e.own))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn other(&self) -> &Counts {
        &self.other
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
