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
    draw::draw, fixtures, input::Action, source::HistoryRange, state::LiveState, tabs::View,
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
        s.history_answer(
            HistoryRange::LastHour,
            Ok(Some(fixtures::history(true))),
            now,
        );
        s.history_answer(
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
        s.history_answer(HistoryRange::LastHour, Ok(None), now);
        s.history_answer(HistoryRange::LastDay, Ok(None), now);
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

/// The screen's text, one string per row.
fn rows_of(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    (0..area.height)
        .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// Two long degradations at 160 columns: each on lines of its own, wrapped, every word on
/// screen (they used to share one line with the totals and were cut at the right edge).
#[test]
fn long_degradations_wrap() {
    const FIRST: &str = "ebpf: no BTF for this kernel (CONFIG_DEBUG_INFO_BTF is off), so \
        sockets created before kaipo started are attributed from /proc once a second and short \
        connections between two reads are counted as unattributed kernel traffic";
    const SECOND: &str = "ingress hook: the driver of eth0 has no native XDP, so incoming \
        frames are counted at the TC hook instead";
    snapshot_both("long_degradations", |s| {
        let mut update = fixtures::update(4);
        update.header.degradations = vec![FIRST.into(), SECOND.into()];
        s.ingest(update, fixtures::at(std::time::Instant::now(), 4));
    });
    let (mut state, _) = fixtures::state_with(Theme::PLAIN, 160, 40);
    let mut update = fixtures::update(4);
    update.header.degradations = vec![FIRST.into(), SECOND.into()];
    state.ingest(update, fixtures::at(std::time::Instant::now(), 4));
    let rows = rows_of(&render(&state, 160, 40));
    let header: String = rows[1..4]
        .iter()
        .map(|r| r.trim_end())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(header, format!("{FIRST} {SECOND}"));
    assert!(rows[4].starts_with("since start RX"), "{}", rows[4]);
    // Header (five lines), tab bar, footer and the table's title and column headers leave
    // 31 rows; paging moves by those.
    assert_eq!(state.viewport_rows(), 40 - 5 - 1 - 1 - 2);
}

/// A source that reports more than everything attributed still shows at most 100 %.
#[test]
fn attributed_share_never_shows_above_100_percent() {
    let (mut state, _) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let mut update = fixtures::update(4);
    update.header.attributed_ratio = Some(1.25);
    state.ingest(update, fixtures::at(std::time::Instant::now(), 4));
    let rows = rows_of(&render(&state, 80, 24));
    assert!(rows[0].contains("attributed 100.0%"), "{}", rows[0]);
}

/// nginx receives 540 kB/s at its peak and sends 2.85 MB/s: each chart says its own.
#[test]
fn detail_pane_labels_each_direction_with_its_own_peak() {
    let (mut state, _) = fixtures::state_with(Theme::PLAIN, 160, 40);
    state.apply(Action::Down);
    state.apply(Action::Open);
    assert_eq!(state.detail, Some(812));
    let screen = rows_of(&render(&state, 160, 40)).join("\n");
    assert!(
        screen.contains("RX, last 60 s, peak 527.3 KiB/s"),
        "{screen}"
    );
    assert!(screen.contains("TX, last 60 s, peak 2.7 MiB/s"), "{screen}");
}

/// The legend sits in each chart's title; inside the chart it covered the newest points.
#[test]
fn history_legend_leaves_the_newest_data_visible() {
    for (theme, rx, tx) in [
        (Theme::PLAIN, "RX (line) 3.4 GiB", "TX (dots) 1.7 GiB"),
        (Theme::COLOR, "RX 3.4 GiB", "TX 1.7 GiB"),
    ] {
        let (mut state, _) = fixtures::state_with(theme, 80, 24);
        state.apply(Action::ShowView(View::History));
        let now = std::time::Instant::now();
        state.history_answer(
            HistoryRange::LastHour,
            Ok(Some(fixtures::history(true))),
            now,
        );
        let rows = rows_of(&render(&state, 80, 24));
        assert!(rows[3].contains(rx) && rows[3].contains(tx), "{}", rows[3]);
        for row in &rows {
            assert!(!row.contains("│RX│") && !row.contains("┌──┐"), "{row}");
        }
        // The newest minute of the fixture sends 1.0 MB/s: its dot is drawn in the last
        // columns of the chart, where the legend box was.
        let chart = rows[4..10].iter().map(|r| {
            let tail: String = r.chars().skip(74).collect();
            tail
        });
        assert!(
            chart.clone().any(|t| t.trim() != ""),
            "{:?}",
            chart.collect::<Vec<_>>()
        );
    }
}

/// Service, TCP state and the executable come from the records themselves.
#[test]
fn service_state_and_exe_come_from_the_records() {
    let (mut state, _) = fixtures::state_with(Theme::PLAIN, 160, 40);
    state.apply(Action::ShowView(View::Connections));
    let rows = rows_of(&render(&state, 160, 40));
    let postgres = rows
        .iter()
        .find(|r| r.contains("10.0.0.7:50122"))
        .expect("postgres's connection");
    assert!(postgres.contains(" postgresql ESTABLISHED "), "{postgres}");
    let dns = rows
        .iter()
        .find(|r| r.contains("1.1.1.1:53"))
        .expect("the resolver's connection");
    assert!(dns.contains(" dns        - "), "{dns}");
    state.apply(Action::ShowView(View::Processes));
    state.apply(Action::Down);
    state.apply(Action::Open);
    let screen = rows_of(&render(&state, 160, 40)).join("\n");
    assert!(screen.contains("exe       /usr/sbin/nginx"), "{screen}");
}
