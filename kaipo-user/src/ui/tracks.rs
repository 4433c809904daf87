//! What the dashboard remembers about each process, connection, interface and remote host
//! between intervals.

use std::{collections::HashMap, fmt, hash::Hash, net::IpAddr, time::Instant};

use super::{
    rates::Meter,
    source::{ConnKey, ConnectionExtra, ProcessExtra},
};
use crate::model::ProcessRecord;

/// A remembered row, found again by its key.
pub trait Track {
    type Key: Clone + Eq + Hash;
    fn key(&self) -> &Self::Key;
}

/// Rows in a vector, so tables can sort plain indices, plus an index by key.
#[derive(Clone, Debug)]
pub struct Tracks<T: Track> {
    items: Vec<T>,
    index: HashMap<T::Key, usize>,
}

impl<T: Track> Default for Tracks<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Track> Tracks<T> {
    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn items_mut(&mut self) -> &mut [T] {
        &mut self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn position(&self, key: &T::Key) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub fn get(&self, key: &T::Key) -> Option<&T> {
        self.position(key).map(|i| &self.items[i])
    }

    pub fn get_mut(&mut self, key: &T::Key) -> Option<&mut T> {
        self.position(key).map(|i| &mut self.items[i])
    }

    /// The row for `key`, made by `make` when new.
    pub fn entry(&mut self, key: &T::Key, make: impl FnOnce() -> T) -> &mut T {
        let i = match self.index.get(key) {
            Some(&i) => i,
            None => {
                self.items.push(make());
                self.index.insert(key.clone(), self.items.len() - 1);
                self.items.len() - 1
            }
        };
        &mut self.items[i]
    }

    /// Drops rows `keep` refuses; returns whether any went (indices changed then).
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) -> bool {
        let before = self.items.len();
        self.items.retain(keep);
        if self.items.len() == before {
            return false;
        }
        self.index = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.key().clone(), i))
            .collect();
        true
    }
}

/// The remote side of connections, without the port: what the Remote hosts view groups by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemoteAddr {
    Ip(IpAddr),
    /// `*`: an unconnected socket that talked to several peers.
    Many,
    /// Anything the collector printed that is not an address.
    Other(String),
}

