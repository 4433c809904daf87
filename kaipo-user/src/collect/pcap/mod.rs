//! The libpcap collector: the fallback where eBPF cannot load (macOS, Windows, and Linux hosts
//! without BTF, cgroup v2 or the capabilities).
//!
//! One thread per interface captures headers only (snap length 128), counts frames per
//! interface and IP bytes per flow; each [`PcapCollector::sample`] takes the flows, maps them to
//! sockets through the operating system's socket tables, and returns the same cumulative
//! [`KernelSample`] the eBPF backend does, with socket owners arriving as the same
//! [`kaipo_common::Event`]s.
//! What this cannot see as well as the kernel programs do is listed in
//! [`PcapCollector::degradations`].

mod attribute;
mod capture;
pub(crate) mod devices;
pub mod error;
mod events;
mod owners;
pub mod parse;
pub mod sockets;

use std::{
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
};

use kaipo_common::{counter, FlowCounters, LOOPBACK_IFINDEX};

use self::{
    attribute::Attribution,
    capture::{AddrBook, IfaceIdentity, Shared},
    events::EventQueue,
    owners::OwnerTracker,
    sockets::{PlatformSource, SocketTable},
};
pub use self::{
    attribute::UNATTRIBUTED_COOKIE,
    capture::PcapDrops,
    error::PcapError,
    events::{PcapEvents, EVENT_QUEUE_CAPACITY},
};
use super::{Degradation, Interface, KernelSample};

/// Samples between re-reads of the host's addresses (which tell sent from received frames).

#[derive(Clone, Debug)]
pub struct Options {
    /// Interfaces to capture on; empty means every interface that is up, except loopback.
    /// `any` (Linux) captures every interface at once.
    pub ifaces: Vec<String>,
    /// A pcap filter expression, compiled and applied in the kernel.
    pub filter: Option<String>,
    /// Bytes kept of each frame: headers are all kaipo reads.
    pub snaplen: i32,
    /// Kernel capture buffer per interface, in bytes.
    pub buffer_size: i32,
    /// Deliver each frame as it arrives. Off by default: on Linux, libpcap then falls back from
    /// the TPACKET_V3 ring, which hands frames over a block at a time, to TPACKET_V2, which
    /// wakes the capture for nearly every frame; under a 64-byte flood that cost kaipo about ten
    /// times the CPU (BENCHMARKS.md, pcap backend). Without it, frames wait at most the read
    /// timeout (250 ms), well inside one sample interval.
    pub immediate: bool,
    /// Distinct flows per interface per sample; frames of further flows count as unattributed.
    pub max_flows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ifaces: Vec::new(),
            filter: None,
            snaplen: 128,
            buffer_size: 8 << 20,
            immediate: false,
            max_flows: 65_536,
        }
    }
}

/// A running capture thread; stops and joins it when dropped.
struct CaptureThread {
    iface: Interface,
    loopback: bool,
    shared: Arc<Shared>,
    breaker: ::pcap::BreakLoop,
    thread: Option<JoinHandle<()>>,
}

