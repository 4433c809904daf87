//! Interfaces that come and go while kaipo runs: a veth deleted and created again under the
//! same name, and a veth that appears after kaipo started. kaipo's interface figures must
//! equal the kernel's own counters for each incarnation, and no run may end because an
//! interface went away.
//!
//! Each test adds a blackhole route for its whole address range before it creates or deletes
//! anything, so nothing can leave through the default route while an interface is missing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use kaipo_tests::{child::Spawned, kaipo_bin, require_root, run};
use serde_json::Value;

const TRAFFIC: &str = env!("CARGO_BIN_EXE_kaipo-traffic");
const WAIT: Duration = Duration::from_secs(30);

/// One test's namespace, veth names and /30, and its blackhole route; all removed on drop.
struct Churn {
    ns: String,
    host_if: String,
    ns_if: String,
    /// Third octet of 10.216.X.0/30.
    block: u8,
    route_added: bool,
}

impl Churn {
    fn new(tag: &str) -> anyhow::Result<Self> {
        require_root()?;
        let pid = std::process::id();
        let route_added = Command::new("ip")
            .args(["route", "add", "blackhole", "10.216.0.0/16"])
            .status()
            .is_ok_and(|s| s.success());
        let churn = Self {
            ns: format!("kc-{pid}-{tag}"),
            host_if: format!("kc{}{tag}", pid % 100_000),
            ns_if: format!("kp{}{tag}", pid % 100_000),
            block: (pid % 200) as u8
                + match tag {
                    "b" => 1,
                    "d" => 2,
                    _ => 0,
                },
            route_added,
        };
        run(Command::new("ip").args(["netns", "add", &churn.ns]))?;
        Ok(churn)
    }

    fn host_addr(&self) -> String {
        format!("10.216.{}.1", self.block)
    }

    fn ns_addr(&self) -> String {
        format!("10.216.{}.2", self.block)
    }

    /// Creates the veth pair, down, with IPv6 off on both ends (no router solicitations or
    /// neighbour discovery: every frame is the test's own).
    fn create(&self) -> anyhow::Result<()> {
        run(Command::new("ip").args([
            "link",
            "add",
            &self.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.ns_if,
        ]))?;
        run(Command::new("ip").args(["link", "set", &self.ns_if, "netns", &self.ns]))?;
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", self.host_if),
            "1",
        )?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns,
            "sh",
            "-c",
            &format!(
                "echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6",
                self.ns_if
            ),
        ]))?;
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/30", self.host_addr()),
            "dev",
            &self.host_if,
        ]))?;
        run(Command::new("ip").args([
            "-n",
            &self.ns,
            "addr",
            "add",
            &format!("{}/30", self.ns_addr()),
            "dev",
            &self.ns_if,
        ]))?;
        Ok(())
    }

    fn up(&self) -> anyhow::Result<()> {
        run(Command::new("ip").args(["link", "set", &self.host_if, "up"]))?;
        run(Command::new("ip").args(["-n", &self.ns, "link", "set", &self.ns_if, "up"]))?;
        Ok(())
    }

    fn down(&self) -> anyhow::Result<()> {
        run(Command::new("ip").args(["link", "set", &self.host_if, "down"]))?;
        Ok(())
    }

    fn delete(&self) -> anyhow::Result<()> {
        run(Command::new("ip").args(["link", "del", &self.host_if]))?;
        Ok(())
    }

    /// The kernel's counters of the host end: rx bytes, rx packets, tx bytes, tx packets.
    fn kernel(&self) -> anyhow::Result<[u64; 4]> {
        let read = |field: &str| -> anyhow::Result<u64> {
            let path = format!("/sys/class/net/{}/statistics/{field}", self.host_if);
            Ok(std::fs::read_to_string(&path)
                .with_context(|| format!("reading {path}"))?
                .trim()
                .parse()?)
        };
        Ok([
            read("rx_bytes")?,
            read("rx_packets")?,
            read("tx_bytes")?,
            read("tx_packets")?,
        ])
    }

    /// `count` datagrams of 200 bytes from the host to a receiver in the namespace, all
    /// received before this returns.
    fn send(&self, count: u32) -> anyhow::Result<()> {
        let mut sink = Command::new("ip");
        sink.args(["netns", "exec", &self.ns, TRAFFIC, "udp-sink"])
            .arg(format!("{}:0", self.ns_addr()))
            .arg(count.to_string());
        let mut sink = Spawned::spawn("udp-sink", sink)?;
        let _: u32 = sink.expect_num("pid", WAIT)?;
        let port: u16 = sink.expect_num("port", WAIT)?;
        run(Command::new(TRAFFIC).args([
            "udp-send",
            &format!("{}:{port}", self.ns_addr()),
            &count.to_string(),
            "200",
        ]))?;
        sink.wait_success(WAIT)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        if self.route_added {
            let _ = Command::new("ip")
                .args(["route", "del", "blackhole", "10.216.0.0/16"])
                .output();
        }
    }
}

