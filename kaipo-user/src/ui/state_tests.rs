//! State logic without a terminal: sorting, filtering, selection, smoothing, expiry, keys.
//! Rates in the fixture: every connection carries `n` times its base bytes in interval
//! `n`, so after three one-second intervals a rate is twice the base.

use std::time::Duration;

use super::{
    fixtures::{self, at},
    input::{Action, Flow},
    state::{LiveState, EXITED_LINGER, IDLE_EXPIRY},
    tabs::{connections::ConnKey, remotes::RemoteAddr, RowKey, View},
    theme::Theme,
    units::RateUnit,
    widgets::columns::Column,
};

fn pids(state: &LiveState) -> Vec<u32> {
    let table = state.table(View::Processes).expect("table");
    table
        .order
        .iter()
        .map(|&i| state.processes.items()[i].pid)
        .collect()
}

fn remotes(state: &LiveState) -> Vec<String> {
    let table = state.table(View::Remotes).expect("table");
    table
        .order
        .iter()
        .map(|&i| state.remotes.items()[i].addr.to_string())
        .collect()
}

fn connection_remotes(state: &LiveState) -> Vec<&str> {
    let table = state.table(View::Connections).expect("table");
    table
        .order
        .iter()
        .map(|&i| state.connections.items()[i].key.remote.as_str())
        .collect()
}

fn type_filter(state: &mut LiveState, text: &str) {
    state.apply(Action::StartFilter);
    for c in text.chars() {
        state.apply(Action::FilterInput(c));
    }
    state.apply(Action::FilterDone);
}

#[test]
fn processes_sort_by_every_column() {
    let mut state = fixtures::state();
    let expected: [(Column, [u32; 6]); 12] = [
        (Column::Traffic, [4321, 812, 5150, 1290, 603, 700]),
        (Column::Pid, [5150, 4321, 1290, 812, 700, 603]),
        (Column::Name, [700, 5150, 812, 1290, 4321, 603]),
        (Column::User, [700, 5150, 1290, 4321, 603, 812]),
        (Column::Container, [603, 700, 812, 1290, 5150, 4321]),
        (Column::Unit, [4321, 700, 812, 1290, 5150, 603]),
        (Column::Conns, [812, 603, 700, 1290, 4321, 5150]),
        (Column::RxRate, [5150, 1290, 812, 4321, 603, 700]),
        (Column::TxRate, [4321, 812, 1290, 5150, 603, 700]),
        (Column::RxTotal, [5150, 1290, 812, 4321, 603, 700]),
        (Column::TxTotal, [4321, 812, 1290, 5150, 603, 700]),
        (Column::Command, [603, 700, 5150, 812, 1290, 4321]),
    ];
    for (column, order) in expected {
        let sort = state.table(View::Processes).expect("table").sort;
        assert_eq!(sort.column, column);
        assert_eq!(pids(&state), order, "sorted by {column:?}");
        state.apply(Action::NextSort);
    }
    // Round the cycle, and backwards.
    assert_eq!(
        state.table(View::Processes).expect("table").sort.column,
        Column::Traffic
    );
    state.apply(Action::PrevSort);
    assert_eq!(pids(&state), [603, 700, 5150, 812, 1290, 4321]);
    state.apply(Action::ReverseSort);
    assert_eq!(pids(&state), [4321, 1290, 812, 5150, 700, 603]);
}

