//! Container and pod names from the runtimes' own records on disk: nothing is asked over a
//! socket, nothing is guessed. A name is what one of these files says about the exact id:
//!
//! - the kubelet's log links, `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`
//!   (containerd and CRI-O under Kubernetes): container, pod and namespace;
//! - the kubelet's pod folders, `/var/log/pods/<namespace>_<pod>_<uid>`: pod and namespace of a
//!   pod uid (also for the pod's sandbox, which has no log);
//! - Docker's `/var/lib/docker/containers/<id>/config.v2.json`: `Name`, and the pod labels the
//!   kubelet puts on containers it runs through Docker;
//! - containers/storage's `containers.json` (Podman, Buildah, CRI-O), rootful under
//!   `/var/lib/containers/storage` and `/run/containers/storage`: `names[0]`.
//!
//! Paths are read under a root folder (`/` on a host) so tests lay the files out in a
//! temporary folder. Files are re-read only when their modification time changed, and an id
//! nothing names is asked about again at most every [`RECHECK`].

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use serde::Deserialize;

/// How long an id or pod uid that nothing named stays unnamed before the files are read again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// Ids remembered at most; past it the memory of answers starts over.
const MAX_REMEMBERED: usize = 16_384;

/// What the runtimes say about one container (or one pod, for a pod uid).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub container_name: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
}

impl Named {
    fn is_empty(&self) -> bool {
        self.container_name.is_none() && self.pod.is_none()
    }
}

/// A file or folder read as a whole, kept while its modification time stays.
struct Cached<T> {
    mtime: Option<SystemTime>,
    value: T,
}

impl<T: Default> Default for Cached<T> {
    fn default() -> Self {
        Self {
            mtime: None,
            value: T::default(),
        }
    }
}

impl<T: Default> Cached<T> {
    /// Re-reads `path` with `read` when its modification time changed; a missing file reads as
    /// empty.
    fn refresh(&mut self, path: &Path, read: impl FnOnce(&Path) -> T) -> &T {
        let mtime = fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime.is_none() {
            self.value = T::default();
        } else if mtime != self.mtime {
            self.value = read(path);
        }
        self.mtime = mtime;
        &self.value
    }
}

/// Cached container id / pod uid -> names, from the files above.
pub struct RuntimeNames {
    root: PathBuf,
    /// Answers per container id (with the pod uid asked alongside) and when they were found.
    answers: HashMap<(String, Option<String>), (Named, Instant)>,
    kube_logs: Cached<HashMap<String, Named>>,
    kube_pods: Cached<HashMap<String, Named>>,
    storage: [Cached<HashMap<String, String>>; 2],
}

impl RuntimeNames {
    /// `root` is `/` on a host; tests pass a folder laid out like one.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            answers: HashMap::new(),
            kube_logs: Cached::default(),
            kube_pods: Cached::default(),
            storage: Default::default(),
        }
    }

    /// The names of container `id` (full 64-hex id) and of pod `pod_uid`, either may be
    /// absent. An answer with names is kept; an empty one is found again after [`RECHECK`].
    pub fn lookup(&mut self, id: Option<&str>, pod_uid: Option<&str>, now: Instant) -> Named {
        let key = (
            id.unwrap_or_default().to_owned(),
            pod_uid.map(str::to_owned),
        );
        if let Some((named, at)) = self.answers.get(&key) {
            if !named.is_empty() || now.saturating_duration_since(*at) < RECHECK {
                return named.clone();
            }
        }
        let named = self.find(id, pod_uid);
        if self.answers.len() >= MAX_REMEMBERED {
            self.answers.clear();
        }
        self.answers.insert(key, (named.clone(), now));
        named
    }

    fn find(&mut self, id: Option<&str>, pod_uid: Option<&str>) -> Named {
        let mut named = Named::default();
        if let Some(id) = id {
            let logs = self.root.join("var/log/containers");
            if let Some(k8s) = self.kube_logs.refresh(&logs, read_kube_logs).get(id) {
                named = k8s.clone();
            }
            if named.container_name.is_none() {
                named = read_docker(&self.root, id).unwrap_or_default();
            }
            if named.container_name.is_none() {
                let stores = ["var/lib/containers/storage", "run/containers/storage"];
                for (cache, store) in self.storage.iter_mut().zip(stores) {
                    let path = self
                        .root
                        .join(store)
                        .join("overlay-containers/containers.json");
                    if let Some(name) = cache.refresh(&path, read_storage).get(id) {
                        named.container_name = Some(name.clone());
                        break;
                    }
                }
            }
        }
        if let (Some(uid), None) = (pod_uid, &named.pod) {
            let pods = self.root.join("var/log/pods");
            if let Some(pod) = self.kube_pods.refresh(&pods, read_kube_pods).get(uid) {
                named.pod.clone_from(&pod.pod);
                named.pod_namespace.clone_from(&pod.pod_namespace);
            }
        }
        named
    }
}

