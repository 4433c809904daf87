//! The eBPF collector: loads kaipo's kernel programs, attaches them, and reads their maps.
//!
//! Everything attached is owned by the [`EbpfCollector`] through fd-based links (or, for the TC
//! netlink fallback, a handle aya removes on drop), so dropping it, on any exit path, leaves
//! nothing attached. A SIGKILL closes the fds, which detaches the links as well.

pub mod attach;
mod batch;
mod btf_layout;
pub mod cgroup;
pub mod error;
mod flow_cache;
mod iface_table;
pub mod kfunc;
mod mapped;
mod owners;
pub mod slots;
mod sweep;

use std::io;

use std::{mem::size_of, os::fd::AsFd as _};

use aya::{
    maps::{HashMap, IterableMap as _, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    Btf, Ebpf, EbpfLoader,
};
use kaipo_common::{
    counter, Event, FlowCounters, FlowKey, FlowSlot, IfaceCounters, OwnerSpill, SockStats,
};
use tokio::io::{unix::AsyncFd, Interest};

pub use self::{
    btf_layout::{running_kernel_cookie_read, running_kernel_sk_lock_owned, CookieRead},
    cgroup::{cgroup2_root, open_cgroup2},
    error::EbpfCollectError,
    iface_table::IfaceTable,
};
use super::{iface, Degradation, Interface, KernelSample, MapUsage};
use crate::privilege;

/// The object built from `kaipo-ebpf` by this crate's build script, before its kernel-function
/// calls are made real ([`object`]).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kaipo"));

/// The values known only at load time that [`object`] writes into the instructions (see
/// `kaipo_common::PLACEHOLDER_CONST`), other than those of the running kernel.
#[derive(Clone, Copy, Debug)]
pub struct ObjectValues {
    /// Sockets take slots (see [`load`]).
    pub sock_slots: bool,
    /// The interface programs count flows as well as interfaces.
    pub track_flows: bool,
    /// The flow cache's slots per CPU, a power of two.
    pub flow_cache_slots: u32,
    /// Jiffies a cached flow must have been quiet before another flow takes its slot.
    pub flow_slot_age: u32,
}

impl Default for ObjectValues {
    /// As a test that loads single programs wants them: no socket slots, flows on, the
    /// object's own flow cache size.
    fn default() -> Self {
        Self {
            sock_slots: false,
            track_flows: true,
            flow_cache_slots: kaipo_common::FLOW_CACHE_SLOTS,
            flow_slot_age: DEFAULT_FLOW_SLOT_AGE,
        }
    }
}

/// [`OBJECT`] ready to load: with the socket programs' direct cookie read where `cookie_read`
/// is given (see `kaipo_common::PLACEHOLDER_RDONLY_CAST`), else with their helper path alone,
/// and the running kernel's values and `values` written into the instructions that use them
/// (see `kaipo_common::PLACEHOLDER_CONST`). Public so tests and benchmarks can load single
/// programs from it.
pub fn object(
    cookie_read: Option<&CookieRead>,
    values: &ObjectValues,
) -> Result<kfunc::Object, EbpfCollectError> {
    use kaipo_common::load_const;
    let cast = cookie_read.map_or(kfunc::Cast::Null, |c| kfunc::Cast::Kfunc(c.rdonly_cast));
    let mut consts: kfunc::Consts = [0; load_const::COUNT];
    if let Some(c) = cookie_read {
        consts[load_const::SOCK_BTF_ID as usize] = c.sock;
        consts[load_const::SK_COOKIE_AT as usize] = c.cookie_at;
    }
    consts[load_const::SOCK_SLOTS_ON as usize] = u32::from(values.sock_slots);
    consts[load_const::SK_LOCK_OWNED_AT as usize] = running_kernel_sk_lock_owned().unwrap_or(0);
    let slots = values.flow_cache_slots.max(1).next_power_of_two();
    consts[load_const::TRACK_FLOWS as usize] = u32::from(values.track_flows);
    consts[load_const::FLOW_CACHE_MASK as usize] = slots - 1;
    consts[load_const::FLOW_CACHE_SHIFT as usize] = slots.trailing_zeros();
    consts[load_const::FLOW_SLOT_AGE as usize] = values.flow_slot_age;
    let (object, found) = kfunc::patch(OBJECT, cast, &consts).map_err(EbpfCollectError::Patch)?;
    if found == 0 {
        return Err(EbpfCollectError::Patch(
            "no placeholder call for the socket cookie".into(),
        ));
    }
    Ok(object)
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Interfaces to attach to; empty means every interface that is up, except loopback.
    pub ifaces: Vec<String>,
    /// Programs on the monitored interfaces count every frame per interface and per flow,
    /// which joins interface bytes to sockets (the attributed share, `--iface` scoping). Off,
    /// no program runs on the interfaces at all: their totals are the kernel's own counters,
    /// read each sample, and only the socket programs run per packet.
    pub track_flows: bool,
    pub max_flows: u32,
    pub max_sockets: u32,
    /// Bytes of the lifecycle ring buffer (a power of two, at least a page); `None` keeps
    /// `kaipo_common::RINGBUF_BYTES`. Small sizes are for tests that make it overflow.
    pub ringbuf_bytes: Option<u32>,
    /// Slots per CPU of the flow cache in front of the flow map (a power of two); `None` sizes
    /// it from the number of CPUs (see [`flow_cache_slots`]).
    pub flow_cache_slots: Option<u32>,
    /// Jiffies a cached flow must have been quiet before another flow takes its slot.
    pub flow_slot_age: u32,
    /// The hook that counts incoming frames.
    pub ingress_hook: crate::collect::backend::IngressHook,
    /// Socket counters in slots reached through each socket's own storage (see `slots`); off,
    /// every socket counts in the shared map (a cookie and a hash lookup per packet).
    pub sock_slots: bool,
    /// Slots for sockets; sockets past them count in the shared map.
    pub slot_count: u32,
    /// The socket programs read each socket's cookie straight from the kernel's socket and find
    /// its slot from it (kernel 6.2 and later); off, or where the kernel refuses it, they find
    /// the slot through the socket's storage, a helper call per packet.
    pub cookie_read: bool,
    /// What to read the cookie with instead of what the running kernel's BTF says (tests of a
    /// kernel that refuses the read).
    pub cookie_read_as: Option<CookieRead>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ifaces: Vec::new(),
            track_flows: true,
            max_flows: kaipo_common::MAX_FLOWS,
            max_sockets: kaipo_common::MAX_SOCKETS,
            ringbuf_bytes: None,
            flow_cache_slots: None,
            flow_slot_age: DEFAULT_FLOW_SLOT_AGE,
            ingress_hook: crate::collect::backend::IngressHook::default(),
            sock_slots: true,
            slot_count: kaipo_common::SOCK_SLOT_COUNT,
            cookie_read: true,
            cookie_read_as: None,
        }
    }
}

