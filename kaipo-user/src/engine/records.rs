//! Turning an interval's deltas into what users read: the interval record and the store's
//! rows, with process details from `/proc` and each connection's service.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    accounting::{ConnectionDelta, Endpoints, IntervalDelta},
    service::{self, ServerSide},
};
use crate::{
    collect::BackendKind,
    config::names::UserNames,
    dns::{reverse::ReverseNames, RemoteNames},
    format,
    model::{Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord},
    platform::{Host, Platform as _},
    procinfo::{ProcessInfo, ProcessResolver},
    store::{TrafficRow, UNATTRIBUTED_APP},
};

/// The service a socket is for. An unconnected socket that talked to many peers is a server
/// on its local port; otherwise the kernel's word on the socket's role, else the ports decide
/// (a port the user named counting as a named one). The user's name for the server side's
/// port wins over kaipo's.
pub fn connection_service(e: &Endpoints, remote_port: u16, names: &UserNames) -> String {
    let side = if e.many_remotes || remote_port == 0 {
        ServerSide::Local
    } else {
        e.server_side
    };
    let side = match side {
        ServerSide::Unknown => match (
            names.service(e.proto, e.local_port),
            names.service(e.proto, remote_port),
        ) {
            (Some(_), None) => ServerSide::Local,
            (None, Some(_)) => ServerSide::Remote,
            _ => service::side_from_ports(e.proto, e.local_port, remote_port, ephemeral()),
        },
        known => known,
    };
    let server_port = match side {
        ServerSide::Remote => remote_port,
        _ => e.local_port,
    };
    match names.service(e.proto, server_port) {
        Some(name) => name.to_owned(),
        None => service::service_of(e.proto, e.local_port, remote_port, side),
    }
}

/// The host's ephemeral port range, read once.
fn ephemeral() -> (u16, u16) {
    static RANGE: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();
    *RANGE.get_or_init(service::ephemeral_range)
}

/// The names records are made with: the user's own, remote hosts' from DNS answers, and
/// (when on) reverse DNS's for the remotes no answer named.
pub struct Naming<'a> {
    pub names: &'a UserNames,
    pub remotes: &'a RemoteNames,
    /// Reverse DNS's names found so far; `None`: reverse DNS is off.
    pub reverse: Option<&'a ReverseNames>,
    /// Socket cookie -> network namespace cookie, from the sockets' creation.
    pub sock_netns: &'a HashMap<u64, u64>,
}

/// Marks a key made from a namespace's inode, so it never equals a namespace cookie.
const INODE_KEY: u64 = 1 << 63;

/// Which network namespace a socket belongs to, as the remote-name map keys it: the
/// namespace's cookie, which the kernel gave at the socket's creation, else (a socket older
/// than kaipo) the owner's namespace inode from /proc, else 0.
pub fn netns_key(
    sock_netns: &HashMap<u64, u64>,
    resolver: &mut ProcessResolver,
    cookie: u64,
    pid: Option<u32>,
    now: Instant,
) -> u64 {
    if let Some(&netns) = sock_netns.get(&cookie) {
        return netns;
    }
    pid.and_then(|pid| resolver.lookup(pid, now))
        .and_then(|i| i.netns_inode)
        .map_or(0, |inode| inode | INODE_KEY)
}

impl Naming<'_> {
    /// The name the connection's owner looked its remote up by, in its network namespace;
    /// else the remote's reverse-DNS name, when reverse DNS is on and has one yet.
    fn remote_name(
        &self,
        resolver: &mut ProcessResolver,
        c: &ConnectionDelta,
        now: Instant,
    ) -> Option<String> {
        self.answered_name(resolver, c, now)
            .or_else(|| {
                let ip = reverse_candidate(c)?;
                self.reverse?.name(&ip)
            })
            .map(str::to_owned)
    }

    /// The name from the DNS answers the connection's namespace received, if any.
    pub fn answered_name(
        &self,
        resolver: &mut ProcessResolver,
        c: &ConnectionDelta,
        now: Instant,
    ) -> Option<&str> {
        let e = &c.endpoints;
        if e.many_remotes || self.remotes.is_empty() {
            return None;
        }
        let ip = format::ip(e.family, &e.remote_addr)?;
        let netns = netns_key(self.sock_netns, resolver, c.cookie, Some(c.owner.tgid), now);
        self.remotes.name(netns, ip, now)
    }
}

