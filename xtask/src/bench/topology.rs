//! The benchmark's network: a sender namespace and a receiver namespace, each joined to the
//! host by a veth pair, with the host routing between the two host ends.
//!
//! ```text
//!  sender ns            host (kaipo runs here)                 receiver ns
//!  kbs0 .2  ---veth---  kb<pid>s .1 ==forward==> kb<pid>d .129  ---veth---  kbd0 .130 .131
//! ```
//!
//! Every datagram of the flood thus crosses XDP (ingress of `kb<pid>s`), the TC egress
//! classifier (`kb<pid>d`) and both cgroup_skb programs (the sender's and the receiver's
//! sockets). Forwarding is switched on for the two host ends only (`net.ipv4.conf.<if>.forwarding`),
//! and the namespaces have routes to each other and nowhere else, so nothing leaves the machine.
//! Neighbours are static and IPv6 is off on every end, so no ARP, neighbour discovery or MLD
//! frame mixes in.

use std::{net::Ipv4Addr, process::Command};

use anyhow::Context as _;

/// Names inside the namespaces; unique there, since the namespaces are new.
pub const SENDER_NS_IF: &str = "kbs0";
const RECEIVER_NS_IF: &str = "kbd0";
const NS_PREFIX: &str = "kaipo-bench-";

pub struct Topology {
    pub sender_ns: String,
    pub receiver_ns: String,
    /// Host end of the sender's pair: kaipo's XDP sees the flood here.
    pub sender_if: String,
    /// Host end of the receiver's pair: kaipo's TC egress program sees the flood here.
    pub receiver_if: String,
    /// The receiver's addresses; the flood goes to the first.
    pub receiver_addrs: [Ipv4Addr; 2],
    undo: Vec<Vec<String>>,
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    super::run_output(Command::new(args[0]).args(&args[1..]))
}

impl Topology {
    /// The network with its addresses in a free /24 of 10.213.`blocks`.0/24 (the collector's
    /// benchmarks take `COLLECTOR_BLOCKS`, `bench workloads` and `bench toggle`
    /// `WORKLOADS_BLOCKS`, so the two kinds can run side by side).
    pub fn create_in(blocks: std::ops::RangeInclusive<u8>) -> anyhow::Result<Self> {
        remove_stale();
        let pid = std::process::id();
        let block = free_v4_block(blocks).context("choosing addresses")?;
        let addr = |host: u8| Ipv4Addr::new(10, 213, block, host);
        let mut topo = Self {
            sender_ns: format!("{NS_PREFIX}{pid}-snd"),
            receiver_ns: format!("{NS_PREFIX}{pid}-rcv"),
            sender_if: format!("kb{pid}s"),
            receiver_if: format!("kb{pid}d"),
            receiver_addrs: [addr(130), addr(131)],
            undo: Vec::new(),
        };
        anyhow::ensure!(topo.sender_if.len() <= 15, "interface name too long");
        // On error, drop removes whatever part was made.
        topo.set_up(block)
            .context("setting up the benchmark network")?;
        Ok(topo)
    }

