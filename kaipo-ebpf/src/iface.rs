//! Interface and flow accounting for the XDP (ingress) and TC (egress) programs.

use aya_ebpf::{
    bindings::{__sk_buff, BPF_NOEXIST},
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len},
    programs::{TcContext, XdpContext},
};
use kaipo_common::{
    counter, FlowCounters, FlowKey, IfaceCounters, FAMILY_IPV4, FAMILY_IPV6, IFACE_SLOTS,
    PROTO_TCP, PROTO_UDP,
};

use crate::{
    bump,
    packet::{self, store_addr, Frame, IpHeaders, Parsed},
    track_flows, FLOWS, IFACE_STATS, IFACE_STATS_HIGH,
};

/// Direct access to the linear part of an XDP buffer.
struct XdpFrame {
    start: usize,
    end: usize,
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn read_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> bool {
        let at = self.start + offset;
        if at + N > self.end {
            return false;
        }
        // SAFETY: the range lies inside the packet, checked just above.
        *dst = unsafe { *(at as *const [u8; N]) };
        true
    }
}

/// A socket buffer, read through the load helper: it handles headers outside the linear part,
/// and the verifier accepts it in every program type without packet-pointer bookkeeping.
pub struct SkbFrame {
    skb: *mut __sk_buff,
}

impl SkbFrame {
    #[inline(always)]
    pub fn new(skb: *mut __sk_buff) -> Self {
        Self { skb }
    }
}

impl Frame for SkbFrame {
    #[inline(always)]
    fn read_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> bool {
        // SAFETY: the helper checks the range against the whole packet and fills `dst` only on
        // success.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.skb.cast(),
                offset as u32,
                dst.as_mut_ptr().cast(),
                N as u32,
            )
        };
        ret == 0
    }
}

pub fn on_ingress(ctx: &XdpContext) {
    // SAFETY: reading fields of the program's own context.
    let (ifindex, len) = unsafe { ((*ctx.ctx).ingress_ifindex, bpf_xdp_get_buff_len(ctx.ctx)) };
    let (start, end) = (ctx.data(), ctx.data_end());
    if count_common_frame(start, end, ifindex, len, false) {
        return;
    }
    let frame = XdpFrame { start, end };
    let mut headers = IpHeaders::default();
    let parsed = packet::parse_ethernet(&frame, &mut headers);
    account(ifindex, len, parsed, &headers, false);
}

/// A socket buffer read directly in its linear part, where the headers of nearly every packet
/// are, and through the load helper past it.
pub struct LinearFrame {
    start: usize,
    end: usize,
    skb: SkbFrame,
}

