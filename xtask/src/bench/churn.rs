//! `cargo xtask bench churn`: the socket map under socket churn.
//!
//! 1. `kaipo watch` runs while this process opens, uses once and closes `--sockets` UDP sockets
//!    on loopback as fast as it can (bounded in time). Then a separate process (this binary's
//!    hidden `churn-send`) sends a known number of datagrams; kaipo must attribute them to it
//!    exactly. A few intervals later the socket map must hold none of the churned sockets.
//! 2. `kaipo daemon` runs while this process holds 100,000 and then 200,000 live sockets (each
//!    with one datagram sent, so each has an entry): the daemon's RSS and the wall time of
//!    `kaipo status`.
//!
//! Traffic stays on loopback; every socket and process made here is closed or waited for.

use std::{
    collections::HashSet,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use aya::maps::{HashMap, Map, MapData};
use kaipo_common::{maps, SockStats};

use super::{
    collector::{build_kaipo, emit, progress},
    kaipo::{self, Kaipo},
    pause,
};

/// Longest the churn may take; a slower machine churns fewer sockets and says so.
const CHURN_LIMIT: Duration = Duration::from_secs(240);
/// Datagrams and payload of the known sender.
const SENDER_DATAGRAMS: u64 = 2_000;
const SENDER_PAYLOAD: usize = 100;
/// IPv4 + UDP headers, counted by the socket programs.
const HEADERS: u64 = 28;
/// Live sockets per holding process, each on a local address of its own: below the
/// ephemeral port range (28,232 by default) and the descriptor limit a process may have here.
const PER_HOLDER: usize = 18_000;

#[derive(Clone, Debug, clap::Args)]
pub struct ChurnArgs {
    /// Short-lived sockets to open and close.
    #[arg(long, default_value_t = 1_000_000)]
    pub sockets: usize,
    /// Live-socket counts at which the daemon's RSS and `kaipo status` are measured.
    #[arg(long, value_delimiter = ',', default_value = "100000,200000")]
    pub live: Vec<usize>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ChurnSendArgs {
    #[arg(long)]
    pub to: SocketAddr,
    #[arg(long)]
    pub count: u64,
    #[arg(long)]
    pub size: usize,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ChurnHoldArgs {
    /// Where each socket sends its one datagram.
    #[arg(long)]
    pub to: SocketAddr,
    /// Sockets to hold, all bound to `addr`.
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub addr: Ipv4Addr,
}

/// Holds live sockets for `live_sockets` (a process may not be allowed more than about 20,000
/// descriptors): opens them, sends one datagram from each, says "ready" and keeps them until
/// its stdin closes.
pub fn churn_hold(args: &ChurnHoldArgs) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        let socket = UdpSocket::bind(SocketAddrV4::new(args.addr, 0))?;
        socket.send_to(&[0], args.to)?;
        held.push(socket);
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    drop(held);
    Ok(())
}

/// The known sender, in its own process so its pid carries only these bytes.
pub fn churn_send(args: &ChurnSendArgs) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let payload = vec![7u8; args.size];
    for _ in 0..args.count {
        socket.send_to(&payload, args.to)?;
    }
    Ok(())
}

pub fn run(args: &ChurnArgs) -> anyhow::Result<()> {
    let bin = build_kaipo()?;
    emit(&format!(
        "## Socket churn\n\nMachine: {}, {} CPUs. Command: `cargo xtask bench churn --sockets {} \
         --live {}`.\n",
        kernel(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.sockets,
        args.live
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ));
    churn(&bin, args.sockets)?;
    live_sockets(&bin, &args.live)?;
    Ok(())
}

fn churn(bin: &Path, sockets: usize) -> anyhow::Result<()> {
    progress("churn: starting kaipo watch");
    let kaipo = Kaipo::start_with(
        bin,
        &[
            "--interval",
            "1s",
            "--backend",
            "ebpf",
            "--include-loopback",
        ],
    )?;
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    sink.set_nonblocking(true)?;
    let to = sink.local_addr()?;
    let mut cookies = HashSet::with_capacity(sockets);
    let started = Instant::now();
    let mut buf = [0u8; 64];
    progress(&format!("churn: {sockets} sockets"));
    while cookies.len() < sockets && started.elapsed() < CHURN_LIMIT {
        for _ in 0..1000 {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.send_to(&[0], to)?;
            cookies.insert(cookie_of(&socket)?);
        }
        // Keep the sink's queue short; what it drops was counted on the way in anyway.
        for _ in 0..2000 {
            if sink.recv_from(&mut buf).is_err() {
                break;
            }
        }
        super::check_interrupted()?;
    }
    let churn_time = started.elapsed();
    let peak_during = kaipo::status_kib(kaipo.pid, "VmHWM")?;

    progress("churn: the known sender");
    let sender = Command::new(std::env::current_exe()?)
        .args(["bench", "churn-send", "--to", &to.to_string()])
        .args(["--count", &SENDER_DATAGRAMS.to_string()])
        .args(["--size", &SENDER_PAYLOAD.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .context("starting the sender")?;
    let sender_pid = sender.id();
    wait_ok(sender)?;
    // Closed sockets retire after two quiet intervals; four leave a margin.
    pause(Duration::from_secs(4))?;
    let (entries, left) = socket_map(kaipo.pid, &cookies)?;
    let rss = kaipo::status_kib(kaipo.pid, "VmRSS")?;
    let (records, _) = kaipo.stop()?;

    let sent = kaipo::process_totals(&records, sender_pid);
    let expected = SENDER_DATAGRAMS * (SENDER_PAYLOAD as u64 + HEADERS);
    let (attributed, unattributed) = totals(&records);
    let lost = kaipo::lost_totals(&records);
    let lost_line = lost
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let share = 100.0 * unattributed as f64 / (attributed + unattributed).max(1) as f64;
    emit(&format!(
        "### Churn\n\n| figure | value | target |\n|---|---|---|\n\
         | sockets opened, used once, closed | {} in {:.1} s ({:.0}/s) | 1,000,000 |\n\
         | known sender after the churn, bytes sent | {} of {} ({}) | exact |\n\
         | churned sockets left in the socket map 4 s later | {} | 0 |\n\
         | socket map entries then (whole host) | {} | live count |\n\
         | unattributed share of socket bytes | {:.3} % ({} of {} B) | < 1 % ({}) |\n\
         | kaipo peak RSS during churn / RSS after | {:.1} / {:.1} MiB | < 128 MiB |\n\
         | lost counters | {} | |\n",
        cookies.len(),
        churn_time.as_secs_f64(),
        cookies.len() as f64 / churn_time.as_secs_f64(),
        sent.tx_bytes,
        expected,
        if sent.tx_bytes == expected {
            "met"
        } else {
            "missed"
        },
        left,
        entries,
        share,
        unattributed,
        attributed + unattributed,
        if share < 1.0 { "met" } else { "missed" },
        peak_during as f64 / 1024.0,
        rss as f64 / 1024.0,
        if lost_line.is_empty() {
            "none".into()
        } else {
            lost_line
        },
    ));
    Ok(())
}

fn live_sockets(bin: &Path, targets: &[usize]) -> anyhow::Result<()> {
    let scratch = tempfile_dir()?;
    let socket_path = scratch.join("kaipo.sock");
    progress("live sockets: starting kaipo daemon");
    let mut daemon = Command::new(bin)
        .arg("daemon")
        .arg("--db")
        .arg(scratch.join("kaipo.db"))
        .arg("--socket")
        .arg(&socket_path)
        .arg("--include-loopback")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting kaipo daemon")?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while status_time(bin, &socket_path).is_err() {
            ensure!(Instant::now() < deadline, "the daemon did not answer");
            ensure!(daemon.try_wait()?.is_none(), "the daemon exited");
            pause(Duration::from_millis(200))?;
        }
        let sink = server_socket()?;
        let to = sink.local_addr()?;
        let mut holders: Vec<Child> = Vec::new();
        let mut held = 0;
        let mut rows = String::from(
            "### Live sockets\n\n| live sockets held | kaipo daemon RSS | `kaipo status` \
             (median of 5) | targets |\n|---|---|---|---|\n",
        );
        for &target in targets {
            progress(&format!("live sockets: {target}"));
            while held < target {
                let count = PER_HOLDER.min(target - held);
                let addr = Ipv4Addr::new(127, 1, holders.len() as u8, 1);
                let mut holder = Command::new(std::env::current_exe()?)
                    .args(["bench", "churn-hold", "--to", &to.to_string()])
                    .args(["--count", &count.to_string(), "--addr", &addr.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting a holder of sockets")?;
                let mut line = String::new();
                let out = holder.stdout.take().context("holder's stdout")?;
                BufReader::new(out).read_line(&mut line)?;
                holders.push(holder);
                ensure!(line.trim() == "ready", "a holder of sockets failed");
                held += count;
                super::check_interrupted()?;
            }
            // Two intervals for the daemon to read them all.
            pause(Duration::from_secs(3))?;
            let rss = kaipo::status_kib(daemon.id(), "VmRSS")?;
            let mut times = (0..5)
                .map(|_| status_time(bin, &socket_path))
                .collect::<anyhow::Result<Vec<_>>>()?;
            times.sort();
            let median = times[2];
            rows.push_str(&format!(
                "| {} | {:.1} MiB | {:.0} ms | RSS < 128 MiB ({}), status < 200 ms ({}) |\n",
                target,
                rss as f64 / 1024.0,
                median.as_secs_f64() * 1000.0,
                if rss < 128 * 1024 { "met" } else { "missed" },
                if median < Duration::from_millis(200) {
                    "met"
                } else {
                    "missed"
                },
            ));
        }
        emit(&rows);
        for mut holder in holders {
            // Closing its stdin lets it go.
            drop(holder.stdin.take());
            holder.wait()?;
        }
        Ok(())
    })();
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while daemon.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The live sockets' peer: a server on a port below the ephemeral range, as a real service
/// is, so that the holders' traffic is named by it (`udp/20000`) and the daemon's history
/// keeps a row per holder, not one per socket as it would for two ephemeral ports, where the
/// lower port names the service. The benchmark measures what each live socket costs.
fn server_socket() -> anyhow::Result<UdpSocket> {
    (20_000..20_100)
        .find_map(|port| UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).ok())
        .context("no free UDP port in 20000-20099 on 127.0.0.1")
}

/// Wall time of one `kaipo status`.
fn status_time(bin: &Path, socket: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(bin)
        .arg("status")
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(out.success(), "kaipo status failed: {out}");
    Ok(started.elapsed())
}

/// Entries in kaipo's socket map, and how many of them are among `churned`.
fn socket_map(pid: u32, churned: &HashSet<u64>) -> anyhow::Result<(usize, usize)> {
    let held = kaipo::held_objects(pid)?;
    let map = held
        .maps
        .iter()
        .find(|m| m.name == maps::SOCK_STATS)
        .context("kaipo holds no socket map")?;
    let data = MapData::from_id(map.id).context("opening the socket map")?;
    let map: HashMap<_, u64, SockStats> = HashMap::try_from(Map::HashMap(data))?;
    let keys: Vec<u64> = map.keys().filter_map(Result::ok).collect();
    let left = keys.iter().filter(|k| churned.contains(k)).count();
    Ok((keys.len(), left))
}

/// Bytes of processes and bytes without an owner over all records (sockets' IP-layer bytes).
fn totals(records: &[serde_json::Value]) -> (u64, u64) {
    let get = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let mut attributed = 0;
    let mut unattributed = 0;
    for r in records {
        for p in r
            .get("processes")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            attributed += get(p, "rx_bytes").unwrap_or(0) + get(p, "tx_bytes").unwrap_or(0);
        }
        if let Some(u) = r.get("unattributed") {
            unattributed += get(u, "rx_bytes").unwrap_or(0) + get(u, "tx_bytes").unwrap_or(0);
        }
    }
    (attributed, unattributed)
}

fn cookie_of(socket: &UdpSocket) -> anyhow::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if ret != 0 {
        bail!("SO_COOKIE: {}", std::io::Error::last_os_error());
    }
    Ok(cookie)
}

fn wait_ok(mut child: Child) -> anyhow::Result<()> {
    let status = child.wait()?;
    ensure!(status.success(), "the sender failed: {status}");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kaipo-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "Linux".into())
}
