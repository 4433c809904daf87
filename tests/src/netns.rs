//! A throwaway network namespace joined to the host namespace by a veth pair, with addresses and
//! permanent neighbour entries, removed again on drop.
//!
//! Neighbours are static so that no ARP or neighbour discovery runs: the first datagrams of a
//! burst would otherwise queue behind address resolution (and be dropped past
//! `unres_qlen_bytes`), and resolution frames would show up at random in interface counters.

use std::{
    ffi::OsStr,
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
};

use anyhow::{bail, Context as _};

use crate::run;

/// Name of the veth end inside the test namespace; unique there, since the namespace is new.
pub const NS_IF: &str = "kt0";

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Held while picking an IPv4 block and assigning it, so two tests of this process never pick
/// the same free block.
static ALLOCATING: Mutex<()> = Mutex::new(());

/// Link-layer counters, as `/sys/class/net/IF/statistics` has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl LinkCounters {
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            rx_bytes: self.rx_bytes - earlier.rx_bytes,
            tx_bytes: self.tx_bytes - earlier.tx_bytes,
            rx_packets: self.rx_packets - earlier.rx_packets,
            tx_packets: self.tx_packets - earlier.tx_packets,
        }
    }
}

pub struct TestNet {
    /// The namespace, `kt-<pid>-<n>`.
    pub name: String,
    /// The veth end left in the host namespace.
    pub host_if: String,
    pub host_v4: Ipv4Addr,
    pub ns_v4: Ipv4Addr,
    /// `None` when the pair was made without IPv6.
    pub host_v6: Option<Ipv6Addr>,
    pub ns_v6: Option<Ipv6Addr>,
    created_ns: bool,
    created_link: bool,
}

impl TestNet {
    /// A namespace pair with IPv4 and IPv6 (ULA, no DAD, no link-local address).
    pub fn new() -> anyhow::Result<Self> {
        Self::create(true, 213)
    }

    /// A namespace pair with IPv6 disabled on both veth ends, so that nothing but the test's own
    /// traffic crosses the link (no MLD reports, no router solicitations).
    pub fn without_ipv6() -> anyhow::Result<Self> {
        Self::create(false, 213)
    }

    /// Without IPv6, with addresses from 10.`second`.0.0/16 instead of 10.213.0.0/16, for a
    /// test that must stay apart from the others' ranges.
    pub fn without_ipv6_in(second: u8) -> anyhow::Result<Self> {
        Self::create(false, second)
    }

    fn create(ipv6: bool, second: u8) -> anyhow::Result<Self> {
        crate::require_root()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let host_if = format!("kt{pid}h{n}");
        if host_if.len() > 15 {
            bail!("interface name {host_if} is longer than IFNAMSIZ allows");
        }
        let v6_prefix = |host: u16| {
            Ipv6Addr::new(
                0xfd00,
                0x6b61,
                ((pid >> 16) as u16) << 8 | (n & 0xff) as u16,
                pid as u16,
                0,
                0,
                0,
                host,
            )
        };
        let mut net = Self {
            name: format!("kt-{pid}-{n}"),
            host_if,
            host_v4: Ipv4Addr::UNSPECIFIED,
            ns_v4: Ipv4Addr::UNSPECIFIED,
            host_v6: ipv6.then(|| v6_prefix(1)),
            ns_v6: ipv6.then(|| v6_prefix(2)),
            created_ns: false,
            created_link: false,
        };
        // On error, drop removes whatever part was made.
        net.set_up(n, ipv6, second)?;
        Ok(net)
    }

    fn set_up(&mut self, n: u32, ipv6: bool, second: u8) -> anyhow::Result<()> {
        let (name, host_if) = (self.name.clone(), self.host_if.clone());
        let mac = |end: u8| {
            format!(
                "02:6b:74:{:02x}:{:02x}:{end:02x}",
                (n >> 8) & 0xff,
                n & 0xff
            )
        };
        let (host_mac, ns_mac) = (mac(1), mac(2));
        run(Command::new("ip").args(["netns", "add", &name]))?;
        self.created_ns = true;
        run(Command::new("ip")
            .args([
                "link", "add", &host_if, "address", &host_mac, "type", "veth",
            ])
            .args(["peer", "name", NS_IF, "address", &ns_mac, "netns", &name]))?;
        self.created_link = true;

        if ipv6 {
            for (netns, dev) in [(None, &*host_if), (Some(&*name), NS_IF)] {
                run(ip(netns).args(["link", "set", "dev", dev, "addrgenmode", "none"]))?;
            }
        } else {
            std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"),
                "1",
            )
            .with_context(|| format!("disabling IPv6 on {host_if}"))?;
            // /proc/sys/net shows the namespace of the process reading it.
            run(self.command("sh").args([
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{NS_IF}/disable_ipv6"),
            ]))?;
        }

