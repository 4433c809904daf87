//! End to end: the real `kaipo watch`, real traffic between a throwaway network namespace and the
//! host, and exact figures that a wrong collector would miss.
//!
//! These tests need root (they create namespaces and load eBPF programs) and fail without it;
//! build kaipo first with `cargo build -p kaipo-user`.

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use kaipo_tests::{
    child::Spawned,
    netns::TestNet,
    tcp,
    watch::{Run, Totals, Watch, WatchConfig},
};

const TRAFFIC: &str = env!("CARGO_BIN_EXE_kaipo-traffic");
/// Bound on each step of a generator (print its pid, finish sending, ...).
const STEP: Duration = Duration::from_secs(10);
/// Long enough for any scenario's traffic after the first record, short enough to keep each test
/// well under ten seconds.
const RUN: Duration = Duration::from_secs(3);
const UDP4_OVERHEAD: u64 = 20 + 8;
const UDP6_OVERHEAD: u64 = 40 + 8;
const ETHERNET_HEADER: u64 = 14;

/// The generator, on the host or inside `net`.
fn traffic(net: Option<&TestNet>, args: &[&str]) -> Command {
    let mut cmd = match net {
        Some(net) => net.command(TRAFFIC),
        None => Command::new(TRAFFIC),
    };
    cmd.args(args);
    cmd
}

fn udp_totals(count: u64, size: u64, overhead: u64, tx: bool) -> Totals {
    let (bytes, packets) = (count * (size + overhead), count);
    if tx {
        Totals {
            tx_bytes: bytes,
            tx_packets: packets,
            ..Totals::default()
        }
    } else {
        Totals {
            rx_bytes: bytes,
            rx_packets: packets,
            ..Totals::default()
        }
    }
}

/// A `udp-sink` that has bound its socket.
struct Sink {
    child: Spawned,
    pid: u32,
    addr: SocketAddr,
    count: u64,
}

impl Sink {
    fn start(net: Option<&TestNet>, ip: IpAddr, count: u64) -> anyhow::Result<Self> {
        Self::start_with(net, ip, count, &[])
    }

    /// A sink that stays after its last datagram until [`Sink::release`].
    fn start_holding(net: Option<&TestNet>, ip: IpAddr, count: u64) -> anyhow::Result<Self> {
        Self::start_with(net, ip, count, &["hold"])
    }

    fn start_with(
        net: Option<&TestNet>,
        ip: IpAddr,
        count: u64,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let bind = SocketAddr::new(ip, 0).to_string();
        let count_arg = count.to_string();
        let mut args = vec!["udp-sink", &bind, &count_arg];
        args.extend_from_slice(extra);
        let mut child = Spawned::spawn("udp-sink", traffic(net, &args))?;
        let pid = child.expect_num("pid", STEP)?;
        let port = child.expect_num("port", STEP)?;
        Ok(Self {
            child,
            pid,
            addr: SocketAddr::new(ip, port),
            count,
        })
    }

    /// Waits until every datagram arrived, with `size` payload bytes each.
    fn finish(mut self, size: u64) -> anyhow::Result<()> {
        self.received(size)?;
        self.child.wait_success(STEP)
    }

    fn received(&mut self, size: u64) -> anyhow::Result<()> {
        let got = self.child.expect("received", STEP)?;
        let want = format!("{} {}", self.count, self.count * size);
        ensure!(
            got == want,
            "udp-sink received `{got}` (datagrams bytes), expected `{want}`"
        );
        Ok(())
    }

    /// Lets a holding sink exit.
    fn release(mut self) -> anyhow::Result<()> {
        self.child.send_line("go")?;
        self.child.wait_success(STEP)
    }
}

/// Starts `udp-send` and returns it with its pid.
fn udp_send(
    net: Option<&TestNet>,
    to: SocketAddr,
    count: u64,
    size: u64,
) -> anyhow::Result<(Spawned, u32)> {
    let args = [
        "udp-send",
        &to.to_string(),
        &count.to_string(),
        &size.to_string(),
    ];
    let mut child = Spawned::spawn("udp-send", traffic(net, &args))?;
    let pid = child.expect_num("pid", STEP)?;
    Ok((child, pid))
}

fn finish_sender(mut child: Spawned, count: u64) -> anyhow::Result<()> {
    let sent = child.expect("sent", STEP)?;
    ensure!(
        sent == count.to_string(),
        "sender reported `sent {sent}`, expected {count}"
    );
    child.wait_success(STEP)
}

fn assert_totals(run: &Run, pid: u32, want: Totals, what: &str, pids: &[u32]) {
    let got = run.process(pid);
    // Shown with --nocapture: the figures behind a pass.
    println!("{what} (pid {pid}): {got:?}");
    assert_eq!(
        got,
        want,
        "{what} (pid {pid}): kaipo's sum over intervals differs; timeline:{}",
        run.timeline(pids)
    );
}

