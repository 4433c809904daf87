//! Keys to actions, and actions to state changes. Mapping and applying are separate so the
//! help overlay, tests and the event loop share one definition of every key.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    state::LiveState,
    tabs::{RowKey, View},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    NextView,
    PrevView,
    ShowView(View),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Opens the selected process's detail pane.
    Open,
    /// Closes the help, then the detail pane, then clears the filter.
    Close,
    StartFilter,
    FilterInput(char),
    FilterBackspace,
    /// Leaves filter editing, keeping the filter.
    FilterDone,
    /// Leaves filter editing and clears the filter.
    FilterCancel,
    NextSort,
    PrevSort,
    ReverseSort,
    TogglePause,
    ToggleUnits,
}

/// What the loop should do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Every key with what it does, for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "show or hide this help"),
    ("Tab, Shift-Tab", "next or previous view"),
    (
        "1 2 3 4 5",
        "Processes, Connections, Interfaces, Remote hosts, History",
    ),
    ("Up Down, k j", "move the selection"),
    ("PgUp PgDn", "move a page"),
    ("Home End, g G", "first or last row"),
    ("Enter", "details of the selected process"),
    ("Esc", "close help or details, else clear the filter"),
    ("/", "filter: name, command, exe, user, container, address"),
    ("s, S", "sort by the next or previous column"),
    ("r", "reverse the sort"),
    ("p", "pause the screen; counting goes on"),
    ("u", "rates in bytes/s or bits/s"),
];

pub fn action_for(key: KeyEvent, state: &LiveState) -> Option<Action> {
    // While paused, keys act on the screen that holds still.
    let state = state.shown();
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if state.editing_filter {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterInput(c)),
            _ => None,
        };
    }
    if state.help {
        return match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?') | KeyCode::Esc => Some(Action::ToggleHelp),
            _ => None,
        };
    }
    let action = match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Tab => Action::NextView,
        KeyCode::BackTab => Action::PrevView,
        KeyCode::Char(c @ '1'..='5') => {
            let index = c as usize - '1' as usize;
            Action::ShowView(View::ALL[index])
        }
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Close,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('s') => Action::NextSort,
        KeyCode::Char('S') => Action::PrevSort,
        KeyCode::Char('r') => Action::ReverseSort,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('u') => Action::ToggleUnits,
        _ => return None,
    };
    Some(action)
}

/// Applies a terminal event: keys through [`action_for`], resizes to the viewport.
pub fn handle_event(state: &mut LiveState, event: &Event) -> Flow {
    match event {
        Event::Key(key) => match action_for(*key, state) {
            Some(action) => state.apply(action),
            None => Flow::Continue,
        },
        Event::Resize(width, height) => {
            state.resize(*width, *height);
            Flow::Continue
        }
        _ => Flow::Continue,
    }
}

impl LiveState {
    pub fn apply(&mut self, action: Action) -> Flow {
        match action {
            Action::Quit => Flow::Quit,
            Action::TogglePause => {
                self.toggle_pause();
                Flow::Continue
            }
            // While paused, every other key moves through the picture on screen.
            action => self.shown_mut().apply_here(action),
        }
    }

    fn apply_here(&mut self, action: Action) -> Flow {
        let rows = self.viewport_rows();
        let cursor = self.table(self.view).map_or(0, |t| t.cursor);
        match action {
            Action::Quit => return Flow::Quit,
            Action::ToggleHelp => self.help = !self.help,
            Action::NextView => self.show_view(self.view.next()),
            Action::PrevView => self.show_view(self.view.prev()),
            Action::ShowView(view) => self.show_view(view),
            Action::Up => self.select_at(cursor.saturating_sub(1)),
            Action::Down => self.select_at(cursor.saturating_add(1)),
            Action::PageUp => self.select_at(cursor.saturating_sub(rows)),
            Action::PageDown => self.select_at(cursor.saturating_add(rows)),
            Action::Home => self.select_at(0),
            Action::End => self.select_at(usize::MAX),
            Action::Open => self.open_detail(),
            Action::Close => {
                if self.help {
                    self.help = false;
                } else if self.detail.is_some() {
                    self.detail = None;
                } else {
                    self.set_filter("");
                }
            }
            Action::StartFilter => self.editing_filter = true,
            Action::FilterInput(c) => {
                let text = format!("{}{c}", self.filter());
                self.set_filter(&text);
            }
            Action::FilterBackspace => {
                let mut text = self.filter().to_string();
                text.pop();
                self.set_filter(&text);
            }
            Action::FilterDone => self.editing_filter = false,
            Action::FilterCancel => {
                self.editing_filter = false;
                self.set_filter("");
            }
            Action::NextSort | Action::PrevSort | Action::ReverseSort => self.change_sort(&action),
            Action::TogglePause => self.toggle_pause(),
            Action::ToggleUnits => self.unit = self.unit.toggled(),
        }
        Flow::Continue
    }

    fn show_view(&mut self, view: View) {
        self.view = view;
        self.detail = None;
    }

    fn change_sort(&mut self, action: &Action) {
        let forward = match action {
            Action::NextSort => Some(true),
            Action::PrevSort => Some(false),
            _ => None,
        };
        match self.view {
            View::Processes => self.processes.change_sort(forward),
            View::Connections => self.connections.change_sort(forward),
            View::Interfaces => self.interfaces.change_sort(forward),
            View::Remotes => self.remotes.change_sort(forward),
            View::History => return,
        }
        self.rebuild();
    }

    fn open_detail(&mut self) {
        let pid = match self.selected() {
            Some(RowKey::Process(pid)) => *pid,
            Some(RowKey::Connection(key)) => key.pid,
            _ => return,
        };
        if self.process(pid).is_some() {
            self.detail = Some(pid);
        }
    }
}
