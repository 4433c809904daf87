//! The collector benchmark's TCP loads, as hidden `xtask bench` subcommands run inside its
//! namespaces (next to the UDP ones in [`super::traffic`]): one bulk connection, and
//! request/response over many connections.
//!
//! The client side (bulk sender, request/response client) prints `connected` once its
//! connections are open, `done` when its timed window is over, and one JSON line with its exact
//! counts when it has closed everything; the server side prints `ready` once it listens and one
//! JSON line when it is done. Every loop is bounded in time.
//!
//! Both ends shut their sockets down for writing and wait for the other's FIN before closing,
//! so that every packet of a connection, its last ACKs included, is sent or received while the
//! process still holds the socket.

use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, RawFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::traffic::{pin_to_cpu, print_json, schedstat};

/// Bytes per `write`/`read` of the bulk load.
const BULK_CHUNK: usize = 256 * 1024;
/// How long the server side keeps its sockets after the client's FIN, for the last ACKs.
const LINGER: Duration = Duration::from_millis(200);
/// How long the client waits for the other side's FINs after its window.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, clap::Args)]
pub struct TcpBulkSendArgs {
    #[arg(long)]
    pub dst: SocketAddrV4,
    /// Length of the window, in seconds.
    #[arg(long)]
    pub secs: f64,
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct TcpServeArgs {
    #[arg(long)]
    pub bind: SocketAddrV4,
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Connections to accept (1 for the bulk receiver).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Request/response mode: answer each `request` bytes with `response` bytes; without it,
    /// read and count (bulk).
    #[arg(long)]
    pub request: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub response: usize,
    /// Stop after this long in any case.
    #[arg(long)]
    pub max_secs: f64,
}

#[derive(Clone, Debug, clap::Args)]
pub struct TcpRrArgs {
    #[arg(long)]
    pub dst: SocketAddrV4,
    #[arg(long)]
    pub conns: usize,
    #[arg(long)]
    pub secs: f64,
    #[arg(long, default_value_t = 64)]
    pub request: usize,
    #[arg(long, default_value_t = 64)]
    pub response: usize,
    #[arg(long)]
    pub cpu: Option<usize>,
}

fn say(word: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{word}")?;
    out.flush()?;
    Ok(())
}

/// Payload bytes the kernel sent again on `s` (`tcpi_bytes_retrans` of `TCP_INFO`), 0 where
/// the kernel's `tcp_info` is too short to hold it (before Linux 4.19).
fn bytes_retrans(s: &TcpStream) -> u64 {
    // Offset of `tcpi_bytes_retrans` in Linux's `struct tcp_info` (include/uapi/linux/tcp.h):
    // 8 bytes of u8 fields, 24 u32s, 4 u64s, 6 u32s, 4 u64s, 2 u32s, then `tcpi_bytes_sent`
    // and `tcpi_bytes_retrans`.
    const AT: usize = 208;
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf` and the length back to `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) < AT + 8 {
        return 0;
    }
    u64::from_ne_bytes(buf[AT..AT + 8].try_into().unwrap_or_default())
}

fn set_nodelay_nonblocking(s: &TcpStream) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(())
}

/// Reads until EOF or `until`, discarding; returns the bytes read.
fn drain_until_eof(s: &mut TcpStream, until: Instant) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; BULK_CHUNK];
    let mut total = 0u64;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading"),
        }
    }
    Ok(total)
}

/// One connection; writes `BULK_CHUNK`-byte buffers for `secs`, then shuts down and waits for
/// the receiver's FIN, which it sends once it has read everything. The window (and the rate)
/// runs from the first write to that FIN: every byte written in it was delivered in it.
pub fn tcp_bulk_send(args: &TcpBulkSendArgs) -> anyhow::Result<()> {
    pin_to_cpu(args.cpu)?;
    let mut s = TcpStream::connect(args.dst).context("connecting")?;
    // Lets the loop look at the clock at least every 100 ms even when the receiver stalls.
    s.set_write_timeout(Some(Duration::from_millis(100)))?;
    say("connected")?;
    let buf = vec![0x6bu8; BULK_CHUNK];
    let window = Duration::from_secs_f64(args.secs);
    let (on_cpu_before, waited_before) = schedstat();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < window {
        match s.write(&buf) {
            Ok(n) => sent += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("writing"),
        }
    }
    s.shutdown(Shutdown::Write)?;
    let stray = drain_until_eof(&mut s, Instant::now() + CLOSE_WAIT)?;
    let elapsed = start.elapsed();
    let (on_cpu, waited) = schedstat();
    say("done")?;
    let retrans = bytes_retrans(&s);
    drop(s);
    print_json(&serde_json::json!({
        "pid": std::process::id(),
        "retrans_bytes": retrans,
        "sent_bytes": sent,
        "received_bytes": stray,
        "elapsed_ns": elapsed.as_nanos() as u64,
        "on_cpu_ns": on_cpu - on_cpu_before,
        "run_delay_ns": waited - waited_before,
    }))
}