/// A sender in the test namespace, a sink on the host: exact IP-layer bytes for both pids.
fn udp_exact_per_process(v6: bool) -> anyhow::Result<()> {
    const COUNT: u64 = 200;
    const SIZE: u64 = 300;
    let net = TestNet::new()?;
    let (host_ip, peer_ip, overhead) = if v6 {
        (
            IpAddr::V6(net.host_v6.context("test net without IPv6")?),
            IpAddr::V6(net.ns_v6.context("test net without IPv6")?),
            UDP6_OVERHEAD,
        )
    } else {
        (
            IpAddr::V4(net.host_v4),
            IpAddr::V4(net.ns_v4),
            UDP4_OVERHEAD,
        )
    };
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let sink = Sink::start(None, host_ip, COUNT)?;
    let sink_pid = sink.pid;
    let (sender, sender_pid) = udp_send(Some(&net), sink.addr, COUNT, SIZE)?;
    finish_sender(sender, COUNT)?;
    sink.finish(SIZE)?;
    let run = watch.finish()?;

    let pids = [sender_pid, sink_pid];
    assert_totals(
        &run,
        sender_pid,
        udp_totals(COUNT, SIZE, overhead, true),
        "sender",
        &pids,
    );
    assert_totals(
        &run,
        sink_pid,
        udp_totals(COUNT, SIZE, overhead, false),
        "sink",
        &pids,
    );
    // The sink's socket is unconnected; with one peer, its remote is that peer.
    let remotes = remotes_of(&run, sink_pid);
    let prefix = match peer_ip {
        IpAddr::V4(ip) => format!("{ip}:"),
        IpAddr::V6(ip) => format!("[{ip}]:"),
    };
    ensure!(
        !remotes.is_empty() && remotes.iter().all(|r| r.starts_with(&prefix)),
        "the sink's remotes should all be the sender at {prefix}*, got {remotes:?}"
    );
    Ok(())
}

/// Every remote shown for `pid`'s connections over the run.
fn remotes_of(run: &Run, pid: u32) -> std::collections::BTreeSet<String> {
    run.records
        .iter()
        .flat_map(|r| &r.connections)
        .filter(|c| c.pid == pid)
        .map(|c| c.remote.clone())
        .collect()
}

/// An unconnected UDP socket that hears from a second peer is shown with remote `*` from then
/// on, and its bytes stay exact.
#[test]
fn udp_server_hearing_two_peers_shows_many_remotes() -> anyhow::Result<()> {
    const COUNT: u64 = 100;
    const SIZE: u64 = 200;
    let net = TestNet::new()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let sink = Sink::start(None, IpAddr::V4(net.host_v4), 2 * COUNT)?;
    let sink_pid = sink.pid;
    // Two processes, so two source ports: two peers.
    let (first, _) = udp_send(Some(&net), sink.addr, COUNT, SIZE)?;
    finish_sender(first, COUNT)?;
    let (second, _) = udp_send(Some(&net), sink.addr, COUNT, SIZE)?;
    finish_sender(second, COUNT)?;
    sink.finish(SIZE)?;
    let run = watch.finish()?;
    assert_totals(
        &run,
        sink_pid,
        udp_totals(2 * COUNT, SIZE, UDP4_OVERHEAD, false),
        "sink",
        &[sink_pid],
    );
    let remotes = remotes_of(&run, sink_pid);
    let prefix = format!("{}:", net.ns_v4);
    ensure!(
        remotes.contains("*") && remotes.iter().all(|r| r == "*" || r.starts_with(&prefix)),
        "the sink should be shown with remote `*` once the second peer sent, got {remotes:?}"
    );
    Ok(())
}

#[test]
fn udp_ipv4_exact_per_process() -> anyhow::Result<()> {
    udp_exact_per_process(false)
}

#[test]
fn udp_ipv6_exact_per_process() -> anyhow::Result<()> {
    udp_exact_per_process(true)
}

/// TCP header of every segment after the handshake's first two on a veth: the timestamp
/// option (12 bytes with its two NOPs) on each, and no SACK blocks: the test namespaces turn SACK
/// off (see `TestNet`), so a segment sent again leaves no duplicate-SACK block on the acks.
const TCP_HEADER: u64 = 20 + 12;
/// The SYN and the SYN-ACK carry MSS (4), two NOPs (SACK-permitted's place) and timestamps (12),
/// NOP and window scale (4): 8 bytes more than a later segment.
const SYN_EXTRA: u64 = 8;

/// Megabytes each way, which the stack hands to the veth in buffers of many segments (it
/// offloads segmentation to the device): each segment's headers must count, as on a wire, and
/// exactly, whether the socket programs read them in place or through the load helper.
#[test]
fn tcp_ipv4_both_directions_exact_with_offloaded_segments() -> anyhow::Result<()> {
    tcp_exact_with_offloaded_segments(false)
}

#[test]
fn tcp_ipv6_both_directions_exact_with_offloaded_segments() -> anyhow::Result<()> {
    tcp_exact_with_offloaded_segments(true)
}

fn tcp_exact_with_offloaded_segments(ipv6: bool) -> anyhow::Result<()> {
    const UP: u64 = 2_000_000;
    const DOWN: u64 = 1_000_000;
    let net = TestNet::new()?;
    let (host, ip_header) = if ipv6 {
        (
            IpAddr::V6(net.host_v6.context("test net without IPv6")?),
            40,
        )
    } else {
        (IpAddr::V4(net.host_v4), 20)
    };
    let link_before = net.host_counters()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let ends = TcpEnds::exchange(&net, host, UP, DOWN, 0)?;
    let run = watch.finish()?;
    let link = net.host_counters()?.since(&link_before);
    let (c, _) = ends.figures(&run);
    println!("link: {link:?}");
    // The kernel's counters of the veth count a buffer once, however many segments it holds:
    // fewer frames there than segments here shows the transfer was offloaded.
    ensure!(
        link.rx_packets < c.tx_packets && link.tx_packets < c.rx_packets,
        "no offloaded segments: the veth carried {link:?}, the client counted {c:?}"
    );
    ends.ensure_exact(&run, ip_header + TCP_HEADER)
}

