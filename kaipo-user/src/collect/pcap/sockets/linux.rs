//! Linux socket tables from `/proc`.
//!
//! `/proc/net/{tcp,tcp6,udp,udp6}` list every socket of this network namespace with its inode,
//! and are cheap enough to read whole on every refresh. Who holds a socket shows only in
//! `/proc/<pid>/fd/*` links (`socket:[INODE]`), which cost a `readlink` per descriptor of every
//! process; so owners are looked up only for the sockets asked about, from a cache of where each
//! inode was last seen (checked with one `readlink`), and otherwise by scanning processes,
//! newcomers first, then the rest in turn, within a budget per call.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
};

use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP};

use super::{comm_bytes, SocketEntry, SocketKey, SocketOwner, SocketSource};

const TABLES: [(&str, u8, u8); 4] = [
    ("tcp", PROTO_TCP, FAMILY_IPV4),
    ("tcp6", PROTO_TCP, FAMILY_IPV6),
    ("udp", PROTO_UDP, FAMILY_IPV4),
    ("udp6", PROTO_UDP, FAMILY_IPV6),
];

/// The most one [`SocketSource::owners`] call may scan; the rest waits for the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanBudget {
    /// Processes whose descriptor table is listed.
    pub pids: usize,
    /// Descriptor links read. A process is scanned whole once started, so one with more
    /// descriptors than this overruns it once.
    pub fds: usize,
}

impl Default for ScanBudget {
    fn default() -> Self {
        Self {
            pids: 512,
            fds: 32_768,
        }
    }
}

/// Work done so far, for tests and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Times `/proc` was listed for processes.
    pub listings: u64,
    pub pids_scanned: u64,
    pub fds_read: u64,
    /// Cached owners confirmed with a single `readlink`.
    pub confirmed: u64,
    /// Descriptor tables that could not be read (another user's process without privileges).
    pub denied: u64,
}

pub struct ProcSource {
    root: PathBuf,
    budget: ScanBudget,
    /// Where each socket inode was last seen open: process and descriptor.
    seen: HashMap<u64, (u32, u32)>,
    /// The pids of the last listing, so newcomers are scanned first.
    listed: HashSet<u32>,
    /// Where the turn through already listed processes stands.
    cursor: usize,
    pub stats: ScanStats,
}

impl Default for ProcSource {
    fn default() -> Self {
        Self::new(Path::new("/proc"), ScanBudget::default())
    }
}

impl ProcSource {
    pub fn new(root: &Path, budget: ScanBudget) -> Self {
        Self {
            root: root.to_path_buf(),
            budget,
            seen: HashMap::new(),
            listed: HashSet::new(),
            cursor: 0,
            stats: ScanStats::default(),
        }
    }

    /// Forgets where sockets other than `live` were seen (for a caller that lists sockets
    /// itself instead of through [`SocketSource::read_table`]).
    pub fn retain_inodes(&mut self, live: &HashSet<u64>) {
        self.seen.retain(|inode, _| live.contains(inode));
    }

    fn holds(&self, pid: u32, fd: u32, inode: u64) -> bool {
        let link = self
            .root
            .join(pid.to_string())
            .join("fd")
            .join(fd.to_string());
        fs::read_link(link)
            .ok()
            .and_then(|target| socket_inode(target.to_str()?))
            == Some(inode)
    }

    fn list_pids(&mut self) -> Vec<u32> {
        self.stats.listings += 1;
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Reads every descriptor of `pid`, remembering each socket's place and reporting the ones
    /// in `missing`. Returns how many descriptors it read.
    fn scan(&mut self, pid: u32, missing: &mut HashSet<u64>, out: &mut Vec<(u64, u32)>) -> usize {
        let dir = self.root.join(pid.to_string()).join("fd");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                if err.kind() == io::ErrorKind::PermissionDenied {
                    self.stats.denied += 1;
                }
                return 0;
            }
        };
        self.stats.pids_scanned += 1;
        let mut read = 0;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            read += 1;
            let Some(inode) = fs::read_link(entry.path())
                .ok()
                .and_then(|t| socket_inode(t.to_str()?))
            else {
                continue;
            };
            self.seen.insert(inode, (pid, fd));
            if missing.remove(&inode) {
                out.push((inode, pid));
            }
        }
        self.stats.fds_read += read as u64;
        read
    }
}

