//! One front for both collectors: `--backend auto|ebpf|pcap` picks one, and everything
//! downstream (watch, live, the daemon) drives it the same way.

use std::io;

#[cfg(target_os = "linux")]
use super::ebpf::{self, EbpfCollector, EventStream};
use super::pcap::{self, PcapCollector, PcapEvents};
use super::{BackendKind, Degradation, Event, Interface, KernelSample};
use crate::platform::{Host, Platform as _};

/// Which kernel hook counts a monitored interface's incoming frames (eBPF backend).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressHook {
    /// A TCX (or clsact) ingress classifier: shares the hook with other programs, changes
    /// nothing in how the interface receives, and costs the least on socket buffers.
    #[default]
    Tc,
    /// XDP: driver mode where the driver runs XDP on its own receive buffers, generic mode
    /// elsewhere (which first copies or reallocates every frame); TC when the hook is taken.
    Xdp,
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// eBPF where it loads (Linux with BTF and privileges), libpcap otherwise.
    #[default]
    Auto,
    /// Only eBPF: fail when it cannot load.
    Ebpf,
    /// Only libpcap.
    Pcap,
}

#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Interfaces to monitor; empty means every interface that is up, except loopback.
    pub ifaces: Vec<String>,
    pub backend: BackendChoice,
    /// A capture filter for the pcap backend (pcap-filter syntax), applied in the kernel.
    pub pcap_filter: Option<String>,
    /// pcap backend: hand each frame over as it arrives (libpcap's immediate mode).
    pub pcap_immediate: bool,
    /// eBPF backend: the hook for incoming frames.
    pub ingress_hook: IngressHook,
    /// eBPF backend: whether programs on the interfaces count each flow (the attributed share,
    /// `ifaces` scoping). `None` (the default): only when interfaces are named. Without flows
    /// no program runs on the interfaces and their totals are the kernel's own counters.
    pub flows: Option<bool>,
    /// eBPF backend: the capacity of the socket map and the bytes of the lifecycle ring
    /// buffer, when not the defaults (tests that fill or overflow them).
    pub max_sockets: Option<u32>,
    pub ringbuf_bytes: Option<u32>,
    /// eBPF backend: socket slots, when not the default (tests that run out of them); 0 counts
    /// every socket in the shared map, as on a kernel that cannot map the slots.
    pub socket_slots: Option<u32>,
    /// eBPF backend: find sockets' slots through their own storage only, as on a kernel
    /// without `bpf_rdonly_cast` (tests of that path).
    pub no_cookie_read: bool,
}

impl StartOptions {
    /// Whether the eBPF backend counts flows: as asked, else where interfaces are named (what
    /// only flows give is per interface: which sockets crossed it, and its attributed share).
    pub fn flows_wanted(&self) -> bool {
        self.flows.unwrap_or(!self.ifaces.is_empty())
    }
}

enum Inner {
    #[cfg(target_os = "linux")]
    Ebpf(EbpfCollector),
    Pcap(PcapCollector),
}

/// A running collector of either kind.
pub struct Collector {
    inner: Inner,
    /// The backend's own notes, plus why `auto` fell back to pcap when it did.
    degradations: Vec<Degradation>,
}

/// Lifecycle events of either kind of collector.
pub enum Events {
    #[cfg(target_os = "linux")]
    Ebpf(Box<EventStream>),
    Pcap(PcapEvents),
}