/// The two ends of one TCP connection made by `kaipo-traffic`: a server on the host, a client
/// in the test namespace.
struct TcpEnds {
    client_pid: u32,
    server_pid: u32,
    /// Payload bytes each kernel sent, retransmissions included.
    client_sent: u64,
    server_sent: u64,
}

impl TcpEnds {
    /// The client sends `up` bytes to a server at `host`, which replies `down` bytes after
    /// waiting `wait_ms`; both have exited when this returns.
    fn exchange(
        net: &TestNet,
        host: IpAddr,
        up: u64,
        down: u64,
        wait_ms: u64,
    ) -> anyhow::Result<Self> {
        let (up_s, down_s) = (up.to_string(), down.to_string());
        let bind = SocketAddr::new(host, 0).to_string();
        let wait = wait_ms.to_string();
        let mut server = Spawned::spawn(
            "tcp-serve",
            traffic(None, &["tcp-serve", &bind, &up_s, &down_s, &wait]),
        )?;
        let server_pid = server.expect_num("pid", STEP)?;
        let port = server.expect_num("port", STEP)?;
        let to = SocketAddr::new(host, port).to_string();
        let mut client = Spawned::spawn(
            "tcp-send",
            traffic(Some(net), &["tcp-send", &to, &up_s, &down_s]),
        )?;
        let client_pid = client.expect_num("pid", STEP)?;
        let client_sent = tcp::expect_sent(&mut client, up, STEP)?;
        client.expect("done", STEP)?;
        client.wait_success(STEP)?;
        let server_sent = tcp::expect_sent(&mut server, down, STEP)?;
        server.expect("done", STEP)?;
        server.wait_success(STEP)?;
        Ok(Self {
            client_pid,
            server_pid,
            client_sent,
            server_sent,
        })
    }

    /// What kaipo counted for the client and the server, printed.
    fn figures(&self, run: &Run) -> (Totals, Totals) {
        let (c, s) = (run.process(self.client_pid), run.process(self.server_pid));
        println!(
            "client (pid {}): {c:?}, sent {}\nserver (pid {}): {s:?}, sent {}",
            self.client_pid, self.client_sent, self.server_pid, self.server_sent
        );
        (c, s)
    }

    /// Each end's bytes are its packets' headers (`segment_headers` each), the payload the
    /// kernels sent (a segment sent again crossed the veth again, and the other end counts it
    /// too) and one SYN's options each way; and what one end sends, the other receives.
    fn ensure_exact(&self, run: &Run, segment_headers: u64) -> anyhow::Result<()> {
        let timeline = run.timeline(&[self.client_pid, self.server_pid]);
        let (c, s) = (run.process(self.client_pid), run.process(self.server_pid));
        for (what, t, sent, received) in [
            ("client", c, self.client_sent, self.server_sent),
            ("server", s, self.server_sent, self.client_sent),
        ] {
            let want_tx = segment_headers * t.tx_packets + sent + SYN_EXTRA;
            let want_rx = segment_headers * t.rx_packets + received + SYN_EXTRA;
            ensure!(
                (t.tx_bytes, t.rx_bytes) == (want_tx, want_rx),
                "{what}: tx {} rx {} bytes, expected tx {want_tx} rx {want_rx}: \
                 {segment_headers} header bytes for each of {} and {} packets, {sent} and \
                 {received} payload bytes (as the kernels sent them), one SYN each way; \
                 timeline:{timeline}",
                t.tx_bytes,
                t.rx_bytes,
                t.tx_packets,
                t.rx_packets,
            );
        }
        ensure!(
            (c.tx_bytes, c.tx_packets, c.rx_bytes, c.rx_packets)
                == (s.rx_bytes, s.rx_packets, s.tx_bytes, s.tx_packets),
            "the server {s:?} should mirror the client {c:?}; timeline:{timeline}"
        );
        Ok(())
    }
}

/// A netfilter table of the test's own in the host's namespace, for the life of the value:
/// deleted on drop, with everything in it.
struct HostTable {
    name: String,
}

impl HostTable {
    /// Makes table `inet NAME` with the given chains and rules, in nft's syntax.
    fn make(name: &str, body: &str) -> anyhow::Result<Self> {
        let script = format!("table inet {name} {{\n{body}\n}}\n");
        let path = std::env::temp_dir().join(format!("{name}.nft"));
        std::fs::write(&path, &script).with_context(|| format!("writing {}", path.display()))?;
        let made = kaipo_tests::run(Command::new("nft").arg("-f").arg(&path))
            .context("making the test's netfilter table (needs nft, from the nftables package)");
        std::fs::remove_file(&path).ok();
        made?;
        Ok(Self {
            name: name.to_owned(),
        })
    }
}

impl Drop for HostTable {
    fn drop(&mut self) {
        let deleted =
            kaipo_tests::run(Command::new("nft").args(["delete", "table", "inet", &self.name]));
        if let Err(e) = deleted {
            eprintln!("could not delete the test's table {}: {e:#}", self.name);
        }
    }
}