/// The address reverse DNS would be asked about for the connection's remote: one peer, known,
/// IPv4-mapped IPv6 as IPv4.
pub fn reverse_candidate(c: &ConnectionDelta) -> Option<IpAddr> {
    let e = &c.endpoints;
    if e.many_remotes {
        return None;
    }
    let ip = match format::ip(e.family, &e.remote_addr)? {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    };
    (!ip.is_unspecified()).then_some(ip)
}

/// The interval record of a delta: processes largest first, connections as the accountant
/// ordered them, interfaces in monitoring order.
pub fn build(
    delta: &IntervalDelta,
    resolver: &mut ProcessResolver,
    naming: &Naming<'_>,
    backend: BackendKind,
    elapsed: Duration,
    now: Instant,
) -> IntervalRecord {
    let exited: HashSet<u32> = delta.exited.iter().map(|(tgid, _, _)| *tgid).collect();
    let mut processes: Vec<ProcessRecord> = delta
        .processes
        .values()
        .map(|(owner, traffic)| {
            let info = resolver.lookup(owner.tgid, now);
            // Without process details, only an exit the collector reported says gone.
            let gone = exited.contains(&owner.tgid)
                || (Host::PROCESS_DETAILS && info.as_ref().is_none_or(|i| i.start_time_ticks == 0));
            ProcessRecord {
                pid: owner.tgid,
                name: info
                    .as_ref()
                    .map_or_else(|| owner.comm.clone(), |i| i.name.clone()),
                cmdline: info.as_ref().map(|i| i.cmdline.clone()).unwrap_or_default(),
                uid: info.as_ref().map_or(owner.uid, |i| i.uid),
                user: info.as_ref().and_then(|i| i.user.clone()),
                container: info.as_ref().and_then(|i| i.container.clone()),
                container_name: info.as_ref().and_then(|i| i.container_name.clone()),
                pod: info.as_ref().and_then(|i| i.pod.clone()),
                pod_namespace: info.as_ref().and_then(|i| i.pod_namespace.clone()),
                unit: info.as_ref().and_then(|i| i.unit.clone()),
                exe: info.as_ref().and_then(|i| i.exe.clone()),
                netns: info.as_ref().and_then(|i| i.netns_inode),
                exited: gone,
                rx_bytes: traffic.rx_bytes,
                tx_bytes: traffic.tx_bytes,
                rx_packets: traffic.rx_packets,
                tx_packets: traffic.tx_packets,
            }
        })
        .collect();
    processes.sort_by(|a, b| {
        (b.rx_bytes + b.tx_bytes)
            .cmp(&(a.rx_bytes + a.tx_bytes))
            .then(a.pid.cmp(&b.pid))
    });
    let names = naming.names;
    let connections = delta
        .connections
        .iter()
        .map(|c| {
            let e = &c.endpoints;
            let ports = format::has_ports(e.proto);
            let remote_name = naming.remote_name(resolver, c, now);
            ConnectionRecord {
                pid: c.owner.tgid,
                proto: format::proto_name(e.proto),
                local: format::endpoint(e.family, &e.local_addr, e.local_port, ports),
                remote: if e.many_remotes {
                    "*".into()
                } else {
                    format::endpoint(e.family, &e.remote_addr, e.remote_port, ports)
                },
                remote_name,
                service: connection_service(e, e.remote_port, names),
                network: if e.many_remotes {
                    None
                } else {
                    format::ip(e.family, &e.remote_addr)
                        .and_then(|ip| names.network(ip))
                        .map(str::to_owned)
                },
                state: format::tcp_state(e.proto, e.tcp_state).map(str::to_owned),
                rx_bytes: c.traffic.rx_bytes,
                tx_bytes: c.traffic.tx_bytes,
            }
        })
        .collect();
    let interfaces = delta
        .interfaces
        .iter()
        .map(|(iface, c)| InterfaceRecord {
            name: iface.name.clone(),
            rx_bytes: c.rx_bytes,
            tx_bytes: c.tx_bytes,
            rx_packets: c.rx_packets,
            tx_packets: c.tx_packets,
        })
        .collect();
    resolver.expire(now);
    IntervalRecord {
        ts_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        interval_ms: elapsed.as_millis() as u64,
        backend,
        interfaces,
        processes,
        connections,
        unattributed: Bytes {
            rx_bytes: delta.unattributed.rx_bytes,
            tx_bytes: delta.unattributed.tx_bytes,
        },
        attributed_ratio: delta.attribution.ratio(),
        attribution: delta.attribution,
        lost: delta.lost,
    }
}

