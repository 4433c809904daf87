//! End to end: the handshake of an accepted TCP connection counts for the process that accepts
//! it, and each TCP socket says which end of its connection it is and what state it was in.
//!
//! On the server side the kernel runs the socket programs for a connection's SYN, SYN-ACK and
//! final ACK with the listening socket, not the accepted one. A listener created before kaipo
//! started never shows its owner (it only calls `accept`), so before kaipo moved those packets
//! to the accepted socket they ended up unattributed.
//!
//! The server is this test process itself (one test in this file, so nothing else runs in it),
//! its listener made before kaipo starts; the clients are `kaipo-traffic tcp-send` processes
//! in the test namespace, one after the other. Needs root and `cargo build --bins`.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    thread,
    time::Duration,
};

use anyhow::{bail, ensure, Context as _};
use kaipo_tests::{
    child::Spawned,
    netns::TestNet,
    tcp,
    watch::{Run, Totals, Watch, WatchConfig},
};

const TRAFFIC: &str = env!("CARGO_BIN_EXE_kaipo-traffic");
const STEP: Duration = Duration::from_secs(10);
const RUN: Duration = Duration::from_secs(4);
const CONNECTIONS: u64 = 5;
/// Payload each client sends, and each gets back; both fit one segment.
const UP: u64 = 1000;
const DOWN: u64 = 300;
/// TCP header of every segment after the handshake's first two: Linux puts the timestamp
/// option (12 bytes with its two NOPs) on each, and no SACK blocks: the test namespaces turn SACK
/// off (see `TestNet`), so a segment sent again leaves no duplicate-SACK block on the acks.
const TCP_HEADER: u64 = 20 + 12;
/// The SYN and the SYN-ACK carry MSS (4), two NOPs (SACK-permitted's place) and timestamps (12),
/// NOP and window scale (4): 60 bytes, 8 more than a later segment.
const SYN_EXTRA: u64 = 8;

/// Accepts `CONNECTIONS` connections one at a time: reads `UP` bytes, writes `DOWN`, waits for
/// the client to close, closes. Returns the payload bytes the kernel sent on them,
/// retransmissions included.
fn serve(listener: &TcpListener) -> anyhow::Result<u64> {
    let mut sent = 0;
    for i in 0..CONNECTIONS {
        wait_readable(listener).with_context(|| format!("waiting for connection {i}"))?;
        let (mut stream, _) = listener.accept().context("accept")?;
        stream.set_read_timeout(Some(STEP))?;
        stream.set_write_timeout(Some(STEP))?;
        let mut got = vec![0_u8; UP as usize];
        stream.read_exact(&mut got).context("reading the request")?;
        stream
            .write_all(&vec![0x6b_u8; DOWN as usize])
            .context("writing the reply")?;
        let mut rest = [0_u8; 64];
        let extra = stream.read(&mut rest).context("waiting for the close")?;
        ensure!(extra == 0, "connection {i}: {extra} bytes past the request");
        // The client's FIN acked the reply: nothing more of it can be sent again.
        let (bytes, retransmitted) = tcp::payload_sent(&stream)?;
        tcp::check_sent(bytes, retransmitted, DOWN)?;
        sent += bytes;
    }
    Ok(sent)
}

/// `accept` has no timeout in std; poll gives it one.
fn wait_readable(listener: &TcpListener) -> anyhow::Result<()> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, STEP.as_millis() as libc::c_int) };
    match rc {
        1.. => Ok(()),
        0 => bail!("timed out after {STEP:?}"),
        _ => Err(std::io::Error::last_os_error()).context("poll"),
    }
}

/// A listener on the host's end of the test link, on a port the port heuristics would call the
/// client's: inside the ephemeral range and above every client port, so only the kernel's word
/// on which end is the server names the service right.
fn listen(ip: IpAddr) -> anyhow::Result<TcpListener> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("reading the ephemeral port range")?;
    let top: u16 = range
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .context("ip_local_port_range")?;
    let mut last_err = None;
    for port in (top - 20..=top).rev() {
        match TcpListener::bind(SocketAddr::new(ip, port)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.expect("tried at least one port")).context("binding near the top of the range")
}

fn sum(run: &Run, pids: &[u32]) -> Totals {
    let mut t = Totals::default();
    for pid in pids {
        let p = run.process(*pid);
        t.rx_bytes += p.rx_bytes;
        t.tx_bytes += p.tx_bytes;
        t.rx_packets += p.rx_packets;
        t.tx_packets += p.tx_packets;
    }
    t
}

/// `(service, state)` of `pid`'s connections in the last record that shows each of them.
fn last_seen(run: &Run, pid: u32) -> Vec<(String, String, Option<String>)> {
    let mut last: std::collections::BTreeMap<(String, String), (String, Option<String>)> =
        std::collections::BTreeMap::new();
    for c in run
        .records
        .iter()
        .flat_map(|r| &r.connections)
        .filter(|c| c.pid == pid)
    {
        last.insert(
            (c.local.clone(), c.remote.clone()),
            (c.service.clone(), c.state.clone()),
        );
    }
    last.into_iter()
        .map(|((local, remote), (service, state))| (format!("{local} -> {remote}"), service, state))
        .collect()
}

