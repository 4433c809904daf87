//! Turning cumulative kernel counters and lifecycle events into per-interval deltas per
//! process, connection and interface.
//!
//! The kernel keeps running totals per socket; this keeps the last total seen for each, so the
//! delta of an interval is the difference. A socket's close event carries its totals at close,
//! which covers a socket that closed (and whose entry may be gone) between two reads. Totals
//! only grow, so the larger of the map's figure and the close figure is the truth.
//!
//! Ownership arrives separately (an owner event per socket and process). Bytes of a socket whose
//! owner is not known yet are held back for a short grace period, because for an accepted or
//! pre-existing socket the owner shows itself on its first send or receive call, which may come
//! just after the first packets. Only when the grace runs out are they reported unattributed.

use crate::fasthash::{HashMap, HashSet};

use kaipo_common::{
    counter, Event, IfaceCounters, SockStats, EVENT_PROC_EXIT, EVENT_SOCK_CLOSE, EVENT_SOCK_OWNER,
    PROTO_TCP, PROTO_UDP, SOCK_FLAG_CLOSED, TCP_CLOSE,
};

use crate::{
    collect::{Interface, KernelSample},
    model::{Attribution, Lost, Traffic},
};

use super::{
    attribution::{socket_protocol, FlowDeltas, SocketIndex},
    service::ServerSide,
};

/// Intervals a socket's bytes wait for its owner before being called unattributed.
pub const OWNER_GRACE_INTERVALS: u32 = 2;
/// Intervals a closed socket must stay unchanged before its counters are dropped.
pub const CLOSED_QUIET_INTERVALS: u32 = 2;
/// Intervals a closed socket with traffic is waited for in the samples when its close event
/// came before any sample held its entry. The entry exists (the event's counters were read
/// from it), and until a sample holds it the socket is kept, or the sample that does would
/// count it a second time, as a new socket without an owner.
pub const CLOSED_UNSEEN_INTERVALS: u16 = 5;

/// The process a socket belongs to, as the kernel saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub tgid: u32,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
}

/// A socket's totals split by path: loopback is kept apart so it can be left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SockTotals {
    net: Traffic,
    lo: Traffic,
}

impl SockTotals {
    fn from_stats(s: &SockStats) -> Self {
        Self {
            net: Traffic {
                rx_bytes: s.rx_bytes,
                rx_packets: s.rx_packets,
                tx_bytes: s.tx_bytes,
                tx_packets: s.tx_packets,
            },
            lo: Traffic {
                rx_bytes: s.lo_rx_bytes,
                rx_packets: s.lo_rx_packets,
                tx_bytes: s.lo_tx_bytes,
                tx_packets: s.lo_tx_packets,
            },
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            net: self.net.since(&earlier.net),
            lo: self.lo.since(&earlier.lo),
        }
    }

    fn max(&self, other: &Self) -> Self {
        Self {
            net: self.net.max(&other.net),
            lo: self.lo.max(&other.lo),
        }
    }

    /// What counts: traffic off loopback when `net` (the socket crossed a monitored
    /// interface, or no interface was named), loopback traffic when asked for.
    fn counted(&self, net: bool, include_loopback: bool) -> Traffic {
        let mut t = if net { self.net } else { Traffic::default() };
        if include_loopback {
            t.add(&self.lo);
        }
        t
    }
}

/// What a socket is, from its first packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub family: u8,
    pub proto: u8,
    pub local_addr: [u8; 16],
    pub local_port: u16,
    pub remote_addr: [u8; 16],
    pub remote_port: u16,
    pub many_remotes: bool,
    /// Which end is the server, when the kernel saw the connection start.
    pub server_side: ServerSide,
    /// TCP state at the socket's last packet, as the kernel numbers it; 0 when unknown.
    pub tcp_state: u8,
}

impl Endpoints {
    fn from_stats(s: &SockStats) -> Self {
        let server_side = if s.flags & kaipo_common::SOCK_FLAG_SERVER != 0 {
            ServerSide::Local
        } else if s.flags & kaipo_common::SOCK_FLAG_CLIENT != 0 {
            ServerSide::Remote
        } else {
            ServerSide::Unknown
        };
        Self {
            server_side,
            tcp_state: s.tcp_state,
            family: s.family,
            proto: s.proto,
            local_addr: s.local_addr,
            local_port: s.local_port,
            remote_addr: s.remote_addr,
            remote_port: s.remote_port,
            many_remotes: s.flags & kaipo_common::SOCK_FLAG_MANY_REMOTES != 0,
        }
    }
}

/// What is kept of each socket between intervals. Kept small: a busy host has hundreds of
/// thousands of sockets, and this is the daemon's largest table.
#[derive(Clone, Debug, Default)]
struct SocketState {
    /// Totals counted so far: the last sample's, or the close event's when larger.
    last: SockTotals,
    endpoints: Endpoints,
    /// Intervals during which nothing changed, closed or not.
    idle: u32,
    /// Intervals since close during which nothing changed.
    quiet_since_close: u16,
    /// The socket was released (close event or the entry's own mark).
    closed: bool,
    /// A sample held the socket's map entry: once it is missing again, userspace removed it.
    in_map: bool,
    /// Its counters moved since the last sample (by a close event's totals).
    moved: bool,
    /// A frame of this socket crossed a monitored interface (sticky): with `--iface`, only
    /// such sockets count.
    crossed: bool,
}

/// Counts of one socket that wait to be reported: most sockets have none between intervals,
/// so these live in a table of their own, holding only the sockets that moved.
#[derive(Clone, Copy, Debug, Default)]
struct Waiting {
    /// Delta waiting for an owner (or to be reported this interval), and for how many
    /// intervals it has waited.
    pending: SockTotals,
    pending_age: u32,
    /// Link-layer bytes of this socket's flows on the monitored interfaces still waiting for
    /// an owner, and for how many intervals they have waited.
    link_age: u32,
    pending_link: u64,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.pending.net.is_zero() && self.pending.lo.is_zero() && self.pending_link == 0
    }
}

/// A socket's owner as kept between intervals: fixed size, no allocation (an [`Owner`] is
/// made from it when a record needs one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OwnerSlot {
    tgid: u32,
    uid: u32,
    cgroup_id: u64,
    comm: [u8; 16],
    /// Kernel time of the report, so that of two reports of one socket the later wins
    /// whichever way it arrived.
    since_ns: u64,
}

