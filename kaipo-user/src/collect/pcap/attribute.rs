//! Flows to sockets: each sample's per-flow bytes are added to the running totals of the socket
//! the socket tables say the flow belongs to, so the accountant sees the same cumulative
//! per-cookie [`SockStats`] the eBPF backend's map holds.

use std::collections::{HashMap, HashSet};

use kaipo_common::{FlowCounters, FlowKey, SockStats, SOCK_FLAG_MANY_REMOTES};

use super::sockets::{SocketKey, SocketSource, SocketTable};

/// The cookie of traffic no socket could be found for. Never gets an owner event, so the
/// accountant reports it as unattributed.
pub const UNATTRIBUTED_COOKIE: u64 = u64::MAX;

/// Samples a flow's remembered socket outlives the flow's last packet.
const BINDING_IDLE_SAMPLES: u32 = 30;

#[derive(Clone, Copy, Debug)]
struct Binding {
    cookie: u64,
    idle: u32,
}

#[derive(Default)]
pub struct Attribution {
    sockets: HashMap<u64, SockStats>,
    /// The socket each flow went to last, so a flow keeps its socket after the socket left the
    /// table (the last segments of a closed TCP connection) and is not handed to a listener.
    bindings: HashMap<SocketKey, Binding>,
    /// Cookies whose totals changed in the current sample.
    active: HashSet<u64>,
}

impl Attribution {
    /// Starts a sample.
    pub fn begin(&mut self) {
        self.active.clear();
        for binding in self.bindings.values_mut() {
            binding.idle += 1;
        }
        self.bindings.retain(|_, b| b.idle <= BINDING_IDLE_SAMPLES);
    }

    /// Adds one flow's bytes since the last sample. On loopback both ends are this host's
    /// sockets: the bytes the flow's sender sent are also what its peer received.
    pub fn add<S: SocketSource>(
        &mut self,
        table: &SocketTable<S>,
        flow: &FlowKey,
        delta: &FlowCounters,
        loopback: bool,
    ) {
        let key = SocketKey {
            proto: flow.proto,
            family: flow.family,
            local: flow.local_addr,
            local_port: flow.local_port,
            remote: flow.remote_addr,
            remote_port: flow.remote_port,
        };
        let cookie = self.resolve(table, &key);
        self.credit(cookie, &key, delta, loopback);
        if loopback && (delta.tx_packets != 0 || delta.rx_packets != 0) {
            let peer = SocketKey {
                local: key.remote,
                local_port: key.remote_port,
                remote: key.local,
                remote_port: key.local_port,
                ..key
            };
            let mirrored = FlowCounters {
                rx_bytes: delta.tx_bytes,
                rx_packets: delta.tx_packets,
                tx_bytes: delta.rx_bytes,
                tx_packets: delta.rx_packets,
            };
            let cookie = self.resolve(table, &peer);
            self.credit(cookie, &peer, &mirrored, true);
        }
    }

    /// Bytes of flows the capture had no room to tell apart.
    pub fn add_unattributed(&mut self, delta: &FlowCounters, loopback: bool) {
        self.credit(UNATTRIBUTED_COOKIE, &SocketKey::default(), delta, loopback);
    }

    fn resolve<S: SocketSource>(&mut self, table: &SocketTable<S>, key: &SocketKey) -> u64 {
        let known = self.bindings.get(key).map(|b| b.cookie);
        let found = table
            .lookup_connected(key)
            .or(known.filter(|c| self.sockets.contains_key(c)))
            .or_else(|| table.lookup_unconnected(key));
        match found {
            Some(cookie) => {
                self.bindings.insert(*key, Binding { cookie, idle: 0 });
                cookie
            }
            None => UNATTRIBUTED_COOKIE,
        }
    }

    fn credit(&mut self, cookie: u64, key: &SocketKey, delta: &FlowCounters, loopback: bool) {
        let stats = self.sockets.entry(cookie).or_insert_with(|| {
            let mut stats = SockStats::default();
            if cookie != UNATTRIBUTED_COOKIE {
                stats.family = key.family;
                stats.proto = key.proto;
                stats.local_addr = key.local;
                stats.local_port = key.local_port;
                stats.remote_addr = key.remote;
                stats.remote_port = key.remote_port;
            }
            stats
        });
        if cookie != UNATTRIBUTED_COOKIE
            && (stats.remote_addr != key.remote || stats.remote_port != key.remote_port)
        {
            stats.flags |= SOCK_FLAG_MANY_REMOTES;
        }
        if loopback {
            stats.lo_rx_bytes += delta.rx_bytes;
            stats.lo_rx_packets += delta.rx_packets;
            stats.lo_tx_bytes += delta.tx_bytes;
            stats.lo_tx_packets += delta.tx_packets;
        } else {
            stats.rx_bytes += delta.rx_bytes;
            stats.rx_packets += delta.rx_packets;
            stats.tx_bytes += delta.tx_bytes;
            stats.tx_packets += delta.tx_packets;
        }
        self.active.insert(cookie);
    }

    /// Sockets whose totals changed in this sample, the unattributed one left out.
    pub fn active(&self) -> impl Iterator<Item = u64> + '_ {
        self.active
            .iter()
            .copied()
            .filter(|c| *c != UNATTRIBUTED_COOKIE)
    }

    pub fn get(&self, cookie: u64) -> Option<&SockStats> {
        self.sockets.get(&cookie)
    }

    pub fn cookies(&self) -> impl Iterator<Item = u64> + '_ {
        self.sockets.keys().copied()
    }

    /// Cumulative totals of every socket that has had traffic and is not yet forgotten.
    pub fn snapshot(&self, out: &mut Vec<(u64, SockStats)>) {
        out.extend(self.sockets.iter().map(|(c, s)| (*c, *s)));
    }

    pub fn forget(&mut self, cookies: &[u64]) {
        let gone: HashSet<u64> = cookies
            .iter()
            .copied()
            .filter(|c| *c != UNATTRIBUTED_COOKIE)
            .collect();
        self.sockets.retain(|c, _| !gone.contains(c));
        self.bindings.retain(|_, b| !gone.contains(&b.cookie));
    }
}

#[cfg(test)]
#[path = "attribute_tests.rs"]
mod tests;
