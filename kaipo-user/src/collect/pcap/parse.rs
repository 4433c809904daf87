//! Captured frames, read down to the flow they belong to.
//!
//! libpcap hands over frames cut at the snap length (128 bytes by default: headers only), so
//! lengths come from the IP header and the capture header, never from the captured bytes. What
//! arrives can be anything a NIC, a tunnel or a hostile peer produces, so every read is
//! bounds-checked and every inconsistency is a [`ParseError`], never a panic.

use etherparse::{ip_number, IpNumber, Ipv6ExtensionSlice, LaxIpv4Slice, LaxIpv6Slice};
use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6};

/// The `DLT_*` link types kaipo reads, as `pcap_datalink` returns them.
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: i32 = 0;
    pub const EN10MB: i32 = 1;
    /// Raw IP; `DLT_RAW` is 12 on most systems and 14 on OpenBSD, and savefiles say 101.
    pub const RAW: i32 = 12;
    pub const RAW_OPENBSD: i32 = 14;
    pub const RAW_LINKTYPE: i32 = 101;
    /// OpenBSD loopback: like [`NULL`] with the family in network byte order.
    pub const LOOP: i32 = 108;
    /// Linux cooked capture, what the `any` device gives.
    pub const LINUX_SLL: i32 = 113;
    pub const IPV4: i32 = 228;
    pub const IPV6: i32 = 229;
    /// Linux cooked capture v2, which adds the interface index.
    pub const LINUX_SLL2: i32 = 276;
}

/// `ARPHRD_*` values a cooked header carries: which link the frame really came over.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
/// `PACKET_OUTGOING`: the frame was sent by this host. Every other packet type is received.
const PACKET_OUTGOING: u16 = 4;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad and the pre-standard QinQ tag.
const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const ETHERNET_HEADER: u32 = 14;
/// Deeper stacks exist only in attacks; the eBPF side stops at two as well.
pub const MAX_VLAN_TAGS: usize = 2;
const IPV6_HEADER: u32 = 40;

/// Which way a frame went, when the link header says so (cooked captures do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

/// What the link layer tells about a frame, IP or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkMeta {
    /// From a cooked header's packet type; `None` for link types that do not say.
    pub direction: Option<Direction>,
    /// A cooked header said the frame came over a loopback device.
    pub loopback: bool,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    /// Outermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// The interface the frame came over, when the link header names it (cooked v2).
    pub ifindex: Option<u32>,
    /// The frame's length as the interface's own counters count it: from the Ethernet header
    /// on, so a cooked capture's pseudo header is replaced by the link header it stands for.
    pub link_bytes: u32,
}

/// One IP packet's flow and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowObservation {
    pub family: u8,
    pub proto: u8,
    /// IPv4 addresses use the first four bytes, like the eBPF side's keys.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Host byte order; 0 for protocols without ports and for non-first fragments.
    pub src_port: u16,
    pub dst_port: u16,
    pub vlan: u16,
    /// IP-layer bytes from the header: IPv4 total length, or IPv6 payload length plus 40.
    pub ip_len: u32,
    /// The capture header's original frame length.
    pub wire_len: u32,
}

/// A parsed frame: the link layer always, the flow when the frame carries a readable IP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub link: LinkMeta,
    /// [`ParseError::NotIp`] for ARP, LLDP and the like; other errors for a broken IP packet.
    pub net: Result<FlowObservation, ParseError>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("link type {0} is not one kaipo reads (Ethernet, Linux cooked, BSD loopback, raw IP)")]
    UnsupportedLinktype(i32),
    #[error("{layer} header cut short: needs {need} bytes, the capture has {have}")]
    Truncated {
        layer: &'static str,
        need: usize,
        have: usize,
    },
    #[error("more than {MAX_VLAN_TAGS} stacked VLAN tags")]
    TooManyVlanTags,
    #[error("loopback header names address family {0}, neither IPv4 nor IPv6")]
    UnknownFamily(u32),
    #[error("not an IP packet (ethertype {ethertype:#06x})")]
    NotIp { ethertype: u16 },
    #[error("IP version {found} where {expected} was expected")]
    IpVersion { found: u8, expected: u8 },
    #[error("IPv4 header: {0}")]
    Ipv4(etherparse::err::ipv4::HeaderSliceError),
    #[error("IPv6 header: {0}")]
    Ipv6(etherparse::err::ipv6::HeaderSliceError),
    #[error("IP header says {header} bytes, which does not fit its own header or the {frame}-byte frame")]
    Length { header: u32, frame: u32 },
}

