//! The seccomp allow-list for kaipo's steady state: once the collector is attached, what the
//! daemon, `watch` and `live` do is read maps and files, talk over sockets they own or accept,
//! write history and the terminal, and run threads. Everything else (running programs,
//! tracing, mounting, loading modules, changing ids or capabilities, new namespaces) fails
//! with EPERM.
//!
//! The list was taken from `strace -f` of the daemon through start, status, query, subscribe,
//! reload and stop, widened with what the other paths may call (webhooks and name lookups, the
//! metrics listener, syslog, the pcap backend, SQLite recovery, panics) so that a rare path
//! meets an error it already handles rather than a wall. EPERM rather than a kill: every
//! refused call is one kaipo can survive and report.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Allowed whatever their arguments. Names from `libc::SYS_*` that exist on every
/// architecture seccompiler knows (x86_64, aarch64, riscv64).
const ALLOWED: &[(&str, libc::c_long)] = &[
    // Files and descriptors (Landlock decides which files).
    ("read", libc::SYS_read),
    ("write", libc::SYS_write),
    ("readv", libc::SYS_readv),
    ("writev", libc::SYS_writev),
    ("pread64", libc::SYS_pread64),
    ("pwrite64", libc::SYS_pwrite64),
    ("openat", libc::SYS_openat),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("lseek", libc::SYS_lseek),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("statx", libc::SYS_statx),
    ("statfs", libc::SYS_statfs),
    ("fstatfs", libc::SYS_fstatfs),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("getdents64", libc::SYS_getdents64),
    ("readlinkat", libc::SYS_readlinkat),
    ("fcntl", libc::SYS_fcntl),
    ("flock", libc::SYS_flock),
    ("fsync", libc::SYS_fsync),
    ("fdatasync", libc::SYS_fdatasync),
    ("ftruncate", libc::SYS_ftruncate),
    ("fallocate", libc::SYS_fallocate),
    ("unlinkat", libc::SYS_unlinkat),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("mkdirat", libc::SYS_mkdirat),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("getcwd", libc::SYS_getcwd),
    ("dup", libc::SYS_dup),
    ("dup3", libc::SYS_dup3),
    ("pipe2", libc::SYS_pipe2),
    ("ioctl", libc::SYS_ioctl),
    // Waiting.
    ("ppoll", libc::SYS_ppoll),
    ("pselect6", libc::SYS_pselect6),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("eventfd2", libc::SYS_eventfd2),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("futex", libc::SYS_futex),
    ("nanosleep", libc::SYS_nanosleep),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("restart_syscall", libc::SYS_restart_syscall),
    // Sockets: the API, netlink, packet capture, webhooks, metrics, syslog.
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
    ("connect", libc::SYS_connect),
    ("accept4", libc::SYS_accept4),
    ("accept", libc::SYS_accept),
    ("sendto", libc::SYS_sendto),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendmsg", libc::SYS_sendmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("getsockopt", libc::SYS_getsockopt),
    ("setsockopt", libc::SYS_setsockopt),
    ("getsockname", libc::SYS_getsockname),
    ("getpeername", libc::SYS_getpeername),
    ("shutdown", libc::SYS_shutdown),
    // The collector: maps, and programs attached to interfaces that appear later.
    ("bpf", libc::SYS_bpf),
    // Memory.
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mremap", libc::SYS_mremap),
    ("mprotect", libc::SYS_mprotect),
    ("madvise", libc::SYS_madvise),
    ("brk", libc::SYS_brk),
    // Threads and signals.
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("rseq", libc::SYS_rseq),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("tgkill", libc::SYS_tgkill),
    ("getpid", libc::SYS_getpid),
    ("gettid", libc::SYS_gettid),
    ("getppid", libc::SYS_getppid),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("getresuid", libc::SYS_getresuid),
    ("getresgid", libc::SYS_getresgid),
    ("getgroups", libc::SYS_getgroups),
    ("prlimit64", libc::SYS_prlimit64),
    ("getrusage", libc::SYS_getrusage),
    ("getrandom", libc::SYS_getrandom),
    ("uname", libc::SYS_uname),
    ("sysinfo", libc::SYS_sysinfo),
    ("membarrier", libc::SYS_membarrier),
];

