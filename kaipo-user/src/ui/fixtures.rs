//! A small, fixed server for state and snapshot tests: six processes, eight connections,
//! two interfaces, three one-second intervals. curl exits in the third.

use std::time::{Duration, Instant};

use super::{
    source::{HeaderInfo, LiveUpdate, SourceKind},
    state::LiveState,
    theme::Theme,
};
use crate::{
    collect::BackendKind,
    model::Lost,
    model::{Bytes, ConnectionRecord, InterfaceRecord, IntervalRecord, ProcessRecord},
    store::{Report, ReportRow, SeriesPoint, Tier},
};

pub const TS0: u64 = 1_795_684_400_000;
pub const CONTAINER: &str = "3f2a9c1b7d4e5a6b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b";

pub struct Proc {
    pub pid: u32,
    pub name: &'static str,
    pub cmdline: &'static str,
    pub uid: u32,
    pub user: &'static str,
    pub container: Option<&'static str>,
    pub container_name: Option<&'static str>,
    pub unit: Option<&'static str>,
    pub exe: &'static str,
}

pub const PROCS: [Proc; 6] = [
    Proc {
        pid: 812,
        name: "nginx",
        cmdline: "nginx: worker process",
        uid: 33,
        user: "www-data",
        container: None,
        container_name: None,
        unit: Some("nginx.service"),
        exe: "/usr/sbin/nginx",
    },
    Proc {
        pid: 1290,
        name: "postgres",
        cmdline: "postgres: 16/main: app appdb 10.0.0.7(50122) idle",
        uid: 999,
        user: "postgres",
        container: None,
        container_name: None,
        unit: Some("postgresql@16-main.service"),
        exe: "/usr/lib/postgresql/16/bin/postgres",
    },
    Proc {
        pid: 4321,
        name: "python3",
        cmdline: "python3 /app/sync.py --bucket backups",
        uid: 0,
        user: "root",
        container: Some(CONTAINER),
        container_name: Some("backup-sync"),
        unit: None,
        exe: "/usr/local/bin/python3.12",
    },
    Proc {
        pid: 5150,
        name: "curl",
        cmdline: "curl -sO https://example.com/big.iso",
        uid: 1000,
        user: "alice",
        container: None,
        container_name: None,
        unit: Some("session-2.scope"),
        exe: "/usr/bin/curl",
    },
    Proc {
        pid: 603,
        name: "systemd-resolved",
        cmdline: "/usr/lib/systemd/systemd-resolved",
        uid: 991,
        user: "systemd-resolve",
        container: None,
        container_name: None,
        unit: Some("systemd-resolved.service"),
        exe: "/usr/lib/systemd/systemd-resolved",
    },
    Proc {
        pid: 700,
        name: "chronyd",
        cmdline: "/usr/sbin/chronyd -F 1",
        uid: 994,
        user: "_chrony",
        container: None,
        container_name: None,
        unit: Some("chrony.service"),
        exe: "/usr/sbin/chronyd",
    },
];

/// pid, proto, local, remote, service, state, rx and tx per interval.
type Conn = (
    u32,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u64,
    u64,
);

pub const CONNS: [Conn; 8] = [
    (
        812,
        "tcp",
        "10.0.0.5:443",
        "198.51.100.23:51522",
        "https",
        Some("ESTABLISHED"),
        60_000,
        700_000,
    ),
    (
        812,
        "tcp",
        "10.0.0.5:443",
        "[2001:db8::42]:40112",
        "https",
        Some("ESTABLISHED"),
        90_000,
        200_000,
    ),
    (
        812,
        "tcp",
        "10.0.0.5:443",
        "203.0.113.9:60001",
        "https",
        Some("ESTABLISHED"),
        30_000,
        50_000,
    ),
    (
        1290,
        "tcp",
        "10.0.0.5:5432",
        "10.0.0.7:50122",
        "postgresql",
        Some("ESTABLISHED"),
        400_000,
        120_000,
    ),
    (
        4321,
        "tcp",
        "172.17.0.2:41822",
        "52.95.110.1:443",
        "https",
        Some("ESTABLISHED"),
        30_000,
        2_400_000,
    ),
    (
        5150,
        "tcp",
        "10.0.0.5:38800",
        "93.184.215.14:443",
        "https",
        Some("ESTABLISHED"),
        880_000,
        12_000,
    ),
    (
        603,
        "udp",
        "10.0.0.5:58123",
        "1.1.1.1:53",
        "dns",
        None,
        2_400,
        900,
    ),
    (700, "udp", "10.0.0.5:123", "*", "ntp", None, 90, 90),
];