/// A minimal epoll set (level-triggered, readable only), closed on drop.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> anyhow::Result<Self> {
        // SAFETY: no pointers; the fd returned is ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("epoll_create1");
        }
        Ok(Self(fd))
    }

    fn add(&self, fd: RawFd, token: u64) -> anyhow::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` lives across the call; `fd` is open.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error()).context("epoll_ctl");
        }
        Ok(())
    }

    fn del(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL.
        unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Waits up to `timeout_ms`; returns the ready tokens in `out`.
    fn wait(&self, out: &mut Vec<u64>, timeout_ms: i32) -> anyhow::Result<()> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 256];
        // SAFETY: `evs` holds as many events as passed.
        let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), evs.len() as i32, timeout_ms) };
        out.clear();
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e).context("epoll_wait");
        }
        out.extend(evs[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Writes all of `buf` to a non-blocking socket whose send buffer has room for it (a small
/// message with at most one other in flight); spins briefly if it has not.
fn write_small(s: &mut TcpStream, buf: &[u8], until: Instant) -> anyhow::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match s.write(&buf[done..]) {
            Ok(n) => done += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                if Instant::now() > until {
                    bail!("a {}-byte write did not fit in time", buf.len());
                }
                std::thread::yield_now();
            }
            Err(e) => return Err(e).context("writing"),
        }
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard one (1,000 connections and a few more).
fn raise_nofile() -> anyhow::Result<u64> {
    // SAFETY: plain data in and out.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error()).context("getrlimit");
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error()).context("setrlimit");
    }
    Ok(lim.rlim_cur)
}

/// Pins this process to `cpu` and makes room for `conns` connections' files.
fn settle(cpu: Option<usize>, conns: usize) -> anyhow::Result<()> {
    pin_to_cpu(cpu)?;
    let nofile = raise_nofile()?;
    anyhow::ensure!(
        nofile > conns as u64 + 16,
        "{conns} connections need more than the {nofile} open files allowed"
    );
    Ok(())
}

/// The server side of both TCP loads: accepts `conns` connections; in bulk mode reads and
/// counts, in request/response mode answers each full request with one response. Done once
/// every connection it accepted has been closed by the client (and, for the last ACKs,
/// [`LINGER`] after that), or at `max_secs`.
pub fn tcp_serve(args: &TcpServeArgs) -> anyhow::Result<()> {
    settle(args.cpu, args.conns)?;
    let listener = TcpListener::bind(args.bind).context("binding")?;
    listener.set_nonblocking(true)?;
    let ep = Epoll::new()?;
    const LISTENER: u64 = u64::MAX;
    ep.add(listener.as_raw_fd(), LISTENER)?;
    say("ready")?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_secs);
    let response = vec![0x72u8; args.response];
    let mut buf = vec![
        0u8;
        if args.request.is_some() {
            4096
        } else {
            BULK_CHUNK
        }
    ];
    // Per connection: the stream, bytes of a partial request, closed by the client.
    let mut conns: Vec<(TcpStream, usize, bool)> = Vec::new();
    let (mut received, mut sent, mut transactions, mut closed) = (0u64, 0u64, 0u64, 0usize);
    let mut ready = Vec::new();
    while Instant::now() < deadline && !(conns.len() >= args.conns && closed == conns.len()) {
        ep.wait(&mut ready, 100)?;
        for &token in &ready {
            if token == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((s, _)) => {
                            set_nodelay_nonblocking(&s)?;
                            ep.add(s.as_raw_fd(), conns.len() as u64)?;
                            conns.push((s, 0, false));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e).context("accepting"),
                    }
                }
                continue;
            }
            let (s, partial, is_closed) = &mut conns[token as usize];
            match s.read(&mut buf) {
                Ok(0) => {
                    // The client's FIN: ours follows; the socket stays open until the end.
                    let _ = s.shutdown(Shutdown::Write);
                    ep.del(s.as_raw_fd());
                    *is_closed = true;
                    closed += 1;
                }
                Ok(n) => {
                    received += n as u64;
                    if let Some(request) = args.request {
                        *partial += n;
                        while *partial >= request {
                            *partial -= request;
                            write_small(s, &response, deadline)?;
                            sent += response.len() as u64;
                            transactions += 1;
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("reading"),
            }
        }
    }
    std::thread::sleep(LINGER);
    let (on_cpu, waited) = schedstat();
    let accepted = conns.len();
    let retrans: u64 = conns.iter().map(|(s, _, _)| bytes_retrans(s)).sum();
    drop(conns);
    print_json(&serde_json::json!({
        "pid": std::process::id(),
        "accepted": accepted,
        "retrans_bytes": retrans,
        "closed_by_client": closed,
        "received_bytes": received,
        "sent_bytes": sent,
        "transactions": transactions,
        "on_cpu_ns": on_cpu,
        "run_delay_ns": waited,
    }))
}

/// The request/response client: opens `conns` connections, then for `secs` keeps one
/// `request`-byte request in flight on each (the next one goes as soon as the `response`-byte
/// answer is in), then lets the requests in flight finish and closes everything.
pub fn tcp_rr(args: &TcpRrArgs) -> anyhow::Result<()> {
    settle(args.cpu, args.conns)?;
    let ep = Epoll::new()?;
    let mut conns = Vec::with_capacity(args.conns);
    let connect_by = Instant::now() + Duration::from_secs(30);
    for i in 0..args.conns {
        if Instant::now() > connect_by {
            bail!("only {i} of {} connections opened in 30 s", args.conns);
        }
        let s = TcpStream::connect_timeout(&args.dst.into(), Duration::from_secs(5))
            .with_context(|| format!("opening connection {i}"))?;
        set_nodelay_nonblocking(&s)?;
        ep.add(s.as_raw_fd(), i as u64)?;
        // Bytes of the response so far; whether a request is in flight.
        conns.push((s, 0usize, false));
    }
    say("connected")?;
    let request = vec![0x71u8; args.request];
    let mut buf = vec![0u8; 4096];
    let window = Duration::from_secs_f64(args.secs);
    let (on_cpu_before, waited_before) = schedstat();
    let start = Instant::now();
    let (end, hard_end) = (start + window, start + window + Duration::from_secs(10));
    let (mut sent, mut received, mut transactions, mut in_flight) = (0u64, 0u64, 0u64, 0usize);
    for (s, _, busy) in &mut conns {
        write_small(s, &request, hard_end)?;
        sent += request.len() as u64;
        *busy = true;
        in_flight += 1;
    }
    let mut ready = Vec::new();
    let mut last = start;
    while in_flight > 0 && Instant::now() < hard_end {
        ep.wait(&mut ready, 100)?;
        let now = Instant::now();
        for &token in &ready {
            let (s, got, busy) = &mut conns[token as usize];
            match s.read(&mut buf) {
                Ok(0) => bail!("the server closed connection {token}"),
                Ok(n) => {
                    received += n as u64;
                    *got += n;
                    if *got >= args.response && *busy {
                        *got -= args.response;
                        transactions += 1;
                        last = now;
                        if now < end {
                            write_small(s, &request, hard_end)?;
                            sent += request.len() as u64;
                        } else {
                            *busy = false;
                            in_flight -= 1;
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("reading"),
            }
        }
    }
    let elapsed = last - start;
    let (on_cpu, waited) = schedstat();
    say("done")?;
    // Close: our FIN, then the server's, each ACKed while both ends still hold their socket.
    for (s, _, _) in &conns {
        s.shutdown(Shutdown::Write)?;
    }
    let mut open = conns.len();
    let close_by = Instant::now() + CLOSE_WAIT;
    while open > 0 && Instant::now() < close_by {
        ep.wait(&mut ready, 100)?;
        for &token in &ready {
            let (s, _, _) = &mut conns[token as usize];
            match s.read(&mut buf) {
                Ok(0) => {
                    ep.del(s.as_raw_fd());
                    open -= 1;
                }
                Ok(n) => received += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("reading"),
            }
        }
    }
    let retrans: u64 = conns.iter().map(|(s, _, _)| bytes_retrans(s)).sum();
    drop(conns);
    print_json(&serde_json::json!({
        "pid": std::process::id(),
        "connections": args.conns,
        "retrans_bytes": retrans,
        "not_closed_by_server": open,
        "transactions": transactions,
        "in_flight_at_end": in_flight,
        "sent_bytes": sent,
        "received_bytes": received,
        "elapsed_ns": elapsed.as_nanos() as u64,
        "on_cpu_ns": on_cpu - on_cpu_before,
        "run_delay_ns": waited - waited_before,
    }))
}