/// A segment the stack sends again crosses the wire again: it counts again for the end that
/// sends it and for the end that receives it, as the interface counters of a real link would
/// count it. The host drops every bare ack the server sends to the client, after the server's
/// socket made it and before it reaches the socket programs (netfilter's last hook runs first),
/// and the server waits before replying: the client hears nothing of its request until then and
/// sends part of it again (a loss probe, then a timeout). The kernel says how many bytes.
#[test]
fn tcp_segments_sent_again_count_again_for_both_ends() -> anyhow::Result<()> {
    /// Fits the first window: the client sends it all before any ack.
    const UP: u64 = 10_000;
    const DOWN: u64 = 3_000;
    /// Longer than a loss probe's wait and the first retransmission timeout (200 ms at least).
    const WAIT_MS: u64 = 700;
    let net = TestNet::without_ipv6()?;
    let segment_headers = 20 + TCP_HEADER;
    // A bare ack: IPv4 and TCP headers with the timestamp option, no payload, only ACK set.
    let _drop_acks = HostTable::make(
        &format!("kaipo_test_{}", std::process::id()),
        &format!(
            "chain out {{ type filter hook postrouting priority 0; oifname \"{}\" \
             ip length {segment_headers} tcp flags & (syn | fin | rst | ack) == ack drop; }}",
            net.host_if
        ),
    )?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let ends = TcpEnds::exchange(&net, IpAddr::V4(net.host_v4), UP, DOWN, WAIT_MS)?;
    let run = watch.finish()?;
    ends.figures(&run);
    ensure!(
        ends.client_sent > UP,
        "the client sent nothing again ({} payload bytes for {UP}): the test's dropped acks did \
         not take",
        ends.client_sent
    );
    // The acks dropped before the socket programs never left: neither end counts them.
    ends.ensure_exact(&run, segment_headers)
}

#[test]
fn process_living_under_100ms_is_reported_by_pid_and_name() -> anyhow::Result<()> {
    const COUNT: u64 = 50;
    const SIZE: u64 = 200;
    let net = TestNet::new()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let sink = Sink::start(Some(&net), IpAddr::V4(net.ns_v4), COUNT)?;
    let sink_pid = sink.pid;
    let args = [
        "udp-burst",
        &sink.addr.to_string(),
        &COUNT.to_string(),
        &SIZE.to_string(),
    ];
    let started = Instant::now();
    let mut burst = Spawned::spawn("udp-burst", traffic(None, &args))?;
    burst.wait_success(STEP)?;
    let lived = started.elapsed();
    let pid = burst.pid();
    println!("udp-burst (pid {}) lived {lived:?}", burst.pid());
    ensure!(
        lived < Duration::from_millis(100),
        "udp-burst took {lived:?}, so it does not test a process that lives under 100 ms"
    );
    sink.finish(SIZE)?;
    let run = watch.finish()?;

    let pids = [pid, sink_pid];
    assert_totals(
        &run,
        pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, true),
        "short-lived sender",
        &pids,
    );
    assert_totals(
        &run,
        sink_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, false),
        "sink in netns",
        &pids,
    );
    let names = run.names(pid);
    assert!(
        names.len() == 1 && names.contains("kaipo-traffic"),
        "short-lived sender (pid {pid}) was named {names:?}, expected kaipo-traffic; timeline:{}",
        run.timeline(&[pid])
    );
    Ok(())
}

#[test]
fn socket_opened_before_kaipo_started() -> anyhow::Result<()> {
    const COUNT: u64 = 120;
    const SIZE: u64 = 250;
    let net = TestNet::new()?;
    // Both sockets exist before kaipo does: no creation hook can have seen them.
    let sink = Sink::start(None, IpAddr::V4(net.host_v4), COUNT)?;
    let sink_pid = sink.pid;
    let args = [
        "udp-wait",
        &sink.addr.to_string(),
        &COUNT.to_string(),
        &SIZE.to_string(),
    ];
    let mut sender = Spawned::spawn("udp-wait", traffic(Some(&net), &args))?;
    let sender_pid: u32 = sender.expect_num("pid", STEP)?;
    sender.expect("ready", STEP)?;

    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    sender.send_line("go")?;
    finish_sender(sender, COUNT)?;
    sink.finish(SIZE)?;
    let run = watch.finish()?;

    let pids = [sender_pid, sink_pid];
    assert_totals(
        &run,
        sender_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, true),
        "pre-existing sender",
        &pids,
    );
    assert_totals(
        &run,
        sink_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, false),
        "pre-existing sink",
        &pids,
    );
    Ok(())
}

/// A receive-only socket older than kaipo, whose process stays: the kernel programs never see
/// its owner (it neither is created nor sends while kaipo runs), so userspace finds it in the
/// descriptor tables, in time for the bytes that waited for it.
#[test]
fn receive_only_socket_older_than_kaipo_is_found_while_its_process_lives() -> anyhow::Result<()> {
    const COUNT: u64 = 90;
    const SIZE: u64 = 300;
    let net = TestNet::new()?;
    let sink = Sink::start_holding(None, IpAddr::V4(net.host_v4), COUNT)?;
    let sink_pid = sink.pid;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let (sender, sender_pid) = udp_send(Some(&net), sink.addr, COUNT, SIZE)?;
    finish_sender(sender, COUNT)?;
    let mut sink = sink;
    sink.received(SIZE)?;
    // The sink's socket is still open when kaipo stops: no close can have told its owner.
    let run = watch.finish()?;
    sink.release()?;
    let pids = [sender_pid, sink_pid];
    assert_totals(
        &run,
        sink_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, false),
        "receive-only sink older than kaipo",
        &pids,
    );
    assert_totals(
        &run,
        sender_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, true),
        "sender",
        &pids,
    );
    Ok(())
}

