//! What a process's cgroup path says about where it runs: the container id, the Kubernetes pod
//! uid and the systemd unit. Pure text work over `/proc/PID/cgroup`, so every runtime's layout
//! is tested without that runtime.
//!
//! Layouts covered (`<id>` is a 64-hex container id):
//! - systemd: `/system.slice/nginx.service`, `/user.slice/user-1000.slice/user@1000.service/...`
//! - Docker: `/system.slice/docker-<id>.scope` (systemd driver), `/docker/<id>` (cgroupfs)
//! - Podman: `/machine.slice/libpod-<id>.scope[/container]`, rootless under `user@UID.service`,
//!   `/libpod_parent/libpod-<id>` (cgroupfs); `libpod-conmon-<id>` is the monitor, outside
//! - containerd: `cri-containerd-<id>.scope`, `nerdctl-<id>.scope`, `/<namespace>/<id>`
//! - CRI-O: `crio-<id>.scope` (`crio-conmon-<id>.scope` is the monitor)
//! - kubepods: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with
//!   _>.slice/...` (systemd driver), `/kubepods/burstable/pod<uid>/<id>` (cgroupfs)

/// What one cgroup path tells. Each part is `None` when the path does not say it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupFacts {
    /// The full id of the innermost container.
    pub container_id: Option<String>,
    /// The Kubernetes pod uid, with dashes (`1f2e3d4c-...`), as the kubelet's folders name it.
    pub pod_uid: Option<String>,
    /// The systemd unit as `sd_pid_get_unit` (and `ps -o unit`) names it: the outermost
    /// `.service` or `.scope` below the slices (`nginx.service`, `user@1000.service`,
    /// `session-3.scope`, `docker-<id>.scope`).
    pub unit: Option<String>,
}

/// The facts of a process from its `/proc/PID/cgroup` text: the cgroup v2 line first, the
/// named systemd v1 hierarchy (hybrid hosts) for the unit when v2 says nothing, and any v1
/// controller line for a container a v2 path does not show.
pub fn facts_of(cgroups: &str) -> CgroupFacts {
    let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::"));
    let named_systemd = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        (controllers == "name=systemd").then_some(path)
    });
    let v1 = cgroups
        .lines()
        .filter(|l| !l.starts_with("0::"))
        .filter_map(|l| l.splitn(3, ':').nth(2));
    let mut facts = v2.map(facts_of_path).unwrap_or_default();
    if facts.unit.is_none() {
        facts.unit = named_systemd.and_then(|p| facts_of_path(p).unit);
    }
    if facts.container_id.is_none() {
        if let Some(from_v1) = v1.map(facts_of_path).find(|f| f.container_id.is_some()) {
            facts.container_id = from_v1.container_id;
            facts.pod_uid = facts.pod_uid.or(from_v1.pod_uid);
        }
    }
    facts
}

/// The facts of one cgroup path (`/system.slice/nginx.service`).
pub fn facts_of_path(path: &str) -> CgroupFacts {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    CgroupFacts {
        // The innermost container is the one the process runs in.
        container_id: segments
            .iter()
            .rev()
            .find_map(|s| container_in_segment(s))
            .map(str::to_owned),
        pod_uid: segments.iter().rev().find_map(|s| pod_in_segment(s)),
        unit: segments
            .iter()
            .find(|s| is_unit(s))
            .map(|s| (*s).to_owned()),
    }
}

fn is_unit(segment: &str) -> bool {
    let stem = segment
        .strip_suffix(".service")
        .or_else(|| segment.strip_suffix(".scope"));
    // A unit name is at most 255 bytes and never empty before its suffix.
    stem.is_some_and(|s| !s.is_empty()) && segment.len() <= 255
}

fn container_in_segment(segment: &str) -> Option<&str> {
    // cgroupfs drivers ("/docker/<id>", "/kubepods/burstable/pod<uid>/<id>") use the bare id.
    if is_container_id(segment) {
        return Some(segment);
    }
    // Monitors of a container run beside it, not in it.
    if segment.contains("-conmon-") {
        return None;
    }
    // systemd drivers use "<runtime>-<id>.scope"; Podman's cgroupfs driver "libpod-<id>".
    let stem = segment.strip_suffix(".scope").unwrap_or(segment);
    let prefixes = ["docker-", "libpod-", "cri-containerd-", "crio-", "nerdctl-"];
    prefixes
        .iter()
        .find_map(|prefix| stem.strip_prefix(prefix))
        .filter(|id| is_container_id(id))
}

