//! Which socket a captured flow belongs to, and which process holds that socket.
//!
//! A packet capture sees addresses and ports, not sockets, so the pcap backend asks the
//! operating system's socket tables instead. Each platform reads them its own way behind
//! [`SocketSource`]: `/proc` on Linux, `lsof` on macOS, the IP helper tables on Windows.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(any(target_os = "macos", test))]
pub mod lsof;
#[cfg(target_os = "windows")]
pub mod netstat;
#[cfg(any(target_os = "macos", target_os = "windows", test))]
pub mod snapshot;

use std::{
    collections::{HashMap, HashSet},
    io,
    net::IpAddr,
};

use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6};

/// The socket source of this platform.
#[cfg(target_os = "linux")]
pub type PlatformSource = linux::ProcSource;
#[cfg(target_os = "macos")]
pub type PlatformSource = lsof::LsofSource;
#[cfg(target_os = "windows")]
pub type PlatformSource = netstat::NetstatSource;

/// A socket's endpoints, or a flow's seen from the host's side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SocketKey {
    pub proto: u8,
    pub family: u8,
    /// IPv4 in the first four bytes; an IPv4-mapped IPv6 address is stored as IPv4.
    pub local: [u8; 16],
    pub local_port: u16,
    pub remote: [u8; 16],
    pub remote_port: u16,
}

impl SocketKey {
    /// Neither a remote address nor a remote port: a listener or an unconnected datagram
    /// socket, which stands for every flow to its local address and port.
    pub fn is_unconnected(&self) -> bool {
        self.remote_port == 0 && self.remote == [0; 16]
    }

    /// Rewrites IPv4-mapped IPv6 endpoints (`::ffff:a.b.c.d`, what a dual-stack socket shows
    /// for IPv4 peers) as IPv4, the way the packets carry them.
    pub fn normalized(mut self) -> Self {
        let mapped_or_unset = |a: &[u8; 16]| is_v4_mapped(a) || *a == [0; 16];
        if self.family == FAMILY_IPV6
            && mapped_or_unset(&self.local)
            && mapped_or_unset(&self.remote)
            && (is_v4_mapped(&self.local) || is_v4_mapped(&self.remote))
        {
            self.family = FAMILY_IPV4;
            self.local = unmap(&self.local);
            self.remote = unmap(&self.remote);
        }
        self
    }
}

fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..10] == [0; 10] && addr[10..12] == [0xff, 0xff]
}

fn unmap(addr: &[u8; 16]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&addr[12..]);
    out
}

/// One row of a socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub key: SocketKey,
    /// Unique for the socket's life: the inode on Linux. 0 for rows no file stands for (TCP
    /// TIME_WAIT and half-open connections), which no process owns.
    pub cookie: u64,
}

/// A process holding a socket, as [`kaipo_common::Event`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketOwner {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: [u8; 16],
}

impl SocketOwner {
    /// An event of `kind` about this process, in the eBPF backend's shape.
    pub fn event(&self, kind: u32) -> kaipo_common::Event {
        kaipo_common::Event {
            kind,
            tgid: self.pid,
            tid: self.pid,
            uid: self.uid,
            gid: self.gid,
            comm: self.comm,
            ..kaipo_common::Event::default()
        }
    }
}

/// The round (sample or interval) of the next search for a socket's owner after `misses`
/// searches found none, the last in round `now`: the wait doubles, up to 64 rounds, so a socket
/// no process holds (a kernel socket) does not cost a scan every round.
pub fn next_owner_search(now: u64, misses: u32) -> u64 {
    now + (1u64 << misses.min(6))
}

