//! A synthetic load for `cargo xtask bench live`: how long one interval takes to ingest and
//! one frame to draw with many processes and connections.

use std::time::{Duration, Instant};

use ratatui::{backend::TestBackend, Terminal};

use super::{
    draw::draw,
    source::{HeaderInfo, LiveUpdate, SourceKind},
    state::LiveState,
    tabs::View,
    theme::Theme,
};
use crate::{
    collect::BackendKind,
    model::Lost,
    model::{Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord},
};

/// Frames drawn per view; the figure is their mean.
const FRAMES: u32 = 50;

#[derive(Clone, Copy, Debug)]
pub struct FrameTiming {
    /// Taking one interval in: every row updated, expired, counted, filtered and sorted.
    pub ingest: Duration,
    /// Drawing one frame of the slower of the Processes and Connections views.
    pub draw: Duration,
}

/// Interval number `n` (from 1) of a server with `processes` processes sharing
/// `connections` connections to 1000 remote hosts.
pub fn synthetic_update(processes: usize, connections: usize, n: u64) -> LiveUpdate {
    let processes = processes.max(1);
    let bytes = |i: usize| (i as u64 * 7919 + n * 104_729) % 1_000_000;
    let record = IntervalRecord {
        ts_ms: 1_795_684_399_000 + n * 1000,
        interval_ms: 1000,
        backend: BackendKind::Ebpf,
        interfaces: vec![InterfaceRecord {
            name: "eth0".into(),
            rx_bytes: bytes(1) * 100,
            tx_bytes: bytes(2) * 100,
            rx_packets: 10_000,
            tx_packets: 9_000,
        }],
        processes: (0..processes)
            .map(|i| ProcessRecord {
                pid: 1000 + i as u32,
                name: format!("worker-{i}"),
                cmdline: format!("/usr/bin/worker --id {i}"),
                uid: 1000,
                user: Some("svc".into()),
                container: (i % 3 == 0).then(|| format!("{:012x}", i * 977)),
                container_name: None,
                pod: None,
                pod_namespace: None,
                unit: None,
                exe: Some("/usr/bin/worker".into()),
                netns: Some(4_026_531_840),
                exited: false,
                rx_bytes: bytes(i),
                tx_bytes: bytes(i + 1),
                rx_packets: 10,
                tx_packets: 10,
            })
            .collect(),
        connections: (0..connections)
            .map(|j| ConnectionRecord {
                pid: 1000 + (j % processes) as u32,
                proto: if j % 4 == 0 { "udp" } else { "tcp" }.into(),
                local: format!("10.0.{}.{}:{}", j / 256 % 256, j % 256, 20_000 + j % 40_000),
                remote: format!("203.0.{}.{}:443", j % 1000 / 250, j % 250),
                remote_name: None,
                service: "https".into(),
                network: None,
                state: Some("ESTABLISHED".into()),
                rx_bytes: bytes(j) / 10,
                tx_bytes: bytes(j + 3) / 10,
            })
            .collect(),
        unattributed: Bytes::default(),
        attributed_ratio: None,
        attribution: Default::default(),
        lost: Lost::default(),
    };
    let header = HeaderInfo {
        backend: "ebpf".into(),
        source: SourceKind::Daemon,
        alerts: Vec::new(),
        attributed_ratio: Some(0.98),
        ..HeaderInfo::default()
    };
    LiveUpdate::new(record, header)
}

/// A state that has taken in three synthetic intervals.
pub fn synthetic_state(processes: usize, connections: usize) -> LiveState {
    let mut state = LiveState::new(Theme::COLOR);
    let start = Instant::now();
    for n in 1..=3 {
        let now = start + Duration::from_secs(n);
        state.ingest(synthetic_update(processes, connections, n), now);
    }
    state
}

/// Ingest and draw times at `width` x `height` (160 x 40 is the reference).
pub fn bench_frame(
    processes: usize,
    connections: usize,
    width: u16,
    height: u16,
) -> anyhow::Result<FrameTiming> {
    let mut state = synthetic_state(processes, connections);
    state.resize(width, height);
    let update = synthetic_update(processes, connections, 4);
    let started = Instant::now();
    state.ingest(update, Instant::now() + Duration::from_secs(4));
    let ingest = started.elapsed();

    let mut slowest = Duration::ZERO;
    for view in [View::Processes, View::Connections] {
        state.apply(super::input::Action::ShowView(view));
        let mut terminal = Terminal::new(TestBackend::new(width, height))?;
        let started = Instant::now();
        for _ in 0..FRAMES {
            terminal.draw(|frame| draw(frame, &state))?;
        }
        slowest = slowest.max(started.elapsed() / FRAMES);
    }
    Ok(FrameTiming {
        ingest,
        draw: slowest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "a benchmark: run with --release --ignored --nocapture"]
    fn frame_with_10k_connections_and_1k_processes() -> anyhow::Result<()> {
        let timing = bench_frame(1000, 10_000, 160, 40)?;
        println!(
            "1000 processes, 10000 connections, 160x40: ingest {:?}, draw {:?}",
            timing.ingest, timing.draw
        );
        assert!(timing.draw < Duration::from_millis(5), "{timing:?}");
        Ok(())
    }

    #[test]
    fn synthetic_state_holds_what_it_was_given() {
        let state = synthetic_state(10, 100);
        assert_eq!(state.processes.len(), 10);
        assert_eq!(state.connections.len(), 100);
        assert_eq!(state.remotes.len(), 100);
        assert_eq!(state.process(1003).map(|p| p.connections), Some(10));
    }
}
