//! Which socket each flow on a monitored interface belongs to.
//!
//! The interface programs count every frame per flow (link layer, on the monitored interfaces
//! only); the socket programs count per socket (IP layer, on every path). Joining the two by
//! addresses and ports answers two questions no single counter can: which share of the
//! interfaces' bytes belongs to known processes (a ratio of link-layer bytes to link-layer
//! bytes, so never above 1), and which sockets used the monitored interfaces at all (so that
//! `--iface` scopes process figures).
//!
//! A flow is oriented from the host's side (`local` is the receiver of an incoming frame), so
//! it names a socket of the host directly. A socket inside another network namespace (a
//! container behind a veth) sees the same frame from the other end, so the swapped key is
//! tried as well: a frame between two local sockets belongs to both.

use std::time::{Duration, Instant};

use crate::fasthash::{HashMap, HashSet};

use kaipo_common::{FlowCounters, FlowKey, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// A socket's endpoints as a flow names them: protocol, local address and port, remote
/// address and port.
pub type SocketKey = (u8, [u8; 16], u16, [u8; 16], u16);

/// How often the host's own addresses are read again.
const ADDRESS_REFRESH: Duration = Duration::from_secs(10);

/// Sockets by endpoints, rebuilt in an interval when flows moved, from the accountant's
/// sockets.
///
/// Several sockets can share endpoints: a listener and the socket it accepted both saw the
/// connection's first packet, a closed socket lingers while its successor starts. The first
/// socket of a key sits in the main table (one word, no allocation); the rare others in a
/// table of their own.
#[derive(Default)]
pub struct SocketIndex {
    exact: HashMap<SocketKey, u64>,
    exact_more: HashMap<SocketKey, Vec<u64>>,
    /// Unconnected sockets that talked to several peers, by protocol, local address and port.
    any_peer: HashMap<(u8, [u8; 16], u16), Vec<u64>>,
}

impl SocketIndex {
    /// Empties the index; the room of a much larger earlier build is given back.
    pub fn clear(&mut self) {
        let held = self.exact.len();
        self.exact.clear();
        self.exact_more.clear();
        self.any_peer.clear();
        if self.exact.capacity() > 4096 && held < self.exact.capacity() / 4 {
            self.exact.shrink_to(held * 2);
        }
    }

    pub fn insert(&mut self, cookie: u64, key: SocketKey, many_remotes: bool) {
        match self.exact.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(cookie);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.exact_more.entry(key).or_default().push(cookie);
            }
        }
        if many_remotes {
            self.any_peer
                .entry((key.0, key.1, key.2))
                .or_default()
                .push(cookie);
        }
    }

    /// Adds the sockets of `key` to `out` (once each).
    fn find(&self, key: SocketKey, out: &mut Vec<u64>) {
        let mut add = |cookie: u64| {
            if !out.contains(&cookie) {
                out.push(cookie);
            }
        };
        if let Some(first) = self.exact.get(&key) {
            add(*first);
            for cookie in self.exact_more.get(&key).map_or(&[][..], Vec::as_slice) {
                add(*cookie);
            }
        } else if let Some(any) = self.any_peer.get(&(key.0, key.1, key.2)) {
            for cookie in any {
                add(*cookie);
            }
        }
    }

    /// The sockets a flow belongs to: those on the host's side and those at the other end
    /// (both ends local: another namespace over a veth, or two host sockets); empty for none.
    pub fn sockets_of(&self, flow: &FlowKey) -> Vec<u64> {
        let here = (
            flow.proto,
            flow.local_addr,
            flow.local_port,
            flow.remote_addr,
            flow.remote_port,
        );
        let there = (
            flow.proto,
            flow.remote_addr,
            flow.remote_port,
            flow.local_addr,
            flow.local_port,
        );
        let mut out = Vec::new();
        self.find(here, &mut out);
        self.find(there, &mut out);
        out
    }
}

