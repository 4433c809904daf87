//! `kaipo doctor` inside a container: what the container was started without, said as the
//! flag (`podman run`/`docker run`) or pod-spec field (Kubernetes) that gives it.
//!
//! A container is recognised by what its runtime leaves behind (`/run/.containerenv` for
//! Podman, `/.dockerenv` for Docker, `KUBERNETES_SERVICE_HOST` in a pod, `container=` in the
//! environment for others). The host's namespaces are recognised by their inode numbers: the
//! initial PID and cgroup namespaces have fixed ones (`PROC_PID_INIT_INO`,
//! `PROC_CGROUP_INIT_INO` in the kernel's include/linux/proc_ns.h), and the initial network
//! namespace is the one PID 1 of the host PID namespace is in.

use std::os::unix::fs::MetadataExt as _;

use super::{Check, Status};
use crate::privilege;

const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
const PROC_CGROUP_INIT_INO: u64 = 0xEFFF_FFFB;
const CAP_CHOWN: u32 = 0;
const CAP_SYS_PTRACE: u32 = 19;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    Kubernetes,
    Podman,
    Docker,
    Other(String),
}

impl Runtime {
    fn name(&self) -> &str {
        match self {
            Self::Kubernetes => "Kubernetes",
            Self::Podman => "Podman",
            Self::Docker => "Docker",
            Self::Other(name) => name,
        }
    }

    /// The fix in this runtime's words: a run flag, or a pod-spec field.
    fn say(&self, run_flag: &str, pod_field: &str) -> String {
        match self {
            Self::Kubernetes => format!("in the pod spec: {pod_field}"),
            Self::Docker => format!("docker run {run_flag}"),
            _ => format!("podman run {run_flag} (docker run takes the same)"),
        }
    }
}

/// The container kaipo runs in, if any.
pub fn detect() -> Option<Runtime> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("KUBERNETES_SERVICE_HOST").is_some() {
        return Some(Runtime::Kubernetes);
    }
    if std::path::Path::new("/run/.containerenv").exists() {
        return Some(Runtime::Podman);
    }
    if std::path::Path::new("/.dockerenv").exists() {
        return Some(Runtime::Docker);
    }
    // Podman also sets `container=podman`, which stays when /run is a fresh tmpfs
    // (`--read-only`) and .containerenv is not there.
    env("container").map(|name| match name.as_str() {
        "podman" => Runtime::Podman,
        "docker" => Runtime::Docker,
        _ => Runtime::Other(name),
    })
}

fn ns_inode(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// What was found, apart from the checks, so that tests can feed it.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub pid_ns: Option<u64>,
    pub cgroup_ns: Option<u64>,
    /// This process's network namespace and PID 1's.
    pub net_ns: Option<u64>,
    pub init_net_ns: Option<u64>,
    pub caps: u64,
    /// `Seccomp:` of /proc/self/status: 2 when a filter is on.
    pub seccomp_filter: bool,
    /// What `bpf()` answered a harmless probe: `Some(errno)` when refused before the kernel
    /// looked at it.
    pub bpf_refused: Option<i32>,
}

impl Found {
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let seccomp = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(str::trim);
        Self {
            pid_ns: ns_inode("/proc/self/ns/pid"),
            cgroup_ns: ns_inode("/proc/self/ns/cgroup"),
            net_ns: ns_inode("/proc/self/ns/net"),
            // PID 1's namespace link may be closed to us (it takes ptrace access); its
            // interface list, which anyone may read, tells the same.
            init_net_ns: ns_inode("/proc/1/ns/net").or_else(|| {
                let names = |p: &str| {
                    std::fs::read_to_string(p).ok().map(|t| {
                        t.lines()
                            .skip(2)
                            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
                            .collect::<Vec<_>>()
                    })
                };
                let (init, own) = (names("/proc/1/net/dev")?, names("/proc/self/net/dev")?);
                let own_ns = ns_inode("/proc/self/ns/net")?;
                // Same interfaces: the same namespace; otherwise any other inode.
                Some(if init == own { own_ns } else { own_ns ^ 1 })
            }),
            caps: privilege::effective_caps(),
            seccomp_filter: seccomp == Some("2"),
            bpf_refused: bpf_probe(),
        }
    }
}

/// `bpf(BPF_MAP_CREATE)` of map type 0 (unspecified), which the kernel itself always refuses
/// with EINVAL: any other answer (EPERM, ENOSYS) came from a seccomp filter or from missing
/// capabilities before the kernel looked.
fn bpf_probe() -> Option<i32> {
    // bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, ... (zeroed).
    let attr = [0u8; 72];
    // SAFETY: the attribute buffer is valid for its stated size and only read by the kernel.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0 as libc::c_long,
            attr.as_ptr(),
            attr.len() as libc::c_long,
        )
    };
    if r >= 0 {
        // SAFETY: a descriptor the kernel just returned; closing it is all we do with it.
        unsafe { libc::close(r as libc::c_int) };
        return None;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EINVAL) | None => None,
        Some(errno) => Some(errno),
    }
}

