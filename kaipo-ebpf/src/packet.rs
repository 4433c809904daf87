//! Header parsing shared by the XDP, TC and cgroup programs.
//!
//! Every read goes through [`Frame::read`], which either bounds-checks against the packet end
//! (direct packet access) or copies through a helper that does its own checking. The parser
//! never trusts a length field further than the frame actually reaches.

use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV6_HLEN: usize = 40;
/// How many stacked VLAN tags and IPv6 extension headers are followed. Both loops must be
/// bounded for the verifier; real traffic rarely has more than two of either.
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXT: usize = 4;

/// Byte-level access to a packet.
pub trait Frame {
    /// Copies `N` bytes at `offset` into `dst`; false when the frame is shorter.
    fn read_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> bool;

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        self.read_into(offset, &mut out).then_some(out)
    }

    #[inline(always)]
    fn read_u8(&self, offset: usize) -> Option<u8> {
        self.read::<1>(offset).map(|b| b[0])
    }

    #[inline(always)]
    fn read_be16(&self, offset: usize) -> Option<u16> {
        self.read::<2>(offset).map(u16::from_be_bytes)
    }

    /// Four bytes as they lie in memory, for copying addresses a word at a time.
    #[inline(always)]
    fn read_word(&self, offset: usize) -> Option<u32> {
        self.read::<4>(offset).map(u32::from_ne_bytes)
    }
}

/// An address as four words in network byte order (IPv4 uses the first word). Words rather
/// than bytes: LLVM keeps a `[u8; 16]` as sixteen separate values, which costs the hot path
/// dozens of instructions per copy.
pub type Addr = [u32; 4];

/// Writes an address into the byte layout the maps use.
#[inline(always)]
pub fn store_addr(dst: &mut [u8; 16], addr: &Addr) {
    // SAFETY: every destination of an address in kaipo-common's structs sits at a 4-byte
    // aligned offset of a 4-byte aligned struct (asserted there), and `[u8; 16]` and `[u32; 4]`
    // have the same size.
    unsafe { *(dst.as_mut_ptr().cast::<Addr>()) = *addr };
}

/// The addressing of one IP packet, source and destination as on the wire.
#[derive(Clone, Copy, Default)]
pub struct IpHeaders {
    pub family: u8,
    pub proto: u8,
    pub vlan: u16,
    pub src_port: u16,
    pub dst_port: u16,
    pub src: Addr,
    pub dst: Addr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// IPv4 or IPv6; the headers were written to the caller's [`IpHeaders`].
    Ip,
    /// Not IPv4 or IPv6 (ARP and the like).
    NonIp,
    /// Cut short or inconsistent.
    Malformed,
}

/// Parses an Ethernet frame: up to two VLAN tags, then IPv4 or IPv6.
#[inline(always)]
pub fn parse_ethernet<F: Frame>(frame: &F, headers: &mut IpHeaders) -> Parsed {
    let Some(mut ethertype) = frame.read_be16(12) else {
        return Parsed::Malformed;
    };
    let mut offset = ETH_HLEN;
    let mut vlan = 0u16;
    for i in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let (Some(tci), Some(inner)) = (frame.read_be16(offset), frame.read_be16(offset + 2))
        else {
            return Parsed::Malformed;
        };
        if i == 0 {
            vlan = tci & 0x0fff;
        }
        ethertype = inner;
        offset += 4;
    }
    headers.vlan = vlan;
    match ethertype {
        ETH_P_IP => parse_ipv4(frame, offset, headers),
        ETH_P_IPV6 => parse_ipv6(frame, offset, headers),
        _ => Parsed::NonIp,
    }
}

/// Parses a packet that starts at its IP header (what cgroup socket programs see).
#[inline(always)]
pub fn parse_ip<F: Frame>(frame: &F, headers: &mut IpHeaders) -> Parsed {
    match frame.read_u8(0).map(|b| b >> 4) {
        Some(4) => parse_ipv4(frame, 0, headers),
        Some(6) => parse_ipv6(frame, 0, headers),
        Some(_) => Parsed::NonIp,
        None => Parsed::Malformed,
    }
}

#[inline(always)]
fn parse_ipv4<F: Frame>(frame: &F, offset: usize, headers: &mut IpHeaders) -> Parsed {
    // Version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol.
    let Some(h) = frame.read::<10>(offset) else {
        return Parsed::Malformed;
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 || usize::from(u16::from_be_bytes([h[2], h[3]])) < ihl {
        return Parsed::Malformed;
    }
    headers.family = FAMILY_IPV4;
    headers.proto = h[9];
    let (Some(src), Some(dst)) = (frame.read_word(offset + 12), frame.read_word(offset + 16))
    else {
        return Parsed::Malformed;
    };
    headers.src = [src, 0, 0, 0];
    headers.dst = [dst, 0, 0, 0];
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    headers.src_port = 0;
    headers.dst_port = 0;
    if fragment_offset == 0 {
        read_ports(frame, offset + ihl, headers);
    }
    Parsed::Ip
}

#[inline(always)]
fn parse_ipv6<F: Frame>(frame: &F, offset: usize, headers: &mut IpHeaders) -> Parsed {
    let Some(h) = frame.read::<8>(offset) else {
        return Parsed::Malformed;
    };
    if h[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    headers.family = FAMILY_IPV6;
    for i in 0..4 {
        let (Some(src), Some(dst)) = (
            frame.read_word(offset + 8 + 4 * i),
            frame.read_word(offset + 24 + 4 * i),
        ) else {
            return Parsed::Malformed;
        };
        headers.src[i] = src;
        headers.dst[i] = dst;
    }
    let mut next = h[6];
    let mut l4 = offset + IPV6_HLEN;
    let mut first_fragment = true;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units after the first 8.
            0 | 43 | 60 => {
                let Some(ext) = frame.read::<2>(l4) else {
                    return Parsed::Malformed;
                };
                next = ext[0];
                l4 += (usize::from(ext[1]) + 1) * 8;
            }
            // Fragment header: fixed 8 bytes; only the first fragment carries ports.
            44 => {
                let Some(ext) = frame.read::<4>(l4) else {
                    return Parsed::Malformed;
                };
                next = ext[0];
                first_fragment = u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 == 0;
                l4 += 8;
            }
            // Authentication header: length in 4-byte units after the first 8.
            51 => {
                let Some(ext) = frame.read::<2>(l4) else {
                    return Parsed::Malformed;
                };
                next = ext[0];
                l4 += (usize::from(ext[1]) + 2) * 4;
            }
            _ => break,
        }
    }
    headers.proto = next;
    headers.src_port = 0;
    headers.dst_port = 0;
    if first_fragment {
        read_ports(frame, l4, headers);
    }
    Parsed::Ip
}

/// Fills in ports for the protocols that have them at the start of their header. A datagram too
/// short to hold them keeps ports 0: its bytes still count toward the flow of its addresses.
#[inline(always)]
fn read_ports<F: Frame>(frame: &F, offset: usize, headers: &mut IpHeaders) {
    if matches!(headers.proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) {
        if let Some(p) = frame.read::<4>(offset) {
            headers.src_port = u16::from_be_bytes([p[0], p[1]]);
            headers.dst_port = u16::from_be_bytes([p[2], p[3]]);
        }
    }
}