/// 100 jiffies: 0.1 s to 1 s depending on the kernel's HZ.
pub const DEFAULT_FLOW_SLOT_AGE: u32 = 100;

/// Memory the flow cache may take over all CPUs together.
const FLOW_CACHE_BUDGET: u64 = 16 << 20;

/// Slots per CPU for the flow cache: `kaipo_common::FLOW_CACHE_SLOTS` (1 MiB per CPU), fewer
/// on machines with so many CPUs that all copies together would pass 16 MiB, never under 1024.
pub fn flow_cache_slots(cpus: usize) -> u32 {
    let slot = size_of::<FlowSlot>() as u64;
    let fit = FLOW_CACHE_BUDGET / (slot * cpus.max(1) as u64);
    let mut slots = kaipo_common::FLOW_CACHE_SLOTS;
    while u64::from(slots) > fit && slots > 1024 {
        slots /= 2;
    }
    slots
}

pub struct EbpfCollector {
    // Maps first: fields drop in order, and the programs (in `ebpf`) should go last.
    iface_table: IfaceTable,
    iface_stats_high: PerCpuHashMap<MapData, u32, IfaceCounters>,
    sock_stats: HashMap<MapData, u64, SockStats>,
    /// Owner reports that found the ring buffer full.
    owner_spill: HashMap<MapData, u64, OwnerSpill>,
    flows: PerCpuHashMap<MapData, FlowKey, FlowCounters>,
    counters: PerCpuArray<MapData, u64>,
    /// DNS answers the kernel copied for names, read at each drain (rare: no wake-up of its
    /// own).
    /// Boxed: the collector is moved about, and a ring buffer's reader is large.
    dns: Box<RingBuf<MapData>>,
    /// DNS records shorter than a capture; only a mismatched object could produce them.
    pub dns_malformed: u64,
    /// The monitored interfaces, in the order of `links`.
    ifaces: Vec<Interface>,
    links: Vec<attach::InterfaceLinks>,
    /// The interfaces the user named (followed by name), or empty for every interface that
    /// is up.
    named: Vec<String>,
    hook: crate::collect::backend::IngressHook,
    degradations: Vec<Degradation>,
    netlink_filters: bool,
    /// Boxed, as `dns`.
    flow_cache: Box<flow_cache::FlowCache>,
    track_flows: bool,
    /// Whether the kernel answers `BPF_MAP_LOOKUP_BATCH` (5.6 on).
    batch_ok: bool,
    /// Socket entries in the previous sample: the next one is sized from it at once rather
    /// than grown by doubling (a copy of the whole table each time).
    sockets_last: usize,
    /// Live flow entries in the previous sample, when counted.
    flows_last: Option<u64>,
    max_sockets: u32,
    max_flows: u32,
    possible_cpus: usize,
    /// Owners of sockets the programs saw no owner of, from the descriptor tables. Boxed, as
    /// `dns`.
    finder: Box<owners::OwnerFinder>,
    /// The socket slots; `None` when every socket counts in the shared map. Boxed, as `dns`.
    slots: Option<Box<slots::Slots>>,
    /// Monitored interfaces that count in their slot of `iface_table` (the others in
    /// `IFACE_STATS_HIGH`).
    iface_slots: crate::fasthash::HashSet<u32>,
    /// Without flows: each monitored interface's kernel counters when kaipo first saw it (its
    /// figures count from there) and as last read.
    kernel_ifaces: crate::fasthash::HashMap<u32, KernelIface>,
    ebpf: Ebpf,
}

