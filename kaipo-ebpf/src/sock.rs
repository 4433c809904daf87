//! Per-socket IP-layer accounting for the cgroup_skb programs.
//!
//! Attached at the cgroup v2 root, these see every packet that enters or leaves a socket of any
//! process in any network namespace, with the packet starting at its IP header.

use core::{
    ffi::c_void,
    intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering},
};

use aya_ebpf::{
    bindings::{__sk_buff, BPF_NOEXIST, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::generated::{bpf_get_socket_cookie, bpf_sk_storage_get},
    programs::SkBuffContext,
};
use kaipo_common::{
    counter, load_const, slot_of_ref, slot_ref, SockSlot, SockStats, FAMILY_IPV4, LOOPBACK_IFINDEX,
    PROTO_TCP, PROTO_UDP, SOCK_FLAG_CLIENT, SOCK_FLAG_CLOSED, SOCK_FLAG_MANY_REMOTES,
    SOCK_FLAG_SERVER, SOCK_HINT_COUNT, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
};

use crate::{
    bump, dns, handshake,
    iface::SkbFrame,
    kfunc, owner,
    packet::{self, store_addr, Frame as _, IpHeaders, Parsed},
    SCRATCH_SOCK, SLOT_FREE, SOCK_HINTS, SOCK_REF, SOCK_SLOTS, SOCK_STATS,
};

/// Counts a packet of the context's socket. Inlined into each of the two programs, so that
/// `egress` is a constant there and neither program calls a function of its own.
#[inline(always)]
pub fn count(ctx: &SkBuffContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: reading the program's own context.
    let sk = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    if !egress {
        dns::on_ingress(skb);
    }
    // SAFETY: reading fields of the program's own context.
    let (len, segs, ifindex) = unsafe { ((*skb).len, (*skb).gso_segs, (*skb).ifindex) };
    let packets = u64::from(segs.max(1));
    // A GSO (or GRO) buffer carries `gso_segs` packets but one copy of their headers; on the wire
    // every segment has its own, so count those too.
    let mut len = u64::from(len);
    if packets > 1 {
        len += (packets - 1) * u64::from(header_len(skb));
    }
    let loopback = ifindex == LOOPBACK_IFINDEX;
    let state = socket_state(skb);

    // The common case: a socket whose counters have a slot. The socket's cookie, read straight
    // from the kernel's socket, and `SOCK_HINTS` lead to it without a helper call; where they
    // do not (no hint yet, a hint another socket has taken over, a kernel that cannot be read
    // directly), the socket's own storage does, and the hint is written for the next packet.
    // A listener counts in the shared map, where its handshakes are settled.
    let mut direct = 0;
    if state != TCP_LISTEN && use_slots() {
        direct = direct_cookie(sk.cast());
        if let Some(slot) = hinted_slot(direct) {
            let stats = &mut slot.stats;
            add(stats, len, packets, egress, loopback);
            note_packet(stats, ctx, state, egress);
            return;
        }
        if let Some((slot, index)) = live_slot(ref_of(sk.cast(), false)) {
            let stats = &mut slot.stats;
            add(stats, len, packets, egress, loopback);
            // A slot being taken has no endpoints yet: its first packet sets them.
            // SAFETY: a field of a live slot.
            let owner = unsafe { core::ptr::read_volatile(&raw const slot.cookie) };
            if owner != 0 {
                note_packet(stats, ctx, state, egress);
                if owner == direct {
                    set_hint(direct, index);
                }
            }
            return;
        }
    }

    let cookie = cookie_of(skb);
    // A listener's packets are mostly the handshakes of the connections it accepts, which
    // belong to those connections (see `handshake`).
    if state == TCP_LISTEN && handshake::hold(skb, cookie, len, packets, egress, loopback) {
        return;
    }

    if let Some(stats) = SOCK_STATS.get_ptr_mut(cookie) {
        // SAFETY: a value of a shared map, updated only through atomic adds and the
        // `flags` and `tcp_state` bytes below.
        let stats = unsafe { &mut *stats };
        add(stats, len, packets, egress, loopback);
        note_packet(stats, ctx, state, egress);
        return;
    }

    // Built in a per-CPU scratch slot: the stack is too small for it and the parsed headers.
    let Some(fresh) = SCRATCH_SOCK.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; programs do not migrate while they run.
    let fresh = unsafe { &mut *fresh };
    *fresh = SockStats::default();
    let mut h = IpHeaders::default();
    if packet::parse_ip(&SkbFrame::new(skb), &mut h) == Parsed::Ip {
        orient(fresh, &h, egress);
    }
    let (bytes, pkts) = slot(fresh, egress, loopback);
    *bytes = len;
    *pkts = packets;
    if fresh.proto == PROTO_TCP {
        fresh.tcp_state = state;
        // Which end the socket is, from what it does first: a socket that sends the SYN is
        // the client; one that was accepted from a listener finds its handshake held (or,
        // with TCP Fast Open, sends its SYN-ACK itself in SYN_RECV, which only the passive
        // end goes through); a listener is a server. Anything else (a connection older than
        // kaipo) stays unknown.
        fresh.flags = match state {
            TCP_SYN_SENT => SOCK_FLAG_CLIENT,
            TCP_SYN_RECV | TCP_LISTEN => SOCK_FLAG_SERVER,
            _ => 0,
        };
        if state != TCP_SYN_SENT && state != TCP_LISTEN && handshake::claim(fresh, &h, egress) {
            fresh.flags = SOCK_FLAG_SERVER;
        }
    } else if fresh.proto == PROTO_UDP && !egress {
        // An unconnected UDP socket that hears from a peer before it sends anything is bound
        // and waiting for clients: a server.
        // SAFETY: reading a field of the program's own context.
        if unsafe { (*skb).remote_port } == 0 {
            fresh.flags = SOCK_FLAG_SERVER;
        }
    }
    let owner_slot = owner::owner_slot(sk.cast(), false);
    let released = owner::is_released(owner_slot);
    if released {
        fresh.flags |= SOCK_FLAG_CLOSED;
    }
    if egress {
        owner::on_egress(
            skb,
            fresh.proto,
            &mut fresh.owner_seen,
            &mut fresh.owner_checked,
        );
    }
    // A new socket takes a slot when one is free and it has none yet (a socket whose slot was
    // freed keeps counting in the shared map).
    // The hint is written only where the cookie can be read directly: nothing else reads it.
    if state != TCP_LISTEN
        && !released
        && use_slots()
        && take_slot(sk.cast(), cookie, direct == cookie, fresh)
    {
        return;
    }
    let fresh: &SockStats = fresh;
    if SOCK_STATS
        .insert(cookie, fresh, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        return;
    }
    // Lost the race to another CPU inserting the same socket, or the map is full. `fresh`
    // holds this packet and any handshake it took over.
    match SOCK_STATS.get_ptr_mut(cookie) {
        // SAFETY: as above.
        Some(stats) => add_counts_atomic(unsafe { &mut *stats }, fresh),
        None => bump(counter::SOCK_MAP_FULL),
    }
}

/// What a counted packet tells of its socket besides its size: the TCP state, the process
/// sending (see `owner::on_egress`), and for an unconnected UDP socket whether it talks to more
/// than one peer. A connected socket (the kernel knows its peer port) cannot change peers.
#[inline(always)]
fn note_packet(stats: &mut SockStats, ctx: &SkBuffContext, state: u8, egress: bool) {
    let skb = ctx.skb.skb;
    if stats.proto == PROTO_TCP {
        stats.tcp_state = state;
    }
    if egress {
        owner::on_egress(
            skb,
            stats.proto,
            &mut stats.owner_seen,
            &mut stats.owner_checked,
        );
    }
    // SAFETY: reading a field of the program's own context.
    let connected = unsafe { (*skb).remote_port } != 0;
    if stats.proto == PROTO_UDP && !connected && stats.flags & SOCK_FLAG_MANY_REMOTES == 0 {
        note_remote(stats, ctx, egress);
    }
}

#[inline(always)]
fn cookie_of(skb: *mut __sk_buff) -> u64 {
    // SAFETY: the program's own context; the helper only reads the socket it points to.
    unsafe { bpf_get_socket_cookie(skb.cast()) }
}

/// Whether sockets take slots (set at load time; off, every socket counts in the shared map).
#[inline(always)]
pub fn use_slots() -> bool {
    kfunc::load_const::<{ load_const::SOCK_SLOTS_ON }>() != 0
}

/// The socket's slot reference (see `kaipo_common::slot_ref`) in its own storage, created
/// (0) when `create` is set and missing; null when there is none or the kernel could not
/// allocate it.
#[inline(always)]
pub fn ref_of(sk: *mut c_void, create: bool) -> *mut u64 {
    let flags = if create {
        u64::from(BPF_SK_STORAGE_GET_F_CREATE)
    } else {
        0
    };
    let map = core::ptr::from_ref(&SOCK_REF).cast_mut().cast::<c_void>();
    // SAFETY: `map` is the socket storage map's definition, which the loader points at the map;
    // `sk` is a socket the program was handed, and the helper checks it.
    unsafe { bpf_sk_storage_get(map, sk, core::ptr::null_mut(), flags) }.cast::<u64>()
}

/// The socket's cookie read straight from the kernel's socket (`skc_cookie`): no helper call.
/// 0 when the kernel cannot be read this way (the loader made the cast a null pointer) or the
/// socket has no cookie yet.
#[inline(always)]
fn direct_cookie(sk: *mut c_void) -> u64 {
    let id = kfunc::load_const::<{ load_const::SOCK_BTF_ID }>();
    let at = kfunc::load_const::<{ load_const::SK_COOKIE_AT }>();
    let ksk = kfunc::rdonly_cast(sk, id);
    if ksk.is_null() {
        return 0;
    }
    // SAFETY: a field of the kernel's socket at the offset its BTF gives; the verifier checks
    // the offset against the type and makes the load one that cannot fault.
    unsafe { core::ptr::read_volatile(ksk.add(at as usize).cast::<u64>()) }
}

/// The slot `SOCK_HINTS` gives for `cookie`, if it is that socket's (a slot's cookie is written
/// last when it is taken and cleared when userspace frees it, so a stale hint finds another
/// cookie or none).
#[inline(always)]
fn hinted_slot<'a>(cookie: u64) -> Option<&'a mut SockSlot> {
    if cookie == 0 {
        return None;
    }
    let hint = *SOCK_HINTS.get(cookie as u32 & (SOCK_HINT_COUNT - 1))?;
    let slot = SOCK_SLOTS.get_ptr_mut(hint.checked_sub(1)?)?;
    // SAFETY: an element of the array map; counters change only through atomic adds.
    let slot = unsafe { &mut *slot };
    // SAFETY: a field of that element, which userspace clears when it frees the slot.
    (unsafe { core::ptr::read_volatile(&raw const slot.cookie) } == cookie).then_some(slot)
}

/// Points `cookie`'s hint at slot `index`.
#[inline(always)]
fn set_hint(cookie: u64, index: u32) {
    if let Some(hint) = SOCK_HINTS.get_ptr_mut(cookie as u32 & (SOCK_HINT_COUNT - 1)) {
        // SAFETY: an element of the array map; a racing write of another socket's hint leaves
        // one of the two, and either is checked before use.
        unsafe { core::ptr::write_volatile(hint, index + 1) };
    }
}

/// The slot a reference points to and its index, if it is still the socket's (taken and not
/// freed since).
#[inline(always)]
pub fn live_slot<'a>(sref: *mut u64) -> Option<(&'a mut SockSlot, u32)> {
    if sref.is_null() {
        return None;
    }
    // SAFETY: a live storage value of this socket.
    let word = unsafe { core::ptr::read_volatile(sref) };
    if word == 0 {
        return None;
    }
    let (index, generation) = slot_of_ref(word);
    let slot = SOCK_SLOTS.get_ptr_mut(index)?;
    // SAFETY: an element of the array map; counters change only through atomic adds.
    let slot = unsafe { &mut *slot };
    // SAFETY: a field of that element, which userspace changes when it frees the slot.
    (unsafe { core::ptr::read_volatile(&raw const slot.generation) } == generation)
        .then_some((slot, index))
}

