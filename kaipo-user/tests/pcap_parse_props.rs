//! Property tests of the pcap backend's frame parser: whatever bytes arrive, under whatever link
//! type, parsing returns a value or a typed error and never panics, and what it returns is
//! consistent; valid frames of every supported kind parse to exactly what was built, whole or
//! cut at the default snap length, and keep the invariants when mutated.
//!
//! Bounded (2000 cases per property) so it runs in every `cargo test`. Debug builds keep the
//! standard library's undefined-behaviour checks on, which turned up an out-of-bounds read in
//! etherparse's IPv6 extension iterator on cut-short chains (see `parse.rs`).

use kaipo::collect::pcap::parse::{linktype, parse, parse_frame, FlowObservation};
use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use proptest::prelude::*;

const LINKTYPES: [i32; 11] = [
    linktype::NULL,
    linktype::EN10MB,
    linktype::RAW,
    linktype::RAW_OPENBSD,
    linktype::RAW_LINKTYPE,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::IPV4,
    linktype::IPV6,
    linktype::LINUX_SLL2,
    // Not supported: must be a clean error.
    147,
];

/// What any successful parse must satisfy.
fn check_invariants(linktype: i32, data: &[u8], wire_len: u32) {
    let wire = wire_len.max(data.len() as u32);
    let Ok(frame) = parse_frame(linktype, data, wire_len) else {
        return;
    };
    assert!(frame.link.link_bytes <= wire, "link bytes beyond the frame");
    assert!(frame.link.vlan < 4096);
    let Ok(flow) = frame.net else { return };
    assert!(flow.ip_len <= flow.wire_len, "{flow:?}");
    assert_eq!(flow.wire_len, wire);
    assert!(flow.ip_len >= 20, "{flow:?}");
    match flow.family {
        FAMILY_IPV4 => {
            assert!(flow.ip_len <= 65_535 || flow.ip_len == wire, "{flow:?}");
            assert_eq!(flow.src[4..], [0; 12]);
            assert_eq!(flow.dst[4..], [0; 12]);
        }
        FAMILY_IPV6 => {
            assert!(
                flow.ip_len <= 65_535 + 40 || flow.ip_len == wire,
                "{flow:?}"
            );
            assert!(flow.ip_len >= 40);
        }
        other => panic!("family {other}"),
    }
    if ![PROTO_TCP, PROTO_UDP, PROTO_SCTP].contains(&flow.proto) {
        assert_eq!((flow.src_port, flow.dst_port), (0, 0), "{flow:?}");
    }
    assert_eq!(flow.vlan, frame.link.vlan);
}

#[derive(Clone, Debug)]
enum Link {
    Ethernet { vlans: Vec<u16> },
    Cooked { outgoing: bool },
    CookedV2 { ifindex: u32 },
    Null { v6_family: u32 },
    Raw,
}

#[derive(Clone, Debug)]
struct Spec {
    link: Link,
    v6: bool,
    extensions: usize,
    proto: u8,
    src_port: u16,
    dst_port: u16,
    payload: usize,
    src: [u8; 16],
    dst: [u8; 16],
}

fn spec() -> impl Strategy<Value = Spec> {
    let link = prop_oneof![
        prop::collection::vec(0u16..4096, 0..=2).prop_map(|vlans| Link::Ethernet { vlans }),
        any::<bool>().prop_map(|outgoing| Link::Cooked { outgoing }),
        any::<u32>().prop_map(|ifindex| Link::CookedV2 { ifindex }),
        prop::sample::select(vec![24u32, 28, 30]).prop_map(|v6_family| Link::Null { v6_family }),
        Just(Link::Raw),
    ];
    (
        link,
        any::<bool>(),
        0usize..=3,
        prop::sample::select(vec![1u8, 6, 17, 47, 58, 132]),
        any::<u16>(),
        any::<u16>(),
        0usize..1400,
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(link, v6, extensions, proto, src_port, dst_port, payload, src, dst)| Spec {
                link,
                v6,
                extensions: if v6 { extensions } else { 0 },
                proto,
                src_port,
                dst_port,
                payload,
                src,
                dst,
            },
        )
}

