//! Runs kaipo's packet programs through `BPF_PROG_TEST_RUN` on hand-built frames and checks the
//! exact counters they leave in their maps.
//!
//! Each test loads its own copy of the object, so its maps start empty and the tests can run in
//! parallel. Nothing is attached, except by the last test, which needs real TCP sockets. They
//! need root.
//!
//! What the kernel does in a test run (net/bpf/test_run.c,
//! <https://github.com/torvalds/linux/blob/v6.18/net/bpf/test_run.c>):
//! - it refuses input shorter than an Ethernet header (14 bytes) with `EINVAL`, for XDP and skb
//!   programs alike, and (since commit 12bec2bd4b76, in the stable series too) skb input whose
//!   ethertype says IPv4 or IPv6 but which is shorter than that IP header;
//! - XDP runs on the loopback device's receive queue, so `ingress_ifindex` is 1; input longer
//!   than what fits in one page becomes a multi-buffer frame;
//! - skb programs run on an skb whose device is the loopback (or the one named by `ifindex` in
//!   the context passed in). For a classifier the data starts at the Ethernet header and `len` is
//!   the whole frame; for a cgroup_skb program the Ethernet header has been pulled, so the data
//!   starts at the IP header. The skb belongs to a dummy socket allocated for the run, so it has a
//!   socket cookie, a new one each run.
#![cfg(target_os = "linux")]

use std::{
    collections::HashMap as StdHashMap,
    ffi::CString,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
};

use aya::{
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::{
        CgroupSkb, ProgramError, SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp,
    },
    Ebpf, EbpfLoader,
};
use kaipo::collect::ebpf::{object, IfaceTable, ObjectValues};
use kaipo_common::{
    counter, flow_slot, maps, FlowCounters, FlowKey, FlowSlot, IfaceCounters, SockStats,
    FAMILY_IPV4, FAMILY_IPV6, FLOW_CACHE_SLOTS, FLOW_SLOT_EMPTY, FLOW_SLOT_RX, FLOW_SLOT_TX,
    IFACE_SLOTS, LOOPBACK_IFINDEX, PROTO_ICMP, PROTO_TCP, PROTO_UDP, SOCK_FLAG_SERVER, TCP_CLOSE,
};

// ---------------------------------------------------------------------------------------------
// The program under test and its maps
// ---------------------------------------------------------------------------------------------

/// Which program a frame goes through. Frames are built from the host's point of view: the
/// host's address is the destination on ingress and the source on egress, so every expected
/// [`FlowKey`] has `local` = [`HOST_V4`]/[`HOST_V6`] and [`HOST_PORT`] whatever the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    TcEgress,
    SockEgress,
    SockIngress,
}

impl Hook {
    fn program(self) -> &'static str {
        match self {
            Self::Xdp => "kaipo_xdp",
            Self::TcEgress => "kaipo_tc_egress",
            Self::SockEgress => "kaipo_sock_egress",
            Self::SockIngress => "kaipo_sock_ingress",
        }
    }

    fn egress(self) -> bool {
        matches!(self, Self::TcEgress | Self::SockEgress)
    }

    /// What the program returns for every frame: `XDP_PASS`, `TC_ACT_UNSPEC` (-1) and "allow".
    fn verdict(self) -> u32 {
        match self {
            Self::Xdp => 2,
            Self::TcEgress => u32::MAX,
            Self::SockEgress | Self::SockIngress => 1,
        }
    }

    /// Interface counters of `packets` frames totalling `bytes`, in this direction's half.
    /// `non_ip` and `malformed` are the bytes of such frames among them.
    fn iface(self, bytes: u64, packets: u64, non_ip: u64, malformed: u64) -> IfaceCounters {
        if self.egress() {
            IfaceCounters {
                tx_bytes: bytes,
                tx_packets: packets,
                tx_non_ip_bytes: non_ip,
                tx_malformed_bytes: malformed,
                ..IfaceCounters::default()
            }
        } else {
            IfaceCounters {
                rx_bytes: bytes,
                rx_packets: packets,
                rx_non_ip_bytes: non_ip,
                rx_malformed_bytes: malformed,
                ..IfaceCounters::default()
            }
        }
    }

    fn flow(self, bytes: u64, packets: u64) -> FlowCounters {
        if self.egress() {
            FlowCounters {
                tx_bytes: bytes,
                tx_packets: packets,
                ..FlowCounters::default()
            }
        } else {
            FlowCounters {
                rx_bytes: bytes,
                rx_packets: packets,
                ..FlowCounters::default()
            }
        }
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs and run them with BPF_PROG_TEST_RUN: run them as root \
         (sudo -E cargo test -p kaipo-user --test progtest)"
    );
}

/// One loaded copy of the object with one program loaded.
struct Harness {
    hook: Hook,
    /// The ifindex the program is expected to record.
    ifindex: u32,
    ebpf: Ebpf,
}

impl Harness {
    fn new(hook: Hook) -> Self {
        Self::load(hook, None)
    }

    /// Loads the object; `track_flows` (0: off) replaces the flows switch it is loaded with when given.
    fn load(hook: Hook, track_flows: Option<u8>) -> Self {
        Self::load_with(hook, track_flows, None)
    }

