//! One capture thread per interface: frames from libpcap, counted per interface and per flow.
//!
//! The thread parses a batch of frames without holding any lock, then adds the batch to its
//! [`Tally`] under one short lock. Interface counters there only grow; flows are handed over and
//! cleared at each sample, so the flow table only has to hold one sample's worth of flows, and
//! flows that do not fit are counted rather than stored.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use kaipo_common::{FlowCounters, FlowKey, IfaceCounters, LOOPBACK_IFINDEX};

use super::parse::{parse_frame, Direction, Frame, ParseError};

/// How often the thread reads libpcap's drop counters.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// The host's own addresses, to tell sent from received frames where the link layer does not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs(HashSet<[u8; 16]>);

impl LocalAddrs {
    pub fn new(addrs: impl IntoIterator<Item = [u8; 16]>) -> Self {
        Self(addrs.into_iter().collect())
    }

    fn contains(&self, addr: &[u8; 16]) -> bool {
        self.0.contains(addr)
    }
}

/// The current [`LocalAddrs`], swapped whole when they change; threads notice by generation
/// and take the new set without locking on every frame.
#[derive(Default)]
pub struct AddrBook {
    current: Mutex<Arc<LocalAddrs>>,
    generation: AtomicU64,
}

impl AddrBook {
    pub fn set(&self, addrs: LocalAddrs) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if **current != addrs {
            *current = Arc::new(addrs);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    fn get(&self) -> (u64, Arc<LocalAddrs>) {
        let generation = self.generation.load(Ordering::Acquire);
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (generation, Arc::clone(&current))
    }
}

/// libpcap's loss counters, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapDrops {
    /// Frames the capture buffer had no room for (`ps_drop`).
    pub dropped: u64,
    /// Frames the interface or its driver dropped (`ps_ifdrop`), where the platform says.
    pub if_dropped: u64,
}

/// What a capture thread has counted.
#[derive(Debug, Default)]
pub struct Tally {
    /// Link-layer totals since the start.
    pub counters: IfaceCounters,
    /// IP-layer bytes per flow since the collector last took them, oriented from the host.
    /// Looked up once per captured frame, so hashed with foldhash rather than the standard
    /// SipHash, which a profile of the capture under a flood showed among its largest costs;
    /// foldhash is still seeded per process, so a sender cannot aim its flows at one bucket in
    /// advance.
    pub flows: HashMap<FlowKey, FlowCounters, foldhash::fast::RandomState>,
    /// IP-layer bytes of flows the table had no room for, since last taken.
    pub overflow: FlowCounters,
    /// Frames whose flow found the table full, since the start.
    pub flows_full: u64,
    pub drops: PcapDrops,
    /// Why the capture stopped, if it did.
    pub failed: Option<String>,
}

/// How a frame relates to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    In,
    Out,
    /// Over loopback: sent and received by this host at once.
    Loop,
}

/// What a thread knows about its interface.
#[derive(Clone, Debug, Default)]
pub struct IfaceIdentity {
    pub ifindex: u32,
    pub loopback: bool,
    pub mac: Option<[u8; 6]>,
    pub max_flows: usize,
}

/// Which way a frame went: the cooked header's word when there is one, else whose MAC sent
/// it, else whose address it is for. A frame neither from nor for the host (bridged, or
/// multicast) counts as received, as the interface's own counters count it.
pub fn orient(frame: &Frame, id: &IfaceIdentity, addrs: &LocalAddrs) -> Side {
    if id.loopback || frame.link.loopback {
        return Side::Loop;
    }
    if let Some(direction) = frame.link.direction {
        return match direction {
            Direction::In => Side::In,
            Direction::Out => Side::Out,
        };
    }
    if let Some(mac) = id.mac {
        if frame.link.src_mac == Some(mac) {
            return Side::Out;
        }
        if frame.link.dst_mac == Some(mac) {
            return Side::In;
        }
    }
    if let Ok(flow) = &frame.net {
        if !addrs.contains(&flow.dst) && addrs.contains(&flow.src) {
            return Side::Out;
        }
    }
    Side::In
}

