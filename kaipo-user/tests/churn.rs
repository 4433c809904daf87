//! Socket churn cannot leak the kernel's socket map.
//!
//! Tens of thousands of short-lived sockets are opened, used once and closed through a ring
//! buffer of one page, so nearly every close event is dropped. Their entries must still leave
//! the socket map once quiet (the release hook marks them closed in the map itself), and a
//! sender that starts afterwards must be counted to the byte, with no socket left out for want
//! of room.
//!
//! Needs root. Traffic stays on loopback; the engine is the library's own, run interval by
//! interval without sleeps (closing an interval is what ages a closed socket).

use std::{
    collections::HashSet,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap, Map, MapData};
use kaipo::{
    collect::backend::{BackendChoice, StartOptions},
    engine::{accounting::CLOSED_QUIET_INTERVALS, Engine, EngineOptions, SWEEP_IDLE_INTERVALS},
    model::IntervalRecord,
};
use kaipo_common::{SockSlot, SockStats, FAMILY_IPV4, PROTO_UDP};

/// Socket map capacity for the run: fewer than the sockets churned, so entries that stayed
/// behind would fill it.
const MAX_SOCKETS: u32 = 32_768;
const ROUNDS: usize = 12;
const PER_ROUND: usize = 4_000;
/// The sender that comes after the churn.
const DATAGRAMS: u64 = 2_000;
const PAYLOAD: usize = 100;
/// IPv4 and UDP headers: the socket programs count from the IP header on.
const HEADERS: u64 = 28;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs and needs root"
    );
}

/// The kernel's cookie of a socket, the key of its entry in the socket map.
fn cookie_of(socket: &UdpSocket) -> u64 {
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    assert_eq!(ret, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    cookie
}

/// One engine at a time: the sweep test finds the engine's map among this process's
/// descriptors by name, and every engine counts every socket of the host.
static ONE_ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A runtime for the engine's tasks, to be entered by the test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// An engine on the eBPF backend with `collect`'s other choices, loopback traffic counted.
fn ebpf_engine(collect: StartOptions) -> Engine {
    Engine::start(&EngineOptions {
        collect: StartOptions {
            backend: BackendChoice::Ebpf,
            ..collect
        },
        include_loopback: true,
        ..EngineOptions::default()
    })
    .expect("starting the eBPF collector")
}

fn close(engine: &mut Engine) -> IntervalRecord {
    engine
        .close(false, false)
        .expect("closing an interval")
        .record
}

#[test]
fn closed_sockets_leave_the_map_when_close_events_are_lost() {
    require_root();
    // Declared first, so released after the engine is gone.
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let _context = runtime.enter();
    let mut engine = ebpf_engine(StartOptions {
        max_sockets: Some(MAX_SOCKETS),
        // One page: room for about twenty events.
        ringbuf_bytes: Some(4096),
        ..StartOptions::default()
    });
    let pid = std::process::id();

    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let to: SocketAddr = receiver.local_addr().expect("receiver address");
    close(&mut engine);

    let started = Instant::now();
    let mut churned = HashSet::with_capacity(ROUNDS * PER_ROUND);
    let mut ringbuf_full = 0;
    let mut churn_tx = 0;
    let mut tx_of_this_process = |record: &IntervalRecord| {
        churn_tx += record
            .processes
            .iter()
            .filter(|p| p.pid == pid)
            .map(|p| p.tx_bytes)
            .sum::<u64>();
    };
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("churn socket");
            socket.send_to(&[0], to).expect("churn datagram");
            churned.insert(cookie_of(&socket));
        }
        let record = close(&mut engine);
        ringbuf_full += record.lost.ringbuf_full;
        tx_of_this_process(&record);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "churn took too long"
        );
    }
    assert_eq!(churned.len(), ROUNDS * PER_ROUND, "cookies are unique");
    // The point of the test: most close events found no room.
    assert!(
        ringbuf_full > (ROUNDS * PER_ROUND) as u64 / 2,
        "only {ringbuf_full} events were dropped"
    );

    // Quiet intervals retire the marked entries.
    for _ in 0..=CLOSED_QUIET_INTERVALS {
        let record = close(&mut engine);
        tx_of_this_process(&record);
    }
    // Every churned socket's owner reached userspace, through the ring buffer or, when it was
    // full, through the kernel's spill map: each one-byte datagram is this process's.
    assert_eq!(
        churn_tx,
        (ROUNDS * PER_ROUND) as u64 * (1 + HEADERS),
        "bytes of the churned sockets attributed to this process"
    );
    let left: Vec<u64> = engine
        .collector()
        .socket_cookies()
        .expect("eBPF keeps a socket map")
        .into_iter()
        .filter(|c| churned.contains(c))
        .collect();
    assert_eq!(
        left.len(),
        0,
        "closed sockets still in the map: {} of {}",
        left.len(),
        churned.len()
    );

    // A sender after the churn is counted exactly: every datagram out of it, and into the
    // receiver, both this process.
    let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
    for _ in 0..DATAGRAMS {
        sender.send_to(&[7; PAYLOAD], to).expect("datagram");
    }
    let expected = DATAGRAMS * (PAYLOAD as u64 + HEADERS);
    let (mut tx, mut rx, mut map_full) = (0, 0, 0);
    for _ in 0..3 {
        let record = close(&mut engine);
        map_full += record.lost.sock_map_full;
        if let Some(p) = record.processes.iter().find(|p| p.pid == pid) {
            tx += p.tx_bytes;
            rx += p.rx_bytes;
        }
    }
    assert_eq!(map_full, 0, "sockets found no room in the map");
    assert_eq!(tx, expected, "bytes sent");
    assert_eq!(rx, expected, "bytes received");
}