/// An interface counted from the kernel's own counters (no flows): what they added since kaipo
/// first read them.
#[derive(Clone, Copy, Default)]
struct KernelIface {
    /// The kernel's counters as last read.
    raw: iface::KernelIfaceStats,
    /// Their growth since the first read.
    total: IfaceCounters,
}

impl KernelIface {
    /// Starts at the interface's counters now; `None` when they cannot be read (it went away
    /// in the meantime).
    fn start(name: &str) -> Option<Self> {
        iface::kernel_stats(name).ok().map(|raw| Self {
            raw,
            total: IfaceCounters::default(),
        })
    }

    /// The growth since the start; the last total when the counters cannot be read now. A
    /// counter that went down (its driver reset it) counts from zero again.
    fn read(&mut self, name: &str) -> IfaceCounters {
        if let Ok(now) = iface::kernel_stats(name) {
            let grown = |now: u64, before: u64| if now >= before { now - before } else { now };
            let t = &mut self.total;
            t.rx_bytes += grown(now.rx_bytes, self.raw.rx_bytes);
            t.rx_packets += grown(now.rx_packets, self.raw.rx_packets);
            t.tx_bytes += grown(now.tx_bytes, self.raw.tx_bytes);
            t.tx_packets += grown(now.tx_packets, self.raw.tx_packets);
            self.raw = now;
        }
        self.total
    }
}

/// The ring buffer of lifecycle events, apart from the collector so that a task can wait on it
/// while another reads the counters.
pub struct EventStream {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Records shorter than an [`Event`]; only a mismatched object could produce them.
    pub malformed: u64,
}

impl EventStream {
    /// Waits until the kernel has written at least one event.
    pub async fn readable(&mut self) -> io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Moves every event now in the ring buffer into `out`.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let ring = self.ring.get_mut();
        let before = out.len();
        while let Some(item) = ring.next() {
            match Event::from_bytes(&item) {
                Some(event) => out.push(event),
                None => self.malformed += 1,
            }
        }
        out.len() - before
    }
}

