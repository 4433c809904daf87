//! The handshake of an accepted TCP connection, counted on the socket it is accepted as.
//!
//! On the server side the kernel runs the cgroup_skb programs for a connection's first packets
//! with the listening socket. The SYN and the ACK that completes the handshake pass
//! `tcp_filter` with the listener in `tcp_v4_rcv`/`tcp_v6_rcv` (the request socket is not a
//! full socket, and the accepted one does not exist yet); the SYN-ACK belongs to the request
//! socket, and `BPF_CGROUP_RUN_PROG_INET_EGRESS` runs the program with `sk_to_full_sk` of it,
//! the listener again
//! (<https://github.com/torvalds/linux/blob/v6.18/include/linux/bpf-cgroup.h>). Counted there,
//! they belong to whoever created the listener: nobody known for a listener older than kaipo
//! (it never sends or receives), and not the accepting process of a pre-forked server.
//!
//! So from a connection's SYN on, the listener's packets of that connection are held here, keyed
//! by addresses and ports, and the accepted socket takes them with its first packet (it has the
//! same addresses and ports). Finding its handshake here is also the proof that a socket is the
//! server end. A reset passing the listener hands the connection's handshake to the listener. A
//! handshake that never gets that far (a scan that sends no reset, a SYN flood, a client gone
//! before its ACK) stays until the LRU map pushes it out and is counted nowhere; the
//! `HANDSHAKE_HELD` and `HANDSHAKE_SETTLED` counters tell how many.

use core::mem::size_of;

use aya_ebpf::bindings::{__sk_buff, BPF_NOEXIST};
use kaipo_common::{counter, SockStats, FAMILY_IPV4, PROTO_TCP, SOCK_FLAG_SERVER, TCP_LISTEN};

use crate::{
    bump,
    iface::SkbFrame,
    packet::{self, Addr, Frame as _, IpHeaders, Parsed},
    sock, HANDSHAKES, SCRATCH_SOCK, SOCK_STATS,
};

const TCP_SYN: u8 = 0x02;
/// FIN, SYN, RST and ACK: of these a connection's first packet has SYN alone.
const TCP_OPENING_MASK: u8 = 0x17;
const TCP_RST: u8 = 0x04;
/// `SCRATCH_SOCK` slot for building a held handshake (slot 0 builds a new socket's entry).
const SCRATCH_HANDSHAKE: u32 = 1;

/// One connection as its server end sees it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HandshakeKey {
    family: u8,
    _pad: u8,
    local_port: u16,
    remote_port: u16,
    _pad2: u16,
    local_addr: Addr,
    remote_addr: Addr,
}
const _: () = assert!(size_of::<HandshakeKey>() == 40);

#[inline(always)]
fn key(h: &IpHeaders, egress: bool) -> HandshakeKey {
    let (local_addr, local_port, remote_addr, remote_port) = if egress {
        (h.src, h.src_port, h.dst, h.dst_port)
    } else {
        (h.dst, h.dst_port, h.src, h.src_port)
    };
    HandshakeKey {
        family: h.family,
        _pad: 0,
        local_port,
        remote_port,
        _pad2: 0,
        local_addr,
        remote_addr,
    }
}

/// Takes a packet of a listening socket when it belongs to a handshake under way. False when
/// it is the listener's own (and to be counted on it): not TCP, not part of a held handshake,
/// or a reset, which hands the held handshake to the listener first.
#[inline(always)]
pub fn hold(
    skb: *mut __sk_buff,
    cookie: u64,
    len: u64,
    packets: u64,
    egress: bool,
    loopback: bool,
) -> bool {
    let frame = SkbFrame::new(skb);
    let mut h = IpHeaders::default();
    if packet::parse_ip(&frame, &mut h) != Parsed::Ip || h.proto != PROTO_TCP {
        return false;
    }
    let key = key(&h, egress);
    let flags = tcp_flags(&frame, h.family);
    if let Some(held) = HANDSHAKES.get_ptr_mut(key) {
        // SAFETY: a live value of the map, changed only through atomic adds.
        let held = unsafe { &mut *held };
        if flags & TCP_RST == 0 {
            sock::add(held, len, packets, egress, loopback);
            return true;
        }
        give_to_listener(cookie, held);
        let _ = HANDSHAKES.remove(key);
        bump(counter::HANDSHAKE_SETTLED);
        return false;
    }
    // Only an incoming SYN starts a connection; anything else met without one stays the
    // listener's.
    if egress || flags & TCP_OPENING_MASK != TCP_SYN {
        return false;
    }
    let Some(fresh) = SCRATCH_SOCK.get_ptr_mut(SCRATCH_HANDSHAKE) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot; programs do not migrate while they run.
    let fresh = unsafe { &mut *fresh };
    *fresh = SockStats::default();
    // Oriented and flagged as the listener's entry would be, in case it ends up there.
    sock::orient(fresh, &h, egress);
    fresh.tcp_state = TCP_LISTEN;
    fresh.flags = SOCK_FLAG_SERVER;
    let (bytes, pkts) = sock::slot(fresh, egress, loopback);
    *bytes = len;
    *pkts = packets;
    let fresh: &SockStats = fresh;
    if HANDSHAKES
        .insert(key, fresh, u64::from(BPF_NOEXIST))
        .is_err()
    {
        // Another CPU's copy of the same SYN got there first: this one stays the listener's.
        return false;
    }
    bump(counter::HANDSHAKE_HELD);
    true
}

/// Adds the handshake held for the connection of a new socket (`h`, its first packet) to its
/// counters. True when there was one: the socket was accepted from a listener.
#[inline(always)]
pub fn claim(stats: &mut SockStats, h: &IpHeaders, egress: bool) -> bool {
    let key = key(h, egress);
    let Some(held) = HANDSHAKES.get_ptr(key) else {
        return false;
    };
    // SAFETY: a live value of the map. A packet of the same handshake racing on another CPU
    // (a retransmitted ACK) may be added after the copy and lost with the entry.
    let held = unsafe { &*held };
    sock::add_counts(stats, held);
    let _ = HANDSHAKES.remove(key);
    bump(counter::HANDSHAKE_SETTLED);
    true
}

/// A handshake that ends at the listener counts there after all.
#[inline(always)]
fn give_to_listener(cookie: u64, held: &SockStats) {
    if let Some(stats) = SOCK_STATS.get_ptr_mut(cookie) {
        // SAFETY: a live value of the map, changed only through atomic adds.
        sock::add_counts_atomic(unsafe { &mut *stats }, held);
        return;
    }
    // The held entry is oriented and flagged as the listener's own would be.
    if SOCK_STATS
        .insert(cookie, held, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        return;
    }
    match SOCK_STATS.get_ptr_mut(cookie) {
        // SAFETY: as above.
        Some(stats) => sock::add_counts_atomic(unsafe { &mut *stats }, held),
        None => bump(counter::SOCK_MAP_FULL),
    }
}

/// The TCP flags byte, 0 when it cannot be read. An IPv6 header followed by extension headers
/// counts as 0 too: such a packet is left to the listener.
#[inline(always)]
fn tcp_flags(frame: &SkbFrame, family: u8) -> u8 {
    let tcp = if family == FAMILY_IPV4 {
        usize::from(frame.read_u8(0).unwrap_or(0) & 0x0f) * 4
    } else if frame.read_u8(6) == Some(PROTO_TCP) {
        40
    } else {
        return 0;
    };
    frame.read_u8(tcp + 13).unwrap_or(0)
}
