//! Socket ownership and lifecycle events.
//!
//! Packets are counted per socket, mostly in softirq context, where the owning process is
//! unknown. Socket creation runs in the creator's context, and so does every packet a process
//! sends itself (see [`on_egress`]); those tie the socket cookie to the process. The socket's own
//! storage (`OWNER_OF`) remembers the owner last reported, so there is one event per socket and
//! owner: a socket reported once stays quiet until another process (a forked child, a process
//! handed the descriptor) sends on it.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_jiffies64,
            bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_sk_storage_get, bpf_skc_to_tcp_sock,
        },
    },
    programs::SockContext,
};
use kaipo_common::{
    counter, load_const, Event, OwnerSpill, SockStats, EVENT_PROC_EXIT, EVENT_SOCK_CLOSE,
    EVENT_SOCK_OWNER, FAMILY_IPV4, FAMILY_IPV6, OWNER_FROM_CLOSE, OWNER_FROM_CREATE,
    OWNER_FROM_SEND, PROTO_TCP, SOCK_FLAG_CLOSED,
};

use aya_ebpf::bindings::BPF_SK_STORAGE_GET_F_CREATE;

use crate::{bump, kfunc, sock, EVENTS, OWNER_OF, OWNER_SPILL, SOCK_STATS};

pub fn on_create(ctx: &SockContext) {
    let sock = ctx.sock;
    // SAFETY: the program's own context.
    let family = unsafe { (*sock).family };
    if family != u32::from(FAMILY_IPV4) && family != u32::from(FAMILY_IPV6) {
        return;
    }
    // SAFETY: helpers reading the context socket.
    let (cookie, netns) = unsafe {
        (
            bpf_get_socket_cookie(sock.cast()),
            bpf_get_netns_cookie(sock.cast()),
        )
    };
    record_owner(
        owner_slot(sock.cast(), true),
        cookie,
        OWNER_FROM_CREATE,
        netns,
    );
}

/// The socket's `OWNER_OF` slot, created (zero) when `create` is set and missing; null when
/// there is none or the kernel could not allocate it.
#[inline(always)]
pub fn owner_slot(sk: *mut c_void, create: bool) -> *mut u32 {
    let flags = if create {
        u64::from(BPF_SK_STORAGE_GET_F_CREATE)
    } else {
        0
    };
    let map = ptr::from_ref(&OWNER_OF).cast_mut().cast::<c_void>();
    // SAFETY: `map` is the socket storage map's definition, which the loader points at the map;
    // `sk` is the program's own socket, and the helper checks it.
    unsafe { bpf_sk_storage_get(map, sk, ptr::null_mut(), flags) }.cast::<u32>()
}

