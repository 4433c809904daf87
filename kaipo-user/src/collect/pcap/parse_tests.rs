use kaipo_common::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use super::*;

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

fn v6(last: u8) -> [u8; 16] {
    let mut out = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    out[15] = last;
    out
}

/// An IPv4 header (no options) with `total_len` and the flags/fragment-offset word `frag`.
fn ipv4_header(proto: u8, total_len: u16, frag: u16) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend(total_len.to_be_bytes());
    h.extend([0, 1]);
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0, 10, 213, 250, 2, 10, 213, 250, 1]);
    h
}

fn ipv6_header(next: u8, payload_len: u16) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend(payload_len.to_be_bytes());
    h.extend([next, 64]);
    h.extend(v6(2));
    h.extend(v6(1));
    h
}

fn ethernet(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = HOST_MAC.to_vec();
    f.extend(PEER_MAC);
    f.extend(ethertype.to_be_bytes());
    f.extend(rest);
    f
}

fn udp(src: u16, dst: u16, payload: usize) -> Vec<u8> {
    let mut u = src.to_be_bytes().to_vec();
    u.extend(dst.to_be_bytes());
    u.extend(((8 + payload) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(vec![0xab; payload]);
    u
}

fn expected_v4(proto: u8, sport: u16, dport: u16, ip_len: u32, wire_len: u32) -> FlowObservation {
    FlowObservation {
        family: FAMILY_IPV4,
        proto,
        src: v4([10, 213, 250, 2]),
        dst: v4([10, 213, 250, 1]),
        src_port: sport,
        dst_port: dport,
        vlan: 0,
        ip_len,
        wire_len,
    }
}

#[test]
fn ethernet_ipv4_udp_from_fixed_bytes_full_and_cut_at_snaplen() {
    // 16 payload bytes: IPv4 44 bytes, frame 58.
    let frame: [u8; 58] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x2c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, // ipv4
        0x0a, 0xd5, 0xfa, 0x02, 0x0a, 0xd5, 0xfa, 0x01, // addresses
        0x9c, 0x40, 0x13, 0x88, 0x00, 0x18, 0x00, 0x00, // udp 40000 -> 5000
        0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
        0xab,
    ];
    let want = expected_v4(PROTO_UDP, 40000, 5000, 44, 58);
    let full = parse_frame(linktype::EN10MB, &frame, 58).unwrap();
    assert_eq!(full.net, Ok(want));
    assert_eq!(full.link.src_mac, Some(PEER_MAC));
    assert_eq!(full.link.dst_mac, Some(HOST_MAC));
    assert_eq!(full.link.direction, None);
    assert_eq!(full.link.link_bytes, 58);
    // Headers only, as a 42-byte snap length leaves them: the lengths still come out whole.
    assert_eq!(parse(linktype::EN10MB, &frame[..42], 58), Ok(want));
    // Ethernet padding after a short packet is not IP bytes.
    let mut padded = frame.to_vec();
    padded.extend([0; 6]);
    assert_eq!(
        parse(linktype::EN10MB, &padded, 64),
        Ok(FlowObservation {
            wire_len: 64,
            ..want
        })
    );
}

#[test]
fn stacked_vlan_tags_report_the_outer_id() {
    let mut tcp = 443u16.to_be_bytes().to_vec();
    tcp.extend(51000u16.to_be_bytes());
    tcp.extend([0; 8]);
    tcp.extend([0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    let mut ip = ipv4_header(PROTO_TCP, 1500, 0x4000);
    ip.extend(&tcp);
    // 802.1ad outer tag, VLAN 100, then 802.1Q inner tag, VLAN 200.
    let mut tags = vec![0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00];
    tags.extend(&ip);
    let frame = ethernet(0x88a8, &tags);
    let parsed = parse_frame(linktype::EN10MB, &frame, 1522).unwrap();
    assert_eq!(parsed.link.vlan, 100);
    assert_eq!(
        parsed.net,
        Ok(FlowObservation {
            vlan: 100,
            ..expected_v4(PROTO_TCP, 443, 51000, 1500, 1522)
        })
    );
    let mut three = vec![
        0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x81, 0x00, 0x01, 0x2c, 0x08, 0x00,
    ];
    three.extend(&ip);
    assert_eq!(
        parse(linktype::EN10MB, &ethernet(0x8100, &three), 1526),
        Err(ParseError::TooManyVlanTags)
    );
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    // Hop-by-hop (8 bytes) then destination options (8 bytes) then UDP with 100 bytes.
    let mut ip = ipv6_header(0, 16 + 108);
    ip.extend([60, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend([17, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend(udp(5353, 53, 100));
    let frame = ethernet(0x86dd, &ip);
    let want = FlowObservation {
        family: FAMILY_IPV6,
        proto: PROTO_UDP,
        src: v6(2),
        dst: v6(1),
        src_port: 5353,
        dst_port: 53,
        vlan: 0,
        ip_len: 40 + 16 + 108,
        wire_len: 14 + 164,
    };
    assert_eq!(parse(linktype::EN10MB, &frame, 178), Ok(want));
    // Cut inside the destination options header: bytes are still counted, ports are unknown.
    assert_eq!(
        parse(linktype::EN10MB, &frame[..14 + 40 + 12], 178),
        Ok(FlowObservation {
            proto: 60,
            src_port: 0,
            dst_port: 0,
            ..want
        })
    );
    // Fragment header: the first fragment has ports, a later one does not.
    for (offset_word, ports) in [(0x0001u16, (5353, 53)), (0x00b9u16, (0, 0))] {
        let mut ip = ipv6_header(44, 8 + 108);
        ip.extend([17, 0]);
        ip.extend(offset_word.to_be_bytes());
        ip.extend([0, 0, 0, 7]);
        ip.extend(udp(5353, 53, 100));
        assert_eq!(
            parse(linktype::EN10MB, &ethernet(0x86dd, &ip), 14 + 156),
            Ok(FlowObservation {
                src_port: ports.0,
                dst_port: ports.1,
                ip_len: 156,
                wire_len: 170,
                ..want
            }),
            "fragment word {offset_word:#06x}"
        );
    }
}

#[test]
fn ipv4_fragments_and_icmp_have_no_ports() {
    let mut first = ipv4_header(PROTO_UDP, 1500, 0x2000);
    first.extend(udp(1000, 2000, 1472));
    let mut later = ipv4_header(PROTO_UDP, 1500, 0x00b9);
    later.extend(vec![0xcd; 1480]);
    assert_eq!(
        parse(linktype::RAW, &first, 1500),
        Ok(expected_v4(PROTO_UDP, 1000, 2000, 1500, 1500))
    );
    assert_eq!(
        parse(linktype::RAW, &later, 1500),
        Ok(expected_v4(PROTO_UDP, 0, 0, 1500, 1500))
    );
    let mut icmp = ipv4_header(PROTO_ICMP, 84, 0);
    icmp.extend([8, 0, 0, 0, 0, 1, 0, 1]);
    icmp.extend([0; 56]);
    assert_eq!(
        parse(linktype::EN10MB, &ethernet(0x0800, &icmp), 98),
        Ok(expected_v4(PROTO_ICMP, 0, 0, 84, 98))
    );
    let mut icmp6 = ipv6_header(PROTO_ICMPV6, 64);
    icmp6.extend([128, 0, 0, 0, 0, 1, 0, 1]);
    icmp6.extend([0; 56]);
    let parsed = parse(linktype::IPV6, &icmp6, 104).unwrap();
    assert_eq!(
        (parsed.proto, parsed.ip_len, parsed.src_port),
        (PROTO_ICMPV6, 104, 0)
    );
}

#[test]
fn linux_cooked_v1_gives_direction_and_loopback() {
    let mut ip = ipv4_header(PROTO_UDP, 128, 0);
    ip.extend(udp(40000, 9999, 100));
    // pkttype 4 (outgoing), hatype 1 (Ethernet), halen 6, address, protocol IPv4.
    let mut out = vec![0, 4, 0, 1, 0, 6];
    out.extend(PEER_MAC);
    out.extend([0, 0, 0x08, 0x00]);
    out.extend(&ip);
    let frame = parse_frame(linktype::LINUX_SLL, &out, 16 + 128).unwrap();
    assert_eq!(frame.link.direction, Some(Direction::Out));
    assert!(!frame.link.loopback);
    assert_eq!(
        frame.link.link_bytes,
        14 + 128,
        "the interface counts its own header"
    );
    assert_eq!(frame.net, Ok(expected_v4(PROTO_UDP, 40000, 9999, 128, 144)));
    // pkttype 0 (to us) over hatype 772 (loopback).
    let mut lo = vec![0, 0, 0x03, 0x04, 0, 6];
    lo.extend([0; 8]);
    lo.extend([0x08, 0x00]);
    lo.extend(&ip);
    let frame = parse_frame(linktype::LINUX_SLL, &lo, 144).unwrap();
    assert_eq!(frame.link.direction, Some(Direction::In));
    assert!(frame.link.loopback);
    assert_eq!(frame.link.link_bytes, 142);
}

#[test]
fn linux_cooked_v2_gives_the_interface_index() {
    let mut ip = ipv6_header(PROTO_UDP, 20);
    ip.extend(udp(123, 123, 12));
    // protocol, reserved, ifindex 7, hatype 1, pkttype 2 (multicast), halen 6, address.
    let mut frame = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 2, 6];
    frame.extend(PEER_MAC);
    frame.extend([0, 0]);
    frame.extend(&ip);
    let parsed = parse_frame(linktype::LINUX_SLL2, &frame, 80).unwrap();
    assert_eq!(parsed.link.ifindex, Some(7));
    assert_eq!(parsed.link.direction, Some(Direction::In));
    assert_eq!(parsed.link.link_bytes, 74);
    let flow = parsed.net.unwrap();
    assert_eq!(
        (flow.family, flow.ip_len, flow.src_port),
        (FAMILY_IPV6, 60, 123)
    );
}

#[test]
fn bsd_loopback_in_both_byte_orders_and_raw_ip() {
    let mut ip4 = ipv4_header(PROTO_UDP, 36, 0);
    ip4.extend(udp(1, 2, 8));
    let mut ip6 = ipv6_header(PROTO_UDP, 16);
    ip6.extend(udp(1, 2, 8));
    for family in [2u32, 24, 28, 30] {
        for raw in [family.to_ne_bytes(), family.swap_bytes().to_ne_bytes()] {
            let ip = if family == 2 { &ip4 } else { &ip6 };
            let mut frame = raw.to_vec();
            frame.extend(ip);
            let parsed = parse_frame(linktype::NULL, &frame, frame.len() as u32).unwrap();
            assert_eq!(parsed.link.link_bytes, ip.len() as u32);
            let flow = parsed.net.unwrap();
            assert_eq!(
                (flow.ip_len as usize, flow.dst_port),
                (ip.len(), 2),
                "AF {family}"
            );
        }
    }
    let mut unknown = 99u32.to_ne_bytes().to_vec();
    unknown.extend(&ip4);
    assert_eq!(
        parse(linktype::NULL, &unknown, 40),
        Err(ParseError::UnknownFamily(99))
    );
    let mut openbsd = 24u32.to_be_bytes().to_vec();
    openbsd.extend(&ip6);
    assert_eq!(
        parse(linktype::LOOP, &openbsd, 60).map(|f| f.ip_len),
        Ok(56)
    );
    assert_eq!(
        parse(linktype::RAW, &ip6, 56).map(|f| f.family),
        Ok(FAMILY_IPV6)
    );
    assert_eq!(
        parse(linktype::IPV4, &ip6, 56),
        Err(ParseError::IpVersion {
            found: 6,
            expected: 4
        })
    );
}

#[test]
fn non_ip_frames_keep_their_link_metadata() {
    let arp = ethernet(0x0806, &[0; 28]);
    let frame = parse_frame(linktype::EN10MB, &arp, 42).unwrap();
    assert_eq!(frame.net, Err(ParseError::NotIp { ethertype: 0x0806 }));
    assert_eq!(frame.link.src_mac, Some(PEER_MAC));
    assert_eq!(frame.link.link_bytes, 42);
}

#[test]
fn offload_buffers_take_their_length_from_the_frame() {
    let mut ip = ipv4_header(PROTO_TCP, 0, 0x4000);
    ip.extend([0x1f, 0x90, 0xc3, 0x50]);
    ip.extend([0; 16]);
    assert_eq!(
        parse(linktype::EN10MB, &ethernet(0x0800, &ip), 14 + 9000),
        Ok(expected_v4(PROTO_TCP, 8080, 50000, 9000, 9014))
    );
}

#[test]
fn malformed_frames_are_errors() {
    assert_eq!(
        parse(linktype::EN10MB, &[0; 10], 10),
        Err(ParseError::Truncated {
            layer: "Ethernet",
            need: 14,
            have: 10
        })
    );
    assert_eq!(
        parse(147, &[0; 64], 64),
        Err(ParseError::UnsupportedLinktype(147))
    );
    // IHL 4: shorter than the fixed header.
    let mut short_ihl = ipv4_header(PROTO_UDP, 36, 0);
    short_ihl[0] = 0x44;
    assert!(matches!(
        parse(linktype::RAW, &short_ihl, 36),
        Err(ParseError::Ipv4(_))
    ));
    // Total length beyond the frame, and below the header.
    for total in [1400u16, 12] {
        let mut ip = ipv4_header(PROTO_UDP, total, 0);
        ip.extend(udp(1, 2, 8));
        assert_eq!(
            parse(linktype::EN10MB, &ethernet(0x0800, &ip), 50),
            Err(ParseError::Length {
                header: u32::from(total),
                frame: 36
            })
        );
    }
    // A UDP packet whose IP length leaves no room for ports, captured whole.
    let mut tiny = ipv4_header(PROTO_UDP, 22, 0);
    tiny.extend([0, 1]);
    assert_eq!(
        parse(linktype::RAW, &tiny, 22),
        Err(ParseError::Truncated {
            layer: "transport",
            need: 4,
            have: 2
        })
    );
    // A longer packet cut by the capture there is only missing its ports.
    let mut cut = ipv4_header(PROTO_UDP, 36, 0);
    cut.extend([0, 1]);
    assert_eq!(
        parse(linktype::RAW, &cut, 36),
        Ok(expected_v4(PROTO_UDP, 0, 0, 36, 36))
    );
    // Ethertype says IPv4, the packet says 6.
    assert_eq!(
        parse(linktype::EN10MB, &ethernet(0x0800, &ipv6_header(17, 0)), 54),
        Err(ParseError::IpVersion {
            found: 6,
            expected: 4
        })
    );
    assert_eq!(
        parse(linktype::EN10MB, &ethernet(0x0800, &[]), 14),
        Err(ParseError::Truncated {
            layer: "IP",
            need: 1,
            have: 0
        })
    );
}
