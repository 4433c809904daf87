//! Keys and the moves they make: mapping, paging, the detail pane.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{
    fixtures::{self, at},
    input::{action_for, Action, Flow},
    state::{LiveState, EXITED_LINGER},
    tabs::View,
    theme::Theme,
};

#[test]
fn paging_moves_by_a_screenful() {
    let mut state = super::bench::synthetic_state(50, 0);
    state.resize(80, 24);
    assert_eq!(state.viewport_rows(), 18);
    let position = |s: &LiveState| {
        let t = s.table(View::Processes).expect("table");
        (t.cursor, t.offset)
    };
    let steps = [
        (Action::PageDown, (18, 1)),
        (Action::PageDown, (36, 19)),
        (Action::End, (49, 32)),
        (Action::PageUp, (31, 31)),
        (Action::Up, (30, 30)),
        (Action::Down, (31, 30)),
        (Action::Home, (0, 0)),
        (Action::Up, (0, 0)),
    ];
    for (action, expected) in steps {
        state.apply(action.clone());
        assert_eq!(position(&state), expected, "after {action:?}");
    }
}

#[test]
fn detail_opens_on_the_selected_process_and_closes() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    state.apply(Action::Down);
    state.apply(Action::Down);
    state.apply(Action::Open);
    assert_eq!(state.detail, Some(5150));
    assert_eq!(state.connections_of(5150).len(), 1);
    state.tick(at(start, 3) + EXITED_LINGER);
    assert_eq!(state.detail, None, "its process went");
    state.apply(Action::ShowView(View::Connections));
    state.apply(Action::Open);
    assert_eq!(state.detail, Some(4321));
    state.apply(Action::Close);
    assert_eq!(state.detail, None);
    state.apply(Action::ShowView(View::Interfaces));
    state.apply(Action::Open);
    assert_eq!(state.detail, None);
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_map_to_actions() {
    let mut state = fixtures::state();
    let cases = [
        (key(KeyCode::Char('q')), Some(Action::Quit)),
        (
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Action::Quit),
        ),
        (key(KeyCode::Char('?')), Some(Action::ToggleHelp)),
        (key(KeyCode::Tab), Some(Action::NextView)),
        (key(KeyCode::BackTab), Some(Action::PrevView)),
        (
            key(KeyCode::Char('4')),
            Some(Action::ShowView(View::Remotes)),
        ),
        (key(KeyCode::Char('j')), Some(Action::Down)),
        (key(KeyCode::Up), Some(Action::Up)),
        (key(KeyCode::PageDown), Some(Action::PageDown)),
        (key(KeyCode::Char('G')), Some(Action::End)),
        (key(KeyCode::Enter), Some(Action::Open)),
        (key(KeyCode::Char('/')), Some(Action::StartFilter)),
        (key(KeyCode::Char('s')), Some(Action::NextSort)),
        (key(KeyCode::Char('r')), Some(Action::ReverseSort)),
        (key(KeyCode::Char('p')), Some(Action::TogglePause)),
        (key(KeyCode::Char('u')), Some(Action::ToggleUnits)),
        (key(KeyCode::Char('x')), None),
    ];
    for (event, expected) in cases {
        assert_eq!(action_for(event, &state), expected, "{event:?}");
    }
    // While typing a filter, letters are text; Ctrl-C still quits.
    state.apply(Action::StartFilter);
    assert_eq!(
        action_for(key(KeyCode::Char('q')), &state),
        Some(Action::FilterInput('q'))
    );
    assert_eq!(
        action_for(key(KeyCode::Esc), &state),
        Some(Action::FilterCancel)
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(action_for(ctrl_c, &state), Some(Action::Quit));
    state.apply(Action::FilterDone);
    // The help overlay swallows everything but closing it and quitting.
    state.apply(Action::ToggleHelp);
    assert_eq!(action_for(key(KeyCode::Char('j')), &state), None);
    assert_eq!(
        action_for(key(KeyCode::Esc), &state),
        Some(Action::ToggleHelp)
    );
    assert_eq!(state.apply(Action::Quit), Flow::Quit);
    // Tab cycles through all five views and back.
    let mut seen = Vec::new();
    for _ in 0..5 {
        state.apply(Action::NextView);
        seen.push(state.view());
    }
    assert_eq!(
        seen,
        [
            View::Connections,
            View::Interfaces,
            View::Remotes,
            View::History,
            View::Processes
        ]
    );
    state.apply(Action::PrevView);
    assert_eq!(state.view(), View::History);
}