impl LinearFrame {
    #[inline(always)]
    pub fn new(skb: *mut __sk_buff) -> Self {
        // SAFETY: `skb` is the program's context pointer.
        let (start, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
        Self {
            start,
            end,
            skb: SkbFrame::new(skb),
        }
    }
}

impl Frame for LinearFrame {
    #[inline(always)]
    fn read_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> bool {
        let at = self.start + offset;
        // Written as "past the end: take the slow path" so the verifier sees the bound it
        // needs on the packet pointer before the load below.
        if at + N > self.end {
            return self.skb.read_into(offset, dst);
        }
        // SAFETY: the range lies inside the linear part, checked just above.
        *dst = unsafe { *(at as *const [u8; N]) };
        true
    }
}

pub fn on_egress(ctx: &TcContext) {
    on_tc(ctx, true);
}

/// At TC ingress the frame starts at its Ethernet header and `len` counts it, as at egress.
pub fn on_tc_ingress(ctx: &TcContext) {
    on_tc(ctx, false);
}

#[inline(always)]
fn on_tc(ctx: &TcContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: reading fields of the program's own context.
    let (ifindex, len) = unsafe { ((*skb).ifindex, u64::from((*skb).len)) };
    let frame = LinearFrame::new(skb);
    if count_common_frame(frame.start, frame.end, ifindex, len, egress) {
        return;
    }
    let mut headers = IpHeaders::default();
    let parsed = packet::parse_ethernet(&frame, &mut headers);
    account(ifindex, len, parsed, &headers, egress);
}

/// Ethernet without VLAN tags, then IPv4 without options (not a later fragment) or IPv6 without
/// extension headers, then TCP or UDP: the shape of nearly every frame, recognised and counted
/// here from the linear part `start..end` with one bounds check and no intermediate copy of the
/// headers. Returns false, having counted nothing, for any other frame, which then takes the
/// full parser; for the frames it takes, the result is exactly what the full parser gives.
#[inline(always)]
fn count_common_frame(start: usize, end: usize, ifindex: u32, len: u64, egress: bool) -> bool {
    // Ethernet, a 20-byte IPv4 header, the two ports.
    const NEED_V4: usize = 14 + 20 + 4;
    // Ethernet, the 40-byte IPv6 header, the two ports.
    const NEED_V6: usize = 14 + 40 + 4;
    if start + NEED_V4 > end {
        return false;
    }
    // SAFETY: callers read only offsets under the bound checked for their branch.
    let byte = |at: usize| unsafe { *((start + at) as *const u8) };
    // Where the addresses (4 or 16 bytes) and the ports are.
    let (family, proto, src, dst, ports, addr_len);
    if byte(12) == 0x08 && byte(13) == 0x00 {
        // Version 4 with a 5-word header; a total length that holds the header; a first (or
        // only) fragment; TCP or UDP.
        let p = byte(23);
        if byte(14) != 0x45
            || (byte(16) == 0 && byte(17) < 20)
            || byte(20) & 0x1f != 0
            || byte(21) != 0
            || (p != PROTO_TCP && p != PROTO_UDP)
        {
            return false;
        }
        (family, proto, src, dst, ports, addr_len) = (FAMILY_IPV4, p, 26, 30, 34, 4);
    } else if byte(12) == 0x86 && byte(13) == 0xdd {
        if start + NEED_V6 > end {
            return false;
        }
        // Version 6; TCP or UDP right after the fixed header.
        let p = byte(20);
        if byte(14) >> 4 != 6 || (p != PROTO_TCP && p != PROTO_UDP) {
            return false;
        }
        (family, proto, src, dst, ports, addr_len) = (FAMILY_IPV6, p, 22, 38, 54, 16);
    } else {
        return false;
    }
    let Some(stats) = iface_entry(ifindex) else {
        return false;
    };
    // SAFETY: this CPU's value of a per-CPU map; nothing else writes it while we run.
    let stats = unsafe { &mut *stats };
    add_frame(stats, len, egress);
    if !track_flows() {
        return true;
    }
    let (local, remote, local_port, remote_port) = if egress {
        (src, dst, ports, ports + 2)
    } else {
        (dst, src, ports + 2, ports)
    };
    let mut key = FlowKey {
        ifindex,
        vlan: 0,
        proto,
        family,
        local_port: u16::from_be_bytes([byte(local_port), byte(local_port + 1)]),
        remote_port: u16::from_be_bytes([byte(remote_port), byte(remote_port + 1)]),
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    for i in 0..16 {
        if i == addr_len {
            break;
        }
        key.local_addr[i] = byte(local + i);
        key.remote_addr[i] = byte(remote + i);
    }
    count_flow_key(&key, len, egress);
    true
}

#[inline(always)]
fn account(ifindex: u32, len: u64, parsed: Parsed, headers: &IpHeaders, egress: bool) {
    let Some(stats) = iface_entry(ifindex) else {
        bump(counter::IFACE_MAP_FULL);
        return;
    };
    // SAFETY: this CPU's value of a per-CPU map; nothing else writes it while we run.
    let stats = unsafe { &mut *stats };
    add_frame(stats, len, egress);
    match parsed {
        Parsed::Ip => {
            if track_flows() {
                count_flow(ifindex, headers, len, egress);
            }
        }
        Parsed::NonIp if egress => stats.tx_non_ip += 1,
        Parsed::NonIp => stats.rx_non_ip += 1,
        Parsed::Malformed if egress => stats.tx_malformed += 1,
        Parsed::Malformed => stats.rx_malformed += 1,
    }
}

#[inline(always)]
fn add_frame(stats: &mut IfaceCounters, len: u64, egress: bool) {
    if egress {
        stats.tx_bytes += len;
        stats.tx_packets += 1;
    } else {
        stats.rx_bytes += len;
        stats.rx_packets += 1;
    }
}

#[inline(always)]
fn iface_entry(ifindex: u32) -> Option<*mut IfaceCounters> {
    if ifindex < IFACE_SLOTS {
        return IFACE_STATS.get_ptr_mut(ifindex);
    }
    if let Some(stats) = IFACE_STATS_HIGH.get_ptr_mut(ifindex) {
        return Some(stats);
    }
    let _ = IFACE_STATS_HIGH.insert(ifindex, IfaceCounters::default(), u64::from(BPF_NOEXIST));
    IFACE_STATS_HIGH.get_ptr_mut(ifindex)
}

#[inline(always)]
fn count_flow(ifindex: u32, h: &IpHeaders, len: u64, egress: bool) {
    let (local, remote, local_port, remote_port) = if egress {
        (&h.src, &h.dst, h.src_port, h.dst_port)
    } else {
        (&h.dst, &h.src, h.dst_port, h.src_port)
    };
    let mut key = FlowKey {
        ifindex,
        vlan: h.vlan,
        proto: h.proto,
        family: h.family,
        local_port,
        remote_port,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    store_addr(&mut key.local_addr, local);
    store_addr(&mut key.remote_addr, remote);
    count_flow_key(&key, len, egress);
}

/// Takes the key by reference: by value, the 44-byte key is copied again and XDP runs out of its
/// 512-byte stack.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the counters are copied again on the 512-byte stack"
)]
fn count_flow_key(key: &FlowKey, len: u64, egress: bool) {
    if let Some(flow) = FLOWS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU map.
        add_flow(unsafe { &mut *flow }, len, egress);
        return;
    }
    let mut fresh = FlowCounters::default();
    add_flow(&mut fresh, len, egress);
    match FLOWS.insert(key, &fresh, u64::from(BPF_NOEXIST)) {
        Ok(()) => bump(counter::FLOW_CREATED),
        // Another CPU created it between our lookup and insert: add to our own slot of it.
        Err(_) => match FLOWS.get_ptr_mut(key) {
            // SAFETY: this CPU's value of a per-CPU map.
            Some(flow) => add_flow(unsafe { &mut *flow }, len, egress),
            None => bump(counter::FLOW_MAP_FULL),
        },
    }
}

#[inline(always)]
fn add_flow(flow: &mut FlowCounters, len: u64, egress: bool) {
    if egress {
        flow.tx_bytes += len;
        flow.tx_packets += 1;
    } else {
        flow.rx_bytes += len;
        flow.rx_packets += 1;
    }
}
