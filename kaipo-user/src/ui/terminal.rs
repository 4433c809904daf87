//! The real terminal: raw mode and the alternate screen behind a guard, and the loop that
//! feeds keys and snapshots into the state and draws it.
//!
//! Keys come from a plain thread blocking in crossterm's reader and feeding a bounded tokio
//! channel, rather than crossterm's `event-stream` feature: no extra dependencies (futures),
//! and the thread polls with a timeout so it notices shutdown within 100 ms.

use std::{
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Once,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use ratatui::{
    backend::{Backend, CrosstermBackend},
    crossterm::{
        cursor,
        event::{self, Event},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
    Terminal,
};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use super::{
    draw::draw,
    input::{handle_event, Flow},
    source::{HistoryRange, LiveSource, LiveUpdate},
    state::LiveState,
    theme::Theme,
};
use crate::store::Report;

/// Snapshots redraw at most this often; keys and resizes redraw at once.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);
/// How often exited and idle rows are expired when no snapshot arrives.
const TICK: Duration = Duration::from_secs(1);
const EVENT_QUEUE: usize = 64;
const READER_POLL: Duration = Duration::from_millis(100);

/// Whether the terminal is in dashboard mode, so restoring happens exactly once whether the
/// guard, the panic hook or both get there.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

fn restore() -> io::Result<()> {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let raw = terminal::disable_raw_mode();
    let screen = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    raw.and(screen)
}

/// Restores the terminal before the panic message prints, or the message would land on the
/// alternate screen and vanish with it.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}

/// Raw mode, alternate screen and hidden cursor for as long as it lives.
pub struct TerminalGuard(());

impl TerminalGuard {
    pub fn enter() -> anyhow::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        let guard = Self(());
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .context("cannot switch to the alternate screen")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Err(e) = restore() {
            log::warn!("cannot restore the terminal: {e}");
        }
    }
}

fn spawn_reader(
    events: mpsc::Sender<io::Result<Event>>,
    stop: Arc<AtomicBool>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("kaipo-live-keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let event = match event::poll(READER_POLL) {
                    Ok(false) => continue,
                    Ok(true) => event::read(),
                    Err(e) => Err(e),
                };
                let failed = event.is_err();
                if events.blocking_send(event).is_err() || failed {
                    break;
                }
            }
        })
}

/// Runs the dashboard on the process's terminal until `q` or Ctrl-C.
pub async fn run(mut source: impl LiveSource, theme: Theme) -> anyhow::Result<()> {
    let guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))
        .context("cannot draw on the terminal")?;
    let size = terminal.size().context("cannot read the terminal size")?;
    let mut state = LiveState::new(theme);
    state.resize(size.width, size.height);
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, mut events) = mpsc::channel(EVENT_QUEUE);
    let reader = spawn_reader(sender, Arc::clone(&stop)).context("cannot start the key reader")?;
    let result = drive(&mut terminal, &mut events, &mut source, &mut state).await;
    stop.store(true, Ordering::Relaxed);
    // A reader blocked on a full queue wakes up to a closed channel.
    drop(events);
    drop(terminal);
    drop(guard);
    // The reader must be gone before the caller reads stdin or prints a summary.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    result
}

#[expect(
    clippy::large_enum_variant,
    reason = "one value at a time passes from the feed to the drawing loop"
)]
enum Feed {
    Update(anyhow::Result<Option<Box<LiveUpdate>>>),
    History(HistoryRange, anyhow::Result<Option<Report>>),
}

/// The loop behind [`run`], on any backend: tests drive it with a `TestBackend` and a
/// channel of scripted events. Returns on quit, or when `events` closes.
pub async fn drive<B: Backend, S: LiveSource>(
    terminal: &mut Terminal<B>,
    events: &mut mpsc::Receiver<io::Result<Event>>,
    source: &mut S,
    state: &mut LiveState,
) -> anyhow::Result<()> {
    let mut source_open = true;
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        if dirty && last_draw.is_none_or(|at| now.duration_since(at) >= FRAME_INTERVAL) {
            terminal.draw(|frame| draw(frame, state))?;
            last_draw = Some(now);
            dirty = false;
        }
        let redraw_at = match (dirty, last_draw) {
            (true, Some(at)) => Some(at + FRAME_INTERVAL),
            _ => None,
        };
        let wanted = state.history_wanted(now);
        if let Some(range) = wanted {
            state.history_begin(range);
        }
        let feed = async {
            match wanted {
                Some(range) => Feed::History(range, source.history(range).await),
                None => Feed::Update(source.next().await.map(|u| u.map(Box::new))),
            }
        };
        tokio::select! {
            // A snapshot already waiting is older than any key pressed after it.
            biased;
            feed = feed, if source_open || wanted.is_some() => {
                let now = Instant::now();
                match feed {
                    Feed::Update(Ok(Some(update))) => state.ingest(*update, now),
                    Feed::Update(Ok(None)) => {
                        source_open = false;
                        state.source_ended(None);
                    }
                    Feed::Update(Err(e)) => {
                        source_open = false;
                        state.source_ended(Some(format!("{e:#}")));
                    }
                    Feed::History(range, answer) => state.history_answer(range, answer, now),
                }
                dirty = true;
            }
            event = events.recv() => {
                let event = match event {
                    Some(event) => event.context("cannot read the terminal")?,
                    None => return Ok(()),
                };
                if handle_event(state, &event) == Flow::Quit {
                    return Ok(());
                }
                terminal.draw(|frame| draw(frame, state))?;
                last_draw = Some(Instant::now());
                dirty = false;
            }
            _ = tokio::time::sleep_until(redraw_at.unwrap_or(now).into()), if redraw_at.is_some() => {}
            _ = ticker.tick() => dirty |= state.tick(Instant::now()),
        }
    }
}
