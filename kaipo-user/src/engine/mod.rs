//! The interval engine every collecting command runs: `watch`, `live` (without a daemon) and
//! the daemon's collector stage. It starts a backend, drains lifecycle events as they come,
//! and on each tick closes an interval (read the counters, account the deltas, build the
//! record) and hands it to the command's [`Sink`].
//!
//! The first interval covers only what happened after the engine started: the counters are
//! read once right after every program is attached, and that reading is the baseline (the
//! kernel starts counting while the programs are still being attached, seconds before the
//! first tick).

pub mod accounting;
mod attribution;
mod records;
pub mod service;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use self::accounting::Accountant;
use crate::{
    collect::{
        backend::{self, Collector, Events, StartOptions},
        BackendKind, Degradation, Event, KernelSample,
    },
    config::names::{NamingSettings, SharedNames},
    dns::{reverse::ReverseNames, RemoteNames},
    model::IntervalRecord,
    procinfo::ProcessResolver,
    store::TrafficRow,
};

/// How often, in intervals, the socket map is swept of entries whose socket is gone, and how
/// long an entry must have been idle to be looked at. Entries of closed sockets normally leave
/// through their close mark; the sweep catches what escaped it (see README "How it counts").
pub const SWEEP_EVERY_INTERVALS: u64 = 30;
pub const SWEEP_IDLE_INTERVALS: u32 = 30;

/// A tick this close to the end of the run is its last.
const END_SLACK: Duration = Duration::from_millis(5);

/// What the engine needs to know, whichever command runs it.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    pub collect: StartOptions,
    /// Count loopback traffic in process and connection figures.
    pub include_loopback: bool,
    /// The user's service and network names (`[names]`).
    pub names: SharedNames,
}

/// One closed interval, as a sink receives it.
pub struct ClosedInterval {
    pub record: IntervalRecord,
    /// The interval's traffic per process, remote and service in the store's shape; only
    /// when the sink asked for it ([`Sink::wants_rows`]).
    pub rows: Vec<TrafficRow>,
    /// The last interval of the run.
    pub final_interval: bool,
}

/// Whether a sink can take an interval now.
pub enum Ready {
    /// Close the interval and deliver it.
    Now,
    /// Leave the interval open; the kernel keeps counting and the next tick covers both.
    Later,
    /// Nothing will take intervals any more: stop.
    Stop,
}

/// Where a command's closed intervals go.
#[expect(
    async_fn_in_trait,
    reason = "used through generics only; each sink's future is as Send as the sink"
)]
pub trait Sink {
    /// Asks for store rows with each interval (the daemon).
    fn wants_rows(&self) -> bool {
        false
    }

    /// Called before an interval is closed. The last interval of a run may wait here.
    async fn ready(&mut self, _final_interval: bool) -> Ready {
        Ready::Now
    }

    /// Takes one interval; `Ok(false)` stops the run after it.
    async fn deliver(
        &mut self,
        interval: ClosedInterval,
        collector: &Collector,
    ) -> anyhow::Result<bool>;
}

/// When intervals close and when the run ends.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub interval: Duration,
    /// Ends the run this long after the start, with a last (partial) interval.
    pub duration: Option<Duration>,
}

/// A started backend and the state that turns its counters into interval records.
pub struct Engine {
    collector: Collector,
    events: Events,
    accountant: Accountant,
    resolver: ProcessResolver,
    names: SharedNames,
    /// Names of remote addresses from the DNS answers sockets received.
    remote_names: RemoteNames,
    /// Reverse DNS for the remotes no answer named; `None`: off (the daemon's
    /// `names.reverse_dns`; `kaipo live` does its own on the dashboard's side).
    reverse: Option<ReverseNames>,
    /// New naming settings from a reload, applied at the next close.
    naming_updates: Option<tokio::sync::watch::Receiver<NamingSettings>>,
    dns_buffer: Vec<kaipo_common::DnsCapture>,
    /// DNS answers that could not be read since the last close.
    dns_malformed: u64,
    /// Socket cookie -> network namespace cookie, from owner events at socket creation:
    /// names are learnt and looked up per namespace even after the resolving process is gone.
    sock_netns: std::collections::HashMap<u64, u64>,
    buffer: Vec<Event>,
    malformed_reported: u64,
    backend: BackendKind,
    last_close: Instant,
    /// Intervals closed so far, which time the sweep.
    closed: u64,
}