    /// As [`Self::load`], and `slot_age` (jiffies) replaces the flow cache's slot age when given.
    fn load_with(hook: Hook, track_flows: Option<u8>, slot_age: Option<u32>) -> Self {
        require_root();
        // A flow run twice on two CPUs would take a cache slot on each.
        stay_on_this_cpu();
        let mut loader = EbpfLoader::new();
        // One run of cache slots per CPU, as kaipo sizes it.
        loader.map_max_entries(maps::FLOW_CACHE, FLOW_CACHE_SLOTS * cpus());
        loader.map_max_entries(maps::IFACE_STATS, IFACE_SLOTS * cpus());
        let mut values = ObjectValues::default();
        if let Some(track_flows) = track_flows {
            values.track_flows = track_flows != 0;
        }
        if let Some(slot_age) = slot_age {
            values.flow_slot_age = slot_age;
        }
        // The socket programs find slots through each socket's storage here (no slots are
        // given out in these tests), so their direct cookie read is left out.
        let object = object(None, &values).expect("preparing the object");
        let mut ebpf = loader
            .load(object.bytes())
            .expect("loading the kaipo object");
        let name = hook.program();
        let program = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("no program {name}"));
        let loaded = match hook {
            Hook::Xdp => <&mut Xdp>::try_from(program)
                .expect("kaipo_xdp is XDP")
                .load(),
            Hook::TcEgress => <&mut SchedClassifier>::try_from(program)
                .expect("kaipo_tc_egress is a classifier")
                .load(),
            Hook::SockEgress | Hook::SockIngress => <&mut CgroupSkb>::try_from(program)
                .expect("a cgroup_skb program")
                .load(),
        };
        if let Err(err) = loaded {
            panic!("the kernel refused {name}: {err:?}");
        }
        let mut harness = Self {
            hook,
            ifindex: LOOPBACK_IFINDEX,
            ebpf,
        };
        harness.claim(LOOPBACK_IFINDEX);
        harness
    }

    /// Gives interface `ifindex` its counter slot, as kaipo does before attaching to it, and
    /// makes it the test run's device.
    fn claim(&mut self, ifindex: u32) {
        let mut table = IfaceTable::open(&self.ebpf).expect(maps::IFACE_STATS);
        assert!(
            table.claim(ifindex, &Default::default()),
            "claiming {ifindex}'s slot"
        );
        self.ifindex = ifindex;
    }

    fn try_run(&self, opts: TestRunOptions<'_>) -> Result<TestRunResult, ProgramError> {
        let program = self
            .ebpf
            .program(self.hook.program())
            .expect("program present");
        match self.hook {
            Hook::Xdp => <&Xdp>::try_from(program).expect("XDP").test_run(opts),
            Hook::TcEgress => <&SchedClassifier>::try_from(program)
                .expect("classifier")
                .test_run(opts),
            Hook::SockEgress | Hook::SockIngress => <&CgroupSkb>::try_from(program)
                .expect("cgroup_skb")
                .test_run(opts),
        }
    }

    /// Runs `frame` through the program `repeat` times and checks its verdict.
    fn run_repeat(&self, frame: &[u8], repeat: u32) {
        self.run_opts(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        });
    }

    fn run(&self, frame: &[u8]) {
        self.run_repeat(frame, 1);
    }

    fn run_opts(&self, opts: TestRunOptions<'_>) {
        let len = opts.data_in.map_or(0, <[u8]>::len);
        let result = self
            .try_run(opts)
            .unwrap_or_else(|err| panic!("test run of a {len}-byte frame refused: {err:?}"));
        assert_eq!(
            result.return_value,
            self.hook.verdict(),
            "verdict of {}",
            self.hook.program()
        );
    }

    /// Runs the program unless the kernel refuses the input. A refusal must be `EINVAL` and leave
    /// every map empty, since the program never ran.
    fn run_unless_refused(&self, opts: TestRunOptions<'_>) -> bool {
        let len = opts.data_in.map_or(0, <[u8]>::len);
        match self.try_run(opts) {
            Ok(result) => {
                assert_eq!(result.return_value, self.hook.verdict(), "verdict");
                true
            }
            Err(err) => {
                assert_eq!(errno(&err), Some(libc::EINVAL), "{len}-byte input: {err:?}");
                assert_eq!(
                    self.iface_entries(),
                    [],
                    "{} after a refused run",
                    maps::IFACE_STATS
                );
                self.assert_flows(&[]);
                false
            }
        }
    }

    /// Every interface with counts, summed over CPUs: the slots of the `IFACE_STATS` array that
    /// are not all zero, then the entries of the `IFACE_STATS_HIGH` hash.
    fn iface_entries(&self) -> Vec<(u32, IfaceCounters)> {
        let sum = |per_cpu: &[IfaceCounters]| {
            per_cpu
                .iter()
                .fold(IfaceCounters::default(), |acc, v| acc.sum(v))
        };
        let mut entries = IfaceTable::open(&self.ebpf)
            .expect(maps::IFACE_STATS)
            .counted();
        let high: PerCpuHashMap<_, u32, IfaceCounters> = PerCpuHashMap::try_from(
            self.ebpf
                .map(maps::IFACE_STATS_HIGH)
                .expect(maps::IFACE_STATS_HIGH),
        )
        .unwrap_or_else(|e| panic!("{} is a per-CPU hash: {e}", maps::IFACE_STATS_HIGH));
        entries.extend(high.iter().map(|entry| {
            let (ifindex, per_cpu) = entry.expect("reading IFACE_STATS_HIGH");
            (ifindex, sum(&per_cpu))
        }));
        entries
    }

    /// The counters of the one interface the program saw, which must be [`Self::ifindex`].
    fn iface(&self) -> IfaceCounters {
        let entries = self.iface_entries();
        let keys: Vec<u32> = entries.iter().map(|(ifindex, _)| *ifindex).collect();
        assert_eq!(
            keys,
            [self.ifindex],
            "{} should hold exactly the test run's device",
            maps::IFACE_STATS
        );
        entries[0].1
    }

    /// The entries of the `FLOWS` hash, summed over CPUs.
    fn flow_map(&self) -> StdHashMap<FlowKey, FlowCounters> {
        let map: PerCpuHashMap<_, FlowKey, FlowCounters> =
            PerCpuHashMap::try_from(self.ebpf.map(maps::FLOWS).expect(maps::FLOWS))
                .unwrap_or_else(|e| panic!("{} is a per-CPU hash: {e}", maps::FLOWS));
        map.iter()
            .map(|entry| {
                let (key, per_cpu) = entry.expect("reading FLOWS");
                (key, per_cpu.iter().fold(FlowCounters::default(), add_flow))
            })
            .collect()
    }

    /// Every taken slot of the flow cache, as (key, counters), over all CPUs. Checks on the way
    /// that each sits in the set of two slots userspace computes for it, so the kernel's hash and
    /// `kaipo_common::flow_slot` agree.
    fn cached(&self) -> Vec<(FlowKey, FlowCounters)> {
        let map: Array<_, FlowSlot> =
            Array::try_from(self.ebpf.map(maps::FLOW_CACHE).expect(maps::FLOW_CACHE))
                .unwrap_or_else(|e| panic!("{} is an array: {e}", maps::FLOW_CACHE));
        assert_eq!(
            map.len(),
            FLOW_CACHE_SLOTS * cpus(),
            "a run of slots per CPU"
        );
        let mut out = Vec::new();
        for index in 0..map.len() {
            let slot = map.get(&index, 0).expect("reading FLOW_CACHE");
            if slot.direction() == FLOW_SLOT_EMPTY {
                assert_eq!(slot, FlowSlot::default(), "an empty slot is all zero");
                continue;
            }
            // The slot within its CPU's run.
            let within = index & (FLOW_CACHE_SLOTS - 1);
            assert_eq!(
                flow_slot(&slot.key, slot.direction(), FLOW_CACHE_SLOTS - 1) | 1,
                within | 1,
                "{:?} in slot {within} of CPU {}, outside its set",
                slot.key,
                index / FLOW_CACHE_SLOTS
            );
            out.push((slot.key, slot.counters()));
        }
        out
    }

    /// Every flow, summed over CPUs and over the two places it is counted in.
    fn flows(&self) -> StdHashMap<FlowKey, FlowCounters> {
        let mut flows = self.flow_map();
        for (key, counters) in self.cached() {
            let total = flows.entry(key).or_default();
            *total = add_flow(*total, &counters);
        }
        flows
    }

    /// Exactly these flows in the cache (in any order) and these in `FLOWS`.
    fn assert_cache_and_map(
        &self,
        cached: &[(FlowKey, FlowCounters)],
        in_map: &[(FlowKey, FlowCounters)],
    ) {
        let by_port = |v: &mut Vec<(FlowKey, FlowCounters)>| {
            v.sort_by_key(|(key, _)| (key.remote_port, key.local_port));
        };
        let (mut got, mut want) = (self.cached(), cached.to_vec());
        by_port(&mut got);
        by_port(&mut want);
        assert_eq!(got, want, "{}", maps::FLOW_CACHE);
        assert_eq!(
            self.flow_map(),
            in_map.iter().copied().collect::<StdHashMap<_, _>>(),
            "{}",
            maps::FLOWS
        );
    }

    /// `n` new flows, each of which took an empty cache slot.
    fn assert_new_flows_cached(&self, n: u64) {
        assert_eq!(self.counter(counter::FLOW_SLOT_TAKEN), n, "FLOW_SLOT_TAKEN");
        assert_eq!(self.counter(counter::FLOW_CREATED), 0, "FLOW_CREATED");
        assert_eq!(self.flow_map(), StdHashMap::new(), "{}", maps::FLOWS);
        assert_eq!(self.cached().len() as u64, n, "taken cache slots");
    }

    fn assert_iface(&self, expected: IfaceCounters) {
        assert_eq!(self.iface(), expected, "{}", maps::IFACE_STATS);
    }

    fn assert_flows(&self, expected: &[(FlowKey, FlowCounters)]) {
        let expected: StdHashMap<FlowKey, FlowCounters> = expected.iter().copied().collect();
        assert_eq!(self.flows(), expected, "{}", maps::FLOWS);
    }

    fn counter(&self, slot: u32) -> u64 {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(maps::COUNTERS).expect(maps::COUNTERS))
                .unwrap_or_else(|e| panic!("{} is a per-CPU array: {e}", maps::COUNTERS));
        map.get(&slot, 0).expect("reading COUNTERS").iter().sum()
    }

    /// The socket entries, each with the jiffy its owner was last looked at (a clock reading)
    /// cleared, once checked: set by a UDP socket's sent packets, by nothing else.
    fn sockets(&self) -> Vec<(u64, SockStats)> {
        let map: HashMap<_, u64, SockStats> =
            HashMap::try_from(self.ebpf.map(maps::SOCK_STATS).expect(maps::SOCK_STATS))
                .unwrap_or_else(|e| panic!("{} is a hash: {e}", maps::SOCK_STATS));
        map.iter()
            .map(|entry| {
                let (cookie, mut stats) = entry.expect("reading SOCK_STATS");
                let looked = self.hook == Hook::SockEgress && stats.proto == PROTO_UDP;
                assert_eq!(
                    stats.owner_checked != 0,
                    looked,
                    "owner looked at: {stats:?}"
                );
                stats.owner_checked = 0;
                (cookie, stats)
            })
            .collect()
    }

    /// The one socket the test run created.
    fn socket(&self) -> SockStats {
        let sockets = self.sockets();
        assert_eq!(
            sockets.len(),
            1,
            "{} should hold one socket: {sockets:?}",
            maps::SOCK_STATS
        );
        let (cookie, stats) = sockets[0];
        assert_ne!(cookie, 0, "a socket cookie is never 0");
        stats
    }

    /// Asserts the whole outcome of frames that were counted on the interface but made no flow.
    fn assert_no_flow(&self, expected_iface: IfaceCounters) {
        assert_eq!(self.iface(), expected_iface, "{}", maps::IFACE_STATS);
        self.assert_flows(&[]);
        self.assert_new_flows_cached(0);
        assert_eq!(self.counter(counter::FLOW_MAP_FULL), 0, "FLOW_MAP_FULL");
        assert_eq!(self.counter(counter::IFACE_MAP_FULL), 0, "IFACE_MAP_FULL");
    }
}

fn add_flow(a: FlowCounters, b: &FlowCounters) -> FlowCounters {
    FlowCounters {
        rx_bytes: a.rx_bytes + b.rx_bytes,
        rx_packets: a.rx_packets + b.rx_packets,
        tx_bytes: a.tx_bytes + b.tx_bytes,
        tx_packets: a.tx_packets + b.tx_packets,
    }
}

fn errno(err: &ProgramError) -> Option<i32> {
    match err {
        ProgramError::SyscallError(err) => err.io_error.raw_os_error(),
        _ => None,
    }
}

/// Runs `f` on a thread of its own in a new network namespace holding a veth pair, and passes
/// it the ifindex of one end: a device other than the loopback for skb test runs to name. The
/// namespace, and the veth pair with it, goes away when the thread ends.
fn in_netns_with_veth<T: Send + 'static>(f: impl FnOnce(u32) -> T + Send + 'static) -> T {
    in_netns_with_veth_at(None, f)
}

/// [`in_netns_with_veth`], with the end's ifindex chosen when `index` is given.
fn in_netns_with_veth_at<T: Send + 'static>(
    index: Option<u32>,
    f: impl FnOnce(u32) -> T + Send + 'static,
) -> T {
    require_root();
    let thread = std::thread::spawn(move || {
        // SAFETY: no memory-safety preconditions; CLONE_NEWNET moves only the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        // A child process starts in the namespace of the thread that spawned it.
        let mut ip = Command::new("ip");
        ip.args(["link", "add", "kaipo-t0"]);
        if let Some(index) = index {
            ip.args(["index", &index.to_string()]);
        }
        let status = ip
            .args(["type", "veth", "peer", "name", "kaipo-t1"])
            .status()
            .expect("running `ip link add` (iproute2)");
        assert!(
            status.success(),
            "`ip link add ... type veth` failed: {status}"
        );
        let name = CString::new("kaipo-t0").expect("no NUL");
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(
            ifindex > LOOPBACK_IFINDEX,
            "kaipo-t0: {}",
            io::Error::last_os_error()
        );
        f(ifindex)
    });
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const HOST_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7);
const HOST_PORT: u16 = 40_000;
const PEER_PORT: u16 = 443;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// IPv4 flags/fragment-offset field: "more fragments".
const IP_MF: u16 = 0x2000;
/// A non-first fragment: offset 1480 bytes, in 8-byte units.
const FRAG_OFFSET: u16 = 1480 / 8;

/// Source and destination of a packet in this direction, as (address, port).
fn ends<A>(hook: Hook, host: A, peer: A) -> ((A, u16), (A, u16)) {
    if hook.egress() {
        ((host, HOST_PORT), (peer, PEER_PORT))
    } else {
        ((peer, PEER_PORT), (host, HOST_PORT))
    }
}

