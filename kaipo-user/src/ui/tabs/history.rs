//! The History tab: traffic over the last hour and the last day from the daemon's store,
//! asked for while the tab is open and refreshed every minute.

use std::time::{Duration, Instant};

use ratatui::{
    layout::{Alignment, Constraint, Layout, Rect},
    symbols::Marker,
    text::{Line, Span},
    widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap},
    Frame,
};

use crate::{
    store::{Report, SeriesPoint, Tier},
    ui::{source::HistoryRange, state::LiveState},
};

/// How old an answer may get before the open History view asks again.
pub const HISTORY_REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per history range on screen, replaced a few times a minute"
)]
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

pub fn draw(frame: &mut Frame, area: Rect, state: &LiveState) {
    let hour = state.history.data(HistoryRange::LastHour);
    let day = state.history.data(HistoryRange::LastDay);
    let unavailable = |d: &HistoryData| *d == HistoryData::Unavailable;
    if unavailable(hour) && unavailable(day) {
        return message(
            frame,
            area,
            state,
            "History needs the kaipo daemon, which keeps traffic in its store. This session \
             runs the collector itself, so only the live views are available.",
        );
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    draw_range(frame, top, state, HistoryRange::LastHour, hour);
    draw_range(frame, bottom, state, HistoryRange::LastDay, day);
}

fn message(frame: &mut Frame, area: Rect, state: &LiveState, text: &str) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(" History ", state.theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [_, middle, _] = Layout::vertical([
        Constraint::Percentage(30),
        Constraint::Min(3),
        Constraint::Percentage(30),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .style(state.theme.muted()),
        middle,
    );
}

fn range_name(range: HistoryRange) -> (&'static str, [&'static str; 3]) {
    match range {
        HistoryRange::LastHour => ("Last hour", ["-60 min", "-30 min", "now"]),
        HistoryRange::LastDay => ("Last day", ["-24 h", "-12 h", "now"]),
    }
}

fn draw_range(
    frame: &mut Frame,
    area: Rect,
    state: &LiveState,
    range: HistoryRange,
    data: &HistoryData,
) {
    let theme = state.theme;
    let (name, x_labels) = range_name(range);
    let report = match data {
        HistoryData::Ready(report) => report,
        other => {
            let text = match other {
                HistoryData::Failed(e) => format!("The history query failed: {e}"),
                HistoryData::Unavailable => "No history for this range.".into(),
                _ => "Loading…".into(),
            };
            let block = Block::new()
                .borders(Borders::TOP)
                .title(Span::styled(format!(" {name} "), theme.title()));
            let inner = block.inner(area);
            frame.render_widget(block, area);
            frame.render_widget(Paragraph::new(text).style(theme.muted()), inner);
            return;
        }
    };
    let bucket_ms = bucket_ms(report);
    let unit = state.unit();
    let point = |p: &SeriesPoint, bytes: u64| {
        let x = (p.ts_ms - report.from_ms) as f64 / (report.to_ms - report.from_ms).max(1) as f64;
        (x, bytes as f64 * 1000.0 / bucket_ms as f64)
    };
    let rx: Vec<(f64, f64)> = report.series.iter().map(|p| point(p, p.rx_bytes)).collect();
    let tx: Vec<(f64, f64)> = report.series.iter().map(|p| point(p, p.tx_bytes)).collect();
    let peak = rx.iter().chain(&tx).map(|&(_, y)| y).fold(0.0, f64::max);
    let top = if peak > 0.0 { peak } else { 1.0 };
    // The legend lives in the title: drawn inside the chart it would hide the newest
    // points, at the right end.
    let (rx_mark, tx_mark) = if theme.color {
        ("RX", "TX")
    } else {
        ("RX (line)", "TX (dots)")
    };
    let title = Line::from(vec![
        Span::styled(format!(" {name} "), theme.title()),
        Span::styled(rx_mark, theme.rx()),
        Span::raw(format!(
            " {} · ",
            crate::format::bytes(report.total.rx_bytes)
        )),
        Span::styled(tx_mark, theme.tx()),
        Span::raw(format!(
            " {} · peak {} ",
            crate::format::bytes(report.total.tx_bytes),
            unit.rate(peak),
        )),
    ]);
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.rx())
            .data(&rx),
        // Without colour the lines would be indistinguishable: sent traffic becomes dots.
        Dataset::default()
            .marker(if theme.color {
                Marker::Braille
            } else {
                Marker::Dot
            })
            .graph_type(if theme.color {
                GraphType::Line
            } else {
                GraphType::Scatter
            })
            .style(theme.tx())
            .data(&tx),
    ];
    let chart = Chart::new(datasets)
        .block(Block::new().borders(Borders::TOP).title(title))
        .x_axis(Axis::default().bounds([0.0, 1.0]).labels(x_labels))
        .y_axis(Axis::default().bounds([0.0, top]).labels([
            "0".to_string(),
            unit.rate(top / 2.0),
            unit.rate(top),
        ]))
        .legend_position(None);
    frame.render_widget(chart, area);
}

/// The length of one bucket of the series: the tier says it, except for the finest tier,
/// whose length is the daemon's interval, seen as the smallest gap between points.
fn bucket_ms(report: &Report) -> i64 {
    let gap = report
        .series
        .windows(2)
        .map(|w| w[1].ts_ms - w[0].ts_ms)
        .filter(|&d| d > 0)
        .min();
    let ms = match (report.tier, gap) {
        (Some(Tier::Minute), _) => 60_000,
        (Some(Tier::Hour), _) => 3_600_000,
        (Some(Tier::Day), _) => 86_400_000,
        (_, Some(gap)) => gap,
        _ => report.to_ms - report.from_ms,
    };
    ms.max(1)
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
