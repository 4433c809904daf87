//! The traffic the benchmark drives, as hidden `xtask bench` subcommands that it runs inside its
//! namespaces with `ip netns exec`: a `sendmmsg` flood, a `recvmmsg` counter, and a burst of
//! datagrams to many distinct ports. Each prints one JSON line on stdout when done.

use std::{
    io::{self, Write as _},
    mem,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// IPv4 and UDP headers: what an IP-layer count adds to each payload.
pub const IP_UDP_HEADERS: u64 = 28;
/// Ethernet header: what a link-layer count adds on top (no FCS, as the kernel counts).
pub const ETH_HEADER: u64 = 14;
/// UDP payload that makes a 64-byte Ethernet frame as the kernel counts it (14 + 20 + 8 + 22).
pub const PAYLOAD_64B_FRAME: usize = 22;
/// Datagrams per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;

#[derive(Clone, Debug, clap::Args)]
pub struct FloodSendArgs {
    /// Where to send; the socket is connected to it.
    #[arg(long)]
    pub dst: SocketAddrV4,
    /// How long to send, in seconds.
    #[arg(long)]
    pub secs: f64,
    #[arg(long, default_value_t = PAYLOAD_64B_FRAME)]
    pub payload: usize,
    /// Datagrams per second to aim for (by sleeping between batches); full speed without it.
    #[arg(long)]
    pub pps: Option<u64>,
    /// CPU to pin this process to.
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct FloodRecvArgs {
    #[arg(long)]
    pub bind: SocketAddrV4,
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Stop once nothing arrived for this long after the first datagram.
    #[arg(long, default_value_t = 500)]
    pub idle_ms: u64,
    /// Stop after this long in any case.
    #[arg(long)]
    pub max_secs: f64,
}

#[derive(Clone, Debug, clap::Args)]
pub struct FlowsSendArgs {
    /// Destination addresses; flow `i` goes to address `i % n`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub dst: Vec<Ipv4Addr>,
    /// Distinct flows (one datagram each).
    #[arg(long)]
    pub flows: u32,
    /// Destination ports per address, from `base_port` on; past `addresses * ports` flows a
    /// further socket (another source port) starts over.
    #[arg(long, default_value_t = 50_000)]
    pub ports: u32,
    #[arg(long, default_value_t = 10_000)]
    pub base_port: u16,
    #[arg(long, default_value_t = PAYLOAD_64B_FRAME)]
    pub payload: usize,
    #[arg(long)]
    pub cpu: Option<usize>,
}

pub fn pin_to_cpu(cpu: Option<usize>) -> anyhow::Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    // SAFETY: `cpu_set_t` is a plain bit set; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        bail!("CPU {cpu} is out of range");
    }
    // SAFETY: CPU_SET writes one bit of the set it is given; `cpu` was checked against its size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the set lives across the call and its size is passed along.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error()).context(format!("pinning to CPU {cpu}"));
    }
    Ok(())
}

pub(super) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

/// One `sendmmsg` batch over one payload buffer. The headers point into `iov` and, for
/// unconnected sockets, `addrs`; both are boxed so the pointers stay valid when `Self` moves.
struct Batch {
    hdrs: Vec<libc::mmsghdr>,
    _iov: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_in]>,
}

impl Batch {
    fn new(payload: &[u8], len: usize, with_addrs: bool) -> Self {
        let mut iov: Box<[libc::iovec]> = (0..len)
            .map(|_| libc::iovec {
                // The kernel only reads from it.
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            })
            .collect();
        // SAFETY: `sockaddr_in` is plain data; zero is a valid (unspecified) address.
        let mut addrs: Box<[libc::sockaddr_in]> =
            (0..len).map(|_| unsafe { mem::zeroed() }).collect();
        let hdrs = (0..len)
            .map(|i| {
                // SAFETY: `mmsghdr` is plain data; null pointers and zero lengths are valid.
                let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
                h.msg_hdr.msg_iov = &mut iov[i];
                h.msg_hdr.msg_iovlen = 1;
                if with_addrs {
                    h.msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                    h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                }
                h
            })
            .collect();
        Self {
            hdrs,
            _iov: iov,
            addrs,
        }
    }

    fn set_addr(&mut self, i: usize, addr: SocketAddrV4) {
        let a = &mut self.addrs[i];
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = addr.port().to_be();
        a.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    }

