//! The pcap collector end to end: real traffic from a process in a network namespace over a veth
//! pair, captured on the host end, compared with exact figures: link-layer bytes per interface,
//! IP-layer bytes per socket, and the owner events that tie sockets to this test's process;
//! and loopback traffic between two of this process's sockets, captured on `lo`.
//!
//! Needs root (packet capture, network namespaces); fails, never skips, without it. Tests run
//! one after another. The traffic's senders are this test binary started again inside the
//! namespace with KAIPO_PCAP_TEST_ROLE set, which runs only `child_role`.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{mpsc, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use kaipo::collect::{
    pcap::{self, PcapCollector, PcapEvents},
    Event, IfaceCounters, KernelSample, SockStats,
};
use kaipo_common::{EVENT_SOCK_OWNER, FAMILY_IPV4, PROTO_TCP, PROTO_UDP};

const ROLE: &str = "KAIPO_PCAP_TEST_ROLE";
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests capture packets and build network namespaces: run them as root"
    );
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace joined to the host by a veth pair with one /30 in 10.213.250.0/24, IPv6 off and
/// permanent neighbour entries, so that nothing but the test's own traffic crosses the link.
struct TestNet {
    ns: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

impl TestNet {
    fn new(n: u8) -> TestNet {
        let pid = std::process::id();
        let net = TestNet {
            ns: format!("kpcap-{pid}-{n}"),
            host_if: format!("kp{pid}h{n}"),
            host_ip: Ipv4Addr::UNSPECIFIED,
            ns_ip: Ipv4Addr::UNSPECIFIED,
        };
        // From here on, drop removes whatever was made.
        net.set_up(n)
    }

    fn set_up(mut self, n: u8) -> TestNet {
        let (host_mac, ns_mac) = (
            format!("02:6b:70:00:{n:02x}:01"),
            format!("02:6b:70:00:{n:02x}:02"),
        );
        run(Command::new("ip").args(["netns", "add", &self.ns]));
        run(Command::new("ip")
            .args([
                "link",
                "add",
                &self.host_if,
                "address",
                &host_mac,
                "type",
                "veth",
            ])
            .args(["peer", "name", "kp0", "address", &ns_mac, "netns", &self.ns]));
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", self.host_if),
            "1",
        )
        .expect("disabling IPv6 on the host end");
        run(self
            .command("sh")
            .args(["-c", "echo 1 > /proc/sys/net/ipv6/conf/kp0/disable_ipv6"]));
        let base = free_block();
        (self.host_ip, self.ns_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let cidr = |ip: Ipv4Addr| format!("{ip}/30");
        run(Command::new("ip").args(["addr", "add", &cidr(self.host_ip), "dev", &self.host_if]));
        run(Command::new("ip").args([
            "-n",
            &self.ns,
            "addr",
            "add",
            &cidr(self.ns_ip),
            "dev",
            "kp0",
        ]));
        let (ns_ip, host_ip) = (self.ns_ip.to_string(), self.host_ip.to_string());
        run(Command::new("ip")
            .args(["neigh", "replace", &ns_ip, "lladdr", &ns_mac])
            .args(["dev", &self.host_if, "nud", "permanent"]));
        run(Command::new("ip")
            .args(["-n", &self.ns, "neigh", "replace", &host_ip])
            .args(["lladdr", &host_mac, "dev", "kp0", "nud", "permanent"]));
        run(Command::new("ip").args(["link", "set", "dev", &self.host_if, "up"]));
        run(Command::new("ip").args(["-n", &self.ns, "link", "set", "dev", "kp0", "up"]));
        run(Command::new("ip").args(["-n", &self.ns, "link", "set", "dev", "lo", "up"]));
        self
    }

    /// `program` run inside the namespace; `ip netns exec` execs in place, keeping the pid.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd
    }