/// Loads and attaches everything. Fails with a message naming the cause when a core piece
/// (per-socket counting) cannot run; lesser losses are reported as [`Degradation`]s.
pub fn start(opts: &Options) -> Result<(EbpfCollector, EventStream), EbpfCollectError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let missing = privilege::missing(privilege::effective_caps());
        if !missing.is_empty() {
            return Err(EbpfCollectError::NotPermitted {
                missing: missing.join(", "),
            });
        }
    }
    let ifaces = iface::select(&opts.ifaces)?;
    let cgroup = open_cgroup2()?.dir;
    let btf = Btf::from_sys_fs().map_err(|err| EbpfCollectError::Btf(err.to_string()))?;

    let mut notes = Vec::new();
    let lookup = || {
        opts.cookie_read_as
            .map_or_else(running_kernel_cookie_read, Ok)
    };
    let cookie_read = match opts.cookie_read.then(lookup) {
        Some(Ok(found)) => Some(found),
        Some(Err(why)) => {
            notes.push(storage_lookup(why));
            None
        }
        None => None,
    };
    let (mut ebpf, mut slots, mut degradations) = prepare(&btf, opts, cookie_read.as_ref())?;
    if cookie_read.is_some() && slots.is_some() {
        if let Err(err) = attach::load_socket_counters(&mut ebpf) {
            // Nothing is attached yet: start over without the direct read.
            drop(slots);
            (ebpf, slots, degradations) = prepare(&btf, opts, None)?;
            degradations.push(storage_lookup(err.to_string()));
        }
    }
    degradations.append(&mut notes);
    if let Err(why) = running_kernel_sk_lock_owned() {
        degradations.push(Degradation {
            what: "owners of TCP sockets that existed before kaipo, were accepted, or were \
                   handed to another process are found by scanning /proc instead of as they send"
                .into(),
            why,
        });
    }
    attach::sockets(&mut ebpf, &cgroup, &btf, &mut degradations)?;
    let mut iface_slots = crate::fasthash::HashSet::default();
    let mut iface_table = IfaceTable::open(&ebpf)?;
    let mut kernel_ifaces = crate::fasthash::HashMap::default();
    let (links, monitored) = if opts.track_flows {
        // Each interface's counter slot, before its programs can count a frame.
        for iface in &ifaces {
            if iface_table.claim(iface.ifindex, &iface_slots) {
                iface_slots.insert(iface.ifindex);
            }
        }
        let links = attach::interfaces(
            &mut ebpf,
            &ifaces,
            opts.ingress_hook,
            !opts.ifaces.is_empty(),
            &mut degradations,
        )?;
        let monitored = links.iter().map(|l| l.iface.clone()).collect();
        (links, monitored)
    } else {
        for iface in &ifaces {
            if let Some(counted) = KernelIface::start(&iface.name) {
                kernel_ifaces.insert(iface.ifindex, counted);
            }
        }
        degradations.push(without_flows());
        let counted = ifaces
            .into_iter()
            .filter(|i| kernel_ifaces.contains_key(&i.ifindex))
            .collect();
        (Vec::new(), counted)
    };

    let ring = RingBuf::try_from(take(&mut ebpf, kaipo_common::maps::EVENTS)?)
        .map_err(map_err(kaipo_common::maps::EVENTS))?;
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as
    // the `RingBuf` lives, and the `AsyncFd` owns the `RingBuf`.
    let ring =
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|err| {
            EbpfCollectError::Map {
                map: kaipo_common::maps::EVENTS,
                detail: format!("cannot poll the ring buffer: {err}"),
            }
        })?;
    let collector = EbpfCollector {
        iface_table,
        iface_stats_high: PerCpuHashMap::try_from(take(
            &mut ebpf,
            kaipo_common::maps::IFACE_STATS_HIGH,
        )?)
        .map_err(map_err(kaipo_common::maps::IFACE_STATS_HIGH))?,
        sock_stats: HashMap::try_from(take(&mut ebpf, kaipo_common::maps::SOCK_STATS)?)
            .map_err(map_err(kaipo_common::maps::SOCK_STATS))?,
        owner_spill: HashMap::try_from(take(&mut ebpf, kaipo_common::maps::OWNER_SPILL)?)
            .map_err(map_err(kaipo_common::maps::OWNER_SPILL))?,
        flows: PerCpuHashMap::try_from(take(&mut ebpf, kaipo_common::maps::FLOWS)?)
            .map_err(map_err(kaipo_common::maps::FLOWS))?,
        counters: PerCpuArray::try_from(take(&mut ebpf, kaipo_common::maps::COUNTERS)?)
            .map_err(map_err(kaipo_common::maps::COUNTERS))?,
        dns: Box::new(
            RingBuf::try_from(take(&mut ebpf, kaipo_common::maps::DNS_EVENTS)?)
                .map_err(map_err(kaipo_common::maps::DNS_EVENTS))?,
        ),
        dns_malformed: 0,
        ifaces: monitored,
        netlink_filters: links.iter().any(|l| l.netlink),
        links,
        named: opts.ifaces.clone(),
        hook: opts.ingress_hook,
        degradations,
        flow_cache: match take(&mut ebpf, kaipo_common::maps::FLOW_CACHE)? {
            aya::maps::Map::Array(data) => Box::new(flow_cache::FlowCache::map(data, page_size())?),
            _ => return Err(EbpfCollectError::Missing(kaipo_common::maps::FLOW_CACHE)),
        },
        track_flows: opts.track_flows,
        batch_ok: true,
        sockets_last: 0,
        flows_last: None,
        max_sockets: opts.max_sockets.max(1),
        max_flows: opts.max_flows.max(1),
        possible_cpus: aya::util::nr_cpus().map_err(|(path, err)| EbpfCollectError::Map {
            map: kaipo_common::maps::FLOWS,
            detail: format!("cannot read the number of possible CPUs from {path}: {err}"),
        })?,
        finder: Box::default(),
        slots,
        iface_slots,
        kernel_ifaces,
        ebpf,
    };
    Ok((collector, EventStream { ring, malformed: 0 }))
}

/// The loaded object, its socket slots when mapped, and what it does with less.
type Prepared = (Ebpf, Option<Box<slots::Slots>>, Vec<Degradation>);

/// Loads the object and, when `opts` gives sockets slots, maps them; without them (the slots
/// could not be mapped) it loads the object again with the slots off, and says so.
fn prepare(
    btf: &Btf,
    opts: &Options,
    cookie_read: Option<&CookieRead>,
) -> Result<Prepared, EbpfCollectError> {
    let mut degradations = Vec::new();
    if !opts.sock_slots {
        // The cookie leads only to slots.
        return Ok((load(btf, opts, false, None)?, None, degradations));
    }
    let mut ebpf = load(btf, opts, true, cookie_read)?;
    match open_slots(&mut ebpf) {
        Ok(opened) => Ok((ebpf, Some(Box::new(opened)), degradations)),
        Err(err) => {
            degradations.push(Degradation {
                what: "every socket counts in the shared socket map (a cookie and a hash lookup \
                       per packet) instead of in a slot of its own"
                    .into(),
                why: err.to_string(),
            });
            // Nothing is attached yet: start over with the slots off.
            Ok((load(btf, opts, false, None)?, None, degradations))
        }
    }
}