/// An Ethernet frame with the given VLAN tags, each (TPID, TCI), outermost first.
fn ethernet_tagged(hook: Hook, tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = if hook.egress() {
        (HOST_MAC, PEER_MAC)
    } else {
        (PEER_MAC, HOST_MAC)
    };
    let mut frame = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    for (tpid, tci) in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&tci.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn ethernet(hook: Hook, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    ethernet_tagged(hook, &[], ethertype, payload)
}

/// A 20-byte IPv4 header (checksum left 0: nothing here checks it) followed by `l4`.
fn ipv4(hook: Hook, proto: u8, flags_fragment: u16, l4: &[u8]) -> Vec<u8> {
    let ((src, _), (dst, _)) = ends(hook, HOST_V4, PEER_V4);
    let total = u16::try_from(20 + l4.len()).expect("fits an IPv4 packet");
    let mut packet = vec![0x45, 0x00];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0x12, 0x34]);
    packet.extend_from_slice(&flags_fragment.to_be_bytes());
    packet.extend_from_slice(&[64, proto, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(l4);
    packet
}

/// A 40-byte IPv6 header with next header `next`, followed by `rest`.
fn ipv6(hook: Hook, next: u8, rest: &[u8]) -> Vec<u8> {
    let ((src, _), (dst, _)) = ends(hook, HOST_V6, PEER_V6);
    let payload = u16::try_from(rest.len()).expect("fits an IPv6 packet");
    let mut packet = vec![0x60, 0x00, 0x00, 0x00];
    packet.extend_from_slice(&payload.to_be_bytes());
    packet.extend_from_slice(&[next, 64]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(rest);
    packet
}

/// An 8-byte hop-by-hop options header (one PadN option) followed by `rest`.
fn hop_by_hop(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut header = vec![next, 0, 1, 4, 0, 0, 0, 0];
    header.extend_from_slice(rest);
    header
}

/// An IPv6 fragment header, offset in 8-byte units, followed by `rest`.
fn fragment6(next: u8, offset: u16, more: bool, rest: &[u8]) -> Vec<u8> {
    let field = (offset << 3) | u16::from(more);
    let mut header = vec![next, 0];
    header.extend_from_slice(&field.to_be_bytes());
    header.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    header.extend_from_slice(rest);
    header
}

fn udp(hook: Hook, payload_len: usize) -> Vec<u8> {
    let ((_, src), (_, dst)) = ends(hook, (), ());
    let len = u16::try_from(8 + payload_len).expect("fits a UDP datagram");
    let mut datagram = Vec::with_capacity(8 + payload_len);
    datagram.extend_from_slice(&src.to_be_bytes());
    datagram.extend_from_slice(&dst.to_be_bytes());
    datagram.extend_from_slice(&len.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.resize(8 + payload_len, 0xab);
    datagram
}

fn tcp(hook: Hook, payload_len: usize) -> Vec<u8> {
    let ((_, src), (_, dst)) = ends(hook, (), ());
    let mut segment = Vec::with_capacity(20 + payload_len);
    segment.extend_from_slice(&src.to_be_bytes());
    segment.extend_from_slice(&dst.to_be_bytes());
    segment.extend_from_slice(&1_000u32.to_be_bytes()); // sequence
    segment.extend_from_slice(&2_000u32.to_be_bytes()); // acknowledgement
    segment.extend_from_slice(&[5 << 4, 0x18]); // data offset 5 words; PSH, ACK
    segment.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    segment.resize(20 + payload_len, 0xcd);
    segment
}

fn icmp_echo(payload_len: usize) -> Vec<u8> {
    let mut message = vec![8, 0, 0, 0, 0x00, 0x01, 0x00, 0x01];
    message.resize(8 + payload_len, 0x61);
    message
}

/// Payload bytes that are not a transport header (the middle of a fragmented datagram).
fn filler(len: usize) -> Vec<u8> {
    vec![0x5a; len]
}

fn arp_request(hook: Hook) -> Vec<u8> {
    let ((src, _), (dst, _)) = ends(hook, HOST_V4, PEER_V4);
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1]; // Ethernet, IPv4, request
    arp.extend_from_slice(&HOST_MAC);
    arp.extend_from_slice(&src.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&dst.octets());
    ethernet(hook, ETH_P_ARP, &arp)
}

fn v4_udp_frame(hook: Hook, payload_len: usize) -> Vec<u8> {
    ethernet(
        hook,
        ETH_P_IP,
        &ipv4(hook, PROTO_UDP, 0, &udp(hook, payload_len)),
    )
}

fn v4_tcp_frame(hook: Hook, payload_len: usize) -> Vec<u8> {
    ethernet(
        hook,
        ETH_P_IP,
        &ipv4(hook, PROTO_TCP, 0, &tcp(hook, payload_len)),
    )
}

fn v6_udp_frame(hook: Hook, payload_len: usize) -> Vec<u8> {
    ethernet(
        hook,
        ETH_P_IPV6,
        &ipv6(hook, PROTO_UDP, &udp(hook, payload_len)),
    )
}

fn v4_addr(addr: Ipv4Addr) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&addr.octets());
    out
}

/// The key a flow between the host and the peer must have, on the loopback device.
fn key_v4(vlan: u16, proto: u8, ports: bool) -> FlowKey {
    let (local_port, remote_port) = if ports {
        (HOST_PORT, PEER_PORT)
    } else {
        (0, 0)
    };
    FlowKey {
        ifindex: LOOPBACK_IFINDEX,
        vlan,
        proto,
        family: FAMILY_IPV4,
        local_port,
        remote_port,
        local_addr: v4_addr(HOST_V4),
        remote_addr: v4_addr(PEER_V4),
    }
}

fn key_v6(proto: u8, ports: bool) -> FlowKey {
    let (local_port, remote_port) = if ports {
        (HOST_PORT, PEER_PORT)
    } else {
        (0, 0)
    };
    FlowKey {
        ifindex: LOOPBACK_IFINDEX,
        vlan: 0,
        proto,
        family: FAMILY_IPV6,
        local_port,
        remote_port,
        local_addr: HOST_V6.octets(),
        remote_addr: PEER_V6.octets(),
    }
}

fn len(frame: &[u8]) -> u64 {
    frame.len() as u64
}

// ---------------------------------------------------------------------------------------------
// Cases shared by the XDP (ingress) and TC (egress) programs
// ---------------------------------------------------------------------------------------------

/// One frame through a fresh program makes exactly one flow with `key`.
fn case_single_flow(hook: Hook, frame: &[u8], key: FlowKey) {
    let h = Harness::new(hook);
    h.run(frame);
    h.assert_iface(hook.iface(len(frame), 1, 0, 0));
    h.assert_flows(&[(key, hook.flow(len(frame), 1))]);
    h.assert_new_flows_cached(1);
}

/// One frame through a fresh program is counted on the interface as malformed, and nowhere else.
fn case_malformed(hook: Hook, frame: &[u8]) {
    let h = Harness::new(hook);
    h.run(frame);
    h.assert_no_flow(hook.iface(len(frame), 1, 0, len(frame)));
}

fn case_two_ipv4_flows(hook: Hook) {
    let udp_frame = v4_udp_frame(hook, 50);
    let tcp_frame = v4_tcp_frame(hook, 30);
    assert_eq!(
        (udp_frame.len(), tcp_frame.len()),
        (14 + 20 + 8 + 50, 14 + 20 + 20 + 30)
    );
    let h = Harness::new(hook);
    h.run(&udp_frame);
    h.run(&tcp_frame);
    h.assert_iface(hook.iface(92 + 84, 2, 0, 0));
    h.assert_flows(&[
        (key_v4(0, PROTO_UDP, true), hook.flow(92, 1)),
        (key_v4(0, PROTO_TCP, true), hook.flow(84, 1)),
    ]);
    h.assert_new_flows_cached(2);
    assert_eq!(h.counter(counter::FLOW_MAP_FULL), 0, "FLOW_MAP_FULL");
}

fn case_repeat(hook: Hook) {
    let frame = v4_udp_frame(hook, 50);
    let h = Harness::new(hook);
    h.run_repeat(&frame, 1000);
    h.assert_iface(hook.iface(1000 * 92, 1000, 0, 0));
    h.assert_flows(&[(key_v4(0, PROTO_UDP, true), hook.flow(1000 * 92, 1000))]);
    h.assert_new_flows_cached(1);
}

fn case_ipv6_udp(hook: Hook) {
    let frame = v6_udp_frame(hook, 50);
    assert_eq!(frame.len(), 14 + 40 + 8 + 50);
    case_single_flow(hook, &frame, key_v6(PROTO_UDP, true));
}

fn case_ipv6_hop_by_hop(hook: Hook) {
    let frame = ethernet(
        hook,
        ETH_P_IPV6,
        &ipv6(hook, 0, &hop_by_hop(PROTO_UDP, &udp(hook, 20))),
    );
    assert_eq!(frame.len(), 14 + 40 + 8 + 8 + 20);
    case_single_flow(hook, &frame, key_v6(PROTO_UDP, true));
}

/// The first fragment carries the UDP header and its ports; a later one (offset 1480) does not.
fn case_ipv6_fragments(hook: Hook) {
    let first = ethernet(
        hook,
        ETH_P_IPV6,
        &ipv6(hook, 44, &fragment6(PROTO_UDP, 0, true, &udp(hook, 40))),
    );
    let later = ethernet(
        hook,
        ETH_P_IPV6,
        &ipv6(
            hook,
            44,
            &fragment6(PROTO_UDP, FRAG_OFFSET, false, &filler(60)),
        ),
    );
    assert_eq!(
        (first.len(), later.len()),
        (14 + 40 + 8 + 48, 14 + 40 + 8 + 60)
    );
    let h = Harness::new(hook);
    h.run(&first);
    h.run(&later);
    h.assert_iface(hook.iface(110 + 122, 2, 0, 0));
    h.assert_flows(&[
        (key_v6(PROTO_UDP, true), hook.flow(110, 1)),
        (key_v6(PROTO_UDP, false), hook.flow(122, 1)),
    ]);
    h.assert_new_flows_cached(2);
}