/// Parses one frame of link type `linktype`, `wire_len` bytes long before capture cut it.
/// Fails only when the link header itself is unreadable; a broken IP packet inside a readable
/// frame still reports its link metadata.
pub fn parse_frame(linktype: i32, data: &[u8], wire_len: u32) -> Result<Frame, ParseError> {
    // libpcap guarantees caplen <= len; a savefile or a fuzzer does not.
    let wire_len = wire_len.max(u32::try_from(data.len()).unwrap_or(u32::MAX));
    let (link, network) = link_layer(linktype, data, wire_len)?;
    let net = match network {
        Network::Ip { expect, offset } => {
            let ip = data.get(offset..).unwrap_or_default();
            let frame_ip_bytes = wire_len.saturating_sub(offset as u32);
            ip_packet(ip, expect, frame_ip_bytes).map(|mut flow| {
                flow.vlan = link.vlan;
                flow.wire_len = wire_len;
                flow
            })
        }
        Network::Other(ethertype) => Err(ParseError::NotIp { ethertype }),
    };
    Ok(Frame { link, net })
}

/// The flow of one frame; non-IP frames are [`ParseError::NotIp`].
pub fn parse(linktype: i32, data: &[u8], wire_len: u32) -> Result<FlowObservation, ParseError> {
    parse_frame(linktype, data, wire_len)?.net
}

enum Network {
    /// An IP packet at `offset`; `expect` is the version the link header announced, if any.
    Ip {
        expect: Option<u8>,
        offset: usize,
    },
    Other(u16),
}

fn link_layer(
    linktype: i32,
    data: &[u8],
    wire_len: u32,
) -> Result<(LinkMeta, Network), ParseError> {
    let mut meta = LinkMeta {
        link_bytes: wire_len,
        ..LinkMeta::default()
    };
    let network = match linktype {
        linktype::EN10MB => {
            let header = take(data, 0, 14, "Ethernet")?;
            meta.dst_mac = mac(&header[0..6]);
            meta.src_mac = mac(&header[6..12]);
            ethertype_chain(data, be16(header, 12), 14, &mut meta)?
        }
        linktype::LINUX_SLL => {
            let header = take(data, 0, 16, "Linux cooked")?;
            let hatype = be16(header, 2);
            cooked(&mut meta, be16(header, 0), hatype, wire_len, 16);
            ethertype_chain(data, be16(header, 14), 16, &mut meta)?
        }
        linktype::LINUX_SLL2 => {
            let header = take(data, 0, 20, "Linux cooked v2")?;
            let hatype = be16(header, 8);
            meta.ifindex = Some(u32::from_be_bytes([
                header[4], header[5], header[6], header[7],
            ]));
            cooked(&mut meta, u16::from(header[10]), hatype, wire_len, 20);
            ethertype_chain(data, be16(header, 0), 20, &mut meta)?
        }
        linktype::NULL | linktype::LOOP => {
            let header = take(data, 0, 4, "loopback")?;
            let raw = [header[0], header[1], header[2], header[3]];
            // DLT_NULL is in the capturing host's order, which for a savefile may not be ours:
            // the family values are all small, so the order that yields a small value is right.
            let family = if linktype == linktype::LOOP {
                u32::from_be_bytes(raw)
            } else {
                let native = u32::from_ne_bytes(raw);
                if native > 0xffff {
                    native.swap_bytes()
                } else {
                    native
                }
            };
            meta.link_bytes = wire_len.saturating_sub(4);
            let expect = match family {
                2 => 4,
                // Linux, Windows, NetBSD/OpenBSD, FreeBSD, macOS.
                10 | 23 | 24 | 28 | 30 => 6,
                other => return Err(ParseError::UnknownFamily(other)),
            };
            Network::Ip {
                expect: Some(expect),
                offset: 4,
            }
        }
        linktype::RAW | linktype::RAW_OPENBSD | linktype::RAW_LINKTYPE => Network::Ip {
            expect: None,
            offset: 0,
        },
        linktype::IPV4 => Network::Ip {
            expect: Some(4),
            offset: 0,
        },
        linktype::IPV6 => Network::Ip {
            expect: Some(6),
            offset: 0,
        },
        other => return Err(ParseError::UnsupportedLinktype(other)),
    };
    Ok((meta, network))
}