/// Builds the frame a spec describes and what parsing it must give.
fn build(spec: &Spec) -> (i32, Vec<u8>, FlowObservation) {
    let has_ports = [PROTO_TCP, PROTO_UDP, PROTO_SCTP].contains(&spec.proto);
    let mut transport = Vec::new();
    if has_ports {
        transport.extend(spec.src_port.to_be_bytes());
        transport.extend(spec.dst_port.to_be_bytes());
    }
    let header = match spec.proto {
        PROTO_TCP => 20,
        PROTO_UDP | 1 | 58 => 8,
        PROTO_SCTP => 12,
        _ => 4,
    };
    transport.resize(header, 0);
    if spec.proto == PROTO_TCP {
        transport[12] = 0x50;
    }
    transport.resize(header + spec.payload, 0xee);

    let mut expected = FlowObservation {
        proto: spec.proto,
        src_port: if has_ports { spec.src_port } else { 0 },
        dst_port: if has_ports { spec.dst_port } else { 0 },
        ..FlowObservation::default()
    };
    let mut ip = Vec::new();
    if spec.v6 {
        let exts = spec.extensions * 8;
        ip.extend([0x60, 0, 0, 0]);
        ip.extend(((exts + transport.len()) as u16).to_be_bytes());
        ip.push(if spec.extensions > 0 { 60 } else { spec.proto });
        ip.push(64);
        ip.extend(spec.src);
        ip.extend(spec.dst);
        for i in 0..spec.extensions {
            let next = if i + 1 == spec.extensions {
                spec.proto
            } else {
                60
            };
            ip.extend([next, 0, 1, 4, 0, 0, 0, 0]);
        }
        expected.family = FAMILY_IPV6;
        expected.src = spec.src;
        expected.dst = spec.dst;
    } else {
        ip.extend([0x45, 0]);
        ip.extend(((20 + transport.len()) as u16).to_be_bytes());
        ip.extend([0, 1, 0x40, 0, 64, spec.proto, 0, 0]);
        ip.extend(&spec.src[..4]);
        ip.extend(&spec.dst[..4]);
        expected.family = FAMILY_IPV4;
        expected.src[..4].copy_from_slice(&spec.src[..4]);
        expected.dst[..4].copy_from_slice(&spec.dst[..4]);
    }
    ip.extend(&transport);
    expected.ip_len = ip.len() as u32;
    let ethertype: u16 = if spec.v6 { 0x86dd } else { 0x0800 };

    let (linktype, mut frame) = match &spec.link {
        Link::Ethernet { vlans } => {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            for (i, vlan) in vlans.iter().enumerate() {
                f.extend(if i == 0 { [0x88, 0xa8] } else { [0x81, 0x00] });
                f.extend(vlan.to_be_bytes());
            }
            f.extend(ethertype.to_be_bytes());
            expected.vlan = vlans.first().copied().unwrap_or(0);
            (linktype::EN10MB, f)
        }
        Link::Cooked { outgoing } => {
            let mut f = vec![0, if *outgoing { 4 } else { 0 }, 0, 1, 0, 6];
            f.extend([2, 0, 0, 0, 0, 2, 0, 0]);
            f.extend(ethertype.to_be_bytes());
            (linktype::LINUX_SLL, f)
        }
        Link::CookedV2 { ifindex } => {
            let mut f = ethertype.to_be_bytes().to_vec();
            f.extend([0, 0]);
            f.extend(ifindex.to_be_bytes());
            f.extend([0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0]);
            (linktype::LINUX_SLL2, f)
        }
        Link::Null { v6_family } => {
            let family = if spec.v6 { *v6_family } else { 2 };
            (linktype::NULL, family.to_ne_bytes().to_vec())
        }
        Link::Raw => (linktype::RAW, Vec::new()),
    };
    frame.extend(&ip);
    expected.wire_len = frame.len() as u32;
    (linktype, frame, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(
        linktype in prop::sample::select(LINKTYPES.to_vec()),
        data in prop::collection::vec(any::<u8>(), 0..160),
        extra in prop_oneof![Just(0u32), 0u32..2000, Just(u32::MAX - 200)],
    ) {
        let wire = (data.len() as u32).saturating_add(extra);
        check_invariants(linktype, &data, wire);
        // The same bytes under every other link type, and with a wire length below the
        // capture length (which libpcap never produces, and a savefile might).
        for other in LINKTYPES {
            check_invariants(other, &data, 0);
        }
    }

    #[test]
    fn valid_frames_parse_exactly_whole_and_cut_at_snaplen(spec in spec()) {
        let (linktype, frame, expected) = build(&spec);
        let wire = frame.len() as u32;
        prop_assert_eq!(parse(linktype, &frame, wire), Ok(expected));
        let cut = &frame[..frame.len().min(128)];
        prop_assert_eq!(parse(linktype, cut, wire), Ok(expected));
        check_invariants(linktype, &frame, wire);
    }

    #[test]
    fn mutated_valid_frames_keep_the_invariants(
        spec in spec(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        wire_shift in -100i64..100,
    ) {
        let (linktype, mut frame, _) = build(&spec);
        for (at, byte) in &flips {
            let i = at.index(frame.len());
            frame[i] = *byte;
        }
        let wire = (frame.len() as i64 + wire_shift).max(0) as u32;
        check_invariants(linktype, &frame, wire);
        let keep = cut.index(frame.len() + 1);
        check_invariants(linktype, &frame[..keep], wire);
    }
}
