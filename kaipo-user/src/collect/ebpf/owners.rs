//! Owners the kernel programs cannot see, found in the descriptor tables.
//!
//! The programs learn a socket's owner when it is created and when its process sends on it.
//! A socket that only receives and existed before kaipo started (or that TCP accepted and
//! whose process has not sent yet) has carried traffic without either. For those, and only
//! those, userspace asks the kernel which inode each socket cookie has (`sock_diag`, every
//! network namespace) and which process holds that inode open (`/proc/PID/fd`), the way
//! pcap-based tools find every owner. A socket no process holds (a kernel socket) is looked
//! for again less and less often, so it does not cost a scan every interval.

use std::collections::{HashMap, HashSet};

use kaipo_common::{Event, EVENT_SOCK_OWNER, OWNER_FROM_PROC, PROTO_TCP, PROTO_UDP};

use super::sweep;
use crate::collect::pcap::sockets::{linux::ProcSource, next_owner_search, SocketSource as _};

#[derive(Default)]
pub struct OwnerFinder {
    procs: ProcSource,
    /// Sockets looked for and not found: misses so far, and the round of the next try.
    hunting: HashMap<u64, (u32, u64)>,
    round: u64,
}

impl OwnerFinder {
    /// Owner events for those of `cookies` whose holder it finds; one search per call at most.
    /// `protocols` are those of the sockets of `cookies`: only their tables are listed.
    pub fn find(&mut self, cookies: &[u64], protocols: &[u8], out: &mut Vec<Event>) {
        self.round += 1;
        let round = self.round;
        let due: HashSet<u64> = cookies
            .iter()
            .copied()
            .filter(|c| self.hunting.get(c).is_none_or(|(_, next)| *next <= round))
            .collect();
        if due.is_empty() {
            return;
        }
        // The due sockets still open, by inode; one that belongs to no file has inode 0 and
        // no holder to find.
        let mut inodes: HashMap<u64, u64> = HashMap::with_capacity(due.len());
        let mut open = HashSet::with_capacity(due.len());
        let mut live = HashSet::new();
        let every_table = [PROTO_TCP, PROTO_UDP].iter().all(|p| protocols.contains(p));
        let listed = sweep::for_each_socket_of(protocols, |cookie, inode| {
            live.insert(inode);
            if due.contains(&cookie) {
                open.insert(cookie);
                if inode != 0 {
                    inodes.insert(inode, cookie);
                }
            }
        });
        if let Err(err) = listed {
            log::debug!("socket owners not looked up: {err}");
            return;
        }
        // What the descriptor scan remembers of sockets no longer listed goes, once every
        // table was listed.
        if every_table {
            self.procs.retain_inodes(&live);
        }
        let wanted: Vec<u64> = inodes.keys().copied().collect();
        let mut found = Vec::with_capacity(wanted.len());
        if !wanted.is_empty() {
            self.procs.owners(&wanted, &mut found);
        }
        let now = monotonic_ns();
        let mut located = HashSet::with_capacity(found.len());
        for (inode, pid) in found {
            let Some(&cookie) = inodes.get(&inode) else {
                continue;
            };
            // A process that exited since the scan has nothing left to tell.
            let Some(owner) = self.procs.describe(pid) else {
                continue;
            };
            located.insert(cookie);
            self.hunting.remove(&cookie);
            out.push(Event {
                source: OWNER_FROM_PROC,
                cookie,
                ts_ns: now,
                ..owner.event(EVENT_SOCK_OWNER)
            });
        }
        for cookie in due {
            if located.contains(&cookie) {
                continue;
            }
            if !open.contains(&cookie) {
                // Closed: nothing to look for any more.
                self.hunting.remove(&cookie);
                continue;
            }
            let (misses, next) = self.hunting.entry(cookie).or_insert((0, 0));
            *misses += 1;
            *next = next_owner_search(round, *misses);
        }
    }