/// With fewer slots than sockets, the sockets past them count in the shared map, each byte
/// once; slots freed with the sockets they held are taken by the next ones.
#[test]
fn sockets_past_the_slots_count_in_the_shared_map_and_freed_slots_serve_again() {
    const SLOTS: u32 = 4;
    const FIRST: usize = 12;
    const SECOND: usize = 4;
    require_root();
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let _context = runtime.enter();
    let mut engine = ebpf_engine(StartOptions {
        socket_slots: Some(SLOTS),
        ..StartOptions::default()
    });
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let to: SocketAddr = receiver.local_addr().expect("receiver address");
    close(&mut engine);

    let first = senders_sending(FIRST, 3, to);
    let expected = FIRST as u64 * 3 * (PAYLOAD as u64 + HEADERS);
    assert_eq!(own(&mut engine, 2), (expected, expected), "first senders");
    let map = own_socket_map();
    let shared = first
        .iter()
        .filter(|s| map.get(&cookie_of(s), 0).is_ok())
        .count();
    assert!(
        shared >= FIRST - SLOTS as usize,
        "only {shared} of {FIRST} senders in the shared map with {SLOTS} slots"
    );
    assert!(shared < FIRST, "no sender took a slot");

    // Closed, quiet, forgotten: their slots are free again.
    drop(first);
    assert_eq!(
        own(&mut engine, CLOSED_QUIET_INTERVALS as usize + 2),
        (0, 0),
        "nothing more from the closed senders"
    );
    let second = senders_sending(SECOND, 2, to);
    let expected = SECOND as u64 * 2 * (PAYLOAD as u64 + HEADERS);
    assert_eq!(own(&mut engine, 2), (expected, expected), "second senders");
    let in_slots = second
        .iter()
        .filter(|s| map.get(&cookie_of(s), 0).is_err())
        .count();
    assert!(in_slots > 0, "no freed slot was taken again");
}

/// Without slots (a kernel that cannot map them), every socket counts in the shared map, to the
/// byte.
#[test]
fn without_slots_every_socket_counts_in_the_shared_map() {
    const SENDERS: usize = 5;
    require_root();
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let _context = runtime.enter();
    let mut engine = ebpf_engine(StartOptions {
        socket_slots: Some(0),
        ..StartOptions::default()
    });
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let to: SocketAddr = receiver.local_addr().expect("receiver address");
    close(&mut engine);
    let senders = senders_sending(SENDERS, 3, to);
    let expected = SENDERS as u64 * 3 * (PAYLOAD as u64 + HEADERS);
    assert_eq!(own(&mut engine, 2), (expected, expected));
    let map = own_socket_map();
    for socket in senders.iter().chain([&receiver]) {
        assert!(
            map.get(&cookie_of(socket), 0).is_ok(),
            "a socket missing from the shared map"
        );
    }
}