/// Starts the chosen backend. `auto` tries eBPF first and says why it fell back.
pub fn start(opts: &StartOptions) -> anyhow::Result<(Collector, Events)> {
    if opts.flows == Some(false) && !opts.ifaces.is_empty() {
        anyhow::bail!(
            "--no-flows (for the daemon also `daemon.flows = false`) cannot scope process figures \
             to interfaces (--iface, or `daemon.interfaces`): which sockets crossed an interface \
             is known only from its flows. Drop one of the two: without the interfaces, every \
             interface and every process is counted"
        );
    }
    let mut notes: Vec<Degradation> = without_ebpf(opts.backend, Host::NO_EBPF)?
        .into_iter()
        .collect();
    #[cfg(target_os = "linux")]
    if opts.backend != BackendChoice::Pcap {
        if let Some(flag) = pcap_only_flag(opts) {
            if opts.backend == BackendChoice::Ebpf {
                anyhow::bail!(
                    "{flag} is for the pcap backend only; drop it, or add --backend pcap to count \
                     with libpcap"
                );
            }
        }
    }
    #[cfg(target_os = "linux")]
    if opts.backend != BackendChoice::Pcap {
        let ebpf_opts = ebpf::Options {
            ifaces: opts.ifaces.clone(),
            ingress_hook: opts.ingress_hook,
            max_sockets: opts.max_sockets.unwrap_or(kaipo_common::MAX_SOCKETS),
            ringbuf_bytes: opts.ringbuf_bytes,
            sock_slots: opts.socket_slots != Some(0),
            slot_count: opts.socket_slots.unwrap_or(kaipo_common::SOCK_SLOT_COUNT),
            cookie_read: !opts.no_cookie_read,
            track_flows: opts.flows_wanted(),
            ..Default::default()
        };
        match ebpf::start(&ebpf_opts) {
            Ok(_) if pcap_only_flag(opts).is_some() => {
                // Dropping the collector detaches what was attached.
                anyhow::bail!(
                    "{} is for the pcap backend only, and eBPF runs here; drop it, or add \
                     --backend pcap to count with libpcap",
                    pcap_only_flag(opts).unwrap_or_default()
                );
            }
            Ok((collector, events)) => {
                let degradations = collector.degradations().to_vec();
                return Ok((
                    Collector {
                        inner: Inner::Ebpf(collector),
                        degradations,
                    },
                    Events::Ebpf(Box::new(events)),
                ));
            }
            Err(err) if opts.backend == BackendChoice::Ebpf => return Err(err.into()),
            Err(err) => notes.push(Degradation {
                what: "eBPF collector".into(),
                why: format!(
                    "{err}; counting with libpcap instead (processes are matched through socket \
                     tables, so very short-lived ones may be missed)"
                ),
            }),
        }
    }
    if opts.flows == Some(false) {
        anyhow::bail!(
            "--no-flows is for the eBPF backend only: libpcap reads every frame whatever kaipo \
             does with it. Drop it, or run where eBPF loads"
        );
    }
    if opts.ingress_hook != IngressHook::Tc {
        anyhow::bail!(
            "--ingress-hook xdp is for the eBPF backend only; libpcap captures after the kernel's \
             own hooks. Drop it, or run where eBPF loads"
        );
    }
    let pcap_opts = pcap::Options {
        ifaces: opts.ifaces.clone(),
        filter: opts.pcap_filter.clone(),
        immediate: opts.pcap_immediate,
        ..Default::default()
    };
    let (collector, events) = pcap::start(&pcap_opts).map_err(|err| match notes.first() {
        // Where eBPF was tried and failed, both failures count.
        Some(ebpf) if Host::NO_EBPF.is_none() => {
            anyhow::anyhow!("{}; and libpcap: {err}", ebpf.why)
        }
        _ => anyhow::Error::from(err),
    })?;
    notes.extend(collector.degradations().iter().cloned());
    Ok((
        Collector {
            inner: Inner::Pcap(collector),
            degradations: notes,
        },
        Events::Pcap(events),
    ))
}

/// The first option given that only the pcap backend honours.
#[cfg(target_os = "linux")]
fn pcap_only_flag(opts: &StartOptions) -> Option<&'static str> {
    if opts.pcap_filter.is_some() {
        Some("--filter")
    } else if opts.pcap_immediate {
        Some("--pcap-immediate")
    } else {
        None
    }
}

