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

use kaipo_common::{Event, EVENT_SOCK_OWNER, OWNER_FROM_PROC};

use super::sweep;
use crate::collect::pcap::sockets::{linux::ProcSource, SocketSource as _};

/// Longest wait, in intervals, between two searches for an owner not found.
const MAX_RETRY_INTERVALS: u64 = 64;

#[derive(Default)]
pub struct OwnerFinder {
    procs: ProcSource,
    /// Sockets looked for and not found: misses so far, and the round of the next try.
    hunting: HashMap<u64, (u32, u64)>,
    round: u64,
}

impl OwnerFinder {
    /// Owner events for those of `cookies` whose holder it finds; one search per call at most.
    pub fn find(&mut self, cookies: &[u64], out: &mut Vec<Event>) {
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
        let mut inodes: HashMap<u64, u64> = HashMap::with_capacity(due.len());
        let mut live = HashSet::new();
        let listed = sweep::for_each_socket(|cookie, inode| {
            live.insert(inode);
            if inode != 0 && due.contains(&cookie) {
                inodes.insert(inode, cookie);
            }
        });
        if let Err(err) = listed {
            log::debug!("socket owners not looked up: {err}");
            return;
        }
        self.procs.retain_inodes(&live);
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
                kind: EVENT_SOCK_OWNER,
                tgid: owner.pid,
                tid: owner.pid,
                uid: owner.uid,
                gid: owner.gid,
                source: OWNER_FROM_PROC,
                cookie,
                ts_ns: now,
                comm: owner.comm,
                ..Event::default()
            });
        }
        let listed: HashSet<u64> = inodes.values().copied().collect();
        for cookie in due {
            if located.contains(&cookie) {
                continue;
            }
            if !listed.contains(&cookie) {
                // Closed (or never a file's): nothing to look for any more.
                self.hunting.remove(&cookie);
                continue;
            }
            let (misses, next) = self.hunting.entry(cookie).or_insert((0, 0));
            *misses += 1;
            *next = round + (1u64 << (*misses).min(6)).min(MAX_RETRY_INTERVALS);
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
        let mut cookie: u64 = 0;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: valid out-pointers of the sizes given.
        let ret = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&raw mut cookie).cast(),
                &raw mut len,
            )
        };
        assert_eq!(ret, 0);
        cookie
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
        finder.find(&[cookie], &mut out);
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
        finder.find(&[cookie], &mut out);
        assert!(out.is_empty());
        assert!(finder.hunting.is_empty(), "a closed socket is not hunted");
    }
}