/// Learns a socket's owner from a packet it sends, in place of a hook on every send and
/// receive call. `proto` is the socket's protocol and `seen` its counters' copy of the owner
/// last confirmed (see `SockStats::owner_seen`), which this updates.
///
/// A user's UDP socket sends only from its `sendmsg` call, so the current process is the
/// sender. TCP also sends from softirq (ACK-clocked data, retransmits, timers), where the
/// current task is whoever was interrupted; but while a process holds the socket's lock
/// (`sendmsg`, the ACKs `recvmsg` sends, the backlog it processes on release) the stack defers
/// every softirq transmit of that socket, so a segment sent with the lock owned is the owner's.
/// A UDP socket with no owner slot was made before kaipo or by the kernel (a tunnel's socket
/// sends from any context): userspace finds those owners from the descriptor tables.
///
/// A packet of the owner already confirmed costs one helper call and a comparison. A UDP
/// socket is looked at once per jiffy (`checked`, 1-4 ms by the kernel's HZ), not per packet:
/// under a flood the helper call was a fifth of the program's time. Another process sending
/// on it is then reported up to a jiffy after its first packet; its bytes are counted all the
/// same, and userspace gives an interval's bytes of a socket to the owner reported last.
#[inline(always)]
pub fn on_egress(skb: *mut __sk_buff, proto: u8, seen: &mut u32, checked: &mut u32) {
    let tcp = proto == PROTO_TCP;
    if !tcp {
        // SAFETY: the helper takes no arguments; the kernel inlines it as a load of `jiffies`.
        let now = unsafe { bpf_jiffies64() } as u32;
        if now == *checked {
            return;
        }
        *checked = now;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // 0: the idle task (softirq work on an idle CPU).
    if tgid == *seen || tgid == 0 {
        return;
    }
    // SAFETY: reading the program's own context.
    let sk = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    // Checked first: a TCP segment sent from softirq, the common case here, is settled by it.
    if tcp && !lock_owned(sk.cast()) {
        return;
    }
    let mut slot = owner_slot(sk.cast(), false);
    // SAFETY: a live storage slot of this socket.
    let known = if slot.is_null() { 0 } else { unsafe { *slot } };
    if known == RELEASED {
        return;
    }
    if known != tgid {
        if slot.is_null() {
            if !tcp {
                return;
            }
            slot = owner_slot(sk.cast(), true);
        }
        // SAFETY: the program's own context; the helper only reads the socket it points to.
        let cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
        if !record_owner(slot, cookie, OWNER_FROM_SEND, 0) {
            return;
        }
    }
    *seen = tgid;
}

/// Whether a process holds the TCP socket's lock (`sk->sk_lock.owned`), read at the offset
/// userspace found in the kernel's BTF; false when it found none.
#[inline(always)]
fn lock_owned(sk: *mut c_void) -> bool {
    let at = kfunc::load_const::<{ load_const::SK_LOCK_OWNED_AT }>();
    if at == 0 {
        return false;
    }
    // Read in place where the kernel lets the socket be cast to its own type (see
    // `sock::direct_cookie`): a load instead of two helper calls.
    let id = kfunc::load_const::<{ load_const::SOCK_BTF_ID }>();
    let ksk = kfunc::rdonly_cast(sk, id);
    if !ksk.is_null() {
        // SAFETY: a field of the kernel's socket at the offset its BTF gives; the verifier
        // checks the offset against the type and makes the load one that cannot fault.
        return unsafe { core::ptr::read_volatile(ksk.add(at as usize).cast::<u32>()) } != 0;
    }
    // SAFETY: the helper checks the socket; its result is a kernel pointer the verifier
    // types by BTF, read here only through the probe helper, which cannot fault.
    unsafe {
        let tcp = bpf_skc_to_tcp_sock(sk);
        if tcp.is_null() {
            return false;
        }
        let mut owned: u32 = 0;
        let from = tcp.cast::<u8>().add(at as usize).cast::<c_void>();
        bpf_probe_read_kernel((&raw mut owned).cast(), 4, from) == 0 && owned != 0
    }
}

/// Reports the current process as the socket's owner and remembers it in the socket's slot;
/// false when it could not do both.
#[inline(always)]
fn record_owner(slot: *mut u32, cookie: u64, source: u32, netns_cookie: u64) -> bool {
    if !report_owner(cookie, source, netns_cookie) {
        // Not reported, so not remembered either: the next packet tries again.
        return false;
    }
    if slot.is_null() {
        // No storage for this socket: it will be reported again on its next packet.
        bump(counter::OWNER_MAP_FULL);
        return false;
    }
    // SAFETY: a live storage slot of this socket.
    unsafe { *slot = (bpf_get_current_pid_tgid() >> 32) as u32 };
    true
}

/// Reports the current process as the socket's owner; false (and counted) when the report
/// found no room. With the ring buffer full, the report goes to `OWNER_SPILL`, which userspace
/// reads at every interval: a socket used once and closed during a burst still gets its owner.
#[inline(always)]
fn report_owner(cookie: u64, source: u32, netns_cookie: u64) -> bool {
    let reported = emit(EVENT_SOCK_OWNER, cookie, source, netns_cookie, None, 0)
        || spill(cookie, source, netns_cookie);
    if !reported {
        bump(counter::OWNER_MAP_FULL);
    }
    reported
}

pub fn on_release(ctx: &SockContext) {
    let sock = ctx.sock;
    // SAFETY: helper reading the context socket, and fields of the program's own context.
    let (cookie, protocol, state) = unsafe {
        (
            bpf_get_socket_cookie(sock.cast()),
            (*sock).protocol,
            (*sock).state,
        )
    };
    // The hook runs as the socket is released, before TCP's close changes its state
    // (`inet_release`), so this is the state the owner left it in.
    let tcp_state = if protocol == u32::from(PROTO_TCP) {
        state as u8
    } else {
        0
    };
    // The socket's slot, if it has one, else its shared entry.
    let slot = if sock::use_slots() {
        sock::live_slot(sock::ref_of(sock.cast(), false))
    } else {
        None
    };
    let stats = match slot {
        Some((slot, _)) => Some(&raw mut slot.stats),
        None => SOCK_STATS.get_ptr_mut(cookie),
    };
    // The entry itself says the socket is closed, whether or not the close event below finds
    // room in the ring buffer: userspace removes entries so marked once they have gone quiet,
    // so a full ring buffer cannot leave them in the map for good. A packet path racing on
    // `flags` (an unconnected UDP socket's second peer) could drop the bit; the close event
    // and the sweep of idle entries (see README "How it counts") cover that case.
    if let Some(stats) = stats {
        // SAFETY: a live value of the shared map; one byte written, the counters untouched.
        unsafe {
            let flags = &raw mut (*stats).flags;
            core::ptr::write_volatile(flags, core::ptr::read_volatile(flags) | SOCK_FLAG_CLOSED);
        }
    }
    let stats = stats.map(|s| s.cast_const());
    // Created if missing (the close path may cost more than the packet path): the slot then
    // says "released" to a packet that comes after userspace has dropped the entry.
    let slot = owner_slot(sock.cast(), true);
    // SAFETY: a live storage slot of this socket.
    let mut owned = !slot.is_null() && unsafe { *slot } != 0;
    // A socket with traffic and no owner reported yet (older than kaipo, or accepted, and
    // never sent on by a process) is released by the process that held it last, in its own
    // context: that process is its owner, told before the close so that the bytes still
    // waiting for an owner find it.
    if !owned && stats.is_some() {
        // SAFETY: helper reading the context socket.
        let netns = unsafe { bpf_get_netns_cookie(sock.cast()) };
        owned = report_owner(cookie, OWNER_FROM_CLOSE, netns);
    }
    // A socket with counters or a reported owner gets a close event. Its storage slot goes with
    // the socket. The counters stay: a closed TCP socket still sends its last segments and FIN,
    // which keep adding to the same entry; userspace removes the entry once it has gone quiet.
    if stats.is_some() || owned {
        emit(EVENT_SOCK_CLOSE, cookie, 0, 0, stats, tcp_state);
    }
    if !slot.is_null() {
        // The packets that follow a release (a TCP socket's FIN and last segments) are sent
        // by the closing process or the stack, never by a new owner: none is reported.
        // SAFETY: as above.
        unsafe { *slot = RELEASED };
    }
}

/// Keeps an owner report in `OWNER_SPILL`; false when the map is full too.
#[inline(always)]
fn spill(cookie: u64, source: u32, netns_cookie: u64) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helpers without arguments that are safe to call from any program context.
    let (cgroup_id, ts_ns) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_ns()) };
    let report = OwnerSpill {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        source,
        _pad: 0,
        cgroup_id,
        netns_cookie,
        ts_ns,
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    OWNER_SPILL.insert(cookie, report, 0).is_ok()
}