#[test]
fn other_tables_sort_too() {
    let mut state = fixtures::state();
    state.apply(Action::ShowView(View::Connections));
    assert_eq!(
        connection_remotes(&state),
        [
            "52.95.110.1:443",
            "93.184.215.14:443",
            "198.51.100.23:51522",
            "10.0.0.7:50122",
            "[2001:db8::42]:40112",
            "203.0.113.9:60001",
            "1.1.1.1:53",
            "*",
        ]
    );
    for _ in 0..5 {
        state.apply(Action::NextSort);
    }
    assert_eq!(
        state.table(View::Connections).expect("table").sort.column,
        Column::Remote
    );
    assert_eq!(
        connection_remotes(&state),
        [
            "*",
            "1.1.1.1:53",
            "10.0.0.7:50122",
            "198.51.100.23:51522",
            "203.0.113.9:60001",
            "52.95.110.1:443",
            "93.184.215.14:443",
            "[2001:db8::42]:40112",
        ]
    );
    // Remote hosts sort as addresses, not as text: 52.x before 198.x, IPv6 after IPv4.
    state.apply(Action::ShowView(View::Remotes));
    state.apply(Action::NextSort);
    assert_eq!(
        remotes(&state),
        [
            "1.1.1.1",
            "10.0.0.7",
            "52.95.110.1",
            "93.184.215.14",
            "198.51.100.23",
            "203.0.113.9",
            "2001:db8::42",
            "*",
        ]
    );
    state.apply(Action::NextSort);
    // By resolved name: unnamed hosts ("") first, then client-23, then one.one.one.one.
    assert_eq!(remotes(&state)[6..], ["198.51.100.23", "1.1.1.1"]);
    state.apply(Action::ShowView(View::Interfaces));
    state.apply(Action::NextSort);
    state.apply(Action::ReverseSort);
    let names: Vec<&str> = state
        .table(View::Interfaces)
        .expect("table")
        .order
        .iter()
        .map(|&i| state.interfaces.items()[i].name.as_str())
        .collect();
    assert_eq!(names, ["wg0", "eth0"]);
}

#[test]
fn filter_matches_names_users_containers_and_addresses() {
    let mut state = fixtures::state();
    type_filter(&mut state, "198.51.100");
    assert_eq!(pids(&state), [812]);
    assert_eq!(connection_remotes(&state), ["198.51.100.23:51522"]);
    assert_eq!(remotes(&state), ["198.51.100.23"]);
    state.apply(Action::Close);
    assert_eq!(state.filter(), "");
    assert_eq!(pids(&state).len(), 6);

    type_filter(&mut state, "ALICE");
    assert_eq!(pids(&state), [5150]);
    assert_eq!(connection_remotes(&state), ["93.184.215.14:443"]);
    state.apply(Action::StartFilter);
    for _ in 0..5 {
        state.apply(Action::FilterBackspace);
    }
    for c in "3f2a9c".chars() {
        state.apply(Action::FilterInput(c));
    }
    assert_eq!(pids(&state), [4321]);
    state.apply(Action::FilterCancel);
    assert_eq!(pids(&state).len(), 6);

    type_filter(&mut state, "client-23");
    assert_eq!(remotes(&state), ["198.51.100.23"]);
    assert_eq!(pids(&state), Vec::<u32>::new());
    type_filter(&mut state, "/usr/sbin/nginx");
    assert_eq!(pids(&state), Vec::<u32>::new(), "appends to the filter");
    state.apply(Action::Close);
    type_filter(&mut state, "/usr/sbin/nginx");
    assert_eq!(pids(&state), [812], "the executable path");
}

#[test]
fn selection_follows_its_row_when_the_order_changes() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    assert_eq!(state.selected(), Some(&RowKey::Process(4321)));
    for _ in 0..3 {
        state.apply(Action::Down);
    }
    assert_eq!(state.selected(), Some(&RowKey::Process(1290)));
    assert_eq!(state.table(View::Processes).expect("table").cursor, 3);

    // postgres becomes the busiest and moves to the top; the selection goes with it.
    let mut update = fixtures::update(4);
    for c in &mut update.record.connections {
        if c.pid == 1290 {
            c.rx_bytes = 50_000_000;
        }
    }
    for p in &mut update.record.processes {
        if p.pid == 1290 {
            p.rx_bytes = 50_000_000;
        }
    }
    state.ingest(update, at(start, 4));
    assert_eq!(pids(&state)[0], 1290);
    assert_eq!(state.selected(), Some(&RowKey::Process(1290)));
    assert_eq!(state.table(View::Processes).expect("table").cursor, 0);

    // In the Connections view by connection identity.
    state.apply(Action::ShowView(View::Connections));
    state.apply(Action::End);
    let chrony = ConnKey {
        pid: 700,
        proto: "udp".into(),
        local: "10.0.0.5:123".into(),
        remote: "*".into(),
    };
    assert_eq!(state.selected(), Some(&RowKey::Connection(chrony.clone())));
    state.apply(Action::ReverseSort);
    assert_eq!(state.selected(), Some(&RowKey::Connection(chrony)));
    assert_eq!(state.table(View::Connections).expect("table").cursor, 0);
}