/// `n` new sockets, each of which has sent `datagrams` datagrams to `to`.
fn senders_sending(n: usize, datagrams: usize, to: SocketAddr) -> Vec<UdpSocket> {
    let senders: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("sender"))
        .collect();
    for socket in &senders {
        for _ in 0..datagrams {
            socket.send_to(&[5; PAYLOAD], to).expect("datagram");
        }
    }
    senders
}

/// This process's bytes sent and received over the next `intervals` intervals.
fn own(engine: &mut Engine, intervals: usize) -> (u64, u64) {
    let pid = std::process::id();
    let (mut tx, mut rx) = (0, 0);
    for _ in 0..intervals {
        let record = close(engine);
        if let Some(p) = record.processes.iter().find(|p| p.pid == pid) {
            tx += p.tx_bytes;
            rx += p.rx_bytes;
        }
    }
    (tx, rx)
}

/// This process's own socket map (the engine's), found among its descriptors by name.
fn own_socket_map() -> HashMap<MapData, u64, SockStats> {
    HashMap::try_from(Map::HashMap(own_map(kaipo_common::maps::SOCK_STATS)))
        .expect("a hash of socket stats")
}

/// One of this process's own kernel maps (the engine's), found among its descriptors by name.
fn own_map(name: &str) -> MapData {
    let fds = std::fs::read_dir("/proc/self/fdinfo").expect("fdinfo");
    for fd in fds.filter_map(Result::ok) {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(data) = MapData::from_id(id) else {
            continue;
        };
        let named = data
            .info()
            .ok()
            .and_then(|i| i.name_as_str().map(|n| n == name));
        if named == Some(true) {
            return data;
        }
    }
    panic!("the engine's map {name} is not among this process's descriptors");
}

/// Where `SOCK_HINTS` sends each socket of `sockets`: the slot's index, or None for no hint.
fn hints(sockets: &[&UdpSocket]) -> Vec<Option<u32>> {
    let hints: Array<MapData, u32> =
        Array::try_from(Map::Array(own_map(kaipo_common::maps::SOCK_HINTS))).expect("hints");
    sockets
        .iter()
        .map(|s| {
            let at = cookie_of(s) as u32 & (kaipo_common::SOCK_HINT_COUNT - 1);
            hints.get(&at, 0).expect("a hint").checked_sub(1)
        })
        .collect()
}

/// The cookie of the socket in slot `index` of `SOCK_SLOTS`.
fn slot_cookie(index: u32) -> u64 {
    // A slot as the words it is made of: its cookie is the first.
    const WORDS: usize = size_of::<SockSlot>() / 8;
    let slots: Array<MapData, [u64; WORDS]> =
        Array::try_from(Map::Array(own_map(kaipo_common::maps::SOCK_SLOTS))).expect("slots");
    slots.get(&index, 0).expect("a slot")[0]
}

#[test]
fn sockets_find_their_slots_by_cookie_and_without_the_direct_read_through_their_storage() {
    const SENDERS: usize = 6;
    require_root();
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let _context = runtime.enter();
    for direct in [true, false] {
        let mut engine = ebpf_engine(StartOptions {
            no_cookie_read: !direct,
            ..StartOptions::default()
        });
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
        let to: SocketAddr = receiver.local_addr().expect("receiver address");
        close(&mut engine);
        // The first datagram of each takes its slot; the other four find it by its hint, or
        // through the socket's storage.
        let senders = senders_sending(SENDERS, 5, to);
        let expected = SENDERS as u64 * 5 * (PAYLOAD as u64 + HEADERS);
        assert_eq!(
            own(&mut engine, 2),
            (expected, expected),
            "direct read {direct}"
        );
        let sockets: Vec<&UdpSocket> = senders.iter().chain([&receiver]).collect();
        for (socket, hint) in sockets.iter().zip(hints(&sockets)) {
            if direct {
                let index = hint.expect("a hint for each socket");
                assert_eq!(
                    slot_cookie(index),
                    cookie_of(socket),
                    "a hint to another slot"
                );
            } else {
                assert_eq!(hint, None, "a hint written without the direct read");
            }
        }
        drop(engine);
    }
}