fn case_ipv4_fragments(hook: Hook) {
    let first = ethernet(
        hook,
        ETH_P_IP,
        &ipv4(hook, PROTO_UDP, IP_MF, &udp(hook, 40)),
    );
    let later = ethernet(
        hook,
        ETH_P_IP,
        &ipv4(hook, PROTO_UDP, FRAG_OFFSET, &filler(60)),
    );
    assert_eq!((first.len(), later.len()), (14 + 20 + 48, 14 + 20 + 60));
    let h = Harness::new(hook);
    h.run(&first);
    h.run(&later);
    h.assert_iface(hook.iface(82 + 94, 2, 0, 0));
    h.assert_flows(&[
        (key_v4(0, PROTO_UDP, true), hook.flow(82, 1)),
        (key_v4(0, PROTO_UDP, false), hook.flow(94, 1)),
    ]);
    h.assert_new_flows_cached(2);
}

/// Priority 5 and DEI set around VLAN id 100: only the 12-bit id is recorded.
const TCI_100: u16 = (5 << 13) | (1 << 12) | 100;
const TCI_200: u16 = 200;

fn case_vlan(hook: Hook) {
    let packet = ipv4(hook, PROTO_UDP, 0, &udp(hook, 50));
    let frame = ethernet_tagged(hook, &[(ETH_P_8021Q, TCI_100)], ETH_P_IP, &packet);
    assert_eq!(frame.len(), 14 + 4 + 20 + 8 + 50);
    case_single_flow(hook, &frame, key_v4(100, PROTO_UDP, true));
}

fn case_qinq(hook: Hook) {
    let packet = ipv4(hook, PROTO_TCP, 0, &tcp(hook, 10));
    let tags = [(ETH_P_8021AD, TCI_200), (ETH_P_8021Q, TCI_100)];
    let frame = ethernet_tagged(hook, &tags, ETH_P_IP, &packet);
    assert_eq!(frame.len(), 14 + 8 + 20 + 20 + 10);
    case_single_flow(hook, &frame, key_v4(200, PROTO_TCP, true));
}

fn case_icmp(hook: Hook) {
    let frame = ethernet(hook, ETH_P_IP, &ipv4(hook, PROTO_ICMP, 0, &icmp_echo(56)));
    assert_eq!(frame.len(), 14 + 20 + 64);
    case_single_flow(hook, &frame, key_v4(0, PROTO_ICMP, false));
}

/// packet.rs `read_ports`: a datagram too short for its ports still counts toward the flow of its
/// addresses, with ports 0.
fn case_truncated_udp_header(hook: Hook) {
    let ((_, src_port), _) = ends(hook, (), ());
    let frame = ethernet(
        hook,
        ETH_P_IP,
        &ipv4(hook, PROTO_UDP, 0, &src_port.to_be_bytes()),
    );
    assert_eq!(frame.len(), 14 + 20 + 2);
    case_single_flow(hook, &frame, key_v4(0, PROTO_UDP, false));
}

fn case_arp(hook: Hook) {
    let frame = arp_request(hook);
    assert_eq!(frame.len(), 14 + 28);
    let h = Harness::new(hook);
    h.run(&frame);
    h.assert_no_flow(hook.iface(42, 1, 42, 0));
}

/// 15 bytes of an IPv4 header: version, length and protocol are there, the addresses are not.
fn case_ipv4_header_cut(hook: Hook) {
    let mut packet = ipv4(hook, PROTO_UDP, 0, &udp(hook, 50));
    packet.truncate(15);
    let frame = ethernet(hook, ETH_P_IP, &packet);
    assert_eq!(frame.len(), 29);
    case_malformed(hook, &frame);
}

/// 30 bytes of an IPv6 header: the source address is there, the destination is not.
fn case_ipv6_header_cut(hook: Hook) {
    let mut packet = ipv6(hook, PROTO_UDP, &udp(hook, 50));
    packet.truncate(30);
    let frame = ethernet(hook, ETH_P_IPV6, &packet);
    assert_eq!(frame.len(), 44);
    case_malformed(hook, &frame);
}

fn case_ipv4_header_cut_behind_vlan(hook: Hook) {
    let mut packet = ipv4(hook, PROTO_UDP, 0, &udp(hook, 50));
    packet.truncate(15);
    let frame = ethernet_tagged(hook, &[(ETH_P_8021Q, TCI_100)], ETH_P_IP, &packet);
    assert_eq!(frame.len(), 33);
    case_malformed(hook, &frame);
}

fn case_ipv6_header_cut_behind_vlan(hook: Hook) {
    let mut packet = ipv6(hook, PROTO_UDP, &udp(hook, 50));
    packet.truncate(30);
    let frame = ethernet_tagged(hook, &[(ETH_P_8021Q, TCI_100)], ETH_P_IPV6, &packet);
    assert_eq!(frame.len(), 48);
    case_malformed(hook, &frame);
}

/// The shortest frame the kernel accepts: an Ethernet header whose ethertype announces a VLAN
/// tag that is not there.
fn case_vlan_tag_cut(hook: Hook) {
    let frame = ethernet(hook, ETH_P_8021Q, &[]);
    assert_eq!(frame.len(), 14);
    case_malformed(hook, &frame);
}

/// An Ethernet header announcing IPv4, with nothing after it.
fn case_ethernet_header_only(hook: Hook) {
    let frame = ethernet(hook, ETH_P_IP, &[]);
    case_malformed(hook, &frame);
}

/// 10 bytes, shorter than an Ethernet header: the kernel refuses the test run itself, so the
/// program never runs and nothing is counted.
fn case_shorter_than_ethernet_refused(hook: Hook) {
    let frame = &v4_udp_frame(hook, 50)[..10];
    let h = Harness::new(hook);
    let accepted = h.run_unless_refused(TestRunOptions {
        data_in: Some(frame),
        ..TestRunOptions::default()
    });
    assert!(
        !accepted,
        "the kernel runs test frames of at least ETH_HLEN (14) bytes only"
    );
}

fn case_ihl_below_five(hook: Hook) {
    let mut packet = ipv4(hook, PROTO_UDP, 0, &udp(hook, 50));
    packet[0] = 0x43;
    case_malformed(hook, &ethernet(hook, ETH_P_IP, &packet));
}

fn case_version_6_in_ipv4_ethertype(hook: Hook) {
    let packet = ipv6(hook, PROTO_UDP, &udp(hook, 50));
    case_malformed(hook, &ethernet(hook, ETH_P_IP, &packet));
}

fn case_total_length_below_header(hook: Hook) {
    let mut packet = ipv4(hook, PROTO_UDP, 0, &udp(hook, 50));
    packet[2..4].copy_from_slice(&19u16.to_be_bytes());
    case_malformed(hook, &ethernet(hook, ETH_P_IP, &packet));
}

fn case_track_flows_off(hook: Hook) {
    let frame = v4_udp_frame(hook, 50);
    let h = Harness::load(hook, Some(0));
    h.run(&frame);
    h.assert_no_flow(hook.iface(92, 1, 0, 0));
}

/// An IPv4/UDP frame between the host and the peer with the peer's port set to `peer_port`,
/// and the key of its flow.
fn v4_udp_frame_to(hook: Hook, peer_port: u16, payload_len: usize) -> (Vec<u8>, FlowKey) {
    let mut frame = v4_udp_frame(hook, payload_len);
    // The peer's port is the destination going out and the source coming in.
    let at = if hook.egress() { 14 + 20 + 2 } else { 14 + 20 };
    frame[at..at + 2].copy_from_slice(&peer_port.to_be_bytes());
    let key = FlowKey {
        remote_port: peer_port,
        ..key_v4(0, PROTO_UDP, true)
    };
    (frame, key)
}

/// Keeps the calling thread (each test runs on its own) on the CPU it is on now: test runs use
/// the flow-cache slots of the CPU they run on, and the tests follow flows through one CPU's.
fn stay_on_this_cpu() {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu: {}", io::Error::last_os_error());
    // SAFETY: an all-zero `cpu_set_t` is the empty set; CPU_SET sets one bit of it, and
    // `sched_getcpu` returned a CPU the set can name.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: the set outlives the call and its size is passed along.
    let ret = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(ret, 0, "sched_setaffinity: {}", io::Error::last_os_error());
}

/// Three flows whose first cache slot is the same, so they meet in one set of two slots: the
/// usual test flow first, then two to other peer ports.
fn colliding_flows(hook: Hook) -> [(Vec<u8>, FlowKey); 3] {
    let dir = if hook.egress() {
        FLOW_SLOT_TX
    } else {
        FLOW_SLOT_RX
    };
    let slot = |key: &FlowKey| flow_slot(key, dir, FLOW_CACHE_SLOTS - 1);
    let a = v4_udp_frame_to(hook, PEER_PORT, 50);
    let mut others = (1..=u16::MAX)
        .filter(|port| *port != PEER_PORT)
        .map(|port| v4_udp_frame_to(hook, port, 50))
        .filter(|(_, key)| slot(key) == slot(&a.1));
    let b = others
        .next()
        .expect("a peer port meets the test flow's slot");
    let c = others
        .next()
        .expect("two peer ports meet the test flow's slot");
    [a, b, c]
}

/// While the two flows holding a set are active (they never count as quiet here), a third flow
/// that meets them there is counted in `FLOWS`, and each keeps its own exact counts.
fn case_cache_busy_set_sends_newcomer_to_flow_map(hook: Hook) {
    let [(frame_a, a), (frame_b, b), (frame_c, c)] = colliding_flows(hook);
    let h = Harness::load_with(hook, None, Some(u32::MAX));
    h.run_repeat(&frame_a, 3);
    h.run_repeat(&frame_b, 2);
    h.run_repeat(&frame_c, 4);
    h.assert_cache_and_map(
        &[(a, hook.flow(3 * 92, 3)), (b, hook.flow(2 * 92, 2))],
        &[(c, hook.flow(4 * 92, 4))],
    );
    assert_eq!(h.counter(counter::FLOW_SLOT_TAKEN), 2, "FLOW_SLOT_TAKEN");
    assert_eq!(h.counter(counter::FLOW_CREATED), 1, "FLOW_CREATED");
    assert_eq!(
        h.counter(counter::FLOW_SLOT_HANDOVER),
        0,
        "FLOW_SLOT_HANDOVER"
    );
    h.assert_iface(hook.iface(9 * 92, 9, 0, 0));
}