impl Engine {
    /// The user's service and network names for the records from now on.
    pub fn set_names(&mut self, names: SharedNames) {
        self.names = names;
    }

    /// Turns reverse DNS for unnamed remotes on (a lookup thread of its own starts) or off
    /// (the thread ends, its cache goes).
    pub fn set_reverse_dns(&mut self, on: bool) {
        #[cfg(unix)]
        self.set_reverse_names(on.then(ReverseNames::system));
        // The lookups go through the C library's getnameinfo, which kaipo reaches on Unix only.
        #[cfg(not(unix))]
        if on {
            log::warn!("reverse DNS is not available on this system; remotes stay unnamed");
        }
    }

    /// Reverse DNS through `names` (tests give one with a resolver of their own); `None`: off.
    pub fn set_reverse_names(&mut self, names: Option<ReverseNames>) {
        match (&self.reverse, &names) {
            (None, Some(_)) => log::info!("reverse DNS on for remotes no DNS answer named"),
            (Some(_), None) => log::info!("reverse DNS off"),
            _ => {}
        }
        self.reverse = names;
    }

    /// Applies `settings` now and every value `updates` takes later, at the next close after
    /// it changed (the daemon's reload).
    pub fn follow_naming(&mut self, mut updates: tokio::sync::watch::Receiver<NamingSettings>) {
        let settings = updates.borrow_and_update().clone();
        self.apply_naming(settings);
        self.naming_updates = Some(updates);
    }

    fn apply_naming(&mut self, settings: NamingSettings) {
        self.set_names(settings.names);
        if settings.reverse_dns != self.reverse.is_some() {
            self.set_reverse_dns(settings.reverse_dns);
        }
    }

    /// Starts the chosen backend and takes the baseline reading.
    pub fn start(opts: &EngineOptions) -> anyhow::Result<Self> {
        let (collector, events) = backend::start(&opts.collect)?;
        let scoped = !opts.collect.ifaces.is_empty();
        let mut engine = Self::with_collector(collector, events, opts.include_loopback, scoped)?;
        engine.set_names(opts.names.clone());
        Ok(engine)
    }

    /// An engine over an already started collector (the daemon starts its own to drop
    /// privileges in between). `scoped`: interfaces were named, so process and connection
    /// figures count only traffic that crossed them.
    pub fn with_collector(
        collector: Collector,
        events: Events,
        include_loopback: bool,
        scoped: bool,
    ) -> anyhow::Result<Self> {
        let mut engine = Self {
            backend: collector.kind(),
            collector,
            events,
            accountant: Accountant::new(include_loopback).scoped_to_interfaces(scoped),
            resolver: ProcessResolver::new("/proc", "/etc"),
            names: SharedNames::default(),
            remote_names: RemoteNames::default(),
            reverse: None,
            naming_updates: None,
            dns_buffer: Vec::new(),
            dns_malformed: 0,
            sock_netns: std::collections::HashMap::new(),
            buffer: Vec::with_capacity(1024),
            malformed_reported: 0,
            last_close: Instant::now(),
            closed: 0,
        };
        engine.drain();
        let sample = engine.collector.sample()?;
        engine.drain();
        engine.apply_owners(&sample);
        engine.accountant.baseline(&sample);
        engine.malformed_reported = engine.events.malformed();
        engine.last_close = Instant::now();
        Ok(engine)
    }

    pub fn degradations(&self) -> &[Degradation] {
        self.collector.degradations()
    }

    /// The running collector (tests read its maps through it).
    pub fn collector(&self) -> &Collector {
        &self.collector
    }

    /// Applies every lifecycle event waiting in the ring buffer, then the DNS answers
    /// captured meanwhile.
    pub fn drain(&mut self) {
        self.events.drain(&mut self.buffer);
        let now = Instant::now();
        let events = std::mem::take(&mut self.buffer);
        for event in &events {
            self.apply(event, now);
        }
        self.buffer = events;
        self.buffer.clear();
        self.learn_names(now);
    }

