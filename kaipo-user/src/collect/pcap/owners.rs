//! Socket owners and closes, told as the lifecycle events the accountant takes from the eBPF
//! backend.
//!
//! Owners are looked up only for sockets that carried traffic: an idle socket costs nothing,
//! and a busy host's thousands of idle sockets never need a process scan. A socket whose owner
//! cannot be found (a kernel socket, a process that hides its descriptors) is retried less and
//! less often, so it does not cost a scan every sample.

use std::collections::{HashMap, HashSet};

use kaipo_common::{Event, EVENT_PROC_EXIT, EVENT_SOCK_CLOSE, EVENT_SOCK_OWNER};

use super::{
    attribute::{Attribution, UNATTRIBUTED_COOKIE},
    sockets::{next_owner_search, SocketOwner, SocketSource, SocketTable},
};

#[derive(Default)]
pub struct OwnerTracker {
    /// The pid each socket's last owner event named.
    announced: HashMap<u64, u32>,
    /// Sockets whose close event was sent.
    closed: HashSet<u64>,
    /// Sockets whose owner was not found: misses so far, and the sample of the next try.
    hunting: HashMap<u64, (u32, u64)>,
    /// Processes named in owner events, watched for their exit.
    processes: HashMap<u32, SocketOwner>,
}

impl OwnerTracker {
    /// After a sample's flows are attributed: closes for sockets that left the tables, owners
    /// for sockets that carried traffic and whose owner is new or changed, exits of processes
    /// named before.
    pub fn update<S: SocketSource>(
        &mut self,
        table: &mut SocketTable<S>,
        attribution: &Attribution,
        sample: u64,
        events: &mut Vec<Event>,
    ) {
        self.closes(table, attribution, events);
        self.owners(table, attribution, sample, events);
        // After the owners, so a process's last sockets are told before its exit.
        self.processes.retain(|pid, owner| {
            let alive = table.is_alive(*pid);
            if !alive {
                events.push(owner.event(EVENT_PROC_EXIT));
            }
            alive
        });
    }

    fn closes<S: SocketSource>(
        &mut self,
        table: &SocketTable<S>,
        attribution: &Attribution,
        events: &mut Vec<Event>,
    ) {
        let mut closing: Vec<u64> = attribution
            .cookies()
            .chain(self.announced.keys().copied())
            .filter(|c| *c != UNATTRIBUTED_COOKIE && !table.is_live(*c) && !self.closed.contains(c))
            .collect();
        closing.sort_unstable();
        closing.dedup();
        for cookie in closing {
            events.push(Event {
                kind: EVENT_SOCK_CLOSE,
                cookie,
                stats: attribution.get(cookie).copied().unwrap_or_default(),
                ..Event::default()
            });
            self.closed.insert(cookie);
            self.hunting.remove(&cookie);
        }
    }

    fn owners<S: SocketSource>(
        &mut self,
        table: &mut SocketTable<S>,
        attribution: &Attribution,
        sample: u64,
        events: &mut Vec<Event>,
    ) {
        let mut wanted: Vec<u64> = attribution
            .active()
            .filter(|c| table.is_live(*c))
            .filter(|c| self.hunting.get(c).is_none_or(|(_, next)| *next <= sample))
            .collect();
        if wanted.is_empty() {
            return;
        }
        wanted.sort_unstable();
        let mut found = Vec::with_capacity(wanted.len());
        table.owners(&wanted, &mut found);
        let mut located = HashSet::with_capacity(found.len());
        for (cookie, pid) in found {
            located.insert(cookie);
            self.hunting.remove(&cookie);
            if self.announced.get(&cookie) == Some(&pid) {
                continue;
            }
            // A process that exited since the scan has nothing left to tell.
            let Some(owner) = table.describe(pid) else {
                continue;
            };
            events.push(Event {
                cookie,
                ..owner.event(EVENT_SOCK_OWNER)
            });
            self.announced.insert(cookie, pid);
            self.processes.insert(pid, owner);
        }
        for cookie in wanted {
            if located.contains(&cookie) || self.announced.contains_key(&cookie) {
                continue;
            }
            let (misses, next) = self.hunting.entry(cookie).or_insert((0, 0));
            *misses += 1;
            *next = next_owner_search(sample, *misses);
        }
    }