/// The interval's traffic per process, remote address and service, plus one row for traffic
/// without a known owner.
pub fn traffic_rows(
    delta: &IntervalDelta,
    resolver: &mut ProcessResolver,
    naming: &Naming<'_>,
    now: Instant,
) -> Vec<TrafficRow> {
    let mut rows: HashMap<(u32, String, String), TrafficRow> = HashMap::new();
    let mut infos: HashMap<u32, Option<ProcessInfo>> = HashMap::new();
    for c in &delta.connections {
        let e = &c.endpoints;
        let pid = c.owner.tgid;
        let remote = if e.many_remotes {
            String::new()
        } else {
            remote_address(e.family, &e.remote_addr)
        };
        let remote_port = if e.many_remotes { 0 } else { e.remote_port };
        let service = connection_service(e, remote_port, naming.names);
        let remote_name = naming.remote_name(resolver, c, now);
        let row = rows
            .entry((pid, remote.clone(), service.clone()))
            .or_insert_with(|| {
                let info = infos
                    .entry(pid)
                    .or_insert_with(|| resolver.lookup(pid, now))
                    .clone();
                let uid = info.as_ref().map_or(c.owner.uid, |i| i.uid);
                let user = match info.as_ref().and_then(|i| i.user.clone()) {
                    Some(user) => Some(user),
                    None => resolver.user_name(uid),
                };
                TrafficRow {
                    app: app_name(info.as_ref(), &c.owner.comm),
                    pid,
                    start_time: info.as_ref().map_or(0, |i| i.start_time_ticks),
                    cmdline: info.as_ref().map(|i| i.cmdline.clone()).unwrap_or_default(),
                    uid,
                    user,
                    // Host processes have no container, whatever cgroup they sit in.
                    container: info.as_ref().and_then(|i| i.container.clone()),
                    container_name: info.as_ref().and_then(|i| i.container_name.clone()),
                    pod: info.as_ref().and_then(|i| i.pod.clone()),
                    pod_namespace: info.as_ref().and_then(|i| i.pod_namespace.clone()),
                    unit: info.as_ref().and_then(|i| i.unit.clone()),
                    remote,
                    service,
                    ..TrafficRow::default()
                }
            });
        if remote_name.is_some() {
            row.remote_name = remote_name;
        }
        row.rx_bytes += c.traffic.rx_bytes;
        row.tx_bytes += c.traffic.tx_bytes;
        row.rx_packets += c.traffic.rx_packets;
        row.tx_packets += c.traffic.tx_packets;
    }
    let mut out: Vec<TrafficRow> = rows.into_values().collect();
    out.sort_by(|a, b| (a.pid, &a.remote, &a.service).cmp(&(b.pid, &b.remote, &b.service)));
    let u = &delta.unattributed;
    if !u.is_zero() {
        out.push(TrafficRow {
            app: UNATTRIBUTED_APP.into(),
            rx_bytes: u.rx_bytes,
            tx_bytes: u.tx_bytes,
            rx_packets: u.rx_packets,
            tx_packets: u.tx_packets,
            ..TrafficRow::default()
        });
    }
    out
}

