//! What this process may do: root, or the capabilities kaipo's collector needs.

use std::fs;

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Capabilities the eBPF collector needs, with the name a user would grant.
pub const NEEDED: [(u32, &str); 3] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
];

/// The effective capability set of this process, from /proc/self/status.
pub fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_cap_eff(&status))
        .unwrap_or(0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Names of the needed capabilities this process lacks. `CAP_SYS_ADMIN` stands in for
/// `CAP_BPF` and `CAP_PERFMON`, as it does in the kernel.
pub fn missing(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    NEEDED
        .iter()
        .filter(|(cap, _)| !(has(*cap) || (*cap != CAP_NET_ADMIN && has(CAP_SYS_ADMIN))))
        .map(|(_, name)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_effective_set_and_names_what_is_missing() {
        let status = "Name:\tkaipo\nCapInh:\t0000000000000000\nCapEff:\t000000c000001000\n";
        let caps = parse_cap_eff(status).unwrap();
        assert_eq!(
            caps,
            (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN)
        );
        assert!(missing(caps).is_empty());
        assert_eq!(missing(1 << CAP_NET_ADMIN), vec!["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing(1 << CAP_SYS_ADMIN), vec!["CAP_NET_ADMIN"]);
        assert_eq!(missing(0), vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
    }
}