    fn kernel_counters(&self) -> IfaceCounters {
        let read = |f: &str| -> u64 {
            std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{f}", self.host_if))
                .expect("interface statistics")
                .trim()
                .parse()
                .expect("a number")
        };
        IfaceCounters {
            rx_bytes: read("rx_bytes"),
            rx_packets: read("rx_packets"),
            tx_bytes: read("tx_bytes"),
            tx_packets: read("tx_packets"),
            ..IfaceCounters::default()
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the host end takes its peer along; then the namespace.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// The first /30 of 10.213.250.0/24 no interface uses (other test suites use 10.213.0.0/16 too).
fn free_block() -> u32 {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let base = u32::from(Ipv4Addr::new(10, 213, 250, 0));
    (0..64)
        .map(|i| base + i * 4)
        .find(|b| !used.contains(&format!(" {}/", Ipv4Addr::from(b + 1))))
        .expect("a free /30 in 10.213.250.0/24")
}

/// The inode of a socket this process holds, which the pcap backend uses as its cookie.
fn inode_of(fd: &impl AsRawFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("fd link");
    let text = link.to_string_lossy();
    text.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap_or_else(|_| panic!("not a socket: {text}"))
}

/// Samples until `done` holds for the sample and every event so far, for at most 10 s.
fn sample_until(
    collector: &mut PcapCollector,
    events: &mut PcapEvents,
    seen: &mut Vec<Event>,
    done: impl Fn(&KernelSample, &[Event]) -> bool,
) -> KernelSample {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sample = collector.sample().expect("a sample");
        events.drain(seen);
        if done(&sample, seen) {
            return sample;
        }
        assert!(
            Instant::now() < deadline,
            "waited 10 s; last sample: {sample:#?}, events: {seen:#?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn socket(sample: &KernelSample, cookie: u64) -> Option<SockStats> {
    sample
        .sockets
        .iter()
        .find(|(c, _)| *c == cookie)
        .map(|(_, s)| *s)
}

fn owner_events(events: &[Event], cookie: u64) -> Vec<Event> {
    events
        .iter()
        .filter(|e| e.kind == EVENT_SOCK_OWNER && e.cookie == cookie)
        .copied()
        .collect()
}

fn my_comm() -> Vec<u8> {
    std::fs::read_to_string("/proc/self/comm")
        .expect("comm")
        .trim_end()
        .as_bytes()
        .to_vec()
}

fn start(net: &TestNet) -> (PcapCollector, PcapEvents) {
    start_with(net, false)
}

/// Starts the collector on the test's host end, in libpcap's immediate mode or not.
fn start_with(net: &TestNet, immediate: bool) -> (PcapCollector, PcapEvents) {
    pcap::start(&pcap::Options {
        ifaces: vec![net.host_if.clone()],
        immediate,
        ..pcap::Options::default()
    })
    .expect("the pcap collector starts")
}

/// A child of this test binary inside the namespace, playing `role`; reports on stdout.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(net: &TestNet, role: &str, env: &[(&str, String)]) -> Peer {
        let me = std::env::current_exe().expect("the test binary");
        let mut cmd = net.command(me.to_str().expect("a UTF-8 path"));
        cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting the child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// Waits for the child's "KAIPO-SENT" line.
    fn sent(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the child reported in 20 s");
            if line.contains("KAIPO-SENT") {
                return;
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("writing to the child");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

const DATAGRAMS: u64 = 50;
const PAYLOAD: u64 = 300;

#[test]
fn udp_datagrams_count_on_the_interface_and_on_the_receiving_socket() {
    udp_datagrams_count(false);
}

/// The same with `--pcap-immediate`: each frame handed over as it arrives.
#[test]
fn udp_datagrams_count_in_immediate_mode_too() {
    udp_datagrams_count(true);
}

fn udp_datagrams_count(immediate: bool) {
    let _serial = serial();
    let net = TestNet::new(0);
    let receiver = UdpSocket::bind((net.host_ip, 0)).expect("binding the receiver");
    let port = receiver.local_addr().expect("address").port();
    let cookie = inode_of(&receiver);
    let kernel_before = net.kernel_counters();
    let (mut collector, mut events) = start_with(&net, immediate);
    assert_eq!(collector.interfaces()[0].name, net.host_if);

    let dest = SocketAddr::from((net.host_ip, port));
    let sender = Peer::spawn(
        &net,
        "udp-sender",
        &[
            ("KAIPO_TEST_DEST", dest.to_string()),
            ("KAIPO_TEST_COUNT", DATAGRAMS.to_string()),
            ("KAIPO_TEST_SIZE", PAYLOAD.to_string()),
        ],
    );
    sender.sent();
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        assert_eq!(receiver.recv(&mut buf).expect("a datagram") as u64, PAYLOAD);
    }

    let mut seen = Vec::new();
    let sample = sample_until(&mut collector, &mut events, &mut seen, |s, seen| {
        s.ifaces[0].1.rx_packets >= DATAGRAMS && !owner_events(seen, cookie).is_empty()
    });
    drop(sender);

    // The interface: every frame, link-layer bytes, nothing sent, as the kernel counts them.
    let iface = sample.ifaces[0].1;
    assert_eq!(iface.rx_packets, DATAGRAMS);
    assert_eq!(iface.rx_bytes, DATAGRAMS * (PAYLOAD + 42));
    assert_eq!(
        (
            iface.tx_packets,
            iface.rx_non_ip_bytes,
            iface.rx_malformed_bytes
        ),
        (0, 0, 0)
    );
    let kernel = net.kernel_counters();
    assert_eq!(
        (
            kernel.rx_bytes - kernel_before.rx_bytes,
            kernel.rx_packets - kernel_before.rx_packets
        ),
        (iface.rx_bytes, iface.rx_packets),
        "the kernel's own counters agree"
    );

    // The receiving socket: IP-layer bytes, its endpoints.
    let stats = socket(&sample, cookie).expect("the receiver's socket is counted");
    assert_eq!(stats.rx_bytes, DATAGRAMS * (PAYLOAD + 28));
    assert_eq!(
        (stats.rx_packets, stats.tx_bytes, stats.lo_rx_bytes),
        (DATAGRAMS, 0, 0)
    );
    assert_eq!((stats.family, stats.proto), (FAMILY_IPV4, PROTO_UDP));
    assert_eq!(stats.local_port, port);
    assert_eq!(stats.local_addr[..4], net.host_ip.octets());
    assert_eq!(stats.remote_addr[..4], net.ns_ip.octets());
    assert!(
        socket(&sample, pcap::UNATTRIBUTED_COOKIE).is_none(),
        "nothing unattributed: {sample:#?}"
    );

    // Its owner: this process, once.
    let owners = owner_events(&seen, cookie);
    assert_eq!(owners.len(), 1, "{owners:#?}");
    assert_eq!(owners[0].tgid, std::process::id());
    // SAFETY: getuid has no preconditions.
    assert_eq!(owners[0].uid, unsafe { libc::getuid() });
    let comm = my_comm();
    assert_eq!(&owners[0].comm[..comm.len()], &comm[..]);
    assert_eq!(collector.pcap_drops(), pcap::PcapDrops::default());
}

#[test]
fn loopback_datagrams_count_as_sent_by_one_socket_and_received_by_the_other() {
    let _serial = serial();
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("binding the receiver");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("binding the sender");
    sender
        .connect(receiver.local_addr().expect("address"))
        .expect("connecting");
    let (rx_cookie, tx_cookie) = (inode_of(&receiver), inode_of(&sender));
    let (mut collector, mut events) = pcap::start(&pcap::Options {
        ifaces: vec!["lo".into()],
        ..pcap::Options::default()
    })
    .expect("capturing on lo");
    let payload = vec![0x6b; PAYLOAD as usize];
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        sender.send(&payload).expect("sending");
        assert_eq!(receiver.recv(&mut buf).expect("a datagram") as u64, PAYLOAD);
    }
    let mut seen = Vec::new();
    let sample = sample_until(&mut collector, &mut events, &mut seen, |s, seen| {
        socket(s, rx_cookie).is_some_and(|st| st.lo_rx_packets >= DATAGRAMS)
            && socket(s, tx_cookie).is_some_and(|st| st.lo_tx_packets >= DATAGRAMS)
            && !owner_events(seen, rx_cookie).is_empty()
            && !owner_events(seen, tx_cookie).is_empty()
    });
    // Other tests may use loopback at the same time: only these two sockets' figures are exact.
    let ip_bytes = DATAGRAMS * (PAYLOAD + 28);
    let rx = socket(&sample, rx_cookie).expect("the receiver");
    let tx = socket(&sample, tx_cookie).expect("the sender");
    assert_eq!((rx.lo_rx_bytes, rx.lo_rx_packets), (ip_bytes, DATAGRAMS));
    assert_eq!((tx.lo_tx_bytes, tx.lo_tx_packets), (ip_bytes, DATAGRAMS));
    assert_eq!((rx.lo_tx_bytes, tx.lo_rx_bytes), (0, 0));
    assert_eq!(
        (rx.rx_bytes, rx.tx_bytes, tx.rx_bytes, tx.tx_bytes),
        (0, 0, 0, 0),
        "loopback stays out of the network fields"
    );
    let lo = sample.ifaces[0].1;
    assert!(lo.rx_packets >= DATAGRAMS);
    assert_eq!(
        (lo.rx_packets, lo.rx_bytes),
        (lo.tx_packets, lo.tx_bytes),
        "each loopback frame is sent and received"
    );
    for cookie in [rx_cookie, tx_cookie] {
        let owners = owner_events(&seen, cookie);
        assert_eq!(owners.len(), 1, "{owners:#?}");
        assert_eq!(owners[0].tgid, std::process::id());
    }
}

const TCP_ROUND: u64 = 256 * 1024;

#[test]
fn a_long_lived_tcp_connection_is_attributed_to_its_process() {
    let _serial = serial();
    let net = TestNet::new(1);
    let listener = TcpListener::bind((net.host_ip, 0)).expect("listening");
    let port = listener.local_addr().expect("address").port();
    let (mut collector, mut events) = start(&net);

    let dest = SocketAddr::from((net.host_ip, port));
    let mut client = Peer::spawn(
        &net,
        "tcp-client",
        &[
            ("KAIPO_TEST_DEST", dest.to_string()),
            ("KAIPO_TEST_BYTES", TCP_ROUND.to_string()),
        ],
    );
    let (mut stream, peer) = listener.accept().expect("accepting");
    assert_eq!(peer.ip(), net.ns_ip);
    let cookie = inode_of(&stream);
    let mut buf = vec![0u8; TCP_ROUND as usize];
    stream.read_exact(&mut buf).expect("the first round");
    client.sent();

    let mut seen = Vec::new();
    // Every frame on the link belongs to this connection (no ARP, no IPv6), so the socket's
    // IP-layer bytes are the interface's link-layer bytes less 14 per frame, both ways.
    let settled = |s: &KernelSample, received: u64| {
        let iface = s.ifaces[0].1;
        socket(s, cookie).is_some_and(|st| {
            st.rx_bytes >= received
                && st.rx_bytes == iface.rx_bytes - 14 * iface.rx_packets
                && st.tx_bytes == iface.tx_bytes - 14 * iface.tx_packets
        })
    };
    let first = sample_until(&mut collector, &mut events, &mut seen, |s, seen| {
        settled(s, TCP_ROUND) && !owner_events(seen, cookie).is_empty()
    });
    let one = socket(&first, cookie).expect("the accepted socket");
    let iface = first.ifaces[0].1;
    assert_eq!(
        (one.rx_packets, one.tx_packets),
        (iface.rx_packets, iface.tx_packets)
    );
    assert!(one.tx_packets > 0, "acknowledgements are sent");
    assert_eq!(
        (one.family, one.proto, one.local_port),
        (FAMILY_IPV4, PROTO_TCP, port)
    );
    assert_eq!(one.remote_port, peer.port());
    assert_eq!(one.flags, 0, "a connected socket has one peer");

    // A second round on the same connection: same socket, totals grow, no new owner.
    client.say("more");
    stream.read_exact(&mut buf).expect("the second round");
    client.sent();
    let second = sample_until(&mut collector, &mut events, &mut seen, |s, _| {
        settled(s, 2 * TCP_ROUND) && s.ifaces[0].1.rx_packets > iface.rx_packets
    });
    let two = socket(&second, cookie).expect("still the accepted socket");
    assert!(two.rx_bytes >= one.rx_bytes + TCP_ROUND);
    assert!(
        socket(&second, pcap::UNATTRIBUTED_COOKIE).is_none(),
        "nothing unattributed: {second:#?}"
    );
    let owners = owner_events(&seen, cookie);
    assert_eq!(owners.len(), 1, "{owners:#?}");
    assert_eq!(owners[0].tgid, std::process::id());
    drop(client);
    drop(stream);
}

/// Not a test of its own: the entry point of the child processes above.
#[test]
fn child_role() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    match std::env::var(ROLE).as_deref() {
        Ok("udp-sender") => {
            let dest: SocketAddr = var("KAIPO_TEST_DEST").parse().expect("an address");
            let count: u64 = var("KAIPO_TEST_COUNT").parse().expect("a count");
            let size: usize = var("KAIPO_TEST_SIZE").parse().expect("a size");
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("binding");
            let payload = vec![0x6b; size];
            for _ in 0..count {
                socket.send_to(&payload, dest).expect("sending");
            }
            println!("KAIPO-SENT");
        }
        Ok("tcp-client") => {
            let dest: SocketAddr = var("KAIPO_TEST_DEST").parse().expect("an address");
            let bytes: usize = var("KAIPO_TEST_BYTES").parse().expect("a size");
            let mut stream = TcpStream::connect(dest).expect("connecting");
            let chunk = vec![0x6b; bytes];
            let mut stdin = std::io::stdin().lock();
            let mut line = String::new();
            loop {
                stream.write_all(&chunk).expect("sending");
                println!("KAIPO-SENT");
                line.clear();
                // One more round per line; EOF ends the connection.
                if stdin.read_line(&mut line).expect("stdin") == 0 {
                    break;
                }
            }
        }
        Ok(other) => panic!("unknown {ROLE} {other}"),
        Err(_) => {}
    }
}
