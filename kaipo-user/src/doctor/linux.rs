//! Linux: every eBPF program loaded and attached for real, and libpcap's privileges read from
//! the process's capabilities.

use std::fs;

use aya::{programs::CgroupSkbAttachType, Btf};

use super::{Check, Status};
use crate::{
    collect::{
        backend::IngressHook,
        ebpf::{self, attach, EbpfCollectError},
        iface, Interface,
    },
    privilege,
};

/// Whether libpcap is there and may capture.
pub fn pcap_check() -> Check {
    const CAP_NET_RAW: u32 = 13;
    match ::pcap::Device::list() {
        Err(err) => Check::bad(
            "libpcap",
            Status::Degraded,
            format!("libpcap cannot list interfaces: {err}"),
            "install libpcap (Debian: libpcap0.8)",
        ),
        Ok(_) => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            if root || privilege::effective_caps() & (1 << CAP_NET_RAW) != 0 {
                Check::ok("libpcap", "available, and this process may capture")
            } else {
                Check::bad(
                    "libpcap",
                    Status::Degraded,
                    "available, but capturing needs root or CAP_NET_RAW",
                    "run kaipo with sudo, or grant cap_net_raw",
                )
            }
        }
    }
}

/// The eBPF collector's checks.
pub fn ebpf_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing = privilege::missing(privilege::effective_caps());
    let privileged = root || missing.is_empty();
    checks.push(if root {
        Check::ok("privileges", "running as root")
    } else if missing.is_empty() {
        Check::ok("privileges", "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN are effective")
    } else {
        Check::bad(
            "privileges",
            Status::Failed,
            format!("not root and missing {}", missing.join(", ")),
            "run kaipo with sudo, or grant the capabilities (setcap cap_bpf,cap_perfmon,cap_net_admin+ep)",
        )
    });

    let btf = match Btf::from_sys_fs() {
        Ok(btf) => {
            checks.push(Check::ok(
                "kernel BTF",
                "/sys/kernel/btf/vmlinux is readable",
            ));
            Some(btf)
        }
        Err(err) => {
            checks.push(Check::bad(
                "kernel BTF",
                Status::Failed,
                format!("cannot read /sys/kernel/btf/vmlinux: {err}"),
                "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)",
            ));
            None
        }
    };

    let cgroup = match ebpf::open_cgroup2() {
        Ok(found) => {
            checks.push(Check::ok("cgroup v2", found.origin));
            Some(found.dir)
        }
        Err(err) => {
            checks.push(Check::bad(
                "cgroup v2",
                Status::Failed,
                err.to_string(),
                "run as root, or mount -t cgroup2 none /sys/fs/cgroup/unified",
            ));
            None
        }
    };

    checks.push(bpf_stats_check());

    let (Some(btf), Some(cgroup), true) = (btf, cgroup, privileged) else {
        checks.push(Check::bad(
            "kernel programs",
            Status::Failed,
            "not tried: privileges, BTF or cgroup v2 is missing (see above)",
            "fix the checks above, then run kaipo doctor again",
        ));
        return checks;
    };
    let mut object = match ebpf::load(&btf, &ebpf::Options::default()) {
        Ok(object) => {
            checks.push(Check::ok("maps and ring buffer", "created"));
            object
        }
        Err(err) => {
            checks.push(Check::bad(
                "maps and ring buffer",
                Status::Failed,
                err.to_string(),
                "check `ulimit -l` (locked memory) and that the kernel has BPF ring buffers (5.8+)",
            ));
            return checks;
        }
    };
    program_checks(&mut object, &cgroup, &btf, &mut checks);
    checks.push(Check::ok(
        "trampolines (fentry/fexit)",
        "not used: kaipo counts with cgroup hooks and BTF tracepoints, which need no trampolines",
    ));
    checks.push(interfaces_check());
    // Dropping `object` detaches everything tried above.
    drop(object);
    checks
}

