//! Interface and flow accounting for the XDP (ingress) and TC (egress) programs.

use aya_ebpf::{
    bindings::{__sk_buff, BPF_NOEXIST},
    helpers::generated::{
        bpf_get_smp_processor_id, bpf_jiffies64, bpf_skb_load_bytes, bpf_xdp_get_buff_len,
    },
    programs::{TcContext, XdpContext},
};
use kaipo_common::{
    counter, flow_slot_words, FlowCounters, FlowKey, FlowSlot, IfaceCounters, FAMILY_IPV4,
    FAMILY_IPV6, FLOW_SLOT_DIR_MASK, FLOW_SLOT_EMPTY, FLOW_SLOT_RX, FLOW_SLOT_TX, IFACE_SLOTS,
    PROTO_TCP, PROTO_UDP,
};

use crate::{
    bump, flow_cache_mask, flow_cache_shift, flow_slot_age,
    packet::{self, store_addr, Frame, IpHeaders, Parsed},
    track_flows, FLOWS, FLOW_CACHE, IFACE_STATS, IFACE_STATS_HIGH,
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
    // SAFETY: the helper takes no arguments; the kernel inlines it.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if count_common_frame(start, end, ifindex, cpu, len, false) {
        return;
    }
    let frame = XdpFrame { start, end };
    let mut headers = IpHeaders::default();
    let parsed = packet::parse_ethernet(&frame, &mut headers);
    account(ifindex, cpu, len, parsed, &headers, false);
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
    // SAFETY: the helper takes no arguments; the kernel inlines it.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if count_common_frame(frame.start, frame.end, ifindex, cpu, len, egress) {
        return;
    }
    let mut headers = IpHeaders::default();
    let parsed = packet::parse_ethernet(&frame, &mut headers);
    account(ifindex, cpu, len, parsed, &headers, egress);
}

/// Ethernet without VLAN tags, then IPv4 without options (not a later fragment) or IPv6 without
/// extension headers, then TCP or UDP: the shape of nearly every frame, recognised and counted
/// here from the linear part `start..end` with one bounds check and no intermediate copy of the
/// headers. Returns false, having counted nothing, for any other frame, which then takes the
/// full parser; for the frames it takes, the result is exactly what the full parser gives.
#[inline(always)]
fn count_common_frame(
    start: usize,
    end: usize,
    ifindex: u32,
    cpu: u32,
    len: u64,
    egress: bool,
) -> bool {
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
    let (family, proto, src, dst, ports, addr_len): (u8, u8, usize, usize, usize, usize);
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
    let Some(stats) = iface_entry(ifindex, cpu) else {
        return false;
    };
    // SAFETY: this CPU's counters (`iface_entry`); nothing else writes them while we run.
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
    // The key's words straight from the packet's bytes (see `kaipo_common::flow_key_words`),
    // so nothing is zeroed or copied twice.
    let b = |at: usize| u64::from(byte(at));
    let port = |at: usize| (b(at) << 8) | b(at + 1);
    let addr = |at: usize| b(at) | (b(at + 1) << 8) | (b(at + 2) << 16) | (b(at + 3) << 24);
    let head = u64::from(ifindex) | (u64::from(proto) << 48) | (u64::from(family) << 56);
    let ports = port(local_port) | (port(remote_port) << 16) | (addr(local) << 32);
    // Every word given a value at once: a zeroed buffer filled in later costs a memset call.
    let key = if addr_len == 4 {
        KeyWords([head, ports, 0, addr(remote) << 32, 0, 0])
    } else {
        KeyWords([
            head,
            ports,
            addr(local + 4) | (addr(local + 8) << 32),
            addr(local + 12) | (addr(remote) << 32),
            addr(remote + 4) | (addr(remote + 8) << 32),
            addr(remote + 12),
        ])
    };
    count_flow_key(&key, cpu, len, egress);
    true
}

/// A flow key as six 64-bit words, aligned for word loads; its first 44 bytes are the
/// [`FlowKey`] (see `kaipo_common::flow_key_words`).
#[repr(C, align(8))]
struct KeyWords([u64; 6]);