#[test]
fn a_vanished_selection_moves_to_the_row_that_took_its_place() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    state.apply(Action::Down);
    state.apply(Action::Down);
    assert_eq!(state.selected(), Some(&RowKey::Process(5150)));
    assert!(state.tick(at(start, 3) + EXITED_LINGER));
    assert_eq!(pids(&state), [4321, 812, 1290, 603, 700]);
    assert_eq!(state.selected(), Some(&RowKey::Process(1290)));
}

#[test]
fn rates_average_the_last_three_intervals() {
    let start = std::time::Instant::now();
    let mut state = LiveState::new(Theme::PLAIN);
    let nginx_rx = [180_000.0, 270_000.0, 360_000.0, 540_000.0];
    for (n, expected) in (1..=4).zip(nginx_rx) {
        state.ingest(fixtures::update(n), at(start, n));
        let nginx = state.process(812).expect("nginx");
        assert_eq!(nginx.meter.rate.rx(), expected, "after interval {n}");
    }
    let nginx = state.process(812).expect("nginx");
    assert_eq!(nginx.meter.totals.rx, 180_000 * 10);
    assert_eq!(nginx.meter.totals.tx, 950_000 * 10);
    // curl sent nothing in interval 4: a zero joins its window.
    let curl = state.process(5150).expect("curl");
    assert_eq!(curl.meter.rate.rx(), 4_400_000.0 / 3.0);
    assert_eq!(curl.meter.totals.rx, 880_000 * 6);
    // Interfaces: eth0 (2 + 3 + 4) * 1.6 MB over 3 s plus wg0 (2 + 3 + 4) * 52 kB.
    assert_eq!(state.interface_rates(), (4_956_000.0, 10_944_000.0));
    assert_eq!(state.interface_totals().rx, 10 * (1_600_000 + 52_000));
    assert_eq!(state.lost_total(), 3);
}

#[test]
fn exited_processes_linger_five_seconds_then_go_with_their_connections() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let curl = state.process(5150).expect("curl");
    assert!(curl.exited());
    assert_eq!(curl.meter.totals.rx, 880_000 * 6);
    let exited = at(start, 3);
    assert!(!state.tick(exited + EXITED_LINGER - Duration::from_millis(1)));
    assert!(state.process(5150).is_some());
    assert!(state.tick(exited + EXITED_LINGER));
    assert!(state.process(5150).is_none());
    assert_eq!(state.connections.len(), 7);
    // Its remote host stays until idle, with no connections left.
    let remote = state
        .remotes
        .get(&RemoteAddr::Ip("93.184.215.14".parse().expect("ip")))
        .expect("remote");
    assert_eq!((remote.connections, remote.processes), (0, 0));
    // A minute without traffic empties every table but the interfaces.
    assert!(state.tick(exited + IDLE_EXPIRY));
    assert_eq!(
        (
            state.processes.len(),
            state.connections.len(),
            state.remotes.len()
        ),
        (0, 0, 0)
    );
    assert_eq!(state.interfaces.len(), 2);
    assert_eq!(state.selected(), None);
}

