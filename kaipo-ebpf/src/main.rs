//! kaipo's kernel programs.
//!
//! - `kaipo_tc_ingress` and `kaipo_tc_egress` count bytes and packets per interface and per
//!   flow in per-CPU maps; `kaipo_xdp` counts ingress instead when the user asks for XDP.
//! - `kaipo_sock_ingress` / `kaipo_sock_egress` (cgroup_skb at the cgroup v2 root) count IP-layer
//!   bytes per socket cookie, for sockets of every network namespace, with each TCP socket's
//!   state and role; a listener's handshakes go to the sockets it accepts (`handshake`).
//! - `kaipo_sock_create` records which process created each socket and `kaipo_sock_egress` which
//!   process sends on it, in that process's context; `kaipo_sock_release` reports a socket's
//!   counters at close (and marks its entry closed, so a close event lost to a full ring buffer
//!   leaves nothing behind) and `kaipo_proc_exit` a process's exit. These go to userspace
//!   through the ring buffer, once per socket and owner, never per packet.
//! - A socket's counters sit in a slot of the `SOCK_SLOTS` array, which the packet path finds
//!   from the socket's cookie, read straight from the kernel's socket, and `SOCK_HINTS`, or
//!   else through the socket's own storage (`SOCK_REF`) with one helper call; sockets without
//!   a slot (listeners, and any past the slots) count in the `SOCK_STATS` hash by cookie.
//! - `kaipo_sock_ingress` also copies the rare packets a DNS client socket receives (remote port
//!   53) to their own ring buffer, `DNS_EVENTS`, for names (`dns`).
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic adds on map values need core::intrinsics on the BPF target"
)]

mod dns;
mod handshake;
mod iface;
mod kfunc;
mod owner;
mod packet;
mod sock;

use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, btf_tracepoint, cgroup_skb, cgroup_sock, classifier, map, xdp},
    maps::{
        Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf, Stack,
    },
    programs::{BtfTracePointContext, SkBuffContext, SockContext, TcContext, XdpContext},
};
use kaipo_common::{
    counter, load_const, FlowCounters, FlowKey, FlowSlot, IfaceCounters, IfaceSlot, OwnerSpill,
    SockSlot, SockStats, DNS_RINGBUF_BYTES, FLOW_CACHE_SLOTS, IFACE_SLOTS, MAX_FLOWS,
    MAX_HANDSHAKES, MAX_IFACES, MAX_OWNER_SPILL, MAX_SOCKETS, RINGBUF_BYTES, SOCK_HINT_COUNT,
    SOCK_SLOT_COUNT,
};

