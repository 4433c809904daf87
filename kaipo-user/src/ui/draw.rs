//! The whole screen from the state, and nothing else: no I/O, no clock, no mutation, so a
//! snapshot test draws exactly what a user sees.
//!
//! ```text
//! header   rates, attribution, losses, backend, PAUSED
//!          warnings (degradations, source ended), totals since start
//! tabs     1 Processes  2 Connections  3 Interfaces  4 Remote hosts  5 History
//! main     the view (or the detail pane over it)
//! footer   keys, or the filter being typed
//! ```

use ratatui::{
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::{
    order::View,
    state::{LiveState, SourceStatus},
    views,
};

const HEADER_ROWS: u16 = 2;
const TABS_ROWS: u16 = 1;
const FOOTER_ROWS: u16 = 1;
/// The table block's title line and the column headers.
const TABLE_CHROME_ROWS: u16 = 2;

/// Table rows visible on a terminal `height` rows tall.
pub fn table_rows(height: u16) -> usize {
    usize::from(height.saturating_sub(HEADER_ROWS + TABS_ROWS + FOOTER_ROWS + TABLE_CHROME_ROWS))
}

pub fn draw(frame: &mut Frame, state: &LiveState) {
    let area = frame.area();
    let [header, tabs, main, footer] = Layout::vertical([
        Constraint::Length(HEADER_ROWS),
        Constraint::Length(TABS_ROWS),
        Constraint::Min(0),
        Constraint::Length(FOOTER_ROWS),
    ])
    .areas(area);
    draw_header(frame, header, state);
    draw_tabs(frame, tabs, state);
    match state.view() {
        View::History => views::history::draw(frame, main, state),
        view => views::table::draw(frame, main, state, view),
    }
    if let Some(pid) = state.detail {
        views::detail::draw(frame, main, state, pid);
    }
    draw_footer(frame, footer, state);
    if state.help {
        views::help::draw(frame, area, state);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, state: &LiveState) {
    let theme = state.theme;
    let header = state.header();
    let unit = state.unit();
    let (rx, tx) = state.interface_rates();
    let [first, second] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);

    let share = header
        .attributed_share
        .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0));
    let backend = if header.backend.is_empty() {
        "-"
    } else {
        header.backend.as_str()
    };
    let lost = state.lost_total();
    let collector = if state.intervals() == 0 {
        "waiting for the collector".to_string()
    } else {
        format!("{backend} via {}", header.source.label())
    };
    let line = Line::from(vec![
        Span::styled("kaipo ", theme.title()),
        Span::styled(format!("RX {}", unit.rate(rx)), theme.rx()),
        Span::raw("  "),
        Span::styled(format!("TX {}", unit.rate(tx)), theme.tx()),
        Span::raw(format!("  attributed {share}  ")),
        Span::styled(
            format!("lost {lost}"),
            if lost > 0 {
                theme.warning()
            } else {
                Default::default()
            },
        ),
        Span::raw(format!("  {collector}")),
    ]);
    frame.render_widget(Paragraph::new(line), first);

    let mut spans = Vec::new();
    let warnings = header
        .alerts
        .iter()
        .map(|alert| format!("ALERT {alert}"))
        .chain(source_warning(state))
        .chain(header.degradations.iter().cloned());
    for warning in warnings {
        spans.push(Span::styled(format!("{warning} "), theme.warning()));
        spans.push(Span::raw("· "));
    }
    let totals = state.interface_totals();
    spans.push(Span::styled(
        format!(
            "since start RX {} TX {} · {} processes · {} connections",
            crate::format::bytes(totals.rx),
            crate::format::bytes(totals.tx),
            state.processes.len(),
            state.connections.len(),
        ),
        theme.muted(),
    ));
    frame.render_widget(Paragraph::new(Line::from(spans)), second);
}

fn source_warning(state: &LiveState) -> Option<String> {
    match &state.source {
        SourceStatus::Live => None,
        SourceStatus::Ended => Some("source ended, showing its last data".into()),
        SourceStatus::Failed(e) => Some(format!("source failed: {e}")),
    }
}

fn draw_tabs(frame: &mut Frame, area: Rect, state: &LiveState) {
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
    // PAUSED sits at the right end of the tabs, which leave room for it at 80 columns.
    let paused = if state.paused() { 8 } else { 0 };
    let [tabs, flag] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(paused)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)), tabs);
    if state.paused() {
        frame.render_widget(
            Paragraph::new(Span::styled(" PAUSED ", theme.paused())),
            flag,
        );
    }
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &LiveState) {
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