/// Fills in what a cooked header says: direction, loopback, and the frame length the interface
/// counts (its real link header instead of the pseudo header libpcap added to the length).
fn cooked(meta: &mut LinkMeta, pkttype: u16, hatype: u16, wire_len: u32, header: u32) {
    meta.direction = Some(if pkttype == PACKET_OUTGOING {
        Direction::Out
    } else {
        Direction::In
    });
    meta.loopback = hatype == ARPHRD_LOOPBACK;
    let link_header = match hatype {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => ETHERNET_HEADER,
        _ => 0,
    };
    meta.link_bytes = wire_len.saturating_sub(header) + link_header;
}

/// Follows VLAN tags from an ethertype at `offset - 2` to the network layer.
fn ethertype_chain(
    data: &[u8],
    mut ethertype: u16,
    mut offset: usize,
    meta: &mut LinkMeta,
) -> Result<Network, ParseError> {
    let mut tags = 0;
    while VLAN_TPIDS.contains(&ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(ParseError::TooManyVlanTags);
        }
        let tag = take(data, offset, 4, "VLAN tag")?;
        if tags == 0 {
            meta.vlan = be16(tag, 0) & 0x0fff;
        }
        ethertype = be16(tag, 2);
        offset += 4;
        tags += 1;
    }
    Ok(match ethertype {
        ETHERTYPE_IPV4 => Network::Ip {
            expect: Some(4),
            offset,
        },
        ETHERTYPE_IPV6 => Network::Ip {
            expect: Some(6),
            offset,
        },
        other => Network::Other(other),
    })
}

/// Reads an IP packet whose captured bytes are `ip` and whose full length on the wire (from the
/// IP header on) is `frame_ip_bytes`.
fn ip_packet(
    ip: &[u8],
    expect: Option<u8>,
    frame_ip_bytes: u32,
) -> Result<FlowObservation, ParseError> {
    let first = *ip.first().ok_or(ParseError::Truncated {
        layer: "IP",
        need: 1,
        have: 0,
    })?;
    let version = first >> 4;
    if let Some(expected) = expect.filter(|e| *e != version) {
        return Err(ParseError::IpVersion {
            found: version,
            expected,
        });
    }
    match version {
        4 => ipv4(ip, frame_ip_bytes),
        6 => ipv6(ip, frame_ip_bytes),
        found => Err(ParseError::IpVersion { found, expected: 4 }),
    }
}

