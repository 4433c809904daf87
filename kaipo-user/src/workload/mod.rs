//! Where a process runs, by names people use: its container's name, its Kubernetes pod and
//! namespace, its systemd unit. The cgroup path says which container, pod and unit
//! (`cgroup`); the runtimes' own records say what the container and pod are called (`names`).
//! Whatever neither says stays unknown: nothing is guessed from a process name or an image.

pub mod cgroup;
pub mod names;

use std::time::Instant;

pub use cgroup::{facts_of, CgroupFacts};
pub use names::{Named, RuntimeNames};

/// The names of the place a process runs in; each `None` when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub container_name: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    pub unit: Option<String>,
}

impl Workload {
    /// The facts of a cgroup path, named with what the runtimes' records say.
    pub fn of(facts: &CgroupFacts, names: &mut RuntimeNames, now: Instant) -> Self {
        let named = if facts.container_id.is_some() || facts.pod_uid.is_some() {
            names.lookup(facts.container_id.as_deref(), facts.pod_uid.as_deref(), now)
        } else {
            Named::default()
        };
        Workload {
            container_name: named.container_name,
            pod: named.pod,
            pod_namespace: named.pod_namespace,
            unit: facts.unit.clone(),
        }
    }
}