fn program_checks(object: &mut aya::Ebpf, cgroup: &fs::File, btf: &Btf, checks: &mut Vec<Check>) {
    let core_fix = "kaipo needs this to count per socket; use a kernel 5.10 or newer with \
                    CONFIG_CGROUP_BPF=y";
    let mut record = |name: &str, result: Result<(), EbpfCollectError>, status, fix: &str| {
        checks.push(match result {
            Ok(()) => Check::ok(name, "loaded and attached"),
            Err(err) => Check::bad(name, status, err.to_string(), fix),
        });
    };
    record(
        "cgroup sock_create",
        attach::cgroup_sock(object, "kaipo_sock_create", cgroup),
        Status::Failed,
        core_fix,
    );
    record(
        "cgroup_skb ingress",
        attach::cgroup_skb(
            object,
            "kaipo_sock_ingress",
            CgroupSkbAttachType::Ingress,
            cgroup,
        ),
        Status::Failed,
        core_fix,
    );
    record(
        "cgroup_skb egress",
        attach::cgroup_skb(
            object,
            "kaipo_sock_egress",
            CgroupSkbAttachType::Egress,
            cgroup,
        ),
        Status::Failed,
        core_fix,
    );
    record(
        "cgroup sock_release",
        attach::cgroup_sock(object, "kaipo_sock_release", cgroup),
        Status::Degraded,
        "closed sockets are then noticed late; needs kernel 5.9 or newer",
    );
    for (name, tracepoint, what) in attach::TRACEPOINTS {
        let fix = format!("without it kaipo loses {what}; needs kernel 5.5+ with BTF");
        record(
            &format!("tp_btf {tracepoint}"),
            attach::tp_btf(object, name, tracepoint, btf),
            Status::Degraded,
            &fix,
        );
    }
    let lo = Interface {
        name: "lo".into(),
        ifindex: kaipo_common::LOOPBACK_IFINDEX,
    };
    let mut notes = Vec::new();
    let result = attach::load_interface_programs(object, IngressHook::Tc)
        .and_then(|()| attach::interface(object, &lo, IngressHook::Tc, &mut notes).map(drop));
    match result {
        Ok(()) if notes.is_empty() => checks.push(Check::ok(
            "TCX on interfaces",
            "the TCX ingress and egress classifiers attached to lo",
        )),
        Ok(()) => checks.push(Check::bad(
            "TCX on interfaces",
            Status::Degraded,
            notes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            "works; a newer kernel (6.6+) gives TCX links",
        )),
        Err(err) => checks.push(Check::bad(
            "TCX on interfaces",
            Status::Degraded,
            err.to_string(),
            "per-interface counters need TC BPF support (CONFIG_NET_CLS_BPF, CONFIG_NET_SCH_INGRESS)",
        )),
    }
    // XDP is the opt-in ingress hook (`--ingress-hook xdp`): try it on lo too.
    let xdp = attach::xdp_on(object, &lo);
    match xdp {
        Ok(mode) => checks.push(Check::ok(
            "XDP on interfaces (--ingress-hook xdp)",
            format!("kaipo_xdp attached to lo in {mode} mode"),
        )),
        Err(err) => checks.push(Check::bad(
            "XDP on interfaces (--ingress-hook xdp)",
            Status::Degraded,
            err.to_string(),
            "only `--ingress-hook xdp` needs it; the default TC ingress hook counts the same frames",
        )),
    }
}

fn bpf_stats_check() -> Check {
    match fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled") {
        Ok(v) if v.trim() == "1" => Check::ok("BPF run-time statistics", "enabled"),
        Ok(_) => Check::ok(
            "BPF run-time statistics",
            "off (kaipo turns them on only while benchmarking; `sysctl kernel.bpf_stats_enabled=1` shows program cost in bpftool)",
        ),
        Err(err) => Check::bad(
            "BPF run-time statistics",
            Status::Degraded,
            format!("cannot read kernel.bpf_stats_enabled: {err}"),
            "program run time cannot be measured on this kernel",
        ),
    }
}

fn interfaces_check() -> Check {
    match iface::select(&[]) {
        Ok(list) if list.is_empty() => Check::bad(
            "interfaces",
            Status::Degraded,
            "no interface is up besides loopback",
            "bring an interface up, or name one with --iface",
        ),
        Ok(list) => Check::ok(
            "interfaces",
            format!(
                "monitored by default: {}",
                list.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(err) => Check::bad(
            "interfaces",
            Status::Degraded,
            err.to_string(),
            "check /sys/class/net",
        ),
    }
}
