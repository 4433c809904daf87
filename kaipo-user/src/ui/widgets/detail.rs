//! The detail pane of one process: who it is, its rates over the last minute and its
//! connections. It covers the table it was opened from.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline},
    Frame,
};

use super::{
    columns::{fit_columns, header_row},
    table::table_widget,
};
use crate::ui::{
    rates::Sample,
    state::LiveState,
    tabs::{connections, processes::ProcessTrack},
};

pub fn draw(frame: &mut Frame, area: Rect, state: &LiveState, pid: u32) {
    let Some(process) = state.process(pid) else {
        return;
    };
    let theme = state.theme;
    let mut title = vec![
        Span::styled(format!(" Process {} ", process.pid), theme.title()),
        Span::raw(format!("{} ", process.name)),
    ];
    if process.exited() {
        title.push(Span::styled("exited ", theme.exited()));
    }
    let block = Block::bordered()
        .title(Line::from(title))
        .title_bottom(Line::from(" Esc closes ").right_aligned());
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);

    let [facts, charts, list] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(fact_lines(process, state)), facts);
    draw_charts(frame, charts, process, state);

    let connections = state.connections_of(pid);
    let columns = fit_columns(connections::DETAIL_COLUMNS, list.width);
    let heading = Line::from(Span::styled(
        format!("Connections ({})", connections.len()),
        theme.title(),
    ));
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(list);
    frame.render_widget(Paragraph::new(heading), head);
    let rows: Vec<Row> = connections
        .iter()
        .take(usize::from(body.height.saturating_sub(1)))
        .map(|c| c.table_row(&columns, state))
        .collect();
    // Busiest first, which no column shows: no sort marker.
    let header = header_row(&columns, None, theme);
    frame.render_widget(table_widget(rows, &columns, header, theme), body);
}

fn fact_lines(p: &ProcessTrack, state: &LiveState) -> Vec<Line<'static>> {
    let theme = state.theme;
    let label = |text: &str| Span::styled(format!("{text:<10}"), theme.muted());
    let unit = state.unit();
    let rate = &p.meter.rate;
    let totals = p.meter.totals;
    vec![
        Line::from(vec![label("command"), Span::raw(p.cmdline.clone())]),
        Line::from(vec![
            label("exe"),
            Span::raw(p.exe.clone().unwrap_or_else(|| "-".into())),
        ]),
        Line::from(vec![
            label("user"),
            Span::raw(format!("{} (uid {})   ", p.user_label(), p.uid)),
            Span::styled("container ", theme.muted()),
            Span::raw(p.container_label().unwrap_or("-").to_owned()),
            Span::styled("   unit ", theme.muted()),
            Span::raw(p.unit.clone().unwrap_or_else(|| "-".into())),
            Span::styled("   pod ", theme.muted()),
            Span::raw(p.pod_label().unwrap_or_else(|| "-".into())),
            Span::styled("   netns ", theme.muted()),
            Span::raw(p.netns.map_or_else(|| "-".into(), |n| n.to_string())),
        ]),
        Line::from(vec![
            label("traffic"),
            Span::styled(format!("RX {}", unit.rate(rate.rx())), theme.rx()),
            Span::raw(format!(" ({} total)   ", crate::format::bytes(totals.rx))),
            Span::styled(format!("TX {}", unit.rate(rate.tx())), theme.tx()),
            Span::raw(format!(" ({} total)", crate::format::bytes(totals.tx))),
        ]),
    ]
}

/// Received and sent side by side over the last minute, each scaled to its own peak and
/// labelled with it: a process that mostly sends would otherwise show a flat RX chart under
/// a peak that is TX's.
fn draw_charts(frame: &mut Frame, area: Rect, p: &ProcessTrack, state: &LiveState) {
    let samples: Vec<&Sample> = p.meter.history.iter().flat_map(|h| h.samples()).collect();
    let rx: Vec<u64> = samples.iter().map(|s| s.rx_per_sec()).collect();
    let tx: Vec<u64> = samples.iter().map(|s| s.tx_per_sec()).collect();
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let unit = state.unit();
    for (area, name, data, style) in [
        (left, "RX", rx, state.theme.rx()),
        (right, "TX", tx, state.theme.tx()),
    ] {
        let peak = data.iter().copied().max().unwrap_or(0);
        let block = Block::new().borders(Borders::TOP).title(format!(
            "{name}, last 60 s, peak {}",
            unit.rate(peak as f64)
        ));
        let inner = block.inner(area);
        // Newest at the right edge, as in the tables: what does not fit goes, and a young
        // process gets blank space on the left.
        let width = usize::from(inner.width);
        let kept = &data[data.len().saturating_sub(width)..];
        let shown: Vec<Option<u64>> = std::iter::repeat_n(None, width - kept.len())
            .chain(kept.iter().copied().map(Some))
            .collect();
        let sparkline = Sparkline::default()
            .block(block)
            .data(shown)
            .max(peak.max(1))
            .style(style);
        frame.render_widget(sparkline, area);
    }
}
