//! macOS socket tables from `lsof`, as bandwhich reads them (`src/os/lsof_utils.rs`): the
//! `libproc` socket records need bindings generated against the macOS SDK, which would make
//! every cross-check of kaipo need that SDK. `lsof -F` is lsof's stable, machine-readable
//! output: one field per line, its kind in the first character.

use std::{collections::HashMap, net::IpAddr};

use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP};

use super::{addr_bytes, comm_bytes, snapshot::ListedSocket, SocketKey, SocketOwner};

/// Reads `lsof -F pcuftPn` output into sockets and what it says of their processes.
pub fn parse_lsof(
    text: &str,
    listed: &mut Vec<ListedSocket>,
    processes: &mut HashMap<u32, SocketOwner>,
) {
    let mut owner = SocketOwner::default();
    let mut file = OpenFile::default();
    for line in text.lines() {
        let mut chars = line.chars();
        let Some(tag) = chars.next() else { continue };
        let value = chars.as_str();
        match tag {
            'p' => {
                file.flush(owner.pid, listed);
                owner = SocketOwner {
                    pid: value.parse().unwrap_or(0),
                    uid: u32::MAX,
                    ..SocketOwner::default()
                };
            }
            'c' => {
                owner.comm = comm_bytes(value);
                processes.insert(owner.pid, owner);
            }
            'u' => {
                owner.uid = value.parse().unwrap_or(u32::MAX);
                processes.insert(owner.pid, owner);
            }
            'f' => {
                file.flush(owner.pid, listed);
                file.fd = value.parse().ok();
            }
            't' => file.family = Some(value.to_owned()),
            'P' => file.proto = Some(value.to_owned()),
            'n' => file.name = Some(value.to_owned()),
            _ => {}
        }
    }
    file.flush(owner.pid, listed);
}

#[derive(Default)]
struct OpenFile {
    fd: Option<u64>,
    family: Option<String>,
    proto: Option<String>,
    name: Option<String>,
}

impl OpenFile {
    fn flush(&mut self, pid: u32, listed: &mut Vec<ListedSocket>) {
        let file = std::mem::take(self);
        let proto = match file.proto.as_deref() {
            Some("TCP") => PROTO_TCP,
            Some("UDP") => PROTO_UDP,
            _ => return,
        };
        let family = match file.family.as_deref() {
            Some("IPv4") => FAMILY_IPV4,
            Some("IPv6") => FAMILY_IPV6,
            _ => return,
        };
        let (Some(fd), Some(name)) = (file.fd, file.name) else {
            return;
        };
        let (local, remote) = match name.split_once("->") {
            Some((local, remote)) => (local, Some(remote)),
            None => (name.as_str(), None),
        };
        let Some((local, local_port)) = endpoint(local, family) else {
            return;
        };
        let (remote, remote_port) = match remote {
            Some(remote) => match endpoint(remote, family) {
                Some(found) => found,
                None => return,
            },
            None => ([0; 16], 0),
        };
        listed.push(ListedSocket {
            key: SocketKey {
                proto,
                family,
                local,
                local_port,
                remote,
                remote_port,
            },
            pid,
            handle: fd,
        });
    }
}

/// `1.2.3.4:80`, `[::1]:8080`, `*:5353`, `*:*`.
fn endpoint(text: &str, family: u8) -> Option<([u8; 16], u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = if port == "*" { 0 } else { port.parse().ok()? };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "*" {
        return Some(([0; 16], port));
    }
    let (found, addr) = addr_bytes(host.parse::<IpAddr>().ok()?);
    (found == family).then_some((addr, port))
}

#[cfg(target_os = "macos")]
pub use self::source::LsofSource;

#[cfg(target_os = "macos")]
mod source {
    use std::{io, process::Command};

    use super::{super::snapshot::Snapshot, *};
    use crate::collect::pcap::sockets::{SocketEntry, SocketSource};

    #[derive(Default)]
    pub struct LsofSource {
        snapshot: Snapshot,
    }

    impl SocketSource for LsofSource {
        fn read_table(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()> {
            let output = Command::new("lsof")
                .args(["-n", "-P", "-w", "+c", "0", "-iTCP", "-iUDP", "-FpcuftPn"])
                .output()
                .map_err(|err| io::Error::new(err.kind(), format!("running lsof: {err}")))?;
            // lsof exits 1 when it matched nothing, which is a valid (empty) listing.
            let text = String::from_utf8_lossy(&output.stdout);
            let mut listed = Vec::new();
            self.snapshot.processes.clear();
            parse_lsof(&text, &mut listed, &mut self.snapshot.processes);
            self.snapshot.update(&listed, out);
            Ok(())
        }

        fn owners(&mut self, cookies: &[u64], out: &mut Vec<(u64, u32)>) {
            self.snapshot.owners(cookies, out);
        }

        fn describe(&mut self, pid: u32) -> Option<SocketOwner> {
            self.snapshot.processes.get(&pid).copied()
        }

        fn is_alive(&mut self, pid: u32) -> bool {
            // SAFETY: kill with signal 0 only checks that the process exists.
            let gone = unsafe { libc::kill(pid as libc::pid_t, 0) } != 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            !gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lsof_field_output() {
        let text = "p590\ncSafari Networking\nu501\nf193\ntIPv4\nPTCP\n\
                    n192.168.1.37:60298->31.13.83.36:443\nf200\ntIPv6\nPUDP\nn*:5353\n\
                    f201\ntIPv6\nPTCP\nn[::1]:8080\nf202\ntIPv4\nPUDP\nn*:*\n\
                    p77\ncmDNSResponder\nu65\nf5\ntIPv4\nPUDP\nn[bogus]:1\nf6\ntunix\n";
        let mut listed = Vec::new();
        let mut processes = HashMap::new();
        parse_lsof(text, &mut listed, &mut processes);
        let summary: Vec<_> = listed
            .iter()
            .map(|s| {
                (
                    s.pid,
                    s.handle,
                    s.key.proto,
                    s.key.family,
                    s.key.local_port,
                    s.key.remote_port,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (590, 193, PROTO_TCP, FAMILY_IPV4, 60298, 443),
                (590, 200, PROTO_UDP, FAMILY_IPV6, 5353, 0),
                (590, 201, PROTO_TCP, FAMILY_IPV6, 8080, 0),
                (590, 202, PROTO_UDP, FAMILY_IPV4, 0, 0),
            ]
        );
        assert_eq!(&listed[0].key.remote[..4], &[31, 13, 83, 36]);
        assert_eq!(listed[2].key.local[15], 1);
        assert!(listed[1].key.is_unconnected());
        assert_eq!(processes[&590].uid, 501);
        assert_eq!(&processes[&590].comm[..15], b"Safari Networki");
        assert_eq!(processes[&77].uid, 65);
    }
}