/// kaipo's figures for `name` in one record, as [rx bytes, rx packets, tx bytes, tx packets].
fn figures(record: &Value, name: &str) -> Option<[u64; 4]> {
    let i = record["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)?;
    let n = |k: &str| i[k].as_u64().unwrap_or(0);
    Some([
        n("rx_bytes"),
        n("rx_packets"),
        n("tx_bytes"),
        n("tx_packets"),
    ])
}

fn add(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

fn sub(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
}

/// A running `kaipo watch --json`, read record by record.
struct Watcher {
    child: Spawned,
    records: Vec<Value>,
}

impl Watcher {
    fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(kaipo_bin()?);
        cmd.args(["watch", "--json", "--interval", "300ms"])
            .args(args);
        let child = Spawned::spawn("kaipo watch", cmd)?;
        Ok(Self {
            child,
            records: Vec::new(),
        })
    }

    fn next(&mut self) -> anyhow::Result<&Value> {
        let line = self.child.next_line(WAIT)?;
        let record: Value = serde_json::from_str(&line).context("a record that is not JSON")?;
        self.records.push(record);
        Ok(self.records.last().unwrap_or(&Value::Null))
    }

    /// Reads records until `done` holds for one; fails after [`WAIT`].
    fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if done(self.next()?) {
                return Ok(());
            }
        }
        bail!("no record showed {what}; stderr: {}", self.child.stderr())
    }

    /// Stops kaipo with SIGINT, checks that it exited 0, and returns what it said on stderr.
    fn stop(&mut self) -> anyhow::Result<String> {
        self.child.interrupt()?;
        let status = self.child.wait(WAIT)?;
        let stderr = self.child.stderr();
        assert!(status.success(), "kaipo ended with {status}: {stderr}");
        Ok(stderr)
    }

    /// Two whole intervals pass: what happened before now is in the records read.
    fn settle(&mut self) -> anyhow::Result<()> {
        self.next()?;
        self.next()?;
        Ok(())
    }

    fn total(&self, name: &str, from: usize) -> [u64; 4] {
        self.records[from..]
            .iter()
            .filter_map(|r| figures(r, name))
            .fold([0; 4], add)
    }
}

fn deleted_and_created_again(backend: &str) -> anyhow::Result<()> {
    let churn = Churn::new(if backend == "ebpf" { "a" } else { "b" })?;
    churn.create()?;
    churn.up()?;
    let mut watch = Watcher::start(&["--backend", backend, "--iface", &churn.host_if])?;
    watch.next()?;
    let before = churn.kernel()?;
    let from = watch.records.len();
    churn.send(40)?;
    watch.settle()?;
    let first = sub(churn.kernel()?, before);
    assert_eq!(watch.total(&churn.host_if, from), first, "first veth");
    assert!(first[3] >= 40, "the datagrams left: {first:?}");

    churn.delete()?;
    watch.until("the interface gone", |r| {
        figures(r, &churn.host_if).is_none()
    })?;
    churn.create()?;
    if backend == "pcap" {
        // libpcap opens only an interface that is up; nothing crosses it until the test
        // sends (IPv6 is off), so it is still watched from its first frame.
        churn.up()?;
    }
    let host_if = churn.host_if.clone();
    watch.until("the interface back", move |r| {
        figures(r, &host_if).is_some()
    })?;
    let from = watch.records.len();
    churn.up()?;
    churn.send(25)?;
    watch.settle()?;
    let second = churn.kernel()?;
    assert_eq!(
        watch.total(&churn.host_if, from),
        second,
        "the veth created again"
    );
    assert!(second[3] >= 25, "{second:?}");

    let stderr = watch.stop()?;
    assert!(stderr.contains("went away"), "{stderr}");
    assert!(stderr.contains("appeared"), "{stderr}");
    Ok(())
}