impl Tally {
    /// Counts one frame: `parsed` as [`parse_frame`] returned it for a frame of `wire_len`.
    pub fn record(
        &mut self,
        parsed: &Result<Frame, ParseError>,
        wire_len: u32,
        id: &IfaceIdentity,
        addrs: &LocalAddrs,
    ) {
        let c = &mut self.counters;
        let frame = match parsed {
            Ok(frame) => frame,
            Err(_) => {
                // Not even the link header is readable: no direction to tell.
                c.rx_bytes += u64::from(wire_len);
                c.rx_packets += 1;
                c.rx_malformed_bytes += u64::from(wire_len);
                return;
            }
        };
        let side = orient(frame, id, addrs);
        let bytes = u64::from(frame.link.link_bytes);
        let (not_ip, malformed) = match &frame.net {
            Ok(_) => (0, 0),
            Err(ParseError::NotIp { .. }) => (bytes, 0),
            Err(_) => (0, bytes),
        };
        if side != Side::Out {
            c.rx_bytes += bytes;
            c.rx_packets += 1;
            c.rx_non_ip_bytes += not_ip;
            c.rx_malformed_bytes += malformed;
        }
        if side != Side::In {
            c.tx_bytes += bytes;
            c.tx_packets += 1;
            c.tx_non_ip_bytes += not_ip;
            c.tx_malformed_bytes += malformed;
        }
        let Ok(flow) = &frame.net else { return };
        let outgoing = side != Side::In;
        let (local, local_port, remote, remote_port) = if outgoing {
            (flow.src, flow.src_port, flow.dst, flow.dst_port)
        } else {
            (flow.dst, flow.dst_port, flow.src, flow.src_port)
        };
        let key = FlowKey {
            // Loopback frames on the `any` device are marked the way the kernel numbers
            // loopback, so attribution keeps them apart like frames captured on `lo` itself.
            ifindex: if side == Side::Loop {
                LOOPBACK_IFINDEX
            } else {
                frame.link.ifindex.unwrap_or(id.ifindex)
            },
            vlan: flow.vlan,
            proto: flow.proto,
            family: flow.family,
            local_port,
            remote_port,
            local_addr: local,
            remote_addr: remote,
        };
        let room = self.flows.len() < id.max_flows;
        let counters = match self.flows.get_mut(&key) {
            Some(counters) => counters,
            None if room => self.flows.entry(key).or_default(),
            None => {
                self.flows_full += 1;
                &mut self.overflow
            }
        };
        // Loopback frames are stored as sent; attribution also credits them as received by
        // the socket at the other end.
        if outgoing {
            counters.tx_bytes += u64::from(flow.ip_len);
            counters.tx_packets += 1;
        } else {
            counters.rx_bytes += u64::from(flow.ip_len);
            counters.rx_packets += 1;
        }
    }
}

/// State shared by a capture thread and the collector.
#[derive(Default)]
pub struct Shared {
    pub tally: Mutex<Tally>,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The capture loop; returns when asked to stop or when libpcap fails.
pub fn run(
    mut capture: ::pcap::Capture<::pcap::Active>,
    shared: Arc<Shared>,
    book: Arc<AddrBook>,
    id: IfaceIdentity,
) {
    let linktype = capture.get_datalink().0;
    let (mut generation, mut addrs) = book.get();
    let mut batch: Vec<(Result<Frame, ParseError>, u32)> = Vec::with_capacity(512);
    let mut last_stats = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let result = capture.dispatch(None, |packet| {
            let wire_len = packet.header.len;
            batch.push((parse_frame(linktype, packet.data, wire_len), wire_len));
        });
        if let Err(err) = result {
            if !matches!(err, ::pcap::Error::TimeoutExpired) {
                // `pcap_breakloop` makes dispatch fail too; that is the stop, not a failure.
                if !shared.stop.load(Ordering::Relaxed) {
                    shared.lock().failed = Some(err.to_string());
                }
                break;
            }
        }
        if !batch.is_empty() {
            if book.generation.load(Ordering::Acquire) != generation {
                (generation, addrs) = book.get();
            }
            let mut tally = shared.lock();
            for (parsed, wire_len) in &batch {
                tally.record(parsed, *wire_len, &id, &addrs);
            }
            drop(tally);
            batch.clear();
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            if let Ok(stats) = capture.stats() {
                shared.lock().drops = PcapDrops {
                    dropped: u64::from(stats.dropped),
                    if_dropped: u64::from(stats.if_dropped),
                };
            }
        }
    }
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