/// `<pod>_<namespace>_<container>-<id>.log` -> names by id. Pod, namespace and container names
/// cannot hold `_`, so the split is exact.
fn read_kube_logs(dir: &Path) -> HashMap<String, Named> {
    let mut found = HashMap::new();
    for name in dir_names(dir) {
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        let Some((front, id)) = stem.rsplit_once('-') else {
            continue;
        };
        let parts: Vec<&str> = front.split('_').collect();
        if let [pod, namespace, container] = parts[..] {
            if [pod, namespace, container].iter().all(|s| !s.is_empty()) {
                found.insert(
                    id.to_owned(),
                    Named {
                        container_name: Some(container.to_owned()),
                        pod: Some(pod.to_owned()),
                        pod_namespace: Some(namespace.to_owned()),
                    },
                );
            }
        }
    }
    found
}

/// `<namespace>_<pod>_<uid>` -> pod and namespace by uid.
fn read_kube_pods(dir: &Path) -> HashMap<String, Named> {
    let mut found = HashMap::new();
    for name in dir_names(dir) {
        let parts: Vec<&str> = name.split('_').collect();
        if let [namespace, pod, uid] = parts[..] {
            if [namespace, pod, uid].iter().all(|s| !s.is_empty()) {
                found.insert(
                    uid.to_owned(),
                    Named {
                        container_name: None,
                        pod: Some(pod.to_owned()),
                        pod_namespace: Some(namespace.to_owned()),
                    },
                );
            }
        }
    }
    found
}

fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<DockerContainerConfig>,
}

#[derive(Deserialize)]
struct DockerContainerConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// Docker names a container `/web`; the kubelet labels the containers it runs through Docker.
fn read_docker(root: &Path, id: &str) -> Option<Named> {
    let path = root
        .join("var/lib/docker/containers")
        .join(id)
        .join("config.v2.json");
    let config: DockerConfig = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let labels = config.config.and_then(|c| c.labels).unwrap_or_default();
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    let name = config.name.trim_start_matches('/');
    Some(Named {
        container_name: label("io.kubernetes.container.name")
            .or_else(|| (!name.is_empty()).then(|| name.to_owned())),
        pod: label("io.kubernetes.pod.name"),
        pod_namespace: label("io.kubernetes.pod.namespace"),
    })
}

#[derive(Deserialize)]
struct StorageContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

