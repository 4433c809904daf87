//! The table every row tab is made of: remembered rows, their order (sort and filter), a
//! selection that follows its row rather than its position, and drawing only the rows on
//! screen. A tab supplies its columns and how one row looks through [`TableRow`].
//!
//! The order is a list of indices into the remembered rows, rebuilt when data, sort or
//! filter change, never while drawing: a frame then only formats the rows on screen.

use std::cmp::Ordering;

use ratatui::{
    layout::{Alignment, Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, HighlightSpacing, Paragraph, Row, Table, TableState},
    Frame,
};

use super::{
    columns::{fit_columns, header_row, Column, ColumnSpec},
    MARKER,
};
use crate::ui::{
    state::{LiveState, SourceStatus},
    tabs::RowKey,
    theme::Theme,
    tracks::{Track, Tracks},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortSpec {
    pub column: Column,
    pub descending: bool,
}

impl Default for SortSpec {
    fn default() -> Self {
        Self {
            column: Column::Traffic,
            descending: true,
        }
    }
}

impl SortSpec {
    /// The next (or previous) sortable column of `columns`, in its natural direction:
    /// received plus sent first, then every column but the sparkline.
    pub fn cycled(self, columns: &[ColumnSpec], forward: bool) -> Self {
        let sortable: Vec<Column> = std::iter::once(Column::Traffic)
            .chain(
                columns
                    .iter()
                    .map(|c| c.column)
                    .filter(|c| *c != Column::Activity),
            )
            .collect();
        let here = sortable.iter().position(|c| *c == self.column).unwrap_or(0);
        let len = sortable.len();
        let next = if forward {
            (here + 1) % len
        } else {
            (here + len - 1) % len
        };
        let column = sortable[next];
        Self {
            column,
            descending: column.numeric(),
        }
    }
}

pub enum SortValue<'a> {
    /// Order by the row's key itself (addresses, which sort numerically that way).
    Key,
    Float(f64),
    Int(u64),
    Text(&'a str),
}

/// A remembered row as its tab shows it.
pub trait TableRow: Track<Key: Ord> {
    /// The tab's columns in display order, with how each claims width.
    const COLUMNS: &'static [ColumnSpec];
    fn row_key(&self) -> RowKey;
    fn is_row(&self, key: &RowKey) -> bool;
    /// Lower-cased text the filter searches.
    fn search(&self) -> &str;
    fn sort_value(&self, column: Column) -> SortValue<'_>;
    /// The cells of `columns`, each `width` wide.
    fn row(&self, columns: &[(Column, u16)], state: &LiveState) -> Row<'static>;
}

fn compare<T: TableRow>(a: &T, b: &T, sort: SortSpec) -> Ordering {
    let primary = match (a.sort_value(sort.column), b.sort_value(sort.column)) {
        (SortValue::Key, SortValue::Key) => a.key().cmp(b.key()),
        (SortValue::Float(x), SortValue::Float(y)) => x.total_cmp(&y),
        (SortValue::Int(x), SortValue::Int(y)) => x.cmp(&y),
        (SortValue::Text(x), SortValue::Text(y)) => x
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(y.chars().flat_map(char::to_lowercase)),
        _ => Ordering::Equal,
    };
    let primary = if sort.descending {
        primary.reverse()
    } else {
        primary
    };
    // Ties in key order whatever the direction, so equal rows never swap between frames.
    primary.then_with(|| a.key().cmp(b.key()))
}

/// A table's order, selection and scroll position, whatever its rows.
#[derive(Clone, Debug, Default)]
pub struct TableView {
    pub sort: SortSpec,
    /// Indices into the tab's rows, in display order, filter applied.
    pub order: Vec<usize>,
    /// Position of the selection in `order`.
    pub cursor: usize,
    /// First row on screen.
    pub offset: usize,
    pub selected: Option<RowKey>,
}

impl TableView {
    /// Keeps the selection on screen with the least scrolling, and no blank rows at the end.
    fn scroll(&mut self, viewport: usize) {
        let rows = viewport.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + rows {
            self.offset = self.cursor + 1 - rows;
        }
        self.offset = self.offset.min(self.order.len().saturating_sub(rows));
    }
}

/// One tab's remembered rows and how they are shown.
#[derive(Clone)]
pub struct TableTab<T: TableRow> {
    pub rows: Tracks<T>,
    pub table: TableView,
}

impl<T: TableRow> Default for TableTab<T> {
    fn default() -> Self {
        Self {
            rows: Tracks::default(),
            table: TableView::default(),
        }
    }
}

impl<T: TableRow> TableTab<T> {
    pub fn items(&self) -> &[T] {
        self.rows.items()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, key: &T::Key) -> Option<&T> {
        self.rows.get(key)
    }

    /// The row under the selection, when there is one.
    pub fn selected_row(&self) -> Option<&T> {
        self.table
            .order
            .get(self.table.cursor)
            .map(|&i| &self.rows.items()[i])
    }

    /// Sorts by the next or previous column, or reverses the order (`None`).
    pub fn change_sort(&mut self, forward: Option<bool>) {
        let sort = self.table.sort;
        self.table.sort = match forward {
            Some(forward) => sort.cycled(T::COLUMNS, forward),
            None => SortSpec {
                descending: !sort.descending,
                ..sort
            },
        };
    }

    /// Rebuilds the order, keeping rows whose search text holds `needle` or that `also`
    /// accepts, and finds the selected row again; when it is gone the selection stays at
    /// the same height. `viewport` is the number of rows on screen.
    pub fn rebuild(&mut self, needle: &str, also: impl Fn(&T) -> bool, viewport: usize) {
        let items = self.rows.items();
        let mut order = std::mem::take(&mut self.table.order);
        order.clear();
        order.extend((0..items.len()).filter(|&i| {
            needle.is_empty() || items[i].search().contains(needle) || also(&items[i])
        }));
        let sort = self.table.sort;
        order.sort_unstable_by(|&a, &b| compare(&items[a], &items[b], sort));
        self.table.order = order;
        if self.table.order.is_empty() {
            self.table.cursor = 0;
            self.table.offset = 0;
            return;
        }
        let found = self.table.selected.as_ref().and_then(|key| {
            let items = self.rows.items();
            self.table.order.iter().position(|&i| items[i].is_row(key))
        });
        match found {
            Some(pos) => self.table.cursor = pos,
            None => self.select(self.table.cursor, viewport),
        }
        self.table.scroll(viewport);
    }

    /// Moves the selection to position `cursor` (clamped).
    pub fn select(&mut self, cursor: usize, viewport: usize) {
        let Some(last) = self.table.order.len().checked_sub(1) else {
            return;
        };
        self.table.cursor = cursor.min(last);
        self.table.selected = self.selected_row().map(TableRow::row_key);
        self.table.scroll(viewport);
    }

    /// The tab titled `title`: a block, column headers with the sort marker, and the rows on
    /// screen (or why there are none).
    pub fn draw(&self, frame: &mut Frame, area: Rect, state: &LiveState, title: &str) {
        let theme = state.theme;
        let block = Block::new()
            .borders(Borders::TOP)
            .title(self.title(state, title));
        let inner = block.inner(area);
        frame.render_widget(block, area);

        let columns = fit_columns(T::COLUMNS, inner.width);
        let header = header_row(
            &columns,
            Some((self.table.sort.column, self.table.sort.descending)),
            theme,
        );
        if self.table.order.is_empty() {
            // The header alone, so the columns are known before the first row arrives.
            frame.render_widget(table_widget(Vec::new(), &columns, header, theme), inner);
            let [_, body] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
            frame.render_widget(
                Paragraph::new(self.empty_message(state))
                    .style(theme.muted())
                    .alignment(Alignment::Center),
                Rect {
                    y: body.y + body.height / 3,
                    height: body.height.min(1),
                    ..body
                },
            );
            return;
        }

        let on_screen = usize::from(inner.height.saturating_sub(1)).max(1);
        // The state scrolls for its own idea of the screen; a frame of another height (a
        // resize not yet seen, a test) still shows the selection.
        let mut offset = self
            .table
            .offset
            .min(self.table.order.len().saturating_sub(1));
        if self.table.cursor < offset || self.table.cursor >= offset + on_screen {
            offset = (self.table.cursor + 1).saturating_sub(on_screen);
        }
        let end = (offset + on_screen).min(self.table.order.len());
        let items = self.rows.items();
        let rows: Vec<Row> = self.table.order[offset..end]
            .iter()
            .map(|&i| items[i].row(&columns, state))
            .collect();
        let widget = table_widget(rows, &columns, header, theme);
        let mut selection = TableState::new().with_selected(Some(self.table.cursor - offset));
        frame.render_stateful_widget(widget, inner, &mut selection);
    }

    fn title(&self, state: &LiveState, title: &str) -> Line<'static> {
        let total = self.rows.len();
        let count = if state.filter().is_empty() {
            format!("{total}")
        } else {
            format!("{} of {total}", self.table.order.len())
        };
        let arrow = if self.table.sort.descending {
            "▼"
        } else {
            "▲"
        };
        let mut spans = vec![
            Span::styled(format!(" {title} "), state.theme.title()),
            Span::raw(format!(
                "{count} · sort {} {arrow} ",
                self.table.sort.column.title()
            )),
        ];
        if !state.filter().is_empty() {
            spans.push(Span::raw(format!("· filter \"{}\" ", state.filter())));
        }
        Line::from(spans)
    }

    fn empty_message(&self, state: &LiveState) -> String {
        if state.intervals() == 0 {
            match state.source_status() {
                SourceStatus::Live => "Waiting for the first interval…".into(),
                SourceStatus::Ended => "The source ended before sending anything.".into(),
                SourceStatus::Failed(e) => format!("The source failed: {e}"),
            }
        } else if !self.rows.is_empty() {
            format!("Nothing matches \"{}\".", state.filter())
        } else {
            "No traffic yet.".into()
        }
    }
}

/// A table of `rows` under `header`, with the selection marker column.
pub fn table_widget<'a>(
    rows: Vec<Row<'a>>,
    columns: &[(Column, u16)],
    header: Row<'a>,
    theme: Theme,
) -> Table<'a> {
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|&(_, w)| Constraint::Length(w))
        .collect();
    Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(theme.selected())
        .highlight_symbol(MARKER)
        .highlight_spacing(HighlightSpacing::Always)
}
