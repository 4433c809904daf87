//! The `?` overlay: every key, from the same table the key handler documents.

use ratatui::{
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, Clear, Padding, Paragraph, Wrap},
    Frame,
};

use super::centered;
use crate::ui::{
    input::KEYS,
    rates::SMOOTHING_INTERVALS,
    state::{LiveState, EXITED_LINGER},
    tabs::processes::EXITED_MARK,
};

pub fn draw(frame: &mut Frame, area: Rect, state: &LiveState) {
    let theme = state.theme;
    let key_width = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!("{key:<key_width$}"), theme.title()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        format!(
            "{EXITED_MARK}exited process, kept {} s with its final totals",
            EXITED_LINGER.as_secs()
        ),
        theme.muted(),
    ));
    lines.push(Line::styled(
        format!(
            "Rates average the last {SMOOTHING_INTERVALS} intervals; totals count since start."
        ),
        theme.muted(),
    ));
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 4;
    let height = lines.len() as u16 + 2;
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .padding(Padding::horizontal(1))
                .title(Line::styled(" Keys ", theme.title())),
        ),
        popup,
    );
}