/// What kaipo does not tell without flows, and why.
fn without_flows() -> Degradation {
    Degradation {
        what: "no attributed share; interface totals are the kernel's own counters".into(),
        why: "flows off (the default with no interface named; --no-flows; daemon.flows = \
              false): no kaipo program on the interfaces, the cheapest path per packet. --iface \
              NAME or --flows (daemon.interfaces, daemon.flows = true) counts them"
            .into(),
    }
}

/// Why sockets find their slots through their own storage rather than by cookie.
fn storage_lookup(why: String) -> Degradation {
    Degradation {
        what: "the socket programs find each socket's slot through the socket's own storage \
               (a helper call per packet) instead of by its cookie read from the kernel's socket"
            .into(),
        why,
    }
}

/// Maps the socket slots and fills the free stack.
pub fn open_slots(ebpf: &mut Ebpf) -> Result<slots::Slots, EbpfCollectError> {
    let slots = take(ebpf, kaipo_common::maps::SOCK_SLOTS)?;
    let free = take(ebpf, kaipo_common::maps::SLOT_FREE)?;
    match slots {
        aya::maps::Map::Array(slots) => slots::Slots::open(slots, free, page_size()),
        _ => Err(EbpfCollectError::Missing(kaipo_common::maps::SOCK_SLOTS)),
    }
}