/// The executable's file name (`python3.12`, `firefox-bin`), else the command name. The file
/// name is what identifies a program; the command name is truncated to 15 bytes and can be
/// set by the program itself.
pub fn app_name(info: Option<&ProcessInfo>, comm: &str) -> String {
    let exe = info.and_then(|i| i.exe.as_deref()).and_then(|exe| {
        // A replaced or deleted binary reads as "/usr/bin/foo (deleted)".
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
        Path::new(exe).file_name()?.to_str().map(str::to_owned)
    });
    exe.or_else(|| info.map(|i| i.name.clone()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| comm.to_owned())
}

/// The remote address as text, IPv4-mapped IPv6 addresses as IPv4; empty when unknown.
pub fn remote_address(family: u8, addr: &[u8; 16]) -> String {
    match format::ip(family, addr) {
        Some(ip) if !ip.is_unspecified() => match ip {
            IpAddr::V6(v6) => v6.to_canonical().to_string(),
            v4 => v4.to_string(),
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use kaipo_common::{FAMILY_IPV4, FAMILY_IPV6, PROTO_UDP};

    use super::*;
    use crate::{
        engine::accounting::{ConnectionDelta, Endpoints, Owner},
        model::Traffic,
    };

    fn no_names() -> Naming<'static> {
        static NAMES: std::sync::LazyLock<UserNames> = std::sync::LazyLock::new(UserNames::default);
        static REMOTES: std::sync::LazyLock<RemoteNames> =
            std::sync::LazyLock::new(RemoteNames::default);
        static SOCK_NETNS: std::sync::LazyLock<HashMap<u64, u64>> =
            std::sync::LazyLock::new(HashMap::new);
        Naming {
            names: &NAMES,
            remotes: &REMOTES,
            reverse: None,
            sock_netns: &SOCK_NETNS,
        }
    }

    fn info(exe: Option<&str>, name: &str) -> ProcessInfo {
        ProcessInfo {
            pid: 1,
            name: name.into(),
            cmdline: String::new(),
            exe: exe.map(str::to_owned),
            uid: 0,
            user: None,
            start_time_ticks: 0,
            cgroup: None,
            container: None,
            container_name: None,
            pod: None,
            pod_namespace: None,
            unit: None,
            netns_inode: None,
        }
    }

    #[test]
    fn app_is_the_executable_name_else_the_command_name() {
        let python = info(Some("/usr/bin/python3.12"), "python3");
        assert_eq!(app_name(Some(&python), "python3"), "python3.12");
        let deleted = info(Some("/opt/app/server (deleted)"), "server");
        assert_eq!(app_name(Some(&deleted), "server"), "server");
        assert_eq!(
            app_name(Some(&info(None, "kworker/0:1")), "x"),
            "kworker/0:1"
        );
        assert_eq!(app_name(None, "short-lived"), "short-lived");
    }

    #[test]
    fn remote_addresses_are_plain_text_or_empty() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(remote_address(FAMILY_IPV4, &v4), "10.0.0.2");
        assert_eq!(remote_address(FAMILY_IPV4, &[0; 16]), "");
        let mut mapped = [0u8; 16];
        mapped[10..12].copy_from_slice(&[0xff, 0xff]);
        mapped[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(remote_address(FAMILY_IPV6, &mapped), "192.0.2.1");
        assert_eq!(remote_address(0, &v4), "");
    }

    /// A TCP server on 5001 accepting 200 connections from one client: one row, service
    /// `tcp/5001`, so a new-destination rule sees one destination, not one per client port.
    #[test]
    fn a_servers_clients_share_its_service() {
        let owner = Owner {
            tgid: 4_000_001,
            comm: "server".into(),
            uid: 4_000_001,
            cgroup_id: 0,
        };
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&[10, 0, 0, 2]);
        let connections = (0..200u16)
            .map(|i| ConnectionDelta {
                cookie: u64::from(i),
                owner: owner.clone(),
                endpoints: Endpoints {
                    family: FAMILY_IPV4,
                    proto: kaipo_common::PROTO_TCP,
                    local_port: 5001,
                    remote_addr: client,
                    remote_port: 40_000 + i,
                    ..Endpoints::default()
                },
                traffic: Traffic {
                    rx_bytes: 100,
                    rx_packets: 1,
                    ..Traffic::default()
                },
            })
            .collect();
        let delta = IntervalDelta {
            connections,
            ..IntervalDelta::default()
        };
        let mut resolver = ProcessResolver::new("/nonexistent", "/nonexistent");
        let rows = traffic_rows(&delta, &mut resolver, &no_names(), Instant::now());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].service, "tcp/5001");
        assert_eq!((rows[0].rx_bytes, rows[0].rx_packets), (20_000, 200));
    }

    #[test]
    fn rows_merge_per_process_remote_and_service() {
        let owner = Owner {
            tgid: 4_000_000,
            comm: "sender".into(),
            uid: 4_000_000,
            cgroup_id: 0,
        };
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[127, 0, 0, 1]);
        let conn = |cookie, local_port, tx| ConnectionDelta {
            cookie,
            owner: owner.clone(),
            endpoints: Endpoints {
                family: FAMILY_IPV4,
                proto: PROTO_UDP,
                local_port,
                remote_addr: remote,
                remote_port: 53,
                ..Endpoints::default()
            },
            traffic: Traffic {
                tx_bytes: tx,
                tx_packets: 1,
                ..Traffic::default()
            },
        };
        let delta = IntervalDelta {
            connections: vec![conn(1, 40000, 100), conn(2, 40001, 50)],
            unattributed: Traffic {
                rx_bytes: 7,
                rx_packets: 1,
                ..Traffic::default()
            },
            ..IntervalDelta::default()
        };
        // No such pid: the kernel's comm and uid stand in.
        let mut resolver = ProcessResolver::new("/nonexistent", "/nonexistent");
        let rows = traffic_rows(&delta, &mut resolver, &no_names(), Instant::now());
        assert_eq!(rows.len(), 2);
        let r = &rows[0];
        assert_eq!(
            (
                r.app.as_str(),
                r.pid,
                r.uid,
                r.remote.as_str(),
                r.service.as_str()
            ),
            ("sender", 4_000_000, 4_000_000, "127.0.0.1", "dns")
        );
        assert_eq!((r.tx_bytes, r.tx_packets), (150, 2));
        assert_eq!(rows[1].app, UNATTRIBUTED_APP);
        assert_eq!((rows[1].pid, rows[1].rx_bytes), (0, 7));
    }

    /// The user's names: a service by protocol and port wins over kaipo's (`https` on 8443),
    /// names the server side even on an ephemeral port, and a network names the remote.
    #[test]
    fn the_users_service_and_network_names() {
        let names = UserNames::from_config(&crate::config::names::NamesConfig {
            services: [("tcp/8443", "admin-api"), ("udp/40000", "game")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            networks: [("10.20.0.0/16", "office")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            ..Default::default()
        })
        .expect("valid names");
        let owner = Owner {
            tgid: 4_000_002,
            comm: "client".into(),
            uid: 0,
            cgroup_id: 0,
        };
        let conn = |proto, local_port, remote: [u8; 4], remote_port| {
            let mut remote_addr = [0u8; 16];
            remote_addr[..4].copy_from_slice(&remote);
            ConnectionDelta {
                cookie: u64::from(local_port),
                owner: owner.clone(),
                endpoints: Endpoints {
                    family: FAMILY_IPV4,
                    proto,
                    local_port,
                    remote_addr,
                    remote_port,
                    ..Endpoints::default()
                },
                traffic: Traffic {
                    tx_bytes: 100,
                    tx_packets: 1,
                    ..Traffic::default()
                },
            }
        };
        let delta = IntervalDelta {
            connections: vec![
                // A client of 8443 (kaipo alone says https).
                conn(kaipo_common::PROTO_TCP, 50_000, [10, 20, 3, 4], 8443),
                // A UDP server on 40000 (inside the ephemeral range) answering 51000.
                conn(PROTO_UDP, 40_000, [192, 0, 2, 1], 51_000),
                // Nothing of the user's: kaipo's own name, no network.
                conn(kaipo_common::PROTO_TCP, 50_001, [192, 0, 2, 1], 443),
            ],
            ..IntervalDelta::default()
        };
        let mut resolver = ProcessResolver::new("/nonexistent", "/nonexistent");
        let now = Instant::now();
        let remotes = RemoteNames::default();
        let sock_netns = HashMap::new();
        let naming = Naming {
            names: &names,
            remotes: &remotes,
            reverse: None,
            sock_netns: &sock_netns,
        };
        let record = build(
            &delta,
            &mut resolver,
            &naming,
            BackendKind::Ebpf,
            Duration::from_secs(1),
            now,
        );
        let seen: Vec<(&str, Option<&str>)> = record
            .connections
            .iter()
            .map(|c| (c.service.as_str(), c.network.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("admin-api", Some("office")),
                ("game", None),
                ("https", None)
            ]
        );
        let rows = traffic_rows(&delta, &mut resolver, &naming, now);
        let services: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(services, ["admin-api", "game", "https"]);
    }

    fn reverse_fake(ip: IpAddr) -> Option<String> {
        match ip.to_string().as_str() {
            "192.0.2.1" => Some("ptr-one.example".into()),
            "192.0.2.2" => Some("ptr-two.example".into()),
            _ => None,
        }
    }

    /// Reverse DNS fills only what DNS answers left unnamed: a remote an answer named keeps
    /// the asked name, one with a PTR record gets it, in the record and in the store's rows,
    /// and one with neither stays unnamed.
    #[test]
    fn reverse_names_fill_remotes_no_answer_named() {
        let mut reverse = ReverseNames::start(reverse_fake);
        let ips: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for ip in &ips {
            reverse.ask(*ip);
        }
        let start = Instant::now();
        let mut answers = Vec::new();
        while answers.len() < 2 && start.elapsed() < Duration::from_secs(5) {
            answers.extend(reverse.take_answers());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(answers.len(), 2, "{answers:?}");
        let now = Instant::now();
        let mut remotes = RemoteNames::default();
        remotes.learn(
            7,
            &crate::dns::Answer {
                asked: "api.example".into(),
                addrs: vec![(ips[0], 300)],
            },
            now,
        );
        let sock_netns: HashMap<u64, u64> = [(1, 7), (2, 7), (3, 7)].into();
        let conn = |cookie: u64, ip: [u8; 4]| {
            let mut remote_addr = [0u8; 16];
            remote_addr[..4].copy_from_slice(&ip);
            ConnectionDelta {
                cookie,
                owner: Owner {
                    tgid: 4_000_000,
                    comm: "sender".into(),
                    uid: 0,
                    cgroup_id: 0,
                },
                endpoints: Endpoints {
                    family: FAMILY_IPV4,
                    proto: PROTO_UDP,
                    local_port: 40_000,
                    remote_addr,
                    remote_port: 9_000 + cookie as u16,
                    ..Endpoints::default()
                },
                traffic: Traffic {
                    tx_bytes: 100 * cookie,
                    tx_packets: 1,
                    ..Traffic::default()
                },
            }
        };
        let delta = IntervalDelta {
            connections: vec![
                conn(1, [192, 0, 2, 1]),
                conn(2, [192, 0, 2, 2]),
                conn(3, [192, 0, 2, 3]),
            ],
            ..IntervalDelta::default()
        };
        let names = UserNames::default();
        let mut resolver = ProcessResolver::new("/nonexistent", "/nonexistent");
        let naming = Naming {
            names: &names,
            remotes: &remotes,
            reverse: Some(&reverse),
            sock_netns: &sock_netns,
        };
        let expected = [
            (Some("api.example"), 100),
            (Some("ptr-two.example"), 200),
            (None, 300),
        ];
        let record = build(
            &delta,
            &mut resolver,
            &naming,
            BackendKind::Ebpf,
            Duration::from_secs(1),
            now,
        );
        let seen: Vec<(Option<&str>, u64)> = record
            .connections
            .iter()
            .map(|c| (c.remote_name.as_deref(), c.tx_bytes))
            .collect();
        assert_eq!(seen, expected);
        let rows = traffic_rows(&delta, &mut resolver, &naming, now);
        let seen: Vec<(Option<&str>, u64)> = rows
            .iter()
            .map(|r| (r.remote_name.as_deref(), r.tx_bytes))
            .collect();
        assert_eq!(seen, expected);
        // Off: DNS answers alone.
        let off = Naming {
            reverse: None,
            ..naming
        };
        let record = build(
            &delta,
            &mut resolver,
            &off,
            BackendKind::Ebpf,
            Duration::from_secs(1),
            now,
        );
        let seen: Vec<Option<&str>> = record
            .connections
            .iter()
            .map(|c| c.remote_name.as_deref())
            .collect();
        assert_eq!(seen, [Some("api.example"), None, None]);
    }
}
