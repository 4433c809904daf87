//! Types shared by kaipo's kernel programs and its userspace.
//!
//! Every struct here crosses the kernel boundary as raw bytes, so each one is `#[repr(C)]`, spells
//! out its padding, and has its size pinned by a compile-time assertion. Map keys in particular
//! must never contain uninitialised padding: a key with garbage in a hole hashes differently and
//! the lookup misses.
#![no_std]

use core::mem::size_of;

/// `AF_INET` and `AF_INET6` as the kernel numbers them; the values a [`FlowKey`] and a
/// [`SockStats`] carry in `family`.
pub const FAMILY_IPV4: u8 = 2;
pub const FAMILY_IPV6: u8 = 10;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// The loopback device has this ifindex in every network namespace (`LOOPBACK_IFINDEX` in the
/// kernel), which lets the socket programs tell loopback traffic apart without a lookup.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// Per-interface counters, one per CPU, keyed by ifindex. XDP fills the `rx_` half, the egress
/// classifier the `tx_` half. Bytes are link-layer frame lengths, as the kernel's own interface
/// statistics count them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Bytes of frames that carried neither IPv4 nor IPv6 (ARP, LLDP, ...): counted in the
    /// totals above as well, and in no flow.
    pub rx_non_ip_bytes: u64,
    pub tx_non_ip_bytes: u64,
    /// Bytes of frames whose headers were cut short or inconsistent: counted in the totals
    /// above as well, and in no flow. With the flows, these add up to the totals, which lets
    /// userspace split an interface's bytes without comparing two reads taken apart.
    pub rx_malformed_bytes: u64,
    pub tx_malformed_bytes: u64,
}
const _: () = assert!(size_of::<IfaceCounters>() == 64);

/// One interface's counters on one CPU, with the interface they belong to: an element of
/// `IFACE_STATS`, which holds [`IFACE_SLOTS`] of them per CPU, CPU `c`'s from
/// `c * IFACE_SLOTS`. The map is mappable, so the kernel starts its first element on a page
/// and each of these on a cache line of its own: a frame of a monitored interface reads the
/// tag and adds to two counters of one line, where a tag array beside a per-CPU array cost it
/// three (the tag's, the per-CPU pointer's and the counters'). Only the last counter (bytes of
/// malformed frames sent), which few frames touch, lies in the second line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSlot {
    /// The ifindex whose counters these are (0: none). Userspace writes it into every CPU's
    /// copy of the slot, with the counters zeroed, before it attaches to the interface.
    pub ifindex: u32,
    pub _pad: u32,
    pub counters: IfaceCounters,
    pub _spare: [u64; 7],
}
const _: () = assert!(size_of::<IfaceSlot>() == 128);

impl IfaceCounters {
    /// Field-by-field sum, for adding up per-CPU values.
    pub fn sum(&self, other: &Self) -> Self {
        Self {
            rx_bytes: self.rx_bytes + other.rx_bytes,
            rx_packets: self.rx_packets + other.rx_packets,
            tx_bytes: self.tx_bytes + other.tx_bytes,
            tx_packets: self.tx_packets + other.tx_packets,
            rx_non_ip_bytes: self.rx_non_ip_bytes + other.rx_non_ip_bytes,
            tx_non_ip_bytes: self.tx_non_ip_bytes + other.tx_non_ip_bytes,
            rx_malformed_bytes: self.rx_malformed_bytes + other.rx_malformed_bytes,
            tx_malformed_bytes: self.tx_malformed_bytes + other.tx_malformed_bytes,
        }
    }
}

/// One flow as seen on one interface, oriented from the host's side: for a received frame the
/// destination is `local`, for a sent frame the source is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    /// 802.1Q VLAN id of the outermost tag, 0 when untagged.
    pub vlan: u16,
    pub proto: u8,
    pub family: u8,
    /// Ports in host byte order; 0 for protocols without ports and for non-first fragments.
    pub local_port: u16,
    pub remote_port: u16,
    /// IPv4 addresses use the first four bytes, the rest stays zero.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}