/// Gives a socket without a slot one, holding `fresh` (its first packet, oriented and
/// flagged). False when it could not (no slot free, no storage): `fresh` is then the caller's
/// to count. When another CPU gave the same socket a slot at the same moment, `fresh` is added
/// to that one and this one goes back. `hint` points the cookie's hint at the slot taken.
#[inline(always)]
fn take_slot(sk: *mut c_void, cookie: u64, hint: bool, fresh: &SockStats) -> bool {
    let mut sref = ref_of(sk, true);
    if sref.is_null() {
        // Created by another CPU between the lookup and the creation: the helper then reports
        // nothing, and a second look finds it.
        sref = ref_of(sk, false);
    }
    if sref.is_null() {
        return false;
    }
    // SAFETY: a live storage value of this socket.
    if unsafe { core::ptr::read_volatile(sref) } != 0 {
        return add_to_slot(sref, fresh);
    }
    let Ok(Some(index)) = SLOT_FREE.pop() else {
        return false;
    };
    let Some(slot) = SOCK_SLOTS.get_ptr_mut(index) else {
        return false;
    };
    // SAFETY: an element of the array map, free: no other CPU reaches it until the reference
    // below is published, and userspace reads it only once it has a cookie.
    let slot = unsafe { &mut *slot };
    slot.stats = *fresh;
    // SAFETY: as above.
    let generation = unsafe { core::ptr::read_volatile(&raw const slot.generation) };
    // SAFETY: the socket's storage value, 8-byte aligned.
    let (_, taken) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            sref,
            0,
            slot_ref(index, generation),
        )
    };
    if taken {
        // SAFETY: as above; published last.
        unsafe { core::ptr::write_volatile(&raw mut slot.cookie, cookie) };
        if hint {
            set_hint(cookie, index);
        }
        return true;
    }
    // Another CPU gave the socket a slot first: this one goes back, and `fresh` to that one.
    // The stack has room for every slot, and this one was just taken from it.
    let _ = SLOT_FREE.push(index, 0);
    add_to_slot(sref, fresh)
}