#[test]
fn idle_entries_of_sockets_that_are_gone_are_swept() {
    require_root();
    // Declared first, so released after the engine is gone.
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let _context = runtime.enter();
    let mut engine = ebpf_engine(StartOptions::default());
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let kept = UdpSocket::bind("127.0.0.1:0").expect("a socket that stays open");
    kept.send_to(&[1; 10], receiver.local_addr().unwrap())
        .expect("datagram");
    let (kept_cookie, receiver_cookie) = (cookie_of(&kept), cookie_of(&receiver));
    // An entry that escaped every close mark: its cookie belongs to no socket (the kernel
    // hands cookies out counting up from 1, so it never reaches this one).
    let escaped = u64::MAX - 7;
    let mut map = own_socket_map();
    let stats = SockStats {
        lo_tx_bytes: 38,
        lo_tx_packets: 1,
        family: FAMILY_IPV4,
        proto: PROTO_UDP,
        ..SockStats::default()
    };
    map.insert(escaped, stats, 0).expect("inserting the entry");

    // Idle long enough; the engine's own sweep may or may not have run by then.
    for _ in 0..=SWEEP_IDLE_INTERVALS {
        close(&mut engine);
    }
    engine.sweep();
    let cookies: HashSet<u64> = engine
        .collector()
        .socket_cookies()
        .expect("eBPF keeps a socket map")
        .into_iter()
        .collect();
    assert!(!cookies.contains(&escaped), "the escaped entry was swept");
    assert!(
        cookies.contains(&kept_cookie) && cookies.contains(&receiver_cookie),
        "idle entries of live sockets stay"
    );
    // And nothing of the live sockets was dropped from the accounting: the next datagram
    // counts as only itself.
    kept.send_to(&[1; 10], receiver.local_addr().unwrap())
        .expect("datagram");
    let record = close(&mut engine);
    let me = record
        .processes
        .iter()
        .find(|p| p.pid == std::process::id())
        .expect("this process");
    assert_eq!((me.tx_bytes, me.rx_bytes), (38, 38));
}

#[test]
fn a_kernel_that_refuses_the_direct_cookie_read_gets_the_storage_path_and_counts_exactly() {
    use kaipo::collect::ebpf::{self, CookieRead};
    require_root();
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = runtime();
    let _context = runtime.enter();
    let Ok(real) = ebpf::running_kernel_cookie_read() else {
        // A kernel before 6.2 takes the storage path anyway (the other tests).
        return;
    };
    // The id of a struct where a function's belongs: the verifier refuses the call, as a
    // kernel that does not offer the function to these programs would.
    let refused = CookieRead {
        rdonly_cast: real.sock,
        ..real
    };
    let (mut collector, _events) = ebpf::start(&ebpf::Options {
        cookie_read_as: Some(refused),
        ..ebpf::Options::default()
    })
    .expect("starting with a refused direct read");
    let said = collector
        .degradations()
        .iter()
        .any(|d| d.what.contains("through the socket's own storage"));
    assert!(said, "no degradation: {:?}", collector.degradations());
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let to: SocketAddr = receiver.local_addr().expect("receiver address");
    let senders = senders_sending(1, 4, to);
    let sample = collector.sample().expect("a sample");
    let counted = |socket: &UdpSocket| {
        let cookie = cookie_of(socket);
        sample
            .sockets
            .iter()
            .filter(|(c, _)| *c == cookie)
            .map(|(_, s)| (s.lo_tx_bytes, s.lo_rx_bytes, s.lo_tx_packets))
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    };
    let datagrams = 4 * (PAYLOAD as u64 + HEADERS);
    assert_eq!(counted(&senders[0]), (datagrams, 0, 4));
    assert_eq!(counted(&receiver).1, datagrams);
    // Nothing was hinted: the programs never read a cookie themselves.
    assert_eq!(hints(&[&senders[0], &receiver]), vec![None, None]);
}