#[test]
fn a_reused_pid_starts_afresh() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let mut update = fixtures::update(4);
    let mut sshd = update.record.processes[0].clone();
    sshd.pid = 5150;
    sshd.name = "sshd".into();
    sshd.rx_bytes = 1234;
    update.record.processes.push(sshd);
    state.ingest(update, at(start, 4));
    let p = state.process(5150).expect("sshd");
    assert_eq!(
        (p.name.as_str(), p.exited(), p.meter.totals.rx),
        ("sshd", false, 1234)
    );
}

#[test]
fn identity_follows_the_newest_record() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let mut update = fixtures::update(4);
    for p in &mut update.record.processes {
        if p.pid == 700 {
            p.user = None;
            p.uid = 995;
            p.cmdline = "/usr/sbin/chronyd -d".into();
        }
    }
    for p in &mut update.record.processes {
        if p.pid == 700 {
            p.exe = None;
        }
    }
    state.ingest(update, at(start, 4));
    let chrony = state.process(700).expect("chronyd");
    assert_eq!(chrony.user_label(), "995");
    assert_eq!(chrony.cmdline, "/usr/sbin/chronyd -d");
    // An executable once known stays known when a snapshot lacks it.
    assert_eq!(chrony.exe.as_deref(), Some("/usr/sbin/chronyd"));
    type_filter(&mut state, "chronyd -d");
    assert_eq!(pids(&state), [700]);
}

/// Paused, the screen holds still but every interval is still counted: resuming shows
/// totals that include the paused time (the old pause dropped those intervals).
#[test]
fn pause_freezes_the_screen_but_keeps_counting() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let before = state.interface_totals();
    assert_eq!(before.rx, 6 * (1_600_000 + 52_000));
    assert_eq!(state.apply(Action::TogglePause), Flow::Continue);
    assert!(state.paused());
    state.ingest(fixtures::update(4), at(start, 4));
    state.ingest(fixtures::update(5), at(start, 5));
    // On screen: the picture taken at pause.
    assert_eq!(state.shown().intervals(), 3);
    assert_eq!(state.shown().interface_totals(), before);
    assert_eq!(
        state.shown().process(812).map(|p| p.meter.totals.rx),
        Some(180_000 * 6)
    );
    // Behind it, everything counted.
    assert_eq!(state.intervals(), 5);
    assert_eq!(
        state.interface_totals().rx,
        (1 + 2 + 3 + 4 + 5) * (1_600_000 + 52_000)
    );
    // Keys move through the paused screen: sorted by PID while paused, python3 (selected,
    // the busiest) is second after curl, and one row down is postgres.
    state.apply(Action::NextSort);
    assert_eq!(pids(state.shown()), [5150, 4321, 1290, 812, 700, 603]);
    state.apply(Action::Down);
    assert_eq!(state.shown().selected(), Some(&RowKey::Process(1290)));
    assert_eq!(state.shown().process(5150).map(|p| p.exited()), Some(true));
    // Expiry goes on behind the screen without redrawing it.
    assert!(!state.tick(at(start, 3) + EXITED_LINGER));
    assert!(state.shown().process(5150).is_some());
    assert!(state.process(5150).is_none());

    state.apply(Action::TogglePause);
    assert!(!state.paused());
    assert_eq!(state.shown().intervals(), 5);
    assert_eq!(
        state.process(812).map(|p| p.meter.totals.rx),
        Some(180_000 * 15)
    );
    // The sort and selection made while paused stay.
    let table = state.table(View::Processes).expect("table");
    assert_eq!(table.sort.column, Column::Pid);
    assert_eq!(state.selected(), Some(&RowKey::Process(1290)));
    assert_eq!(pids(&state), [4321, 1290, 812, 700, 603]);
}