/// IPv4 first, then IPv6, one after the other: the server is this process.
#[test]
fn accepted_connections_count_their_handshake_for_the_accepting_process() -> anyhow::Result<()> {
    let net = TestNet::new()?;
    accepted_connections(&net, IpAddr::V4(net.host_v4), 20).context("over IPv4")?;
    let host_v6 = net.host_v6.context("test net without IPv6")?;
    accepted_connections(&net, IpAddr::V6(host_v6), 40).context("over IPv6")
}

/// The scenario with the server at `ip`, whose IP header is `ip_header` bytes.
fn accepted_connections(net: &TestNet, ip: IpAddr, ip_header: u64) -> anyhow::Result<()> {
    let segment_headers = ip_header + TCP_HEADER;
    // Made before kaipo starts: no creation hook sees it, and it never sends or receives.
    let listener = listen(ip)?;
    let addr = listener.local_addr()?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, RUN))?;
    let server = thread::spawn(move || serve(&listener));

    let mut clients = Vec::new();
    let mut clients_sent = 0;
    for _ in 0..CONNECTIONS {
        let mut cmd = net.command(TRAFFIC);
        cmd.args([
            "tcp-send",
            &addr.to_string(),
            &UP.to_string(),
            &DOWN.to_string(),
        ]);
        let mut client = Spawned::spawn("tcp-send", cmd)?;
        clients.push(client.expect_num::<u32>("pid", STEP)?);
        clients_sent += tcp::expect_sent(&mut client, UP, STEP)?;
        client.expect("done", STEP)?;
        client.wait_success(STEP)?;
    }
    let server_sent = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    let run = watch.finish()?;

    let server_pid = std::process::id();
    let server = run.process(server_pid);
    let client = sum(&run, &clients);
    let mut pids = clients.clone();
    pids.push(server_pid);
    println!("server (pid {server_pid}): {server:?}");
    println!("clients {clients:?}: {client:?}");
    let timeline = run.timeline(&pids);

    // Every packet one end sends, the other receives: the server's figures are the clients'
    // mirrored, its SYN, final ACK and SYN-ACK included.
    let mirrored = Totals {
        rx_bytes: client.tx_bytes,
        tx_bytes: client.rx_bytes,
        rx_packets: client.tx_packets,
        tx_packets: client.rx_packets,
    };
    ensure!(
        server == mirrored,
        "the server's traffic {server:?} should mirror the clients' {mirrored:?}; \
         timeline:{timeline}"
    );
    // And in absolute terms: each packet's headers, each SYN's options, each payload (a
    // segment sent again counts again).
    let n = CONNECTIONS;
    ensure!(
        server.rx_packets >= 4 * n && server.tx_packets >= 3 * n,
        "at least SYN, ACK, request and FIN in, SYN-ACK, reply and FIN out per connection: \
         {server:?}"
    );
    let want_rx = segment_headers * server.rx_packets + clients_sent + n * SYN_EXTRA;
    ensure!(
        server.rx_bytes == want_rx,
        "server rx {} bytes, expected {want_rx}: {} packets of {segment_headers} header bytes, \
         {clients_sent} payload bytes the clients sent ({n} requests of {UP}), {n} SYNs; \
         timeline:{timeline}",
        server.rx_bytes,
        server.rx_packets
    );
    let want_tx = segment_headers * server.tx_packets + server_sent + n * SYN_EXTRA;
    ensure!(
        server.tx_bytes == want_tx,
        "server tx {} bytes, expected {want_tx}: {} packets of {segment_headers} header bytes, \
         {server_sent} payload bytes it sent ({n} replies of {DOWN}), {n} SYN-ACKs; \
         timeline:{timeline}",
        server.tx_bytes,
        server.tx_packets
    );
    let (unattributed_rx, unattributed_tx) = run.records.iter().fold((0, 0), |(rx, tx), r| {
        (rx + r.unattributed.rx_bytes, tx + r.unattributed.tx_bytes)
    });
    ensure!(
        (unattributed_rx, unattributed_tx) == (0, 0),
        "nothing should be left unattributed, got rx {unattributed_rx} tx {unattributed_tx}; \
         timeline:{timeline}"
    );

    // Both ends name the service by the listener's port, which only the kernel's flags tell
    // apart from the clients' ports, and show the state of their last packet: the server's
    // child got the client's ACK of its FIN in LAST_ACK, each client sent that ACK in
    // FIN_WAIT2.
    let service = format!("tcp/{}", addr.port());
    let server_conns = last_seen(&run, server_pid);
    ensure!(
        server_conns.len() == CONNECTIONS as usize,
        "{CONNECTIONS} server connections expected, got {server_conns:?}"
    );
    for (conn, got_service, state) in &server_conns {
        ensure!(
            *got_service == service && state.as_deref() == Some("LAST_ACK"),
            "server {conn}: service {got_service}, state {state:?}; expected {service}, \
             LAST_ACK"
        );
    }
    for pid in &clients {
        let conns = last_seen(&run, *pid);
        ensure!(
            conns.len() == 1,
            "client {pid}: one connection, got {conns:?}"
        );
        let (conn, got_service, state) = &conns[0];
        ensure!(
            *got_service == service && state.as_deref() == Some("FIN_WAIT2"),
            "client {conn}: service {got_service}, state {state:?}; expected {service}, \
             FIN_WAIT2"
        );
    }
    Ok(())
}
