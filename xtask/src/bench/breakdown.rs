//! Where the flood's cost goes: the same flood with one piece of kaipo's kernel side attached
//! at a time, straight from kaipo's object and without kaipo's userspace (which is not on the
//! packet path), and with programs that do nothing on the same hooks, to separate the price of
//! each hook itself from that of kaipo's code.

use std::{fs::File, os::fd::OwnedFd};

use anyhow::Context as _;
use aya::{
    programs::{
        tc::TcAttachOptions, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, LinkOrder,
        SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Btf, Ebpf,
};
use kaipo::collect::backend::IngressHook;
use kaipo::collect::ebpf;

use super::{baseline, testrun::PROGRAMS, topology::Topology};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Piece {
    /// `r0 = XDP_PASS; exit` in generic mode on the sender's host end.
    EmptyXdp,
    /// The same, loaded as accepting multi-buffer frames (`BPF_F_XDP_HAS_FRAGS`), as
    /// `kaipo_xdp` is.
    EmptyXdpFrags,
    /// The empty XDP program in driver mode (veth runs XDP in its own receive path).
    EmptyXdpNative,
    /// `r0 = TC_ACT_UNSPEC; exit` on TCX ingress of the sender's host end.
    EmptyTcIngress,
    /// The same on TCX egress of the receiver's host end.
    EmptyTcEgress,
    /// Two empty cgroup_skb programs (ingress, egress) at the cgroup v2 root.
    EmptyCgroupSkb,
    /// Every empty program above that stands where kaipo's default attachment puts one of its
    /// own on the datagram's path: the floor under `KaipoAll`.
    EmptyAll,
    /// kaipo's kernel side as `kaipo watch` attaches it by default on the two host ends: TCX
    /// ingress and egress on both, and the whole socket side.
    KaipoAll,
    /// The `kaipo watch --json` process itself on the two host ends: the same kernel side as
    /// `KaipoAll`, with kaipo's userspace reading it.
    KaipoWatch,
    /// `kaipo_xdp` in generic mode on the sender's host end.
    Xdp,
    /// `kaipo_xdp` in driver mode on the sender's host end.
    XdpNative,
    /// `kaipo_tc_ingress` (TCX ingress) on the sender's host end.
    TcIngress,
    /// `kaipo_tc_egress` (TCX egress) on the receiver's host end.
    Tc,
    /// Only the two cgroup_skb programs at the cgroup v2 root.
    CgroupSkb,
    /// The socket side: the cgroup_skb and cgroup_sock programs at the cgroup v2 root and the
    /// process-exit tracepoint.
    Sockets,
}

impl Piece {
    /// What `bench collector` measures in its section 3b.
    pub const ALL: [Self; 10] = [
        Self::EmptyXdp,
        Self::EmptyTcIngress,
        Self::EmptyTcEgress,
        Self::EmptyCgroupSkb,
        Self::EmptyAll,
        Self::Xdp,
        Self::TcIngress,
        Self::Tc,
        Self::CgroupSkb,
        Self::KaipoAll,
    ];

    pub fn describe(self, topo: &Topology) -> String {
        let (s, r) = (&topo.sender_if, &topo.receiver_if);
        match self {
            Self::EmptyXdp => format!("an empty XDP program (generic mode) on `{s}`"),
            Self::EmptyXdpFrags => format!(
                "an empty XDP program loaded with `BPF_F_XDP_HAS_FRAGS` (generic mode) on `{s}`"
            ),
            Self::EmptyXdpNative => format!("an empty XDP program (driver mode) on `{s}`"),
            Self::EmptyTcIngress => format!("an empty classifier (TCX ingress) on `{s}`"),
            Self::EmptyTcEgress => format!("an empty classifier (TCX egress) on `{r}`"),
            Self::EmptyCgroupSkb => "two empty cgroup_skb programs (ingress, egress)".into(),
            Self::EmptyAll => format!(
                "all of the empty programs: TCX ingress on `{s}`, TCX egress on `{r}`, both \
                 cgroup_skb"
            ),
            Self::KaipoAll => format!(
                "kaipo's kernel side as `kaipo watch --iface {s} --iface {r}` attaches it (TCX \
                 ingress and egress on both, cgroup_skb, cgroup_sock, the exit tracepoint)"
            ),
            Self::KaipoWatch => format!(
                "`kaipo watch --json --iface {s} --iface {r}` running (the same kernel side, and \
                 kaipo's userspace)"
            ),
            Self::Xdp => format!("`{}` only (generic mode) on `{s}`", PROGRAMS[0]),
            Self::XdpNative => format!("`{}` only (driver mode) on `{s}`", PROGRAMS[0]),
            Self::TcIngress => format!("`kaipo_tc_ingress` only (TCX ingress) on `{s}`"),
            Self::Tc => format!("`{}` only (TCX egress) on `{r}`", PROGRAMS[1]),
            Self::CgroupSkb => {
                "the two cgroup_skb programs only (`kaipo_sock_ingress`, `kaipo_sock_egress`)"
                    .into()
            }
            Self::Sockets => {
                "the socket side only (cgroup_skb, cgroup_sock, the exit tracepoint)".into()
            }
        }
    }
}

/// Whatever holds the attachment; dropping it detaches.
pub struct Attached {
    _kaipo: Option<super::kaipo::Kaipo>,
    _object: Option<Box<Ebpf>>,
    /// The socket slots of `_object`, mapped and on its free stack, as kaipo keeps them.
    _slots: Option<ebpf::slots::Slots>,
    /// Empty programs and their links.
    _links: Vec<OwnedFd>,
}

pub fn attach(piece: Piece, topo: &Topology) -> anyhow::Result<Attached> {
    let ifindex = super::topology::ifindex;
    let slots = std::cell::RefCell::new(None);
    let load = || -> anyhow::Result<(Btf, Ebpf)> {
        let (btf, object, held) = load_kaipo(topo)?;
        *slots.borrow_mut() = Some(held);
        Ok((btf, object))
    };
    let object = match piece {
        Piece::EmptyXdp | Piece::EmptyXdpFrags | Piece::EmptyXdpNative => {
            let flags = if piece == Piece::EmptyXdpFrags {
                baseline::XDP_HAS_FRAGS
            } else {
                0
            };
            let mode = if piece == Piece::EmptyXdpNative {
                baseline::XDP_FLAGS_DRV_MODE
            } else {
                baseline::XDP_FLAGS_SKB_MODE
            };
            let prog = baseline::load_empty(baseline::PROG_TYPE_XDP, flags, 2)?;
            let link = baseline::attach_xdp(&prog, ifindex(&topo.sender_if)?, mode)?;
            return Ok(Attached {
                _kaipo: None,
                _object: None,
                _slots: None,
                _links: vec![prog, link],
            });
        }
        Piece::EmptyTcIngress | Piece::EmptyTcEgress | Piece::EmptyCgroupSkb | Piece::EmptyAll => {
            let mut links = Vec::new();
            let all = piece == Piece::EmptyAll;
            // Ingress on the sender's end, egress on the receiver's (the flood's path); with
            // `EmptyAll`, on the other end of each too, as kaipo attaches both on both.
            for (ingress, wanted, ends) in [
                (
                    true,
                    Piece::EmptyTcIngress,
                    [&topo.sender_if, &topo.receiver_if],
                ),
                (
                    false,
                    Piece::EmptyTcEgress,
                    [&topo.receiver_if, &topo.sender_if],
                ),
            ] {
                if !all && piece != wanted {
                    continue;
                }
                for name in ends.into_iter().take(if all { 2 } else { 1 }) {
                    let prog = baseline::load_empty(baseline::PROG_TYPE_SCHED_CLS, 0, -1)?;
                    let link = baseline::attach_tcx(&prog, ifindex(name)?, ingress)?;
                    links.extend([prog, link]);
                }
            }
            if all || piece == Piece::EmptyCgroupSkb {
                let root = ebpf::cgroup2_root().context("no cgroup v2 mount")?;
                let cgroup =
                    File::open(&root).with_context(|| format!("opening {}", root.display()))?;
                for kind in [
                    baseline::BPF_CGROUP_INET_INGRESS,
                    baseline::BPF_CGROUP_INET_EGRESS,
                ] {
                    let prog = baseline::load_empty(baseline::PROG_TYPE_CGROUP_SKB, 0, 1)?;
                    let link = baseline::attach_cgroup(&prog, &cgroup, kind)?;
                    links.extend([prog, link]);
                }
            }
            return Ok(Attached {
                _kaipo: None,
                _object: None,
                _slots: None,
                _links: links,
            });
        }
        Piece::KaipoWatch => {
            let bin = super::collector::build_kaipo()?;
            let kaipo = super::kaipo::Kaipo::start(
                &bin,
                &[&topo.sender_if, &topo.receiver_if],
                "1s",
                None,
            )?;
            return Ok(Attached {
                _kaipo: Some(kaipo),
                _object: None,
                _slots: None,
                _links: Vec::new(),
            });
        }
        Piece::KaipoAll => {
            let (btf, mut object) = load()?;
            let mut degradations = attach_sockets(&mut object, &btf)?;
            let ifaces = [&topo.sender_if, &topo.receiver_if]
                .into_iter()
                .map(|name| -> anyhow::Result<_> {
                    Ok(kaipo::collect::Interface {
                        name: name.clone(),
                        ifindex: ifindex(name)?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            ebpf::attach::interfaces(
                &mut object,
                &ifaces,
                IngressHook::Tc,
                true,
                &mut degradations,
            )
            .context("attaching the interface programs")?;
            object
        }
        Piece::Xdp | Piece::XdpNative => {
            let (_, mut object) = load()?;
            let xdp: &mut Xdp = object
                .program_mut(PROGRAMS[0])
                .context("no kaipo_xdp")?
                .try_into()?;
            xdp.load()?;
            let mode = if piece == Piece::XdpNative {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            xdp.attach_to_if_index(ifindex(&topo.sender_if)?, mode)
                .context("attaching kaipo_xdp")?;
            object
        }
        Piece::TcIngress => {
            let (_, mut object) = load()?;
            attach_classifier(&mut object, "kaipo_tc_ingress", &topo.sender_if, true)?;
            object
        }
        Piece::CgroupSkb => {
            let (_, mut object) = load()?;
            let root = ebpf::cgroup2_root().context("no cgroup v2 mount")?;
            let cgroup =
                File::open(&root).with_context(|| format!("opening {}", root.display()))?;
            for (name, kind) in [
                ("kaipo_sock_ingress", CgroupSkbAttachType::Ingress),
                ("kaipo_sock_egress", CgroupSkbAttachType::Egress),
            ] {
                let prog: &mut CgroupSkb = object
                    .program_mut(name)
                    .with_context(|| format!("no {name}"))?
                    .try_into()?;
                prog.load()?;
                prog.attach(&cgroup, kind, CgroupAttachMode::Single)
                    .with_context(|| format!("attaching {name}"))?;
            }
            object
        }
        Piece::Tc => {
            let (_, mut object) = load()?;
            attach_classifier(&mut object, PROGRAMS[1], &topo.receiver_if, false)?;
            object
        }
        Piece::Sockets => {
            let (btf, mut object) = load()?;
            attach_sockets(&mut object, &btf)?;
            object
        }
    };
    // Nothing reads the maps; the object only has to live while attached.
    Ok(Attached {
        _kaipo: None,
        _object: Some(Box::new(object)),
        _slots: slots.into_inner(),
        _links: Vec::new(),
    })
}

/// kaipo's object loaded as kaipo starts, nothing attached: the socket slots mapped and on
/// their free stack (kept while the object is used), each of the two host ends given its
/// counter slot.
pub fn load_kaipo(topo: &Topology) -> anyhow::Result<(Btf, Ebpf, ebpf::slots::Slots)> {
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let mut object = ebpf::load(
        &btf,
        &ebpf::Options::default(),
        true,
        ebpf::running_kernel_cookie_read().ok().as_ref(),
    )
    .context("loading kaipo's object")?;
    let slots = ebpf::open_slots(&mut object).context("the socket slots")?;
    let mut held = kaipo::fasthash::HashSet::default();
    let mut table = ebpf::IfaceTable::open(&object).context("the interface counters")?;
    for name in [&topo.sender_if, &topo.receiver_if] {
        let index = super::topology::ifindex(name)?;
        if table.claim(index, &held) {
            held.insert(index);
        }
    }
    Ok((btf, object, slots))
}

/// Attaches kaipo's socket side (cgroup programs at the cgroup v2 root, tracepoints) as kaipo
/// does; returns what degraded.
fn attach_sockets(
    object: &mut Ebpf,
    btf: &Btf,
) -> anyhow::Result<Vec<kaipo::collect::Degradation>> {
    let root = ebpf::cgroup2_root().context("no cgroup v2 mount")?;
    let cgroup = File::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let mut degradations = Vec::new();
    ebpf::attach::sockets(object, &cgroup, btf, &mut degradations)
        .context("attaching the socket programs")?;
    Ok(degradations)
}

/// Loads one of kaipo's classifiers and attaches it through TCX to `iface`'s ingress or egress.
fn attach_classifier(
    object: &mut Ebpf,
    name: &str,
    iface: &str,
    ingress: bool,
) -> anyhow::Result<()> {
    let tc: &mut SchedClassifier = object
        .program_mut(name)
        .with_context(|| format!("no {name}"))?
        .try_into()?;
    tc.load()?;
    let direction = if ingress {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    };
    tc.attach_with_options(
        iface,
        direction,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    )
    .with_context(|| format!("attaching {name} to {iface}"))?;
    Ok(())
}
