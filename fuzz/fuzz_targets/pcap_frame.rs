//! The pcap backend's frame parser on any bytes, under every link type it reads.
//!
//! Input: one byte choosing the link type ([`LINKTYPES`], wrapping), four bytes of the capture
//! header's original length (little endian), then the captured frame.
#![no_main]

use kaipo::collect::pcap::parse::{linktype, parse, parse_frame, ParseError};
use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP};
use libfuzzer_sys::fuzz_target;

/// Every link type kaipo reads, and one it does not.
const LINKTYPES: [i32; 11] = [
    linktype::EN10MB,
    linktype::LINUX_SLL,
    linktype::LINUX_SLL2,
    linktype::NULL,
    linktype::LOOP,
    linktype::RAW,
    linktype::RAW_OPENBSD,
    linktype::RAW_LINKTYPE,
    linktype::IPV4,
    linktype::IPV6,
    147,
];
const PROTO_SCTP: u8 = 132;

fuzz_target!(|data: &[u8]| {
    let Some((&[pick, a, b, c, d], frame)) = data.split_first_chunk::<5>() else {
        return;
    };
    let linktype = LINKTYPES[usize::from(pick) % LINKTYPES.len()];
    let wire_len = u32::from_le_bytes([a, b, c, d]);
    let parsed = parse_frame(linktype, frame, wire_len);
    // The flow-only entry point is the frame's network layer.
    assert_eq!(
        parse(linktype, frame, wire_len),
        parsed.clone().and_then(|f| f.net)
    );
    let Ok(parsed) = parsed else {
        return;
    };
    // A capture header that claims fewer bytes than were captured is corrected, never trusted.
    let wire_len = wire_len.max(u32::try_from(frame.len()).unwrap_or(u32::MAX));
    assert!(
        parsed.link.link_bytes <= wire_len,
        "link bytes {} over the frame's {wire_len}",
        parsed.link.link_bytes
    );
    if parsed.link.vlan > 0x0fff {
        panic!("VLAN id {} has more than 12 bits", parsed.link.vlan);
    }
    let flow = match parsed.net {
        Ok(flow) => flow,
        Err(ParseError::Truncated { need, have, .. }) => {
            assert!(
                need > have,
                "truncated yet {have} bytes of {need} are there"
            );
            return;
        }
        Err(_) => return,
    };
    assert_eq!(flow.wire_len, wire_len);
    assert_eq!(flow.vlan, parsed.link.vlan);
    assert!(
        flow.ip_len <= wire_len,
        "IP length {} over the frame's {wire_len}",
        flow.ip_len
    );
    match flow.family {
        FAMILY_IPV4 => {
            assert!(
                flow.ip_len >= 20,
                "IPv4 length {} under its header",
                flow.ip_len
            );
            assert_eq!(flow.src[4..], [0; 12]);
            assert_eq!(flow.dst[4..], [0; 12]);
        }
        FAMILY_IPV6 => assert!(
            flow.ip_len >= 40,
            "IPv6 length {} under its header",
            flow.ip_len
        ),
        other => panic!("family {other}"),
    }
    if ![PROTO_TCP, PROTO_UDP, PROTO_SCTP].contains(&flow.proto) {
        assert_eq!((flow.src_port, flow.dst_port), (0, 0));
    }
});