impl Drop for CaptureThread {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.breaker.breakloop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct PcapCollector {
    captures: Vec<CaptureThread>,
    ifaces: Vec<Interface>,
    book: Arc<AddrBook>,
    table: SocketTable<PlatformSource>,
    attribution: Attribution,
    owners: OwnerTracker,
    events: Arc<EventQueue>,
    degradations: Vec<Degradation>,
    samples: u64,
    table_failing: bool,
    /// What the captures were opened with, to open more as interfaces appear.
    opts: Options,
    /// Interfaces whose capture could not be opened, said once.
    refused: std::collections::HashSet<Interface>,
}

/// Opens a capture on one interface and starts its thread.
fn start_capture(
    iface: Interface,
    loopback: bool,
    opts: &Options,
    book: &Arc<AddrBook>,
) -> Result<CaptureThread, PcapError> {
    let mut capture = devices::open(&iface.name, opts)?;
    let breaker = capture.breakloop_handle();
    let shared = Arc::new(Shared::default());
    let id = IfaceIdentity {
        ifindex: iface.ifindex,
        loopback,
        mac: devices::mac_of(&iface.name),
        max_flows: opts.max_flows.max(1),
    };
    let thread = std::thread::Builder::new()
        .name(format!("kaipo-pcap-{}", iface.name))
        .spawn({
            let (shared, book) = (Arc::clone(&shared), Arc::clone(book));
            move || capture::run(capture, shared, book, id)
        })
        .map_err(PcapError::Thread)?;
    Ok(CaptureThread {
        iface,
        loopback,
        shared,
        breaker,
        thread: Some(thread),
    })
}

/// Opens a capture on each interface and starts counting.
pub fn start(opts: &Options) -> Result<(PcapCollector, PcapEvents), PcapError> {
    devices::preflight()?;
    let list = ::pcap::Device::list().map_err(|err| PcapError::Library(err.to_string()))?;
    let planned = devices::plan(opts, &list)?;
    let book = Arc::new(AddrBook::default());
    book.set(devices::local_addrs(&list));
    let mut captures = Vec::with_capacity(planned.len());
    // On an error below, the threads already started stop as `captures` drops.
    for (iface, loopback) in planned {
        captures.push(start_capture(iface, loopback, opts, &book)?);
    }
    let events = EventQueue::new(EVENT_QUEUE_CAPACITY);
    let collector = PcapCollector {
        ifaces: captures.iter().map(|c| c.iface.clone()).collect(),
        captures,
        book,
        table: SocketTable::new(PlatformSource::default()),
        attribution: Attribution::default(),
        owners: OwnerTracker::default(),
        events: Arc::clone(&events),
        degradations: degradations(),
        samples: 0,
        table_failing: false,
        opts: opts.clone(),
        refused: std::collections::HashSet::new(),
    };
    Ok((
        collector,
        PcapEvents {
            queue: events,
            malformed: 0,
        },
    ))
}

impl PcapCollector {
    pub fn interfaces(&self) -> &[Interface] {
        &self.ifaces
    }

    pub fn degradations(&self) -> &[Degradation] {
        &self.degradations
    }

