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
    // Root without the capabilities (in a container started without them) is not enough.
    let privileged = missing.is_empty();
    checks.push(if root && privileged {
        Check::ok("privileges", "running as root")
    } else if privileged {
        Check::ok("privileges", "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN are effective")
    } else {
        Check::bad(
            "privileges",
            Status::Failed,
            format!(
                "{} and missing {}",
                if root { "root" } else { "not root" },
                missing.join(", ")
            ),
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
    let cookie_read = ebpf::running_kernel_cookie_read();
    let mut object = match load_object(&btf, cookie_read.as_ref().ok()) {
        Ok(object) => {
            checks.push(Check::ok("maps and ring buffer", "created"));
            object
        }
        Err(failed) => {
            checks.push(failed);
            return checks;
        }
    };
    checks.push(match ebpf::running_kernel_sk_lock_owned() {
        Ok(at) => Check::ok(
            "socket lock in BTF",
            format!("`sk_lock.owned` at byte {at} of `struct tcp_sock`: TCP owners learned as they send"),
        ),
        Err(err) => Check::bad(
            "socket lock in BTF",
            Status::Degraded,
            err,
            "owners of TCP sockets accepted or older than kaipo are then found by scanning /proc \
             each interval they carry traffic; a kernel with complete BTF avoids that",
        ),
    });
    // Kept until the programs below are loaded: they refer to the slot maps.
    let slots = ebpf::open_slots(&mut object);
    checks.push(match &slots {
        Ok(slots) => Check::ok(
            "socket slots",
            format!(
                "{} slots mapped: each socket counts in a slot of its own, without a hash \
                 lookup (see \"socket lookup\" for how a packet finds it)",
                crate::format::count(u64::from(slots.capacity()))
            ),
        ),
        Err(err) => Check::bad(
            "socket slots",
            Status::Degraded,
            err.to_string(),
            "every socket then counts in the shared socket map, a hash lookup per packet; \
             check `ulimit -l` and that the kernel maps BPF arrays (5.5+)",
        ),
    });
    let lookup_fix = "each packet then finds its socket's slot with a helper call (the socket's \
                      storage), which costs the socket programs about 20 ns more per packet; \
                      Linux 6.2 and later offer the direct read";
    let lookup = match (&cookie_read, &slots) {
        (_, Err(_)) => None,
        (Err(why), Ok(_)) => Some(Check::bad(
            "socket lookup",
            Status::Degraded,
            why.clone(),
            lookup_fix,
        )),
        (Ok(found), Ok(_)) => Some(match attach::load_socket_counters(&mut object) {
            Ok(()) => Check::ok(
                "socket lookup",
                format!(
                    "by cookie: the socket programs read it at byte {} of the kernel's \
                     `struct sock` (kernel function `bpf_rdonly_cast`) and find the slot \
                     without a helper call",
                    found.cookie_at
                ),
            ),
            Err(err) => {
                // Load the object again without the direct read, as `kaipo watch` would.
                drop(object);
                object = match load_object(&btf, None) {
                    Ok(object) => object,
                    Err(failed) => {
                        checks.push(failed);
                        return checks;
                    }
                };
                Check::bad(
                    "socket lookup",
                    Status::Degraded,
                    err.to_string(),
                    lookup_fix,
                )
            }
        }),
    };
    checks.extend(lookup);
    program_checks(&mut object, &cgroup, &btf, &mut checks);
    checks.push(Check::ok(
        "trampolines (fentry/fexit)",
        "not used: kaipo counts with cgroup hooks and BTF tracepoints, which need no trampolines",
    ));
    checks.push(interfaces_check());
    // Dropping `object` detaches everything tried above.
    drop(object);
    drop(slots);
    checks
}

/// kaipo's object with its maps created, as `kaipo watch` loads it; the failed check otherwise.
fn load_object(btf: &Btf, cookie_read: Option<&ebpf::CookieRead>) -> Result<aya::Ebpf, Check> {
    ebpf::load(btf, &ebpf::Options::default(), true, cookie_read).map_err(|err| {
        Check::bad(
            "maps and ring buffer",
            Status::Failed,
            err.to_string(),
            "check `ulimit -l` (locked memory) and that the kernel has BPF ring buffers (5.8+)",
        )
    })
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

/// What confines kaipo after start here: the daemon's user, seccomp, Landlock. Not about
/// collecting, so [`super::summary`] leaves them out of its count.
pub fn sandbox_checks() -> Vec<Check> {
    let config =
        crate::config::Config::load(&crate::config::default_path(true)).unwrap_or_default();
    let name = config.daemon.user.as_str();
    let user = match crate::sandbox::account::lookup(name) {
        Ok(Some(a)) if a.uid == 0 => Check::ok(
            "sandbox: daemon user",
            format!("daemon.user is {name:?}: the daemon stays root after start"),
        ),
        Ok(Some(a)) => Check::ok(
            "sandbox: daemon user",
            format!(
                "the daemon becomes {name} (uid {}) after start, keeping only the capabilities \
                 it still uses",
                a.uid
            ),
        ),
        Ok(None) => Check::bad(
            "sandbox: daemon user",
            Status::Degraded,
            format!("there is no user {name}: the daemon would stay root after start"),
            "kaipo install-service creates user kaipo (or: useradd --system --no-create-home \
             --shell /usr/sbin/nologin kaipo)",
        ),
        Err(e) => Check::bad(
            "sandbox: daemon user",
            Status::Degraded,
            format!("looking up user {name}: {e}"),
            "check /etc/nsswitch.conf",
        ),
    };
    let has_seccomp = fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    let seccomp = match crate::sandbox::seccomp::program() {
        Ok(_) if has_seccomp => Check::ok(
            "sandbox: seccomp",
            format!(
                "the daemon, watch and live allow {} system calls once collecting; others fail \
                 with EPERM",
                crate::sandbox::seccomp::allowed_count()
            ),
        ),
        Ok(_) => Check::bad(
            "sandbox: seccomp",
            Status::Degraded,
            "the kernel has no seccomp filters (no Seccomp field in /proc/self/status)",
            "a kernel built with CONFIG_SECCOMP_FILTER",
        ),
        Err(e) => Check::bad(
            "sandbox: seccomp",
            Status::Degraded,
            e.to_string(),
            "none: kaipo runs without a system call filter here",
        ),
    };
    let state = if config.daemon.landlock {
        "on (daemon.landlock = true)"
    } else {
        "off (daemon.landlock = false; with it on, processes are named by their command name)"
    };
    let landlock = match crate::sandbox::landlock::kernel_abi() {
        Ok(abi) => Check::ok(
            "sandbox: Landlock",
            format!("Landlock ABI {abi} available; for the daemon {state}"),
        ),
        Err(why) => Check::bad(
            "sandbox: Landlock",
            if config.daemon.landlock {
                Status::Degraded
            } else {
                Status::Ok
            },
            format!("{why}; for the daemon {state}"),
            "Linux 5.13+ with landlock in the lsm= boot parameter",
        ),
    };
    vec![user, seccomp, landlock]
}

const BPF_STATS: &str = "BPF run-time statistics";

fn bpf_stats_check() -> Check {
    bpf_stats_finding(fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled"))
}

/// What `kernel.bpf_stats_enabled` says. The file shows only what was written to it: a
/// process that holds the statistics on through BPF_ENABLE_STATS (the daemon serving metrics,
/// `bpftool prog profile`) turns them on without changing it, so 0 means "not on for
/// everyone", not "off".
fn bpf_stats_finding(read: std::io::Result<String>) -> Check {
    match read.as_deref().map(str::trim) {
        Ok("1") => Check::ok(
            BPF_STATS,
            "on for every BPF program (kernel.bpf_stats_enabled = 1): the kernel times each \
             program run, at a few nanoseconds per run, and `bpftool prog` shows run_time_ns",
        ),
        Ok("0") => Check::ok(
            BPF_STATS,
            "not switched on system-wide (kernel.bpf_stats_enabled = 0), so programs are not \
             timed unless a process holds the statistics on: `kaipo daemon` does while it serves \
             metrics with [metrics] bpf_stats = true (the default), without changing this \
             setting; `sysctl kernel.bpf_stats_enabled=1` turns them on for everyone",
        ),
        Ok(other) => Check::bad(
            BPF_STATS,
            Status::Degraded,
            format!("kernel.bpf_stats_enabled reads {other:?}, neither 0 nor 1"),
            "`sysctl kernel.bpf_stats_enabled=0` or `=1`",
        ),
        Err(err) => Check::bad(
            BPF_STATS,
            Status::Degraded,
            format!("cannot read /proc/sys/kernel/bpf_stats_enabled: {err}"),
            "a kernel from 5.8 on has it; without it, program run time cannot be measured",
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

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// The old wording said kaipo turns the statistics on "only while benchmarking", which
    /// the daemon's metrics contradict, and took anything but "1" for off.
    #[test]
    fn the_bpf_statistics_finding_says_what_each_value_means() {
        let on = bpf_stats_finding(Ok("1\n".into()));
        assert_eq!(on.status, Status::Ok);
        assert!(
            on.detail.starts_with("on for every BPF program"),
            "{}",
            on.detail
        );
        let off = bpf_stats_finding(Ok("0\n".into()));
        assert_eq!(off.status, Status::Ok);
        assert!(
            off.detail
                .starts_with("not switched on system-wide (kernel.bpf_stats_enabled = 0)"),
            "{}",
            off.detail
        );
        assert!(off
            .detail
            .contains("`kaipo daemon` does while it serves metrics"));
        assert!(!off.detail.contains("benchmarking"));
        let odd = bpf_stats_finding(Ok("2\n".into()));
        assert_eq!(odd.status, Status::Degraded);
        assert_eq!(
            odd.detail,
            "kernel.bpf_stats_enabled reads \"2\", neither 0 nor 1"
        );
        let missing = bpf_stats_finding(Err(io::Error::from(io::ErrorKind::NotFound)));
        assert_eq!(missing.status, Status::Degraded);
        assert!(missing
            .detail
            .starts_with("cannot read /proc/sys/kernel/bpf_stats_enabled"));
    }

    /// The kernel side names its maps by their statics' identifiers (aya-ebpf's `#[map]`
    /// takes no constant); userspace takes them by `kaipo_common::maps`. The object the
    /// collector and doctor load must hold exactly those maps.
    #[test]
    fn the_kernel_object_has_exactly_the_maps_kaipo_common_names() {
        let object = aya_obj::Object::parse(ebpf::OBJECT).expect("kaipo's eBPF object parses");
        // Global variables live in maps named after their sections (.rodata, .bss).
        let mut in_object: Vec<&str> = object
            .maps
            .keys()
            .map(String::as_str)
            .filter(|name| !name.starts_with('.'))
            .collect();
        in_object.sort_unstable();
        let mut named = kaipo_common::maps::ALL.to_vec();
        named.sort_unstable();
        assert_eq!(in_object, named);
    }
}
