//! Reverse DNS as a fallback name for remotes no DNS answer named: asked on a thread of its
//! own (the system resolver blocks), at most [`PER_SECOND`] lookups a second, each address
//! once (answers and failures cached, the cache bounded), so neither collecting nor drawing
//! ever waits for it. A name learnt from a DNS answer wins: the dashboard keeps it over one
//! from here.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::Duration,
};
#[cfg(unix)]
use std::{ffi::CStr, net::SocketAddr};

/// Lookups a second at most.
pub const PER_SECOND: u32 = 10;
/// Addresses waiting for a lookup at most; more are asked again later.
const QUEUE: usize = 256;
/// Addresses remembered at most (answered or not); past it the memory starts over.
const MAX_CACHED: usize = 16_384;

/// Lookups done, with their answer (`None`: the address has no name).
type Answers = Arc<Mutex<Vec<(IpAddr, Option<String>)>>>;

/// Resolves addresses by PTR lookups off the caller's thread.
pub struct ReverseNames {
    tx: SyncSender<IpAddr>,
    done: Answers,
    /// Asked or answered: never asked twice.
    seen: HashSet<IpAddr>,
    names: HashMap<IpAddr, String>,
}

impl ReverseNames {
    /// Starts the lookup thread, with `lookup` as the resolver (the system's in `system`).
    pub fn start(lookup: fn(IpAddr) -> Option<String>) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let done = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&done);
        std::thread::Builder::new()
            .name("kaipo-rdns".into())
            .spawn(move || worker(&rx, &sink, lookup))
            .ok();
        Self {
            tx,
            done,
            seen: HashSet::new(),
            names: HashMap::new(),
        }
    }

    /// The system resolver's lookups.
    #[cfg(unix)]
    pub fn system() -> Self {
        Self::start(lookup_ptr)
    }

    /// Asks for `ip` unless it was asked before; never blocks (a full queue asks next time).
    pub fn ask(&mut self, ip: IpAddr) {
        if ip.is_unspecified() || self.seen.contains(&ip) {
            return;
        }
        match self.tx.try_send(ip) {
            Ok(()) => {
                if self.seen.len() >= MAX_CACHED {
                    self.seen.clear();
                    self.names.clear();
                }
                self.seen.insert(ip);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    /// Names found since the last call.
    pub fn take_answers(&mut self) -> Vec<(IpAddr, String)> {
        let answers = std::mem::take(&mut *self.done.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::new();
        for (ip, name) in answers {
            if let Some(name) = name {
                self.names.insert(ip, name.clone());
                out.push((ip, name));
            }
        }
        out
    }

    /// The name found for `ip`, if any yet.
    pub fn name(&self, ip: &IpAddr) -> Option<&str> {
        self.names.get(ip).map(String::as_str)
    }
}

fn worker(
    rx: &Receiver<IpAddr>,
    done: &Mutex<Vec<(IpAddr, Option<String>)>>,
    lookup: fn(IpAddr) -> Option<String>,
) {
    let gap = Duration::from_secs(1) / PER_SECOND;
    while let Ok(ip) = rx.recv() {
        let started = std::time::Instant::now();
        let name = lookup(ip);
        done.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ip, name));
        if let Some(rest) = gap.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(unix)]
/// A PTR lookup through the system resolver (`getnameinfo` with `NI_NAMEREQD`): `None` when
/// the address has no name.
pub fn lookup_ptr(ip: IpAddr) -> Option<String> {
    let addr = socket2_like(ip);
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `addr` is a valid, fully initialised sockaddr of the given length, `host` a
    // writable buffer of the given length; no service is asked for.
    let rc = unsafe {
        libc::getnameinfo(
            addr.0.as_ptr().cast(),
            addr.1,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    let name = name.to_string_lossy().trim_end_matches('.').to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(unix)]
/// The address as raw `sockaddr_in`/`sockaddr_in6` bytes and their length.
fn socket2_like(ip: IpAddr) -> (Vec<u8>, libc::socklen_t) {
    match SocketAddr::new(ip, 0) {
        SocketAddr::V4(v4) => {
            // Zeroed, then filled: the struct has more fields on some systems (`sin_len`).
            // SAFETY: all-zero bytes are a valid sockaddr_in.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (as_bytes(&sa), size_of::<libc::sockaddr_in>() as _)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all-zero bytes are a valid sockaddr_in6.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr.s6_addr = v6.ip().octets();
            (as_bytes(&sa), size_of::<libc::sockaddr_in6>() as _)
        }
    }
}

#[cfg(unix)]
fn as_bytes<T>(value: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain C struct that lives for the call.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    static CALLS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

    fn fake(ip: IpAddr) -> Option<String> {
        CALLS.lock().unwrap().push(Instant::now());
        (ip.to_string() == "192.0.2.1").then(|| "one.example".to_owned())
    }

    #[test]
    fn answers_arrive_once_off_the_callers_thread_and_at_a_bounded_rate() {
        let mut r = ReverseNames::start(fake);
        let ips: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let start = Instant::now();
        for ip in &ips {
            r.ask(*ip);
            r.ask(*ip);
        }
        // Asking never waits for the lookups.
        assert!(start.elapsed() < Duration::from_millis(50));
        while CALLS.lock().unwrap().len() < 3 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(20));
        let calls = CALLS.lock().unwrap().clone();
        // Each address once, 10 a second at most.
        assert_eq!(calls.len(), 3);
        assert!(
            calls[2] - calls[0] >= Duration::from_millis(190),
            "{calls:?}"
        );
        assert_eq!(r.take_answers(), [(ips[0], "one.example".to_owned())]);
        assert_eq!(r.name(&ips[0]), Some("one.example"));
        assert_eq!(r.take_answers(), []);
    }

    #[cfg(unix)]
    #[test]
    fn loopback_has_a_name_from_the_system() {
        let name = lookup_ptr("127.0.0.1".parse().unwrap());
        assert!(name.is_some_and(|n| !n.is_empty()));
    }
}