/// Adds `fresh` to the socket's slot; false when the socket has none (any longer).
#[inline(always)]
fn add_to_slot(sref: *mut u64, fresh: &SockStats) -> bool {
    match live_slot(sref) {
        Some((slot, _)) => {
            add_counts_atomic(&mut slot.stats, fresh);
            true
        }
        None => false,
    }
}

/// The state of the packet's socket as the kernel numbers TCP states (`sk_state`; a UDP socket
/// has TCP_ESTABLISHED when connected, TCP_CLOSE otherwise, so callers check the protocol).
///
/// `sk` is the socket the program runs for, a full socket; the verifier lets a cgroup_skb
/// program read `state` through it once it is known not to be null. Two loads, no helper.
#[inline(always)]
fn socket_state(skb: *mut __sk_buff) -> u8 {
    // SAFETY: reading the program's own context and the socket it points to.
    unsafe {
        let sk = (*skb).__bindgen_anon_2.sk;
        if sk.is_null() {
            return 0;
        }
        core::ptr::read_volatile(&raw const (*sk).state) as u8
    }
}

// cgroup_skb programs read packets through the load helper: the verifier here does not take the
// linear-part bound that TC and XDP programs use. Headers are read only for a new socket, a
// segmented buffer or an unconnected UDP socket, so this stays off the common path.