/// containers/storage's list of containers: id -> first name. A file that does not parse
/// names nothing.
fn read_storage(path: &Path) -> HashMap<String, String> {
    let Ok(bytes) = fs::read(path) else {
        return HashMap::new();
    };
    let list: Vec<StorageContainer> = serde_json::from_slice(&bytes).unwrap_or_default();
    list.into_iter()
        .filter_map(|c| Some((c.id, c.names.into_iter().find(|n| !n.is_empty())?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const ID: &str = "3f4e8a1b2c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const ID2: &str = "9a8b7c6d5e4f30211f2e3d4c5b6a79880a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const UID: &str = "1f2e3d4c-5b6a-4798-8a0b-1c2d3e4f5a6b";

    struct Root(PathBuf);

    impl Root {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("kaipo-names-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Root(p)
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn mkdir(&self, rel: &str) {
            fs::create_dir_all(self.0.join(rel)).unwrap();
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn named(c: Option<&str>, pod: Option<&str>, ns: Option<&str>) -> Named {
        Named {
            container_name: c.map(str::to_owned),
            pod: pod.map(str::to_owned),
            pod_namespace: ns.map(str::to_owned),
        }
    }

    #[test]
    fn kubelet_folders_name_container_pod_and_namespace() {
        let root = Root::new();
        root.write(
            &format!("var/log/containers/checkout-7f9c_shop_web-{ID}.log"),
            "",
        );
        root.write("var/log/containers/not_a_log.txt", "");
        root.write("var/log/containers/a_b-nohyphenid.log", "");
        root.mkdir(&format!("var/log/pods/shop_checkout-7f9c_{UID}/web"));
        root.mkdir("var/log/pods/bad_folder");
        let mut names = RuntimeNames::new(&root.0);
        let t = Instant::now();
        assert_eq!(
            names.lookup(Some(ID), Some(UID), t),
            named(Some("web"), Some("checkout-7f9c"), Some("shop"))
        );
        // The sandbox has no log of its own: the pod folder names its pod.
        assert_eq!(
            names.lookup(Some(ID2), Some(UID), t),
            named(None, Some("checkout-7f9c"), Some("shop"))
        );
        assert_eq!(names.lookup(Some(ID2), None, t), Named::default());
    }

    #[test]
    fn docker_and_storage_records_name_containers() {
        let root = Root::new();
        root.write(
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"ID":"x","Name":"/web","Config":{"Labels":{"a":"b"}}}"#,
        );
        root.write(
            "var/lib/containers/storage/overlay-containers/containers.json",
            &format!(r#"[{{"id":"{ID2}","names":["db"],"image":"i"}},{{"id":"x"}}]"#),
        );
        let mut names = RuntimeNames::new(&root.0);
        let t = Instant::now();
        assert_eq!(
            names.lookup(Some(ID), None, t),
            named(Some("web"), None, None)
        );
        assert_eq!(
            names.lookup(Some(ID2), None, t),
            named(Some("db"), None, None)
        );
        // Docker under the kubelet: the labels name the pod.
        root.write(
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"Name":"/k8s_web_x","Config":{"Labels":{"io.kubernetes.container.name":"web",
                "io.kubernetes.pod.name":"p","io.kubernetes.pod.namespace":"n"}}}"#,
        );
        let mut names = RuntimeNames::new(&root.0);
        assert_eq!(
            names.lookup(Some(ID), None, t),
            named(Some("web"), Some("p"), Some("n"))
        );
    }

    #[test]
    fn unnamed_ids_are_asked_again_after_recheck_and_bad_files_name_nothing() {
        let root = Root::new();
        let store = "var/lib/containers/storage/overlay-containers/containers.json";
        root.write(store, "{not json");
        root.write(
            &format!("var/lib/docker/containers/{ID2}/config.v2.json"),
            "[1,2",
        );
        let mut names = RuntimeNames::new(&root.0);
        let t = Instant::now();
        assert_eq!(names.lookup(Some(ID), None, t), Named::default());
        assert_eq!(names.lookup(Some(ID2), None, t), Named::default());
        // The container appears: not seen before RECHECK, seen after.
        root.write(store, &format!(r#"[{{"id":"{ID}","names":["late"]}}]"#));
        let file = fs::File::options()
            .write(true)
            .open(root.0.join(store))
            .unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            names.lookup(Some(ID), None, t + RECHECK / 2),
            Named::default()
        );
        assert_eq!(
            names.lookup(Some(ID), None, t + RECHECK),
            named(Some("late"), None, None)
        );
        // A name once found stays, even when its record is gone (the container was removed
        // while its last traffic is still being shown).
        fs::remove_file(root.0.join(store)).unwrap();
        assert_eq!(
            names.lookup(Some(ID), None, t + RECHECK * 10),
            named(Some("late"), None, None)
        );
    }
}