/// Where eBPF does not exist (`no_ebpf` says why): `--backend ebpf` is an error, and `auto`
/// carries the reason as a note, so every command that collects says why it counts with
/// libpcap.
fn without_ebpf(
    choice: BackendChoice,
    no_ebpf: Option<&str>,
) -> anyhow::Result<Option<Degradation>> {
    let Some(why) = no_ebpf else {
        return Ok(None);
    };
    match choice {
        BackendChoice::Ebpf => anyhow::bail!("--backend ebpf cannot run here: {why}"),
        BackendChoice::Auto => Ok(Some(Degradation {
            what: "eBPF collector".into(),
            why: format!(
                "{why}; processes are matched through socket tables, so very short-lived ones \
                 may be missed"
            ),
        })),
        BackendChoice::Pcap => Ok(None),
    }
}

impl Collector {
    pub fn kind(&self) -> BackendKind {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(_) => BackendKind::Ebpf,
            Inner::Pcap(_) => BackendKind::Pcap,
        }
    }

    /// DNS answers the kernel captured since the last call (eBPF only: the pcap backend sees
    /// no sockets' packets).
    pub fn drain_dns(&mut self, out: &mut Vec<kaipo_common::DnsCapture>) {
        // Only eBPF captures answers.
        #[cfg(not(target_os = "linux"))]
        let _ = out;
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.drain_dns(out),
            Inner::Pcap(_) => {}
        }
    }

    pub fn interfaces(&self) -> &[Interface] {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.interfaces(),
            Inner::Pcap(c) => c.interfaces(),
        }
    }

    pub fn degradations(&self) -> &[Degradation] {
        &self.degradations
    }

    /// Whether interface bytes are counted per flow, and so joined to sockets: the attributed
    /// share and interface scoping. libpcap always sees each frame's flow.
    pub fn tracks_flows(&self) -> bool {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.tracks_flows(),
            Inner::Pcap(_) => true,
        }
    }

    /// Cumulative counters now; for pcap, its own capture drops included.
    pub fn sample(&mut self) -> anyhow::Result<KernelSample> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => Ok(c.sample()?),
            Inner::Pcap(c) => {
                let mut sample = c.sample()?;
                let drops = c.pcap_drops();
                sample.capture_drops = drops.dropped + drops.if_dropped;
                Ok(sample)
            }
        }
    }

    pub fn forget_sockets(&mut self, cookies: &[u64]) {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.forget_sockets(cookies),
            Inner::Pcap(c) => c.forget_sockets(cookies),
        }
    }

    /// Owner events for open sockets that carried traffic with no owner reported (eBPF; pcap
    /// finds every owner in its own socket tables).
    /// `protocols`: those of the sockets of `cookies`.
    pub fn find_owners(&mut self, cookies: &[u64], protocols: &[u8], out: &mut Vec<Event>) {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.find_owners(cookies, protocols, out),
            Inner::Pcap(_) => {
                let _ = (cookies, protocols, out);
            }
        }
    }

    /// Removes the socket-map entries among `idle` whose socket is gone; returns them. pcap
    /// keeps no such map.
    pub fn sweep_sockets(&mut self, idle: &[u64]) -> Vec<u64> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.sweep_sockets(idle),
            Inner::Pcap(_) => {
                let _ = idle;
                Vec::new()
            }
        }
    }

    /// Cookies of the sockets the kernel map holds now (eBPF); `None` for pcap, which keeps no
    /// such map.
    pub fn socket_cookies(&self) -> Option<Vec<u64>> {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => Some(c.socket_cookies()),
            Inner::Pcap(_) => None,
        }
    }

    /// Kernel run time (ns) and run count per eBPF program, when BPF statistics are on; empty
    /// for pcap.
    /// How full the kernel's maps were at the last sample; `None` for the pcap backend.
    pub fn map_usage(&self) -> Option<super::MapUsage> {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => Some(c.map_usage()),
            Inner::Pcap(_) => None,
        }
    }

    pub fn program_stats(&self) -> Vec<(String, u64, u64)> {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.program_stats(),
            Inner::Pcap(_) => Vec::new(),
        }
    }

    /// Whether a classifier was attached through netlink (eBPF on kernels without TCX).
    pub fn holds_netlink_filters(&self) -> bool {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ebpf(c) => c.holds_netlink_filters(),
            Inner::Pcap(_) => false,
        }
    }
}