/// With no quiet time required, a flow meeting two others in their set takes a slot over, and
/// the counts of the flow it displaces move to that flow's `FLOWS` entry (created the first
/// time, added to after): no packet is lost or counted twice.
fn case_cache_quiet_slot_is_handed_over(hook: Hook) {
    let [(frame_a, a), (frame_b, b), (frame_c, c)] = colliding_flows(hook);
    let h = Harness::load_with(hook, None, Some(0));
    h.run_repeat(&frame_a, 3);
    h.run(&frame_b);
    assert_eq!(h.cached().len(), 2, "A and B hold the set");
    // A, the flow quiet for longer (or, in the same jiffy, the set's first slot), goes.
    h.run(&frame_c);
    h.assert_cache_and_map(
        &[(b, hook.flow(92, 1)), (c, hook.flow(92, 1))],
        &[(a, hook.flow(3 * 92, 3))],
    );
    // A comes back and displaces B or C; then C (or B) comes back and displaces a flow again.
    h.run(&frame_a);
    h.run(&frame_c);
    h.run(&frame_b);
    assert_eq!(
        h.flows(),
        StdHashMap::from([
            (a, hook.flow(4 * 92, 4)),
            (b, hook.flow(2 * 92, 2)),
            (c, hook.flow(2 * 92, 2))
        ]),
        "every flow, both places"
    );
    assert_eq!(h.cached().len(), 2, "the set stays full");
    assert_eq!(h.counter(counter::FLOW_SLOT_TAKEN), 2, "FLOW_SLOT_TAKEN");
    assert_eq!(h.counter(counter::FLOW_MAP_FULL), 0, "FLOW_MAP_FULL");
    let handovers = h.counter(counter::FLOW_SLOT_HANDOVER);
    assert!(
        (2..=4).contains(&handovers),
        "C, A and then C and B each found the set full: {handovers} handovers"
    );
    // A's entry, and one for B or C (or both): whichever were displaced.
    let entries = h.flow_map().len() as u64;
    assert!((2..=3).contains(&entries), "{entries} FLOWS entries");
    assert_eq!(h.counter(counter::FLOW_CREATED), entries, "FLOW_CREATED");
    h.assert_iface(hook.iface(8 * 92, 8, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// XDP (ingress)
// ---------------------------------------------------------------------------------------------

#[test]
fn xdp_two_ipv4_flows_local_is_destination() {
    case_two_ipv4_flows(Hook::Xdp);
}

#[test]
fn xdp_cache_busy_set_sends_newcomer_to_flow_map() {
    case_cache_busy_set_sends_newcomer_to_flow_map(Hook::Xdp);
}

#[test]
fn xdp_cache_quiet_slot_is_handed_over() {
    case_cache_quiet_slot_is_handed_over(Hook::Xdp);
}

#[test]
fn xdp_repeat_counts_every_run_in_one_flow() {
    case_repeat(Hook::Xdp);
}

#[test]
fn xdp_ipv6_udp() {
    case_ipv6_udp(Hook::Xdp);
}

#[test]
fn xdp_ipv6_hop_by_hop_then_udp_has_ports() {
    case_ipv6_hop_by_hop(Hook::Xdp);
}

#[test]
fn xdp_ipv6_non_first_fragment_has_no_ports() {
    case_ipv6_fragments(Hook::Xdp);
}

#[test]
fn xdp_ipv4_non_first_fragment_has_no_ports() {
    case_ipv4_fragments(Hook::Xdp);
}

#[test]
fn xdp_vlan_id_recorded() {
    case_vlan(Hook::Xdp);
}

#[test]
fn xdp_qinq_records_outer_vlan() {
    case_qinq(Hook::Xdp);
}

#[test]
fn xdp_icmp_has_no_ports() {
    case_icmp(Hook::Xdp);
}

#[test]
fn xdp_truncated_udp_header_counts_with_ports_zero() {
    case_truncated_udp_header(Hook::Xdp);
}

#[test]
fn xdp_arp_is_non_ip() {
    case_arp(Hook::Xdp);
}

#[test]
fn xdp_ipv4_header_cut_at_15_bytes_is_malformed() {
    case_ipv4_header_cut(Hook::Xdp);
}

#[test]
fn xdp_ipv6_header_cut_short_is_malformed() {
    case_ipv6_header_cut(Hook::Xdp);
}

#[test]
fn xdp_ipv4_header_cut_behind_vlan_tag_is_malformed() {
    case_ipv4_header_cut_behind_vlan(Hook::Xdp);
}

#[test]
fn xdp_ipv6_header_cut_behind_vlan_tag_is_malformed() {
    case_ipv6_header_cut_behind_vlan(Hook::Xdp);
}

#[test]
fn xdp_vlan_tag_cut_short_is_malformed() {
    case_vlan_tag_cut(Hook::Xdp);
}

#[test]
fn xdp_ethernet_header_only_is_malformed() {
    case_ethernet_header_only(Hook::Xdp);
}

#[test]
fn xdp_kernel_refuses_frame_shorter_than_ethernet() {
    case_shorter_than_ethernet_refused(Hook::Xdp);
}

/// Hiding a 10-byte frame behind 4 bytes of XDP metadata: kernels with the frags rework of the
/// XDP test run (6.18 among them) check the input minus the metadata against `ETH_HLEN` and
/// refuse it; older ones run the program on the 10 bytes, which must then count as malformed.
#[test]
fn xdp_short_frame_behind_metadata_is_refused_or_malformed() {
    let mut input = vec![0u8; 4];
    input.extend_from_slice(&v4_udp_frame(Hook::Xdp, 50)[..10]);
    let ctx = xdp_md_ctx(4, 14);
    let h = Harness::new(Hook::Xdp);
    let opts = TestRunOptions {
        data_in: Some(&input),
        ctx_in: Some(&ctx),
        ..TestRunOptions::default()
    };
    if h.run_unless_refused(opts) {
        h.assert_no_flow(Hook::Xdp.iface(10, 1, 0, 10));
    }
}

/// `struct xdp_md` as passed in `ctx_in`: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex. A `data_end` short of the input puts the rest of the frame in
/// fragments.
fn xdp_md_ctx(data: u32, data_end: u32) -> Vec<u8> {
    [data, data_end, 0, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

/// Runs `frame` with only its first `linear` bytes in the linear part of the XDP buffer. Returns
/// false, with a note, on kernels that want `data_end` to cover the whole input.
fn run_split(h: &Harness, frame: &[u8], linear: u32) -> bool {
    let ctx = xdp_md_ctx(0, linear);
    let accepted = h.run_unless_refused(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        ..TestRunOptions::default()
    });
    if !accepted {
        eprintln!(
            "NOTE: this kernel refuses XDP test runs whose linear part is shorter than the input; \
             the split-frame checks did not run"
        );
    }
    accepted
}

/// The nearest the kernel allows to a frame shorter than an Ethernet header: a 14-byte frame
/// with only 10 bytes in the linear part, the rest in a fragment. The program reads headers from
/// the linear part only, so it cannot see the ethertype: malformed, and counted at its whole
/// length (`bpf_xdp_get_buff_len`).
#[test]
fn xdp_linear_part_shorter_than_ethernet_is_malformed() {
    let frame = &v4_udp_frame(Hook::Xdp, 50)[..14];
    let h = Harness::new(Hook::Xdp);
    if !run_split(&h, frame, 10) {
        return;
    }
    h.assert_no_flow(Hook::Xdp.iface(14, 1, 0, 14));
}

/// Pins down that headers are read from the linear part only. A valid IPv4/UDP frame whose IPv4
/// header straddles the end of the linear part (20 bytes) counts as malformed; with the IPv4
/// header and the ports inside it (40 bytes) it is parsed in full. Drivers put at least the
/// headers in the first buffer, so this only matters for frames built like these.
#[test]
fn xdp_headers_are_read_from_the_linear_part() {
    let frame = v4_udp_frame(Hook::Xdp, 50);
    let split = Harness::new(Hook::Xdp);
    if !run_split(&split, &frame, 20) {
        return;
    }
    split.assert_no_flow(Hook::Xdp.iface(92, 1, 0, 92));

    let whole = Harness::new(Hook::Xdp);
    assert!(run_split(&whole, &frame, 40));
    assert_eq!(
        whole.iface(),
        Hook::Xdp.iface(92, 1, 0, 0),
        "{}",
        maps::IFACE_STATS
    );
    whole.assert_flows(&[(key_v4(0, PROTO_UDP, true), Hook::Xdp.flow(92, 1))]);
}

#[test]
fn xdp_ipv4_ihl_below_five_is_malformed() {
    case_ihl_below_five(Hook::Xdp);
}

#[test]
fn xdp_version_6_in_ipv4_ethertype_is_malformed() {
    case_version_6_in_ipv4_ethertype(Hook::Xdp);
}

#[test]
fn xdp_total_length_below_header_is_malformed() {
    case_total_length_below_header(Hook::Xdp);
}

#[test]
fn xdp_track_flows_off_counts_interface_only() {
    case_track_flows_off(Hook::Xdp);
}

/// A 9000-byte frame does not fit one page: the kernel builds a multi-buffer frame (the program
/// is `xdp.frags`), and the program counts its whole length, not just the linear part.
#[test]
fn xdp_multi_buffer_frame_counts_whole_length() {
    let frame = v4_udp_frame(Hook::Xdp, 9000 - (14 + 20 + 8));
    assert_eq!(frame.len(), 9000);
    let mut out = vec![0u8; frame.len()];
    let h = Harness::new(Hook::Xdp);
    h.run_opts(TestRunOptions {
        data_in: Some(&frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    });
    h.assert_iface(Hook::Xdp.iface(9000, 1, 0, 0));
    h.assert_flows(&[(key_v4(0, PROTO_UDP, true), Hook::Xdp.flow(9000, 1))]);
}

// ---------------------------------------------------------------------------------------------
// TC (egress)
// ---------------------------------------------------------------------------------------------

#[test]
fn tc_two_ipv4_flows_local_is_source() {
    case_two_ipv4_flows(Hook::TcEgress);
}

#[test]
fn tc_cache_busy_set_sends_newcomer_to_flow_map() {
    case_cache_busy_set_sends_newcomer_to_flow_map(Hook::TcEgress);
}

#[test]
fn tc_cache_quiet_slot_is_handed_over() {
    case_cache_quiet_slot_is_handed_over(Hook::TcEgress);
}

#[test]
fn tc_repeat_counts_every_run_in_one_flow() {
    case_repeat(Hook::TcEgress);
}

#[test]
fn tc_ipv6_udp() {
    case_ipv6_udp(Hook::TcEgress);
}

#[test]
fn tc_ipv6_hop_by_hop_then_udp_has_ports() {
    case_ipv6_hop_by_hop(Hook::TcEgress);
}

#[test]
fn tc_ipv6_non_first_fragment_has_no_ports() {
    case_ipv6_fragments(Hook::TcEgress);
}

#[test]
fn tc_ipv4_non_first_fragment_has_no_ports() {
    case_ipv4_fragments(Hook::TcEgress);
}

#[test]
fn tc_vlan_id_recorded() {
    case_vlan(Hook::TcEgress);
}

#[test]
fn tc_qinq_records_outer_vlan() {
    case_qinq(Hook::TcEgress);
}

#[test]
fn tc_icmp_has_no_ports() {
    case_icmp(Hook::TcEgress);
}

#[test]
fn tc_truncated_udp_header_counts_with_ports_zero() {
    case_truncated_udp_header(Hook::TcEgress);
}

#[test]
fn tc_arp_is_non_ip() {
    case_arp(Hook::TcEgress);
}

/// An IPv4 or IPv6 ethertype followed by less than a whole IPv4 (20 bytes) or IPv6 (40 bytes)
/// header. Kernels with commit 12bec2bd4b76 ("bpf: reject short IPv4/IPv6 inputs in
/// bpf_prog_test_run_skb", backported to the stable series, 6.18 among them) refuse these skb
/// test runs; older ones run the classifier, which must count each as malformed. The cut
/// headers reach the classifier on every kernel behind a VLAN tag (the tests below).
#[test]
fn tc_cut_ip_headers_are_refused_or_malformed() {
    let hook = Hook::TcEgress;
    let mut v4 = ipv4(hook, PROTO_UDP, 0, &udp(hook, 50));
    v4.truncate(15);
    let mut v6 = ipv6(hook, PROTO_UDP, &udp(hook, 50));
    v6.truncate(30);
    for frame in [
        ethernet(hook, ETH_P_IP, &[]),
        ethernet(hook, ETH_P_IP, &v4),
        ethernet(hook, ETH_P_IPV6, &v6),
    ] {
        let h = Harness::new(hook);
        if h.run_unless_refused(TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        }) {
            h.assert_no_flow(hook.iface(len(&frame), 1, 0, 1));
        }
    }
}

#[test]
fn tc_ipv4_header_cut_behind_vlan_tag_is_malformed() {
    case_ipv4_header_cut_behind_vlan(Hook::TcEgress);
}

#[test]
fn tc_ipv6_header_cut_behind_vlan_tag_is_malformed() {
    case_ipv6_header_cut_behind_vlan(Hook::TcEgress);
}

#[test]
fn tc_vlan_tag_cut_short_is_malformed() {
    case_vlan_tag_cut(Hook::TcEgress);
}

#[test]
fn tc_kernel_refuses_frame_shorter_than_ethernet() {
    case_shorter_than_ethernet_refused(Hook::TcEgress);
}

#[test]
fn tc_ipv4_ihl_below_five_is_malformed() {
    case_ihl_below_five(Hook::TcEgress);
}

#[test]
fn tc_version_6_in_ipv4_ethertype_is_malformed() {
    case_version_6_in_ipv4_ethertype(Hook::TcEgress);
}

#[test]
fn tc_total_length_below_header_is_malformed() {
    case_total_length_below_header(Hook::TcEgress);
}

#[test]
fn tc_track_flows_off_counts_interface_only() {
    case_track_flows_off(Hook::TcEgress);
}

/// `struct __sk_buff` as passed in `ctx_in`: the kernel accepts a prefix of it, and of the
/// fields here only `ifindex` (offset 40) and `gso_segs` (offset 164) may be non-zero.
fn sk_buff_ctx(ifindex: u32, gso_segs: u32) -> Vec<u8> {
    let mut ctx = vec![0u8; 168];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
    ctx
}

/// The classifier keys by the skb's device, not a fixed one: on a veth end named in the
/// context, both the interface entry and the flow carry that ifindex.
#[test]
fn tc_records_the_skb_device() {
    in_netns_with_veth(|ifindex| {
        let hook = Hook::TcEgress;
        let frame = v4_udp_frame(hook, 50);
        let ctx = sk_buff_ctx(ifindex, 0);
        let mut h = Harness::new(hook);
        h.claim(ifindex);
        h.run_opts(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        });
        h.assert_iface(hook.iface(92, 1, 0, 0));
        h.assert_flows(&[(
            FlowKey {
                ifindex,
                ..key_v4(0, PROTO_UDP, true)
            },
            hook.flow(92, 1),
        )]);
    });
}

/// An interface with an ifindex far past the array's size counts in its slot
/// (`ifindex % IFACE_SLOTS`) once it has it; while another interface holds that slot it counts
/// in the overflow hash, with the same figures, and the slot keeps its holder's counts.
#[test]
fn tc_counts_a_large_ifindex_in_its_slot_or_else_the_overflow_map() {
    let index = IFACE_SLOTS + 3000;
    in_netns_with_veth_at(Some(index), move |ifindex| {
        assert_eq!(ifindex, index, "ip link add ... index {index}");
        let hook = Hook::TcEgress;
        let frame = v4_udp_frame(hook, 50);
        let ctx = sk_buff_ctx(ifindex, 0);
        let run = |h: &Harness, times: usize| {
            for _ in 0..times {
                h.run_opts(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    ..TestRunOptions::default()
                });
            }
        };
        let high_keys = |h: &Harness| -> Vec<u32> {
            let high: PerCpuHashMap<_, u32, IfaceCounters> = PerCpuHashMap::try_from(
                h.ebpf
                    .map(maps::IFACE_STATS_HIGH)
                    .expect(maps::IFACE_STATS_HIGH),
            )
            .unwrap_or_else(|e| panic!("{} is a per-CPU hash: {e}", maps::IFACE_STATS_HIGH));
            high.keys().map(|k| k.expect("key")).collect()
        };

        // Its own slot.
        let mut h = Harness::new(hook);
        h.claim(ifindex);
        run(&h, 3);
        h.assert_iface(hook.iface(3 * 92, 3, 0, 0));
        assert_eq!(high_keys(&h), [0u32; 0], "nothing in the overflow hash");

        // The slot held by another interface (the same remainder, a smaller index).
        let mut h = Harness::new(hook);
        h.claim(index - IFACE_SLOTS);
        h.ifindex = ifindex;
        run(&h, 3);
        assert_eq!(
            h.iface(),
            hook.iface(3 * 92, 3, 0, 0),
            "{}",
            maps::IFACE_STATS_HIGH
        );
        assert_eq!(
            high_keys(&h),
            [index],
            "the overflow hash holds the interface"
        );
    });
}

/// Giving out a slot starts its counters from zero (an interface made again with the same
/// ifindex, or another one after it, must not inherit counts), and a slot that a monitored
/// interface holds is not given to another: its counts stay.
#[test]
fn tc_slot_given_again_starts_from_zero_and_a_held_slot_is_kept() {
    let hook = Hook::TcEgress;
    let frame = v4_udp_frame(hook, 50);
    let h = Harness::new(hook);
    h.run_repeat(&frame, 3);
    h.assert_iface(hook.iface(3 * 92, 3, 0, 0));
    let mut table = IfaceTable::open(&h.ebpf).expect(maps::IFACE_STATS);
    // Another interface with the same remainder, while loopback is monitored: refused.
    let other = LOOPBACK_IFINDEX + IFACE_SLOTS;
    let held = [LOOPBACK_IFINDEX].into_iter().collect();
    assert!(!table.claim(other, &held), "a held slot was given away");
    assert_eq!(
        h.iface(),
        hook.iface(3 * 92, 3, 0, 0),
        "the holder's counts"
    );
    assert_eq!(
        table.read(other),
        IfaceCounters::default(),
        "{other} has no slot"
    );
    // Loopback given its slot again (made again, say): from zero.
    assert!(table.claim(LOOPBACK_IFINDEX, &held), "its own slot");
    assert_eq!(
        h.iface_entries(),
        [],
        "counts left after the slot was given again"
    );
    h.run_repeat(&frame, 2);
    assert_eq!(table.read(LOOPBACK_IFINDEX), hook.iface(2 * 92, 2, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// cgroup_skb (per socket)
// ---------------------------------------------------------------------------------------------

/// What a socket's entry must hold after IPv4/UDP packets between the host and the peer. The
/// test run's socket is not connected, so one whose first packet is received is a server.
fn udp_socket(bytes: u64, packets: u64, egress: bool, loopback: bool) -> SockStats {
    socket(PROTO_UDP, bytes, packets, egress, loopback)
}

/// What a socket's entry must hold after IPv4 packets of `proto` between the host and the peer.
fn socket(proto: u8, bytes: u64, packets: u64, egress: bool, loopback: bool) -> SockStats {
    let mut stats = SockStats {
        family: FAMILY_IPV4,
        proto,
        flags: if proto == PROTO_UDP && !egress {
            SOCK_FLAG_SERVER
        } else {
            0
        },
        local_port: HOST_PORT,
        remote_port: PEER_PORT,
        local_addr: v4_addr(HOST_V4),
        remote_addr: v4_addr(PEER_V4),
        ..SockStats::default()
    };
    let (b, p) = match (egress, loopback) {
        (true, false) => (&mut stats.tx_bytes, &mut stats.tx_packets),
        (false, false) => (&mut stats.rx_bytes, &mut stats.rx_packets),
        (true, true) => (&mut stats.lo_tx_bytes, &mut stats.lo_tx_packets),
        (false, true) => (&mut stats.lo_rx_bytes, &mut stats.lo_rx_packets),
    };
    *b = bytes;
    *p = packets;
    stats
}

/// The repeats of one run share its dummy socket: one entry, counted from the IP header
/// (the frame minus its 14-byte Ethernet header), on the loopback side of the counters.
fn case_socket_on_loopback(hook: Hook) {
    let frame = v4_udp_frame(hook, 50);
    let h = Harness::new(hook);
    h.run_repeat(&frame, 3);
    assert_eq!(
        h.socket(),
        udp_socket(3 * 78, 3, hook.egress(), true),
        "{}",
        maps::SOCK_STATS
    );
    assert_eq!(h.counter(counter::SOCK_MAP_FULL), 0, "SOCK_MAP_FULL");
    // The socket programs leave the interface and flow maps alone.
    assert_eq!(h.iface_entries(), [], "{}", maps::IFACE_STATS);
    h.assert_flows(&[]);
}

#[test]
fn sock_egress_counts_ip_bytes_on_loopback() {
    case_socket_on_loopback(Hook::SockEgress);
}

#[test]
fn sock_ingress_counts_ip_bytes_on_loopback() {
    case_socket_on_loopback(Hook::SockIngress);
}

/// A GSO buffer counts as the `gso_segs` packets it leaves as, each with its own IP and UDP
/// header on the wire: 78 bytes in the buffer plus 3 more copies of the 28 header bytes.
#[test]
fn sock_egress_counts_gso_segments() {
    let hook = Hook::SockEgress;
    let frame = v4_udp_frame(hook, 50);
    let ctx = sk_buff_ctx(0, 4);
    let h = Harness::new(hook);
    h.run_opts(TestRunOptions {
        data_in: Some(&frame),
        ctx_in: Some(&ctx),
        ..TestRunOptions::default()
    });
    assert_eq!(
        h.socket(),
        udp_socket(78 + 3 * 28, 4, true, true),
        "{}",
        maps::SOCK_STATS
    );
}

/// Each run has a socket of its own: two runs, two entries.
#[test]
fn sock_egress_keys_by_socket_cookie() {
    let hook = Hook::SockEgress;
    let frame = v4_udp_frame(hook, 50);
    let h = Harness::new(hook);
    h.run(&frame);
    h.run(&frame);
    let sockets = h.sockets();
    assert_eq!(sockets.len(), 2, "{}: {sockets:?}", maps::SOCK_STATS);
    assert_ne!(sockets[0].0, sockets[1].0, "two sockets, two cookies");
    for (cookie, stats) in sockets {
        assert_ne!(cookie, 0);
        assert_eq!(
            stats,
            udp_socket(78, 1, true, true),
            "{}[{cookie}]",
            maps::SOCK_STATS
        );
    }
}

/// Off the loopback, the same packets land in the plain tx/rx counters.
#[test]
fn sock_counts_off_loopback_apart() {
    in_netns_with_veth(|ifindex| {
        for hook in [Hook::SockEgress, Hook::SockIngress] {
            let frame = v4_udp_frame(hook, 50);
            let ctx = sk_buff_ctx(ifindex, 0);
            let h = Harness::new(hook);
            h.run_opts(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            });
            assert_eq!(
                h.socket(),
                udp_socket(78, 1, hook.egress(), false),
                "{hook:?}"
            );
        }
    });
}

/// A TCP socket's entry holds the socket's state at its packets. The test run's socket was
/// never connected (`sock_init_data` leaves it in TCP_CLOSE), so it is neither the client (its
/// first packet did not leave in SYN_SENT) nor the server (no handshake was held for it).
#[test]
fn sock_records_tcp_state_of_tcp_sockets() {
    for hook in [Hook::SockEgress, Hook::SockIngress] {
        let frame = v4_tcp_frame(hook, 100);
        let h = Harness::new(hook);
        h.run_repeat(&frame, 2);
        let want = SockStats {
            tcp_state: TCP_CLOSE,
            ..socket(PROTO_TCP, 2 * 140, 2, hook.egress(), true)
        };
        assert_eq!(h.socket(), want, "{hook:?}");
        assert_eq!(
            h.counter(counter::HANDSHAKE_HELD),
            0,
            "{hook:?}: HANDSHAKE_HELD"
        );
        assert_eq!(
            h.counter(counter::HANDSHAKE_SETTLED),
            0,
            "{hook:?}: HANDSHAKE_SETTLED"
        );
    }
}

/// A UDP socket has no TCP state, though the kernel keeps TCP_CLOSE (7) or TCP_ESTABLISHED (1)
/// in its `sk_state`; only a received first packet makes it a server, and the flag stays.
#[test]
fn sock_udp_has_no_tcp_state_and_is_a_server_when_it_receives_first() {
    for hook in [Hook::SockEgress, Hook::SockIngress] {
        let frame = v4_udp_frame(hook, 50);
        let h = Harness::new(hook);
        h.run_repeat(&frame, 3);
        let got = h.socket();
        assert_eq!(got.tcp_state, 0, "{hook:?}: tcp_state");
        let want_flags = if hook.egress() { 0 } else { SOCK_FLAG_SERVER };
        assert_eq!(got.flags, want_flags, "{hook:?}: flags");
    }
}

// ---------------------------------------------------------------------------------------------
// cgroup_skb and sock_release attached, with real TCP sockets
// ---------------------------------------------------------------------------------------------

/// The kernel's cookie of a socket (`SO_COOKIE`), the key of its `SOCK_STATS` entry.
fn socket_cookie(socket: &impl std::os::fd::AsRawFd) -> u64 {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket and an 8-byte buffer whose length is passed along.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", io::Error::last_os_error());
    cookie
}

/// Loads the object and attaches the two socket programs at the cgroup v2 root, as kaipo does
/// (they see every socket of the machine while the test runs; the tests look only at their own
/// sockets, by cookie), and the release hook when asked.
fn attach_socket_programs(with_release: bool) -> Ebpf {
    use aya::programs::{CgroupAttachMode, CgroupSkbAttachType, CgroupSock};

    require_root();
    let root = kaipo::collect::ebpf::cgroup2_root().expect("a cgroup v2 hierarchy");
    let cgroup = std::fs::File::open(&root).expect("opening the cgroup v2 root");
    let object = object(None, &ObjectValues::default()).expect("preparing the object");
    let mut ebpf = EbpfLoader::new()
        .load(object.bytes())
        .expect("loading the object");
    for (name, attach_type) in [
        ("kaipo_sock_ingress", CgroupSkbAttachType::Ingress),
        ("kaipo_sock_egress", CgroupSkbAttachType::Egress),
    ] {
        let prog: &mut CgroupSkb = ebpf
            .program_mut(name)
            .expect("program")
            .try_into()
            .expect("cgroup_skb");
        prog.load().expect("load");
        prog.attach(&cgroup, attach_type, CgroupAttachMode::Single)
            .expect("attach");
    }
    if with_release {
        let release: &mut CgroupSock = ebpf
            .program_mut("kaipo_sock_release")
            .expect("program")
            .try_into()
            .expect("cgroup_sock");
        release.load().expect("load");
        release
            .attach(&cgroup, CgroupAttachMode::Single)
            .expect("attach");
    }
    ebpf
}

/// A TCP connection over loopback to a listener at `listen`, from a client connecting to
/// `connect`, whose packets have `ip_header`-byte IP headers; the attached programs must leave:
///
/// - on the client, whose first packet is its SYN sent in SYN_SENT, flag client;
/// - on the accepted socket, the handshake taken over from the listener: the client's SYN
///   (20 bytes of options: MSS, SACK-permitted, timestamps, window scale) and ACK (12:
///   timestamps) besides the request, and the SYN-ACK; so it is the server. The listener is
///   left with no entry at all;
/// - ESTABLISHED at the last packet on both; at close, ESTABLISHED for the client (it closes
///   first) and CLOSE_WAIT for the server (the client's FIN came in).
///
/// BPF_PROG_TEST_RUN cannot show this: its socket is a dummy that is never a listener, never
/// connects and is never released.
fn case_attached_connection(listen: &str, connect: std::net::IpAddr, ip_header: u64) {
    use std::{
        io::{Read as _, Write as _},
        net::{SocketAddr, TcpListener, TcpStream},
    };

    use aya::maps::RingBuf;
    use kaipo_common::{Event, EVENT_SOCK_CLOSE, SOCK_FLAG_CLIENT};

    const REQUEST: u64 = 100;
    const ESTABLISHED: u8 = 1;
    const CLOSE_WAIT: u8 = 8;
    let (syn, segment) = (ip_header + 40, ip_header + 32);

    let mut ebpf = attach_socket_programs(true);
    let listener = TcpListener::bind(listen).expect("bind");
    let to = SocketAddr::new(connect, listener.local_addr().unwrap().port());
    let mut client = TcpStream::connect(to).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
    }
    client.write_all(&[0x6b; REQUEST as usize]).expect("write");
    let mut got = [0u8; REQUEST as usize];
    server.read_exact(&mut got).expect("read");
    let (client_cookie, server_cookie, listener_cookie) = (
        socket_cookie(&client),
        socket_cookie(&server),
        socket_cookie(&listener),
    );

    let stats: HashMap<_, u64, SockStats> =
        HashMap::try_from(ebpf.map("SOCK_STATS").expect("SOCK_STATS")).expect("a hash");
    let entry = |cookie: u64| stats.get(&cookie, 0).ok();
    let c = entry(client_cookie).expect("the client's entry");
    let s = entry(server_cookie).expect("the accepted socket's entry");
    println!("client {c:?}\nserver {s:?}");
    assert_eq!(entry(listener_cookie), None, "the listener keeps no entry");
    // Client: SYN, ACK, request out; the SYN-ACK and perhaps an ACK of the request in.
    assert_eq!(
        (c.lo_tx_bytes, c.lo_tx_packets),
        (syn + segment + segment + REQUEST, 3),
        "client tx"
    );
    assert_eq!(
        (c.flags, c.tcp_state),
        (SOCK_FLAG_CLIENT, ESTABLISHED),
        "client flags and state"
    );
    // Server: the same three in, its handshake included; the SYN-ACK and perhaps that ACK out.
    assert_eq!(
        (s.lo_rx_bytes, s.lo_rx_packets),
        (syn + segment + segment + REQUEST, 3),
        "accepted socket rx"
    );
    assert!(
        s.lo_tx_packets >= 1 && s.lo_tx_bytes == syn + segment * (s.lo_tx_packets - 1),
        "accepted socket tx: the SYN-ACK, then ACKs: {s:?}"
    );
    assert_eq!(
        (s.lo_tx_bytes, s.lo_tx_packets),
        (c.lo_rx_bytes, c.lo_rx_packets),
        "what the server sent, the client received"
    );
    assert_eq!(
        (s.flags, s.tcp_state),
        (SOCK_FLAG_SERVER, ESTABLISHED),
        "accepted socket flags and state"
    );
    assert_eq!(
        (s.rx_bytes, s.tx_bytes, c.rx_bytes, c.tx_bytes),
        (0, 0, 0, 0),
        "all on loopback"
    );

    drop(client);
    let extra = server.read(&mut got).expect("reading the client's FIN");
    assert_eq!(extra, 0, "end of stream");
    drop(server);
    drop(listener);

    // The release hook runs inside close(), so both events are in the ring buffer by now.
    let mut events = RingBuf::try_from(ebpf.take_map("EVENTS").expect("EVENTS")).expect("ring");
    let mut closed = StdHashMap::new();
    for _ in 0..100_000 {
        let Some(item) = events.next() else { break };
        let event = Event::from_bytes(&item).expect("an event");
        if event.kind == EVENT_SOCK_CLOSE
            && [client_cookie, server_cookie, listener_cookie].contains(&event.cookie)
        {
            closed.insert(event.cookie, event.stats.tcp_state);
        }
    }
    assert_eq!(
        closed,
        StdHashMap::from([(client_cookie, ESTABLISHED), (server_cookie, CLOSE_WAIT)]),
        "state at close by cookie (client {client_cookie}, server {server_cookie}; the \
         listener has no entry, so no close event)"
    );
}

#[test]
fn attached_ipv4_connection_roles_state_and_handshake() {
    case_attached_connection("127.0.0.1:0", Ipv4Addr::LOCALHOST.into(), 20);
}

#[test]
fn attached_ipv6_connection_roles_state_and_handshake() {
    case_attached_connection("[::1]:0", Ipv6Addr::LOCALHOST.into(), 40);
}

/// An IPv6 listener that accepts IPv4 (a v4-mapped connection): IPv4 packets on IPv6 sockets.
#[test]
fn attached_dual_stack_connection_roles_state_and_handshake() {
    case_attached_connection("[::]:0", Ipv4Addr::LOCALHOST.into(), 20);
}

/// Sends one bare SYN (no options, 40 bytes) from `src` to `dst` through a raw socket.
fn send_raw_syn(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    let mut packet = [0u8; 40];
    packet[..20].copy_from_slice(&ipv4_header(src.0, dst.0));
    let tcp = &mut packet[20..];
    tcp[0..2].copy_from_slice(&src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&7u32.to_be_bytes()); // sequence
    tcp[12] = 5 << 4; // data offset: no options
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64_000u16.to_be_bytes());
    // The checksum over the pseudo-header (addresses, protocol, length) and the segment.
    let mut sum: u32 = 6 + 20;
    for pair in src.0.octets().chunks(2).chain(dst.0.octets().chunks(2)) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    for pair in tcp.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());

    // SAFETY: plain socket calls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", io::Error::last_os_error());
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.0.octets()),
            },
            sin_zero: [0; 8],
        };
        let sent = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(sent, 40, "sendto: {err}");
    }
}