const _: () = assert!(size_of::<FlowKey>() == 44);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}
const _: () = assert!(size_of::<FlowCounters>() == 32);

/// One slot of the per-CPU flow cache (`FLOW_CACHE`), which sits in front of the `FLOWS` hash:
/// a flow that holds a slot on a CPU is counted there with an array lookup and a compare, with
/// no hash-map lookup. Slots come in sets of two (`i` and `i ^ 1`, `i` from [`flow_slot`]); a
/// flow that finds both held by flows that were recently active is counted in `FLOWS`; when one
/// of them went quiet, the flow quiet for longer hands its slot over, its counts first added to
/// its `FLOWS` entry. So every packet is counted exactly once, in one place, and a flow's counts
/// are the sum of its `FLOWS` entry and the slots it holds.
///
/// Only the programs on the slot's CPU write it (they do not nest), so it needs no atomics.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    pub key: FlowKey,
    /// `FLOW_SLOT_EMPTY`, or the direction counted (`FLOW_SLOT_RX`/`FLOW_SLOT_TX`) in the low
    /// two bits and the low 30 bits of the kernel's `jiffies` at the last packet above them.
    pub state: u32,
    pub bytes: u64,
    pub packets: u64,
}
const _: () = assert!(size_of::<FlowSlot>() == 64);

pub const FLOW_SLOT_EMPTY: u32 = 0;
pub const FLOW_SLOT_RX: u32 = 1;
pub const FLOW_SLOT_TX: u32 = 2;
pub const FLOW_SLOT_DIR_MASK: u32 = 3;

impl FlowSlot {
    /// The direction this slot counts (`FLOW_SLOT_RX`/`FLOW_SLOT_TX`), or `FLOW_SLOT_EMPTY`.
    pub fn direction(&self) -> u32 {
        self.state & FLOW_SLOT_DIR_MASK
    }

    /// The slot's counts as flow counters of its direction; zero when empty.
    pub fn counters(&self) -> FlowCounters {
        let mut c = FlowCounters::default();
        match self.direction() {
            FLOW_SLOT_RX => (c.rx_bytes, c.rx_packets) = (self.bytes, self.packets),
            FLOW_SLOT_TX => (c.tx_bytes, c.tx_packets) = (self.bytes, self.packets),
            _ => {}
        }
        c
    }
}

/// Slots per CPU in the flow cache unless userspace sets another power of two at load time.
pub const FLOW_CACHE_SLOTS: u32 = 16_384;

/// A [`FlowKey`]'s 44 bytes as six little-endian 64-bit words (the last one's upper half zero):
/// the form the kernel programs build keys in, hash and compare.
pub fn flow_key_words(key: &FlowKey) -> [u64; 6] {
    let mut bytes = [0u8; 48];
    // SAFETY: `FlowKey` is 44 bytes of plain integers with no padding.
    let src = unsafe { &*(key as *const FlowKey).cast::<[u8; 44]>() };
    bytes[..44].copy_from_slice(src);
    let mut words = [0u64; 6];
    for (i, word) in words.iter_mut().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        *word = u64::from_le_bytes(w);
    }
    words
}

