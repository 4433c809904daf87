//! Where the flood's cost goes: the same flood with one piece of kaipo's kernel side attached
//! at a time, straight from kaipo's object and without kaipo's userspace (which is not on the
//! packet path), and with an XDP program that does nothing, to separate the price of generic
//! XDP itself from that of kaipo's code.

use std::{fs::File, os::fd::OwnedFd};

use anyhow::Context as _;
use aya::{
    programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Btf, Ebpf,
};
use kaipo::collect::ebpf;

use super::{baseline, testrun::PROGRAMS, topology::Topology};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `r0 = XDP_PASS; exit` in generic mode on the sender's host end.
    EmptyXdp,
    /// The same, loaded as accepting multi-buffer frames (`BPF_F_XDP_HAS_FRAGS`), as
    /// `kaipo_xdp` is.
    EmptyXdpFrags,
    /// `kaipo_xdp` in generic mode on the sender's host end.
    Xdp,
    /// `kaipo_tc_egress` (TCX) on the receiver's host end.
    Tc,
    /// The socket side: the cgroup_skb and cgroup_sock programs at the cgroup v2 root and the
    /// send/receive/exit tracepoints.
    Sockets,
}

impl Piece {
    pub const ALL: [Self; 5] = [
        Self::EmptyXdp,
        Self::EmptyXdpFrags,
        Self::Xdp,
        Self::Tc,
        Self::Sockets,
    ];

    pub fn describe(self, topo: &Topology) -> String {
        match self {
            Self::EmptyXdp => format!(
                "an empty XDP program (generic mode) on `{}`",
                topo.sender_if
            ),
            Self::EmptyXdpFrags => format!(
                "an empty XDP program loaded with `BPF_F_XDP_HAS_FRAGS` like `kaipo_xdp` (generic mode) on `{}`",
                topo.sender_if
            ),
            Self::Xdp => format!(
                "`{}` only (generic mode) on `{}`",
                PROGRAMS[0], topo.sender_if
            ),
            Self::Tc => format!(
                "`{}` only (TCX egress) on `{}`",
                PROGRAMS[1], topo.receiver_if
            ),
            Self::Sockets => "the socket side only (cgroup_skb, cgroup_sock, tracepoints)".into(),
        }
    }
}

/// Whatever holds the attachment; dropping it detaches.
pub struct Attached {
    _object: Option<Box<Ebpf>>,
    /// An empty program and its link.
    _link: Option<(OwnedFd, OwnedFd)>,
}

pub fn attach(piece: Piece, topo: &Topology) -> anyhow::Result<Attached> {
    let ifindex = |name: &str| -> anyhow::Result<u32> {
        Ok(
            std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?
                .trim()
                .parse()?,
        )
    };
    let load = || -> anyhow::Result<(Btf, Ebpf)> {
        let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
        let object =
            ebpf::load(&btf, &ebpf::Options::default()).context("loading kaipo's object")?;
        Ok((btf, object))
    };
    let object = match piece {
        Piece::EmptyXdp | Piece::EmptyXdpFrags => {
            let flags = if piece == Piece::EmptyXdpFrags {
                baseline::XDP_HAS_FRAGS
            } else {
                0
            };
            let prog = baseline::load_empty(baseline::PROG_TYPE_XDP, flags, 2)?;
            let link = baseline::attach_xdp_generic(&prog, ifindex(&topo.sender_if)?)?;
            return Ok(Attached {
                _object: None,
                _link: Some((prog, link)),
            });
        }
        Piece::Xdp => {
            let (_, mut object) = load()?;
            let xdp: &mut Xdp = object
                .program_mut(PROGRAMS[0])
                .context("no kaipo_xdp")?
                .try_into()?;
            xdp.load()?;
            xdp.attach_to_if_index(ifindex(&topo.sender_if)?, XdpMode::Skb)
                .context("attaching kaipo_xdp")?;
            object
        }
        Piece::Tc => {
            let (_, mut object) = load()?;
            let tc: &mut SchedClassifier = object
                .program_mut(PROGRAMS[1])
                .context("no kaipo_tc_egress")?
                .try_into()?;
            tc.load()?;
            tc.attach_with_options(
                &topo.receiver_if,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .context("attaching kaipo_tc_egress")?;
            object
        }
        Piece::Sockets => {
            let (btf, mut object) = load()?;
            let root = ebpf::cgroup2_root().context("no cgroup v2 mount")?;
            let cgroup =
                File::open(&root).with_context(|| format!("opening {}", root.display()))?;
            let mut degradations = Vec::new();
            ebpf::attach::sockets(&mut object, &cgroup, &btf, &mut degradations)
                .context("attaching the socket programs")?;
            object
        }
    };
    // Nothing reads the maps; the object only has to live while attached.
    Ok(Attached {
        _object: Some(Box::new(object)),
        _link: None,
    })
}