/// A socket its creator hands to a forked child: every datagram counts for the child, which
/// sends them, and none for the parent that made the socket.
#[test]
fn a_socket_handed_to_a_forked_child_counts_for_the_child() -> anyhow::Result<()> {
    const COUNT: u64 = 75;
    const SIZE: u64 = 200;
    let net = TestNet::new()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let sink = Sink::start(None, IpAddr::V4(net.host_v4), COUNT)?;
    let args = [
        "udp-fork",
        &sink.addr.to_string(),
        &COUNT.to_string(),
        &SIZE.to_string(),
    ];
    let mut parent = Spawned::spawn("udp-fork", traffic(Some(&net), &args))?;
    let parent_pid: u32 = parent.expect_num("pid", STEP)?;
    parent.expect("ready", STEP)?;
    parent.send_line("go")?;
    let child_pid: u32 = parent.expect_num("child", STEP)?;
    finish_sender(parent, COUNT)?;
    let sink_pid = sink.pid;
    sink.finish(SIZE)?;
    let run = watch.finish()?;
    let pids = [parent_pid, child_pid, sink_pid];
    assert_totals(
        &run,
        child_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, true),
        "forked child sending on its parent's socket",
        &pids,
    );
    assert_totals(
        &run,
        parent_pid,
        Totals::default(),
        "parent that made the socket",
        &pids,
    );
    Ok(())
}

#[test]
fn process_in_another_netns_is_reported_by_its_host_pid() -> anyhow::Result<()> {
    const COUNT: u64 = 64;
    const SIZE: u64 = 512;
    let net = TestNet::new()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let sink = Sink::start(None, IpAddr::V4(net.host_v4), COUNT)?;
    let sink_pid = sink.pid;
    let args = [
        "udp-wait",
        &sink.addr.to_string(),
        &COUNT.to_string(),
        &SIZE.to_string(),
    ];
    let mut sender = Spawned::spawn("udp-wait", traffic(Some(&net), &args))?;
    let printed_pid: u32 = sender.expect_num("pid", STEP)?;
    sender.expect("ready", STEP)?;

    // The pid the host knows, and proof that this process really lives in the test namespace.
    let host_pid = sender.pid();
    ensure!(
        printed_pid == host_pid,
        "sender printed pid {printed_pid}, the host spawned {host_pid}"
    );
    let ns_of = |path: &str| {
        std::fs::metadata(path)
            .map(|m| m.ino())
            .with_context(|| format!("stat {path}"))
    };
    let sender_ns = ns_of(&format!("/proc/{host_pid}/ns/net"))?;
    ensure!(
        sender_ns == ns_of(&format!("/run/netns/{}", net.name))?,
        "sender is not in {}",
        net.name
    );
    ensure!(
        sender_ns != ns_of("/proc/self/ns/net")?,
        "sender shares the host's network namespace"
    );

    sender.send_line("go")?;
    finish_sender(sender, COUNT)?;
    sink.finish(SIZE)?;
    let run = watch.finish()?;
    let pids = [host_pid, sink_pid];
    assert_totals(
        &run,
        host_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, true),
        "sender in netns",
        &pids,
    );
    assert_totals(
        &run,
        sink_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, false),
        "sink",
        &pids,
    );
    Ok(())
}

#[test]
fn two_processes_with_the_same_name_are_kept_apart() -> anyhow::Result<()> {
    const SIZE: u64 = 120;
    const FIRST: u64 = 100;
    const SECOND: u64 = 37;
    let net = TestNet::new()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let sink = Sink::start(None, IpAddr::V4(net.host_v4), FIRST + SECOND)?;
    let sink_pid = sink.pid;
    let (a, a_pid) = udp_send(Some(&net), sink.addr, FIRST, SIZE)?;
    let (b, b_pid) = udp_send(Some(&net), sink.addr, SECOND, SIZE)?;
    finish_sender(a, FIRST)?;
    finish_sender(b, SECOND)?;
    sink.finish(SIZE)?;
    let run = watch.finish()?;

    let pids = [a_pid, b_pid, sink_pid];
    assert_totals(
        &run,
        a_pid,
        udp_totals(FIRST, SIZE, UDP4_OVERHEAD, true),
        "first sender",
        &pids,
    );
    assert_totals(
        &run,
        b_pid,
        udp_totals(SECOND, SIZE, UDP4_OVERHEAD, true),
        "second sender",
        &pids,
    );
    let both = udp_totals(FIRST + SECOND, SIZE, UDP4_OVERHEAD, false);
    assert_totals(&run, sink_pid, both, "sink of both", &pids);
    for pid in [a_pid, b_pid] {
        let names = run.names(pid);
        assert!(
            names.len() == 1 && names.contains("kaipo-traffic"),
            "pid {pid} named {names:?}"
        );
    }
    Ok(())
}

#[test]
fn interface_counters_equal_the_kernels() -> anyhow::Result<()> {
    interface_counters_equal_the_kernels_with(None)
}

/// The same with XDP counting the incoming frames (driver mode on veth).
#[test]
fn interface_counters_equal_the_kernels_with_xdp() -> anyhow::Result<()> {
    interface_counters_equal_the_kernels_with(Some("xdp"))
}

/// The processes of [`udp_both_ways`].
struct BothWays {
    /// Sends from the namespace to `host_sink`.
    in_sender: u32,
    host_sink: u32,
    /// Sends from the host to `ns_sink`.
    out_sender: u32,
    ns_sink: u32,
}