/// An IPv4 header for a 40-byte TCP packet (the kernel fills in the checksum of a raw socket's
/// header).
fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&40u16.to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64;
    h[9] = PROTO_TCP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h
}

/// A handshake that ends in a reset before any socket is accepted stays the listener's: a bare
/// SYN from 127.0.0.2, where nothing listens, draws the listener's SYN-ACK (44 bytes: MSS is
/// its only option, as the SYN offered none), which the kernel answers with a reset (40
/// bytes). All three end up on the listener's entry, none lost, and the listener is a server
/// in LISTEN.
#[test]
fn attached_reset_handshake_goes_back_to_the_listener() {
    use std::net::TcpListener;

    use kaipo_common::TCP_LISTEN;

    let ebpf = attach_socket_programs(false);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let peer = (Ipv4Addr::new(127, 0, 0, 2), 47_111);
    send_raw_syn(peer, (Ipv4Addr::LOCALHOST, port));

    let stats: HashMap<_, u64, SockStats> =
        HashMap::try_from(ebpf.map("SOCK_STATS").expect("SOCK_STATS")).expect("a hash");
    let cookie = socket_cookie(&listener);
    let want = SockStats {
        lo_rx_bytes: 40 + 40,
        lo_rx_packets: 2,
        lo_tx_bytes: 44,
        lo_tx_packets: 1,
        family: FAMILY_IPV4,
        proto: PROTO_TCP,
        flags: SOCK_FLAG_SERVER,
        tcp_state: TCP_LISTEN,
        local_port: port,
        remote_port: peer.1,
        local_addr: v4_addr(Ipv4Addr::LOCALHOST),
        remote_addr: v4_addr(peer.0),
        ..SockStats::default()
    };
    // The SYN-ACK and the reset normally go out within the sendto; softirq work that the
    // kernel defers to ksoftirqd may take a moment more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut got = stats.get(&cookie, 0).ok();
    while got != Some(want) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        got = stats.get(&cookie, 0).ok();
    }
    assert_eq!(got, Some(want), "the listener's entry");
}