/// IP plus TCP or UDP header length of a segmented buffer, 0 when it cannot be read (the
/// payload bytes are then still counted, only the repeated headers are not).
///
/// The stack builds a TCP buffer it will segment with its headers in the linear part, so the
/// common shapes (IPv4 without options, IPv6 without extension headers, then TCP) are read
/// there in place, at constant offsets the verifier can check; headers outside the linear
/// part, and any other shape, take the load helper.
#[inline(always)]
fn header_len(skb: *mut __sk_buff) -> u32 {
    // SAFETY: reading fields of the program's own context.
    let (start, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    if start + 33 <= end {
        // SAFETY: offsets below 33, inside the range checked just above.
        let byte = |at: usize| unsafe { *((start + at) as *const u8) };
        if byte(0) == 0x45 && byte(9) == PROTO_TCP {
            return 20 + u32::from(byte(32) >> 4) * 4;
        }
        if start + 53 <= end && byte(0) >> 4 == 6 && byte(6) == PROTO_TCP {
            // SAFETY: offset 52, inside the range checked just above.
            let doff = unsafe { *((start + 52) as *const u8) };
            return 40 + u32::from(doff >> 4) * 4;
        }
    }
    header_len_loaded(&SkbFrame::new(skb))
}

/// [`header_len`] through the load helper, for any shape it reads.
#[inline(always)]
fn header_len_loaded(frame: &SkbFrame) -> u32 {
    let Some(first) = frame.read_u8(0) else {
        return 0;
    };
    let (ip_len, proto) = match first >> 4 {
        4 => (u32::from(first & 0x0f) * 4, frame.read_u8(9)),
        6 => (40, frame.read_u8(6)),
        _ => return 0,
    };
    match proto {
        Some(PROTO_TCP) => frame
            .read_u8(ip_len as usize + 12)
            .map_or(0, |doff| ip_len + u32::from(doff >> 4) * 4),
        Some(PROTO_UDP) => ip_len + 8,
        _ => 0,
    }
}

#[inline(always)]
pub fn slot(stats: &mut SockStats, egress: bool, loopback: bool) -> (&mut u64, &mut u64) {
    match (egress, loopback) {
        (true, false) => (&mut stats.tx_bytes, &mut stats.tx_packets),
        (false, false) => (&mut stats.rx_bytes, &mut stats.rx_packets),
        (true, true) => (&mut stats.lo_tx_bytes, &mut stats.lo_tx_packets),
        (false, true) => (&mut stats.lo_rx_bytes, &mut stats.lo_rx_packets),
    }
}

#[inline(always)]
pub fn add(stats: &mut SockStats, len: u64, packets: u64, egress: bool, loopback: bool) {
    let (bytes, pkts) = slot(stats, egress, loopback);
    // Several CPUs can carry packets of one socket at once.
    // `core::sync::atomic` offers no read-modify-write on the BPF target, so the intrinsic is used
    // directly; with the result unused LLVM emits the kernel's atomic add instruction.
    // SAFETY: both point into a live map value, 8-byte aligned.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(bytes, len);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(pkts, packets);
    }
}