impl Events {
    /// Waits until at least one event can be drained.
    pub async fn readable(&mut self) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Ebpf(e) => e.readable().await,
            Self::Pcap(e) => e.readable().await,
        }
    }

    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        match self {
            #[cfg(target_os = "linux")]
            Self::Ebpf(e) => e.drain(out),
            Self::Pcap(e) => e.drain(out),
        }
    }

    /// Records that could not be read, since start.
    pub fn malformed(&self) -> u64 {
        match self {
            #[cfg(target_os = "linux")]
            Self::Ebpf(e) => e.malformed,
            Self::Pcap(e) => e.malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_counted_where_interfaces_are_named_unless_asked_otherwise() {
        let named = |ifaces: &[&str], flows: Option<bool>| StartOptions {
            ifaces: ifaces.iter().map(|s| (*s).to_owned()).collect(),
            flows,
            ..StartOptions::default()
        };
        assert!(!named(&[], None).flows_wanted());
        assert!(named(&["eth0"], None).flows_wanted());
        assert!(named(&[], Some(true)).flows_wanted());
        assert!(!named(&[], Some(false)).flows_wanted());
        assert!(named(&["eth0"], Some(true)).flows_wanted());
    }

    #[test]
    fn flows_off_with_interfaces_named_is_refused() {
        let opts = StartOptions {
            ifaces: vec!["eth0".into()],
            flows: Some(false),
            ..StartOptions::default()
        };
        let err = start(&opts).err().expect("refused").to_string();
        assert!(
            err.starts_with("--no-flows (for the daemon also `daemon.flows = false`) cannot scope"),
            "{err}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pcap_only_flags_are_named() {
        let mut opts = StartOptions::default();
        assert_eq!(pcap_only_flag(&opts), None);
        opts.pcap_immediate = true;
        assert_eq!(pcap_only_flag(&opts), Some("--pcap-immediate"));
        opts.pcap_filter = Some("udp".into());
        assert_eq!(pcap_only_flag(&opts), Some("--filter"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn ebpf_with_a_pcap_filter_is_refused_before_loading() {
        let opts = StartOptions {
            backend: BackendChoice::Ebpf,
            pcap_filter: Some("udp".into()),
            ..StartOptions::default()
        };
        let err = start(&opts).err().expect("refused").to_string();
        assert_eq!(
            err,
            "--filter is for the pcap backend only; drop it, or add --backend pcap to count \
             with libpcap"
        );
    }

    #[test]
    fn without_ebpf_auto_says_why_and_ebpf_fails() {
        let why = Some("eBPF is Linux-only");
        assert_eq!(
            without_ebpf(BackendChoice::Auto, why).unwrap(),
            Some(Degradation {
                what: "eBPF collector".into(),
                why: "eBPF is Linux-only; processes are matched through socket tables, so very \
                      short-lived ones may be missed"
                    .into(),
            })
        );
        assert_eq!(without_ebpf(BackendChoice::Pcap, why).unwrap(), None);
        assert_eq!(
            without_ebpf(BackendChoice::Ebpf, why)
                .unwrap_err()
                .to_string(),
            "--backend ebpf cannot run here: eBPF is Linux-only"
        );
        // Where eBPF exists, nothing is decided here: it is tried.
        for choice in [
            BackendChoice::Auto,
            BackendChoice::Ebpf,
            BackendChoice::Pcap,
        ] {
            assert_eq!(without_ebpf(choice, None).unwrap(), None);
        }
    }
}