    /// Stops looking for sockets the collector dropped.
    pub fn forget(&mut self, cookies: &[u64]) {
        for cookie in cookies {
            self.hunting.remove(cookie);
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock the kernel programs stamp their reports with,
/// so a later report from the kernel wins over this one.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd as _;

    use super::*;

    fn cookie_of(socket: &UdpSocket) -> u64 {
        sweep::cookie_of(socket.as_raw_fd())
    }

    #[test]
    fn finds_the_process_holding_a_socket_and_drops_a_closed_one() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let cookie = cookie_of(&socket);
        let mut finder = OwnerFinder::default();
        let mut out = Vec::new();
        finder.find(&[cookie], &[PROTO_UDP], &mut out);
        assert_eq!(out.len(), 1, "one owner event: {out:?}");
        let event = out[0];
        assert_eq!(event.kind, EVENT_SOCK_OWNER);
        assert_eq!(event.cookie, cookie);
        assert_eq!(event.tgid, std::process::id());
        assert_eq!(event.source, OWNER_FROM_PROC);
        // SAFETY: getuid has no preconditions.
        assert_eq!(event.uid, unsafe { libc::getuid() });
        assert!(finder.hunting.is_empty());

        drop(socket);
        out.clear();
        finder.find(&[cookie], &[PROTO_UDP], &mut out);
        assert!(out.is_empty());
        assert!(finder.hunting.is_empty(), "a closed socket is not hunted");
    }

    /// Only the tables of the protocols asked for are listed: a TCP socket looked up among UDP
    /// sockets is not seen, among TCP sockets it is found.
    #[test]
    fn only_the_protocols_asked_for_are_listed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let cookie = sweep::cookie_of(listener.as_raw_fd());
        let mut finder = OwnerFinder::default();
        let mut out = Vec::new();
        finder.find(&[cookie], &[PROTO_UDP], &mut out);
        assert!(out.is_empty(), "found among UDP sockets: {out:?}");
        let mut finder = OwnerFinder::default();
        finder.find(&[cookie], &[PROTO_TCP], &mut out);
        assert_eq!(out.len(), 1, "one owner event: {out:?}");
        assert_eq!((out[0].cookie, out[0].tgid), (cookie, std::process::id()));
    }

    /// Sends `fd` over a Unix socket pair and closes it here: the socket is then open, but held
    /// only by the message in flight, by no process's descriptor table. Returns the pair, which
    /// keeps the message.
    fn hand_to_nobody(
        socket: UdpSocket,
    ) -> (
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::UnixDatagram,
    ) {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        let fd = socket.as_raw_fd();
        // Words, not bytes: a control message header is aligned like one.
        let mut space = [0u64; 8];
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: a zeroed msghdr pointed at live buffers, with one SCM_RIGHTS control message
        // built in `space` (large enough for one descriptor) through the CMSG macros.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<i32>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as usize;
            libc::CMSG_DATA(cmsg).cast::<i32>().write_unaligned(fd);
            assert_eq!(
                libc::sendmsg(a.as_raw_fd(), &raw const msg, 0),
                1,
                "sendmsg"
            );
        }
        drop(socket);
        (a, b)
    }

    #[test]
    fn a_socket_no_process_holds_is_looked_for_less_and_less_often() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let cookie = cookie_of(&socket);
        let _in_flight = hand_to_nobody(socket);
        let mut finder = OwnerFinder::default();
        let mut out = Vec::new();
        // Looked for in rounds 1, 3, 7 and 15: after each miss the wait doubles.
        let mut searched = Vec::new();
        for round in 1..=20u64 {
            let due = finder
                .hunting
                .get(&cookie)
                .is_none_or(|(_, next)| *next <= round);
            finder.find(&[cookie], &[PROTO_UDP], &mut out);
            if due {
                searched.push(round);
            }
        }
        assert!(out.is_empty(), "nobody holds it: {out:?}");
        assert_eq!(searched, [1, 3, 7, 15]);
        assert_eq!(finder.hunting.get(&cookie), Some(&(4, 31)));
    }
}
