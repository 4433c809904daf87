//! Attaching each program, with the fallbacks the kernel may force on us.

use std::fs::File;

use aya::{
    programs::{
        tc::SchedClassifierLinkId,
        tc::{self, NlOptions, TcAttachOptions},
        xdp::XdpLinkId,
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, LinkOrder,
        Program, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Btf, Ebpf,
};

use super::error::{describe, EbpfCollectError};
use crate::collect::{backend::IngressHook, Degradation, Interface};

/// On kernels with BPF links (5.7 on) aya attaches through a link, which the kernel always treats
/// as one of many (other users of the cgroup hooks, such as systemd's IP accounting, keep
/// working beside it) and which must be created without flags.
const CGROUP_MODE: CgroupAttachMode = CgroupAttachMode::Single;

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, EbpfCollectError>
where
    &'a mut T: TryFrom<&'a mut Program>,
{
    ebpf.program_mut(name)
        .ok_or(EbpfCollectError::Missing(name))?
        .try_into()
        .map_err(|_| EbpfCollectError::Missing(name))
}

fn load_err(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> EbpfCollectError {
    move |err| EbpfCollectError::Load {
        program,
        detail: describe(&err),
    }
}

/// The tracepoints kaipo attaches: program, tracepoint, and what is lost without it.
pub const TRACEPOINTS: [(&str, &str, &str); 1] = [(
    "kaipo_proc_exit",
    "sched_process_exit",
    "process exit events",
)];

/// Loads a cgroup socket hook and attaches it at the cgroup v2 root.
pub fn cgroup_sock(
    ebpf: &mut Ebpf,
    name: &'static str,
    cgroup: &File,
) -> Result<(), EbpfCollectError> {
    let prog: &mut CgroupSock = program(ebpf, name)?;
    prog.load().map_err(load_err(name))?;
    prog.attach(cgroup, CGROUP_MODE)
        .map(drop)
        .map_err(|err| EbpfCollectError::Attach {
            program: name,
            target: "the cgroup v2 root".into(),
            detail: describe(&err),
        })
}

/// Loads a per-socket counter and attaches it at the cgroup v2 root.
pub fn cgroup_skb(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach_type: CgroupSkbAttachType,
    cgroup: &File,
) -> Result<(), EbpfCollectError> {
    let prog: &mut CgroupSkb = program(ebpf, name)?;
    if prog.fd().is_err() {
        prog.load().map_err(load_err(name))?;
    }
    prog.attach(cgroup, attach_type, CGROUP_MODE)
        .map(drop)
        .map_err(|err| EbpfCollectError::Attach {
            program: name,
            target: "the cgroup v2 root".into(),
            detail: describe(&err),
        })
}

/// Loads the two socket-counting programs without attaching them, so that a kernel that
/// refuses them (their direct cookie read) is found before anything is attached.
pub fn load_socket_counters(ebpf: &mut Ebpf) -> Result<(), EbpfCollectError> {
    for name in ["kaipo_sock_ingress", "kaipo_sock_egress"] {
        let prog: &mut CgroupSkb = program(ebpf, name)?;
        if prog.fd().is_err() {
            prog.load().map_err(load_err(name))?;
        }
    }
    Ok(())
}

/// Loads a BTF tracepoint program and attaches it.
pub fn tp_btf(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<(), EbpfCollectError> {
    let prog: &mut BtfTracePoint = program(ebpf, name)?;
    prog.load(tracepoint, btf).map_err(load_err(name))?;
    prog.attach()
        .map(drop)
        .map_err(|err| EbpfCollectError::Attach {
            program: name,
            target: format!("tracepoint {tracepoint}"),
            detail: describe(&err),
        })
}

/// Per-socket counting and the hooks that find each socket's owner. Counting is the core and
/// must attach; the owner hooks degrade one by one.
pub fn sockets(
    ebpf: &mut Ebpf,
    cgroup: &File,
    btf: &Btf,
    degradations: &mut Vec<Degradation>,
) -> Result<(), EbpfCollectError> {
    // Owners first, so that no socket created from here on is missed.
    cgroup_sock(ebpf, "kaipo_sock_create", cgroup)?;
    for (name, tracepoint, what) in TRACEPOINTS {
        if let Err(err) = tp_btf(ebpf, name, tracepoint, btf) {
            degradations.push(Degradation {
                what: format!("{what} (tracepoint {tracepoint})"),
                why: err.to_string(),
            });
        }
    }
    cgroup_skb(
        ebpf,
        "kaipo_sock_ingress",
        CgroupSkbAttachType::Ingress,
        cgroup,
    )?;
    cgroup_skb(
        ebpf,
        "kaipo_sock_egress",
        CgroupSkbAttachType::Egress,
        cgroup,
    )?;
    if let Err(err) = cgroup_sock(ebpf, "kaipo_sock_release", cgroup) {
        degradations.push(Degradation {
            what: "socket close events".into(),
            why: format!("{err}; closed sockets are noticed only when their counters go quiet"),
        });
    }
    Ok(())
}

/// Loads the interface programs (once per object): the egress classifier and the one that
/// counts incoming frames. With XDP chosen, the TC ingress stand-in is loaded only when an
/// interface needs it.
pub fn load_interface_programs(ebpf: &mut Ebpf, hook: IngressHook) -> Result<(), EbpfCollectError> {
    match hook {
        IngressHook::Tc => load_classifier(ebpf, "kaipo_tc_ingress")?,
        IngressHook::Xdp => program::<Xdp>(ebpf, "kaipo_xdp")?
            .load()
            .map_err(load_err("kaipo_xdp"))?,
    }
    load_classifier(ebpf, "kaipo_tc_egress")
}

fn load_classifier(ebpf: &mut Ebpf, name: &'static str) -> Result<(), EbpfCollectError> {
    let classifier: &mut SchedClassifier = program(ebpf, name)?;
    if classifier.fd().is_err() {
        classifier.load().map_err(load_err(name))?;
    }
    Ok(())
}

/// How the interface programs ended up attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceAttach {
    /// A classifier went through a clsact qdisc and netlink (no TCX): it is removed at exit
    /// by a netlink request, which needs CAP_NET_ADMIN.
    pub netlink: bool,
}

/// The links that tie kaipo's programs to one interface, kept so that they can be detached
/// when the interface goes away.
#[derive(Debug)]
pub struct InterfaceLinks {
    pub iface: Interface,
    tc_ingress: Option<SchedClassifierLinkId>,
    tc_egress: SchedClassifierLinkId,
    xdp: Option<XdpLinkId>,
    pub netlink: bool,
}

/// Detaches what [`interface`] attached. Links of an interface that no longer exists are
/// already defunct in the kernel; dropping them only closes kaipo's descriptors.
pub fn detach_interface(ebpf: &mut Ebpf, links: InterfaceLinks) {
    undo_ingress(ebpf, links.tc_ingress, links.xdp);
    if let Ok(tc) = program::<SchedClassifier>(ebpf, "kaipo_tc_egress") {
        let _ = tc.detach(links.tc_egress);
    }
}

/// Attaches the ingress and egress programs to one interface.
pub fn interface(
    ebpf: &mut Ebpf,
    iface: &Interface,
    hook: IngressHook,
    degradations: &mut Vec<Degradation>,
) -> Result<InterfaceLinks, EbpfCollectError> {
    let mut outcome = InterfaceAttach::default();
    let mut xdp_link = None;
    let mut tc_ingress = None;
    let xdp_err = match hook {
        IngressHook::Tc => None,
        IngressHook::Xdp => match attach_xdp(program(ebpf, "kaipo_xdp")?, iface) {
            Ok((_, id)) => {
                xdp_link = Some(id);
                None
            }
            Err(err) => Some(err),
        },
    };
    if hook == IngressHook::Tc || xdp_err.is_some() {
        // The XDP hook holds one program per interface; when another tool (or another kaipo)
        // has it, TCX ingress, which programs share, counts the same frames.
        load_classifier(ebpf, "kaipo_tc_ingress")?;
        let ingress: &mut SchedClassifier = program(ebpf, "kaipo_tc_ingress")?;
        let (netlink, id) = attach_tc(ingress, "kaipo_tc_ingress", TcAttachType::Ingress, iface)
            .map_err(|tc_err| match &xdp_err {
                Some(xdp_err) => EbpfCollectError::Attach {
                    program: "kaipo_xdp",
                    target: iface.name.clone(),
                    detail: format!("{xdp_err}; TC ingress instead: {tc_err}"),
                },
                None => tc_err,
            })?;
        outcome.netlink |= netlink;
        tc_ingress = Some(id);
        if let Some(xdp_err) = xdp_err {
            degradations.push(Degradation {
                what: format!("ingress counting on {}", iface.name),
                why: format!(
                    "XDP could not attach ({xdp_err}); counting with a TC ingress classifier"
                ),
            });
        }
    }
    let egress: &mut SchedClassifier = program(ebpf, "kaipo_tc_egress")?;
    let (netlink, tc_egress) =
        match attach_tc(egress, "kaipo_tc_egress", TcAttachType::Egress, iface) {
            Ok(attached) => attached,
            Err(err) => {
                // Leave nothing half attached.
                undo_ingress(ebpf, tc_ingress, xdp_link);
                return Err(err);
            }
        };
    outcome.netlink |= netlink;
    if outcome.netlink {
        degradations.push(Degradation {
            what: format!("classifiers on {}", iface.name),
            why: "TCX is not available (kernel before 6.6); attached through a clsact qdisc".into(),
        });
    }
    Ok(InterfaceLinks {
        iface: iface.clone(),
        tc_ingress,
        tc_egress,
        xdp: xdp_link,
        netlink: outcome.netlink,
    })
}

/// Undoes an interface's ingress attachment after its egress one failed.
fn undo_ingress(
    ebpf: &mut Ebpf,
    tc_ingress: Option<SchedClassifierLinkId>,
    xdp: Option<XdpLinkId>,
) {
    if let Some(id) = xdp {
        if let Ok(p) = program::<Xdp>(ebpf, "kaipo_xdp") {
            let _ = p.detach(id);
        }
    }
    if let Some(id) = tc_ingress {
        if let Ok(p) = program::<SchedClassifier>(ebpf, "kaipo_tc_ingress") {
            let _ = p.detach(id);
        }
    }
}

/// The ingress and egress programs on each interface. An interface the user named must attach;
/// one picked by default may be skipped with a note.
pub fn interfaces(
    ebpf: &mut Ebpf,
    ifaces: &[Interface],
    hook: IngressHook,
    user_named: bool,
    degradations: &mut Vec<Degradation>,
) -> Result<Vec<InterfaceLinks>, EbpfCollectError> {
    load_interface_programs(ebpf, hook)?;
    let mut all = Vec::with_capacity(ifaces.len());
    for iface in ifaces {
        match interface(ebpf, iface, hook, degradations) {
            Ok(links) => all.push(links),
            Err(err) if user_named => return Err(err),
            Err(err) => degradations.push(Degradation {
                what: format!("interface {}", iface.name),
                why: format!("not monitored: {err}"),
            }),
        }
    }
    Ok(all)
}

/// Loads `kaipo_xdp` if needed and attaches it to one interface; says which mode took.
pub fn xdp_on(ebpf: &mut Ebpf, iface: &Interface) -> Result<&'static str, EbpfCollectError> {
    let xdp: &mut Xdp = program(ebpf, "kaipo_xdp")?;
    if xdp.fd().is_err() {
        xdp.load().map_err(load_err("kaipo_xdp"))?;
    }
    attach_xdp(xdp, iface)
        .map(|(mode, _)| mode)
        .map_err(|detail| EbpfCollectError::Attach {
            program: "kaipo_xdp",
            target: iface.name.clone(),
            detail,
        })
}

/// Driver mode first, where the driver runs XDP on its own receive buffers before any socket
/// buffer exists; generic (SKB) mode otherwise, which works on every interface but first
/// copies or reallocates each frame that lacks XDP's headroom.
fn attach_xdp(xdp: &mut Xdp, iface: &Interface) -> Result<(&'static str, XdpLinkId), String> {
    let driver_err = match xdp.attach_to_if_index(iface.ifindex, XdpMode::Driver) {
        Ok(id) => return Ok(("driver", id)),
        Err(err) => describe(&err),
    };
    match xdp.attach_to_if_index(iface.ifindex, XdpMode::Skb) {
        Ok(id) => Ok(("generic", id)),
        Err(err) => Err(format!(
            "driver mode: {driver_err}; generic mode: {}",
            describe(&err)
        )),
    }
}

/// TCX where the kernel has it, else a clsact qdisc and a netlink filter. Returns whether
/// netlink was used, and the link.
fn attach_tc(
    classifier: &mut SchedClassifier,
    name: &'static str,
    direction: TcAttachType,
    iface: &Interface,
) -> Result<(bool, SchedClassifierLinkId), EbpfCollectError> {
    let tcx = classifier.attach_with_options(
        &iface.name,
        direction,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    );
    let tcx_err = match tcx {
        Ok(id) => return Ok((false, id)),
        Err(err) => describe(&err),
    };
    match tc::qdisc_add_clsact(&iface.name) {
        Ok(()) | Err(tc::TcError::AlreadyAttached) => {}
        Err(err) => {
            return Err(EbpfCollectError::Attach {
                program: name,
                target: iface.name.clone(),
                detail: format!("TCX: {tcx_err}; clsact qdisc: {err}"),
            })
        }
    }
    let id = classifier
        .attach_with_options(
            &iface.name,
            direction,
            TcAttachOptions::Netlink(NlOptions::default()),
        )
        .map_err(|err| EbpfCollectError::Attach {
            program: name,
            target: iface.name.clone(),
            detail: format!("TCX: {tcx_err}; netlink: {}", describe(&err)),
        })?;
    Ok((true, id))
}