/// A named interface deleted and created again is attached again; the eBPF figures of each
/// incarnation equal the kernel's counters.
#[test]
fn a_named_interface_created_again_is_monitored_again() -> anyhow::Result<()> {
    deleted_and_created_again("ebpf")
}

/// The same with libpcap: the capture of a vanished interface ends without ending the run.
#[test]
fn a_vanished_interface_does_not_end_a_pcap_run() -> anyhow::Result<()> {
    deleted_and_created_again("pcap")
}

/// With `--flows` and no `--iface`, an interface that comes up after kaipo started gets kaipo's
/// programs and is monitored within an interval, exactly; one that goes away leaves the
/// records.
#[test]
fn an_interface_that_comes_up_later_is_monitored() -> anyhow::Result<()> {
    let churn = Churn::new("c")?;
    let mut watch = Watcher::start(&["--backend", "ebpf", "--flows"])?;
    watch.next()?;
    churn.create()?;
    churn.up()?;
    let host_if = churn.host_if.clone();
    watch.until("the new interface", move |r| figures(r, &host_if).is_some())?;
    let from = watch.records.len();
    let before = churn.kernel()?;
    churn.send(30)?;
    watch.settle()?;
    assert_eq!(
        watch.total(&churn.host_if, from),
        sub(churn.kernel()?, before),
        "the interface that came up"
    );
    // Counted by kaipo's programs on it: only flows give an attributed share.
    assert!(
        watch.records[from..]
            .iter()
            .any(|r| r["attributed_ratio"].is_number()),
        "no attributed share after traffic on the new interface"
    );
    churn.delete()?;
    let host_if = churn.host_if.clone();
    watch.until("the interface gone", move |r| {
        figures(r, &host_if).is_none()
    })?;
    watch.stop()?;
    Ok(())
}

/// With `--no-flows` (as by default with no interface named) the interfaces' figures are the
/// kernel's own counters: an interface that comes up after kaipo started counts from then,
/// not with what it carried before.
#[test]
fn without_flows_an_interface_that_comes_up_later_counts_from_then() -> anyhow::Result<()> {
    let churn = Churn::new("d")?;
    churn.create()?;
    churn.up()?;
    churn.send(20)?;
    churn.down()?;
    let earlier = churn.kernel()?;
    assert!(earlier[3] >= 20, "the earlier datagrams left: {earlier:?}");
    let mut watch = Watcher::start(&["--backend", "ebpf", "--no-flows"])?;
    watch.next()?;
    assert!(
        figures(&watch.records[0], &churn.host_if).is_none(),
        "a down interface is not monitored"
    );
    churn.up()?;
    let host_if = churn.host_if.clone();
    watch.until("the interface that came up", move |r| {
        figures(r, &host_if).is_some()
    })?;
    churn.send(15)?;
    watch.settle()?;
    let since_up = sub(churn.kernel()?, earlier);
    assert!(since_up[3] >= 15, "{since_up:?}");
    assert_eq!(
        watch.total(&churn.host_if, 0),
        since_up,
        "kaipo's figures of the interface against the kernel's counters since it came up"
    );
    let stderr = watch.stop()?;
    assert!(stderr.contains("appeared"), "{stderr}");
    Ok(())
}