/// `inbound` datagrams (count, payload bytes) from `net`'s namespace to a sink on the host and
/// `outbound` ones from the host to a sink in the namespace, all received before this returns.
fn udp_both_ways(
    net: &TestNet,
    (in_count, in_size): (u64, u64),
    (out_count, out_size): (u64, u64),
) -> anyhow::Result<BothWays> {
    let host_sink = Sink::start(None, IpAddr::V4(net.host_v4), in_count)?;
    let ns_sink = Sink::start(Some(net), IpAddr::V4(net.ns_v4), out_count)?;
    let (inbound, in_sender) = udp_send(Some(net), host_sink.addr, in_count, in_size)?;
    let (outbound, out_sender) = udp_send(None, ns_sink.addr, out_count, out_size)?;
    let pids = BothWays {
        in_sender,
        host_sink: host_sink.pid,
        out_sender,
        ns_sink: ns_sink.pid,
    };
    finish_sender(inbound, in_count)?;
    finish_sender(outbound, out_count)?;
    host_sink.finish(in_size)?;
    ns_sink.finish(out_size)?;
    Ok(pids)
}

/// What [`udp_both_ways`] puts on the host end of the link: Ethernet frames of IPv4 datagrams.
fn frames_both_ways((in_count, in_size): (u64, u64), (out_count, out_size): (u64, u64)) -> Totals {
    let frame = |size: u64| size + UDP4_OVERHEAD + ETHERNET_HEADER;
    Totals {
        rx_bytes: in_count * frame(in_size),
        rx_packets: in_count,
        tx_bytes: out_count * frame(out_size),
        tx_packets: out_count,
    }
}

/// The kernel's counters of a link in the shape of kaipo's figures.
fn link_totals(c: kaipo_tests::netns::LinkCounters) -> Totals {
    Totals {
        rx_bytes: c.rx_bytes,
        tx_bytes: c.tx_bytes,
        rx_packets: c.rx_packets,
        tx_packets: c.tx_packets,
    }
}

fn interface_counters_equal_the_kernels_with(
    ingress_hook: Option<&'static str>,
) -> anyhow::Result<()> {
    const IN_COUNT: u64 = 150;
    const IN_SIZE: u64 = 500;
    const OUT_COUNT: u64 = 80;
    const OUT_SIZE: u64 = 1000;
    // No IPv6 and static neighbours: the link carries nothing but the traffic below.
    let net = TestNet::without_ipv6()?;
    let before_attach = net.host_counters()?;
    let watch = Watch::start(&WatchConfig {
        ingress_hook,
        ..WatchConfig::new(&net.host_if, RUN)
    })?;
    // The hook asked for is the one in use: kaipo loads its XDP program only for `xdp`.
    const BPF_PROG_TYPE_XDP: u32 = 6;
    let holds_xdp = watch.held_program_types()?.contains(&BPF_PROG_TYPE_XDP);
    ensure!(
        holds_xdp == (ingress_hook == Some("xdp")),
        "kaipo holds an XDP program: {holds_xdp}, with --ingress-hook {ingress_hook:?}"
    );
    let after_first = net.host_counters()?;

    let (inbound, outbound) = ((IN_COUNT, IN_SIZE), (OUT_COUNT, OUT_SIZE));
    udp_both_ways(&net, inbound, outbound)?;
    let run = watch.finish()?;
    let end = net.host_counters()?;

    let kernel = end.since(&after_first);
    let expected = frames_both_ways(inbound, outbound);
    println!(
        "{}: kernel {kernel:?}, kaipo {:?}",
        net.host_if,
        run.interface(&net.host_if, 1)
    );
    if ingress_hook == Some("xdp") {
        // veth's driver-mode XDP path counts received bytes without the Ethernet header in the
        // interface statistics (rx here: 528 bytes a frame, where the frame has 542), so the
        // kernel's figure is no reference; what the test sent is.
        let kaipo = run.interface(&net.host_if, 0);
        assert_eq!(
            kaipo, expected,
            "{} with XDP: kaipo vs the frames the test sent",
            net.host_if
        );
        return Ok(());
    }
    // If this fails the window was not clean, and the comparison below would prove nothing.
    assert_eq!(
        link_totals(kernel),
        expected,
        "the kernel counted traffic the test did not send on {}",
        net.host_if
    );
    run.ensure_intervals(2)?;
    let per_interval: Vec<String> = run
        .records
        .iter()
        .flat_map(|r| r.interfaces.iter().filter(|i| i.name == net.host_if))
        .map(|i| {
            format!(
                "rx {}/{} tx {}/{}",
                i.rx_bytes, i.rx_packets, i.tx_bytes, i.tx_packets
            )
        })
        .collect();
    assert_eq!(
        run.interface(&net.host_if, 1),
        link_totals(kernel),
        "{} after the first record: kaipo vs /sys/class/net statistics; per interval: {per_interval:?}",
        net.host_if
    );
    // kaipo counts from attach, and nothing crossed the link before the test's traffic.
    assert_eq!(
        run.interface(&net.host_if, 0),
        link_totals(end.since(&before_attach)),
        "{} over the whole run; per interval: {per_interval:?}",
        net.host_if
    );
    Ok(())
}

