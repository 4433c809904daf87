//! Traffic generator for kaipo's end-to-end tests: sends and receives exactly the bytes a test
//! asks for and reports what the test needs (`pid N`, `port N`, `ready`, ...) one per line on
//! stdout, so the test can compute the figures kaipo must show.
//!
//! Every blocking call has a timeout: a generator that hangs would hang the test.

use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams sent back to back before a short pause. A veth with an XDP program queues received
/// frames in a 256-slot ring and drops the rest silently; pausing lets its NAPI poll drain it,
/// so every datagram a test counts also reaches the sink.
const BURST: u32 = 8;
const BURST_PAUSE: Duration = Duration::from_millis(1);

const USAGE: &str = "usage: kaipo-traffic
  udp-send  ADDR:PORT COUNT SIZE      send COUNT datagrams of SIZE payload bytes
  udp-sink  ADDR:PORT COUNT [hold]    receive COUNT datagrams, then exit (port 0: any); with
                                      `hold`, keep the socket until a stdin line comes
  udp-fork  ADDR:PORT COUNT SIZE      connect, print `ready`, wait for a stdin line, then fork a
                                      child that prints `child PID`, sends and exits
  udp-wait  ADDR:PORT COUNT SIZE      connect, print `ready`, wait for a stdin line, then send
  udp-burst ADDR:PORT COUNT SIZE      send and exit at once, printing nothing
  udp-rate  ADDR:PORT RATE SECONDS    send RATE 100-byte datagrams a second for SECONDS (at most 60)
  tcp-serve ADDR:PORT BYTES_IN BYTES_OUT [WAIT_MS]
                                      accept one connection, read, wait WAIT_MS (0), write,
                                      wait for close
  tcp-send  ADDR:PORT BYTES_OUT BYTES_IN  connect, write, read, close
                                      both print `sent BYTES RETRANSMITTED`: the payload bytes
                                      the kernel sent, retransmissions included, once no more
                                      can be retransmitted";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kaipo-traffic: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| args.get(i).map(String::as_str).context(USAGE);
    let addr = || -> anyhow::Result<SocketAddr> {
        arg(1)?
            .parse()
            .with_context(|| format!("bad address {:?}", args[1]))
    };
    let num = |i: usize| -> anyhow::Result<u64> {
        arg(i)?
            .parse()
            .with_context(|| format!("bad number {:?}", args[i]))
    };
    match arg(0)? {
        "udp-send" => {
            println!("pid {}", std::process::id());
            let socket = udp_connect(addr()?)?;
            let count = num(2)? as u32;
            udp_send(&socket, count, num(3)? as usize)?;
            println!("sent {count}");
        }
        "udp-burst" => {
            let socket = udp_connect(addr()?)?;
            udp_send(&socket, num(2)? as u32, num(3)? as usize)?;
        }
        "udp-wait" => {
            let socket = udp_ready(addr()?)?;
            let count = num(2)? as u32;
            udp_send(&socket, count, num(3)? as usize)?;
            println!("sent {count}");
        }
        "udp-rate" => {
            println!("pid {}", std::process::id());
            let socket = udp_connect(addr()?)?;
            let rate = num(2)?.clamp(1, 100_000);
            let secs = num(3)?.min(60);
            let start = std::time::Instant::now();
            let payload = [0x6b_u8; 100];
            let mut sent = 0u64;
            while sent < rate * secs {
                // On schedule: datagram n leaves at n / rate seconds after the start.
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                socket.send(&payload).context("send")?;
                sent += 1;
            }
            println!("sent {sent}");
        }
        "udp-sink" => udp_sink(addr()?, num(2)?, arg(3).is_ok_and(|a| a == "hold"))?,
        "udp-fork" => {
            let socket = udp_ready(addr()?)?;
            let count = num(2)? as u32;
            let size = num(3)? as usize;
            // This program has one thread, so the child may do anything after the fork.
            // SAFETY: fork in a single-threaded process; the child only sends and exits.
            match unsafe { libc::fork() } {
                0 => {
                    println!("child {}", std::process::id());
                    let code = match udp_send(&socket, count, size) {
                        Ok(()) => {
                            println!("sent {count}");
                            0
                        }
                        Err(e) => {
                            eprintln!("kaipo-traffic child: {e:#}");
                            1
                        }
                    };
                    // SAFETY: ends the child without running the parent's exit handlers.
                    unsafe { libc::_exit(code) };
                }
                child if child > 0 => {
                    let mut status = 0;
                    // SAFETY: waiting for the child just forked, with a valid out-pointer.
                    if unsafe { libc::waitpid(child, &raw mut status, 0) } != child
                        || !libc::WIFEXITED(status)
                        || libc::WEXITSTATUS(status) != 0
                    {
                        bail!("the sending child failed (status {status})");
                    }
                }
                _ => return Err(std::io::Error::last_os_error()).context("fork"),
            }
        }
        "tcp-serve" => {
            let wait = match args.get(4) {
                Some(_) => Duration::from_millis(num(4)?),
                None => Duration::ZERO,
            };
            tcp_serve(addr()?, num(2)?, num(3)?, wait)?;
        }
        "tcp-send" => {
            println!("pid {}", std::process::id());
            let mut stream = TcpStream::connect_timeout(&addr()?, IO_TIMEOUT).context("connect")?;
            set_timeouts(&stream)?;
            write_exactly(&mut stream, num(2)?)?;
            read_exactly(&mut stream, num(3)?)?;
            // The server wrote only after reading everything, so the segments just read acked
            // all this end wrote: nothing of it can be sent again.
            print_sent(&stream)?;
            println!("done");
        }
        other => bail!("unknown mode {other:?}\n{USAGE}"),
    }
    Ok(())
}