/// The container checks, in the runtime's terms.
pub fn checks(rt: &Runtime, f: &Found) -> Vec<Check> {
    let mut out = vec![Check::ok(
        "container",
        format!("running in a {} container", rt.name()),
    )];
    out.push(match f.pid_ns {
        Some(PROC_PID_INIT_INO) => Check::ok("host PID namespace", "shared with the host"),
        _ => Check::bad(
            "host PID namespace",
            Status::Degraded,
            "the container has its own: the kernel reports host pids, which this /proc cannot \
             name, so processes show as pids without names",
            &rt.say("--pid=host", "hostPID: true"),
        ),
    });
    let host_net = match (f.pid_ns, f.net_ns, f.init_net_ns) {
        (Some(PROC_PID_INIT_INO), Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    out.push(match host_net {
        Some(true) => Check::ok("host network namespace", "shared with the host"),
        Some(false) => Check::bad(
            "host network namespace",
            Status::Degraded,
            "the container has its own: only its interfaces are monitored, not the host's",
            &rt.say("--network=host", "hostNetwork: true"),
        ),
        None => Check::bad(
            "host network namespace",
            Status::Degraded,
            "cannot tell without the host PID namespace",
            &rt.say(
                "--pid=host --network=host",
                "hostPID: true and hostNetwork: true",
            ),
        ),
    });
    out.push(match f.cgroup_ns {
        Some(PROC_CGROUP_INIT_INO) => Check::ok("host cgroup namespace", "shared with the host"),
        _ => Check::bad(
            "host cgroup namespace",
            Status::Degraded,
            "the container has its own: the socket hooks attach at its cgroup root, so only \
             this container's sockets might be counted, and containers are not named",
            &rt.say(
                "--cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup",
                "a hostPath volume /sys/fs/cgroup mounted at /sys/fs/cgroup (the kubelet runs \
                 pods in the host cgroup namespace on cgroup v2 unless told otherwise)",
            ),
        ),
    });
    let mut missing: Vec<&str> = privilege::missing(f.caps);
    let extra = [(CAP_SYS_PTRACE, "CAP_SYS_PTRACE"), (CAP_CHOWN, "CAP_CHOWN")];
    for (cap, name) in extra {
        if f.caps & (1 << cap) == 0 {
            missing.push(name);
        }
    }
    out.push(if missing.is_empty() {
        Check::ok(
            "container capabilities",
            "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_CHOWN are effective",
        )
    } else {
        let short: Vec<&str> = missing
            .iter()
            .map(|c| c.strip_prefix("CAP_").unwrap_or(c))
            .collect();
        Check::bad(
            "container capabilities",
            // BPF, PERFMON and NET_ADMIN are what the collector needs; the other two name
            // processes of other users and give the history to group kaipo.
            if missing
                .iter()
                .any(|c| ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"].contains(c))
            {
                Status::Failed
            } else {
                Status::Degraded
            },
            format!("missing {}", missing.join(", ")),
            &rt.say(
                &format!("--cap-add={}", short.join(",")),
                &format!("securityContext.capabilities.add: [{}]", short.join(", ")),
            ),
        )
    });
    if let Some(errno) = f.bpf_refused.filter(|_| f.seccomp_filter) {
        out.push(Check::bad(
            "seccomp",
            Status::Failed,
            format!(
                "a seccomp filter refuses the bpf() system call ({}); the runtime's default \
                 profile allows it only with CAP_SYS_ADMIN",
                std::io::Error::from_raw_os_error(errno)
            ),
            &rt.say(
                "--security-opt seccomp=unconfined",
                "securityContext.seccompProfile.type: Unconfined",
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(checks: &[Check]) -> Vec<(&str, Status)> {
        checks.iter().map(|c| (c.name.as_str(), c.status)).collect()
    }

    #[test]
    fn a_bare_container_is_told_each_flag() {
        let found = Found {
            pid_ns: Some(4026532200),
            cgroup_ns: Some(4026532201),
            net_ns: Some(4026532202),
            init_net_ns: Some(4026532202),
            caps: 1 << CAP_CHOWN,
            seccomp_filter: true,
            bpf_refused: Some(libc::EPERM),
        };
        let c = checks(&Runtime::Podman, &found);
        assert_eq!(
            names(&c),
            [
                ("container", Status::Ok),
                ("host PID namespace", Status::Degraded),
                ("host network namespace", Status::Degraded),
                ("host cgroup namespace", Status::Degraded),
                ("container capabilities", Status::Failed),
                ("seccomp", Status::Failed),
            ]
        );
        assert_eq!(
            c[1].fix.as_deref(),
            Some("podman run --pid=host (docker run takes the same)")
        );
        assert_eq!(
            c[4].fix.as_deref(),
            Some(
                "podman run --cap-add=BPF,PERFMON,NET_ADMIN,SYS_PTRACE (docker run takes the same)"
            )
        );
        assert_eq!(
            c[4].detail,
            "missing CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE"
        );
        let k = checks(&Runtime::Kubernetes, &found);
        assert_eq!(
            k[5].fix.as_deref(),
            Some("in the pod spec: securityContext.seccompProfile.type: Unconfined")
        );
    }

    #[test]
    fn the_documented_flags_leave_nothing_to_fix() {
        let all = [0u32, 12, 19, 38, 39]
            .iter()
            .fold(0u64, |acc, cap| acc | 1 << cap);
        let found = Found {
            pid_ns: Some(PROC_PID_INIT_INO),
            cgroup_ns: Some(PROC_CGROUP_INIT_INO),
            net_ns: Some(4026531840),
            init_net_ns: Some(4026531840),
            caps: all,
            seccomp_filter: false,
            bpf_refused: None,
        };
        let c = checks(&Runtime::Docker, &found);
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        assert_eq!(c[0].detail, "running in a Docker container");
    }
}