    /// Applies one lifecycle event (from the ring buffer, or an owner report the kernel kept
    /// aside while the ring buffer was full).
    fn apply(&mut self, event: &Event, now: Instant) {
        self.accountant.on_event(event);
        let comm = accounting::comm_to_string(&event.comm);
        match event.kind {
            kaipo_common::EVENT_SOCK_OWNER => {
                // Bounded by the sockets the kernel map holds; entries go with their sockets
                // (see `close`).
                if event.netns_cookie != 0
                    && self.sock_netns.len() < 4 * kaipo_common::MAX_SOCKETS as usize
                {
                    self.sock_netns.insert(event.cookie, event.netns_cookie);
                }
                self.resolver.hint(event.tgid, &comm, event.uid, now);
                // Read /proc now, while a short-lived process is most likely still there.
                let _ = self.resolver.lookup(event.tgid, now);
            }
            kaipo_common::EVENT_PROC_EXIT => {
                self.resolver.note_exit(event.tgid, &comm, event.uid, now);
            }
            _ => {}
        }
    }

    /// Applies the owner reports a sample carries.
    fn apply_owners(&mut self, sample: &KernelSample) {
        let now = Instant::now();
        for event in &sample.owners {
            self.apply(event, now);
        }
    }

    /// Looks up, in the descriptor tables, the owners of sockets that carried traffic in
    /// `sample` with none reported (sockets older than kaipo that only receive, accepted ones
    /// whose process has not sent yet).
    fn find_owners(&mut self, sample: &KernelSample) {
        let ownerless = self.accountant.ownerless(sample);
        if ownerless.is_empty() {
            return;
        }
        let (cookies, mut protocols): (Vec<u64>, Vec<u8>) = ownerless.into_iter().unzip();
        protocols.sort_unstable();
        protocols.dedup();
        let mut found = Vec::new();
        self.collector.find_owners(&cookies, &protocols, &mut found);
        let now = Instant::now();
        for event in &found {
            self.apply(event, now);
        }
    }

    /// Reads the DNS answers captured since the last drain (after the lifecycle events, so
    /// the receiving socket's owner, and so its network namespace, is known).
    fn learn_names(&mut self, now: Instant) {
        self.collector.drain_dns(&mut self.dns_buffer);
        for capture in self.dns_buffer.drain(..) {
            let pid = self.accountant.owner_of(capture.cookie).map(|o| o.tgid);
            let netns = records::netns_key(
                &self.sock_netns,
                &mut self.resolver,
                capture.cookie,
                pid,
                now,
            );
            match crate::dns::answer_of(capture.packet(), capture.len) {
                Ok(Some(answer)) => self.remote_names.learn(netns, &answer, now),
                Ok(None) => {}
                Err(err) => {
                    log::debug!("DNS answer not read: {err}");
                    self.dns_malformed += 1;
                }
            }
        }
    }

    /// Closes an interval: everything since the previous close (or the baseline). Events
    /// first, then counters, then events again: an owner or close that raced with the read is
    /// applied before the interval is closed. `final_interval` flushes bytes still waiting
    /// for an owner.
    pub fn close(
        &mut self,
        final_interval: bool,
        with_rows: bool,
    ) -> anyhow::Result<ClosedInterval> {
        let update = self
            .naming_updates
            .as_mut()
            .filter(|u| u.has_changed().unwrap_or(false))
            .map(|u| u.borrow_and_update().clone());
        if let Some(settings) = update {
            self.apply_naming(settings);
        }
        self.drain();
        let sample = self.collector.sample()?;
        for change in &sample.iface_changes {
            eprintln!("kaipo: {change}");
        }
        self.drain();
        self.apply_owners(&sample);
        self.find_owners(&sample);
        let malformed = self.events.malformed() - self.malformed_reported;
        self.malformed_reported = self.events.malformed();
        let delta = self.accountant.finish(&sample, malformed, final_interval);
        let forgotten = self.accountant.take_forgotten();
        for cookie in &forgotten {
            self.sock_netns.remove(cookie);
        }
        self.collector.forget_sockets(&forgotten);
        self.closed += 1;
        if self.closed.is_multiple_of(SWEEP_EVERY_INTERVALS) {
            self.sweep();
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_close);
        self.last_close = now;
        self.ask_reverse(&delta, now);
        // Rows first: building the record expires the resolver's cache of exited processes.
        let rows = if with_rows {
            records::traffic_rows(
                &delta,
                &mut self.resolver,
                &records::Naming {
                    names: &self.names,
                    remotes: &self.remote_names,
                    reverse: self.reverse.as_ref(),
                    sock_netns: &self.sock_netns,
                },
                now,
            )
        } else {
            Vec::new()
        };
        let mut record = records::build(
            &delta,
            &mut self.resolver,
            &records::Naming {
                names: &self.names,
                remotes: &self.remote_names,
                reverse: self.reverse.as_ref(),
                sock_netns: &self.sock_netns,
            },
            self.backend,
            elapsed,
            now,
        );
        record.lost.dns_malformed = std::mem::take(&mut self.dns_malformed);
        self.remote_names.expire(now);
        Ok(ClosedInterval {
            record,
            rows,
            final_interval,
        })
    }

