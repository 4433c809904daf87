//! The four table views: a titled block, column headers with the sort marker, and only the
//! rows on screen.

use ratatui::{
    layout::{Alignment, Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, HighlightSpacing, Paragraph, Row, Table, TableState},
    Frame,
};

use super::{fit_columns, is_right_aligned, rows, MARKER};
use crate::ui::{
    order::{Column, SortSpec, TableView, View},
    state::{LiveState, SourceStatus},
};

pub fn draw(frame: &mut Frame, area: Rect, state: &LiveState, view: View) {
    let Some(table) = state.table(view) else {
        return;
    };
    let total = match view {
        View::Processes => state.processes.len(),
        View::Connections => state.connections.len(),
        View::Interfaces => state.interfaces.len(),
        View::Remotes => state.remotes.len(),
        View::History => 0,
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title(state, view, table, total));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let columns = fit_columns(view, view.columns(), inner.width);
    let header = header_row(&columns, table.sort, state);
    if table.order.is_empty() {
        // The header alone, so the columns are known before the first row arrives.
        frame.render_widget(table_widget(Vec::new(), &columns, header, state), inner);
        let [_, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        let message = empty_message(state, total);
        frame.render_widget(
            Paragraph::new(message)
                .style(state.theme.muted())
                .alignment(Alignment::Center),
            Rect {
                y: body.y + body.height / 3,
                height: body.height.min(1),
                ..body
            },
        );
        return;
    }

    let rows_on_screen = usize::from(inner.height.saturating_sub(1));
    // The state scrolls for its own idea of the screen; a frame of another height (a resize
    // not yet seen, a test) still shows the selection.
    let mut offset = table.offset.min(table.order.len().saturating_sub(1));
    if table.cursor < offset || table.cursor >= offset + rows_on_screen.max(1) {
        offset = (table.cursor + 1).saturating_sub(rows_on_screen.max(1));
    }
    let end = (offset + rows_on_screen).min(table.order.len());
    let visible = &table.order[offset..end];
    let rows: Vec<Row> = visible
        .iter()
        .map(|&i| match view {
            View::Processes => rows::process(&state.processes.items()[i], &columns, state),
            View::Connections => rows::connection(&state.connections.items()[i], &columns, state),
            View::Interfaces => rows::interface(&state.interfaces.items()[i], &columns, state),
            _ => rows::remote(&state.remotes.items()[i], &columns, state),
        })
        .collect();
    let widget = table_widget(rows, &columns, header, state);
    let mut ts = TableState::new().with_selected(Some(table.cursor - offset));
    frame.render_stateful_widget(widget, inner, &mut ts);
}

pub fn table_widget<'a>(
    rows: Vec<Row<'a>>,
    columns: &[(Column, u16)],
    header: Row<'a>,
    state: &LiveState,
) -> Table<'a> {
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|&(_, w)| Constraint::Length(w))
        .collect();
    Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(state.theme.selected())
        .highlight_symbol(MARKER)
        .highlight_spacing(HighlightSpacing::Always)
}

pub fn header_row(columns: &[(Column, u16)], sort: SortSpec, state: &LiveState) -> Row<'static> {
    let cells = columns.iter().map(|&(column, _)| {
        let mut title = column.title().to_string();
        if column == sort.column {
            title.push_str(if sort.descending { " ▼" } else { " ▲" });
        }
        if is_right_aligned(column) {
            Cell::from(Line::from(title).alignment(Alignment::Right))
        } else {
            Cell::from(title)
        }
    });
    Row::new(cells.collect::<Vec<_>>()).style(state.theme.column_header())
}

fn title(state: &LiveState, view: View, table: &TableView, total: usize) -> Line<'static> {
    let theme = state.theme;
    let count = if state.filter().is_empty() {
        format!("{total}")
    } else {
        format!("{} of {total}", table.order.len())
    };
    let arrow = if table.sort.descending { "▼" } else { "▲" };
    let mut spans = vec![
        Span::styled(format!(" {} ", view.title()), theme.title()),
        Span::raw(format!(
            "{count} · sort {} {arrow} ",
            table.sort.column.title()
        )),
    ];
    if !state.filter().is_empty() {
        spans.push(Span::raw(format!("· filter \"{}\" ", state.filter())));
    }
    Line::from(spans)
}

fn empty_message(state: &LiveState, total: usize) -> String {
    if state.intervals() == 0 {
        match &state.source {
            SourceStatus::Live => "Waiting for the first interval…".into(),
            SourceStatus::Ended => "The source ended before sending anything.".into(),
            SourceStatus::Failed(e) => format!("The source failed: {e}"),
        }
    } else if total > 0 {
        format!("Nothing matches \"{}\".", state.filter())
    } else {
        "No traffic yet.".into()
    }
}