/// Prints its pid, connects a UDP socket to `to`, prints `ready` and waits for a stdin line: a
/// socket made before the test lets it go.
fn udp_ready(to: SocketAddr) -> anyhow::Result<UdpSocket> {
    println!("pid {}", std::process::id());
    let socket = udp_connect(to)?;
    println!("ready");
    wait_for_line()?;
    Ok(socket)
}

fn wait_for_line() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the go line")?;
    Ok(())
}

fn udp_connect(to: SocketAddr) -> anyhow::Result<UdpSocket> {
    let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
    let socket = UdpSocket::bind(any).context("bind")?;
    socket
        .connect(to)
        .with_context(|| format!("connect {to}"))?;
    Ok(socket)
}

fn udp_send(socket: &UdpSocket, count: u32, size: usize) -> anyhow::Result<()> {
    let payload = vec![0x6b_u8; size];
    for i in 0..count {
        let sent = socket
            .send(&payload)
            .with_context(|| format!("send datagram {i}"))?;
        if sent != size {
            bail!("datagram {i}: sent {sent} of {size} bytes");
        }
        if (i + 1) % BURST == 0 {
            std::thread::sleep(BURST_PAUSE);
        }
    }
    Ok(())
}

/// Receives `count` datagrams; with `hold`, keeps the socket open until a stdin line comes.
fn udp_sink(addr: SocketAddr, count: u64, hold: bool) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("bind {addr}"))?;
    force_receive_buffer(&socket, 8 << 20)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    println!("pid {}", std::process::id());
    println!("port {}", socket.local_addr()?.port());
    let mut buf = vec![0_u8; 65536];
    let mut bytes = 0;
    for i in 0..count {
        let n = socket
            .recv(&mut buf)
            .with_context(|| format!("received {i} of {count} datagrams"))?;
        bytes += n;
    }
    println!("received {count} {bytes}");
    if hold {
        wait_for_line()?;
    }
    drop(socket);
    Ok(())
}

fn tcp_serve(
    addr: SocketAddr,
    bytes_in: u64,
    bytes_out: u64,
    wait: Duration,
) -> anyhow::Result<()> {
    if wait > IO_TIMEOUT {
        bail!("a wait of {wait:?} is longer than the peer's {IO_TIMEOUT:?} timeout");
    }
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    println!("pid {}", std::process::id());
    println!("port {}", listener.local_addr()?.port());
    wait_readable(&listener, IO_TIMEOUT).context("waiting for a connection")?;
    let (mut stream, _) = listener.accept().context("accept")?;
    set_timeouts(&stream)?;
    read_exactly(&mut stream, bytes_in)?;
    std::thread::sleep(wait);
    write_exactly(&mut stream, bytes_out)?;
    let mut rest = [0_u8; 4096];
    let extra = stream
        .read(&mut rest)
        .context("waiting for the peer to close")?;
    if extra != 0 {
        bail!("{extra} bytes more than the {bytes_in} expected");
    }
    // The peer's FIN came after it read everything, and acked it all.
    print_sent(&stream)?;
    println!("done");
    Ok(())
}

/// Prints `sent BYTES RETRANSMITTED`: see [`kaipo_tests::tcp::payload_sent`].
fn print_sent(stream: &TcpStream) -> anyhow::Result<()> {
    let (sent, retransmitted) = kaipo_tests::tcp::payload_sent(stream)?;
    println!("sent {sent} {retransmitted}");
    Ok(())
}

/// `accept` has no timeout in std; poll gives it one.
fn wait_readable(fd: &impl std::os::fd::AsRawFd, timeout: Duration) -> anyhow::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, timeout.as_millis() as libc::c_int) };
    match rc {
        1.. => Ok(()),
        0 => bail!("timed out after {timeout:?}"),
        _ => Err(std::io::Error::last_os_error()).context("poll"),
    }
}

fn set_timeouts(stream: &TcpStream) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(())
}

fn write_exactly(stream: &mut TcpStream, mut n: u64) -> anyhow::Result<()> {
    let chunk = vec![0x6b_u8; 64 * 1024];
    while n > 0 {
        let len = chunk.len().min(n as usize);
        stream.write_all(&chunk[..len]).context("write")?;
        n -= len as u64;
    }
    stream.flush().context("flush")
}

fn read_exactly(stream: &mut TcpStream, n: u64) -> anyhow::Result<()> {
    let got = std::io::copy(&mut (&mut *stream).take(n), &mut std::io::sink()).context("read")?;
    if got != n {
        bail!("peer closed after {got} of {n} bytes");
    }
    Ok(())
}

/// A burst of datagrams can outrun a sink with the default buffer (about 200 kB of skb
/// truesize); a dropped datagram would make the sink's count wrong for reasons not kaipo's.
fn force_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: a valid socket fd and a pointer to a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const bytes).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVBUFFORCE (needs root)");
    }
    Ok(())
}
