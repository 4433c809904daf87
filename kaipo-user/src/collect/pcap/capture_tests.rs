use kaipo_common::{FAMILY_IPV4, PROTO_UDP};

use super::*;
use crate::collect::pcap::parse::linktype;

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST: [u8; 4] = [10, 213, 250, 1];
const PEER: [u8; 4] = [10, 213, 250, 2];

fn a16(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

/// An Ethernet frame carrying a UDP datagram of `payload` bytes.
fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    payload: u16,
) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend(src_mac);
    f.extend([0x08, 0x00, 0x45, 0]);
    f.extend((28 + payload).to_be_bytes());
    f.extend([0, 1, 0, 0, 64, PROTO_UDP, 0, 0]);
    f.extend(src);
    f.extend(dst);
    f.extend(4000u16.to_be_bytes());
    f.extend(53u16.to_be_bytes());
    f.extend((8 + payload).to_be_bytes());
    f.extend([0, 0]);
    f.extend(vec![0; usize::from(payload)]);
    f
}

fn id(mac: Option<[u8; 6]>, loopback: bool, max_flows: usize) -> IfaceIdentity {
    IfaceIdentity {
        ifindex: 9,
        loopback,
        mac,
        max_flows,
    }
}

fn record(tally: &mut Tally, frame: &[u8], id: &IfaceIdentity, addrs: &LocalAddrs) {
    let wire = frame.len() as u32;
    tally.record(&parse_frame(linktype::EN10MB, frame, wire), wire, id, addrs);
}

fn key(local: [u8; 4], lport: u16, remote: [u8; 4], rport: u16) -> FlowKey {
    FlowKey {
        ifindex: 9,
        vlan: 0,
        proto: PROTO_UDP,
        family: FAMILY_IPV4,
        local_port: lport,
        remote_port: rport,
        local_addr: a16(local),
        remote_addr: a16(remote),
    }
}

#[test]
fn received_and_sent_frames_by_mac_and_by_address() {
    let nobody = LocalAddrs::default();
    let mut tally = Tally::default();
    let with_mac = id(Some(HOST_MAC), false, 16);
    // 100-byte payload: 128 IP bytes, 142 on the link.
    record(
        &mut tally,
        &udp_frame(PEER_MAC, HOST_MAC, PEER, HOST, 100),
        &with_mac,
        &nobody,
    );
    record(
        &mut tally,
        &udp_frame(HOST_MAC, PEER_MAC, HOST, PEER, 10),
        &with_mac,
        &nobody,
    );
    // Without the MAC, the host's addresses decide.
    let addrs = LocalAddrs::new([a16(HOST)]);
    let no_mac = id(None, false, 16);
    record(
        &mut tally,
        &udp_frame(HOST_MAC, PEER_MAC, HOST, PEER, 10),
        &no_mac,
        &addrs,
    );
    record(
        &mut tally,
        &udp_frame(PEER_MAC, HOST_MAC, PEER, HOST, 100),
        &no_mac,
        &addrs,
    );
    assert_eq!(
        tally.counters,
        IfaceCounters {
            rx_bytes: 284,
            rx_packets: 2,
            tx_bytes: 104,
            tx_packets: 2,
            ..IfaceCounters::default()
        }
    );
    let received = tally.flows[&key(HOST, 53, PEER, 4000)];
    assert_eq!(
        (received.rx_bytes, received.rx_packets, received.tx_bytes),
        (256, 2, 0)
    );
    let sent = tally.flows[&key(HOST, 4000, PEER, 53)];
    assert_eq!((sent.tx_bytes, sent.tx_packets, sent.rx_bytes), (76, 2, 0));
}

