//! Which socket cookies are alive, from the kernel's socket tables, for the sweep of socket-map
//! entries that no close mark reached.
//!
//! The release hook marks a socket's entry closed, and userspace retires marked entries. An
//! entry can still miss its mark (a packet path writing the same flags byte at the same moment),
//! and would then stay for good. The sweep asks the kernel which TCP and UDP sockets exist, in
//! every network namespace, with their cookies: `sock_diag` dumps (`inet_diag`) carry the same
//! cookie the socket programs key their map by. One dump per namespace, family and protocol;
//! only entries that have been idle for a while are candidates, so this runs rarely.
//!
//! Namespaces are found through `/proc/*/ns/net` and `/run/netns/*`. A namespace reachable
//! only through a socket (its creator moved on and nothing pins it) is not seen; its idle
//! entries would be taken for dead, which costs their sockets a fresh start of their counters
//! (counted from then on as new sockets), nothing more. When a namespace cannot be listed the
//! sweep removes nothing.

use std::{
    collections::HashSet,
    fs, io,
    mem::size_of,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
};

use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Where the cookie sits in an `inet_diag_msg`: after family, state, timer and retrans (4),
/// the ports (4), the addresses (32) and the interface (4).
const COOKIE_AT: usize = 44;
/// Where the socket's inode sits: after the cookie (8), expiry, queues and uid (16).
const INODE_AT: usize = 68;
/// Bounds one dump's reading, in receive calls; a dump of a million sockets takes about 6,000.
const MAX_RECVS: usize = 100_000;

#[repr(C)]
#[derive(Default)]
struct DumpRequest {
    // struct nlmsghdr
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    // struct inet_diag_req_v2
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    // struct inet_diag_sockid, all zero: every socket.
    id: [u32; 12],
}
const _: () = assert!(size_of::<DumpRequest>() == 72);

/// Cookies of every TCP and UDP socket of every network namespace found.
pub fn live_cookies() -> io::Result<HashSet<u64>> {
    let mut live = HashSet::new();
    for_each_socket(|cookie, _| {
        live.insert(cookie);
    })?;
    Ok(live)
}

/// Calls `f` with the cookie and inode of every TCP and UDP socket of every network namespace
/// found. A socket that belongs to no file (a kernel socket, one being torn down) has inode 0.
pub fn for_each_socket(f: impl FnMut(u64, u64)) -> io::Result<()> {
    for_each_socket_of(&[PROTO_TCP, PROTO_UDP], f)
}

/// [`for_each_socket`] for the sockets of `protocols` only (TCP and UDP; others are not
/// listed). Each dump walks the kernel's whole table of its protocol, once per namespace, so
/// a lookup that needs only UDP sockets skips the TCP tables.
pub fn for_each_socket_of(protocols: &[u8], mut f: impl FnMut(u64, u64)) -> io::Result<()> {
    let wanted: Vec<u8> = [PROTO_TCP, PROTO_UDP]
        .into_iter()
        .filter(|p| protocols.contains(p))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    for ns in namespaces()? {
        let diag = diag_socket_in(ns)?;
        for family in [FAMILY_IPV4, FAMILY_IPV6] {
            for &protocol in &wanted {
                dump(&diag, family, protocol, &mut f)?;
            }
        }
    }
    Ok(())
}

/// One open descriptor per distinct network namespace.
fn namespaces() -> io::Result<Vec<OwnedFd>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut paths = Vec::new();
    for entry in fs::read_dir("/proc")?.filter_map(Result::ok) {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            paths.push(entry.path().join("ns/net"));
        }
    }
    if let Ok(pinned) = fs::read_dir("/run/netns") {
        paths.extend(pinned.filter_map(Result::ok).map(|e| e.path()));
    }
    for path in paths {
        // A process that exited in between, or a stale pin: skipped.
        let Ok(file) = fs::File::open(&path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            out.push(OwnedFd::from(file));
        }
    }
    Ok(out)
}

/// A `sock_diag` netlink socket of namespace `ns`: a netlink socket belongs to the namespace
/// it was created in, so a short-lived thread enters `ns` to create it.
fn diag_socket_in(ns: OwnedFd) -> io::Result<OwnedFd> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: `ns` is an open namespace descriptor; only this thread moves.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: plain socket creation.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_NETLINK,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        NETLINK_SOCK_DIAG,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: a descriptor just created and owned by nobody else.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Calls `f` with the cookie and inode of every socket of one family and protocol.
fn dump(diag: &OwnedFd, family: u8, protocol: u8, f: &mut impl FnMut(u64, u64)) -> io::Result<()> {
    let request = DumpRequest {
        len: size_of::<DumpRequest>() as u32,
        kind: SOCK_DIAG_BY_FAMILY,
        flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        seq: 1,
        family,
        protocol,
        states: u32::MAX,
        ..DumpRequest::default()
    };
    // SAFETY: sending the request's bytes, all initialised (no padding in the struct).
    let sent = unsafe {
        libc::send(
            diag.as_raw_fd(),
            (&raw const request).cast(),
            size_of::<DumpRequest>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..MAX_RECVS {
        // SAFETY: receiving into a buffer of the given length.
        let got = unsafe { libc::recv(diag.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse(&buf[..got as usize], f)? {
            return Ok(());
        }
    }
    Err(io::Error::other("socket dump did not end"))
}

/// Reads the messages of one receive; true once the dump's end is reached.
fn parse(mut bytes: &[u8], f: &mut impl FnMut(u64, u64)) -> io::Result<bool> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    while bytes.len() >= 16 {
        let len = u32_at(bytes, 0) as usize;
        let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
        if len < 16 || len > bytes.len() {
            return Err(io::Error::other("truncated netlink message"));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = bytes.get(16..20).map_or(0, |e| u32_at(e, 0) as i32);
                // A protocol the kernel has no diag module for has no sockets to list here.
                if -errno == libc::ENOENT {
                    return Ok(true);
                }
                return Err(io::Error::from_raw_os_error(-errno));
            }
            _ if len >= 16 + INODE_AT + 4 => {
                let msg = &bytes[16..len];
                let low = u64::from(u32_at(msg, COOKIE_AT));
                let high = u64::from(u32_at(msg, COOKIE_AT + 4));
                f(low | high << 32, u64::from(u32_at(msg, INODE_AT)));
            }
            _ => {}
        }
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    Ok(false)
}

/// The socket cookie of descriptor `fd`, as the kernel programs see it (for tests).
#[cfg(test)]
pub(super) fn cookie_of(fd: i32) -> u64 {
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    assert_eq!(ret, 0, "SO_COOKIE of descriptor {fd}");
    cookie
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd as _};

    use super::*;

    #[test]
    fn lists_a_bound_socket_with_its_inode_and_forgets_it_once_closed() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let cookie = cookie_of(socket.as_raw_fd());
        let inode = fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .expect("the socket's descriptor")
            .ino();
        let diag = diag_socket_in(OwnedFd::from(
            fs::File::open("/proc/self/ns/net").expect("own namespace"),
        ))
        .expect("sock_diag socket");
        let mut live = std::collections::HashMap::new();
        dump(&diag, FAMILY_IPV4, PROTO_UDP, &mut |c, i| {
            live.insert(c, i);
        })
        .expect("dump");
        assert_eq!(live.get(&cookie), Some(&inode));
        drop(socket);
        live.clear();
        dump(&diag, FAMILY_IPV4, PROTO_UDP, &mut |c, i| {
            live.insert(c, i);
        })
        .expect("dump");
        assert!(!live.contains_key(&cookie));
    }
}