#[test]
fn units_toggle_between_bytes_and_bits() {
    let mut state = fixtures::state();
    let (rx, _) = state.interface_rates();
    assert_eq!(state.unit().rate(rx), "3.2 MiB/s");
    state.apply(Action::ToggleUnits);
    assert_eq!(state.unit(), RateUnit::Bits);
    assert_eq!(state.unit().rate(rx), "26.4 Mbit/s");
    let nginx_tx = state.process(812).expect("nginx").meter.rate.tx();
    assert_eq!(state.unit().amount(nginx_tx), "15.2 Mbit");
    state.apply(Action::ToggleUnits);
    assert_eq!(state.unit().amount(nginx_tx), "1.8 MiB");
}

#[test]
fn remote_names_arrive_with_snapshots_or_through_the_hook() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let mut update = fixtures::update(4);
    update.remote_names = vec![
        ("10.0.0.7".parse().expect("ip"), "db-replica".into()),
        ("192.0.2.1".parse().expect("ip"), "not on screen".into()),
    ];
    state.ingest(update, at(start, 4));
    let replica = RemoteAddr::Ip("10.0.0.7".parse().expect("ip"));
    let name = state.remotes.get(&replica).and_then(|r| r.name.clone());
    assert_eq!(name.as_deref(), Some("db-replica"));
    assert_eq!(state.remotes.len(), 8);
    assert!(!state.set_remote_name("192.0.2.1".parse().expect("ip"), "nobody"));
    let batch = [
        ("203.0.113.9".parse().expect("ip"), "edge-9".to_string()),
        ("192.0.2.2".parse().expect("ip"), "gone".to_string()),
    ];
    assert_eq!(state.set_remote_names(batch), 1);
    type_filter(&mut state, "replica");
    assert_eq!(remotes(&state), ["10.0.0.7"]);
    state.apply(Action::Close);
    type_filter(&mut state, "edge-9");
    assert_eq!(remotes(&state), ["203.0.113.9"]);
}

#[test]
fn history_is_asked_for_only_while_its_view_is_open() {
    let mut state = fixtures::state();
    let now = std::time::Instant::now();
    assert_eq!(state.history_wanted(now), None);
    state.apply(Action::ShowView(View::History));
    assert_eq!(
        state.history_wanted(now),
        Some(super::source::HistoryRange::LastHour)
    );
}

/// A record's `remote_name` (from the DNS answers the process's namespace received) names the
/// remote host, and the filter finds it by that name.
#[test]
fn remote_names_from_dns_answers_name_the_remote_hosts() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let mut update = fixtures::update(4);
    for c in &mut update.record.connections {
        if c.remote.starts_with("52.95.110.1:") {
            c.remote_name = Some("s3.eu-west-1.amazonaws.com".into());
        }
    }
    state.ingest(update, at(start, 4));
    let s3 = RemoteAddr::Ip("52.95.110.1".parse().expect("ip"));
    let name = state.remotes.get(&s3).and_then(|r| r.name.clone());
    assert_eq!(name.as_deref(), Some("s3.eu-west-1.amazonaws.com"));
    type_filter(&mut state, "amazonaws");
    assert_eq!(remotes(&state), ["52.95.110.1"]);
}

/// A reverse-DNS name (through the hook or with a snapshot) does not replace the name a DNS
/// answer gave.
#[test]
fn names_from_dns_answers_win_over_reverse_lookups() {
    let (mut state, start) = fixtures::state_with(Theme::PLAIN, 80, 24);
    let mut update = fixtures::update(4);
    for c in &mut update.record.connections {
        if c.remote.starts_with("52.95.110.1:") {
            c.remote_name = Some("backups.example.com".into());
        }
    }
    let s3_ip: std::net::IpAddr = "52.95.110.1".parse().expect("ip");
    update.remote_names = vec![(s3_ip, "s3-r-w.eu-west-1.amazonaws.com".into())];
    state.ingest(update, at(start, 4));
    assert!(!state.set_remote_name(s3_ip, "ec2-52-95-110-1.compute.amazonaws.com"));
    let s3 = RemoteAddr::Ip(s3_ip);
    let name = state.remotes.get(&s3).and_then(|r| r.name.clone());
    assert_eq!(name.as_deref(), Some("backups.example.com"));
}