    /// Sends the first `count` messages; returns how many the kernel took.
    fn send(&mut self, socket: &UdpSocket, count: usize) -> io::Result<usize> {
        loop {
            // SAFETY: `hdrs` holds at least `count` headers whose buffers (the payload, `iov`,
            // `addrs`) outlive the call.
            let n = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), self.hdrs.as_mut_ptr(), count as u32, 0)
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// This thread's time on CPU and time spent runnable but waiting for a CPU, in ns
/// (`/proc/thread-self/schedstat`).
pub(super) fn schedstat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

pub fn flood_send(args: &FloodSendArgs) -> anyhow::Result<()> {
    pin_to_cpu(args.cpu)?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding the sender")?;
    socket.connect(args.dst).context("connecting the sender")?;
    let payload = vec![0x6bu8; args.payload];
    let mut batch = Batch::new(&payload, BATCH, false);
    let window = Duration::from_secs_f64(args.secs);
    let (mut sent, mut calls, mut errors) = (0u64, 0u64, 0u64);
    let (on_cpu_before, waited_before) = schedstat();
    let start = Instant::now();
    while start.elapsed() < window {
        match batch.send(&socket, BATCH) {
            Ok(n) => sent += n as u64,
            // A full device queue: try again, but count it.
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => errors += 1,
            Err(err) => return Err(err).context("sendmmsg"),
        }
        calls += 1;
        if let Some(pps) = args.pps {
            let due = start + Duration::from_secs_f64(sent as f64 / pps as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    let elapsed = start.elapsed();
    let (on_cpu, waited) = schedstat();
    print_json(&serde_json::json!({
        "pid": std::process::id(),
        "sent": sent,
        "calls": calls,
        "send_errors": errors,
        "elapsed_ns": elapsed.as_nanos() as u64,
        "on_cpu_ns": on_cpu - on_cpu_before,
        "run_delay_ns": waited - waited_before,
    }))
}

/// `RcvbufErrors` of the UDP line in `/proc/net/snmp`, which shows the namespace of the reader.
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    snmp_value(&snmp, "Udp", "RcvbufErrors")
}

/// Counter `name` of protocol `proto` (`Udp`, `Tcp`, ...) in the text of `/proc/net/snmp`: a
/// line of names, then a line of values, each starting with `<proto>:`.
pub fn snmp_value(snmp: &str, proto: &str, name: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

pub fn flood_recv(args: &FloodRecvArgs) -> anyhow::Result<()> {
    pin_to_cpu(args.cpu)?;
    let socket = UdpSocket::bind(args.bind).context("binding the receiver")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let rcvbuf: libc::c_int = 32 << 20;
    // SAFETY: a plain integer option of a socket we own. SO_RCVBUFFORCE lifts the rmem_max cap
    // (we run as root), so that a burst does not overflow the socket between two recvmmsg calls.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const rcvbuf).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("SO_RCVBUFFORCE");
    }
    let drops_before = udp_rcvbuf_errors();
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: `mmsghdr` is plain data; null pointers and zero lengths are valid.
            let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    {
        let mut out = io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let (idle, max) = (
        Duration::from_millis(args.idle_ms),
        Duration::from_secs_f64(args.max_secs),
    );
    let start = Instant::now();
    let (mut received, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = start;
    loop {
        // SAFETY: every header points at a live buffer of `bufs`; no timeout pointer (the
        // socket's receive timeout bounds the wait).
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let now = Instant::now();
        if n > 0 {
            received += n as u64;
            bytes += hdrs[..n as usize]
                .iter()
                .map(|h| u64::from(h.msg_len))
                .sum::<u64>();
            first.get_or_insert(now);
            last = now;
        } else {
            let err = io::Error::last_os_error();
            if !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                return Err(err).context("recvmmsg");
            }
        }
        if (first.is_some() && now - last >= idle) || now - start >= max {
            break;
        }
    }
    let dropped = match (drops_before, udp_rcvbuf_errors()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    print_json(&serde_json::json!({
        "pid": std::process::id(),
        "received": received,
        "payload_bytes": bytes,
        "first_to_last_ns": first.map_or(0, |f| (last - f).as_nanos() as u64),
        "rcvbuf_errors": dropped,
    }))
}

pub fn flows_send(args: &FlowsSendArgs) -> anyhow::Result<()> {
    pin_to_cpu(args.cpu)?;
    if args.dst.is_empty() || args.ports == 0 || u32::from(args.base_port) + args.ports > 65_536 {
        bail!("need at least one address and ports that fit in base_port..=65535");
    }
    let per_socket = args.dst.len() as u64 * u64::from(args.ports);
    let payload = vec![0x6bu8; args.payload];
    let mut batch = Batch::new(&payload, BATCH, true);
    let mut sockets = Vec::new();
    let (mut sent, mut errors) = (0u64, 0u64);
    let total = u64::from(args.flows);
    let mut i = 0u64;
    while i < total {
        let socket_index = (i / per_socket) as usize;
        if sockets.len() <= socket_index {
            sockets.push(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding")?);
        }
        // One batch never straddles two sockets.
        let end = total
            .min(i + BATCH as u64)
            .min((socket_index as u64 + 1) * per_socket);
        for (slot, flow) in (i..end).enumerate() {
            let within = flow % per_socket;
            let addr = args.dst[(within % args.dst.len() as u64) as usize];
            let port = u64::from(args.base_port) + within / args.dst.len() as u64;
            batch.set_addr(slot, SocketAddrV4::new(addr, port as u16));
        }
        let mut remaining = (end - i) as usize;
        while remaining > 0 {
            let taken = match batch.send(&sockets[socket_index], remaining) {
                Ok(n) => {
                    sent += n as u64;
                    n
                }
                // A full queue, or an ICMP error of an earlier datagram reported now: that
                // datagram is skipped and counted.
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::ENOBUFS | libc::ECONNREFUSED)) =>
                {
                    errors += 1;
                    1
                }
                Err(err) => return Err(err).context("sendmmsg"),
            };
            batch.addrs.copy_within(taken..remaining, 0);
            remaining -= taken;
        }
        i = end;
    }
    print_json(&serde_json::json!({
        "pid": std::process::id(),
        "sent": sent,
        "sockets": sockets.len(),
        "send_errors": errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_counters_by_protocol_and_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm ActiveOpens PassiveOpens OutSegs RetransSegs\n\
                    Tcp: 1 1000 3 123456 7\n\
                    Udp: InDatagrams RcvbufErrors\nUdp: 5 9\n\
                    UdpLite: InDatagrams RcvbufErrors\nUdpLite: 0 0\n";
        assert_eq!(snmp_value(snmp, "Tcp", "OutSegs"), Some(123_456));
        assert_eq!(snmp_value(snmp, "Tcp", "ActiveOpens"), Some(1000));
        assert_eq!(snmp_value(snmp, "Udp", "RcvbufErrors"), Some(9));
        assert_eq!(snmp_value(snmp, "UdpLite", "RcvbufErrors"), Some(0));
        assert_eq!(snmp_value(snmp, "Tcp", "InErrs"), None);
        assert_eq!(snmp_value(snmp, "Icmp", "InMsgs"), None);
    }
}