/// Adds every counter of `from` to a socket's entry that no other CPU can see yet.
#[inline(always)]
pub fn add_counts(stats: &mut SockStats, from: &SockStats) {
    stats.rx_bytes += from.rx_bytes;
    stats.rx_packets += from.rx_packets;
    stats.tx_bytes += from.tx_bytes;
    stats.tx_packets += from.tx_packets;
    stats.lo_rx_bytes += from.lo_rx_bytes;
    stats.lo_rx_packets += from.lo_rx_packets;
    stats.lo_tx_bytes += from.lo_tx_bytes;
    stats.lo_tx_packets += from.lo_tx_packets;
}

/// Adds every counter of `from` to a shared entry, as [`add`] does.
#[inline(always)]
pub fn add_counts_atomic(stats: &mut SockStats, from: &SockStats) {
    xadd(&mut stats.rx_bytes, from.rx_bytes);
    xadd(&mut stats.rx_packets, from.rx_packets);
    xadd(&mut stats.tx_bytes, from.tx_bytes);
    xadd(&mut stats.tx_packets, from.tx_packets);
    xadd(&mut stats.lo_rx_bytes, from.lo_rx_bytes);
    xadd(&mut stats.lo_rx_packets, from.lo_rx_packets);
    xadd(&mut stats.lo_tx_bytes, from.lo_tx_bytes);
    xadd(&mut stats.lo_tx_packets, from.lo_tx_packets);
}