/// A released socket's entry is marked closed by the release hook (a lost close event then
/// cannot leave it in the map), and a segment that reaches the socket after userspace removed
/// the entry starts an entry marked closed as well: here the server's FIN, which the client,
/// closed already and waiting in FIN_WAIT2, receives and acknowledges. Fails without the
/// marks: the entries would keep the client's flags alone.
#[test]
fn released_sockets_are_marked_closed_even_after_their_entry_went() {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream},
        time::{Duration, Instant},
    };

    use kaipo_common::{SOCK_FLAG_CLIENT, SOCK_FLAG_CLOSED};

    require_root();
    // IPv4 header and TCP header with timestamps, no payload.
    const SEGMENT: u64 = 20 + 32;
    let mut ebpf = attach_socket_programs(true);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(&[0x6b; 10]).expect("write");
    let mut got = [0u8; 10];
    server.read_exact(&mut got).expect("read");
    let (client_cookie, server_cookie) = (socket_cookie(&client), socket_cookie(&server));
    let mut stats: HashMap<_, u64, SockStats> =
        HashMap::try_from(ebpf.map_mut("SOCK_STATS").expect("SOCK_STATS")).expect("a hash");
    let before = stats.get(&client_cookie, 0).expect("the client's entry");
    assert_eq!(before.flags, SOCK_FLAG_CLIENT, "open: not marked");

    // Kept a full socket in FIN_WAIT2 once closed: with the default FIN timeout the kernel
    // would swap it for a time-wait socket, which the socket programs never see.
    let linger: libc::c_int = 120;
    // SAFETY: a valid socket and option value whose length is passed along.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&client),
            libc::IPPROTO_TCP,
            libc::TCP_LINGER2,
            (&raw const linger).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "TCP_LINGER2");
    drop(client);
    assert_eq!(server.read(&mut got).expect("the client's FIN"), 0);
    // The server acknowledges the FIN, perhaps after a delayed-ACK timer; wait (bounded) for
    // that ACK to reach the client's entry, so nothing else arrives once it is removed.
    let deadline = Instant::now() + Duration::from_secs(2);
    let closed = loop {
        let now = stats
            .get(&client_cookie, 0)
            .expect("the entry stays after close");
        if now.lo_rx_packets > before.lo_rx_packets || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        (closed.flags, closed.lo_rx_packets),
        (
            SOCK_FLAG_CLIENT | SOCK_FLAG_CLOSED,
            before.lo_rx_packets + 1
        ),
        "released: marked, counters kept, the ACK of its FIN counted"
    );
    let server_now = stats.get(&server_cookie, 0).expect("the server's entry");
    assert_eq!(
        server_now.flags & SOCK_FLAG_CLOSED,
        0,
        "the server is still open"
    );

    // Userspace forgets the client's entry; then the server closes too.
    stats.remove(&client_cookie).expect("removing the entry");
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(2);
    let late = loop {
        match stats.get(&client_cookie, 0) {
            Ok(late) if late.lo_tx_packets > 0 => break Some(late),
            _ if Instant::now() > deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let late = late.expect("the client's last segments start a new entry");
    assert_eq!(
        (
            late.flags,
            late.lo_rx_packets,
            late.lo_rx_bytes,
            late.lo_tx_packets,
            late.lo_tx_bytes
        ),
        (SOCK_FLAG_CLOSED, 1, SEGMENT, 1, SEGMENT),
        "the server's FIN in, the client's ACK out, on an entry marked closed"
    );
}

/// CPUs the kernel may run a program on.
fn cpus() -> u32 {
    u32::try_from(aya::util::nr_cpus().expect("the possible CPUs")).expect("a CPU count")
}
