//! The dashboard's event loop on a `TestBackend`: snapshots from a `FakeSource`, keys from
//! a channel, no terminal and no sleeping. The loop takes a waiting snapshot before a waiting
//! key, so every scripted run is deterministic.

use std::io;

use kaipo::{
    collect::BackendKind,
    model::Lost,
    model::{Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord},
    store::{Report, SeriesPoint, Tier},
    ui::{
        draw::draw, state::SourceStatus, terminal::drive, FakeSource, HeaderInfo, HistoryRange,
        LiveSource, LiveState, LiveUpdate, SourceKind, Theme, View,
    },
};
use ratatui::{
    backend::TestBackend,
    crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};
use tokio::sync::mpsc;

fn update(n: u64) -> LiveUpdate {
    let record = IntervalRecord {
        attributed_ratio: None,
        attribution: Default::default(),
        ts_ms: 1_795_684_400_000 + n * 1000,
        interval_ms: 1000,
        backend: BackendKind::Ebpf,
        interfaces: vec![InterfaceRecord {
            name: "eth0".into(),
            rx_bytes: 2048 * n,
            tx_bytes: 1024 * n,
            rx_packets: n,
            tx_packets: n,
        }],
        processes: vec![ProcessRecord {
            exe: None,
            pid: 4242,
            name: "iperf3".into(),
            cmdline: "iperf3 -c 10.0.0.2".into(),
            uid: 0,
            user: Some("root".into()),
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns: None,
            exited: false,
            rx_bytes: 1000 * n,
            tx_bytes: 500 * n,
            rx_packets: n,
            tx_packets: n,
        }],
        connections: vec![ConnectionRecord {
            service: String::new(),
            network: None,
            state: None,
            pid: 4242,
            proto: "tcp".into(),
            local: "10.0.0.1:5201".into(),
            remote: "10.0.0.2:40000".into(),
            remote_name: None,
            rx_bytes: 1000 * n,
            tx_bytes: 500 * n,
        }],
        unattributed: Bytes::default(),
        lost: Lost::default(),
    };
    let header = HeaderInfo {
        backend: "ebpf".into(),
        source: SourceKind::Daemon,
        alerts: Vec::new(),
        ..HeaderInfo::default()
    };
    LiveUpdate::new(record, header)
}

fn key(c: char) -> io::Result<Event> {
    Ok(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

fn screen(state: &LiveState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal.draw(|f| draw(f, state)).expect("draw");
    terminal.backend().to_string()
}

async fn run_script(
    source: &mut impl LiveSource,
    keys: Vec<io::Result<Event>>,
) -> anyhow::Result<LiveState> {
    let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
    let mut state = LiveState::new(Theme::PLAIN);
    state.resize(80, 24);
    let (sender, mut events) = mpsc::channel(16);
    for k in keys {
        sender.send(k).await?;
    }
    // Once the script is read, the closed channel ends the loop like a closed terminal.
    drop(sender);
    drive(&mut terminal, &mut events, source, &mut state).await?;
    Ok(state)
}

#[tokio::test]
async fn ingests_every_snapshot_then_quits_on_q() -> anyhow::Result<()> {
    let mut source = FakeSource::new((1..=3).map(update));
    let state = run_script(&mut source, vec![key('u'), key('q')]).await?;
    assert_eq!(state.intervals(), 3);
    assert_eq!(state.interface_rates(), (4096.0, 2048.0));
    let screen = screen(&state);
    assert!(screen.contains("RX 32.8 kbit/s"), "{screen}");
    assert!(
        screen.contains("source ended, showing its last data"),
        "{screen}"
    );
    assert!(screen.contains("iperf3"), "{screen}");
    Ok(())
}

#[tokio::test]
async fn history_is_asked_for_when_its_view_opens() -> anyhow::Result<()> {
    let mut source = FakeSource::new([update(1)]);
    let report = Report {
        from_ms: 0,
        to_ms: 3_600_000,
        tier: Some(Tier::Minute),
        series: vec![SeriesPoint {
            ts_ms: 60_000,
            rx_bytes: 6_000_000,
            tx_bytes: 600_000,
        }],
        ..Report::default()
    };
    source.history.insert(HistoryRange::LastHour, report);
    let state = run_script(&mut source, vec![key('5'), key('q')]).await?;
    assert_eq!(state.view(), View::History);
    assert_eq!(
        source.history_requests,
        [HistoryRange::LastHour, HistoryRange::LastDay]
    );
    let screen = screen(&state);
    // 6 MB in a one-minute bucket is 100 kB/s.
    assert!(screen.contains("peak 97.7 KiB/s"), "{screen}");
    assert!(screen.contains("No history for this range."), "{screen}");
    Ok(())
}

struct Failing;

impl LiveSource for Failing {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        Err(anyhow::anyhow!("daemon closed the subscription"))
    }
}

#[tokio::test]
async fn a_failed_source_is_shown_and_input_closing_ends_the_loop() -> anyhow::Result<()> {
    // No keys at all: the closed channel ends the loop once the source has failed.
    let state = run_script(&mut Failing, Vec::new()).await?;
    assert_eq!(state.table(View::Processes).map(|t| t.order.len()), Some(0));
    let screen = screen(&state);
    assert!(
        screen.contains("The source failed: daemon closed the subscription"),
        "{screen}"
    );
    assert!(matches!(
        source_status(&state),
        SourceStatus::Failed(e) if e == "daemon closed the subscription"
    ));
    Ok(())
}

#[tokio::test]
async fn a_terminal_read_error_is_returned() {
    let mut source = FakeSource::new([]);
    let result = run_script(&mut source, vec![Err(io::Error::other("tty gone"))]).await;
    let error = result.err().map(|e| format!("{e:#}"));
    assert_eq!(error.as_deref(), Some("cannot read the terminal: tty gone"));
}

fn source_status(state: &LiveState) -> SourceStatus {
    state.source_status().clone()
}