#[inline(always)]
fn xadd(to: &mut u64, n: u64) {
    if n != 0 {
        // SAFETY: `to` points into a live map value, 8-byte aligned.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(to, n) };
    }
}

/// Records the local and remote endpoint of a socket from the first packet seen.
#[inline(always)]
pub fn orient(stats: &mut SockStats, h: &IpHeaders, egress: bool) {
    stats.family = h.family;
    stats.proto = h.proto;
    if egress {
        store_addr(&mut stats.local_addr, &h.src);
        stats.local_port = h.src_port;
        store_addr(&mut stats.remote_addr, &h.dst);
        stats.remote_port = h.dst_port;
    } else {
        store_addr(&mut stats.local_addr, &h.dst);
        stats.local_port = h.dst_port;
        store_addr(&mut stats.remote_addr, &h.src);
        stats.remote_port = h.src_port;
    }
}

/// An unconnected UDP socket may talk to many peers; flag it once a second peer shows up so the
/// recorded remote is not mistaken for the only one.
///
/// This runs for every packet of such a socket (a UDP server's, typically) until a second peer
/// shows up, so the common shapes are read with one load: an IPv4 header without options or
/// an IPv6 header without extensions, followed by the ports. Anything else takes the full parse.
#[inline(always)]
fn note_remote(stats: &mut SockStats, ctx: &SkBuffContext, egress: bool) {
    let skb = ctx.skb.skb;
    // IPv4 without options in the linear part, read in place: no helper call.
    // SAFETY: reading fields of the program's own context.
    let (start, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    if start + 24 <= end {
        // SAFETY: offsets below 24, inside the range checked just above.
        let byte = |at: usize| unsafe { *((start + at) as *const u8) };
        if byte(0) == 0x45 && byte(9) == PROTO_UDP && byte(6) & 0x1f == 0 && byte(7) == 0 {
            let (at, port_at) = if egress { (16, 22) } else { (12, 20) };
            let r = &stats.remote_addr;
            let port = u16::from_be_bytes([byte(port_at), byte(port_at + 1)]);
            let same = byte(at) == r[0]
                && byte(at + 1) == r[1]
                && byte(at + 2) == r[2]
                && byte(at + 3) == r[3]
                && stats.family == FAMILY_IPV4
                && port == stats.remote_port;
            if !same {
                stats.flags |= SOCK_FLAG_MANY_REMOTES;
            }
            return;
        }
    }
    let frame = SkbFrame::new(skb);
    let mut peer = [0u8; 16];
    let port;
    if let Some(h) = frame.read::<24>(0).filter(|h| {
        // Version 4, no options, UDP, not a later fragment.
        h[0] == 0x45 && h[9] == PROTO_UDP && u16::from_be_bytes([h[6], h[7]]) & 0x1fff == 0
    }) {
        let (at, port_at) = if egress { (16, 22) } else { (12, 20) };
        peer[..4].copy_from_slice(&h[at..at + 4]);
        port = u16::from_be_bytes([h[port_at], h[port_at + 1]]);
    } else if let Some(h) = frame
        .read::<44>(0)
        .filter(|h| h[0] >> 4 == 6 && h[6] == PROTO_UDP)
    {
        let (at, port_at) = if egress { (24, 42) } else { (8, 40) };
        peer.copy_from_slice(&h[at..at + 16]);
        port = u16::from_be_bytes([h[port_at], h[port_at + 1]]);
    } else {
        let mut h = IpHeaders::default();
        if packet::parse_ip(&frame, &mut h) != Parsed::Ip {
            return;
        }
        let (addr, p) = if egress {
            (h.dst, h.dst_port)
        } else {
            (h.src, h.src_port)
        };
        store_addr(&mut peer, &addr);
        port = p;
    }
    if peer != stats.remote_addr || port != stats.remote_port {
        stats.flags |= SOCK_FLAG_MANY_REMOTES;
    }
}