/// Creates the maps and reads the programs of kaipo's object, loading nothing into the kernel's
/// program slots yet. `sock_slots` gives sockets slots (see `slots`), which [`open_slots`]
/// must then map and fill before any program is attached; `cookie_read` makes the socket
/// programs find a socket's slot from its cookie (see [`object`]).
pub fn load(
    btf: &Btf,
    opts: &Options,
    sock_slots: bool,
    cookie_read: Option<&CookieRead>,
) -> Result<Ebpf, EbpfCollectError> {
    let slots = match opts.flow_cache_slots {
        Some(slots) => slots.max(2).next_power_of_two(),
        // Without flows nothing writes the cache: the smallest run that maps.
        None if !opts.track_flows => 2,
        None => flow_cache_slots(aya::util::nr_cpus().map_or(1, |n| n)),
    };
    // Without flows nothing writes the flow map either.
    let max_flows = if opts.track_flows { opts.max_flows } else { 1 };
    let object = object(
        cookie_read,
        &ObjectValues {
            sock_slots,
            track_flows: opts.track_flows,
            flow_cache_slots: slots,
            flow_slot_age: opts.flow_slot_age,
        },
    )?;
    // One run of slots per CPU the kernel may run a program on.
    let cpus = u32::try_from(aya::util::nr_cpus().map_or(1, |n| n)).unwrap_or(1);
    // The kernel wants a power-of-two multiple of the page size.
    let page = u32::try_from(page_size()).unwrap_or(4096);
    let ringbuf = opts.ringbuf_bytes.map_or(kaipo_common::RINGBUF_BYTES, |b| {
        b.max(page).next_power_of_two()
    });
    Ok(EbpfLoader::new()
        .btf(Some(btf))
        .map_max_entries(kaipo_common::maps::FLOW_CACHE, slots * cpus.max(1))
        .map_max_entries(
            kaipo_common::maps::IFACE_STATS,
            kaipo_common::IFACE_SLOTS * cpus.max(1),
        )
        .map_max_entries(kaipo_common::maps::FLOWS, max_flows.max(1))
        .map_max_entries(kaipo_common::maps::SOCK_STATS, opts.max_sockets.max(1))
        .map_max_entries(kaipo_common::maps::SOCK_SLOTS, opts.slot_count.max(1))
        .map_max_entries(kaipo_common::maps::SLOT_FREE, opts.slot_count.max(1))
        .map_max_entries(kaipo_common::maps::EVENTS, ringbuf)
        .load(object.bytes())?)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, EbpfCollectError> {
    ebpf.take_map(name).ok_or(EbpfCollectError::Missing(name))
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfCollectError {
    move |err| EbpfCollectError::Map {
        map,
        detail: err.to_string(),
    }
}

impl EbpfCollector {
    /// Moves every DNS capture now in its ring buffer into `out`.
    pub fn drain_dns(&mut self, out: &mut Vec<kaipo_common::DnsCapture>) {
        while let Some(item) = self.dns.next() {
            match kaipo_common::DnsCapture::from_bytes(&item) {
                Some(capture) => out.push(capture),
                None => self.dns_malformed += 1,
            }
        }
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.ifaces
    }

    pub fn degradations(&self) -> &[Degradation] {
        &self.degradations
    }

    /// Whether the interface programs count flows (see `Options::track_flows`).
    pub fn tracks_flows(&self) -> bool {
        self.track_flows
    }

    /// Whether a classifier was attached through netlink (kernels without TCX); removing it at
    /// exit then needs CAP_NET_ADMIN.
    pub fn holds_netlink_filters(&self) -> bool {
        self.netlink_filters
    }

    /// Follows the host's interfaces: attaches to an interface that came up (or, for a named
    /// one, that was created again, under a new ifindex) and detaches from one that went away.
    /// Returns what changed, in words.
    pub fn follow_interfaces(&mut self) -> Vec<String> {
        let Ok(wanted) = iface::wanted(&self.named) else {
            return Vec::new();
        };
        if !self.track_flows {
            return self.follow_kernel_counters(wanted);
        }
        let mut changes = Vec::new();
        let mut kept = Vec::with_capacity(self.links.len());
        for links in std::mem::take(&mut self.links) {
            if wanted.contains(&links.iface) {
                kept.push(links);
            } else {
                changes.push(format!(
                    "interface {} (index {}) went away; no longer monitored",
                    links.iface.name, links.iface.ifindex
                ));
                attach::detach_interface(&mut self.ebpf, links);
            }
        }
        self.links = kept;
        // Slots of interfaces no longer monitored may go to the ones that appear.
        self.iface_slots
            .retain(|i| self.links.iter().any(|l| l.iface.ifindex == *i));
        for iface in wanted {
            if self.links.iter().any(|l| l.iface == iface) {
                continue;
            }
            // Counts kaipo may hold from an earlier interface with this index or slot start
            // over.
            // (`claim` zeroes the slot it gives.)
            if self.iface_table.claim(iface.ifindex, &self.iface_slots) {
                self.iface_slots.insert(iface.ifindex);
            }
            let _ = self.iface_stats_high.remove(&iface.ifindex);
            let mut notes = Vec::new();
            match attach::interface(&mut self.ebpf, &iface, self.hook, &mut notes) {
                Ok(links) => {
                    changes.push(format!(
                        "interface {} (index {}) appeared; now monitored",
                        iface.name, iface.ifindex
                    ));
                    self.netlink_filters |= links.netlink;
                    self.links.push(links);
                }
                Err(err) => changes.push(format!(
                    "interface {} (index {}) appeared but cannot be monitored: {err}",
                    iface.name, iface.ifindex
                )),
            }
            changes.extend(notes.into_iter().map(|n| n.to_string()));
        }
        self.ifaces = self.links.iter().map(|l| l.iface.clone()).collect();
        changes
    }

    /// [`Self::follow_interfaces`] without flows: nothing to attach, an interface's figures
    /// count from its kernel counters when it appeared.
    fn follow_kernel_counters(&mut self, wanted: Vec<Interface>) -> Vec<String> {
        let mut changes = Vec::new();
        for gone in self.ifaces.iter().filter(|i| !wanted.contains(i)) {
            changes.push(format!(
                "interface {} (index {}) went away; no longer monitored",
                gone.name, gone.ifindex
            ));
            self.kernel_ifaces.remove(&gone.ifindex);
        }
        for new in wanted.iter().filter(|i| !self.ifaces.contains(i)) {
            match KernelIface::start(&new.name) {
                Some(counted) => {
                    self.kernel_ifaces.insert(new.ifindex, counted);
                    changes.push(format!(
                        "interface {} (index {}) appeared; now monitored",
                        new.name, new.ifindex
                    ));
                }
                None => changes.push(format!(
                    "interface {} (index {}) appeared but its counters cannot be read",
                    new.name, new.ifindex
                )),
            }
        }
        self.ifaces = wanted
            .into_iter()
            .filter(|i| self.kernel_ifaces.contains_key(&i.ifindex))
            .collect();
        changes
    }

    /// Reads every counter map once.
    pub fn sample(&mut self) -> Result<KernelSample, EbpfCollectError> {
        let mut sample = KernelSample {
            iface_changes: self.follow_interfaces(),
            ..KernelSample::default()
        };
        // The kernel's counters first: evictions are the flows created less those still in
        // FLOWS, so "created" must not be read after the flows, or a burst between the two
        // reads would count its new flows as evicted.
        for slot in 0..counter::COUNT {
            let value = self
                .counters
                .get(&slot, 0)
                .map_err(map_err(kaipo_common::maps::COUNTERS))?
                .iter()
                .sum();
            sample.counters[slot as usize] = value;
        }
        // Flows before interfaces: a program adds a frame to its interface before its flow,
        // so read in this order the flows never count a frame the interfaces have not.
        if self.track_flows {
            self.read_flows(&mut sample)?;
        }
        if self.track_flows {
            self.read_interfaces(&mut sample)?;
        } else {
            // Only interfaces with a starting point are monitored (`follow_kernel_counters`).
            for iface in &self.ifaces {
                if let Some(counted) = self.kernel_ifaces.get_mut(&iface.ifindex) {
                    sample
                        .ifaces
                        .push((iface.clone(), counted.read(&iface.name)));
                }
            }
        }
        if let Some(slots) = &mut self.slots {
            sample
                .sockets
                .reserve(slots.used() + slots.used() / 16 + 64);
            slots.read(&mut sample.sockets);
        }
        let sock_fd = self.sock_stats.map().fd().as_fd();
        let mut shared = Vec::with_capacity(self.sockets_last + self.sockets_last / 16 + 64);
        if self.batch_ok {
            if let Err(err) = batch::read_all(sock_fd, &mut shared) {
                log::info!("batch map reads unavailable ({err}); reading key by key");
                self.batch_ok = false;
                shared.clear();
            }
        }
        if !self.batch_ok {
            // Entries can vanish while the map is walked; the walk then reports an error for
            // that key, which only means the socket is gone.
            shared.extend(self.sock_stats.iter().filter_map(Result::ok));
        }
        self.sockets_last = shared.len();
        slots::merge(&mut sample.sockets, shared);
        self.flows_last = sample.flows_live;
        self.take_spilled_owners(&mut sample.owners);
        Ok(sample)
    }

    /// Each monitored interface's counters from kaipo's interface programs, summed over CPUs.
    fn read_interfaces(&self, sample: &mut KernelSample) -> Result<(), EbpfCollectError> {
        for iface in &self.ifaces {
            if self.iface_slots.contains(&iface.ifindex) {
                sample
                    .ifaces
                    .push((iface.clone(), self.iface_table.read(iface.ifindex)));
                continue;
            }
            let per_cpu = match self.iface_stats_high.get(&iface.ifindex, 0) {
                Ok(per_cpu) => per_cpu,
                Err(aya::maps::MapError::KeyNotFound) => {
                    sample
                        .ifaces
                        .push((iface.clone(), IfaceCounters::default()));
                    continue;
                }
                Err(err) => return Err(map_err(kaipo_common::maps::IFACE_STATS_HIGH)(err)),
            };
            let total = per_cpu
                .iter()
                .fold(IfaceCounters::default(), |acc, v| acc.sum(v));
            sample.ifaces.push((iface.clone(), total));
        }
        Ok(())
    }

    /// How full the socket and flow maps were at the last sample.
    pub fn map_usage(&self) -> MapUsage {
        // Slots and the shared map together: a socket without a slot counts in the map.
        let (in_slots, slots) = self
            .slots
            .as_ref()
            .map_or((0, 0), |s| (s.used() as u64, u64::from(s.capacity())));
        MapUsage {
            sockets: self.sockets_last as u64 + in_slots,
            sockets_max: u64::from(self.max_sockets) + slots,
            flows: self.track_flows.then_some(self.flows_last).flatten(),
            flows_max: self.track_flows.then_some(u64::from(self.max_flows)),
        }
    }

    /// Empties `OWNER_SPILL` into `out` as owner events.
    fn take_spilled_owners(&mut self, out: &mut Vec<Event>) {
        let mut spilled: Vec<(u64, OwnerSpill)> = Vec::new();
        if self.batch_ok {
            let fd = self.owner_spill.map().fd().as_fd();
            if let Err(err) = batch::take_all(fd, &mut spilled) {
                log::info!("cannot empty {}: {err}", kaipo_common::maps::OWNER_SPILL);
            }
        } else {
            spilled.extend(self.owner_spill.iter().filter_map(Result::ok));
            for (cookie, _) in &spilled {
                // A report written again since the read is lost with it only if the socket's
                // owner changed in between; the next call of the socket reports it again.
                let _ = self.owner_spill.remove(cookie);
            }
        }
        out.extend(spilled.iter().map(|(cookie, s)| s.to_event(*cookie)));
    }

    /// Every flow's totals, each flow once: its `FLOWS` entry summed over CPUs plus the cache
    /// slots it holds. `FLOWS` is read before the cache: a slot handed over in between then
    /// shows its counts in neither read rather than in both, so a total can lag for one sample
    /// but never runs ahead of what was counted.
    ///
    /// `FLOWS` entries are unique keys and go straight into the sample; only the cache's flows
    /// (a few thousand slots per CPU) are merged through a table, so a hundred thousand flows
    /// cost one list of them, not a table of them beside the list.
    fn read_flows(&mut self, sample: &mut KernelSample) -> Result<(), EbpfCollectError> {
        let sum = |t: &mut FlowCounters, c: &FlowCounters| {
            t.rx_bytes += c.rx_bytes;
            t.rx_packets += c.rx_packets;
            t.tx_bytes += c.tx_bytes;
            t.tx_packets += c.tx_packets;
        };
        let mut flows: Vec<(FlowKey, FlowCounters)> =
            Vec::with_capacity(self.flows_last.unwrap_or(0) as usize);
        let cpus = self.possible_cpus;
        let mut batched = false;
        if self.batch_ok {
            let stride = size_of::<FlowCounters>().next_multiple_of(8);
            let fd = self.flows.map().fd().as_fd();
            let read = batch::for_each_raw(fd, size_of::<FlowKey>(), stride * cpus, |k, v| {
                let Some(key) = batch::pod_from::<FlowKey>(k) else {
                    return;
                };
                let mut total = FlowCounters::default();
                for cpu in 0..cpus {
                    if let Some(c) = batch::pod_from::<FlowCounters>(&v[cpu * stride..]) {
                        sum(&mut total, &c);
                    }
                }
                flows.push((key, total));
            });
            match read {
                Ok(()) => batched = true,
                Err(err) => {
                    log::info!("batch map reads unavailable ({err}); reading key by key");
                    self.batch_ok = false;
                    flows.clear();
                }
            }
        }
        if !batched {
            for (key, per_cpu) in self.flows.iter().filter_map(Result::ok) {
                let mut total = FlowCounters::default();
                for c in per_cpu.iter() {
                    sum(&mut total, c);
                }
                flows.push((key, total));
            }
        }
        let live = flows.len() as u64;
        // A flow can hold a slot on several CPUs, and have a `FLOWS` entry too.
        let mut cached: crate::fasthash::HashMap<FlowKey, FlowCounters> =
            crate::fasthash::HashMap::default();
        self.flow_cache.for_each_held(|slot| {
            sum(cached.entry(slot.key).or_default(), &slot.counters());
        });
        if !cached.is_empty() {
            for (key, total) in &mut flows {
                if let Some(c) = cached.remove(key) {
                    sum(total, &c);
                }
            }
            flows.extend(cached);
        }
        sample.flows_live = Some(live);
        sample.flows = flows;
        Ok(())
    }

    /// Drops counters of sockets that closed and went quiet.
    pub fn forget_sockets(&mut self, cookies: &[u64]) {
        if let Some(slots) = &mut self.slots {
            slots.free(cookies);
        }
        for cookie in cookies {
            // Already gone is fine.
            let _ = self.sock_stats.remove(cookie);
        }
        self.finder.forget(cookies);
    }

    /// Owner events for those of `cookies` (open sockets that carried traffic with no owner
    /// reported) whose holder the descriptor tables show (see `owners`).
    pub fn find_owners(&mut self, cookies: &[u64], protocols: &[u8], out: &mut Vec<Event>) {
        self.finder.find(cookies, protocols, out);
    }

    /// Removes the entries among `idle` (sockets whose counters have not moved for a while)
    /// whose socket no longer exists in any network namespace, and returns them. Removes
    /// nothing when the sockets cannot be listed (see `sweep`).
    pub fn sweep_sockets(&mut self, idle: &[u64]) -> Vec<u64> {
        if idle.is_empty() {
            return Vec::new();
        }
        let live = match sweep::live_cookies() {
            Ok(live) => live,
            Err(err) => {
                log::info!("cannot list live sockets, socket map not swept: {err}");
                return Vec::new();
            }
        };
        let dead: Vec<u64> = idle.iter().copied().filter(|c| !live.contains(c)).collect();
        self.forget_sockets(&dead);
        dead
    }

    /// Cookies of every entry of the socket map, closed or not.
    pub fn socket_cookies(&self) -> Vec<u64> {
        // A key that goes between two steps of the walk reports an error: that socket is gone.
        let mut cookies: Vec<u64> = self.sock_stats.keys().filter_map(Result::ok).collect();
        if let Some(slots) = &self.slots {
            cookies.extend(slots.cookies());
        }
        cookies
    }

    /// Kernel run time and run count per program, when BPF statistics are enabled
    /// (`kernel.bpf_stats_enabled` or an `enable_stats` fd held open).
    pub fn program_stats(&self) -> Vec<(String, u64, u64)> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some((
                    name.to_owned(),
                    info.run_time().as_nanos() as u64,
                    info.run_count(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_cache_keeps_to_its_budget() {
        // 1 MiB per CPU up to 16 CPUs, then halved until all copies fit in 16 MiB, never
        // under 1024 slots.
        let sized: Vec<u32> = [1, 2, 16, 17, 64, 4096]
            .into_iter()
            .map(flow_cache_slots)
            .collect();
        assert_eq!(sized, [16_384, 16_384, 16_384, 8_192, 4_096, 1_024]);
    }
}
