//! Remote hosts by the name the application asked for, learnt from the DNS answers its
//! sockets received (captured in the kernel, see `kaipo-ebpf`'s `dns.rs`).
//!
//! Names are kept per network namespace (two namespaces may resolve one name differently, or
//! one address to different names) and expire with the answer's TTL, bounded below and above:
//! a connection opened right after a short-lived answer still reads its name for a while, and
//! a name does not outlive a day. The map is bounded; when full, the entries closest to expiry
//! go first.

pub mod parse;
pub mod reverse;

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

pub use parse::{answer_of, Answer, DnsError};

/// Names kept at most.
pub const MAX_NAMES: usize = 100_000;
/// Bounds of how long a name is kept, whatever the answer's TTL says.
pub const MIN_KEEP: Duration = Duration::from_secs(60);
pub const MAX_KEEP: Duration = Duration::from_secs(86_400);

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    expires: Instant,
}

/// (network namespace inode, address) -> the name asked for.
#[derive(Debug)]
pub struct RemoteNames {
    map: HashMap<(u64, IpAddr), Entry>,
    max: usize,
}

impl Default for RemoteNames {
    fn default() -> Self {
        Self::with_capacity(MAX_NAMES)
    }
}

impl RemoteNames {
    pub fn with_capacity(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Remembers every address of `answer` as its asked name in namespace `netns` (0 when the
    /// namespace is unknown). A newer answer replaces an older one for the same address.
    pub fn learn(&mut self, netns: u64, answer: &Answer, now: Instant) {
        for &(ip, ttl) in &answer.addrs {
            let keep = Duration::from_secs(u64::from(ttl)).clamp(MIN_KEEP, MAX_KEEP);
            let key = (netns, canonical(ip));
            if !self.map.contains_key(&key) && self.map.len() >= self.max {
                self.make_room(now);
            }
            self.map.insert(
                key,
                Entry {
                    name: answer.asked.clone(),
                    expires: now + keep,
                },
            );
        }
    }

    /// The name `ip` was resolved from in `netns`, while it has not expired.
    pub fn name(&self, netns: u64, ip: IpAddr, now: Instant) -> Option<&str> {
        self.map
            .get(&(netns, canonical(ip)))
            .filter(|e| e.expires > now)
            .map(|e| e.name.as_str())
    }

    /// Drops expired names.
    pub fn expire(&mut self, now: Instant) {
        self.map.retain(|_, e| e.expires > now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Expired names first; then a tenth of the map, those closest to expiry, so a full map
    /// costs one pass per tenth of its size rather than one per answer.
    fn make_room(&mut self, now: Instant) {
        self.expire(now);
        if self.map.len() < self.max {
            return;
        }
        let drop = (self.max / 10).max(1);
        let mut by_expiry: Vec<(Instant, (u64, IpAddr))> =
            self.map.iter().map(|(k, e)| (e.expires, *k)).collect();
        by_expiry.select_nth_unstable(drop - 1);
        for (_, key) in &by_expiry[..drop] {
            self.map.remove(key);
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(asked: &str, addrs: &[(&str, u32)]) -> Answer {
        Answer {
            asked: asked.into(),
            addrs: addrs
                .iter()
                .map(|(a, t)| (a.parse().unwrap(), *t))
                .collect(),
        }
    }

    #[test]
    fn names_per_namespace_expire_with_bounded_ttls() {
        let mut names = RemoteNames::default();
        let t0 = Instant::now();
        names.learn(1, &answer("api.example.com", &[("192.0.2.7", 300)]), t0);
        names.learn(2, &answer("other.example", &[("192.0.2.7", 5)]), t0);
        let ip = "192.0.2.7".parse().unwrap();
        assert_eq!(names.name(1, ip, t0), Some("api.example.com"));
        assert_eq!(names.name(2, ip, t0), Some("other.example"));
        assert_eq!(names.name(3, ip, t0), None);
        // The mapped form is the same address.
        assert_eq!(
            names.name(1, "::ffff:192.0.2.7".parse().unwrap(), t0),
            Some("api.example.com")
        );
        // A 5 s TTL is kept the minimum, 60 s; 300 s is kept 300 s.
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(names.name(2, ip, at(59)), Some("other.example"));
        assert_eq!(names.name(2, ip, at(60)), None);
        assert_eq!(names.name(1, ip, at(299)), Some("api.example.com"));
        assert_eq!(names.name(1, ip, at(300)), None);
        names.expire(at(61));
        assert_eq!(names.len(), 1);
        // A week-long TTL is kept a day.
        names.learn(1, &answer("long.example", &[("192.0.2.8", 604_800)]), t0);
        let long = "192.0.2.8".parse().unwrap();
        assert_eq!(names.name(1, long, at(86_399)), Some("long.example"));
        assert_eq!(names.name(1, long, at(86_400)), None);
    }

    #[test]
    fn a_full_map_drops_the_names_closest_to_expiry() {
        let mut names = RemoteNames::with_capacity(10);
        let t0 = Instant::now();
        for i in 0..10u32 {
            let addr = format!("10.231.0.{i}");
            names.learn(0, &answer("n.example", &[(&addr, 100 + i * 10)]), t0);
        }
        assert_eq!(names.len(), 10);
        names.learn(0, &answer("new.example", &[("10.231.1.1", 1000)]), t0);
        assert_eq!(names.len(), 10);
        // The one closest to expiry (10.231.0.0, 100 s) went.
        assert_eq!(names.name(0, "10.231.0.0".parse().unwrap(), t0), None);
        assert_eq!(
            names.name(0, "10.231.0.1".parse().unwrap(), t0),
            Some("n.example")
        );
        assert_eq!(
            names.name(0, "10.231.1.1".parse().unwrap(), t0),
            Some("new.example")
        );
    }

    /// The figures in BENCHMARKS.md: reading 10,000 answers (a CNAME and an address each) and
    /// the memory of a full map. Run with
    /// `cargo test --release -p kaipo-user --lib dns::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing for BENCHMARKS.md, not a check"]
    fn cost_of_answers_and_of_a_full_map() {
        use crate::dns::parse::tests::{response, udp4};
        let packets: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| {
                let asked = format!("api{i}.example.com");
                let edge = format!("e{i}.cdn.example.net");
                let ip = (0x0ae7_0000u32 + i).to_be_bytes().to_vec();
                udp4(&response(
                    &asked,
                    0,
                    &[
                        (&asked, 5, edge.clone().into_bytes(), 300),
                        (&edge, 1, ip, 60),
                    ],
                ))
            })
            .collect();
        let mut names = RemoteNames::default();
        let now = Instant::now();
        let start = Instant::now();
        for p in &packets {
            let answer = answer_of(p, p.len() as u32).unwrap().unwrap();
            names.learn(1, &answer, now);
        }
        let took = start.elapsed();
        println!(
            "10,000 answers read and learnt in {took:?}: {:.2} % of one core at 10,000 answers/s",
            took.as_secs_f64() * 100.0
        );
        let rss = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        };
        let before = rss();
        let mut full = RemoteNames::default();
        for i in 0..MAX_NAMES as u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            let answer = Answer {
                asked: format!("service-{i:06}.example.com"),
                addrs: vec![(ip, 300)],
            };
            full.learn(u64::from(i % 7), &answer, now);
        }
        assert_eq!(full.len(), MAX_NAMES);
        println!(
            "{} names (26-byte names): {} MiB resident",
            full.len(),
            (rss() - before) >> 20
        );
    }
}