impl SocketSource for ProcSource {
    fn read_table(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()> {
        let start = out.len();
        for (name, proto, family) in TABLES {
            let path = self.root.join("net").join(name);
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                // No tcp6/udp6 on a kernel booted with IPv6 disabled.
                Err(err) if err.kind() == io::ErrorKind::NotFound && family == FAMILY_IPV6 => {
                    continue
                }
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("reading {}: {err}", path.display()),
                    ))
                }
            };
            out.extend(text.lines().filter_map(|l| parse_line(l, proto, family)));
        }
        let live: HashSet<u64> = out[start..].iter().map(|e| e.cookie).collect();
        self.seen.retain(|inode, _| live.contains(inode));
        Ok(())
    }

    fn owners(&mut self, cookies: &[u64], out: &mut Vec<(u64, u32)>) {
        let mut missing = HashSet::new();
        for &cookie in cookies {
            match self.seen.get(&cookie) {
                Some(&(pid, fd)) if self.holds(pid, fd, cookie) => {
                    self.stats.confirmed += 1;
                    out.push((cookie, pid));
                }
                _ => {
                    missing.insert(cookie);
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let pids = self.list_pids();
        let (fresh, known): (Vec<u32>, Vec<u32>) =
            pids.iter().partition(|pid| !self.listed.contains(pid));
        let turn = if known.is_empty() {
            0
        } else {
            self.cursor % known.len()
        };
        let order = fresh
            .iter()
            .chain(known[turn..].iter())
            .chain(known[..turn].iter())
            .copied();
        let (mut pids_left, mut fds_left) = (self.budget.pids, self.budget.fds);
        let mut known_scanned = 0;
        let mut fresh_scanned = Vec::new();
        for pid in order {
            if missing.is_empty() || pids_left == 0 || fds_left == 0 {
                break;
            }
            if self.listed.contains(&pid) {
                known_scanned += 1;
            } else {
                fresh_scanned.push(pid);
            }
            fds_left = fds_left.saturating_sub(self.scan(pid, &mut missing, out));
            pids_left -= 1;
        }
        self.cursor = turn + known_scanned;
        // Exited processes drop out; newcomers not reached keep their priority.
        self.listed = known.into_iter().chain(fresh_scanned).collect();
    }

    fn describe(&mut self, pid: u32) -> Option<SocketOwner> {
        let dir = self.root.join(pid.to_string());
        let comm = fs::read_to_string(dir.join("comm")).ok()?;
        let status = fs::read_to_string(dir.join("status")).ok()?;
        let id = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(u32::MAX)
        };
        Some(SocketOwner {
            pid,
            uid: id("Uid:"),
            gid: id("Gid:"),
            comm: comm_bytes(&comm),
        })
    }

    fn is_alive(&mut self, pid: u32) -> bool {
        // A zombie keeps its /proc entry but no descriptors; it has exited for kaipo's purpose.
        fs::read_dir(self.root.join(pid.to_string()).join("fd")).is_ok()
    }
}

/// The inode of a descriptor link's target `socket:[INODE]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One row of `/proc/net/{tcp,udp}{,6}`:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`
/// with addresses as the kernel's 32-bit words in hex, each in host byte order.
pub fn parse_line(line: &str, proto: u8, family: u8) -> Option<SocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    fields.next()?.strip_suffix(':')?;
    let (local, local_port) = endpoint(fields.next()?, family)?;
    let (remote, remote_port) = endpoint(fields.next()?, family)?;
    let cookie = fields.nth(6)?.parse().ok()?;
    Some(SocketEntry {
        key: SocketKey {
            proto,
            family,
            local,
            local_port,
            remote,
            remote_port,
        },
        cookie,
    })
}

fn endpoint(text: &str, family: u8) -> Option<([u8; 16], u16)> {
    let (addr, port) = text.split_once(':')?;
    let words = if family == FAMILY_IPV4 { 1 } else { 4 };
    if addr.len() != 8 * words {
        return None;
    }
    let mut out = [0; 16];
    for i in 0..words {
        let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some((out, u16::from_str_radix(port, 16).ok()?))
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