    /// Takes what the captures counted since the last sample and returns cumulative totals.
    /// Also refreshes the socket tables and queues owner and close events.
    pub fn sample(&mut self) -> Result<KernelSample, PcapError> {
        self.samples += 1;
        // One device list a sample serves both the local addresses and the interfaces to
        // follow.
        let list = ::pcap::Device::list().ok();
        if let Some(list) = &list {
            self.book.set(devices::local_addrs(list));
        }
        match self.table.refresh() {
            Ok(()) => self.table_failing = false,
            Err(err) => {
                // The last good table goes on serving lookups; say so once, not every second.
                if !self.table_failing {
                    log::warn!(
                        "socket tables unreadable, attributing from the last good read: {err}"
                    );
                }
                self.table_failing = true;
            }
        }
        let mut iface_changes = Vec::new();
        let wanted = list
            .as_deref()
            .map(|list| devices::wanted(&self.opts, list));
        // A capture whose interface went away ends with what it counted; any other failure
        // fails the sample before any flow is taken, so none is lost.
        let mut gone = Vec::new();
        for (i, capture) in self.captures.iter().enumerate() {
            let Some(detail) = capture.shared.lock().failed.clone() else {
                continue;
            };
            let still_there = wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|(iface, _)| *iface == capture.iface));
            if still_there && devices::ifindex_of(&capture.iface.name) == capture.iface.ifindex {
                return Err(PcapError::CaptureStopped {
                    iface: capture.iface.name.clone(),
                    detail,
                });
            }
            gone.push(i);
        }
        self.attribution.begin();
        let mut sample = KernelSample::default();
        // Interfaces that are wanted and not captured yet: new ones, or named ones created
        // again under a new index.
        if let Some(wanted) = &wanted {
            for (iface, loopback) in wanted {
                if self.captures.iter().any(|c| c.iface == *iface) {
                    continue;
                }
                match start_capture(iface.clone(), *loopback, &self.opts, &self.book) {
                    Ok(capture) => {
                        iface_changes.push(format!(
                            "interface {} (index {}) appeared; now captured",
                            iface.name, iface.ifindex
                        ));
                        self.captures.push(capture);
                    }
                    // Said once per interface; tried again every sample.
                    Err(err) if self.refused.insert(iface.clone()) => iface_changes.push(format!(
                        "interface {} appeared but cannot be captured: {err}",
                        iface.name
                    )),
                    Err(_) => {}
                }
            }
        }
        let mut flows_full = 0;
        for capture in &self.captures {
            let mut tally = capture.shared.lock();
            let counters = tally.counters;
            let flows = std::mem::take(&mut tally.flows);
            let overflow = std::mem::take(&mut tally.overflow);
            flows_full += tally.flows_full;
            drop(tally);
            sample.ifaces.push((capture.iface.clone(), counters));
            for (flow, delta) in &flows {
                let loopback = capture.loopback || flow.ifindex == LOOPBACK_IFINDEX;
                self.attribution.add(&self.table, flow, delta, loopback);
            }
            if overflow != FlowCounters::default() {
                self.attribution
                    .add_unattributed(&overflow, capture.loopback);
            }
        }
        // Gone interfaces were counted to their end above; now their captures stop.
        for i in gone.into_iter().rev() {
            let capture = self.captures.remove(i);
            iface_changes.push(format!(
                "interface {} (index {}) went away; no longer captured",
                capture.iface.name, capture.iface.ifindex
            ));
        }
        self.ifaces = self.captures.iter().map(|c| c.iface.clone()).collect();
        sample.iface_changes = iface_changes;
        let mut events = Vec::new();
        self.owners.update(
            &mut self.table,
            &self.attribution,
            self.samples,
            &mut events,
        );
        for event in events {
            self.events.push(event);
        }
        self.attribution.snapshot(&mut sample.sockets);
        sample.counters[counter::FLOW_MAP_FULL as usize] = flows_full;
        // Owner and close events that found the queue full: lost lifecycle events, what a full
        // ring buffer means on the eBPF side.
        sample.counters[counter::RINGBUF_FULL as usize] = self.events.dropped();
        Ok(sample)
    }

    /// Drops the counters of sockets that closed and went quiet.
    pub fn forget_sockets(&mut self, cookies: &[u64]) {
        self.attribution.forget(cookies);
        self.owners.forget(cookies);
    }

    /// libpcap's own loss counters, summed over interfaces, since the start. Frames counted
    /// here are missing from every other figure.
    pub fn pcap_drops(&self) -> PcapDrops {
        self.captures
            .iter()
            .map(|c| c.shared.lock().drops)
            .fold(PcapDrops::default(), |acc, d| PcapDrops {
                dropped: acc.dropped + d.dropped,
                if_dropped: acc.if_dropped + d.if_dropped,
            })
    }

    /// Sockets the tables listed at the last sample.
    pub fn sockets_listed(&self) -> usize {
        self.table.live_count()
    }
}

fn degradations() -> Vec<Degradation> {
    let common = [
        Degradation {
            what: "per-process attribution".into(),
            why: "packets are matched to sockets through the socket tables, not in the kernel: \
                  connections that open and close between two samples, and sockets in other \
                  network namespaces, count as unattributed"
                .into(),
        },
        Degradation {
            what: "packet counts".into(),
            why: "a segmentation-offload buffer (TSO/GSO/GRO) counts as one packet of its full \
                  length, not as the packets it is on the wire"
                .into(),
        },
    ];
    common.into_iter().chain(platform_degradation()).collect()
}

#[cfg(target_os = "linux")]
fn platform_degradation() -> Option<Degradation> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } != 0).then(|| Degradation {
        what: "socket owners".into(),
        why: "without root (or CAP_SYS_PTRACE) the sockets of other users' processes cannot \
              be tied to them and count as unattributed"
            .into(),
    })
}

#[cfg(target_os = "windows")]
fn platform_degradation() -> Option<Degradation> {
    Some(Degradation {
        what: "process names".into(),
        why: "the Windows socket tables give pids only: processes show without names or users"
            .into(),
    })
}

#[cfg(not(any(target_os = "linux", target_os = "windows")))]
fn platform_degradation() -> Option<Degradation> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<PcapCollector>();
        send::<PcapEvents>();
        let defaults = Options::default();
        assert_eq!((defaults.snaplen, defaults.buffer_size), (128, 8 << 20));
        assert!(!defaults.immediate && defaults.filter.is_none());
    }
}
