//! Every view drawn from the fixture at 80x24 and 160x40, compared with the reviewed
//! snapshots in `snapshots/`. Styles do not show in a snapshot; the tests at the end check
//! the ones that carry meaning (dimmed exited rows, no colour under NO_COLOR).

use insta::assert_snapshot;
use ratatui::{
    backend::TestBackend,
    style::{Color, Modifier},
    Terminal,
};

use super::{
    draw::draw, fixtures, input::Action, order::View, source::HistoryRange, state::LiveState,
    theme::Theme,
};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 40)];

fn render(state: &LiveState, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| draw(frame, state)).expect("draw");
    terminal
}

/// Snapshots `prepare`d fixture state at both sizes, named `name_WxH`.
fn snapshot_both(name: &str, prepare: impl Fn(&mut LiveState)) {
    for (width, height) in SIZES {
        let (mut state, _) = fixtures::state_with(Theme::PLAIN, width, height);
        prepare(&mut state);
        let terminal = render(&state, width, height);
        assert_snapshot!(format!("{name}_{width}x{height}"), terminal.backend());
    }
}

#[test]
fn empty() {
    for (width, height) in SIZES {
        let mut state = LiveState::new(Theme::PLAIN);
        state.resize(width, height);
        let terminal = render(&state, width, height);
        assert_snapshot!(format!("empty_{width}x{height}"), terminal.backend());
    }
}

#[test]
fn processes() {
    snapshot_both("processes", |_| {});
}

#[test]
fn connections() {
    snapshot_both("connections", |s| {
        s.apply(Action::ShowView(View::Connections));
    });
}

#[test]
fn interfaces() {
    snapshot_both("interfaces", |s| {
        s.apply(Action::ShowView(View::Interfaces));
    });
}

#[test]
fn remote_hosts() {
    snapshot_both("remote_hosts", |s| {
        s.apply(Action::ShowView(View::Remotes));
    });
}

#[test]
fn history() {
    snapshot_both("history", |s| {
        s.apply(Action::ShowView(View::History));
        let now = std::time::Instant::now();
        s.history.answer(
            HistoryRange::LastHour,
            Ok(Some(fixtures::history(true))),
            now,
        );
        s.history.answer(
            HistoryRange::LastDay,
            Ok(Some(fixtures::history(false))),
            now,
        );
    });
}

#[test]
fn history_without_daemon() {
    snapshot_both("history_without_daemon", |s| {
        s.apply(Action::ShowView(View::History));
        let now = std::time::Instant::now();
        s.history.answer(HistoryRange::LastHour, Ok(None), now);
        s.history.answer(HistoryRange::LastDay, Ok(None), now);
    });
}

/// "198.51.100" is no process's name: nginx matches through one connection's address.
#[test]
fn filtered_by_address() {
    snapshot_both("filtered", |s| {
        s.apply(Action::StartFilter);
        for c in "198.51.100".chars() {
            s.apply(Action::FilterInput(c));
        }
    });
}

#[test]
fn filter_matching_nothing() {
    snapshot_both("filter_nothing", |s| {
        s.apply(Action::StartFilter);
        for c in "zzz".chars() {
            s.apply(Action::FilterInput(c));
        }
        s.apply(Action::FilterDone);
    });
}

#[test]
fn help_overlay() {
    snapshot_both("help", |s| {
        s.apply(Action::ToggleHelp);
    });
}

#[test]
fn detail_pane() {
    snapshot_both("detail", |s| {
        // nginx, the second row by traffic.
        s.apply(Action::Down);
        s.apply(Action::Open);
    });
}

/// Paused, rates in bits, a degraded backend, sorted by name A to Z: the header and the
/// table title carry all of it.
#[test]
fn paused_in_bits_degraded() {
    snapshot_both("paused_bits_degraded", |s| {
        let mut update = fixtures::update(4);
        update.header.backend = "pcap".into();
        update.header.degradations = vec!["no BTF: per-process counts from /proc".into()];
        s.ingest(update, fixtures::at(std::time::Instant::now(), 4));
        s.apply(Action::TogglePause);
        s.apply(Action::ToggleUnits);
        s.apply(Action::NextSort);
        s.apply(Action::NextSort);
    });
}

/// An alert the daemon reports firing leads the header's warning line.
#[test]
fn firing_alert_in_the_header() {
    snapshot_both("firing_alert", |s| {
        let mut update = fixtures::update(4);
        update.header.source = crate::ui::SourceKind::Daemon;
        update.header.alerts = vec!["app rsync: 14200000 B/s over 10000000 B/s".into()];
        s.ingest(update, fixtures::at(std::time::Instant::now(), 4));
    });
}

#[test]
fn tiny_terminal_draws_without_panicking() {
    let state = fixtures::state();
    for (width, height) in [(1, 1), (20, 5), (40, 8)] {
        let terminal = render(&state, width, height);
        assert_eq!(terminal.backend().buffer().area.width, width);
    }
}

#[test]
fn exited_process_is_dimmed() {
    let state = fixtures::state();
    let terminal = render(&state, 80, 24);
    let buffer = terminal.backend().buffer();
    let row = (0..24)
        .find(|&y| {
            (0..80)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .contains("✕ curl")
        })
        .expect("curl's row");
    let pid_cell = (0..80)
        .find(|&x| buffer[(x, row)].symbol() == "5")
        .expect("curl's pid");
    assert!(buffer[(pid_cell, row)].modifier.contains(Modifier::DIM));
    let nginx = (0..24)
        .find(|&y| {
            (0..80)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .contains(" nginx ")
        })
        .expect("nginx's row");
    assert!(!buffer[(10, nginx)].modifier.contains(Modifier::DIM));
}

#[test]
fn no_color_draws_no_colour() {
    let colours = |theme: Theme| {
        let (state, _) = fixtures::state_with(theme, 80, 24);
        let terminal = render(&state, 80, 24);
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert_eq!(colours(Theme::PLAIN), 0);
    assert!(colours(Theme::COLOR) > 100);
}