/// Interface counters by CPU and slot (see `kaipo_common::IfaceSlot`): CPU `c`'s slot for
/// `ifindex` at `c * IFACE_SLOTS + ifindex % IFACE_SLOTS`, counting for the interface whose
/// ifindex it carries. An array lookup costs the program a bounds check and an add, where a
/// hash lookup costs a helper call and a hash. Userspace sizes it at load time, `IFACE_SLOTS`
/// per CPU; a CPU past its size counts in `IFACE_STATS_HIGH`.
#[map]
static IFACE_STATS: Array<IfaceSlot> =
    Array::with_max_entries(IFACE_SLOTS, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Interfaces without a slot of `IFACE_STATS` (another monitored interface holds theirs).
#[map]
static IFACE_STATS_HIGH: PerCpuHashMap<u32, IfaceCounters> =
    PerCpuHashMap::with_max_entries(MAX_IFACES, 0);

/// Flows are many and come and go; the LRU map makes room for new ones by evicting the least
/// recently used, and userspace derives the eviction count from `counter::FLOW_CREATED`.
#[map]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowCounters> =
    LruPerCpuHashMap::with_max_entries(MAX_FLOWS, 0);

/// The per-CPU flow cache in front of `FLOWS` (see `kaipo_common::FlowSlot`): one run of
/// slots per CPU, CPU `c`'s at `c << FLOW_CACHE_SHIFT`, each written only by its own CPU.
/// A plain array rather than a per-CPU one so that userspace can map it and read every slot
/// with a memory copy instead of a system call that copies each slot of each CPU (which cost an
/// idle kaipo most of its time). Userspace sets the slots per CPU, a power of two, at load time,
/// with `FLOW_CACHE_MASK` and `FLOW_CACHE_SHIFT`, and the map's size to that times the CPUs.
#[map]
static FLOW_CACHE: Array<FlowSlot> =
    Array::with_max_entries(FLOW_CACHE_SLOTS, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Shared (not per-CPU) so that the release hook can report a socket's final counters; updated
/// with atomic adds. Entries are allocated as sockets appear, not all at load: most hosts
/// hold far fewer sockets than the map's capacity.
#[map]
static SOCK_STATS: HashMap<u64, SockStats> =
    HashMap::with_max_entries(MAX_SOCKETS, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Owner reports the ring buffer had no room for, by socket cookie; userspace empties it at
/// every interval. Preallocated: the packet path writes it.
#[map]
static OWNER_SPILL: HashMap<u64, OwnerSpill> = HashMap::with_max_entries(MAX_OWNER_SPILL, 0);

/// The tgid last reported as a socket's owner, kept in the socket itself (socket-local storage,
/// freed by the kernel with the socket), so an owner is sent once per socket and owner rather
/// than once per packet, and the check costs no hash lookup.
#[btf_map]
static OWNER_OF: SkStorage<u32> = SkStorage::new();

/// Socket counters by slot (see `kaipo_common::SockSlot`): an array, so the packet path
/// reaches them with a bounds check instead of a hash lookup. Userspace maps it to read it and
/// to free slots; sized at load time.
#[map]
static SOCK_SLOTS: Array<SockSlot> =
    Array::with_max_entries(SOCK_SLOT_COUNT, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Free slot indexes, filled by userspace at start and as it frees slots; a stack, so the
/// slots in use stay packed at the low end.
#[map]
static SLOT_FREE: Stack<u32> = Stack::with_max_entries(SOCK_SLOT_COUNT, 0);

/// Each socket's slot (`kaipo_common::slot_ref`), in the socket's own storage.
#[btf_map]
static SOCK_REF: SkStorage<u64> = SkStorage::new();

/// The slot each socket cookie last led to (see `kaipo_common::SOCK_HINT_COUNT`): the packet
/// path's way to a socket's slot without a helper call.
#[map]
static SOCK_HINTS: Array<u32> = Array::with_max_entries(SOCK_HINT_COUNT, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);

/// DNS answers copied for names; apart from `EVENTS` so that a burst of answers never costs a
/// lifecycle event.
#[map]
static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(DNS_RINGBUF_BYTES, 0);

/// Handshakes of connections a listener has not handed to an accepted socket yet, counted as
/// that socket's entry will count them (see `handshake`). Shared: the accepted socket's first
/// packet may be handled on another CPU than its SYN.
#[map]
static HANDSHAKES: LruHashMap<handshake::HandshakeKey, SockStats> =
    LruHashMap::with_max_entries(MAX_HANDSHAKES, 0);

/// Per-CPU room to build a new socket entry (slot 0) and a held handshake (slot 1), too large
/// for the stack next to the parsed headers.
#[map]
static SCRATCH_SOCK: PerCpuArray<SockStats> = PerCpuArray::with_max_entries(2, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Slots per CPU in `FLOW_CACHE` - 1 (a load-time constant, see `kaipo_common::load_const`).
#[inline(always)]
fn flow_cache_mask() -> u32 {
    kfunc::load_const::<{ load_const::FLOW_CACHE_MASK }>()
}

/// log2 of the slots per CPU: where a CPU's run of slots starts, as a shift of its number.
#[inline(always)]
fn flow_cache_shift() -> u32 {
    kfunc::load_const::<{ load_const::FLOW_CACHE_SHIFT }>()
}

/// How long (in jiffies) a cached flow must have been quiet before another flow that meets it
/// in its slot takes the slot over.
#[inline(always)]
fn flow_slot_age() -> u32 {
    kfunc::load_const::<{ load_const::FLOW_SLOT_AGE }>()
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot of this CPU; programs do not migrate while running.
        unsafe { *value += 1 };
    }
}

/// False turns per-flow accounting off and leaves only interface counters.
#[inline(always)]
fn track_flows() -> bool {
    kfunc::load_const::<{ load_const::TRACK_FLOWS }>() != 0
}

#[xdp(frags)]
pub fn kaipo_xdp(ctx: XdpContext) -> u32 {
    iface::on_ingress(&ctx);
    aya_ebpf::bindings::xdp_action::XDP_PASS
}

/// Ingress counting, by default; also where XDP was asked for but cannot attach (another program
/// owns the interface's XDP hook): TCX lets several programs share a hook.
#[classifier]
pub fn kaipo_tc_ingress(ctx: TcContext) -> i32 {
    iface::on_tc_ingress(&ctx);
    // TC_ACT_UNSPEC (TCX_NEXT).
    -1
}

#[classifier]
pub fn kaipo_tc_egress(ctx: TcContext) -> i32 {
    iface::on_egress(&ctx);
    // TC_ACT_UNSPEC, which TCX calls TCX_NEXT: let the next program or the default action decide.
    -1
}

// Inlined into the entry point the macro wraps it in: a call costs a return, which this
// machine's mitigations make dear.
#[cgroup_skb]
#[inline(always)]
pub fn kaipo_sock_ingress(ctx: SkBuffContext) -> i32 {
    sock::count(&ctx, false);
    1
}

#[cgroup_skb]
#[inline(always)]
pub fn kaipo_sock_egress(ctx: SkBuffContext) -> i32 {
    sock::count(&ctx, true);
    1
}

#[cgroup_sock(sock_create)]
pub fn kaipo_sock_create(ctx: SockContext) -> i32 {
    owner::on_create(&ctx);
    1
}

#[cgroup_sock(sock_release)]
pub fn kaipo_sock_release(ctx: SockContext) -> i32 {
    owner::on_release(&ctx);
    1
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn kaipo_proc_exit(_ctx: BtfTracePointContext) -> i32 {
    owner::on_exit();
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