impl OwnerSlot {
    fn from_event(event: &Event) -> Self {
        Self {
            tgid: event.tgid,
            uid: event.uid,
            cgroup_id: event.cgroup_id,
            comm: event.comm,
            since_ns: event.ts_ns,
        }
    }

    fn owner(&self) -> Owner {
        Owner {
            tgid: self.tgid,
            comm: comm_to_string(&self.comm),
            uid: self.uid,
            cgroup_id: self.cgroup_id,
        }
    }
}

/// One connection's share of an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionDelta {
    pub cookie: u64,
    pub owner: Owner,
    pub endpoints: Endpoints,
    pub traffic: Traffic,
}

/// Everything that changed during one interval.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntervalDelta {
    /// Per tgid.
    pub processes: HashMap<u32, (Owner, Traffic)>,
    pub connections: Vec<ConnectionDelta>,
    pub interfaces: Vec<(Interface, IfaceCounters)>,
    pub unattributed: Traffic,
    /// Processes that exited during the interval: tgid, comm, uid.
    pub exited: Vec<(u32, String, u32)>,
    /// Bytes on the monitored interfaces, attributed or not.
    pub attribution: Attribution,
    pub lost: Lost,
}

/// Keeps the state that turns samples into deltas.
pub struct Accountant {
    include_loopback: bool,
    sockets: HashMap<u64, SocketState>,
    waiting: HashMap<u64, Waiting>,
    owners: HashMap<u64, OwnerSlot>,
    /// Sockets retired in this interval and the one before: an owner report of one of them
    /// that arrives late (kept in the kernel's spill map while the ring buffer was full and
    /// read after its close) is stale, as cookies are never reused, and must not leave an
    /// owner behind for good.
    retired: [HashSet<u64>; 2],
    ifaces: HashMap<u32, IfaceCounters>,
    counters: [u64; counter::COUNT as usize],
    flow_evictions_total: u64,
    capture_drops: u64,
    malformed_seen: u64,
    exited: Vec<(u32, String, u32)>,
    /// Sockets the collector may drop from the kernel map.
    forget: Vec<u64>,
    /// Process and connection figures count only sockets whose frames crossed a monitored
    /// interface (`--iface` given and the backend tracks flows).
    scoped: bool,
    flows: FlowDeltas,
    index: SocketIndex,
}

