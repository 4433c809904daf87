//! Turns a process id into what a user wants to see (name, command line, owner, container).
//!
//! The monitor asks about the same pids every second, so answers are cached and only
//! re-checked now and then. Files are read with `std::fs` under a configurable root rather
//! than through `procfs` so that tests can lay out a fake /proc and /etc in a temporary folder.
//! Only Linux has a /proc: elsewhere (`Platform::PROCESS_DETAILS`) processes are known by the
//! names and users the collector's socket-owner events carry.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::{
    platform::{Host, Platform as _},
    workload::{facts_of, CgroupFacts, RuntimeNames, Workload},
};

/// What is known about one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// /proc/PID/comm minus its newline, so it compares equal to the comm in kernel events.
    pub name: String,
    /// argv joined by single spaces; empty for kernel threads and zombies.
    pub cmdline: String,
    pub exe: Option<String>,
    /// Real uid.
    pub uid: u32,
    pub user: Option<String>,
    /// starttime from /proc/PID/stat, in clock ticks since boot; 0 when not known.
    pub start_time_ticks: u64,
    /// The cgroup v2 path (the part after "0::").
    pub cgroup: Option<String>,
    /// First 12 hex characters of the container id.
    pub container: Option<String>,
    /// The container's name as its runtime knows it.
    pub container_name: Option<String>,
    /// The Kubernetes pod and its namespace.
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    /// The systemd unit (`nginx.service`, `user@1000.service`).
    pub unit: Option<String>,
    pub netns_inode: Option<u64>,
}

impl ProcessInfo {
    fn minimal(pid: u32, name: &str, uid: u32, user: Option<String>) -> Self {
        ProcessInfo {
            pid,
            name: name.to_owned(),
            cmdline: String::new(),
            exe: None,
            uid,
            user,
            start_time_ticks: 0,
            cgroup: None,
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns_inode: None,
        }
    }

    fn set_workload(&mut self, w: Workload) {
        self.container_name = w.container_name;
        self.pod = w.pod;
        self.pod_namespace = w.pod_namespace;
        self.unit = w.unit;
    }
}

struct Entry {
    info: ProcessInfo,
    /// What the cgroup path said, kept to name the container or pod once its runtime has
    /// written its records (a process can be seen before that).
    facts: CgroupFacts,
    validated_at: Instant,
    last_used: Instant,
    exited_at: Option<Instant>,
}

impl Entry {
    fn new(info: ProcessInfo, now: Instant, exited_at: Option<Instant>) -> Self {
        Entry {
            info,
            facts: CgroupFacts::default(),
            validated_at: now,
            last_used: now,
            exited_at,
        }
    }
}

/// The parts of /proc/PID/stat that tell one process from another.
struct Stat {
    comm: String,
    state: u8,
    start_time: u64,
}

/// Cached pid -> [`ProcessInfo`] resolution.
pub struct ProcessResolver {
    proc_root: PathBuf,
    etc_root: PathBuf,
    entries: HashMap<u32, Entry>,
    hints: HashMap<u32, (ProcessInfo, Instant)>,
    users: HashMap<u32, String>,
    names: RuntimeNames,
    /// None until passwd was first read; then its mtime (None if it could not be read).
    passwd_mtime: Option<Option<SystemTime>>,
    revalidate_after: Duration,
    keep_exited: Duration,
    max_entries: usize,
}

impl ProcessResolver {
    /// `proc_root` is normally "/proc" and `etc_root` "/etc"; tests pass a temporary
    /// directory laid out like them.
    pub fn new(proc_root: impl Into<PathBuf>, etc_root: impl Into<PathBuf>) -> Self {
        ProcessResolver {
            proc_root: proc_root.into(),
            etc_root: etc_root.into(),
            entries: HashMap::new(),
            hints: HashMap::new(),
            users: HashMap::new(),
            names: RuntimeNames::new("/"),
            passwd_mtime: None,
            revalidate_after: Duration::from_secs(5),
            keep_exited: Duration::from_secs(30),
            max_entries: 65_536,
        }
    }

    pub fn set_revalidate_after(&mut self, after: Duration) {
        self.revalidate_after = after;
    }

    pub fn set_keep_exited(&mut self, keep: Duration) {
        self.keep_exited = keep;
    }

    pub fn set_max_entries(&mut self, max: usize) {
        self.max_entries = max;
    }