/// x86_64 also has the older calls glibc and std still use there.
#[cfg(target_arch = "x86_64")]
const ALLOWED_X86_64: &[(&str, libc::c_long)] = &[
    ("open", libc::SYS_open),
    ("stat", libc::SYS_stat),
    ("lstat", libc::SYS_lstat),
    ("access", libc::SYS_access),
    ("readlink", libc::SYS_readlink),
    ("unlink", libc::SYS_unlink),
    ("rename", libc::SYS_rename),
    ("mkdir", libc::SYS_mkdir),
    ("chmod", libc::SYS_chmod),
    ("poll", libc::SYS_poll),
    ("select", libc::SYS_select),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_create", libc::SYS_epoll_create),
    ("pipe", libc::SYS_pipe),
    ("dup2", libc::SYS_dup2),
    ("arch_prctl", libc::SYS_arch_prctl),
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_X86_64: &[(&str, libc::c_long)] = &[];

/// `prctl` only to name threads (std does, for every thread it starts) and read names back.
const PRCTL_OPTIONS: [libc::c_int; 2] = [libc::PR_SET_NAME, libc::PR_GET_NAME];

/// `setns` only into network namespaces: the socket sweep makes its `sock_diag` socket in
/// each one from a short-lived thread. It still needs CAP_SYS_ADMIN, which only `watch` and
/// `live` run as root hold; the daemon's attempts fail as before.
const SETNS_TYPES: [libc::c_int; 1] = [libc::CLONE_NEWNET];

/// Why the filter is not in force on this system.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "this architecture ({0}) is not one the filter is built for (x86_64, aarch64, riscv64)"
    )]
    Architecture(&'static str),
    #[error("building the filter: {0}")]
    Build(String),
    #[error("installing the filter: {0}")]
    Install(String),
}

/// How many system calls the filter allows (for `status` and `doctor`).
pub fn allowed_count() -> usize {
    // prctl and setns, allowed with some arguments.
    ALLOWED.len() + ALLOWED_X86_64.len() + 2
}

/// The compiled filter for this architecture.
pub fn program() -> Result<BpfProgram, SeccompError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| SeccompError::Architecture(std::env::consts::ARCH))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_X86_64)
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    let prctl = PRCTL_OPTIONS
        .iter()
        .map(|&option| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, option as u64)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SeccompError::Build(e.to_string()))?;
    rules.insert(libc::SYS_prctl, prctl);
    let setns = SETNS_TYPES
        .iter()
        .map(|&nstype| {
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, nstype as u64)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SeccompError::Build(e.to_string()))?;
    rules.insert(libc::SYS_setns, setns);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| SeccompError::Build(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Build(e.to_string()))
}

/// Installs the filter on every thread of the process (and every thread started later), with
/// no_new_privs. Returns how many calls it allows.
pub fn install() -> Result<usize, SeccompError> {
    let program = program()?;
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| SeccompError::Install(e.to_string()))?;
    Ok(allowed_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_calls_are_not_on_the_list() {
        let allowed: Vec<libc::c_long> = ALLOWED
            .iter()
            .chain(ALLOWED_X86_64)
            .map(|&(_, n)| n)
            .collect();
        for forbidden in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_setuid,
            libc::SYS_setresuid,
            libc::SYS_capset,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_mount,
            libc::SYS_init_module,
            libc::SYS_perf_event_open,
            libc::SYS_seccomp,
            libc::SYS_prctl,
        ] {
            assert!(!allowed.contains(&forbidden), "{forbidden}");
        }
        let mut names: Vec<&str> = ALLOWED
            .iter()
            .chain(ALLOWED_X86_64)
            .map(|(n, _)| *n)
            .collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "a call is listed twice");
        assert!(program().is_ok());
    }
}