/// How a platform reads its socket tables.
pub trait SocketSource: Send {
    /// Every socket visible here, read afresh.
    fn read_table(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()>;
    /// The pid holding each of `cookies`, as far as a bounded amount of work finds them now.
    /// Sockets not found are asked for again on a later call, so the work spreads out.
    fn owners(&mut self, cookies: &[u64], out: &mut Vec<(u64, u32)>);
    /// Name and user of a process, or `None` once it is gone.
    fn describe(&mut self, pid: u32) -> Option<SocketOwner>;
    /// Whether the process still runs (as of the last table read, where that is all there is).
    fn is_alive(&mut self, pid: u32) -> bool;
}

/// The socket tables, indexed for looking up flows.
pub struct SocketTable<S> {
    source: S,
    rows: Vec<SocketEntry>,
    exact: HashMap<SocketKey, u64>,
    /// Unconnected sockets by (proto, family, local address, local port).
    bound: HashMap<(u8, u8, [u8; 16], u16), u64>,
    /// Unconnected sockets on the wildcard address, by (proto, family, local port).
    wildcard: HashMap<(u8, u8, u16), u64>,
    live: HashSet<u64>,
}

impl<S: SocketSource> SocketTable<S> {
    pub fn new(source: S) -> Self {
        Self {
            source,
            rows: Vec::new(),
            exact: HashMap::new(),
            bound: HashMap::new(),
            wildcard: HashMap::new(),
            live: HashSet::new(),
        }
    }

    /// Re-reads the tables. They are cheap to read whole; finding owners is the costly part,
    /// and [`Self::owners`] does that only for the sockets asked about.
    pub fn refresh(&mut self) -> io::Result<()> {
        self.rows.clear();
        self.source.read_table(&mut self.rows)?;
        self.exact.clear();
        self.bound.clear();
        self.wildcard.clear();
        self.live.clear();
        for row in &self.rows {
            if row.cookie == 0 {
                continue;
            }
            let key = row.key.normalized();
            self.live.insert(row.cookie);
            if !key.is_unconnected() {
                self.exact.entry(key).or_insert(row.cookie);
            } else if key.local == [0; 16] {
                self.wildcard
                    .entry((key.proto, key.family, key.local_port))
                    .or_insert(row.cookie);
            } else {
                self.bound
                    .entry((key.proto, key.family, key.local, key.local_port))
                    .or_insert(row.cookie);
            }
        }
        Ok(())
    }

    /// The socket a flow belongs to: the connected socket with exactly its endpoints, else an
    /// unconnected one (see [`Self::lookup_unconnected`]).
    pub fn lookup(&self, flow: &SocketKey) -> Option<u64> {
        self.lookup_connected(flow)
            .or_else(|| self.lookup_unconnected(flow))
    }

    pub fn lookup_connected(&self, flow: &SocketKey) -> Option<u64> {
        self.exact.get(flow).copied()
    }

    /// A listener or unconnected socket bound to the flow's local address and port, else one
    /// bound to the port on every address (for IPv4, a dual-stack IPv6 socket too). Several
    /// sockets sharing a port (`SO_REUSEPORT`) cannot be told apart from outside; the first
    /// listed wins.
    pub fn lookup_unconnected(&self, flow: &SocketKey) -> Option<u64> {
        let (proto, port) = (flow.proto, flow.local_port);
        self.bound
            .get(&(proto, flow.family, flow.local, port))
            .or_else(|| self.wildcard.get(&(proto, flow.family, port)))
            .or_else(|| {
                (flow.family == FAMILY_IPV4)
                    .then(|| self.wildcard.get(&(proto, FAMILY_IPV6, port)))
                    .flatten()
            })
            .copied()
    }

    /// Whether the last read listed this socket.
    pub fn is_live(&self, cookie: u64) -> bool {
        self.live.contains(&cookie)
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn owners(&mut self, cookies: &[u64], out: &mut Vec<(u64, u32)>) {
        self.source.owners(cookies, out);
    }

    pub fn describe(&mut self, pid: u32) -> Option<SocketOwner> {
        self.source.describe(pid)
    }

    pub fn is_alive(&mut self, pid: u32) -> bool {
        self.source.is_alive(pid)
    }

    pub fn source(&self) -> &S {
        &self.source
    }
}

/// An address as flows carry it: family, and IPv4 in the first four bytes.
pub fn addr_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, out)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}