    /// Where the container runtimes' records are read: `/` on a host, a folder laid out like
    /// it in tests.
    pub fn set_runtime_root(&mut self, root: impl Into<PathBuf>) {
        self.names = RuntimeNames::new(root);
    }

    /// Cached lookup; a cached entry is re-checked against /proc/PID/stat at most once per
    /// `revalidate_after`, so a reused pid (or an exec) is noticed. A process that is gone keeps
    /// its last known info for `keep_exited`. Returns None when the process does not exist and
    /// was never cached nor hinted.
    pub fn lookup(&mut self, pid: u32, now: Instant) -> Option<ProcessInfo> {
        if let Some(entry) = self.entries.get_mut(&pid) {
            entry.last_used = now;
            name_workload(entry, &mut self.names, now);
            if now.saturating_duration_since(entry.validated_at) < self.revalidate_after {
                return Some(entry.info.clone());
            }
            entry.validated_at = now;
            let recorded = entry.info.start_time_ticks;
            let same = match (
                read_stat(&self.proc_root.join(pid.to_string())),
                entry.exited_at,
            ) {
                (None, None) => {
                    // Gone without (or before) an exit event: keep the name around all the same.
                    entry.exited_at = Some(now);
                    true
                }
                (None, Some(_)) => true,
                // exec keeps starttime but changes comm, so compare both.
                (Some(s), None) => s.start_time == recorded && s.comm == entry.info.name,
                // An exited process can only still be here as a zombie; anything else is new.
                (Some(s), Some(_)) if recorded != 0 => s.start_time == recorded,
                (Some(s), Some(_)) => matches!(s.state, b'Z' | b'X'),
            };
            if same {
                return Some(entry.info.clone());
            }
            self.entries.remove(&pid);
        }
        let Some((info, facts)) = self.resolve(pid) else {
            return self.hints.get(&pid).map(|(info, _)| info.clone());
        };
        self.hints.remove(&pid);
        let mut entry = Entry::new(info, now, None);
        entry.info.unit.clone_from(&facts.unit);
        entry.facts = facts;
        name_workload(&mut entry, &mut self.names, now);
        let info = entry.info.clone();
        self.entries.insert(pid, entry);
        Some(info)
    }

    /// Remember that `pid` exited; its last known info stays available for `keep_exited` so
    /// that short-lived processes can still be named. Without usable cached info, a minimal
    /// entry is built from the kernel's `name` (comm) and `uid`.
    pub fn note_exit(&mut self, pid: u32, name: &str, uid: u32, now: Instant) {
        self.hints.remove(&pid);
        match self.entries.get_mut(&pid) {
            // Another comm means the cache describes an earlier occupant of the pid (or the
            // image before an exec), so the kernel's word wins.
            Some(entry) if entry.info.name == name => {
                entry.exited_at.get_or_insert(now);
                entry.validated_at = now;
                entry.last_used = now;
            }
            _ => {
                let info = ProcessInfo::minimal(pid, name, uid, self.user_name(uid));
                self.entries.insert(pid, Entry::new(info, now, Some(now)));
            }
        }
    }

    /// Record what the kernel reported for `pid` (comm and uid at socket creation); `lookup`
    /// answers with it when /proc no longer has the process.
    pub fn hint(&mut self, pid: u32, name: &str, uid: u32, now: Instant) {
        // The hint is newer than a cache entry with another name: the pid was reused or exec'd.
        if self.entries.get(&pid).is_some_and(|e| e.info.name != name) {
            self.entries.remove(&pid);
        }
        let info = ProcessInfo::minimal(pid, name, uid, self.user_name(uid));
        self.hints.insert(pid, (info, now));
    }

    /// Drop exited entries and hints older than `keep_exited`, then bound the cache at
    /// `max_entries` by dropping the least recently used entries.
    pub fn expire(&mut self, now: Instant) {
        let fresh = |t: Instant| now.saturating_duration_since(t) < self.keep_exited;
        self.entries.retain(|_, e| e.exited_at.is_none_or(fresh));
        self.hints.retain(|_, (_, at)| fresh(*at));
        evict_oldest(&mut self.entries, self.max_entries, |e| e.last_used);
        evict_oldest(&mut self.hints, self.max_entries, |(_, at)| *at);
    }