impl RemoteAddr {
    /// From a record's `remote`: `10.0.0.2:443`, `[2001:db8::1]:443`, `10.0.0.2` (no ports)
    /// or `*`.
    pub fn parse(remote: &str) -> Self {
        if remote == "*" {
            return Self::Many;
        }
        let host = if let Some(rest) = remote.strip_prefix('[') {
            rest.split_once(']').map_or(rest, |(host, _)| host)
        } else if remote.matches(':').count() == 1 {
            remote.split_once(':').map_or(remote, |(host, _)| host)
        } else {
            remote
        };
        host.parse()
            .map_or_else(|_| Self::Other(remote.to_string()), Self::Ip)
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Many => f.write_str("*"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProcessTrack {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    pub uid: u32,
    pub user: Option<String>,
    pub container: Option<String>,
    pub netns: Option<u64>,
    pub exe: Option<String>,
    /// When the dashboard learnt the process had exited.
    pub exited_at: Option<Instant>,
    pub last_seen: Instant,
    pub meter: Meter,
    /// Live connections of this process, counted at every interval.
    pub connections: usize,
    /// Lower-cased text the filter searches.
    pub search: String,
}

impl ProcessTrack {
    pub fn new(record: &ProcessRecord, extra: Option<&ProcessExtra>, now: Instant) -> Self {
        let mut track = Self {
            pid: record.pid,
            name: String::new(),
            cmdline: String::new(),
            uid: record.uid,
            user: None,
            container: None,
            netns: None,
            exe: None,
            exited_at: None,
            last_seen: now,
            meter: Meter::with_history(),
            connections: 0,
            search: String::new(),
        };
        track.describe(record, extra);
        track
    }

    /// Takes the identity from the newest record: an `exec` changes name and cmdline, and
    /// a user or container may only be known from a later interval.
    pub fn describe(&mut self, record: &ProcessRecord, extra: Option<&ProcessExtra>) {
        let exe = extra.and_then(|e| e.exe.as_ref()).or(self.exe.as_ref());
        let changed = self.name != record.name
            || self.cmdline != record.cmdline
            || self.user != record.user
            || self.container != record.container
            || self.uid != record.uid
            || self.netns != record.netns
            || self.exe.as_ref() != exe
            || self.search.is_empty();
        if !changed {
            return;
        }
        self.exe = exe.cloned();
        self.name.clone_from(&record.name);
        self.cmdline.clone_from(&record.cmdline);
        self.user.clone_from(&record.user);
        self.container.clone_from(&record.container);
        self.uid = record.uid;
        self.netns = record.netns;
        self.search = format!(
            "{} {} {} {} {} {}",
            self.pid,
            self.name,
            self.cmdline,
            self.user.as_deref().unwrap_or(""),
            self.container.as_deref().unwrap_or(""),
            self.exe.as_deref().unwrap_or(""),
        )
        .to_lowercase();
    }

    pub fn exited(&self) -> bool {
        self.exited_at.is_some()
    }

    /// The user's name, or the uid when the name is unknown.
    pub fn user_label(&self) -> String {
        self.user.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

impl Track for ProcessTrack {
    type Key = u32;
    fn key(&self) -> &u32 {
        &self.pid
    }
}

#[derive(Clone, Debug)]
pub struct ConnectionTrack {
    pub key: ConnKey,
    pub remote: RemoteAddr,
    /// The owning process's name when the connection was first seen.
    pub process: String,
    pub state: Option<String>,
    pub service: Option<String>,
    pub last_seen: Instant,
    pub meter: Meter,
    /// Lower-cased text the filter searches: endpoints, service and the owner's identity, so
    /// filtering by a user or a container also finds their connections.
    pub search: String,
}

impl ConnectionTrack {
    pub fn new(key: ConnKey, owner: Option<&ProcessTrack>, now: Instant) -> Self {
        let mut track = Self {
            remote: RemoteAddr::parse(&key.remote),
            process: String::new(),
            key,
            state: None,
            service: None,
            last_seen: now,
            meter: Meter::default(),
            search: String::new(),
        };
        track.adopt(owner);
        track
    }

    /// Takes the owner's name and identity into the row and its search text.
    pub fn adopt(&mut self, owner: Option<&ProcessTrack>) {
        if let Some(owner) = owner {
            self.process.clone_from(&owner.name);
        }
        self.search = format!(
            "{} {} {} {} {} {}",
            self.key.proto,
            self.key.local,
            self.key.remote,
            self.service.as_deref().unwrap_or(""),
            self.state.as_deref().unwrap_or(""),
            owner.map_or("", |p| p.search.as_str()),
        )
        .to_lowercase();
    }

    /// Takes state and service from the newest snapshot.
    pub fn describe(&mut self, extra: Option<&ConnectionExtra>, owner: Option<&ProcessTrack>) {
        let Some(extra) = extra else { return };
        if self.state != extra.state || self.service != extra.service {
            self.state.clone_from(&extra.state);
            self.service.clone_from(&extra.service);
            self.adopt(owner);
        }
    }
}

impl Track for ConnectionTrack {
    type Key = ConnKey;
    fn key(&self) -> &ConnKey {
        &self.key
    }
}

#[derive(Clone, Debug)]
pub struct InterfaceTrack {
    pub name: String,
    pub meter: Meter,
    /// Packets rather than bytes, through the same smoothing.
    pub packets: Meter,
    pub search: String,
}

impl InterfaceTrack {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            meter: Meter::with_history(),
            packets: Meter::default(),
            search: name.to_lowercase(),
        }
    }
}

impl Track for InterfaceTrack {
    type Key = String;
    fn key(&self) -> &String {
        &self.name
    }
}

#[derive(Clone, Debug)]
pub struct RemoteTrack {
    pub addr: RemoteAddr,
    /// Resolved name, filled in by whoever resolves names.
    pub name: Option<String>,
    pub connections: usize,
    pub processes: usize,
    pub last_seen: Instant,
    pub meter: Meter,
    pub search: String,
}

impl RemoteTrack {
    pub fn new(addr: RemoteAddr, now: Instant) -> Self {
        let mut track = Self {
            addr,
            name: None,
            connections: 0,
            processes: 0,
            last_seen: now,
            meter: Meter::default(),
            search: String::new(),
        };
        track.set_name(None);
        track
    }

    pub fn set_name(&mut self, name: Option<String>) {
        self.name = name;
        self.search =
            format!("{} {}", self.addr, self.name.as_deref().unwrap_or("")).to_lowercase();
    }
}

impl Track for RemoteTrack {
    type Key = RemoteAddr;
    fn key(&self) -> &RemoteAddr {
        &self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_lose_their_ports() {
        let ip = |s: &str| RemoteAddr::Ip(s.parse().unwrap());
        assert_eq!(RemoteAddr::parse("10.0.0.2:443"), ip("10.0.0.2"));
        assert_eq!(RemoteAddr::parse("[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(RemoteAddr::parse("10.0.0.2"), ip("10.0.0.2"));
        assert_eq!(RemoteAddr::parse("2001:db8::7"), ip("2001:db8::7"));
        assert_eq!(RemoteAddr::parse("*"), RemoteAddr::Many);
        assert_eq!(RemoteAddr::parse("?"), RemoteAddr::Other("?".into()));
        assert_eq!(ip("2001:db8::1").to_string(), "2001:db8::1");
    }
}