        // No SACK in the namespace, so none on a connection with an end there: a segment sent
        // again (a loss probe when an ack is late, as on a busy machine) would otherwise make
        // the other end ack with a 12-byte duplicate-SACK block, and a test that computes the
        // bytes of each segment's headers would have to guess how many acks carried one. The
        // SYN options keep their length (timestamps take SACK-permitted's place).
        run(self
            .command("sh")
            .args(["-c", "echo 0 > /proc/sys/net/ipv4/tcp_sack"]))?;

        {
            let _guard = ALLOCATING
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let block = free_v4_block(second, std::process::id() * 16 + n)?;
            let base = u32::from(Ipv4Addr::new(10, second, 0, 0)) + block * 4;
            (self.host_v4, self.ns_v4) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
            run(Command::new("ip").args([
                "addr",
                "add",
                &format!("{}/30", self.host_v4),
                "dev",
                &host_if,
            ]))?;
        }
        run(ip(Some(&name)).args(["addr", "add", &format!("{}/30", self.ns_v4), "dev", NS_IF]))?;
        if let (Some(h), Some(s)) = (self.host_v6, self.ns_v6) {
            run(Command::new("ip").args([
                "addr",
                "add",
                &format!("{h}/64"),
                "dev",
                &host_if,
                "nodad",
            ]))?;
            run(ip(Some(&name)).args(["addr", "add", &format!("{s}/64"), "dev", NS_IF, "nodad"]))?;
        }

        let neighbours = [
            (None, &*host_if, self.ns_v4.to_string(), &ns_mac),
            (Some(&*name), NS_IF, self.host_v4.to_string(), &host_mac),
        ]
        .into_iter()
        .chain(
            self.ns_v6
                .map(|a| (None, &*host_if, a.to_string(), &ns_mac)),
        )
        .chain(
            self.host_v6
                .map(|a| (Some(&*name), NS_IF, a.to_string(), &host_mac)),
        );
        for (netns, dev, addr, mac) in neighbours {
            run(ip(netns).args([
                "neigh",
                "replace",
                &addr,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ]))?;
        }
        for (netns, dev) in [
            (None, &*host_if),
            (Some(&*name), NS_IF),
            (Some(&*name), "lo"),
        ] {
            run(ip(netns).args(["link", "set", "dev", dev, "up"]))?;
        }
        Ok(())
    }

    /// A command that runs `program` inside the test namespace. `ip netns exec` execs in place,
    /// so the child's pid is the program's pid.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// The kernel's counters of the host veth end.
    pub fn host_counters(&self) -> anyhow::Result<LinkCounters> {
        let read = |field: &str| -> anyhow::Result<u64> {
            let path = format!("/sys/class/net/{}/statistics/{field}", self.host_if);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            text.trim()
                .parse()
                .with_context(|| format!("parsing {path}: {text:?}"))
        };
        Ok(LinkCounters {
            rx_bytes: read("rx_bytes")?,
            tx_bytes: read("tx_bytes")?,
            rx_packets: read("rx_packets")?,
            tx_packets: read("tx_packets")?,
        })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the host end takes its peer along at once; deleting only the namespace would
        // leave the pair to the kernel's asynchronous namespace cleanup.
        if self.created_link {
            if let Err(e) = run(Command::new("ip").args(["link", "del", &self.host_if])) {
                eprintln!("kaipo-tests: cleanup: {e:#}");
            }
        }
        if self.created_ns {
            if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
                eprintln!("kaipo-tests: cleanup: {e:#}");
            }
        }
    }
}

/// `ip`, or `ip -n NETNS`.
fn ip(netns: Option<&str>) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(netns) = netns {
        cmd.args(["-n", netns]);
    }
    cmd
}

/// A /30 block of 10.`second`.0.0/16 that no host address uses, searching from `start`. Another test
/// process (or another user of the range) may hold some blocks; pids keep us apart from the
/// former most of the time, this check the rest.
fn free_v4_block(second: u8, start: u32) -> anyhow::Result<u32> {
    const BLOCKS: u32 = 1 << 14;
    let listing = run(Command::new("ip").args(["-4", "-o", "addr", "show"]))?;
    let used: Vec<u32> = listing
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[..2] == [10, second])
        .map(|a| (u32::from(a) & 0xffff) / 4)
        .collect();
    (0..BLOCKS)
        .map(|i| (start + i) % BLOCKS)
        .find(|b| !used.contains(b))
        .with_context(|| format!("no free /30 left in 10.{second}.0.0/16"))
}