    /// Number of cached processes (hints are not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// User name for `uid` from <etc_root>/passwd. Users known only through NSS (LDAP, sssd,
    /// systemd-homed) are not found.
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        if !self.users.contains_key(&uid) {
            // Re-read only when the file changed, so misses for unknown uids cost one stat.
            let path = self.etc_root.join("passwd");
            let mtime = fs::metadata(&path).and_then(|m| m.modified()).ok();
            if self.passwd_mtime != Some(mtime) {
                self.passwd_mtime = Some(mtime);
                self.users = fs::read(&path)
                    .map(|b| parse_passwd(&String::from_utf8_lossy(&b)))
                    .unwrap_or_default();
            }
        }
        self.users.get(&uid).cloned()
    }

    fn resolve(&mut self, pid: u32) -> Option<(ProcessInfo, CgroupFacts)> {
        // Without /proc, what the collector hinted is all there is.
        if !Host::PROCESS_DETAILS {
            return None;
        }
        let dir = self.proc_root.join(pid.to_string());
        let stat = read_stat(&dir)?;
        // Without status the process went away mid-read; a hint then beats half the data.
        let uid = read_real_uid(&dir)?;
        let name = match fs::read(dir.join("comm")) {
            Ok(b) => String::from_utf8_lossy(b.strip_suffix(b"\n").unwrap_or(&b)).into_owned(),
            Err(_) => stat.comm,
        };
        let cmdline = fs::read(dir.join("cmdline")).map(|b| join_cmdline(&b));
        let exe = fs::read_link(dir.join("exe")).ok();
        let cgroups = fs::read(dir.join("cgroup")).unwrap_or_default();
        let cgroups = String::from_utf8_lossy(&cgroups);
        let netns = fs::read_link(dir.join("ns/net")).ok();
        let facts = facts_of(&cgroups);
        let info = ProcessInfo {
            pid,
            name,
            cmdline: cmdline.unwrap_or_default(),
            exe: exe.map(|p| p.to_string_lossy().into_owned()),
            uid,
            user: self.user_name(uid),
            start_time_ticks: stat.start_time,
            cgroup: cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(str::to_owned),
            container: facts
                .container_id
                .as_deref()
                .and_then(|id| id.get(..12))
                .map(str::to_owned),
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns_inode: netns.and_then(|p| parse_ns_inode(&p.to_string_lossy())),
        };
        Some((info, facts))
    }
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(uid)) = (fields.next(), fields.nth(1)) else {
            continue;
        };
        // '+'/'-' lines are NIS compat markers, not users.
        if name.is_empty() || name.starts_with(['#', '+', '-']) {
            continue;
        }
        if let Ok(uid) = uid.parse::<u32>() {
            // getpwuid() returns the first match, so do the same.
            users.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    users
}

fn read_stat(dir: &Path) -> Option<Stat> {
    parse_stat(&fs::read(dir.join("stat")).ok()?)
}

/// comm may contain spaces and parentheses, so the fields start after the last ')'.
fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(bytes.get(open + 1..close)?).into_owned();
    let mut fields = std::str::from_utf8(&bytes[close + 1..])
        .ok()?
        .split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Field 3 (state) is consumed; starttime is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        start_time,
    })
}