/// The first slot of the set a flow counted in direction `dir` belongs to (the other is this
/// one `^ 1`), from its key as [`flow_key_words`] gives it: the top half of a multiplicative
/// hash, masked by `mask` (slots - 1, slots a power of two). Shared by the kernel programs and
/// by the tests and benchmarks that need flows to meet in one set.
#[inline(always)]
pub fn flow_slot_words(q: &[u64; 6], dir: u32, mask: u32) -> u32 {
    // Independent multiplies by distinct odd constants: short dependency chains.
    let h = q[0].wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ q[1].wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ q[2].wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ q[3].wrapping_mul(0x85eb_ca77_c2b2_ae63)
        ^ q[4].wrapping_mul(0x27d4_eb2f_1656_67c5)
        ^ ((q[5] & 0xffff_ffff) | (u64::from(dir) << 32)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    ((h >> 32) as u32) & mask
}

/// [`flow_slot_words`] for a key.
pub fn flow_slot(key: &FlowKey, dir: u32, mask: u32) -> u32 {
    flow_slot_words(&flow_key_words(key), dir, mask)
}

/// `SockStats::flags`: an unconnected socket exchanged packets with more than one remote
/// endpoint, so `remote_addr`/`remote_port` only name the first.
pub const SOCK_FLAG_MANY_REMOTES: u8 = 1;
/// `SockStats::flags`: the socket is the server side of its connection (accepted from a
/// listener, or listening); services are then named by its local port.
pub const SOCK_FLAG_SERVER: u8 = 2;
/// `SockStats::flags`: the socket is a client (it sent the connection's first SYN).
pub const SOCK_FLAG_CLIENT: u8 = 4;
/// `SockStats::flags`: the socket was released (`cgroup/sock_release` ran). Set in the entry
/// itself, not only sent in the close event: when the ring buffer is full the event is lost,
/// and this bit is then how userspace learns that the entry may go once it is quiet.
pub const SOCK_FLAG_CLOSED: u8 = 8;

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`): the ones the socket
/// programs act on.
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;

/// IP-layer counters of one socket, keyed by socket cookie. Bytes are counted from the IP header
/// onward; loopback traffic is kept apart so a consumer can leave it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockStats {
    // What the packet path reads or writes for every packet of a socket comes first, so that in
    // a `SockSlot` it shares one 64-byte line with the slot's cookie and the sent and received
    // counters (see `SockSlot`).
    pub family: u8,
    pub proto: u8,
    pub flags: u8,
    /// TCP state as the kernel numbers it (`TCP_ESTABLISHED` = 1 ... `TCP_NEW_SYN_RECV` =
    /// 12) at the socket's last packet; 0 for other protocols or when unknown.
    pub tcp_state: u8,
    pub local_port: u16,
    pub remote_port: u16,
    /// The packet path's copy of the owner last confirmed for this socket (the tgid its owner
    /// slot holds), so that a packet its owner sends costs one comparison instead of a socket
    /// storage lookup; 0 until one is. Owners reach userspace through events, not this field.
    pub owner_seen: u32,
    /// The jiffy (low 32 bits) in which the packet path last looked at who sends on this UDP
    /// socket: it looks once per jiffy, not per packet (see `owner::on_egress` in kaipo-ebpf).
    pub owner_checked: u32,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub lo_rx_bytes: u64,
    pub lo_rx_packets: u64,
    pub lo_tx_bytes: u64,
    pub lo_tx_packets: u64,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}
const _: () = assert!(size_of::<SockStats>() == 112);

/// One socket's counters in `SOCK_SLOTS`, an array the packet path reaches without a hash
/// lookup: the socket's own storage (`SOCK_REF`) holds its slot's index and generation
/// ([`slot_ref`]). A slot outlives its socket, so the counters stay readable until userspace
/// has read them and frees the slot (`cookie` back to 0, `generation` one up, the index back
/// on the `SLOT_FREE` stack); a packet of a socket whose slot was freed meanwhile finds the
/// generation changed and counts in `SOCK_STATS`. Userspace maps the array and reads it in
/// place (the kernel puts an mmapable array's first value at a page boundary, so each slot
/// starts a 64-byte line). A packet that is not on loopback touches the slot's first line
/// only: the cookie, the fields `SockStats` puts first and its sent and received counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockSlot {
    /// The socket's cookie; 0 while the slot is free or being taken. Written last when a slot
    /// is taken, so that a slot with a cookie has its endpoints set.
    pub cookie: u64,
    pub stats: SockStats,
    pub generation: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<SockSlot>() == 128);

/// Slots of `SOCK_SLOTS` (4 MiB): sockets past them count in `SOCK_STATS`.
pub const SOCK_SLOT_COUNT: u32 = 32_768;

/// What a socket's `SOCK_REF` storage holds: its slot's index + 1 (0: none) and the slot's
/// generation when it was taken, in one word so that taking a slot is one compare-and-swap.
#[inline(always)]
pub const fn slot_ref(index: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | (index as u64 + 1)
}

/// Entries of `SOCK_HINTS` (512 KiB: the kernel keeps an array's values 8 bytes apart): which
/// slot a socket cookie last led to, at `cookie % SOCK_HINT_COUNT` (index + 1; 0: none). The
/// packet path reads the socket's cookie straight from the kernel's socket (see
/// [`PLACEHOLDER_RDONLY_CAST`]), looks here, and takes the slot if the slot's own `cookie` is
/// the socket's: no helper call. Any other outcome (no hint, another socket's, a freed slot)
/// takes the path through the socket's storage, which writes the hint again. Cookies count up,
/// a batch per CPU, so live sockets seldom share one.
pub const SOCK_HINT_COUNT: u32 = 65_536;

/// The helper number of a call the eBPF object makes in place of the kernel function
/// `bpf_rdonly_cast` (kernel 6.2 and later), which turns the context's socket into a pointer
/// the program may read any field of (the cookie, here) without a helper call. Userspace
/// rewrites every such call before loading: into the kernel-function call, with the function's
/// id in the running kernel's BTF, or into `r0 = 0` (a null pointer, which makes the program
/// take the helper path) on kernels without it. No kernel has a helper of this number.
pub const PLACEHOLDER_RDONLY_CAST: i32 = 0x4b41;

/// The helper number, plus the constant's index in [`load_const`], of a call the eBPF object
/// makes where it needs a value known only at load time on the per-packet path. Userspace
/// rewrites each such call into `w0 = value` before loading: the value becomes part of the
/// instruction, where a read-only global would cost a load from memory, which under a bulk
/// transfer is a cache line the packet path misses. The verifier knows the value as a constant
/// either way. No kernel has a helper of these numbers.
pub const PLACEHOLDER_CONST: i32 = 0x4b50;

/// The constants [`PLACEHOLDER_CONST`] stands for, by index.
pub mod load_const {
    /// The running kernel's BTF id of `struct sock`, for `bpf_rdonly_cast` (0 where the
    /// program does not cast).
    pub const SOCK_BTF_ID: i32 = 0;
    /// Where the socket's cookie lies in `struct sock` (`__sk_common.skc_cookie`).
    pub const SK_COOKIE_AT: i32 = 1;
    /// 1 when sockets take slots in `SOCK_SLOTS`, 0 when every socket counts in `SOCK_STATS`.
    pub const SOCK_SLOTS_ON: i32 = 2;
    /// Where `sk_lock.owned` lies in `struct tcp_sock`, which is where it lies in `struct sock`
    /// too (a `tcp_sock` starts with its `sock`); 0 when userspace could not find it (TCP
    /// owners then come from userspace alone).
    pub const SK_LOCK_OWNED_AT: i32 = 3;
    /// 1 when the interface programs count flows as well, 0 for interface counters alone.
    pub const TRACK_FLOWS: i32 = 4;
    /// The flow cache's slots per CPU - 1 (a power of two less one).
    pub const FLOW_CACHE_MASK: i32 = 5;
    /// log2 of the flow cache's slots per CPU.
    pub const FLOW_CACHE_SHIFT: i32 = 6;
    /// Jiffies a cached flow must have been quiet before another flow takes its slot.
    pub const FLOW_SLOT_AGE: i32 = 7;
    /// How many there are.
    pub const COUNT: usize = 8;
}

/// The slot index and generation of a non-zero [`slot_ref`].
#[inline(always)]
pub const fn slot_of_ref(word: u64) -> (u32, u32) {
    ((word as u32).wrapping_sub(1), (word >> 32) as u32)
}

/// What an [`Event`] reports.
pub const EVENT_SOCK_OWNER: u32 = 1;
pub const EVENT_SOCK_CLOSE: u32 = 2;
pub const EVENT_PROC_EXIT: u32 = 3;

/// `Event::source` of an owner event: where the owner was seen. Creation, sending and closing
/// are the kernel programs' (the socket hooks; at close only for a socket with no owner reported
/// before); a socket none of them saw is looked up by userspace in the descriptor tables.
pub const OWNER_FROM_CREATE: u32 = 1;
pub const OWNER_FROM_SEND: u32 = 2;
pub const OWNER_FROM_PROC: u32 = 3;
pub const OWNER_FROM_CLOSE: u32 = 4;

/// A lifecycle record carried by the ring buffer. One layout for every kind keeps the reader
/// simple; fields a kind does not use are zero.
///
/// - `EVENT_SOCK_OWNER`: socket `cookie` is now owned by process `tgid` (first seen, or a new
///   owner after fork or fd passing). Sent once per socket and owner.
/// - `EVENT_SOCK_CLOSE`: socket `cookie` was released; `stats` holds its counters at that moment.
///   The map entry stays (a closing TCP socket still sends its last segments); userspace removes
///   it once it has gone quiet.
/// - `EVENT_PROC_EXIT`: process `tgid` exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub source: u32,
    pub cookie: u64,
    pub cgroup_id: u64,
    /// Network namespace cookie where the hook could read it (socket creation), else 0.
    pub netns_cookie: u64,
    pub ts_ns: u64,
    pub comm: [u8; 16],
    pub stats: SockStats,
}
const _: () = assert!(size_of::<Event>() == 184);

/// An owner report kept in the `OWNER_SPILL` map because the ring buffer was full: the fields
/// of an [`Event`] of kind [`EVENT_SOCK_OWNER`] that say who, keyed by socket cookie. Userspace
/// takes them out of the map at every interval, so a burst that fills the ring buffer does not
/// leave its sockets without an owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerSpill {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub source: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    pub netns_cookie: u64,
    pub ts_ns: u64,
    pub comm: [u8; 16],
}
const _: () = assert!(size_of::<OwnerSpill>() == 64);

impl OwnerSpill {
    /// The owner event this report stands for.
    pub fn to_event(&self, cookie: u64) -> Event {
        Event {
            kind: EVENT_SOCK_OWNER,
            tgid: self.tgid,
            tid: self.tid,
            uid: self.uid,
            gid: self.gid,
            source: self.source,
            cookie,
            cgroup_id: self.cgroup_id,
            netns_cookie: self.netns_cookie,
            ts_ns: self.ts_ns,
            comm: self.comm,
            stats: SockStats::default(),
        }
    }
}

/// Remote port of a DNS client socket.
pub const DNS_PORT: u16 = 53;
/// Bytes of a DNS answer captured, from its IP header on: room for the headers and a
/// classic 512-byte message; longer answers arrive truncated and userspace counts them.
pub const DNS_CAPTURE_BYTES: usize = 640;
/// The DNS captures' own ring buffer: a burst of answers never crowds out lifecycle events.
pub const DNS_RINGBUF_BYTES: u32 = 1 << 19;

/// A packet received by a socket whose remote port is 53 (a DNS client's answer, UDP or
/// TCP, any network namespace, loopback included), for userspace to read names from. Only
/// these rare packets are copied; the per-packet cost elsewhere is one context load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsCapture {
    /// The receiving socket, whose owner (and so network namespace) userspace knows.
    pub cookie: u64,
    /// The packet's length from its IP header on.
    pub len: u32,
    /// Bytes of it in `data`: `len` up to [`DNS_CAPTURE_BYTES`]; 0 when it could not be read.
    pub captured: u32,
    pub data: [u8; DNS_CAPTURE_BYTES],
}
const _: () = assert!(size_of::<DnsCapture>() == 656);

impl DnsCapture {
    /// Reads a capture from ring-buffer bytes; `None` when the record is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        let word = |at: usize, n: usize| bytes.get(at..at + n);
        let mut data = [0u8; DNS_CAPTURE_BYTES];
        data.copy_from_slice(word(16, DNS_CAPTURE_BYTES)?);
        Some(Self {
            cookie: u64::from_ne_bytes(word(0, 8)?.try_into().ok()?),
            len: u32::from_ne_bytes(word(8, 4)?.try_into().ok()?),
            captured: u32::from_ne_bytes(word(12, 4)?.try_into().ok()?),
            data,
        })
    }

    /// The captured bytes.
    pub fn packet(&self) -> &[u8] {
        let n = (self.captured as usize).min(DNS_CAPTURE_BYTES);
        &self.data[..n]
    }
}

/// Slots of the per-CPU `COUNTERS` array: what the kernel side could not record, and the
/// bookkeeping userspace needs to derive evictions.
pub mod counter {
    /// A lifecycle event was dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// A socket's counters could not be stored: no slot free and the shared socket map full.
    pub const SOCK_MAP_FULL: u32 = 1;
    /// A socket owner could not be kept: no room in the socket's storage, or neither the ring
    /// buffer nor `OWNER_SPILL` had room for its report (the socket then waits for its next
    /// call to report again).
    pub const OWNER_MAP_FULL: u32 = 2;
    /// A new `FLOWS` entry was created (used with the live count to derive LRU evictions).
    pub const FLOW_CREATED: u32 = 3;
    /// A flow entry could not be created at all.
    pub const FLOW_MAP_FULL: u32 = 4;
    /// An interface entry could not be created.
    pub const IFACE_MAP_FULL: u32 = 5;
    /// A flow took over a cache slot from a flow that had gone quiet (whose counters moved to
    /// `FLOWS`).
    pub const FLOW_SLOT_HANDOVER: u32 = 6;
    /// A new flow took an empty cache slot (it has no `FLOWS` entry until it leaves the slot).
    pub const FLOW_SLOT_TAKEN: u32 = 7;
    /// A listening socket's SYN started a handshake held for the socket it will be accepted
    /// as.
    pub const HANDSHAKE_HELD: u32 = 8;
    /// A held handshake went to its accepted socket, or back to the listener on a reset. Held
    /// minus settled is the handshakes under way plus those never accepted (scans, floods),
    /// whose bytes no socket counts.
    pub const HANDSHAKE_SETTLED: u32 = 9;
    /// A DNS answer could not be captured: the DNS ring buffer was full.
    pub const DNS_RINGBUF_FULL: u32 = 10;
    pub const COUNT: u32 = 11;
}

/// Slots per CPU of `IFACE_STATS` (see [`IfaceSlot`]), an array whose lookup the kernel inlines
/// into the program. An interface counts in slot `ifindex % IFACE_SLOTS` when the slot's tag
/// is its ifindex (userspace gives it the slot before attaching to it), else in the
/// `IFACE_STATS_HIGH` hash:
/// ifindexes only grow, and on a host that makes and removes interfaces (container veths)
/// they pass any fixed bound sooner or later. A power of two.
pub const IFACE_SLOTS: u32 = 1024;

/// Default capacities; userspace may override them at load time.
pub const MAX_IFACES: u32 = 256;
pub const MAX_FLOWS: u32 = 131_072;
/// Socket map capacity. The map allocates entries as sockets appear (`BPF_F_NO_PREALLOC`),
/// so the capacity costs only the bucket array until it is used.
pub const MAX_SOCKETS: u32 = 262_144;
/// Owner reports the ring buffer had no room for, waiting in `OWNER_SPILL` for userspace's
/// next read.
pub const MAX_OWNER_SPILL: u32 = 32_768;
/// Handshakes held at once for the sockets they will be accepted as (an LRU map: a flood of
/// SYNs that are never accepted pushes out the oldest).
pub const MAX_HANDSHAKES: u32 = 8192;
pub const RINGBUF_BYTES: u32 = 1 << 20;

// aya (and the eBPF maps that need `Pod`) exist on Linux only.
#[cfg(all(feature = "user", target_os = "linux"))]
mod pod {
    use super::*;
    // SAFETY: all of these are `repr(C)`, made only of integers and byte arrays, with every
    // padding byte spelled out as a field, so any bit pattern is a valid value.
    unsafe impl aya::Pod for IfaceCounters {}
    unsafe impl aya::Pod for IfaceSlot {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowCounters {}
    unsafe impl aya::Pod for FlowSlot {}
    unsafe impl aya::Pod for SockStats {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for OwnerSpill {}
}

impl Event {
    /// Reads an event from ring-buffer bytes. Returns `None` when the record is shorter than an
    /// event, which only a mismatched kernel object could produce.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        let mut event = Self::default();
        // SAFETY: `Event` is plain old data (see above) and the source holds at least
        // `size_of::<Event>()` bytes; copying bytes into it cannot produce an invalid value.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&raw mut event).cast::<u8>(),
                size_of::<Self>(),
            );
        }
        Some(event)
    }
}

/// The names of the kernel programs' maps in the object file, by which userspace finds them.
/// aya-ebpf's `#[map]` names a map after its static (or a string literal, never a constant),
/// so the kernel side spells these as identifiers; a kaipo-user test reads the compiled object
/// and checks that its maps are exactly [`maps::ALL`].
pub mod maps {
    /// Interface counters by CPU and slot (ifindex modulo [`crate::IFACE_SLOTS`]), each with
    /// the ifindex that owns the slot (see [`crate::IfaceSlot`]).
    pub const IFACE_STATS: &str = "IFACE_STATS";
    /// Per-CPU interface counters of interfaces without a slot of their own.
    pub const IFACE_STATS_HIGH: &str = "IFACE_STATS_HIGH";
    /// The per-CPU LRU flow map.
    pub const FLOWS: &str = "FLOWS";
    /// The per-CPU flow cache in front of [`FLOWS`].
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
    /// Counters per socket cookie.
    pub const SOCK_STATS: &str = "SOCK_STATS";
    /// The owner reported for each socket, in the socket's own storage.
    pub const OWNER_OF: &str = "OWNER_OF";
    /// Socket counters reached through the socket's own storage (see [`crate::SockSlot`]).
    pub const SOCK_SLOTS: &str = "SOCK_SLOTS";
    /// Free indexes of [`SOCK_SLOTS`].
    pub const SLOT_FREE: &str = "SLOT_FREE";
    /// Each socket's slot reference, in the socket's own storage.
    pub const SOCK_REF: &str = "SOCK_REF";
    /// The slot each socket cookie last led to (see [`crate::SOCK_HINT_COUNT`]).
    pub const SOCK_HINTS: &str = "SOCK_HINTS";
    /// The lifecycle events' ring buffer.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU room to build a socket's first counters in.
    pub const SCRATCH_SOCK: &str = "SCRATCH_SOCK";
    /// The kernel's own counters, indexed by [`crate::counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// A listener's handshake packets held until the socket it accepts claims them.
    pub const HANDSHAKES: &str = "HANDSHAKES";
    /// Owner reports that found the ring buffer full, by socket cookie.
    pub const OWNER_SPILL: &str = "OWNER_SPILL";
    /// DNS answers captured for names (see [`crate::DnsCapture`]).
    pub const DNS_EVENTS: &str = "DNS_EVENTS";

    pub const ALL: [&str; 16] = [
        IFACE_STATS,
        IFACE_STATS_HIGH,
        FLOWS,
        FLOW_CACHE,
        SOCK_STATS,
        OWNER_OF,
        SOCK_SLOTS,
        SLOT_FREE,
        SOCK_REF,
        SOCK_HINTS,
        EVENTS,
        SCRATCH_SOCK,
        COUNTERS,
        HANDSHAKES,
        OWNER_SPILL,
        DNS_EVENTS,
    ];
}
