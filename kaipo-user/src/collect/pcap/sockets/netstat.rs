//! Windows socket tables from the IP helper API (`GetExtendedTcpTable`/`GetExtendedUdpTable`),
//! through netstat2. They name the owning pid of every socket but no socket identity, so
//! cookies come from [`Snapshot`].

use std::io;

use netstat2::{AddressFamilyFlags, ProtocolFlags, ProtocolSocketInfo};

use kaipo_common::{PROTO_TCP, PROTO_UDP};

use super::{
    addr_bytes,
    snapshot::{ListedSocket, Snapshot},
    SocketEntry, SocketKey, SocketOwner, SocketSource,
};

#[derive(Default)]
pub struct NetstatSource {
    snapshot: Snapshot,
}

impl SocketSource for NetstatSource {
    fn read_table(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()> {
        let sockets = netstat2::get_sockets_info(
            AddressFamilyFlags::IPV4 | AddressFamilyFlags::IPV6,
            ProtocolFlags::TCP | ProtocolFlags::UDP,
        )
        .map_err(|err| io::Error::other(format!("reading the socket tables: {err}")))?;
        let mut listed = Vec::with_capacity(sockets.len());
        for socket in sockets {
            let (proto, local, local_port, remote) = match socket.protocol_socket_info {
                ProtocolSocketInfo::Tcp(tcp) => (
                    PROTO_TCP,
                    tcp.local_addr,
                    tcp.local_port,
                    Some((tcp.remote_addr, tcp.remote_port)),
                ),
                ProtocolSocketInfo::Udp(udp) => (PROTO_UDP, udp.local_addr, udp.local_port, None),
            };
            let (family, local) = addr_bytes(local);
            let (remote, remote_port) = remote
                .map(|(addr, port)| (addr_bytes(addr).1, port))
                .unwrap_or(([0; 16], 0));
            listed.push(ListedSocket {
                key: SocketKey {
                    proto,
                    family,
                    local,
                    local_port,
                    remote,
                    remote_port,
                },
                pid: socket.associated_pids.first().copied().unwrap_or(0),
                handle: 0,
            });
        }
        self.snapshot.update(&listed, out);
        Ok(())
    }

    fn owners(&mut self, cookies: &[u64], out: &mut Vec<(u64, u32)>) {
        self.snapshot.owners(cookies, out);
    }

    /// The tables give pids only; names and users would need the process APIs, which kaipo
    /// does not use yet, so owners show as their pid.
    fn describe(&mut self, pid: u32) -> Option<SocketOwner> {
        Some(SocketOwner {
            pid,
            ..SocketOwner::default()
        })
    }

    /// Telling needs the process APIs (see `describe`): exits are not reported on Windows.
    fn is_alive(&mut self, _: u32) -> bool {
        true
    }
}
