//! Pause (`p`): the screen holds still while counting goes on.
//!
//! Pausing copies the state into its `frozen` field. The copy is what is drawn and what
//! keys move through (sort, filter, selection, details), while snapshots keep arriving in
//! the live state, so totals since start include the paused time. Resuming brings the
//! copy's view settings (tab, sort, filter, selection, units) back to the live state.

use std::time::Instant;

use super::{source::HistoryRange, state::LiveState, tabs::View};
use crate::store::Report;

impl LiveState {
    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    /// What the screen shows: the picture taken at pause, else the live state.
    pub fn shown(&self) -> &LiveState {
        self.frozen.as_deref().unwrap_or(self)
    }

    /// Where keys go: the picture taken at pause, else the live state.
    pub(crate) fn shown_mut(&mut self) -> &mut LiveState {
        match self.frozen {
            Some(ref mut frozen) => frozen,
            None => self,
        }
    }

    pub fn toggle_pause(&mut self) {
        match self.frozen.take() {
            None => {
                let mut picture = self.clone();
                picture.frozen = None;
                self.frozen = Some(Box::new(picture));
            }
            Some(picture) => self.resume_from(*picture),
        }
    }

    /// Takes over what the user changed while paused; the rows are the live ones.
    fn resume_from(&mut self, picture: LiveState) {
        self.view = picture.view;
        self.unit = picture.unit;
        self.help = picture.help;
        self.editing_filter = picture.editing_filter;
        self.detail = picture.detail;
        for view in View::ALL {
            if let (Some(live), Some(shown)) = (self.table_mut(view), picture.table(view)) {
                live.sort = shown.sort;
                live.cursor = shown.cursor;
                live.offset = shown.offset;
                live.selected.clone_from(&shown.selected);
            }
        }
        // Sets the filter and rebuilds every table, which finds each selection again.
        self.set_filter(picture.filter());
        if self
            .detail
            .is_some_and(|pid| self.processes.get(&pid).is_none())
        {
            self.detail = None;
        }
    }

    /// The history range to ask the source for: only while the History tab is on screen.
    pub fn history_wanted(&self, now: Instant) -> Option<HistoryRange> {
        (self.shown().view == View::History)
            .then(|| self.history.wanted(now))
            .flatten()
    }

    /// Marks `range` as asked, on screen too.
    pub fn history_begin(&mut self, range: HistoryRange) {
        self.history.begin(range);
        if let Some(frozen) = self.frozen.as_mut() {
            frozen.history.begin(range);
        }
    }

    /// Takes the source's answer about `range`. History is not live data, so a paused
    /// screen shows it as soon as it arrives.
    pub fn history_answer(
        &mut self,
        range: HistoryRange,
        answer: anyhow::Result<Option<Report>>,
        now: Instant,
    ) {
        if let Some(frozen) = self.frozen.as_mut() {
            let copy = match &answer {
                Ok(report) => Ok(report.clone()),
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            frozen.history.answer(range, copy, now);
        }
        self.history.answer(range, answer, now);
    }
}
