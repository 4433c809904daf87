//! What the History view knows: one answer per range, refreshed while the view is open.

use std::time::{Duration, Instant};

use super::source::HistoryRange;
use crate::store::Report;

/// How old an answer may get before the open History view asks again.
pub const HISTORY_REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, PartialEq)]
pub enum HistoryData {
    /// Never asked.
    #[default]
    Missing,
    /// Asked, no answer yet.
    Loading,
    /// The source keeps no history (an embedded collector).
    Unavailable,
    Failed(String),
    Ready(Report),
}

#[derive(Clone, Debug, Default)]
struct Slot {
    data: HistoryData,
    answered: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
pub struct HistoryPanel {
    slots: [Slot; 2],
}

fn slot_index(range: HistoryRange) -> usize {
    match range {
        HistoryRange::LastHour => 0,
        HistoryRange::LastDay => 1,
    }
}

impl HistoryPanel {
    pub fn data(&self, range: HistoryRange) -> &HistoryData {
        &self.slots[slot_index(range)].data
    }

    /// The first range without a fresh answer. A request dropped before its answer (a key
    /// arrived) left no answer, so it is asked again.
    pub fn wanted(&self, now: Instant) -> Option<HistoryRange> {
        HistoryRange::ALL.into_iter().find(|&range| {
            self.slots[slot_index(range)]
                .answered
                .is_none_or(|at| now.duration_since(at) >= HISTORY_REFRESH)
        })
    }

    /// Marks `range` as asked; an older answer stays on screen until the new one arrives.
    pub fn begin(&mut self, range: HistoryRange) {
        let slot = &mut self.slots[slot_index(range)];
        if slot.data == HistoryData::Missing {
            slot.data = HistoryData::Loading;
        }
    }

    pub fn answer(
        &mut self,
        range: HistoryRange,
        answer: anyhow::Result<Option<Report>>,
        now: Instant,
    ) {
        let slot = &mut self.slots[slot_index(range)];
        slot.data = match answer {
            Ok(Some(report)) => HistoryData::Ready(report),
            Ok(None) => HistoryData::Unavailable,
            Err(e) => HistoryData::Failed(format!("{e:#}")),
        };
        slot.answered = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_each_range_once_then_again_after_a_minute() {
        let t0 = Instant::now();
        let mut panel = HistoryPanel::default();
        assert_eq!(panel.wanted(t0), Some(HistoryRange::LastHour));
        panel.begin(HistoryRange::LastHour);
        assert_eq!(*panel.data(HistoryRange::LastHour), HistoryData::Loading);
        // Dropped before answering: asked again.
        assert_eq!(panel.wanted(t0), Some(HistoryRange::LastHour));
        panel.answer(HistoryRange::LastHour, Ok(Some(Report::default())), t0);
        assert_eq!(panel.wanted(t0), Some(HistoryRange::LastDay));
        panel.answer(
            HistoryRange::LastDay,
            Err(anyhow::anyhow!("daemon gone")),
            t0,
        );
        assert_eq!(
            *panel.data(HistoryRange::LastDay),
            HistoryData::Failed("daemon gone".into())
        );
        assert_eq!(panel.wanted(t0 + Duration::from_secs(59)), None);
        assert_eq!(
            panel.wanted(t0 + HISTORY_REFRESH),
            Some(HistoryRange::LastHour)
        );
        panel.begin(HistoryRange::LastHour);
        assert_eq!(
            *panel.data(HistoryRange::LastHour),
            HistoryData::Ready(Report::default())
        );
    }
}