fn read_real_uid(dir: &Path) -> Option<u32> {
    let bytes = fs::read(dir.join("status")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().next()?.parse().ok()
}

fn join_cmdline(bytes: &[u8]) -> String {
    // setproctitle() pads with NULs; they are not arguments.
    let Some(last) = bytes.iter().rposition(|&b| b != 0) else {
        return String::new();
    };
    let args: Vec<_> = bytes[..=last]
        .split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .collect();
    args.join(" ")
}

fn parse_ns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Names the entry's container and pod while they are unknown: the runtime may write its
/// records after the process was first seen. The unit comes from the path and is set at once.
fn name_workload(entry: &mut Entry, names: &mut RuntimeNames, now: Instant) {
    let f = &entry.facts;
    let unnamed = (f.container_id.is_some() && entry.info.container_name.is_none())
        || (f.pod_uid.is_some() && entry.info.pod.is_none());
    if unnamed {
        let workload = Workload::of(f, names, now);
        entry.info.set_workload(workload);
    }
}

fn evict_oldest<V>(map: &mut HashMap<u32, V>, max: usize, used: impl Fn(&V) -> Instant) {
    let excess = map.len().saturating_sub(max);
    if excess == 0 {
        return;
    }
    let mut by_use: Vec<(Instant, u32)> = map.iter().map(|(&pid, v)| (used(v), pid)).collect();
    by_use.select_nth_unstable(excess - 1);
    for (_, pid) in &by_use[..excess] {
        map.remove(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DOCKER: &str = "3f4e8a1b2c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const K8S: &str = "9a8b7c6d5e4f30211f2e3d4c5b6a79880a1b2c3d4e5f60718293a4b5c6d7e8f9";

    /// A temporary folder laid out like /proc and /etc, removed on drop.
    struct Fake(PathBuf);

    impl Fake {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let root =
                std::env::temp_dir().join(format!("kaipo-procinfo-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("proc")).unwrap();
            fs::create_dir_all(root.join("etc")).unwrap();
            let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbroken\n+::::::\n\
                alice:x:1000:1000:Alice:/home/alice:/bin/sh\nalias:x:1000:1000::/:/bin/sh\n\
                bob:x:notanumber:0::/:/bin/sh\n";
            fs::write(root.join("etc/passwd"), passwd).unwrap();
            Fake(root)
        }

        fn resolver(&self) -> ProcessResolver {
            ProcessResolver::new(self.0.join("proc"), self.0.join("etc"))
        }

        fn dir(&self, pid: u32) -> PathBuf {
            self.0.join("proc").join(pid.to_string())
        }

        fn set_stat(&self, pid: u32, comm: &str, start: u64) {
            // starttime is field 22; the 19 fields between state and it are filler.
            let filler = "1 2 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0";
            let stat = format!("{pid} ({comm}) S {filler} {start} 1234 56 789\n");
            fs::write(self.dir(pid).join("stat"), stat).unwrap();
            fs::write(self.dir(pid).join("comm"), format!("{comm}\n")).unwrap();
        }

        fn add(&self, pid: u32, comm: &str, start: u64, uid: u32, cmdline: &[u8], cgroup: &str) {
            fs::create_dir_all(self.dir(pid).join("ns")).unwrap();
            self.set_stat(pid, comm, start);
            let status =
                format!("Name:\t{comm}\nPid:\t{pid}\nUid:\t{uid}\t0\t0\t0\nGid:\t0\t0\t0\t0\n");
            fs::write(self.dir(pid).join("status"), status).unwrap();
            fs::write(self.dir(pid).join("cmdline"), cmdline).unwrap();
            fs::write(self.dir(pid).join("cgroup"), cgroup).unwrap();
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn resolves_every_field_from_fake_proc() {
        let fake = Fake::new();
        let (cmdline, cgroup) = (
            b"/usr/bin/python3\0-m\0http.server\0",
            "1:pids:/\n0::/a.slice\n",
        );
        fake.add(42, "x) (y z", 987_654, 1000, cmdline, cgroup);
        std::os::unix::fs::symlink("/usr/bin/python3.12", fake.dir(42).join("exe")).unwrap();
        std::os::unix::fs::symlink("net:[4026531993]", fake.dir(42).join("ns/net")).unwrap();
        let expected = ProcessInfo {
            pid: 42,
            name: "x) (y z".to_owned(),
            cmdline: "/usr/bin/python3 -m http.server".to_owned(),
            exe: Some("/usr/bin/python3.12".to_owned()),
            uid: 1000,
            user: Some("alice".to_owned()),
            start_time_ticks: 987_654,
            cgroup: Some("/a.slice".to_owned()),
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns_inode: Some(4_026_531_993),
        };
        let mut r = fake.resolver();
        assert_eq!(r.lookup(42, Instant::now()), Some(expected));
        assert_eq!(r.len(), 1);
        assert_eq!(r.lookup(43, Instant::now()), None);
    }

    #[test]
    fn parses_stat_after_last_paren_and_rejects_garbage() {
        let s = parse_stat(b"7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0").unwrap();
        assert_eq!(s.comm, "a) b) (c");
        assert_eq!((s.state, s.start_time), (b'R', 555));
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b"7 (a R 1 2").is_none());
        assert!(parse_stat(b"7 (a) R 1 7").is_none());
        assert!(parse_stat(b"7 )a( R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5").is_none());
        assert!(parse_stat(b"7 (a) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x55").is_none());
    }

    #[test]
    fn joins_cmdline_arguments() {
        assert_eq!(join_cmdline(b"/bin/sleep\x00100\0"), "/bin/sleep 100");
        assert_eq!(join_cmdline(b"nginx: worker\0\0\0\0"), "nginx: worker");
        assert_eq!(join_cmdline(b"a\xff\0b"), "a\u{fffd} b");
        assert_eq!(join_cmdline(b"a\0\0b\0"), "a  b");
        assert_eq!(join_cmdline(b""), "");
        assert_eq!(join_cmdline(b"\0"), "");
    }

    #[test]
    fn finds_container_ids_in_cgroup_paths() {
        let (docker, k8s) = (Some("3f4e8a1b2c5d"), Some("9a8b7c6d5e4f"));
        let pod = "kubepods-besteffort-pod1f2e_3d4c.slice";
        let cases = [
            (format!("0::/system.slice/docker-{DOCKER}.scope\n"), docker),
            (format!("0::/docker/{DOCKER}\n"), docker),
            (format!("12:pids:/docker/{DOCKER}\n0::/\n"), docker),
            (format!("0::/kubepods/burstable/pod1f2e-3d4c/{K8S}\n"), k8s),
            (
                format!("0::/kubepods.slice/{pod}/cri-containerd-{K8S}.scope\n"),
                k8s,
            ),
            (
                format!("0::/machine.slice/libpod-{K8S}.scope/container\n"),
                k8s,
            ),
            (
                format!("0::/machine.slice/libpod-conmon-{K8S}.scope\n"),
                None,
            ),
            (
                "0::/user.slice/user-1000.slice/session-3.scope\n".to_owned(),
                None,
            ),
            (String::new(), None),
        ];
        for (cgroups, want) in cases {
            let fake = Fake::new();
            fake.add(90, "p", 1, 0, b"p\0", &cgroups);
            let info = fake.resolver().lookup(90, Instant::now()).unwrap();
            assert_eq!(info.container.as_deref(), want, "{cgroups}");
        }
    }

    /// A Podman container's process: its id from the path, its name from containers/storage's
    /// record, found once the record is written even if the process was seen before it.
    #[test]
    fn names_containers_pods_and_units() {
        let fake = Fake::new();
        let root = fake.0.join("root");
        let store = root.join("var/lib/containers/storage/overlay-containers");
        fs::create_dir_all(&store).unwrap();
        let cgroup = format!("0::/machine.slice/libpod-{K8S}.scope/container\n");
        fake.add(91, "nginx", 1, 0, b"nginx\0", &cgroup);
        let pod_cgroup = format!(
            "0::/kubepods.slice/kubepods-pod1f2e3d4c_5b6a_4798_8a0b_1c2d3e4f5a6b.slice/\
             cri-containerd-{DOCKER}.scope\n"
        );
        fake.add(92, "pause", 1, 0, b"pause\0", &pod_cgroup);
        fake.add(
            93,
            "nginx",
            1,
            0,
            b"nginx\0",
            "0::/system.slice/nginx.service\n",
        );
        let mut r = fake.resolver();
        r.set_runtime_root(&root);
        let t0 = Instant::now();
        let first = r.lookup(91, t0).unwrap();
        assert_eq!(
            (first.container.as_deref(), first.container_name),
            (Some("9a8b7c6d5e4f"), None)
        );
        assert_eq!(first.unit.as_deref(), Some(&*format!("libpod-{K8S}.scope")));
        fs::write(
            store.join("containers.json"),
            format!(r#"[{{"id":"{K8S}","names":["web-1"]}}]"#),
        )
        .unwrap();
        let later = r.lookup(91, t0 + crate::workload::names::RECHECK).unwrap();
        assert_eq!(later.container_name.as_deref(), Some("web-1"));
        fs::create_dir_all(
            root.join("var/log/pods/shop_checkout-7f9c_1f2e3d4c-5b6a-4798-8a0b-1c2d3e4f5a6b"),
        )
        .unwrap();
        let pod = r.lookup(92, t0).unwrap();
        assert_eq!(
            (
                pod.pod.as_deref(),
                pod.pod_namespace.as_deref(),
                pod.container_name
            ),
            (Some("checkout-7f9c"), Some("shop"), None)
        );
        let unit = r.lookup(93, t0).unwrap();
        assert_eq!(
            (unit.unit.as_deref(), unit.container, unit.pod),
            (Some("nginx.service"), None, None)
        );
    }

    #[test]
    fn notices_pid_reuse_after_revalidate() {
        let fake = Fake::new();
        fake.add(50, "worker", 100, 1000, b"old\0", "0::/\n");
        let mut r = fake.resolver();
        let t0 = Instant::now();
        assert_eq!(r.lookup(50, t0).unwrap().cmdline, "old");
        fake.set_stat(50, "worker", 200);
        fs::write(fake.dir(50).join("cmdline"), b"new\0--flag\0").unwrap();
        let cached = r.lookup(50, secs(t0, 1)).unwrap();
        assert_eq!(
            (cached.cmdline, cached.start_time_ticks),
            ("old".into(), 100)
        );
        let fresh = r.lookup(50, secs(t0, 6)).unwrap();
        assert_eq!(
            (fresh.cmdline, fresh.start_time_ticks),
            ("new --flag".into(), 200)
        );
        // exec keeps starttime but changes comm.
        fake.set_stat(50, "python3", 200);
        r.set_revalidate_after(Duration::from_secs(1));
        assert_eq!(r.lookup(50, secs(t0, 8)).unwrap().name, "python3");
    }

    #[test]
    fn note_exit_keeps_info_until_keep_exited() {
        let fake = Fake::new();
        fake.add(60, "curl", 100, 0, b"curl\0-s\0example.com\0", "0::/\n");
        let mut r = fake.resolver();
        let t0 = Instant::now();
        r.lookup(60, t0).unwrap();
        fs::remove_dir_all(fake.dir(60)).unwrap();
        r.note_exit(60, "curl", 0, secs(t0, 1));
        r.note_exit(61, "true", 1000, secs(t0, 1));
        let info = r.lookup(60, secs(t0, 20)).unwrap();
        assert_eq!(info.cmdline, "curl -s example.com");
        assert_eq!(info.user.as_deref(), Some("root"));
        let minimal = ProcessInfo::minimal(61, "true", 1000, Some("alice".to_owned()));
        assert_eq!(r.lookup(61, secs(t0, 20)), Some(minimal));
        r.expire(secs(t0, 20));
        assert_eq!(r.len(), 2);
        r.expire(secs(t0, 31));
        assert!(r.is_empty());
        assert_eq!(r.lookup(60, secs(t0, 32)), None);
    }

    #[test]
    fn hint_used_when_proc_entry_missing() {
        let fake = Fake::new();
        let mut r = fake.resolver();
        let t0 = Instant::now();
        r.hint(70, "wget", 1000, t0);
        let expected = ProcessInfo::minimal(70, "wget", 1000, Some("alice".to_owned()));
        assert_eq!(r.lookup(70, secs(t0, 1)), Some(expected));
        r.expire(secs(t0, 31));
        assert_eq!(r.lookup(70, secs(t0, 31)), None);
        // A live process wins over its hint.
        fake.add(71, "sshd", 5, 0, b"sshd: alice\0", "0::/ssh.service\n");
        r.hint(71, "sshd", 1000, t0);
        assert_eq!(r.lookup(71, t0).unwrap().cmdline, "sshd: alice");
    }

    #[test]
    fn expire_drops_least_recently_used() {
        let fake = Fake::new();
        let mut r = fake.resolver();
        r.set_max_entries(2);
        let t0 = Instant::now();
        for pid in [80, 81, 82] {
            fake.add(pid, "p", 1, 0, b"p\0", "0::/\n");
            r.lookup(pid, secs(t0, u64::from(pid - 80))).unwrap();
        }
        r.lookup(80, secs(t0, 3)).unwrap();
        r.expire(secs(t0, 4));
        let mut kept: Vec<u32> = r.entries.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [80, 82]);
    }

    #[test]
    fn user_name_from_fake_passwd() {
        let fake = Fake::new();
        let mut r = fake.resolver();
        assert_eq!(r.user_name(0).as_deref(), Some("root"));
        assert_eq!(r.user_name(1000).as_deref(), Some("alice"));
        assert_eq!(r.user_name(4242), None);
        // A changed passwd is re-read on a miss; the mtime is forced so that it surely differs.
        let path = fake.0.join("etc/passwd");
        fs::write(&path, "carol:x:4242:4242::/:/bin/sh\n").unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(r.user_name(4242).as_deref(), Some("carol"));
        let mut nowhere = ProcessResolver::new("/nonexistent", "/nonexistent");
        assert_eq!(nowhere.user_name(0), None);
    }

    #[test]
    fn resolves_current_process_from_real_proc() {
        let mut r = ProcessResolver::new("/proc", "/etc");
        // SAFETY: getpid() and getuid() have no preconditions and cannot fail.
        let (pid, uid) = unsafe { (libc::getpid() as u32, libc::getuid()) };
        let info = r.lookup(pid, Instant::now()).unwrap();
        assert_eq!((info.pid, info.uid), (pid, uid));
        assert!(info.start_time_ticks > 0 && !info.name.is_empty());
    }
}