pub fn comm_to_string(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

impl Accountant {
    pub fn new(include_loopback: bool) -> Self {
        Self {
            include_loopback,
            sockets: HashMap::default(),
            waiting: HashMap::default(),
            owners: HashMap::default(),
            retired: [HashSet::default(), HashSet::default()],
            ifaces: HashMap::default(),
            counters: [0; counter::COUNT as usize],
            flow_evictions_total: 0,
            capture_drops: 0,
            malformed_seen: 0,
            exited: Vec::new(),
            forget: Vec::new(),
            scoped: false,
            flows: FlowDeltas::new(),
            index: SocketIndex::default(),
        }
    }

    /// Counts only sockets whose frames crossed a monitored interface (for `--iface`); takes
    /// effect with backends that track flows.
    pub fn scoped_to_interfaces(mut self, scoped: bool) -> Self {
        self.scoped = scoped;
        self
    }

    #[cfg(test)]
    fn host_addresses(&mut self, addrs: impl IntoIterator<Item = [u8; 16]>) {
        self.flows.set_host_addresses(addrs);
    }

    pub fn on_event(&mut self, event: &Event) {
        match event.kind {
            EVENT_SOCK_OWNER => self.learn_owner(event),
            EVENT_SOCK_CLOSE => {
                let state = self.sockets.entry(event.cookie).or_default();
                if state.endpoints == Endpoints::default() {
                    state.endpoints = Endpoints::from_stats(&event.stats);
                }
                state.closed = true;
                let delta = Self::raise(state, SockTotals::from_stats(&event.stats));
                if let Some(delta) = delta {
                    state.moved = true;
                    self.wait(event.cookie, &delta);
                }
            }
            EVENT_PROC_EXIT => {
                self.exited
                    .push((event.tgid, comm_to_string(&event.comm), event.uid));
            }
            _ => self.malformed_seen += 1,
        }
    }

    /// Takes an owner report, from the ring buffer or from the kernel's spill map (reports the
    /// full ring buffer had no room for); of two reports of one socket the later one wins.
    pub fn learn_owner(&mut self, event: &Event) {
        if self.retired.iter().any(|r| r.contains(&event.cookie)) {
            return;
        }
        let slot = OwnerSlot::from_event(event);
        match self.owners.entry(event.cookie) {
            std::collections::hash_map::Entry::Occupied(mut known) => {
                if known.get().since_ns <= slot.since_ns {
                    known.insert(slot);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(slot);
            }
        }
    }

    /// Adds `delta` to what `cookie` has waiting.
    fn wait(&mut self, cookie: u64, delta: &SockTotals) {
        let w = self.waiting.entry(cookie).or_default();
        w.pending.net.add(&delta.net);
        w.pending.lo.add(&delta.lo);
    }

    /// Moves a socket's totals up to `totals` (never down: a closed socket's map entry may be
    /// dropped and begun again by a late segment); returns what was added, if anything.
    fn raise(state: &mut SocketState, totals: SockTotals) -> Option<SockTotals> {
        let totals = totals.max(&state.last);
        let delta = totals.since(&state.last);
        state.last = totals;
        (!delta.net.is_zero() || !delta.lo.is_zero()).then_some(delta)
    }

    /// Takes `sample` as the starting point: everything it holds happened before counting
    /// began, so the first interval reports only what comes after it. Owners and closes seen
    /// so far are kept.
    pub fn baseline(&mut self, sample: &KernelSample) {
        for (iface, now) in &sample.ifaces {
            self.ifaces.insert(iface.ifindex, *now);
        }
        for (cookie, stats) in &sample.sockets {
            let state = self.sockets.entry(*cookie).or_default();
            state.endpoints = Endpoints::from_stats(stats);
            state.last = SockTotals::from_stats(stats);
            state.moved = false;
            state.in_map = true;
            if stats.flags & SOCK_FLAG_CLOSED != 0 {
                state.closed = true;
            }
        }
        self.waiting.clear();
        // Sockets that closed before the baseline and left the map: nothing of theirs counts.
        let present: HashSet<u64> = sample.sockets.iter().map(|(c, _)| *c).collect();
        self.sockets.retain(|cookie, _| present.contains(cookie));
        self.counters = sample.counters;
        if let Some(live) = sample.flows_live {
            self.flow_evictions_total =
                sample.counters[counter::FLOW_CREATED as usize].saturating_sub(live);
        }
        self.capture_drops = sample.capture_drops;
        self.malformed_seen = 0;
        self.exited.clear();
        self.flows.baseline(&sample.flows);
    }

    pub fn owner_of(&self, cookie: u64) -> Option<Owner> {
        self.owners.get(&cookie).map(OwnerSlot::owner)
    }

    /// Socket cookies the collector may now drop from the kernel map.
    pub fn take_forgotten(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.forget)
    }

    /// Closes an interval: everything since the previous call. `final_interval` flushes
    /// ownerless bytes as unattributed instead of holding them for later.
    pub fn finish(
        &mut self,
        sample: &KernelSample,
        malformed_events: u64,
        final_interval: bool,
    ) -> IntervalDelta {
        let mut out = IntervalDelta::default();

        for (iface, now) in &sample.ifaces {
            let before = self.ifaces.insert(iface.ifindex, *now).unwrap_or_default();
            out.interfaces
                .push((iface.clone(), iface_delta(now, &before)));
        }

        let mut seen = HashSet::with_capacity_and_hasher(sample.sockets.len(), Default::default());
        for (cookie, stats) in &sample.sockets {
            seen.insert(*cookie);
            let totals = SockTotals::from_stats(stats);
            let state = self.sockets.entry(*cookie).or_default();
            state.in_map = true;
            if state.endpoints == Endpoints::default() || stats.flags != 0 {
                state.endpoints = Endpoints::from_stats(stats);
            }
            state.endpoints.tcp_state = stats.tcp_state;
            // Released while the ring buffer was full: the entry's own mark stands in for the
            // lost close event.
            if stats.flags & SOCK_FLAG_CLOSED != 0 {
                state.closed = true;
            }
            let delta = Self::advance(state, totals);
            if let Some(delta) = delta {
                self.wait(*cookie, &delta);
            }
        }
        // Closed sockets whose entry is no longer in the map: their close totals are final.
        for (cookie, state) in self.sockets.iter_mut() {
            if state.closed && !seen.contains(cookie) {
                let last = state.last;
                Self::advance(state, last);
            }
        }

        let tracks_flows = sample.flows_live.is_some();
        if tracks_flows {
            out.attribution = self.join_flows(sample, &out.interfaces);
        }
        let scoped = self.scoped && tracks_flows;

        let include_loopback = self.include_loopback;
        for (cookie, w) in self.waiting.iter_mut() {
            let owner = self.owners.get(cookie);
            let crossed = self.sockets.get(cookie).is_some_and(|s| s.crossed);
            let waited = final_interval || w.pending_age >= OWNER_GRACE_INTERVALS;
            // With named interfaces, a socket's traffic off loopback counts once the socket
            // crossed one of them; until then it waits, as for an owner.
            let eligible = !scoped || crossed;
            let pending = w.pending.counted(eligible, include_loopback);
            if !w.pending.net.is_zero() || !w.pending.lo.is_zero() {
                let undecided = !eligible && !w.pending.net.is_zero() && !waited;
                match owner {
                    _ if undecided => w.pending_age += 1,
                    Some(owner) => {
                        if !pending.is_zero() {
                            let owner = owner.owner();
                            let entry = out
                                .processes
                                .entry(owner.tgid)
                                .or_insert_with(|| (owner.clone(), Traffic::default()));
                            entry.1.add(&pending);
                            out.connections.push(ConnectionDelta {
                                cookie: *cookie,
                                owner,
                                endpoints: self
                                    .sockets
                                    .get(cookie)
                                    .map(|s| s.endpoints)
                                    .unwrap_or_default(),
                                traffic: pending,
                            });
                        }
                        w.pending = SockTotals::default();
                        w.pending_age = 0;
                    }
                    None if waited => {
                        // What never crossed a named interface is not part of what was asked
                        // for, and is dropped rather than called unattributed.
                        out.unattributed.add(&pending);
                        w.pending = SockTotals::default();
                        w.pending_age = 0;
                    }
                    None => w.pending_age += 1,
                }
            }
            if w.pending_link > 0 {
                match owner {
                    Some(_) => {
                        out.attribution.attributed_bytes += w.pending_link;
                        w.pending_link = 0;
                        w.link_age = 0;
                    }
                    None if final_interval || w.link_age >= OWNER_GRACE_INTERVALS => {
                        out.attribution.unattributed.unknown_owner += w.pending_link;
                        w.pending_link = 0;
                        w.link_age = 0;
                    }
                    None => w.link_age += 1,
                }
            }
        }
        self.waiting.retain(|_, w| !w.is_empty());

        let mut gone = Vec::new();
        for (cookie, state) in &self.sockets {
            if !state.closed || self.waiting.contains_key(cookie) {
                continue;
            }
            if !seen.contains(cookie) {
                // Gone from the map (only userspace removes entries), or never in it: a
                // socket closed without traffic. One whose entry no sample held yet waits.
                let no_entry = state.last.net.is_zero() && state.last.lo.is_zero();
                if state.in_map || no_entry || state.quiet_since_close >= CLOSED_UNSEEN_INTERVALS {
                    gone.push(*cookie);
                }
            } else if state.quiet_since_close >= CLOSED_QUIET_INTERVALS as u16 {
                self.forget.push(*cookie);
                gone.push(*cookie);
            }
        }
        self.retired.swap(0, 1);
        self.retired[0] = HashSet::default();
        for cookie in gone {
            self.sockets.remove(&cookie);
            self.owners.remove(&cookie);
            self.retired[0].insert(cookie);
        }
        // A burst of sockets leaves its tables' room behind once it is over; hand it back.
        shrink_if_sparse(&mut self.waiting);
        shrink_if_sparse(&mut self.sockets);
        shrink_if_sparse(&mut self.owners);
        out.connections.sort_by(|a, b| {
            let total = |c: &ConnectionDelta| c.traffic.rx_bytes + c.traffic.tx_bytes;
            total(b).cmp(&total(a)).then(a.cookie.cmp(&b.cookie))
        });

        out.exited = std::mem::take(&mut self.exited);
        out.lost = self.lost(sample, malformed_events);
        out
    }

    /// Joins this interval's flow deltas on the monitored interfaces to sockets: marks the
    /// sockets that crossed them and splits the interfaces' bytes into attributed bytes and
    /// unattributed causes. Bytes of a socket whose owner is not known yet wait on the socket
    /// (`pending_link`) as its traffic does.
    fn join_flows(
        &mut self,
        sample: &KernelSample,
        interfaces: &[(Interface, IfaceCounters)],
    ) -> Attribution {
        let mut attribution = Attribution::default();
        // Frames the programs counted on the interface but in no flow: not IP, or unreadable.
        let outside_flows: u64 = interfaces
            .iter()
            .map(|(_, c)| {
                c.rx_non_ip_bytes
                    .saturating_add(c.tx_non_ip_bytes)
                    .saturating_add(c.rx_malformed_bytes)
                    .saturating_add(c.tx_malformed_bytes)
            })
            .sum();
        let deltas = self.flows.advance(&sample.flows);
        // Sockets by endpoints, built only when some flow of a socket protocol moved.
        self.index.clear();
        if deltas.iter().any(|(flow, _)| socket_protocol(flow.proto)) {
            for (cookie, state) in &self.sockets {
                let e = &state.endpoints;
                if e.proto == 0 {
                    continue;
                }
                let key = (
                    e.proto,
                    e.local_addr,
                    e.local_port,
                    e.remote_addr,
                    e.remote_port,
                );
                self.index.insert(*cookie, key, e.many_remotes);
            }
        }
        let mut on_flows = 0u64;
        for (flow, delta) in deltas {
            let bytes = delta.rx_bytes.saturating_add(delta.tx_bytes);
            on_flows = on_flows.saturating_add(bytes);
            if !socket_protocol(flow.proto) {
                attribution.unattributed.icmp_arp += bytes;
                continue;
            }
            let sockets = self.index.sockets_of(&flow);
            let mut owned = false;
            let mut found = None;
            for cookie in sockets {
                if let Some(state) = self.sockets.get_mut(&cookie) {
                    state.crossed = true;
                    found.get_or_insert(cookie);
                    owned |= self.owners.contains_key(&cookie);
                }
            }
            match found {
                _ if owned => attribution.attributed_bytes += bytes,
                Some(cookie) => self.waiting.entry(cookie).or_default().pending_link += bytes,
                None if self.flows.is_host_address(&flow.local_addr)
                    || self.flows.is_host_address(&flow.remote_addr) =>
                {
                    attribution.unattributed.kernel += bytes
                }
                None => attribution.unattributed.forwarded += bytes,
            }
        }
        // The interface's bytes are its flows' bytes and the bytes of frames in no flow, both
        // counted by the same program run for each frame: no difference of two reads taken
        // apart, so an interval's split is exact, not just the run's.
        attribution.unattributed.icmp_arp += outside_flows;
        attribution.interface_bytes = on_flows.saturating_add(outside_flows);
        attribution
    }

    /// Moves a socket to this sample's totals and counts its quiet intervals; returns what it
    /// added since the last sample (its close event's totals included).
    fn advance(state: &mut SocketState, totals: SockTotals) -> Option<SockTotals> {
        let delta = Self::raise(state, totals);
        let moved = std::mem::take(&mut state.moved);
        if delta.is_some() || moved {
            state.quiet_since_close = 0;
            state.idle = 0;
        } else {
            state.idle = state.idle.saturating_add(1);
            if state.closed {
                state.quiet_since_close = state.quiet_since_close.saturating_add(1);
            }
        }
        delta
    }

    fn lost(&mut self, sample: &KernelSample, malformed_events: u64) -> Lost {
        let delta = |slot: u32, before: &[u64]| {
            sample.counters[slot as usize].saturating_sub(before[slot as usize])
        };
        let before = self.counters;
        // Every created flow is either still in the map or was evicted (kaipo never deletes
        // flows itself), so evictions follow from the two counts.
        let mut flow_evictions = 0;
        if let Some(live) = sample.flows_live {
            let total = sample.counters[counter::FLOW_CREATED as usize].saturating_sub(live);
            flow_evictions = total.saturating_sub(self.flow_evictions_total);
            self.flow_evictions_total = self.flow_evictions_total.max(total);
        }
        let lost = Lost {
            ringbuf_full: delta(counter::RINGBUF_FULL, &before),
            sock_map_full: delta(counter::SOCK_MAP_FULL, &before),
            owner_map_full: delta(counter::OWNER_MAP_FULL, &before),
            flow_map_full: delta(counter::FLOW_MAP_FULL, &before),
            flow_evictions,
            iface_map_full: delta(counter::IFACE_MAP_FULL, &before),
            malformed_events: malformed_events + self.malformed_seen,
            capture_drops: sample.capture_drops.saturating_sub(self.capture_drops),
            dns_ringbuf_full: delta(counter::DNS_RINGBUF_FULL, &before),
            // Counted by the engine, which reads the answers.
            dns_malformed: 0,
        };
        self.capture_drops = self.capture_drops.max(sample.capture_drops);
        self.counters = sample.counters;
        self.malformed_seen = 0;
        lost
    }

    /// Sockets never seen closed whose counters have not moved for `min` intervals, with
    /// nothing waiting to be reported: the candidates of the sweep, which asks the kernel
    /// whether they still exist. TCP and UDP only, the protocols the kernel can list.
    pub fn idle_sockets(&self, min: u32) -> Vec<u64> {
        self.sockets
            .iter()
            .filter(|(cookie, s)| {
                !s.closed
                    && s.idle >= min
                    && !self.waiting.contains_key(*cookie)
                    && matches!(s.endpoints.proto, PROTO_TCP | PROTO_UDP)
                    // A TCP socket whose connect failed is out of the kernel's tables but may
                    // still be open, and connect again.
                    && !(s.endpoints.proto == PROTO_TCP && s.endpoints.tcp_state == TCP_CLOSE)
            })
            .map(|(cookie, _)| *cookie)
            .collect()
    }

    /// Drops what is known of sockets the sweep found gone. Should such a socket's cookie come
    /// back, it starts over as a new socket.
    pub fn drop_sockets(&mut self, cookies: &[u64]) {
        for cookie in cookies {
            self.sockets.remove(cookie);
            self.waiting.remove(cookie);
            self.owners.remove(cookie);
        }
    }

    /// Open sockets of `sample` with no owner known whose counters moved since the last
    /// interval or that have bytes waiting: the ones worth looking up in userspace, each with
    /// its protocol (the lookup lists only the kernel tables of those).
    pub fn ownerless(&self, sample: &KernelSample) -> Vec<(u64, u8)> {
        sample
            .sockets
            .iter()
            .filter(|(cookie, stats)| {
                let known = self.sockets.get(cookie);
                let open = stats.flags & SOCK_FLAG_CLOSED == 0 && known.is_none_or(|s| !s.closed);
                let moved = known.is_none_or(|s| s.last != SockTotals::from_stats(stats))
                    || self.waiting.get(cookie).is_some_and(|w| !w.is_empty());
                open && moved && !self.owners.contains_key(cookie)
            })
            .map(|(cookie, stats)| (*cookie, stats.proto))
            .collect()
    }

    /// Sockets currently tracked, for tests and status.
    pub fn tracked_sockets(&self) -> usize {
        self.sockets.len()
    }

    /// Whether any bytes still wait for an owner.
    pub fn has_pending(&self) -> bool {
        self.waiting
            .values()
            .any(|w| !w.pending.net.is_zero() || !w.pending.lo.is_zero())
    }
}

/// Gives a table's room back when it holds less than a quarter of it (and the room is worth
/// having back), keeping twice what it holds.
fn shrink_if_sparse<V>(table: &mut HashMap<u64, V>) {
    if table.capacity() > 4096 && table.len() < table.capacity() / 4 {
        table.shrink_to(table.len() * 2);
    }
}

fn iface_delta(now: &IfaceCounters, before: &IfaceCounters) -> IfaceCounters {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    IfaceCounters {
        rx_bytes: d(now.rx_bytes, before.rx_bytes),
        rx_packets: d(now.rx_packets, before.rx_packets),
        tx_bytes: d(now.tx_bytes, before.tx_bytes),
        tx_packets: d(now.tx_packets, before.tx_packets),
        rx_non_ip_bytes: d(now.rx_non_ip_bytes, before.rx_non_ip_bytes),
        tx_non_ip_bytes: d(now.tx_non_ip_bytes, before.tx_non_ip_bytes),
        rx_malformed_bytes: d(now.rx_malformed_bytes, before.rx_malformed_bytes),
        tx_malformed_bytes: d(now.tx_malformed_bytes, before.tx_malformed_bytes),
    }
}

#[cfg(test)]
mod tests {
    use kaipo_common::{FAMILY_IPV4, PROTO_UDP};

    use super::*;

    fn stats(rx: u64, tx: u64, lo_rx: u64, lo_tx: u64) -> SockStats {
        SockStats {
            rx_bytes: rx,
            rx_packets: rx / 100,
            tx_bytes: tx,
            tx_packets: tx / 100,
            lo_rx_bytes: lo_rx,
            lo_rx_packets: lo_rx / 100,
            lo_tx_bytes: lo_tx,
            lo_tx_packets: lo_tx / 100,
            family: FAMILY_IPV4,
            proto: PROTO_UDP,
            ..SockStats::default()
        }
    }

    fn owner_event(cookie: u64, tgid: u32, comm: &str) -> Event {
        let mut event = Event {
            kind: EVENT_SOCK_OWNER,
            cookie,
            tgid,
            uid: 1000,
            ..Event::default()
        };
        event.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        event
    }

    fn close_event(cookie: u64, s: SockStats) -> Event {
        Event {
            kind: EVENT_SOCK_CLOSE,
            cookie,
            stats: s,
            ..Event::default()
        }
    }

    fn sample(sockets: Vec<(u64, SockStats)>) -> KernelSample {
        KernelSample {
            sockets,
            ..KernelSample::default()
        }
    }

    fn tx_of(delta: &IntervalDelta, tgid: u32) -> u64 {
        delta.processes.get(&tgid).map_or(0, |(_, t)| t.tx_bytes)
    }

    #[test]
    fn only_open_ownerless_sockets_that_moved_are_looked_up() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(1, 100, "owned"));
        let first = sample(vec![
            (1, stats(100, 0, 0, 0)),
            (2, stats(100, 0, 0, 0)),
            (3, stats(100, 0, 0, 0)),
        ]);
        // New to the accountant: every ownerless one counts as moved.
        let cookies = |found: Vec<(u64, u8)>| -> Vec<u64> { found.iter().map(|f| f.0).collect() };
        assert_eq!(cookies(a.ownerless(&first)), vec![2, 3]);
        a.baseline(&first);
        // Socket 2 still, 3 moved, 4 new but closed (by its own mark), 5 closed by event.
        let mut closed = stats(50, 0, 0, 0);
        closed.flags = SOCK_FLAG_CLOSED;
        a.on_event(&close_event(5, stats(70, 0, 0, 0)));
        let second = sample(vec![
            (1, stats(300, 0, 0, 0)),
            (2, stats(100, 0, 0, 0)),
            (3, stats(200, 0, 0, 0)),
            (4, closed),
            (5, stats(70, 0, 0, 0)),
        ]);
        assert_eq!(cookies(a.ownerless(&second)), vec![3]);
        // Socket 3's bytes wait for an owner: still looked up while they wait, moved or not.
        a.finish(&second, 0, false);
        let third = sample(vec![(3, stats(200, 0, 0, 0))]);
        assert_eq!(cookies(a.ownerless(&third)), vec![3]);
        a.on_event(&owner_event(3, 300, "found"));
        assert!(a.ownerless(&third).is_empty());
    }

    #[test]
    fn deltas_follow_cumulative_totals_per_process() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(7, 100, "sender"));
        a.on_event(&owner_event(8, 200, "sender"));
        let d1 = a.finish(
            &sample(vec![(7, stats(0, 3280, 0, 0)), (8, stats(500, 0, 0, 0))]),
            0,
            false,
        );
        assert_eq!(tx_of(&d1, 100), 3280);
        assert_eq!(d1.processes[&200].1.rx_bytes, 500);
        assert_eq!(d1.processes[&100].0.comm, "sender");
        let d2 = a.finish(
            &sample(vec![(7, stats(0, 4920, 0, 0)), (8, stats(500, 0, 0, 0))]),
            0,
            false,
        );
        assert_eq!(tx_of(&d2, 100), 1640);
        assert!(!d2.processes.contains_key(&200), "no traffic, no row");
        assert_eq!(d2.connections.len(), 1);
        assert_eq!(d2.connections[0].traffic.tx_packets, 49 - 32);
    }

    #[test]
    fn loopback_counts_only_when_asked() {
        for (include, expected) in [(false, 100), (true, 1100)] {
            let mut a = Accountant::new(include);
            a.on_event(&owner_event(1, 5, "p"));
            let d = a.finish(&sample(vec![(1, stats(0, 100, 0, 1000))]), 0, false);
            assert_eq!(tx_of(&d, 5), expected, "include_loopback={include}");
        }
    }

    #[test]
    fn ownerless_bytes_wait_for_an_owner_then_become_unattributed() {
        let mut a = Accountant::new(false);
        // Interval 1: bytes, no owner yet: held back.
        let d1 = a.finish(&sample(vec![(9, stats(700, 0, 0, 0))]), 0, false);
        assert!(d1.processes.is_empty());
        assert_eq!(d1.unattributed, Traffic::default());
        // Interval 2: the owner shows itself: everything so far is its.
        a.on_event(&owner_event(9, 42, "server"));
        let d2 = a.finish(&sample(vec![(9, stats(900, 0, 0, 0))]), 0, false);
        assert_eq!(d2.processes[&42].1.rx_bytes, 900);
        // A socket that never gets an owner is called unattributed after the grace period.
        let mut b = Accountant::new(false);
        let mut unattributed = 0;
        for i in 1..=(OWNER_GRACE_INTERVALS as u64 + 1) {
            let d = b.finish(&sample(vec![(3, stats(0, 10 * i, 0, 0))]), 0, false);
            unattributed += d.unattributed.tx_bytes;
            assert!(d.processes.is_empty());
        }
        assert_eq!(unattributed, 10 * (OWNER_GRACE_INTERVALS as u64 + 1));
        assert!(!b.has_pending());
    }

    #[test]
    fn final_interval_flushes_pending_bytes() {
        let mut a = Accountant::new(false);
        let d = a.finish(&sample(vec![(3, stats(0, 77, 0, 0))]), 0, true);
        assert_eq!(d.unattributed.tx_bytes, 77);
    }

    #[test]
    fn close_totals_cover_bytes_the_map_read_missed() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(4, 9, "short"));
        let d1 = a.finish(&sample(vec![(4, stats(0, 1000, 0, 0))]), 0, false);
        assert_eq!(tx_of(&d1, 9), 1000);
        // The socket sent 500 more and closed between two reads, and its entry is gone.
        a.on_event(&close_event(4, stats(0, 1500, 0, 0)));
        let d2 = a.finish(&sample(vec![]), 0, false);
        assert_eq!(tx_of(&d2, 9), 500);
        // Nothing is counted twice, and the closed socket is dropped.
        let d3 = a.finish(&sample(vec![]), 0, false);
        assert!(d3.processes.is_empty());
        assert_eq!(a.tracked_sockets(), 0);
    }

    #[test]
    fn a_late_owner_report_of_a_retired_socket_leaves_nothing_behind() {
        let mut a = Accountant::new(false);
        // A socket closed without traffic is retired at the interval's close.
        a.on_event(&owner_event(11, 21, "burst"));
        a.on_event(&close_event(11, SockStats::default()));
        a.finish(&sample(vec![]), 0, false);
        assert_eq!((a.tracked_sockets(), a.owners.len()), (0, 0));
        // The same socket's report from the spill map, read one and two intervals later.
        a.on_event(&owner_event(11, 22, "burst"));
        a.finish(&sample(vec![]), 0, false);
        a.on_event(&owner_event(11, 22, "burst"));
        assert_eq!(a.owners.len(), 0);
        // Other sockets' owners are taken as ever.
        a.on_event(&owner_event(12, 22, "next"));
        assert_eq!(a.owner_of(12).map(|o| o.tgid), Some(22));
    }

    #[test]
    fn a_close_before_any_sample_held_the_entry_counts_once() {
        // A socket sent one datagram and closed between the read of the map and the events
        // after it: its close event comes first, its marked entry only in the next sample.
        let mut a = Accountant::new(true);
        a.on_event(&owner_event(6, 13, "churn"));
        a.on_event(&close_event(6, stats(0, 0, 0, 29)));
        let d1 = a.finish(&sample(vec![]), 0, false);
        assert_eq!(d1.processes[&13].1.tx_bytes, 29);
        let mut marked = stats(0, 0, 0, 29);
        marked.flags = SOCK_FLAG_CLOSED;
        let mut later = Traffic::default();
        let mut unattributed = Traffic::default();
        // The entry shows up, goes quiet and is forgotten (removed from the map), and nothing
        // of it is counted again, to the process or as a socket without an owner.
        for round in 0..=CLOSED_QUIET_INTERVALS + OWNER_GRACE_INTERVALS {
            let entries = if round < CLOSED_QUIET_INTERVALS {
                vec![(6, marked)]
            } else {
                vec![]
            };
            let d = a.finish(&sample(entries), 0, false);
            if let Some((_, t)) = d.processes.get(&13) {
                later.add(t);
            }
            unattributed.add(&d.unattributed);
            if round + 1 == CLOSED_QUIET_INTERVALS {
                assert_eq!(a.take_forgotten(), vec![6]);
            }
        }
        assert!(
            later.is_zero() && unattributed.is_zero(),
            "{later:?} {unattributed:?}"
        );
        // A socket closed without traffic has no entry to wait for.
        a.on_event(&owner_event(7, 13, "idle"));
        a.on_event(&close_event(7, SockStats::default()));
        a.finish(&sample(vec![]), 0, false);
        assert_eq!(a.tracked_sockets(), 0);
    }

    #[test]
    fn closed_socket_keeps_counting_until_quiet_then_is_forgotten() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(5, 11, "tcp"));
        a.on_event(&close_event(5, stats(0, 2000, 0, 0)));
        // The last segments after close still reach the same entry.
        let d1 = a.finish(&sample(vec![(5, stats(0, 2080, 0, 0))]), 0, false);
        assert_eq!(tx_of(&d1, 11), 2080);
        assert!(a.take_forgotten().is_empty());
        for _ in 0..CLOSED_QUIET_INTERVALS {
            let d = a.finish(&sample(vec![(5, stats(0, 2080, 0, 0))]), 0, false);
            assert!(d.processes.is_empty());
        }
        assert_eq!(a.take_forgotten(), vec![5]);
        assert_eq!(a.tracked_sockets(), 0);
    }

    #[test]
    fn an_entry_marked_closed_is_forgotten_without_a_close_event() {
        // The close event was lost to a full ring buffer; the entry's mark stands in for it.
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(9, 12, "churn"));
        let mut marked = stats(0, 640, 0, 0);
        let d1 = a.finish(&sample(vec![(9, marked)]), 0, false);
        assert_eq!(tx_of(&d1, 12), 640);
        marked.flags = SOCK_FLAG_CLOSED;
        marked.tx_bytes = 700;
        let d2 = a.finish(&sample(vec![(9, marked)]), 0, false);
        assert_eq!(tx_of(&d2, 12), 60);
        assert!(a.take_forgotten().is_empty());
        for _ in 0..CLOSED_QUIET_INTERVALS {
            a.finish(&sample(vec![(9, marked)]), 0, false);
        }
        assert_eq!(a.take_forgotten(), vec![9]);
        assert_eq!(a.tracked_sockets(), 0);
        // Gone from the map as well: nothing more is reported for it.
        let d = a.finish(&sample(vec![]), 0, false);
        assert!(d.processes.is_empty() && d.unattributed.is_zero());
    }

    #[test]
    fn only_unclosed_sockets_idle_long_enough_are_sweep_candidates() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(1, 5, "idle"));
        a.on_event(&owner_event(2, 5, "busy"));
        a.on_event(&owner_event(3, 5, "closed"));
        let mut busy = 100;
        for round in 0..4 {
            busy += 10;
            let mut closed = stats(0, 50, 0, 0);
            closed.flags = SOCK_FLAG_CLOSED;
            a.finish(
                &sample(vec![
                    (1, stats(0, 100, 0, 0)),
                    (2, stats(0, busy, 0, 0)),
                    (3, closed),
                ]),
                0,
                false,
            );
            // The first interval moves socket 1 from nothing to 100; three quiet ones follow.
            let expected: Vec<u64> = if round >= 3 { vec![1] } else { vec![] };
            assert_eq!(a.idle_sockets(3), expected, "round {round}");
        }
        a.drop_sockets(&[1]);
        assert!(a.owner_of(1).is_none());
        assert!(a.idle_sockets(0).iter().all(|c| *c != 1));
        // Should the socket turn out alive, it starts over: its whole entry counts.
        let d = a.finish(&sample(vec![(1, stats(0, 30, 0, 0))]), 0, false);
        assert_eq!(d.unattributed.tx_bytes, 0);
        assert_eq!(a.tracked_sockets(), 3);
    }

    #[test]
    fn a_new_owner_takes_the_socket_from_then_on() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(6, 1, "parent"));
        let d1 = a.finish(&sample(vec![(6, stats(0, 100, 0, 0))]), 0, false);
        assert_eq!(tx_of(&d1, 1), 100);
        a.on_event(&owner_event(6, 2, "child"));
        let d2 = a.finish(&sample(vec![(6, stats(0, 350, 0, 0))]), 0, false);
        assert_eq!(tx_of(&d2, 2), 250);
        assert!(!d2.processes.contains_key(&1));
    }

    #[test]
    fn interface_deltas_and_lost_counters() {
        let mut a = Accountant::new(false);
        let iface = Interface {
            name: "veth0".into(),
            ifindex: 9,
        };
        let mut s = KernelSample::default();
        s.ifaces.push((
            iface.clone(),
            IfaceCounters {
                rx_bytes: 1000,
                rx_packets: 10,
                ..Default::default()
            },
        ));
        s.counters[counter::RINGBUF_FULL as usize] = 3;
        s.counters[counter::FLOW_CREATED as usize] = 50;
        s.flows_live = Some(40);
        let d1 = a.finish(&s, 2, false);
        assert_eq!(d1.interfaces[0].1.rx_bytes, 1000);
        assert_eq!(d1.lost.ringbuf_full, 3);
        assert_eq!(d1.lost.flow_evictions, 10);
        assert_eq!(d1.lost.malformed_events, 2);
        s.ifaces[0].1.rx_bytes = 1600;
        s.counters[counter::FLOW_CREATED as usize] = 70;
        s.flows_live = Some(45);
        let d2 = a.finish(&s, 0, false);
        assert_eq!(d2.interfaces[0].1.rx_bytes, 600);
        assert_eq!(d2.lost.ringbuf_full, 0);
        assert_eq!(d2.lost.flow_evictions, 15);
    }

    #[test]
    fn the_first_interval_starts_at_the_baseline() {
        let mut a = Accountant::new(false);
        a.on_event(&owner_event(7, 100, "sender"));
        // 2,170 datagrams before counting began (while programs were still attaching).
        a.baseline(&sample(vec![(7, stats(0, 217_000, 0, 0))]));
        let d1 = a.finish(
            &sample(vec![(7, stats(0, 317_000, 0, 0)), (8, stats(0, 500, 0, 0))]),
            0,
            false,
        );
        assert_eq!(
            tx_of(&d1, 100),
            100_000,
            "only the 1,000 datagrams after the baseline"
        );
        assert_eq!(d1.processes[&100].1.tx_packets, 1_000);
        // A socket first seen after the baseline counts from zero.
        a.on_event(&owner_event(8, 200, "late"));
        let d2 = a.finish(
            &sample(vec![(7, stats(0, 317_000, 0, 0)), (8, stats(0, 500, 0, 0))]),
            0,
            false,
        );
        assert_eq!(tx_of(&d2, 200), 500);
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    /// A UDP socket 10.0.0.1:40000 -> 10.0.0.2:9999 with `tx` IP bytes sent.
    fn udp_stats(local: [u8; 4], lport: u16, remote: [u8; 4], rport: u16, tx: u64) -> SockStats {
        SockStats {
            tx_bytes: tx,
            tx_packets: tx / 100,
            family: FAMILY_IPV4,
            proto: PROTO_UDP,
            local_addr: v4(local),
            local_port: lport,
            remote_addr: v4(remote),
            remote_port: rport,
            ..SockStats::default()
        }
    }

    fn flow(
        ifindex: u32,
        local: [u8; 4],
        lport: u16,
        remote: [u8; 4],
        rport: u16,
    ) -> kaipo_common::FlowKey {
        kaipo_common::FlowKey {
            ifindex,
            proto: PROTO_UDP,
            family: FAMILY_IPV4,
            local_port: lport,
            remote_port: rport,
            local_addr: v4(local),
            remote_addr: v4(remote),
            ..Default::default()
        }
    }

    fn tx_flow(bytes: u64, packets: u64) -> kaipo_common::FlowCounters {
        kaipo_common::FlowCounters {
            tx_bytes: bytes,
            tx_packets: packets,
            ..Default::default()
        }
    }

    /// Interface veth0 (ifindex 9) carries 100 datagrams of process 100 (342-byte frames),
    /// 10 forwarded frames of 100 bytes and 2 ARP frames of 42 bytes; process 200 sends over
    /// an interface that is not monitored.
    fn monitored_sample(scale: u64) -> KernelSample {
        let iface = Interface {
            name: "veth0".into(),
            ifindex: 9,
        };
        let mut s = KernelSample::default();
        s.ifaces.push((
            iface,
            IfaceCounters {
                tx_bytes: scale * (34_200 + 1_000 + 84),
                tx_packets: scale * 112,
                tx_non_ip_bytes: scale * 84,
                ..Default::default()
            },
        ));
        s.sockets = vec![
            (
                1,
                udp_stats([10, 0, 0, 1], 40000, [10, 0, 0, 2], 9999, scale * 32_800),
            ),
            (
                2,
                udp_stats(
                    [192, 168, 9, 1],
                    40001,
                    [192, 168, 9, 2],
                    9999,
                    scale * 5_000,
                ),
            ),
        ];
        s.flows = vec![
            (
                flow(9, [10, 0, 0, 1], 40000, [10, 0, 0, 2], 9999),
                tx_flow(scale * 34_200, scale * 100),
            ),
            (
                flow(9, [172, 16, 0, 5], 1234, [172, 16, 0, 6], 80),
                tx_flow(scale * 1_000, scale * 10),
            ),
        ];
        s.flows_live = Some(2);
        s
    }

    #[test]
    fn interface_bytes_split_into_attributed_and_causes_never_above_one() {
        let mut a = Accountant::new(false);
        a.host_addresses([v4([10, 0, 0, 1])]);
        a.on_event(&owner_event(1, 100, "sender"));
        a.on_event(&owner_event(2, 200, "other"));
        a.baseline(&KernelSample {
            flows_live: Some(0),
            ..KernelSample::default()
        });
        let d = a.finish(&monitored_sample(1), 0, false);
        let at = d.attribution;
        assert_eq!(at.interface_bytes, 35_284);
        assert_eq!(at.attributed_bytes, 34_200);
        assert_eq!(at.unattributed.forwarded, 1_000);
        assert_eq!(at.unattributed.icmp_arp, 84);
        assert_eq!(at.unattributed.kernel + at.unattributed.unknown_owner, 0);
        assert_eq!(
            at.attributed_bytes + at.unattributed.total(),
            at.interface_bytes
        );
        assert_eq!(at.ratio(), Some(34_200.0 / 35_284.0));
        // Without --iface every process counts, on any interface.
        assert_eq!(tx_of(&d, 100), 32_800);
        assert_eq!(tx_of(&d, 200), 5_000);
    }

    #[test]
    fn with_named_interfaces_only_sockets_that_crossed_them_count() {
        let mut a = Accountant::new(false).scoped_to_interfaces(true);
        a.host_addresses([v4([10, 0, 0, 1])]);
        a.on_event(&owner_event(1, 100, "sender"));
        a.on_event(&owner_event(2, 200, "other"));
        a.baseline(&KernelSample {
            flows_live: Some(0),
            ..KernelSample::default()
        });
        let mut total_200 = 0;
        for scale in 1..=4 {
            let d = a.finish(&monitored_sample(scale), 0, false);
            assert_eq!(tx_of(&d, 100), 32_800, "interval {scale}");
            total_200 += tx_of(&d, 200);
            assert_eq!(d.unattributed, Traffic::default());
        }
        assert_eq!(total_200, 0, "process 200 never crossed veth0");
    }

    #[test]
    fn named_interfaces_keep_loopback_when_asked_and_sockets_sharing_endpoints() {
        let mut a = Accountant::new(true).scoped_to_interfaces(true);
        a.host_addresses([v4([10, 0, 0, 1])]);
        a.on_event(&owner_event(1, 100, "sender"));
        a.on_event(&owner_event(3, 300, "accepted"));
        a.on_event(&owner_event(4, 400, "loopback"));
        a.baseline(&KernelSample {
            flows_live: Some(0),
            ..KernelSample::default()
        });
        let mut s = monitored_sample(1);
        // Socket 3 has the same endpoints as socket 1 (a listener and its accepted socket).
        s.sockets
            .push((3, udp_stats([10, 0, 0, 1], 40000, [10, 0, 0, 2], 9999, 700)));
        // Socket 4 talks over loopback only.
        s.sockets.push((
            4,
            SockStats {
                lo_tx_bytes: 900,
                lo_tx_packets: 9,
                ..udp_stats([127, 0, 0, 1], 5000, [127, 0, 0, 1], 5001, 0)
            },
        ));
        let d = a.finish(&s, 0, false);
        assert_eq!(tx_of(&d, 100), 32_800);
        assert_eq!(tx_of(&d, 300), 700);
        assert_eq!(
            tx_of(&d, 400),
            900,
            "loopback counts with --include-loopback"
        );
        assert_eq!(tx_of(&d, 200), 0);
    }

    #[test]
    fn flow_bytes_of_an_ownerless_socket_wait_then_count_as_unknown_owner() {
        let mut a = Accountant::new(false);
        a.host_addresses([v4([10, 0, 0, 1])]);
        a.baseline(&KernelSample {
            flows_live: Some(0),
            ..KernelSample::default()
        });
        let d1 = a.finish(&monitored_sample(1), 0, false);
        assert_eq!(d1.attribution.attributed_bytes, 0);
        assert_eq!(
            d1.attribution.unattributed.unknown_owner, 0,
            "still waiting"
        );
        // The owner shows itself: the waiting bytes are attributed.
        a.on_event(&owner_event(1, 100, "sender"));
        let d2 = a.finish(&monitored_sample(1), 0, false);
        assert_eq!(d2.attribution.attributed_bytes, 34_200);
        assert_eq!(d2.attribution.unattributed.unknown_owner, 0);
    }

    #[test]
    fn exits_are_reported_once() {
        let mut a = Accountant::new(false);
        let mut exit = Event {
            kind: EVENT_PROC_EXIT,
            tgid: 77,
            uid: 3,
            ..Event::default()
        };
        exit.comm[..4].copy_from_slice(b"curl");
        a.on_event(&exit);
        let d1 = a.finish(&sample(vec![]), 0, false);
        assert_eq!(d1.exited, vec![(77, "curl".to_string(), 3)]);
        assert!(a.finish(&sample(vec![]), 0, false).exited.is_empty());
    }
}