/// With no interface named, flows are off by default (as with `--no-flows`): no kaipo program
/// on any interface, the interfaces' figures are the kernel's own counters from kaipo's start,
/// processes exact both ways, and no attributed share.
#[test]
fn without_flows_only_sockets_are_counted_and_interfaces_are_the_kernels() -> anyhow::Result<()> {
    const IN_COUNT: u64 = 120;
    const IN_SIZE: u64 = 400;
    const OUT_COUNT: u64 = 70;
    const OUT_SIZE: u64 = 900;
    const EARLIER: u64 = 10;
    let net = TestNet::without_ipv6()?;
    // Traffic before kaipo starts: in the kernel's counters, not in kaipo's figures.
    let earlier_sink = Sink::start(None, IpAddr::V4(net.host_v4), EARLIER)?;
    let (earlier, _) = udp_send(Some(&net), earlier_sink.addr, EARLIER, IN_SIZE)?;
    finish_sender(earlier, EARLIER)?;
    earlier_sink.finish(IN_SIZE)?;
    let before_start = net.host_counters()?;
    ensure!(
        before_start.rx_packets == EARLIER,
        "the link should have carried the {EARLIER} earlier datagrams only: {before_start:?}"
    );
    // No flag: the default with no interface named.
    let watch = Watch::start(&WatchConfig {
        ifaces: Vec::new(),
        ..WatchConfig::new(&net.host_if, RUN)
    })?;
    // 3: classifiers, 6: XDP. The socket programs are cgroup_skb (8) and cgroup_sock (9).
    const INTERFACE_PROGRAMS: [u32; 2] = [3, 6];
    let held = watch.held_program_types()?;
    ensure!(
        !held.iter().any(|t| INTERFACE_PROGRAMS.contains(t)) && held.contains(&8),
        "with no interface named kaipo should hold socket programs only; program types held: \
         {held:?}"
    );

    let (inbound, outbound) = ((IN_COUNT, IN_SIZE), (OUT_COUNT, OUT_SIZE));
    let p = udp_both_ways(&net, inbound, outbound)?;
    let run = watch.finish()?;
    let end = net.host_counters()?;

    let expected = frames_both_ways(inbound, outbound);
    // Nothing but the test's traffic crossed the link, or the comparison proves nothing.
    assert_eq!(
        link_totals(end.since(&before_start)),
        expected,
        "the kernel counted traffic the test did not send on {}",
        net.host_if
    );
    assert_eq!(
        run.interface(&net.host_if, 0),
        expected,
        "{}: kaipo's figures over the run against the frames sent",
        net.host_if
    );
    let pids = [p.in_sender, p.out_sender, p.host_sink, p.ns_sink];
    assert_totals(
        &run,
        p.in_sender,
        udp_totals(IN_COUNT, IN_SIZE, UDP4_OVERHEAD, true),
        "sender in the namespace",
        &pids,
    );
    assert_totals(
        &run,
        p.host_sink,
        udp_totals(IN_COUNT, IN_SIZE, UDP4_OVERHEAD, false),
        "sink on the host",
        &pids,
    );
    assert_totals(
        &run,
        p.out_sender,
        udp_totals(OUT_COUNT, OUT_SIZE, UDP4_OVERHEAD, true),
        "sender on the host",
        &pids,
    );
    assert_totals(
        &run,
        p.ns_sink,
        udp_totals(OUT_COUNT, OUT_SIZE, UDP4_OVERHEAD, false),
        "sink in the namespace",
        &pids,
    );
    let shares: Vec<Option<f64>> = run.records.iter().map(|r| r.attributed_ratio).collect();
    ensure!(
        shares.iter().all(Option::is_none),
        "no attributed share without flows, got {shares:?}"
    );
    Ok(())
}

#[test]
fn loopback_counted_only_with_include_loopback() -> anyhow::Result<()> {
    const COUNT: u64 = 100;
    const SIZE: u64 = 100;
    // Loopback of a namespace other than the host's: ifindex 1 there too. Each kaipo watches the
    // host end of its own pair. Both are stopped with SIGINT once the traffic is over: a fixed
    // `--duration` of the first could run out while the second is still loading its programs.
    const UNTIL_STOPPED: Duration = Duration::from_secs(120);
    let net = TestNet::new()?;
    let other = TestNet::new()?;
    let with = Watch::start(&WatchConfig {
        include_loopback: true,
        ..WatchConfig::new(&net.host_if, UNTIL_STOPPED)
    })?;
    let without = Watch::start(&WatchConfig::new(&other.host_if, UNTIL_STOPPED))?;
    let sink = Sink::start(Some(&net), "127.0.0.1".parse()?, COUNT)?;
    let sink_pid = sink.pid;
    let (sender, sender_pid) = udp_send(Some(&net), sink.addr, COUNT, SIZE)?;
    finish_sender(sender, COUNT)?;
    sink.finish(SIZE)?;
    let with = with.stop()?;
    let without = without.stop()?;

    let pids = [sender_pid, sink_pid];
    assert_totals(
        &with,
        sender_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, true),
        "loopback sender, included",
        &pids,
    );
    assert_totals(
        &with,
        sink_pid,
        udp_totals(COUNT, SIZE, UDP4_OVERHEAD, false),
        "loopback sink, included",
        &pids,
    );
    assert_totals(
        &without,
        sender_pid,
        Totals::default(),
        "loopback sender, excluded",
        &pids,
    );
    assert_totals(
        &without,
        sink_pid,
        Totals::default(),
        "loopback sink, excluded",
        &pids,
    );
    Ok(())
}

/// Runs `kaipo watch --json` to completion with these arguments and returns its records and
/// how long it ran.
fn watch_to_end(args: &[&str]) -> anyhow::Result<(Vec<serde_json::Value>, Duration)> {
    kaipo_tests::require_root()?;
    let started = Instant::now();
    let out = kaipo_tests::run(
        Command::new(kaipo_tests::kaipo_bin()?)
            .args(["watch", "--json"])
            .args(args),
    )?;
    let records = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .context("kaipo printed a line that is not JSON")?;
    Ok((records, started.elapsed()))
}