/// Interval `n` (1, 2, 3, ...): every connection carries its bytes times `n`, so rates
/// differ between intervals and smoothing shows.
pub fn update(n: u64) -> LiveUpdate {
    let conns: Vec<ConnectionRecord> = CONNS
        .iter()
        .filter(|c| c.0 != 5150 || n <= 3)
        .map(
            |&(pid, proto, local, remote, service, state, rx, tx)| ConnectionRecord {
                service: service.into(),
                // As `[names.networks] "10.0.0.0/24" = "office"` would name them.
                network: remote.starts_with("10.0.0.").then(|| "office".into()),
                state: state.map(Into::into),
                pid,
                proto: proto.into(),
                local: local.into(),
                remote: remote.into(),
                remote_name: None,
                rx_bytes: rx * n,
                tx_bytes: tx * n,
            },
        )
        .collect();
    let processes = PROCS
        .iter()
        .filter(|p| p.pid != 5150 || n <= 3)
        .map(|p| {
            let (rx, tx) = conns
                .iter()
                .filter(|c| c.pid == p.pid)
                .fold((0, 0), |(rx, tx), c| (rx + c.rx_bytes, tx + c.tx_bytes));
            ProcessRecord {
                exe: Some(p.exe.into()),
                pid: p.pid,
                name: p.name.into(),
                cmdline: p.cmdline.into(),
                uid: p.uid,
                user: Some(p.user.into()),
                container: p.container.map(Into::into),
                container_name: p.container_name.map(Into::into),
                pod: None,
                pod_namespace: None,
                unit: p.unit.map(Into::into),
                netns: Some(4_026_531_840),
                exited: p.pid == 5150 && n == 3,
                rx_bytes: rx,
                tx_bytes: tx,
                rx_packets: rx / 1000,
                tx_packets: tx / 1000,
            }
        })
        .collect();
    let record = IntervalRecord {
        attributed_ratio: None,
        attribution: Default::default(),
        ts_ms: TS0 + n * 1000,
        interval_ms: 1000,
        backend: BackendKind::Ebpf,
        interfaces: vec![
            InterfaceRecord {
                name: "eth0".into(),
                rx_bytes: 1_600_000 * n,
                tx_bytes: 3_600_000 * n,
                rx_packets: 1_900 * n,
                tx_packets: 2_800 * n,
            },
            InterfaceRecord {
                name: "wg0".into(),
                rx_bytes: 52_000 * n,
                tx_bytes: 48_000 * n,
                rx_packets: 60 * n,
                tx_packets: 55 * n,
            },
        ],
        processes,
        connections: conns,
        unattributed: Bytes {
            rx_bytes: 1_000,
            tx_bytes: 0,
        },
        lost: Lost {
            ringbuf_full: u64::from(n == 2) * 3,
            ..Lost::default()
        },
    };
    let header = HeaderInfo {
        backend: "ebpf".into(),
        degradations: Vec::new(),
        lost_total: None,
        attributed_ratio: Some(0.973),
        source: SourceKind::Daemon,
        alerts: Vec::new(),
    };
    LiveUpdate::new(record, header)
}

/// The clock of interval `n`: one second apart from a fixed start.
pub fn at(start: Instant, n: u64) -> Instant {
    start + Duration::from_secs(n)
}

/// The fixture after three intervals, with two remote names resolved.
pub fn state_with(theme: Theme, width: u16, height: u16) -> (LiveState, Instant) {
    let start = Instant::now();
    let mut state = LiveState::new(theme);
    state.resize(width, height);
    for n in 1..=3 {
        state.ingest(update(n), at(start, n));
    }
    state.set_remote_name(
        "198.51.100.23".parse().expect("ip"),
        "client-23.example.net",
    );
    state.set_remote_name("1.1.1.1".parse().expect("ip"), "one.one.one.one");
    (state, start)
}

pub fn state() -> LiveState {
    state_with(Theme::PLAIN, 80, 24).0
}

/// Sixty one-minute buckets and twenty-four one-hour buckets of a daily pattern.
pub fn history(hour: bool) -> Report {
    let (points, step, tier, to_ms) = if hour {
        (60, 60_000, Tier::Minute, TS0 as i64)
    } else {
        (24, 3_600_000, Tier::Hour, TS0 as i64)
    };
    let from_ms = to_ms - points * step;
    let series: Vec<SeriesPoint> = (0..points)
        .map(|i| SeriesPoint {
            ts_ms: from_ms + i * step,
            rx_bytes: ((15 - (i % 20 - 10).abs()) * step / 1000 * 100_000) as u64,
            tx_bytes: ((2 + (i % 12 - 6).abs()) * step / 1000 * 100_000) as u64,
        })
        .collect();
    let total = ReportRow {
        key: String::new(),
        name: None,
        rx_bytes: series.iter().map(|p| p.rx_bytes).sum(),
        tx_bytes: series.iter().map(|p| p.tx_bytes).sum(),
        rx_packets: 0,
        tx_packets: 0,
        process: None,
    };
    Report {
        from_ms,
        to_ms,
        by: None,
        tier: Some(tier),
        rows: Vec::new(),
        total,
        series,
        top_apps: Vec::new(),
        top_remotes: Vec::new(),
        per: None,
        periods: Vec::new(),
    }
}