/// A process name as the kernel keeps it: at most 15 bytes and a NUL.
pub fn comm_bytes(name: &str) -> [u8; 16] {
    let mut comm = [0; 16];
    let bytes = name.trim_end_matches('\n').as_bytes();
    let len = bytes.len().min(15);
    comm[..len].copy_from_slice(&bytes[..len]);
    comm
}

#[cfg(test)]
mod tests {
    use kaipo_common::{PROTO_TCP, PROTO_UDP};

    use super::*;

    struct Fixed(Vec<SocketEntry>);

    impl SocketSource for Fixed {
        fn read_table(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()> {
            out.extend_from_slice(&self.0);
            Ok(())
        }
        fn owners(&mut self, _: &[u64], _: &mut Vec<(u64, u32)>) {}
        fn describe(&mut self, _: u32) -> Option<SocketOwner> {
            None
        }
        fn is_alive(&mut self, _: u32) -> bool {
            true
        }
    }

    fn a4(last: u8) -> [u8; 16] {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&[10, 0, 0, last]);
        a
    }

    fn mapped(last: u8) -> [u8; 16] {
        let mut a = [0; 16];
        a[10..12].copy_from_slice(&[0xff, 0xff]);
        a[12..].copy_from_slice(&[10, 0, 0, last]);
        a
    }

    fn key(
        proto: u8,
        family: u8,
        local: [u8; 16],
        lport: u16,
        remote: [u8; 16],
        rport: u16,
    ) -> SocketKey {
        SocketKey {
            proto,
            family,
            local,
            local_port: lport,
            remote,
            remote_port: rport,
        }
    }

    #[test]
    fn exact_then_bound_then_wildcard_then_dual_stack() {
        let rows = vec![
            // A server's accepted connection, seen through a dual-stack socket.
            SocketEntry {
                key: key(PROTO_TCP, FAMILY_IPV6, mapped(1), 443, mapped(9), 50000),
                cookie: 11,
            },
            // Its listener on every IPv6 (and so IPv4) address.
            SocketEntry {
                key: key(PROTO_TCP, FAMILY_IPV6, [0; 16], 443, [0; 16], 0),
                cookie: 12,
            },
            SocketEntry {
                key: key(PROTO_UDP, FAMILY_IPV4, a4(1), 53, [0; 16], 0),
                cookie: 13,
            },
            SocketEntry {
                key: key(PROTO_UDP, FAMILY_IPV4, [0; 16], 53, [0; 16], 0),
                cookie: 14,
            },
            // TIME_WAIT: no owner, never matched.
            SocketEntry {
                key: key(PROTO_TCP, FAMILY_IPV4, a4(1), 443, a4(8), 40000),
                cookie: 0,
            },
        ];
        let mut table = SocketTable::new(Fixed(rows));
        table.refresh().unwrap();
        let flow = |proto, local, lport, remote, rport| {
            table.lookup(&key(proto, FAMILY_IPV4, local, lport, remote, rport))
        };
        assert_eq!(flow(PROTO_TCP, a4(1), 443, a4(9), 50000), Some(11));
        assert_eq!(flow(PROTO_TCP, a4(1), 443, a4(7), 50001), Some(12));
        assert_eq!(flow(PROTO_TCP, a4(1), 443, a4(8), 40000), Some(12));
        assert_eq!(flow(PROTO_UDP, a4(1), 53, a4(7), 999), Some(13));
        assert_eq!(flow(PROTO_UDP, a4(2), 53, a4(7), 999), Some(14));
        assert_eq!(flow(PROTO_UDP, a4(2), 54, a4(7), 999), None);
        assert_eq!(flow(PROTO_TCP, a4(1), 80, a4(7), 999), None);
        assert!(table.is_live(11) && !table.is_live(0));
        assert_eq!(table.live_count(), 4);
    }

    #[test]
    fn comm_is_cut_like_the_kernel_cuts_it() {
        assert_eq!(&comm_bytes("kaipo\n")[..6], b"kaipo\0");
        assert_eq!(comm_bytes("a-very-long-process-name")[15], 0);
        assert_eq!(
            &comm_bytes("a-very-long-process-name")[..15],
            b"a-very-long-pro"
        );
    }
}
