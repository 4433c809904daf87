//! The collector stage: closes a live interval on every tick, the way `kaipo watch` does, and
//! puts it on the bus with its traffic broken down into store rows.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use super::{bus::BusStats, protocol, LiveInterval};
use crate::{
    accounting::{Accountant, IntervalDelta},
    collect::backend::{Collector, Events},
    format,
    procinfo::{ProcessInfo, ProcessResolver},
    store::{TrafficRow, UNATTRIBUTED_APP},
    watch::WatchState,
};

/// Runs until `stop` turns true (or its sender goes), then closes a final interval, waits for
/// room on the bus for it and detaches every program by dropping the collector.
///
/// Backpressure: an interval is closed only when the bus has room for it. When it has none, the
/// tick is skipped and counted; the kernel keeps counting, so the next interval covers the gap.
#[expect(
    clippy::too_many_arguments,
    reason = "the stage's inputs and outputs; one call site"
)]
pub async fn run(
    collector: Collector,
    mut events: Events,
    live_interval: Duration,
    include_loopback: bool,
    bus: mpsc::Sender<LiveInterval>,
    stats: Arc<BusStats>,
    mut stop: watch::Receiver<bool>,
    metrics: Option<crate::metrics::SharedMetrics>,
) -> anyhow::Result<()> {
    let mut collector = collector;
    let mut state = WatchState {
        accountant: Accountant::new(include_loopback),
        resolver: ProcessResolver::new("/proc", "/etc"),
        events: Vec::with_capacity(1024),
        malformed_reported: 0,
        backend: collector.kind(),
    };
    let started = Instant::now();
    let mut last_close = started;
    let mut ticker = tokio::time::interval_at((started + live_interval).into(), live_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            ready = events.readable() => {
                ready.context("waiting on the event ring buffer")?;
                state.drain(&mut events);
                continue;
            }
            _ = ticker.tick() => false,
            () = super::bus::stopped(&mut stop) => true,
        };
        let permit = if stopping {
            match bus.reserve().await {
                Ok(permit) => permit,
                // The aggregator is gone; nothing would receive the interval.
                Err(_) => break,
            }
        } else {
            match bus.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => {
                    stats.intervals_deferred.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(())) => break,
            }
        };
        let now = Instant::now();
        let delta = state.close_interval(&mut collector, &mut events, stopping)?;
        // Rows first: `record` expires the resolver's cache of exited processes.
        let traffic = traffic_rows(&delta, &mut state.resolver, now);
        let record = state.record(delta, now.duration_since(last_close), now);
        last_close = now;
        if let Some(metrics) = &metrics {
            // Read here because only this stage holds the programs.
            let programs = collector
                .program_stats()
                .into_iter()
                .map(
                    |(name, run_time_ns, run_count)| crate::metrics::ProgramStat {
                        name,
                        run_time_ns,
                        run_count,
                    },
                )
                .collect();
            metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_programs(programs);
        }
        permit.send(LiveInterval {
            record,
            traffic,
            final_interval: stopping,
        });
        if stopping {
            break;
        }
    }
    // Dropping the collector detaches every program.
    drop(collector);
    Ok(())
}

/// The interval's traffic per process, remote address and service, plus one row for traffic
/// without a known owner.
pub fn traffic_rows(
    delta: &IntervalDelta,
    resolver: &mut ProcessResolver,
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
        let service = protocol::service(e.proto, e.local_port, remote_port);
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
                    container: info
                        .as_ref()
                        .and_then(|i| i.container.clone().or_else(|| i.cgroup.clone())),
                    remote,
                    service,
                    ..TrafficRow::default()
                }
            });
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
fn remote_address(family: u8, addr: &[u8; 16]) -> String {
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
    use crate::accounting::{ConnectionDelta, Endpoints, Owner, Traffic};

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
        let rows = traffic_rows(&delta, &mut resolver, Instant::now());
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
}
