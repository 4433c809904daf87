use std::io;

use kaipo_common::{FAMILY_IPV4, PROTO_TCP, PROTO_UDP};

use super::*;
use crate::collect::pcap::sockets::{SocketEntry, SocketOwner};

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

fn table(rows: &[(SocketKey, u64)]) -> SocketTable<Fixed> {
    let rows = rows
        .iter()
        .map(|(key, cookie)| SocketEntry {
            key: *key,
            cookie: *cookie,
        })
        .collect();
    let mut table = SocketTable::new(Fixed(rows));
    table.refresh().unwrap();
    table
}

fn a(last: u8) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&[10, 0, 0, last]);
    out
}

fn sock(proto: u8, local: [u8; 16], lport: u16, remote: [u8; 16], rport: u16) -> SocketKey {
    SocketKey {
        proto,
        family: FAMILY_IPV4,
        local,
        local_port: lport,
        remote,
        remote_port: rport,
    }
}

fn flow(key: &SocketKey) -> FlowKey {
    FlowKey {
        ifindex: 3,
        vlan: 0,
        proto: key.proto,
        family: key.family,
        local_port: key.local_port,
        remote_port: key.remote_port,
        local_addr: key.local,
        remote_addr: key.remote,
    }
}

fn rx(bytes: u64, packets: u64) -> FlowCounters {
    FlowCounters {
        rx_bytes: bytes,
        rx_packets: packets,
        ..FlowCounters::default()
    }
}

fn tx(bytes: u64, packets: u64) -> FlowCounters {
    FlowCounters {
        tx_bytes: bytes,
        tx_packets: packets,
        ..FlowCounters::default()
    }
}

#[test]
fn flows_add_up_per_socket_and_unknown_flows_are_unattributed() {
    let t = table(&[(sock(PROTO_UDP, [0; 16], 53, [0; 16], 0), 7)]);
    let mut att = Attribution::default();
    att.begin();
    let first = sock(PROTO_UDP, a(1), 53, a(2), 4000);
    let second = sock(PROTO_UDP, a(1), 53, a(3), 4001);
    att.add(&t, &flow(&first), &rx(128, 1), false);
    att.add(&t, &flow(&first), &tx(228, 1), false);
    let stranger = sock(PROTO_TCP, a(1), 22, a(2), 5000);
    att.add(&t, &flow(&stranger), &rx(60, 1), false);
    let s = *att.get(7).unwrap();
    assert_eq!(
        (s.rx_bytes, s.rx_packets, s.tx_bytes, s.tx_packets),
        (128, 1, 228, 1)
    );
    assert_eq!(
        (s.local_addr, s.local_port, s.remote_addr, s.remote_port),
        (a(1), 53, a(2), 4000)
    );
    assert_eq!((s.family, s.proto, s.flags), (FAMILY_IPV4, PROTO_UDP, 0));
    let u = *att.get(UNATTRIBUTED_COOKIE).unwrap();
    assert_eq!((u.rx_bytes, u.family, u.local_port), (60, 0, 0));
    assert_eq!(att.active().collect::<Vec<_>>(), vec![7]);

    // Next sample: a second peer makes the unconnected socket's remote ambiguous.
    att.begin();
    att.add(&t, &flow(&second), &rx(100, 1), false);
    let s = *att.get(7).unwrap();
    assert_eq!(
        (s.rx_bytes, s.rx_packets),
        (228, 2),
        "totals are cumulative"
    );
    assert_eq!(s.flags, SOCK_FLAG_MANY_REMOTES);
    let mut all = Vec::new();
    att.snapshot(&mut all);
    all.sort_by_key(|(c, _)| *c);
    assert_eq!(
        all.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![7, UNATTRIBUTED_COOKIE]
    );
}

#[test]
fn loopback_credits_both_ends() {
    let client = sock(PROTO_TCP, a(1), 40000, a(1), 8080);
    let server = sock(PROTO_TCP, a(1), 8080, a(1), 40000);
    let t = table(&[(client, 1), (server, 2)]);
    let mut att = Attribution::default();
    att.begin();
    att.add(&t, &flow(&client), &tx(500, 5), true);
    let c = *att.get(1).unwrap();
    let s = *att.get(2).unwrap();
    assert_eq!(
        (c.lo_tx_bytes, c.lo_tx_packets, c.lo_rx_bytes, c.tx_bytes),
        (500, 5, 0, 0)
    );
    assert_eq!(
        (s.lo_rx_bytes, s.lo_rx_packets, s.lo_tx_bytes, s.rx_bytes),
        (500, 5, 0, 0)
    );
    assert_eq!((s.local_port, s.remote_port), (8080, 40000));
}

#[test]
fn a_flow_keeps_its_socket_after_close_until_forgotten() {
    let listener = sock(PROTO_TCP, [0; 16], 443, [0; 16], 0);
    let accepted = sock(PROTO_TCP, a(1), 443, a(2), 50000);
    let mut att = Attribution::default();
    // Handshake before accept: only the listener is listed.
    att.begin();
    att.add(
        &table(&[(listener, 10)]),
        &flow(&accepted),
        &rx(60, 1),
        false,
    );
    assert_eq!(att.get(10).map(|s| s.rx_bytes), Some(60));
    // Accepted: the connected socket takes over.
    att.begin();
    let open = table(&[(listener, 10), (accepted, 11)]);
    att.add(&open, &flow(&accepted), &rx(1000, 10), false);
    assert_eq!(att.get(11).map(|s| s.rx_bytes), Some(1000));
    // Closed: gone from the table, its last segments still count to it, not the listener.
    att.begin();
    let closed = table(&[(listener, 10)]);
    att.add(&closed, &flow(&accepted), &rx(52, 1), false);
    assert_eq!(att.get(11).map(|s| s.rx_bytes), Some(1052));
    assert_eq!(att.get(10).map(|s| s.rx_bytes), Some(60));
    // Forgotten: the binding goes too.
    att.forget(&[11, UNATTRIBUTED_COOKIE]);
    att.begin();
    att.add(&closed, &flow(&accepted), &rx(52, 1), false);
    assert_eq!(att.get(11), None);
    assert_eq!(att.get(10).map(|s| s.rx_bytes), Some(112));
}

#[test]
fn idle_bindings_expire() {
    let accepted = sock(PROTO_TCP, a(1), 443, a(2), 50000);
    let mut att = Attribution::default();
    att.begin();
    att.add(
        &table(&[(accepted, 11)]),
        &flow(&accepted),
        &rx(60, 1),
        false,
    );
    for _ in 0..=BINDING_IDLE_SAMPLES {
        att.begin();
    }
    att.add(&table(&[]), &flow(&accepted), &rx(60, 1), false);
    assert_eq!(att.get(11).map(|s| s.rx_bytes), Some(60));
    assert_eq!(att.get(UNATTRIBUTED_COOKIE).map(|s| s.rx_bytes), Some(60));
}