/// Docker, Podman, containerd and CRI-O ids are 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `pod<uid>` (cgroupfs) or `kubepods-<class>-pod<uid with _>.slice` (systemd).
fn pod_in_segment(segment: &str) -> Option<String> {
    let uid = match segment.strip_suffix(".slice") {
        Some(slice) if slice.starts_with("kubepods") => slice.rsplit_once("-pod")?.1,
        Some(_) => return None,
        None => segment.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// A Kubernetes uid is a UUID: 8-4-4-4-12 hex digits.
fn is_pod_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a1b2c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const UID: &str = "1f2e3d4c-5b6a-4798-8a0b-1c2d3e4f5a6b";
    const UID_: &str = "1f2e3d4c_5b6a_4798_8a0b_1c2d3e4f5a6b";

    fn facts(container: bool, pod: bool, unit: Option<&str>) -> CgroupFacts {
        CgroupFacts {
            container_id: container.then(|| ID.to_owned()),
            pod_uid: pod.then(|| UID.to_owned()),
            unit: unit.map(str::to_owned),
        }
    }

    #[test]
    fn every_runtime_layout() {
        let docker_scope = format!("docker-{ID}.scope");
        let libpod_scope = format!("libpod-{ID}.scope");
        let containerd_scope = format!("cri-containerd-{ID}.scope");
        let crio_scope = format!("crio-{ID}.scope");
        let cases: Vec<(String, CgroupFacts)> = vec![
            // systemd
            (
                "/system.slice/nginx.service".into(),
                facts(false, false, Some("nginx.service")),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1.scope"
                    .into(),
                facts(false, false, Some("user@1000.service")),
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope".into(),
                facts(false, false, Some("session-3.scope")),
            ),
            ("/".into(), facts(false, false, None)),
            (
                "/init.scope".into(),
                facts(false, false, Some("init.scope")),
            ),
            // Docker
            (
                format!("/system.slice/{docker_scope}"),
                facts(true, false, Some(&docker_scope)),
            ),
            (format!("/docker/{ID}"), facts(true, false, None)),
            // Podman, rootful and rootless, systemd and cgroupfs
            (
                format!("/machine.slice/{libpod_scope}/container"),
                facts(true, false, Some(&libpod_scope)),
            ),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/{libpod_scope}"),
                facts(true, false, Some("user@1000.service")),
            ),
            (
                format!("/libpod_parent/libpod-{ID}"),
                facts(true, false, None),
            ),
            (
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                facts(false, false, Some(&format!("libpod-conmon-{ID}.scope"))),
            ),
            // containerd and CRI-O under the kubelet, systemd driver
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/\
                     kubepods-burstable-pod{UID_}.slice/{containerd_scope}"
                ),
                facts(true, true, Some(&containerd_scope)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/{crio_scope}"),
                facts(true, true, Some(&crio_scope)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope"),
                CgroupFacts {
                    container_id: None,
                    pod_uid: Some(UID.into()),
                    unit: Some(format!("crio-conmon-{ID}.scope")),
                },
            ),
            // kubepods, cgroupfs driver
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                facts(true, true, None),
            ),
            (format!("/kubepods/pod{UID}/{ID}"), facts(true, true, None)),
            // containerd without Kubernetes (its namespace as the parent)
            (format!("/default/{ID}"), facts(true, false, None)),
        ];
        for (path, want) in cases {
            assert_eq!(facts_of_path(&path), want, "{path}");
        }
    }

    #[test]
    fn names_that_only_look_alike_are_nothing() {
        for path in [
            "/podcast.service/x",
            "/kubepods/burstable/pod1234/abc",
            "/docker/3f4e8a1b2c5d",
            &format!("/docker/{}", ID.to_uppercase()),
            &format!("/system.slice/docker-{ID}x.scope"),
            "/system.slice/.service",
            "/system.slice/podman.socket",
        ] {
            let f = facts_of_path(path);
            assert_eq!((f.container_id, f.pod_uid), (None, None), "{path}");
        }
        assert_eq!(facts_of_path("/system.slice/.service").unit, None);
    }

    #[test]
    fn hybrid_hosts_read_the_named_systemd_and_v1_lines() {
        // v2 at the root: the unit from name=systemd, the container from a controller line.
        let hybrid =
            format!("9:name=systemd:/system.slice/sshd.service\n4:memory:/docker/{ID}\n0::/\n");
        assert_eq!(facts_of(&hybrid), facts(true, false, Some("sshd.service")));
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(
            facts_of(&v2),
            facts(true, false, Some(&format!("docker-{ID}.scope")))
        );
        assert_eq!(facts_of(""), CgroupFacts::default());
        assert_eq!(facts_of("garbage\n::\n0::"), CgroupFacts::default());
    }
}