#[test]
fn loopback_frames_count_both_ways_and_are_stored_as_sent() {
    let mut tally = Tally::default();
    let lo = id(None, true, 16);
    let frame = udp_frame([0; 6], [0; 6], [127, 0, 0, 1], [127, 0, 0, 1], 72);
    record(&mut tally, &frame, &lo, &LocalAddrs::default());
    let c = tally.counters;
    assert_eq!(
        (c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets),
        (114, 114, 1, 1)
    );
    let flow = tally.flows[&FlowKey {
        ifindex: LOOPBACK_IFINDEX,
        ..key([127, 0, 0, 1], 4000, [127, 0, 0, 1], 53)
    }];
    assert_eq!((flow.tx_bytes, flow.rx_bytes), (100, 0));
}

#[test]
fn cooked_direction_wins_and_non_ip_and_broken_frames_are_counted() {
    let mut tally = Tally::default();
    let any = id(None, false, 16);
    let addrs = LocalAddrs::default();
    // A cooked "outgoing" frame whose addresses would say otherwise.
    let ip = &udp_frame(PEER_MAC, HOST_MAC, PEER, HOST, 0)[14..];
    let mut cooked = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0, 0x08, 0x00];
    cooked.extend(ip);
    let wire = cooked.len() as u32;
    tally.record(
        &parse_frame(linktype::LINUX_SLL, &cooked, wire),
        wire,
        &any,
        &addrs,
    );
    assert_eq!(
        (tally.counters.tx_packets, tally.counters.tx_bytes),
        (1, 42)
    );
    assert!(tally.flows.contains_key(&key(PEER, 4000, HOST, 53)));
    // ARP, then a frame cut inside its Ethernet header, then an IP packet with a bad length.
    let mut arp = HOST_MAC.to_vec();
    arp.extend(PEER_MAC);
    arp.extend([0x08, 0x06]);
    arp.extend([0; 28]);
    record(&mut tally, &arp, &any, &addrs);
    record(&mut tally, &arp[..9], &any, &addrs);
    let mut bad = udp_frame(PEER_MAC, HOST_MAC, PEER, HOST, 0);
    bad[17] = 200;
    record(&mut tally, &bad, &any, &addrs);
    let c = tally.counters;
    assert_eq!(
        (c.rx_packets, c.rx_non_ip_bytes, c.rx_malformed_bytes),
        (3, 42, 9 + 42)
    );
    assert_eq!(c.rx_bytes, 42 + 9 + 42);
    assert_eq!(
        tally.flows.len(),
        1,
        "neither ARP nor broken packets make flows"
    );
}

#[test]
fn a_full_flow_table_counts_instead_of_growing() {
    let mut tally = Tally::default();
    let small = id(Some(HOST_MAC), false, 1);
    let addrs = LocalAddrs::default();
    record(
        &mut tally,
        &udp_frame(PEER_MAC, HOST_MAC, PEER, HOST, 0),
        &small,
        &addrs,
    );
    record(
        &mut tally,
        &udp_frame(PEER_MAC, HOST_MAC, [10, 0, 0, 9], HOST, 0),
        &small,
        &addrs,
    );
    record(
        &mut tally,
        &udp_frame(PEER_MAC, HOST_MAC, PEER, HOST, 0),
        &small,
        &addrs,
    );
    assert_eq!(tally.flows.len(), 1);
    assert_eq!(tally.flows[&key(HOST, 53, PEER, 4000)].rx_packets, 2);
    assert_eq!(tally.flows_full, 1);
    assert_eq!(
        (tally.overflow.rx_bytes, tally.overflow.rx_packets),
        (28, 1)
    );
    assert_eq!(
        tally.counters.rx_packets, 3,
        "the interface counts every frame"
    );
}

#[test]
fn address_book_swaps_only_on_change() {
    let book = AddrBook::default();
    let (g0, _) = book.get();
    book.set(LocalAddrs::new([a16(HOST)]));
    let (g1, addrs) = book.get();
    assert_eq!(g1, g0 + 1);
    assert!(addrs.contains(&a16(HOST)));
    book.set(LocalAddrs::new([a16(HOST)]));
    assert_eq!(book.get().0, g1);
}