fn ipv4(ip: &[u8], frame_ip_bytes: u32) -> Result<FlowObservation, ParseError> {
    let (slice, _auth_error) = LaxIpv4Slice::from_slice(ip).map_err(ParseError::Ipv4)?;
    let header = slice.header();
    let header_len = header.slice().len() as u32;
    let ip_len = match u32::from(header.total_len()) {
        // A segmentation-offload buffer captured before the NIC splits it (and BIG TCP past
        // 64 KiB) carries 0 here: the frame length is then the only measure.
        0 => frame_ip_bytes,
        len => len,
    };
    check_len(ip_len, header_len, frame_ip_bytes)?;
    let payload = slice.payload();
    let first_fragment = header.fragments_offset().value() == 0;
    let mut flow = FlowObservation {
        family: FAMILY_IPV4,
        proto: payload.ip_number.0,
        ip_len,
        ..FlowObservation::default()
    };
    flow.src[..4].copy_from_slice(&header.source());
    flow.dst[..4].copy_from_slice(&header.destination());
    let truncated = (ip.len() as u64) < u64::from(ip_len);
    if first_fragment {
        (flow.src_port, flow.dst_port) = ports(payload.ip_number, payload.payload, truncated)?;
    }
    Ok(flow)
}

fn ipv6(ip: &[u8], frame_ip_bytes: u32) -> Result<FlowObservation, ParseError> {
    let (slice, ext_error) = LaxIpv6Slice::from_slice(ip).map_err(ParseError::Ipv6)?;
    let header = slice.header();
    let ip_len = match u32::from(header.payload_length()) {
        // A jumbogram or an offload buffer: the frame length is the only measure.
        0 => frame_ip_bytes,
        len => len + IPV6_HEADER,
    };
    check_len(ip_len, IPV6_HEADER, frame_ip_bytes)?;
    let payload = slice.payload();
    // When the extension chain could not be followed to its end, what follows is not a
    // transport header: the flow keeps its bytes without ports. The chain must not be walked
    // then either: etherparse 0.21's iterator trusts the cut-short chain and reads past it.
    let whole_chain = ext_error.is_none();
    let first_fragment = whole_chain
        && slice.extensions().clone().into_iter().all(|ext| match ext {
            Ipv6ExtensionSlice::Fragment(frag) => frag.fragment_offset().value() == 0,
            _ => true,
        });
    let mut flow = FlowObservation {
        family: FAMILY_IPV6,
        proto: payload.ip_number.0,
        src: header.source(),
        dst: header.destination(),
        ip_len,
        ..FlowObservation::default()
    };
    let truncated = (ip.len() as u64) < u64::from(ip_len);
    if first_fragment {
        (flow.src_port, flow.dst_port) = ports(payload.ip_number, payload.payload, truncated)?;
    }
    Ok(flow)
}

fn check_len(ip_len: u32, header_len: u32, frame_ip_bytes: u32) -> Result<(), ParseError> {
    if ip_len < header_len || ip_len > frame_ip_bytes {
        return Err(ParseError::Length {
            header: ip_len,
            frame: frame_ip_bytes,
        });
    }
    Ok(())
}

/// Source and destination port of TCP, UDP and SCTP, which all start with them. A capture cut
/// before the ports yields none; a packet that is itself too short is malformed.
fn ports(proto: IpNumber, transport: &[u8], truncated: bool) -> Result<(u16, u16), ParseError> {
    if ![ip_number::TCP, ip_number::UDP, ip_number::SCTP].contains(&proto) {
        return Ok((0, 0));
    }
    match transport.get(..4) {
        Some(bytes) => Ok((be16(bytes, 0), be16(bytes, 2))),
        None if truncated => Ok((0, 0)),
        None => Err(ParseError::Truncated {
            layer: "transport",
            need: 4,
            have: transport.len(),
        }),
    }
}

fn take<'a>(
    data: &'a [u8],
    offset: usize,
    len: usize,
    layer: &'static str,
) -> Result<&'a [u8], ParseError> {
    data.get(offset..offset.saturating_add(len))
        .filter(|s| s.len() == len)
        .ok_or(ParseError::Truncated {
            layer,
            need: offset + len,
            have: data.len(),
        })
}

/// Callers pass slices already checked to hold `at + 2` bytes.
fn be16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

fn mac(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