/// Whether a flow's protocol belongs to sockets at all.
pub fn socket_protocol(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

/// Per-flow deltas between samples, and the host's own addresses.
pub struct FlowDeltas {
    /// Each flow's totals at the last sample, and the sample (`epoch`) that last held it.
    last: HashMap<FlowKey, (FlowCounters, u32)>,
    epoch: u32,
    host_addrs: HashSet<[u8; 16]>,
    addrs_read: Option<Instant>,
}

impl FlowDeltas {
    pub fn new() -> Self {
        Self {
            last: HashMap::default(),
            epoch: 0,
            host_addrs: HashSet::default(),
            addrs_read: None,
        }
    }

    /// Takes `flows` as the starting point.
    pub fn baseline(&mut self, flows: &[(FlowKey, FlowCounters)]) {
        let epoch = self.epoch;
        self.last = flows.iter().map(|(k, c)| (*k, (*c, epoch))).collect();
    }

    /// What each flow counted since the previous sample (`flows` holds each flow once). A flow
    /// whose total went down was evicted and created again: all of its count is new. Flows
    /// gone from the sample are forgotten. The table is updated in place: a second table of
    /// every flow (tens of megabytes at a hundred thousand flows) is never built beside it.
    pub fn advance(&mut self, flows: &[(FlowKey, FlowCounters)]) -> Vec<(FlowKey, FlowCounters)> {
        self.epoch = self.epoch.wrapping_add(1);
        let epoch = self.epoch;
        let mut out = Vec::new();
        for (key, now) in flows {
            let (before, seen) = self
                .last
                .entry(*key)
                .or_insert((FlowCounters::default(), epoch));
            let d = |a: u64, b: u64| if a >= b { a - b } else { a };
            let delta = FlowCounters {
                rx_bytes: d(now.rx_bytes, before.rx_bytes),
                rx_packets: d(now.rx_packets, before.rx_packets),
                tx_bytes: d(now.tx_bytes, before.tx_bytes),
                tx_packets: d(now.tx_packets, before.tx_packets),
            };
            if delta != FlowCounters::default() {
                out.push((*key, delta));
            }
            (*before, *seen) = (*now, epoch);
        }
        if self.last.len() > flows.len() {
            self.last.retain(|_, (_, seen)| *seen == epoch);
        }
        // A burst of flows leaves its table's room behind once it is over; hand it back.
        if self.last.capacity() > 4096 && self.last.len() < self.last.capacity() / 4 {
            self.last.shrink_to(self.last.len() * 2);
        }
        out
    }

    /// Whether `addr` is one of this host's addresses (its own network namespace), read
    /// again every ten seconds.
    pub fn is_host_address(&mut self, addr: &[u8; 16]) -> bool {
        let now = Instant::now();
        if self
            .addrs_read
            .is_none_or(|at| now.duration_since(at) >= ADDRESS_REFRESH)
        {
            self.host_addrs = host_addresses();
            self.addrs_read = Some(now);
        }
        self.host_addrs.contains(addr)
    }

    #[cfg(test)]
    pub fn set_host_addresses(&mut self, addrs: impl IntoIterator<Item = [u8; 16]>) {
        self.host_addrs = addrs.into_iter().collect();
        self.addrs_read = Some(Instant::now());
    }
}

fn host_addresses() -> HashSet<[u8; 16]> {
    ::pcap::Device::list()
        .map(|devices| {
            devices
                .iter()
                .flat_map(|d| &d.addresses)
                .map(|a| crate::collect::pcap::sockets::addr_bytes(a.addr).1)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use kaipo_common::FAMILY_IPV4;

    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    fn flow(local: [u8; 4], lport: u16, remote: [u8; 4], rport: u16) -> FlowKey {
        FlowKey {
            ifindex: 5,
            proto: PROTO_UDP,
            family: FAMILY_IPV4,
            local_port: lport,
            remote_port: rport,
            local_addr: v4(local),
            remote_addr: v4(remote),
            ..FlowKey::default()
        }
    }

    #[test]
    fn a_flow_names_the_host_socket_and_the_socket_at_the_other_end() {
        let mut index = SocketIndex::default();
        let host = [10, 0, 0, 1];
        let ns = [10, 0, 0, 2];
        index.insert(1, (PROTO_UDP, v4(host), 40000, v4(ns), 9999), false);
        index.insert(2, (PROTO_UDP, v4(ns), 9999, v4(host), 40000), false);
        assert_eq!(index.sockets_of(&flow(host, 40000, ns, 9999)), [1, 2]);
        // A listener and the socket it accepted share endpoints: both are found.
        index.insert(4, (PROTO_UDP, v4(host), 40000, v4(ns), 9999), false);
        assert_eq!(index.sockets_of(&flow(host, 40000, ns, 9999)), [1, 4, 2]);
        // A server socket that heard many peers answers for any of them.
        index.insert(3, (PROTO_UDP, v4(host), 53, v4([10, 0, 0, 9]), 5000), true);
        assert_eq!(index.sockets_of(&flow(host, 53, [10, 0, 0, 7], 6000)), [3]);
        assert!(index
            .sockets_of(&flow(host, 54, [10, 0, 0, 7], 6000))
            .is_empty());
    }

    #[test]
    fn flow_deltas_follow_totals_and_restart_after_eviction() {
        let mut deltas = FlowDeltas::new();
        let key = flow([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        let c = |rx| FlowCounters {
            rx_bytes: rx,
            rx_packets: rx / 100,
            ..FlowCounters::default()
        };
        deltas.baseline(&[(key, c(1000))]);
        assert_eq!(deltas.advance(&[(key, c(1500))]), vec![(key, c(500))]);
        assert!(deltas.advance(&[(key, c(1500))]).is_empty());
        // Evicted, then counted again from zero.
        assert_eq!(deltas.advance(&[(key, c(300))]), vec![(key, c(300))]);
        // Gone from a sample, then back: all of its count is new (remembered, it would be
        // 100).
        let other = flow([10, 0, 0, 1], 3, [10, 0, 0, 2], 4);
        assert_eq!(deltas.advance(&[(other, c(50))]), vec![(other, c(50))]);
        assert_eq!(
            deltas.advance(&[(other, c(50)), (key, c(400))]),
            vec![(key, c(400))]
        );
    }
}