impl KeyWords {
    #[inline(always)]
    fn key(&self) -> &FlowKey {
        // SAFETY: 48 bytes, aligned to 8; a `FlowKey` is 44 bytes of integers aligned to 4.
        unsafe { &*(self as *const Self).cast::<FlowKey>() }
    }
}

#[inline(always)]
fn account(ifindex: u32, cpu: u32, len: u64, parsed: Parsed, headers: &IpHeaders, egress: bool) {
    let Some(stats) = iface_entry(ifindex, cpu) else {
        bump(counter::IFACE_MAP_FULL);
        return;
    };
    // SAFETY: this CPU's counters (`iface_entry`); nothing else writes them while we run.
    let stats = unsafe { &mut *stats };
    add_frame(stats, len, egress);
    match parsed {
        Parsed::Ip => {
            if track_flows() {
                count_flow(ifindex, cpu, headers, len, egress);
            }
        }
        Parsed::NonIp if egress => stats.tx_non_ip_bytes += len,
        Parsed::NonIp => stats.rx_non_ip_bytes += len,
        Parsed::Malformed if egress => stats.tx_malformed_bytes += len,
        Parsed::Malformed => stats.rx_malformed_bytes += len,
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
fn iface_entry(ifindex: u32, cpu: u32) -> Option<*mut IfaceCounters> {
    let slot = (cpu << IFACE_SLOTS.trailing_zeros()) | (ifindex & (IFACE_SLOTS - 1));
    if let Some(entry) = IFACE_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's copy of the slot (only its own programs write the counters, and
        // they do not nest); userspace writes the tag only while no monitored interface holds
        // the slot.
        unsafe {
            if (*entry).ifindex == ifindex {
                return Some(&raw mut (*entry).counters);
            }
        }
    }
    if let Some(stats) = IFACE_STATS_HIGH.get_ptr_mut(ifindex) {
        return Some(stats);
    }
    let _ = IFACE_STATS_HIGH.insert(ifindex, IfaceCounters::default(), u64::from(BPF_NOEXIST));
    IFACE_STATS_HIGH.get_ptr_mut(ifindex)
}

#[inline(always)]
fn count_flow(ifindex: u32, cpu: u32, h: &IpHeaders, len: u64, egress: bool) {
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
    let mut words = KeyWords([0; 6]);
    // SAFETY: `KeyWords` holds a `FlowKey` in its first 44 bytes.
    unsafe { *(&raw mut words).cast::<FlowKey>() = key };
    count_flow_key(&words, cpu, len, egress);
}

/// Counts one frame of a flow: in this CPU's flow cache when the flow holds one of the two
/// slots of its set or can take one, else in `FLOWS`. Takes the key by reference: by value, it
/// is copied again and XDP runs out of its 512-byte stack.
#[inline(always)]
fn count_flow_key(key: &KeyWords, cpu: u32, len: u64, egress: bool) {
    let dir = if egress { FLOW_SLOT_TX } else { FLOW_SLOT_RX };
    let q = &key.0;
    let first = (cpu << flow_cache_shift()) | flow_slot_words(q, dir, flow_cache_mask());
    if let (Some(a), Some(b)) = (
        FLOW_CACHE.get_ptr_mut(first),
        FLOW_CACHE.get_ptr_mut(first ^ 1),
    ) {
        // SAFETY: two distinct slots of this CPU's run, 64 bytes aligned to 8 each; only this
        // CPU's programs write them (they do not migrate while running) and they do not nest.
        let (a, b) = unsafe { (&mut *a, &mut *b) };
        // SAFETY: the helper takes no arguments; the kernel inlines it as a load of `jiffies`.
        let now = (unsafe { bpf_jiffies64() } as u32) << 2;
        if holds(a, q, dir) {
            add_to_slot(a, len, dir, now);
            return;
        }
        if holds(b, q, dir) {
            add_to_slot(b, len, dir, now);
            return;
        }
        for slot in [&mut *a, &mut *b] {
            if slot.state == FLOW_SLOT_EMPTY {
                take_slot(slot, key, len, dir, now);
                bump(counter::FLOW_SLOT_TAKEN);
                return;
            }
        }
        // Both slots held: the one quiet for longer goes, if it has been quiet long enough.
        let quiet = |slot: &FlowSlot| now.wrapping_sub(slot.state & !FLOW_SLOT_DIR_MASK) >> 2;
        let (quiet_a, quiet_b) = (quiet(a), quiet(b));
        let (slot, quiet_for) = if quiet_b > quiet_a {
            (b, quiet_b)
        } else {
            (a, quiet_a)
        };
        if quiet_for >= flow_slot_age() {
            // Its counts join its `FLOWS` entry, and this flow takes the slot.
            let moved = slot.counters();
            add_to_flows(&slot.key, &moved);
            take_slot(slot, key, len, dir, now);
            bump(counter::FLOW_SLOT_HANDOVER);
            return;
        }
    }
    let mut fresh = FlowCounters::default();
    add_flow(&mut fresh, len, egress);
    add_to_flows(key.key(), &fresh);
}

/// Whether `slot` holds the flow with key words `q` in direction `dir`: word by word, without
/// branches or a memcmp call.
#[inline(always)]
fn holds(slot: &FlowSlot, q: &[u64; 6], dir: u32) -> bool {
    // The slot as words: 0-4 and the low half of 5 the key, the high half of 5 the state.
    // SAFETY: a slot is 64 bytes aligned to 8.
    let s = unsafe { &*(slot as *const FlowSlot).cast::<[u64; 8]>() };
    let diff = (s[0] ^ q[0])
        | (s[1] ^ q[1])
        | (s[2] ^ q[2])
        | (s[3] ^ q[3])
        | (s[4] ^ q[4])
        | ((s[5] ^ q[5]) & 0xffff_ffff);
    diff == 0 && (s[5] >> 32) as u32 & FLOW_SLOT_DIR_MASK == dir
}

#[inline(always)]
fn add_to_slot(slot: &mut FlowSlot, len: u64, dir: u32, now: u32) {
    slot.bytes += len;
    slot.packets += 1;
    slot.state = now | dir;
}

#[inline(always)]
fn take_slot(slot: &mut FlowSlot, key: &KeyWords, len: u64, dir: u32, now: u32) {
    let w = (slot as *mut FlowSlot).cast::<u64>();
    // SAFETY: the slot is 64 bytes aligned to 8: words 0-4 and the low half of word 5 hold the
    // key, the high half of word 5 the state.
    unsafe {
        for i in 0..5 {
            *w.add(i) = key.0[i];
        }
        *w.add(5) = (key.0[5] & 0xffff_ffff) | (u64::from(now | dir) << 32);
    }
    slot.bytes = len;
    slot.packets = 1;
}

/// Adds `amount` to this CPU's value of `key`'s `FLOWS` entry, creating the entry when there is
/// none. `key` may point into a map value: the kernel takes map values as keys.
#[inline(always)]
fn add_to_flows(key: &FlowKey, amount: &FlowCounters) {
    if let Some(flow) = FLOWS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU map.
        add_counters(unsafe { &mut *flow }, amount);
        return;
    }
    match FLOWS.insert(key, amount, u64::from(BPF_NOEXIST)) {
        Ok(()) => bump(counter::FLOW_CREATED),
        // Another CPU created it between our lookup and insert: add to our own slot of it.
        Err(_) => match FLOWS.get_ptr_mut(key) {
            // SAFETY: this CPU's value of a per-CPU map.
            Some(flow) => add_counters(unsafe { &mut *flow }, amount),
            None => bump(counter::FLOW_MAP_FULL),
        },
    }
}

#[inline(always)]
fn add_counters(flow: &mut FlowCounters, amount: &FlowCounters) {
    flow.rx_bytes += amount.rx_bytes;
    flow.rx_packets += amount.rx_packets;
    flow.tx_bytes += amount.tx_bytes;
    flow.tx_packets += amount.tx_packets;
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