    pub fn forget(&mut self, cookies: &[u64]) {
        for cookie in cookies {
            self.announced.remove(cookie);
            self.closed.remove(cookie);
            self.hunting.remove(cookie);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use kaipo_common::{FlowCounters, FlowKey, EVENT_SOCK_OWNER, FAMILY_IPV4, PROTO_UDP};

    use super::*;
    use crate::collect::pcap::sockets::{comm_bytes, SocketEntry, SocketKey, SocketOwner};

    #[derive(Default)]
    struct Script {
        rows: Vec<SocketEntry>,
        holders: HashMap<u64, u32>,
        searches: u32,
        exited: Vec<u32>,
    }

    /// A socket table whose rows and holders the test changes, counting owner searches.
    #[derive(Clone, Default)]
    struct Scripted(Arc<Mutex<Script>>);

    impl SocketSource for Scripted {
        fn read_table(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()> {
            out.extend_from_slice(&self.0.lock().unwrap().rows);
            Ok(())
        }
        fn owners(&mut self, cookies: &[u64], out: &mut Vec<(u64, u32)>) {
            let mut script = self.0.lock().unwrap();
            script.searches += 1;
            out.extend(
                cookies
                    .iter()
                    .filter_map(|c| Some((*c, *script.holders.get(c)?))),
            );
        }
        fn describe(&mut self, pid: u32) -> Option<SocketOwner> {
            Some(SocketOwner {
                pid,
                uid: 1000,
                gid: 1000,
                comm: comm_bytes("server"),
            })
        }
        fn is_alive(&mut self, pid: u32) -> bool {
            !self.0.lock().unwrap().exited.contains(&pid)
        }
    }

    const PORT: u16 = 5000;

    fn udp_socket(cookie: u64) -> SocketEntry {
        SocketEntry {
            key: SocketKey {
                proto: PROTO_UDP,
                family: FAMILY_IPV4,
                local_port: PORT,
                ..SocketKey::default()
            },
            cookie,
        }
    }

    fn traffic(att: &mut Attribution, table: &SocketTable<Scripted>) {
        att.begin();
        let flow = FlowKey {
            proto: PROTO_UDP,
            family: FAMILY_IPV4,
            local_port: PORT,
            remote_port: 40000,
            ..FlowKey::default()
        };
        let delta = FlowCounters {
            rx_bytes: 100,
            rx_packets: 1,
            ..FlowCounters::default()
        };
        att.add(table, &flow, &delta, false);
    }

    #[test]
    fn owners_once_per_owner_then_exit_then_close_then_forget() {
        let script = Scripted::default();
        script.0.lock().unwrap().rows.push(udp_socket(42));
        let mut table = SocketTable::new(script.clone());
        let mut att = Attribution::default();
        let mut tracker = OwnerTracker::default();
        let mut events = Vec::new();

        // Traffic, owner not found yet: no event, and the next search waits.
        table.refresh().unwrap();
        traffic(&mut att, &table);
        tracker.update(&mut table, &att, 1, &mut events);
        assert!(events.is_empty());
        traffic(&mut att, &table);
        tracker.update(&mut table, &att, 2, &mut events);
        assert_eq!(script.0.lock().unwrap().searches, 1, "retried too soon");

        script.0.lock().unwrap().holders.insert(42, 777);
        traffic(&mut att, &table);
        tracker.update(&mut table, &att, 3, &mut events);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind, events[0].cookie, events[0].tgid),
            (EVENT_SOCK_OWNER, 42, 777)
        );
        assert_eq!(
            (events[0].uid, &events[0].comm[..7]),
            (1000, &b"server\0"[..])
        );

        // Same owner: nothing new. A new owner: one event.
        traffic(&mut att, &table);
        tracker.update(&mut table, &att, 4, &mut events);
        assert_eq!(events.len(), 1);
        script.0.lock().unwrap().holders.insert(42, 778);
        traffic(&mut att, &table);
        tracker.update(&mut table, &att, 5, &mut events);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].tgid, 778);

        // The first owner exits: told once.
        script.0.lock().unwrap().exited.push(777);
        traffic(&mut att, &table);
        tracker.update(&mut table, &att, 6, &mut events);
        tracker.update(&mut table, &att, 7, &mut events);
        assert_eq!(events.len(), 3);
        assert_eq!((events[2].kind, events[2].tgid), (EVENT_PROC_EXIT, 777));
        assert_eq!(&events[2].comm[..7], b"server\0");

        // The socket leaves the table: one close event with its totals.
        script.0.lock().unwrap().rows.clear();
        table.refresh().unwrap();
        att.begin();
        tracker.update(&mut table, &att, 8, &mut events);
        tracker.update(&mut table, &att, 9, &mut events);
        assert_eq!(events.len(), 4);
        assert_eq!((events[3].kind, events[3].cookie), (EVENT_SOCK_CLOSE, 42));
        assert_eq!(
            (events[3].stats.rx_bytes, events[3].stats.rx_packets),
            (600, 6)
        );

        att.forget(&[42]);
        tracker.forget(&[42]);
        tracker.update(&mut table, &att, 10, &mut events);
        assert_eq!(events.len(), 4);
    }
}