    /// Collects reverse DNS's answers since the last close and asks about this interval's
    /// remotes that neither a DNS answer nor reverse DNS named yet. Never waits: the lookups
    /// run on reverse DNS's own thread, their names show from the close after they arrive.
    fn ask_reverse(&mut self, delta: &accounting::IntervalDelta, now: Instant) {
        let Some(reverse) = self.reverse.as_mut() else {
            return;
        };
        reverse.take_answers();
        let naming = records::Naming {
            names: &self.names,
            remotes: &self.remote_names,
            reverse: None,
            sock_netns: &self.sock_netns,
        };
        for c in &delta.connections {
            let Some(ip) = records::reverse_candidate(c) else {
                continue;
            };
            if reverse.name(&ip).is_none()
                && naming.answered_name(&mut self.resolver, c, now).is_none()
            {
                reverse.ask(ip);
            }
        }
    }

    /// Removes socket-map entries that have been idle for [`SWEEP_IDLE_INTERVALS`] and whose
    /// socket no longer exists; returns how many. Runs every [`SWEEP_EVERY_INTERVALS`].
    pub fn sweep(&mut self) -> usize {
        let idle = self.accountant.idle_sockets(SWEEP_IDLE_INTERVALS);
        let gone = self.collector.sweep_sockets(&idle);
        self.accountant.drop_sockets(&gone);
        for cookie in &gone {
            self.sock_netns.remove(cookie);
        }
        if !gone.is_empty() {
            log::info!(
                "swept {} socket entries that no close mark reached",
                gone.len()
            );
        }
        gone.len()
    }

    /// Runs intervals into `sink` until the schedule's duration ends, `stop` resolves or the
    /// sink asks to stop, then closes a last interval. The programs are detached on return.
    pub async fn run(
        mut self,
        schedule: Schedule,
        sink: &mut impl Sink,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut ticker =
            tokio::time::interval_at((start + schedule.interval).into(), schedule.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = schedule.duration.map(|d| start + d);
        let end = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        tokio::pin!(end);
        loop {
            let final_interval = tokio::select! {
                // The end first: when the last tick and the end fall together, the run closes
                // one final interval rather than a full one and then an empty one. Ticks
                // before events, so a stream of events never holds an interval up.
                biased;
                () = &mut end => true,
                () = &mut stop => true,
                _ = ticker.tick() => deadline.is_some_and(|at| {
                    at.saturating_duration_since(Instant::now()) < END_SLACK
                }),
                ready = self.events.readable() => {
                    ready.context("waiting on the event ring buffer")?;
                    self.drain();
                    continue;
                }
            };
            match sink.ready(final_interval).await {
                Ready::Now => {}
                Ready::Later => continue,
                Ready::Stop => break,
            }
            let closed = self.close(final_interval, sink.wants_rows())?;
            if !sink.deliver(closed, &self.collector).await? || final_interval {
                break;
            }
            crate::platform::release_free_memory();
        }
        // Dropping the collector detaches every program.
        drop(self);
        Ok(())
    }
}