    fn set_up(&mut self, block: u8) -> anyhow::Result<()> {
        let net = |host: u8| format!("10.213.{block}.{host}");
        // Locally administered MACs; each pair is its own link, so they need not be unique.
        let (s_host_mac, s_ns_mac) = ("02:6b:62:00:00:01", "02:6b:62:00:00:02");
        let (d_host_mac, d_ns_mac) = ("02:6b:62:00:01:01", "02:6b:62:00:01:02");
        // While the block's links exist and as they are removed, nothing sent to its addresses
        // may follow the default route out of the machine: a blackhole route for the whole
        // block, added first and (the undo list running backwards) removed last.
        let range = format!("10.213.{block}.0/24");
        run(&["ip", "route", "add", "blackhole", &range])?;
        self.undo.push(
            ["ip", "route", "del", "blackhole", &range]
                .map(str::to_owned)
                .to_vec(),
        );
        let pairs = [
            (
                &self.sender_ns,
                &self.sender_if,
                SENDER_NS_IF,
                s_host_mac,
                s_ns_mac,
            ),
            (
                &self.receiver_ns,
                &self.receiver_if,
                RECEIVER_NS_IF,
                d_host_mac,
                d_ns_mac,
            ),
        ];
        for (ns, host_if, ns_if, host_mac, ns_mac) in pairs {
            run(&["ip", "netns", "add", ns])?;
            self.undo
                .push(vec!["ip".into(), "netns".into(), "del".into(), ns.clone()]);
            run(&[
                "ip", "link", "add", host_if, "address", host_mac, "type", "veth", "peer", "name",
                ns_if, "address", ns_mac, "netns", ns,
            ])?;
            // Deleting the host end takes its peer along at once.
            self.undo.push(vec![
                "ip".into(),
                "link".into(),
                "del".into(),
                host_if.clone(),
            ]);
            std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"),
                "1",
            )
            .with_context(|| format!("disabling IPv6 on {host_if}"))?;
            // /proc/sys/net shows the namespace of the process reading it.
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{ns_if}/disable_ipv6"),
            ])?;
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{host_if}/forwarding"), "1")
                .with_context(|| format!("enabling forwarding on {host_if}"))?;
        }
        let (s, d) = (&self.sender_ns, &self.receiver_ns);
        let (sif, dif) = (&self.sender_if, &self.receiver_if);
        let commands: Vec<Vec<String>> = [
            vec!["ip", "addr", "add", &format!("{}/25", net(1)), "dev", sif],
            vec![
                "ip",
                "-n",
                s,
                "addr",
                "add",
                &format!("{}/25", net(2)),
                "dev",
                SENDER_NS_IF,
            ],
            vec!["ip", "addr", "add", &format!("{}/25", net(129)), "dev", dif],
            vec![
                "ip",
                "-n",
                d,
                "addr",
                "add",
                &format!("{}/25", net(130)),
                "dev",
                RECEIVER_NS_IF,
            ],
            vec![
                "ip",
                "-n",
                d,
                "addr",
                "add",
                &format!("{}/25", net(131)),
                "dev",
                RECEIVER_NS_IF,
            ],
            vec![
                "ip",
                "neigh",
                "replace",
                &net(2),
                "lladdr",
                s_ns_mac,
                "dev",
                sif,
                "nud",
                "permanent",
            ],
            vec![
                "ip",
                "neigh",
                "replace",
                &net(130),
                "lladdr",
                d_ns_mac,
                "dev",
                dif,
                "nud",
                "permanent",
            ],
            vec![
                "ip",
                "neigh",
                "replace",
                &net(131),
                "lladdr",
                d_ns_mac,
                "dev",
                dif,
                "nud",
                "permanent",
            ],
            vec![
                "ip",
                "-n",
                s,
                "neigh",
                "replace",
                &net(1),
                "lladdr",
                s_host_mac,
                "dev",
                SENDER_NS_IF,
                "nud",
                "permanent",
            ],
            vec![
                "ip",
                "-n",
                d,
                "neigh",
                "replace",
                &net(129),
                "lladdr",
                d_host_mac,
                "dev",
                RECEIVER_NS_IF,
                "nud",
                "permanent",
            ],
            vec!["ip", "link", "set", "dev", sif, "up"],
            vec!["ip", "link", "set", "dev", dif, "up"],
            vec!["ip", "-n", s, "link", "set", "dev", SENDER_NS_IF, "up"],
            vec!["ip", "-n", s, "link", "set", "dev", "lo", "up"],
            vec!["ip", "-n", d, "link", "set", "dev", RECEIVER_NS_IF, "up"],
            vec!["ip", "-n", d, "link", "set", "dev", "lo", "up"],
            // Each namespace reaches the other's half of the block through the host, and
            // nothing else.
            vec![
                "ip",
                "-n",
                s,
                "route",
                "add",
                &format!("{}/25", net(128)),
                "via",
                &net(1),
            ],
            vec![
                "ip",
                "-n",
                d,
                "route",
                "add",
                &format!("{}/25", net(0)),
                "via",
                &net(129),
            ],
        ]
        .into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect();
        for c in &commands {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            run(&args)?;
        }
        Ok(())
    }

    /// A command that runs `program` inside namespace `ns`. `ip netns exec` execs in place, so
    /// the child's pid is the program's pid.
    pub fn command_in(ns: &str, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

/// The ifindex of the host's interface `name`.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} holds {text:?}"))
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in self.undo.drain(..).rev() {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            if let Err(err) = run(&args) {
                eprintln!("bench: cleanup: {err:#}");
            }
        }
    }
}

/// Removes namespaces (and with them their veth pairs) of benchmark runs that died without
/// cleaning up, such as one killed with SIGKILL.
fn remove_stale() {
    let Ok(listing) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("bench: removing namespace {name} left by an earlier run");
            let _ = run(&["ip", "netns", "del", name]);
            let end = if name.ends_with("-snd") { 's' } else { 'd' };
            let _ = run(&["ip", "link", "del", &format!("kb{pid}{end}")]);
        }
    }
}

/// A /24 of 10.213.`blocks`.0 in which the host has no address. The tests take /30s of
/// 10.213.0.0/16 that hold no host address; the addresses this benchmark uses all lie in the
/// /30s of its two host addresses, so a test that starts later never picks an overlapping one.
fn free_v4_block(blocks: std::ops::RangeInclusive<u8>) -> anyhow::Result<u8> {
    let listing = run(&["ip", "-4", "-o", "addr", "show"])?;
    let used: Vec<u8> = listing
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[..2] == [10, 213])
        .map(|a| a.octets()[2])
        .collect();
    let (first, last) = (*blocks.start(), *blocks.end());
    blocks
        .into_iter()
        .find(|b| !used.contains(b))
        .with_context(|| format!("no free /24 left in 10.213.{first}.0-10.213.{last}.255"))
}
