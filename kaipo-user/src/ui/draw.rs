//! The whole screen from the state, and nothing else: no I/O, no clock, no mutation, so a
//! snapshot test draws exactly what a user sees. While paused, everything but the PAUSED
//! mark comes from the picture taken at pause.
//!
//! ```text
//! header   rates, attribution, losses, backend
//!          PAUSED, alerts, degradations (wrapped), totals since start
//! tabs     1 Processes  2 Connections  3 Interfaces  4 Remote hosts  5 History
//! main     the tab (or the detail pane over it)
//! footer   keys, or the filter being typed
//! ```

use ratatui::{
    layout::{Constraint, Layout},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::{
    state::LiveState,
    tabs::{self, View},
    widgets::{detail, header, help},
};

const TABS_ROWS: u16 = 1;
const FOOTER_ROWS: u16 = 1;
/// The table block's title line and the column headers.
const TABLE_CHROME_ROWS: u16 = 2;

/// Table rows visible on a terminal `width` x `height` with the header `state` has now.
pub fn table_rows(state: &LiveState, width: u16, height: u16) -> usize {
    let header = header::lines(state, width, height).len() as u16;
    usize::from(height.saturating_sub(header + TABS_ROWS + FOOTER_ROWS + TABLE_CHROME_ROWS))
}

pub fn draw(frame: &mut Frame, state: &LiveState) {
    let area = frame.area();
    let header_lines = header::lines(state, area.width, area.height);
    let [header, tabs_bar, main, footer] = Layout::vertical([
        Constraint::Length(header_lines.len() as u16),
        Constraint::Length(TABS_ROWS),
        Constraint::Min(0),
        Constraint::Length(FOOTER_ROWS),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_lines), header);
    let shown = state.shown();
    draw_tabs(frame, tabs_bar, shown);
    tabs::draw(frame, main, shown);
    if let Some(pid) = shown.detail {
        detail::draw(frame, main, shown, pid);
    }
    draw_footer(frame, footer, shown);
    if shown.help {
        help::draw(frame, area, shown);
    }
}

fn draw_tabs(frame: &mut Frame, area: ratatui::layout::Rect, state: &LiveState) {
    let theme = state.theme;
    let mut spans = Vec::new();
    for (i, view) in View::ALL.iter().enumerate() {
        let label = format!("{} {}", i + 1, view.title());
        if *view == state.view() {
            // Brackets as well as the style: the active tab must show without colour and in
            // a snapshot.
            spans.push(Span::styled(format!("[{label}]"), theme.active_tab()));
        } else {
            spans.push(Span::raw(format!(" {label} ")));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(frame: &mut Frame, area: ratatui::layout::Rect, state: &LiveState) {
    let theme = state.theme;
    let line = if state.editing_filter {
        Line::from(vec![
            Span::styled("filter: ", theme.title()),
            Span::raw(format!("{}█", state.filter())),
            Span::styled("  Enter keeps it · Esc clears it", theme.muted()),
        ])
    } else {
        let mut spans = Vec::new();
        if !state.filter().is_empty() {
            spans.push(Span::styled(
                format!("filter \"{}\" (Esc clears) · ", state.filter()),
                theme.title(),
            ));
        }
        spans.push(Span::styled(
            "? help  q quit  / filter  s r sort  p pause  u bits/bytes  Enter details",
            theme.muted(),
        ));
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}