fn process_packets(record: &serde_json::Value, pid: u32) -> u64 {
    record["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["pid"] == pid)
        .map(|p| p["tx_packets"].as_u64().unwrap_or(0))
        .sum()
}

/// A steady sender that was running before kaipo started: the first interval holds only the
/// datagrams of its own length (it once held three times as many: everything since the
/// programs were attached), and `--duration` ends the run with a partial last interval.
#[test]
fn first_interval_starts_at_start_and_duration_ends_on_time() -> anyhow::Result<()> {
    const RATE: u64 = 1000;
    let net = TestNet::new()?;
    let mut receiver = Spawned::spawn(
        "udp-sink",
        traffic(
            Some(&net),
            &[
                "udp-sink",
                &format!("{}:0", net.ns_v4),
                &(RATE * 12).to_string(),
            ],
        ),
    )?;
    let _: u32 = receiver.expect_num("pid", STEP)?;
    let port: u16 = receiver.expect_num("port", STEP)?;
    let sink = SocketAddr::new(IpAddr::V4(net.ns_v4), port);
    let mut sender = Spawned::spawn(
        "udp-rate",
        traffic(
            None,
            &["udp-rate", &sink.to_string(), &RATE.to_string(), "12"],
        ),
    )?;
    let pid: u32 = sender.expect_num("pid", STEP)?;
    std::thread::sleep(Duration::from_millis(300));

    let (records, _) = watch_to_end(&[
        "--iface",
        &net.host_if,
        "--interval",
        "1s",
        "--duration",
        "2500ms",
    ])?;
    let lengths: Vec<u64> = records
        .iter()
        .map(|r| r["interval_ms"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        records.len(),
        3,
        "two whole intervals and a partial one: {lengths:?}"
    );
    assert!(
        (450..=600).contains(&lengths[2]),
        "the last interval is the 500 ms left: {lengths:?}"
    );
    for (i, record) in records.iter().enumerate() {
        let packets = process_packets(record, pid);
        let expected = RATE * lengths[i] / 1000;
        assert!(
            packets.abs_diff(expected) <= expected / 20 + 5,
            "interval {i} of {} ms: {packets} datagrams, expected about {expected} at {RATE}/s",
            lengths[i]
        );
    }

    // An interval longer than the run: one interval, as long as the run.
    let (records, _) = watch_to_end(&[
        "--iface",
        &net.host_if,
        "--interval",
        "5s",
        "--duration",
        "2s",
    ])?;
    assert_eq!(records.len(), 1);
    let length = records[0]["interval_ms"].as_u64().unwrap_or(0);
    assert!(
        (1950..=2150).contains(&length),
        "one 2 s interval, got {length} ms"
    );
    let packets = process_packets(&records[0], pid);
    assert!(
        packets.abs_diff(2 * RATE) <= 2 * RATE / 20,
        "{packets} datagrams in 2 s"
    );
    sender.interrupt()?;
    receiver.interrupt()?;
    let _ = sender.wait(STEP);
    let _ = receiver.wait(STEP);
    Ok(())
}

/// `--filter` is a libpcap capture filter: where eBPF runs it is refused, not ignored.
#[test]
fn a_pcap_only_flag_is_refused_where_ebpf_runs() -> anyhow::Result<()> {
    kaipo_tests::require_root()?;
    let out = Command::new(kaipo_tests::kaipo_bin()?)
        .args(["watch", "--json", "--duration", "1s", "--filter", "udp"])
        .output()?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--filter is for the pcap backend only"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    Ok(())
}

/// Inside `ip netns exec`, which remounts /sys and hides cgroup v2, kaipo mounts cgroup v2 for
/// itself and keeps the eBPF backend: a sender in that namespace is counted exactly.
#[test]
fn ebpf_runs_inside_ip_netns_exec() -> anyhow::Result<()> {
    const COUNT: u64 = 50;
    const SIZE: u64 = 200;
    let net = TestNet::new()?;
    let sink = Sink::start(None, IpAddr::V4(net.host_v4), COUNT)?;
    let mut watch = Spawned::spawn("kaipo watch in netns", {
        let mut cmd = net.command(kaipo_tests::kaipo_bin()?);
        cmd.args(["watch", "--json", "--interval", "500ms", "--duration", "4s"]);
        cmd
    })?;
    let first: serde_json::Value =
        serde_json::from_str(&watch.next_line(Duration::from_secs(30))?)?;
    assert_eq!(first["backend"], "ebpf", "{first}");
    let (sender, sender_pid) = udp_send(Some(&net), sink.addr, COUNT, SIZE)?;
    finish_sender(sender, COUNT)?;
    sink.finish(SIZE)?;
    let mut sent = 0;
    for line in
        std::iter::once(first.to_string()).chain(watch.rest_of_output(Duration::from_secs(15))?)
    {
        let record: serde_json::Value = serde_json::from_str(&line)?;
        assert_eq!(record["backend"], "ebpf");
        for p in record["processes"].as_array().into_iter().flatten() {
            if p["pid"] == sender_pid {
                sent += p["tx_bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    assert_eq!(sent, COUNT * (SIZE + UDP4_OVERHEAD));
    watch.wait_success(STEP)?;
    Ok(())
}
