//! The dashboard's tabs, one file each: a tab owns what it remembers per row, its columns,
//! how its rows sort and look, and (through [`crate::ui::widgets::table::TableTab`]) its
//! order and selection. History is the one tab without rows.

pub mod connections;
pub mod history;
pub mod interfaces;
pub mod processes;
pub mod remotes;

use ratatui::{layout::Rect, Frame};

use self::{connections::ConnKey, remotes::RemoteAddr};
use super::state::LiveState;

/// The tabs, in the order of the tab bar and the keys 1 to 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Processes,
    Connections,
    Interfaces,
    Remotes,
    History,
}

impl View {
    pub const ALL: [Self; 5] = [
        Self::Processes,
        Self::Connections,
        Self::Interfaces,
        Self::Remotes,
        Self::History,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Processes => "Processes",
            Self::Connections => "Connections",
            Self::Interfaces => "Interfaces",
            Self::Remotes => "Remote hosts",
            Self::History => "History",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    pub fn prev(self) -> Self {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// A row's identity, which a selection holds on to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKey {
    Process(u32),
    Connection(ConnKey),
    Interface(String),
    Remote(RemoteAddr),
}

/// Draws the current tab into `area`.
pub fn draw(frame: &mut Frame, area: Rect, state: &LiveState) {
    let view = state.view();
    let title = view.title();
    match view {
        View::Processes => state.processes.draw(frame, area, state, title),
        View::Connections => state.connections.draw(frame, area, state, title),
        View::Interfaces => state.interfaces.draw(frame, area, state, title),
        View::Remotes => state.remotes.draw(frame, area, state, title),
        View::History => history::draw(frame, area, state),
    }
}
