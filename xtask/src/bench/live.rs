//! `cargo xtask bench live`: the dashboard's cost. One frame with 10k connections and 1k
//! processes, and the CPU the dashboard's loop uses at its default refresh (one snapshot a
//! second) with 1k processes, drawn into an in-memory terminal.

use std::time::{Duration, Instant};

use ::kaipo::ui::{
    bench::{bench_frame, synthetic_update},
    state::LiveState,
    terminal::drive,
    LiveSource, LiveUpdate, Theme,
};
use ratatui::{backend::TestBackend, Terminal};
use tokio::sync::mpsc;

/// Hands out one snapshot a second, like the daemon or the embedded collector.
struct PacedSource {
    next_at: tokio::time::Instant,
    n: u64,
    limit: u64,
    processes: usize,
    connections: usize,
}

impl LiveSource for PacedSource {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        if self.n == self.limit {
            return Ok(None);
        }
        tokio::time::sleep_until(self.next_at).await;
        self.next_at += Duration::from_secs(1);
        self.n += 1;
        Ok(Some(synthetic_update(
            self.processes,
            self.connections,
            self.n,
        )))
    }
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub fn run() -> anyhow::Result<()> {
    let runs = 20;
    let mut draws = Vec::new();
    let mut ingests = Vec::new();
    for _ in 0..runs {
        let t = bench_frame(1000, 10_000, 160, 40)?;
        draws.push(t.draw);
        ingests.push(t.ingest);
    }
    draws.sort();
    ingests.sort();
    println!("## Live dashboard (`cargo xtask bench live`)\n");
    println!(
        "- One frame, 1000 processes and 10,000 connections at 160x40 (median of {runs}): draw \
         {:.2} ms (target < 5 ms); taking in one interval: {:.2} ms",
        draws[runs / 2].as_secs_f64() * 1e3,
        ingests[runs / 2].as_secs_f64() * 1e3
    );

    let seconds = 15;
    let (processes, connections) = (1000, 2000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (cpu, wall) = runtime.block_on(async {
        let mut terminal = Terminal::new(TestBackend::new(160, 40))?;
        let mut state = LiveState::new(Theme::COLOR);
        // No keys are pressed; the loop ends when this channel closes after the last snapshot.
        let (keys, mut events) = mpsc::channel(1);
        let mut source = PacedSource {
            next_at: tokio::time::Instant::now() + Duration::from_secs(1),
            n: 0,
            limit: seconds,
            processes,
            connections,
        };
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        let stop = async {
            tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(500)).await;
            drop(keys);
        };
        let (driven, ()) = tokio::join!(
            drive(&mut terminal, &mut events, &mut source, &mut state),
            stop
        );
        driven?;
        anyhow::Ok((cpu_time() - cpu0, wall0.elapsed()))
    })?;
    println!(
        "- The dashboard's loop at its default refresh (one snapshot a second) with {processes} \
         processes and {connections} connections, {seconds} s, drawn into an in-memory terminal: \
         {:.2}% of one core ({:.0} ms of CPU in {:.1} s; target < 3%; a real terminal adds the \
         cost of writing the changed cells)",
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64()
    );
    Ok(())
}