/// What a socket's `OWNER_OF` slot holds once the socket was released; no process has this
/// tgid.
const RELEASED: u32 = u32::MAX;

/// Whether the socket with this `OWNER_OF` slot (null: none) was released already: a closing
/// TCP socket still exchanges its last segments, and when one comes after userspace dropped the
/// socket's entry it starts a new entry, which must then be marked closed too or it would stay
/// for good. Checked on the path that creates an entry only.
#[inline(always)]
pub fn is_released(slot: *mut u32) -> bool {
    // SAFETY: a live storage slot of this socket.
    !slot.is_null() && unsafe { *slot } == RELEASED
}

pub fn on_exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Threads exit too; only the thread-group leader's exit ends the process.
    if pid_tgid >> 32 != pid_tgid & 0xffff_ffff {
        return;
    }
    emit(EVENT_PROC_EXIT, 0, 0, 0, None, 0);
}

/// Writes one event about the current task; `tcp_state`, when not 0, replaces the state in the
/// copied `stats`. Returns false (and counts it) when the ring buffer is full.
#[inline(always)]
fn emit(
    kind: u32,
    cookie: u64,
    source: u32,
    netns_cookie: u64,
    stats: Option<*const SockStats>,
    tcp_state: u8,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::RINGBUF_FULL);
        return false;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helpers without arguments that are safe to call from any program context.
    let (cgroup_id, ts_ns) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_ns()) };
    // Filled in place: an `Event` is too large to build on the BPF stack and copy.
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points to a reserved, exclusively owned record of `size_of::<Event>()`
    // bytes; every field is written before the record is submitted. `stats` points to a live
    // map value, copied while the map entry still exists (a packet racing with release can at
    // worst be left out of the final figures and is then counted under a fresh entry).
    unsafe {
        (*event).kind = kind;
        (*event).tgid = (pid_tgid >> 32) as u32;
        (*event).tid = pid_tgid as u32;
        (*event).uid = uid_gid as u32;
        (*event).gid = (uid_gid >> 32) as u32;
        (*event).source = source;
        (*event).cookie = cookie;
        (*event).cgroup_id = cgroup_id;
        (*event).netns_cookie = netns_cookie;
        (*event).ts_ns = ts_ns;
        (*event).comm = bpf_get_current_comm().unwrap_or_default();
        match stats {
            Some(stats) => (*event).stats = *stats,
            None => (*event).stats = SockStats::default(),
        }
        if tcp_state != 0 {
            (*event).stats.tcp_state = tcp_state;
        }
    }
    entry.submit(0);
    true
}
