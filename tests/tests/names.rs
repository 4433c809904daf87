//! End to end: names people recognize. Processes named by where they run: a real Podman
//! container (an image the test builds from the traffic generator and the C libraries it links,
//! no registry), and processes the test puts in cgroups laid out like a systemd unit's and a
//! Kubernetes pod's, with the kubelet's folders beside them; services and networks named in the
//! configuration. `kaipo watch --json`, the daemon and its history must name each one and count
//! its bytes exactly.
//!
//! Addresses: 10.231.1.0/27 only (/30s) and fd31:0:15::/48 (with a blackhole for 10.231.0.0/16 so that
//! nothing of this range ever leaves the host); the daemon's reverse DNS and reload tests
//! 10.234.1.0/26 (blackhole 10.234.0.0/16). Needs root, Podman and runc
//! (`scripts/setup.sh`); run with `--test-threads=1` on a busy machine.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, ensure, Context as _};
use kaipo_tests::{
    child::Spawned,
    run,
    watch::{Run, Totals, Watch, WatchConfig},
};

const TRAFFIC: &str = env!("CARGO_BIN_EXE_kaipo-traffic");
const STEP: Duration = Duration::from_secs(20);
const UDP4_OVERHEAD: u64 = 20 + 8;
/// Where kaipo reads cgroup v2 on this host kind: the hybrid layout's unified mount, else the
/// unified layout's root.
const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// A namespace `k15-<pid>-<n>` joined to the host by a veth pair, `10.231.1.<4n+1>` on the
/// host and `.<4n+2>` inside, with static neighbours (no ARP in the counts). Removed on drop.
struct Net {
    name: String,
    /// `RANGE` of `RANGE.0.0/16`, whose blackhole route goes with the range's last `Net`.
    range: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Net {
    fn new(n: u8) -> anyhow::Result<Self> {
        Self::in_range("10.231", n)
    }

    /// As [`Net::new`] in `RANGE.0.0/16` (`"10.234"`): `RANGE.1.<4n+1>` and `.<4n+2>`.
    fn in_range(range: &str, n: u8) -> anyhow::Result<Self> {
        kaipo_tests::require_root()?;
        let pid = std::process::id();
        // Nothing of the test range may be routed out, whatever happens to the links below.
        // Tests of one range run at once: the route comes with the first and goes with the last.
        let mut held = BLACKHOLES.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(range.to_owned()).or_insert(0);
        if *count == 0 {
            let _ = Command::new("ip")
                .args(["route", "add", "blackhole", &format!("{range}.0.0/16")])
                .output();
        }
        *count += 1;
        drop(held);
        let net = Net {
            name: format!("k15-{pid}-{n}"),
            range: range.to_owned(),
            host_if: format!("k15h{pid}{n}"),
            host_ip: format!("{range}.1.{}", 4 * n + 1),
            ns_ip: format!("{range}.1.{}", 4 * n + 2),
        };
        ensure!(net.host_if.len() <= 15, "{} is too long", net.host_if);
        let (host_mac, ns_mac) = (
            format!("02:6b:35:00:{n:02x}:01"),
            format!("02:6b:35:00:{n:02x}:02"),
        );
        run(Command::new("ip").args(["netns", "add", &net.name]))?;
        run(Command::new("ip")
            .args([
                "link",
                "add",
                &net.host_if,
                "address",
                &host_mac,
                "type",
                "veth",
            ])
            .args([
                "peer", "name", "k15n", "address", &ns_mac, "netns", &net.name,
            ]))?;
        let inside = |args: &[&str]| run(Command::new("ip").args(["-n", &net.name]).args(args));
        fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", net.host_if),
            "1",
        )?;
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/30", net.host_ip),
            "dev",
            &net.host_if,
        ]))?;
        inside(&["addr", "add", &format!("{}/30", net.ns_ip), "dev", "k15n"])?;
        run(Command::new("ip").args([
            "neigh",
            "replace",
            &net.ns_ip,
            "lladdr",
            &ns_mac,
            "dev",
            &net.host_if,
            "nud",
            "permanent",
        ]))?;
        inside(&[
            "neigh",
            "replace",
            &net.host_ip,
            "lladdr",
            &host_mac,
            "dev",
            "k15n",
            "nud",
            "permanent",
        ])?;
        run(Command::new("ip").args(["link", "set", "dev", &net.host_if, "up"]))?;
        inside(&["link", "set", "dev", "k15n", "up"])?;
        inside(&["link", "set", "dev", "lo", "up"])?;
        run(Command::new("ip")
            .args(["netns", "exec", &net.name, "sh", "-c"])
            .arg("echo 1 > /proc/sys/net/ipv6/conf/k15n/disable_ipv6"))?;
        Ok(net)
    }
}

impl Net {
    /// As [`Net::new`], with IPv6 on both ends too: `fd31:0:15:N::1` on the host and `::2`
    /// inside, without duplicate address detection, neighbours static.
    fn with_ipv6(n: u8) -> anyhow::Result<(Self, String, String)> {
        let net = Net::new(n)?;
        let (host6, ns6) = (format!("fd31:0:15:{n}::1"), format!("fd31:0:15:{n}::2"));
        let inside = |script: &str| {
            run(Command::new("ip")
                .args(["netns", "exec", &net.name, "sh", "-c"])
                .arg(script))
        };
        fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", net.host_if),
            "0",
        )?;
        inside("echo 0 > /proc/sys/net/ipv6/conf/k15n/disable_ipv6")?;
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{host6}/64"),
            "dev",
            &net.host_if,
            "nodad",
        ]))?;
        inside(&format!("ip addr add {ns6}/64 dev k15n nodad && ip -6 addr add ::1/128 dev lo 2>/dev/null; true"))?;
        let mac = |end: u8| format!("02:6b:35:00:{n:02x}:{end:02x}");
        run(Command::new("ip").args([
            "neigh",
            "replace",
            &ns6,
            "lladdr",
            &mac(2),
            "dev",
            &net.host_if,
            "nud",
            "permanent",
        ]))?;
        inside(&format!(
            "ip neigh replace {host6} lladdr {} dev k15n nud permanent",
            mac(1)
        ))?;
        Ok((net, host6, ns6))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let mut held = BLACKHOLES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.range) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.range);
                // The range's links are gone: nothing is left to route out.
                let _ = Command::new("ip")
                    .args([
                        "route",
                        "del",
                        "blackhole",
                        &format!("{}.0.0/16", self.range),
                    ])
                    .output();
            }
        }
    }
}

/// Live `Net`s by range, for their shared blackhole route.
static BLACKHOLES: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A folder, file or Podman object the test made, removed on drop.
enum Made {
    Dir(PathBuf),
    File(PathBuf),
    /// A cgroup: removed once empty (its processes were ended first).
    Cgroup(PathBuf),
    Container(String),
    Image(String),
}

struct Cleanup(Vec<Made>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for made in self.0.drain(..).rev() {
            let _ = match made {
                Made::Dir(p) => fs::remove_dir_all(p),
                Made::File(p) => fs::remove_file(p),
                Made::Cgroup(p) => fs::remove_dir(p),
                Made::Container(name) => podman(&["rm", "-f", "-t", "0", &name]).map(drop),
                Made::Image(tag) => podman(&["rmi", "-f", &tag]).map(drop),
            };
        }
    }
}

fn podman(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("podman").args(args).output()
}

/// The traffic generator, the loader and the libraries it links, laid out as a root
/// filesystem and imported as a Podman image.
fn build_image(dir: &Path, tag: &str) -> anyhow::Result<()> {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs)?;
    fs::copy(TRAFFIC, rootfs.join("kaipo-traffic")).context("copying the generator")?;
    let ldd = run(Command::new("ldd").arg(TRAFFIC))?;
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new);
        let Some(lib) = path else { continue };
        let to = rootfs.join(lib.strip_prefix("/")?);
        fs::create_dir_all(to.parent().context("library path")?)?;
        fs::copy(lib, &to).with_context(|| format!("copying {}", lib.display()))?;
    }
    let tar = dir.join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    let out = podman(&["import", &tar.to_string_lossy(), tag])?;
    if !out.status.success() {
        bail!("podman import: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Bytes and packets of every process record `pick` selects, summed over the run.
fn totals_of(run: &Run, pick: impl Fn(&kaipo_tests::watch::ProcessRecord) -> bool) -> Totals {
    let mut t = Totals::default();
    for p in run
        .records
        .iter()
        .flat_map(|r| &r.processes)
        .filter(|p| pick(p))
    {
        t.rx_bytes += p.rx_bytes;
        t.tx_bytes += p.tx_bytes;
        t.rx_packets += p.rx_packets;
        t.tx_packets += p.tx_packets;
    }
    t
}

fn tx(count: u64, size: u64) -> Totals {
    Totals {
        tx_bytes: count * (size + UDP4_OVERHEAD),
        tx_packets: count,
        ..Totals::default()
    }
}

/// `kaipo daemon` with its socket, database and metrics in a folder of the test's; killed on
/// drop if it did not stop.
struct Daemon {
    child: std::process::Child,
    dir: PathBuf,
    metrics_port: u16,
}

impl Daemon {
    fn start(dir: &Path, iface: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("kaipo.toml");
        fs::write(
            &config,
            format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
        )?;
        let child = Command::new(kaipo_tests::kaipo_bin()?)
            .arg("--config")
            .arg(&config)
            .args(["daemon", "--db"])
            .arg(dir.join("kaipo.db"))
            .arg("--socket")
            .arg(dir.join("kaipo.sock"))
            .args([
                "--interval",
                "1s",
                "--live-interval",
                "1s",
                "--iface",
                iface,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting kaipo daemon")?;
        let daemon = Self {
            child,
            dir: dir.to_owned(),
            metrics_port,
        };
        let start = std::time::Instant::now();
        while daemon.status().is_err() || daemon.metrics().is_err() {
            ensure!(start.elapsed() < STEP, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(daemon)
    }

    fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = run(Command::new(kaipo_tests::kaipo_bin()?)
            .args(["status", "--json", "--socket"])
            .arg(self.dir.join("kaipo.sock")))?;
        Ok(serde_json::from_str(&out)?)
    }

    fn metrics(&self) -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        stream.set_read_timeout(Some(STEP))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        ensure!(text.contains(" 200 "), "{text}");
        Ok(text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default())
    }

    /// SIGTERM: the daemon writes its last interval and exits 0.
    fn stop(&mut self) -> anyhow::Result<()> {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the daemon exited with {status}");
                return Ok(());
            }
            ensure!(start.elapsed() < STEP, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kaipo report --by BY --format json` over the last hour of the stopped daemon's file:
    /// (key, tx bytes) per row.
    fn report(&self, by: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let v = self.report_json(by)?;
        Ok(v["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["key"].as_str().unwrap_or_default().to_owned(),
                    r["tx_bytes"].as_u64().unwrap_or_default(),
                )
            })
            .collect())
    }
}

impl Daemon {
    fn report_json(&self, by: &str) -> anyhow::Result<serde_json::Value> {
        let out = run(Command::new(kaipo_tests::kaipo_bin()?)
            .args([
                "report", "--by", by, "--format", "json", "--top", "0", "--since", "1h",
            ])
            .arg("--db")
            .arg(self.dir.join("kaipo.db")))?;
        Ok(serde_json::from_str(&out)?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sender in a Podman container, joined to the test namespace: its 20 datagrams of 100 bytes
/// (2,560 IP-layer bytes) show under the container's name and id.
#[test]
fn a_podman_container_is_named() -> anyhow::Result<()> {
    ensure!(
        Command::new("podman").arg("--version").output().is_ok(),
        "this test needs Podman and runc: run scripts/setup.sh"
    );
    let net = Net::new(0)?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-podman-{pid}"));
    let (tag, name) = (
        format!("localhost/kaipo-test-traffic:{pid}"),
        format!("kaipo-web-{pid}"),
    );
    let mut made = Cleanup(vec![Made::Dir(dir.clone())]);
    build_image(&dir, &tag)?;
    made.0.push(Made::Image(tag.clone()));

    let (count, size) = (20u64, 100u64);
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new(TRAFFIC);
        c.args([
            "udp-sink",
            &format!("{}:0", net.host_ip),
            &count.to_string(),
        ]);
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let port: u16 = sink.expect_num("port", STEP)?;

    let watch = Watch::start(&WatchConfig::new(&net.host_if, Duration::from_secs(60)))?;
    made.0.push(Made::Container(name.clone()));
    let mut sender = Spawned::spawn("podman run", {
        let mut c = Command::new("podman");
        c.args(["run", "-i", "--rm", "--runtime", "runc"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--network", &format!("ns:/run/netns/{}", net.name)])
            .args(["--name", &name, &tag, "/kaipo-traffic", "udp-wait"])
            .args([
                &format!("{}:{port}", net.host_ip),
                &count.to_string(),
                &size.to_string(),
            ]);
        c
    })?;
    // The generator's pid inside the container's own pid namespace: 1.
    let _: u32 = sender.expect_num("pid", STEP)?;
    sender
        .expect("ready", STEP)
        .with_context(|| format!("container: {}", sender.stderr()))?;
    let id = run(Command::new("podman").args(["inspect", "--format", "{{.Id}}", &name]))?;
    let id = id.trim().to_owned();
    // The socket is made and its owner event read within an interval; the names are then
    // cached with the process, whatever happens to the container afterwards.
    std::thread::sleep(Duration::from_secs(1));
    sender.send_line("go")?;
    sender.expect("sent", STEP)?;
    sink.expect("received", STEP)?;
    sender.wait_success(STEP)?;
    std::thread::sleep(Duration::from_millis(600));
    let run = watch.stop()?;

    let named = totals_of(&run, |p| p.container_name.as_deref() == Some(name.as_str()));
    assert_eq!(named, tx(count, size), "{}", run.stderr);
    let ids: std::collections::BTreeSet<Option<String>> = run
        .records
        .iter()
        .flat_map(|r| &r.processes)
        .filter(|p| p.container_name.as_deref() == Some(name.as_str()))
        .map(|p| p.container.clone())
        .collect();
    assert_eq!(ids, [Some(id[..12].to_owned())].into());
    // Podman's cgroupfs driver here: no systemd unit, no pod.
    let pods: Vec<_> = run
        .records
        .iter()
        .flat_map(|r| &r.processes)
        .filter(|p| p.container_name.is_some())
        .map(|p| (p.pod.clone(), p.pod_namespace.clone()))
        .collect();
    assert!(pods.iter().all(|p| *p == (None, None)), "{pods:?}");
    Ok(())
}

/// A process in a cgroup named like a systemd service and one laid out like a containerd
/// container of a Kubernetes pod (systemd driver), with the kubelet's pod folder and log link
/// made by the test: unit, container, pod and namespace named, bytes exact; a process in
/// neither has none of them.
#[test]
fn units_and_pods_are_named_from_cgroups_and_kubelet_folders() -> anyhow::Result<()> {
    let net = Net::new(1)?;
    let pid = std::process::id();
    let root = CGROUP_ROOTS
        .iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
        .context("no cgroup v2 hierarchy mounted")?;
    let mut made = Cleanup(Vec::new());
    let mkdir = |made: &mut Cleanup, p: PathBuf| -> anyhow::Result<PathBuf> {
        if !p.exists() {
            fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
            made.0.push(Made::Cgroup(p.clone()));
        }
        Ok(p)
    };
    let slice = mkdir(&mut made, root.join(format!("kaipo-test-{pid}.slice")))?;
    let unit = format!("kaipo-web-{pid}.service");
    let unit_cg = mkdir(&mut made, slice.join(&unit))?;

    let uid = format!("1f2e3d4c-5b6a-4798-8a0b-{pid:012x}");
    let cid = format!("{:064x}", u128::from(pid) << 64 | 0x6b61_6970);
    let pods = mkdir(&mut made, root.join("kubepods.slice"))?;
    let pod_slice = mkdir(
        &mut made,
        pods.join(format!("kubepods-pod{}.slice", uid.replace('-', "_"))),
    )?;
    let scope = format!("cri-containerd-{cid}.scope");
    let pod_cg = mkdir(&mut made, pod_slice.join(&scope))?;
    let (namespace, pod, container) = ("kaipo-test", format!("checkout-{pid}"), "web");
    // The kubelet's folders, made (and later removed) where this host has none.
    for folder in ["/var/log/pods", "/var/log/containers"] {
        if !Path::new(folder).exists() {
            fs::create_dir_all(folder)?;
            made.0.push(Made::Dir(folder.into()));
        }
    }
    let pod_dir = PathBuf::from(format!("/var/log/pods/{namespace}_{pod}_{uid}"));
    fs::create_dir_all(pod_dir.join(container))?;
    made.0.push(Made::Dir(pod_dir));
    let log = PathBuf::from(format!(
        "/var/log/containers/{pod}_{namespace}_{container}-{cid}.log"
    ));
    fs::write(&log, "")?;
    made.0.push(Made::File(log));

    let state = std::env::temp_dir().join(format!("kaipo-workloads-{pid}"));
    made.0.push(Made::Dir(state.clone()));
    let mut daemon = Daemon::start(&state, &net.host_if)?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, Duration::from_secs(60)))?;
    // The sink waits 10 s at most for each datagram: started once kaipo is up.
    let count = 10u64;
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &net.name, TRAFFIC, "udp-sink"])
            .args([&format!("{}:0", net.ns_ip), &(3 * count).to_string()]);
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let port: u16 = sink.expect_num("port", STEP)?;
    let to = format!("{}:{port}", net.ns_ip);
    // Each sender moves itself into its cgroup before it makes its socket.
    let sender = |cgroup: Option<&Path>, size: u64| -> anyhow::Result<Spawned> {
        let join = cgroup.map_or(String::new(), |cg| {
            format!("echo $$ > {}/cgroup.procs && ", cg.display())
        });
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("{join}exec {TRAFFIC} udp-wait {to} {count} {size}"));
        Spawned::spawn("sender", c)
    };
    let mut senders = [
        (sender(Some(&unit_cg), 100)?, 100),
        (sender(Some(&pod_cg), 300)?, 300),
        (sender(None, 500)?, 500),
    ];
    let mut pids = Vec::new();
    for (s, _) in &mut senders {
        pids.push(s.expect_num::<u32>("pid", STEP)?);
        s.expect("ready", STEP)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    for (s, _) in &mut senders {
        s.send_line("go")?;
        s.expect("sent", STEP)?;
        s.wait_success(STEP)?;
    }
    sink.expect("received", STEP)?;
    std::thread::sleep(Duration::from_millis(600));
    let run = watch.stop()?;
    drop(senders);
    // Two live intervals of the daemon and a bit: the traffic is in its totals.
    std::thread::sleep(Duration::from_millis(2500));
    let status = daemon.status()?;
    let exposition = daemon.metrics()?;
    daemon.stop()?;

    let of = |pid: u32| {
        let rows: Vec<_> = run
            .records
            .iter()
            .flat_map(|r| &r.processes)
            .filter(|p| p.pid == pid)
            .collect();
        let names: std::collections::BTreeSet<_> = rows
            .iter()
            .map(|p| {
                (
                    p.unit.clone(),
                    p.container_name.clone(),
                    p.pod.clone(),
                    p.pod_namespace.clone(),
                )
            })
            .collect();
        (names, totals_of(&run, |p| p.pid == pid))
    };
    let (unit_names, unit_bytes) = of(pids[0]);
    assert_eq!(unit_names, [(Some(unit.clone()), None, None, None)].into());
    assert_eq!(unit_bytes, tx(count, 100));
    let (pod_names, pod_bytes) = of(pids[1]);
    assert_eq!(
        pod_names,
        [(
            Some(scope.clone()),
            Some(container.to_owned()),
            Some(pod.clone()),
            Some(namespace.to_owned())
        )]
        .into()
    );
    assert_eq!(pod_bytes, tx(count, 300));
    // The third stayed where the test runs: the unit (if any) of that cgroup, nothing else.
    let own = kaipo::workload::facts_of(&fs::read_to_string("/proc/self/cgroup")?);
    let (plain_names, plain_bytes) = of(pids[2]);
    assert_eq!(plain_names, [(own.unit, None, None, None)].into());
    assert_eq!(plain_bytes, tx(count, 500));
    let container_ids: std::collections::BTreeSet<_> = run
        .records
        .iter()
        .flat_map(|r| &r.processes)
        .filter(|p| p.pid == pids[1])
        .map(|p| p.container.clone())
        .collect();
    assert_eq!(container_ids, [Some(cid[..12].to_owned())].into());

    // The daemon: its totals since start name each process as watch does.
    let totals = status["totals"]["processes"].as_array().context("totals")?;
    let total_of = |pid: u32| {
        totals
            .iter()
            .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
            .cloned()
            .unwrap_or_default()
    };
    let web = total_of(pids[1]);
    assert_eq!(
        (
            web["container_name"].as_str(),
            web["pod"].as_str(),
            web["pod_namespace"].as_str(),
            web["unit"].as_str(),
            web["tx_bytes"].as_u64()
        ),
        (
            Some(container),
            Some(pod.as_str()),
            Some(namespace),
            Some(scope.as_str()),
            Some(tx(count, 300).tx_bytes)
        ),
        "{web}"
    );
    assert_eq!(total_of(pids[0])["unit"].as_str(), Some(unit.as_str()));
    // Its metrics: one workload series each, exact.
    // Every sample carries the daemon's host label first; the workload's own labels follow.
    let series = |labels: &str| {
        exposition.lines().find_map(|l| {
            let l = match (l.find("{host=\""), l.find("\",")) {
                (Some(open), Some(end)) if open < end => {
                    format!("{}{{{}", &l[..open], &l[end + 2..])
                }
                _ => l.to_owned(),
            };
            l.strip_prefix(&format!(
                "kaipo_workload_bytes_total{{{labels},direction=\"tx\"}} "
            ))
            .and_then(|v| v.parse::<u64>().ok())
        })
    };
    assert_eq!(
        series(&format!(
            "container=\"web\",pod=\"{pod}\",namespace=\"{namespace}\",unit=\"{scope}\""
        )),
        Some(tx(count, 300).tx_bytes),
        "{exposition}"
    );
    assert_eq!(
        series(&format!(
            "container=\"\",pod=\"\",namespace=\"\",unit=\"{unit}\""
        )),
        Some(tx(count, 100).tx_bytes)
    );
    // Its history, after stop: by unit, pod and container, exact.
    let row = |rows: &[(String, u64)], key: &str| rows.iter().find(|(k, _)| k == key).map(|r| r.1);
    let by_unit = daemon.report("unit")?;
    assert_eq!(
        row(&by_unit, &unit),
        Some(tx(count, 100).tx_bytes),
        "{by_unit:?}"
    );
    assert_eq!(
        row(&by_unit, &scope),
        Some(tx(count, 300).tx_bytes),
        "{by_unit:?}"
    );
    let by_pod = daemon.report("pod")?;
    assert_eq!(
        row(&by_pod, &format!("{namespace}/{pod}")),
        Some(tx(count, 300).tx_bytes),
        "{by_pod:?}"
    );
    let by_container = daemon.report("container")?;
    assert_eq!(
        row(&by_container, container),
        Some(tx(count, 300).tx_bytes),
        "{by_container:?}"
    );
    Ok(())
}

/// `[names]` in the configuration: a UDP service on the sink's port and the test network are
/// named in `kaipo watch --json`'s connections, with the datagrams' exact bytes.
#[test]
fn services_and_networks_named_in_the_config() -> anyhow::Result<()> {
    let net = Net::new(2)?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-names-config-{pid}"));
    fs::create_dir_all(&dir)?;
    let _made = Cleanup(vec![Made::Dir(dir.clone())]);
    // The sink's port is known only once it is bound, so it binds a port picked here.
    let port = 47_000 + (pid % 1000) as u16;
    let config = dir.join("kaipo.toml");
    fs::write(
        &config,
        format!(
            "[names.services]\n\"udp/{port}\" = \"telemetry\"\n\n\
             [names.networks]\n\"10.231.1.8/30\" = \"k15-lab\"\n\"10.231.0.0/16\" = \"k15\"\n"
        ),
    )?;
    let mut watch = Spawned::spawn("kaipo watch", {
        let mut c = Command::new(kaipo_tests::kaipo_bin()?);
        c.arg("--config")
            .arg(&config)
            .args([
                "watch",
                "--json",
                "--interval",
                "200ms",
                "--duration",
                "30s",
            ])
            .args(["--iface", &net.host_if]);
        c
    })?;
    let first = watch.next_line(Duration::from_secs(30))?;
    ensure!(first.starts_with('{'), "{first}: {}", watch.stderr());
    let (count, size) = (12u64, 250u64);
    let to = format!("{}:{port}", net.ns_ip);
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &net.name, TRAFFIC, "udp-sink", &to])
            .arg(count.to_string());
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let _: u16 = sink.expect_num("port", STEP)?;
    let mut sender = Spawned::spawn("udp-send", {
        let mut c = Command::new(TRAFFIC);
        c.args(["udp-send", &to, &count.to_string(), &size.to_string()]);
        c
    })?;
    let sender_pid: u32 = sender.expect_num("pid", STEP)?;
    sender.expect("sent", STEP)?;
    sink.expect("received", STEP)?;
    std::thread::sleep(Duration::from_millis(600));
    watch.interrupt()?;
    let lines = watch.rest_of_output(Duration::from_secs(15))?;
    let mut seen = std::collections::BTreeMap::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(&line)?;
        for c in v["connections"].as_array().into_iter().flatten() {
            if c["pid"].as_u64() == Some(u64::from(sender_pid)) {
                let key = (
                    c["service"].as_str().unwrap_or_default().to_owned(),
                    c["network"].as_str().map(str::to_owned),
                );
                *seen.entry(key).or_insert(0) += c["tx_bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    // The longest prefix names the network; the user's name replaces `udp/PORT`.
    assert_eq!(
        seen,
        [(
            ("telemetry".to_owned(), Some("k15-lab".to_owned())),
            count * (size + UDP4_OVERHEAD)
        )]
        .into()
    );
    Ok(())
}

/// A mistake in `[names]` stops the command with the file, the key and what is allowed.
#[test]
fn a_bad_name_entry_is_a_clear_error() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("kaipo-names-bad-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let _made = Cleanup(vec![Made::Dir(dir.clone())]);
    let config = dir.join("kaipo.toml");
    fs::write(&config, "[names.networks]\n\"10.20.1.0/16\" = \"office\"\n")?;
    let out = Command::new(kaipo_tests::kaipo_bin()?)
        .arg("--config")
        .arg(&config)
        .args(["watch", "--json", "--duration", "1s"])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("names.networks.\"10.20.1.0/16\": 10.20.1.0/16 has bits set past its prefix; the network is 10.20.0.0/16"),
        "{stderr}"
    );
    Ok(())
}

/// Remote names from DNS answers: dnsmasq in the test namespace answers `api.kaipo.test` with a
/// CNAME to `edge.kaipo-cdn.test` and its address; a process there resolves the name (glibc,
/// through the namespace's own resolv.conf) and another sends to the address. Its connection
/// carries the name asked for, not the CNAME's target, and exact bytes; the answer reached the
/// resolving socket over loopback, which kaipo is not counting.
#[test]
fn remotes_are_named_by_the_dns_answers_their_namespace_received() -> anyhow::Result<()> {
    ensure!(
        Command::new("dnsmasq").arg("--version").output().is_ok(),
        "this test needs dnsmasq: run scripts/setup.sh"
    );
    let net = Net::new(3)?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-names-dns-{pid}"));
    fs::create_dir_all(&dir)?;
    let etc = PathBuf::from(format!("/etc/netns/{}", net.name));
    fs::create_dir_all(&etc)?;
    let _made = Cleanup(vec![Made::Dir(dir.clone()), Made::Dir(etc.clone())]);
    fs::write(
        etc.join("resolv.conf"),
        format!("nameserver {}\n", net.ns_ip),
    )?;
    let mut daemon = Daemon::start(&dir.join("daemon"), &net.host_if)?;
    let dnsmasq = Spawned::spawn("dnsmasq", {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &net.name,
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .args([
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
        ])
        .args(["--bind-interfaces", "--user=root", "--port=53"])
        .arg(format!("--listen-address={}", net.ns_ip))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .arg(format!("--host-record=edge.kaipo-cdn.test,{}", net.host_ip))
        .args([
            "--cname=api.kaipo.test,edge.kaipo-cdn.test",
            "--local-ttl=300",
        ]);
        c
    })?;
    let watch_start = Watch::start(&WatchConfig::new(&net.host_if, Duration::from_secs(60)));
    let watch = watch_start.with_context(|| format!("dnsmasq: {}", dnsmasq.stderr()))?;
    let resolved = run(Command::new("ip").args([
        "netns",
        "exec",
        &net.name,
        "getent",
        "ahostsv4",
        "api.kaipo.test",
    ]))
    .with_context(|| format!("dnsmasq: {}", dnsmasq.stderr()))?;
    ensure!(
        resolved.starts_with(&format!("{} ", net.host_ip)),
        "getent said {resolved:?}"
    );
    let (count, size) = (8u64, 120u64);
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new(TRAFFIC);
        c.args([
            "udp-sink",
            &format!("{}:0", net.host_ip),
            &count.to_string(),
        ]);
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let port: u16 = sink.expect_num("port", STEP)?;
    let mut sender = Spawned::spawn("udp-send", {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &net.name, TRAFFIC, "udp-send"])
            .args([
                &format!("{}:{port}", net.host_ip),
                &count.to_string(),
                &size.to_string(),
            ]);
        c
    })?;
    let sender_pid: u32 = sender.expect_num("pid", STEP)?;
    sender.expect("sent", STEP)?;
    sink.expect("received", STEP)?;
    // A damaged answer: a client socket connected to port 53 on loopback gets three bytes
    // (a header cut short). kaipo counts it and names nothing from it.
    run(Command::new("ip")
        .args(["netns", "exec", &net.name, "python3", "-c"])
        .arg(
            "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 53))\n\
         c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5)\n\
         c.connect(('127.0.0.1', 53)); c.send(b'query')\n\
         _, peer = s.recvfrom(512); s.sendto(b'\\x12\\x34\\x81', peer)\n\
         assert c.recv(512) == b'\\x12\\x34\\x81'\n",
        ))?;
    std::thread::sleep(Duration::from_millis(600));
    let run = watch.stop()?;
    dnsmasq.interrupt()?;
    let malformed: u64 = run
        .records
        .iter()
        .filter_map(|r| r.lost.get("dns_malformed"))
        .sum();
    assert_eq!(malformed, 1, "{}", run.stderr);
    // Two live intervals of the daemon and a bit, then its history.
    std::thread::sleep(Duration::from_millis(2500));
    daemon.stop()?;
    let report = daemon.report_json("remote")?;

    let mut named = std::collections::BTreeMap::new();
    for r in &run.records {
        for c in r.connections.iter().filter(|c| c.pid == sender_pid) {
            *named.entry(c.remote_name.clone()).or_insert(0) += c.tx_bytes;
        }
    }
    assert_eq!(
        named,
        [(
            Some("api.kaipo.test".to_owned()),
            count * (size + UDP4_OVERHEAD)
        )]
        .into(),
        "{}",
        run.stderr
    );
    // The history keeps the name with the remote: `report --by remote` shows it.
    let row = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["key"] == net.host_ip.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (row["remote_name"].as_str(), row["tx_bytes"].as_u64()),
        (Some("api.kaipo.test"), Some(count * (size + UDP4_OVERHEAD))),
        "{report}"
    );
    Ok(())
}

/// The same over IPv6 and TCP: the namespace's resolver is asked with `options use-vc`, so
/// glibc sends the query over TCP to dnsmasq's IPv6 address and the AAAA answer comes back as
/// a length-prefixed TCP segment; the sender's IPv6 connection carries the asked name.
#[test]
fn remotes_are_named_from_aaaa_answers_over_tcp() -> anyhow::Result<()> {
    ensure!(
        Command::new("dnsmasq").arg("--version").output().is_ok(),
        "this test needs dnsmasq: run scripts/setup.sh"
    );
    let (net, host6, ns6) = Net::with_ipv6(4)?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-names-dns6-{pid}"));
    fs::create_dir_all(&dir)?;
    let etc = PathBuf::from(format!("/etc/netns/{}", net.name));
    fs::create_dir_all(&etc)?;
    let _made = Cleanup(vec![Made::Dir(dir.clone()), Made::Dir(etc.clone())]);
    fs::write(
        etc.join("resolv.conf"),
        format!("nameserver {ns6}\noptions use-vc\n"),
    )?;
    let dnsmasq = Spawned::spawn("dnsmasq", {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &net.name,
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .args([
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
        ])
        .args(["--bind-interfaces", "--user=root", "--port=53"])
        .arg(format!("--listen-address={ns6}"))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .arg(format!("--host-record=edge6.kaipo-cdn.test,{host6}"))
        .args([
            "--cname=api6.kaipo.test,edge6.kaipo-cdn.test",
            "--local-ttl=300",
        ]);
        c
    })?;
    let watch = Watch::start(&WatchConfig::new(&net.host_if, Duration::from_secs(60)))
        .with_context(|| format!("dnsmasq: {}", dnsmasq.stderr()))?;
    let resolved = run(Command::new("ip").args([
        "netns",
        "exec",
        &net.name,
        "getent",
        "ahostsv6",
        "api6.kaipo.test",
    ]))
    .with_context(|| format!("dnsmasq: {}", dnsmasq.stderr()))?;
    ensure!(
        resolved.starts_with(&format!("{host6} ")),
        "getent said {resolved:?}"
    );
    let (count, size) = (8u64, 120u64);
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new(TRAFFIC);
        c.args(["udp-sink", &format!("[{host6}]:0"), &count.to_string()]);
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let port: u16 = sink.expect_num("port", STEP)?;
    let mut sender = Spawned::spawn("udp-send", {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &net.name, TRAFFIC, "udp-send"])
            .args([
                &format!("[{host6}]:{port}"),
                &count.to_string(),
                &size.to_string(),
            ]);
        c
    })?;
    let sender_pid: u32 = sender.expect_num("pid", STEP)?;
    sender.expect("sent", STEP)?;
    sink.expect("received", STEP)?;
    std::thread::sleep(Duration::from_millis(600));
    let run = watch.stop()?;
    dnsmasq.interrupt()?;
    let mut named = std::collections::BTreeMap::new();
    for r in &run.records {
        for c in r.connections.iter().filter(|c| c.pid == sender_pid) {
            *named.entry(c.remote_name.clone()).or_insert(0) += c.tx_bytes;
        }
    }
    assert_eq!(
        named,
        [(Some("api6.kaipo.test".to_owned()), count * (size + 40 + 8))].into(),
        "{}",
        run.stderr
    );
    let malformed: u64 = run
        .records
        .iter()
        .filter_map(|r| r.lost.get("dns_malformed"))
        .sum();
    assert_eq!(malformed, 0);
    Ok(())
}

/// `kaipo daemon` run inside the test namespace (`ip netns exec`, so its resolver reads the
/// namespace's /etc/netns/NAME/resolv.conf), counting on the namespace's end of the veth, with
/// `config` as its configuration; its snapshots read by a subscriber from the start.
struct NsDaemon {
    daemon: Spawned,
    dir: PathBuf,
    config: PathBuf,
    snapshots: Option<Snapshots>,
}

impl NsDaemon {
    fn start(net: &Net, dir: &Path, config: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let config_path = dir.join("kaipo.toml");
        fs::write(&config_path, config)?;
        let daemon = Spawned::spawn("kaipo daemon", {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &net.name])
                .arg(kaipo_tests::kaipo_bin()?)
                .arg("--config")
                .arg(&config_path)
                .args(["daemon", "--db"])
                .arg(dir.join("kaipo.db"))
                .arg("--socket")
                .arg(dir.join("kaipo.sock"))
                .args(["--interval", "1s", "--live-interval", "1s"])
                .args(["--iface", "k15n"]);
            c
        })?;
        let start = std::time::Instant::now();
        while run(Command::new(kaipo_tests::kaipo_bin()?)
            .args(["status", "--json", "--socket"])
            .arg(dir.join("kaipo.sock")))
        .is_err()
        {
            ensure!(
                start.elapsed() < STEP,
                "the daemon did not come up: {}",
                daemon.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let snapshots = Some(Snapshots::subscribe(dir.join("kaipo.sock"))?);
        Ok(Self {
            daemon,
            dir: dir.to_owned(),
            config: config_path,
            snapshots,
        })
    }

    /// Rewrites the configuration and sends SIGHUP; returns once the daemon logged `expect`.
    fn reload(&self, config: &str, expect: &str) -> anyhow::Result<()> {
        let before = self.daemon.stderr().matches(expect).count();
        fs::write(&self.config, config)?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our running child's.
        unsafe { libc::kill(self.daemon.pid() as i32, libc::SIGHUP) };
        let start = std::time::Instant::now();
        while self.daemon.stderr().matches(expect).count() == before {
            ensure!(
                start.elapsed() < STEP,
                "no {expect:?} after SIGHUP: {}",
                self.daemon.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits two live intervals and a bit, stops the subscriber and the daemon: its snapshots.
    fn stop(&mut self) -> anyhow::Result<Vec<serde_json::Value>> {
        std::thread::sleep(Duration::from_millis(2500));
        let snapshots = self.snapshots.take().context("stopped twice")?.finish()?;
        self.daemon.interrupt()?;
        self.daemon.wait_success(STEP)?;
        Ok(snapshots)
    }

    fn report_json(&self, by: &str) -> anyhow::Result<serde_json::Value> {
        let out = run(Command::new(kaipo_tests::kaipo_bin()?)
            .args([
                "report", "--by", by, "--format", "json", "--top", "0", "--since", "1h",
            ])
            .arg("--db")
            .arg(self.dir.join("kaipo.db")))?;
        Ok(serde_json::from_str(&out)?)
    }
}

/// The daemon's snapshots, read on a thread of their own from subscription to `finish`.
struct Snapshots {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Snapshots {
    fn subscribe(socket: PathBuf) -> anyhow::Result<Self> {
        use std::sync::{atomic::Ordering, Arc, Mutex};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let mut sub = kaipo::api::client::subscribe(&socket).await?;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(snapshot) = sub.next_as::<serde_json::Value>().await? else {
                            break;
                        };
                        seen.lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push(snapshot);
                    }
                    anyhow::Ok(())
                })
            }
        });
        let start = std::time::Instant::now();
        while seen.lock().map(|s| s.is_empty()).unwrap_or(true) {
            ensure!(start.elapsed() < STEP, "no snapshot from the daemon");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { stop, seen, thread })
    }

    fn finish(self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the snapshot thread panicked"))??;
        let seen = self.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(seen.clone())
    }
}

/// dnsmasq inside the namespace on its address, port 53, answering only what `records` says
/// (`--ptr-record=...`), with the namespace's resolv.conf pointing at it. Returns the process
/// and the /etc/netns folder to remove.
fn namespace_dns(net: &Net, dir: &Path, records: &[String]) -> anyhow::Result<(Spawned, PathBuf)> {
    ensure!(
        Command::new("dnsmasq").arg("--version").output().is_ok(),
        "this test needs dnsmasq: run scripts/setup.sh"
    );
    let etc = PathBuf::from(format!("/etc/netns/{}", net.name));
    fs::create_dir_all(&etc)?;
    fs::write(
        etc.join("resolv.conf"),
        format!("nameserver {}\n", net.ns_ip),
    )?;
    let dnsmasq = Spawned::spawn("dnsmasq", {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &net.name,
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .args([
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
        ])
        .args(["--bind-interfaces", "--user=root", "--port=53"])
        .arg(format!("--listen-address={}", net.ns_ip))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .args(records);
        c
    })?;
    Ok((dnsmasq, etc))
}

/// The in-addr.arpa name of an IPv4 address.
fn ptr_name(ip: &str) -> String {
    let mut octets: Vec<&str> = ip.split('.').collect();
    octets.reverse();
    format!("{}.in-addr.arpa", octets.join("."))
}

/// A sender in the namespace sends 10 datagrams of 100 bytes a second for 4 s to a sink on the
/// host's end, with dnsmasq answering the PTR record of the host's address and nothing else
/// (no process resolves a name: no DNS answer names the remote). With `names.reverse_dns` the
/// daemon names the remote `peer.kaipo.test` from the interval after the lookup, in its
/// snapshots and in history; without it (the default), never. Bytes exact either way.
fn reverse_dns_in_the_daemon(n: u8, reverse_dns: bool) -> anyhow::Result<()> {
    let net = Net::in_range("10.234", n)?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-names-rdns-{pid}-{n}"));
    fs::create_dir_all(&dir)?;
    let mut made = Cleanup(vec![Made::Dir(dir.clone())]);
    let (dnsmasq, etc) = namespace_dns(
        &net,
        &dir,
        &[format!(
            "--ptr-record={},peer.kaipo.test",
            ptr_name(&net.host_ip)
        )],
    )?;
    made.0.push(Made::Dir(etc));
    // The namespace's resolver answers the PTR (glibc, as the daemon will ask).
    let start = std::time::Instant::now();
    let resolved = loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.name, "getent", "hosts", &net.host_ip])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() || start.elapsed() > STEP {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        resolved.split_whitespace().collect::<Vec<_>>()
            == [net.host_ip.as_str(), "peer.kaipo.test"],
        "getent said {resolved:?}; dnsmasq: {}",
        dnsmasq.stderr()
    );
    let config = if reverse_dns {
        "[names]\nreverse_dns = true\n"
    } else {
        ""
    };
    let mut daemon = NsDaemon::start(&net, &dir.join("daemon"), config)?;
    let (rate, secs) = (10u64, 4u64);
    let count = rate * secs;
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new(TRAFFIC);
        c.args([
            "udp-sink",
            &format!("{}:0", net.host_ip),
            &count.to_string(),
        ]);
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let port: u16 = sink.expect_num("port", STEP)?;
    let mut sender = Spawned::spawn("udp-rate", {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &net.name, TRAFFIC, "udp-rate"])
            .args([
                &format!("{}:{port}", net.host_ip),
                &rate.to_string(),
                &secs.to_string(),
            ]);
        c
    })?;
    let sender_pid: u32 = sender.expect_num("pid", STEP)?;
    sender.expect("sent", STEP)?;
    sink.expect("received", STEP)?;
    let snapshots = daemon.stop()?;
    dnsmasq.interrupt()?;
    let report = daemon.report_json("remote")?;

    let bytes = count * (100 + UDP4_OVERHEAD);
    // Per snapshot with the sender's traffic: its remote's name, and the bytes.
    let mut seen: Vec<(Option<String>, u64)> = Vec::new();
    for snapshot in &snapshots {
        for c in snapshot["connections"].as_array().into_iter().flatten() {
            if c["pid"].as_u64() == Some(u64::from(sender_pid)) {
                seen.push((
                    c["remote_name"].as_str().map(str::to_owned),
                    c["tx_bytes"].as_u64().unwrap_or(0),
                ));
            }
        }
    }
    let total: u64 = seen.iter().map(|(_, b)| b).sum();
    assert_eq!(total, bytes, "{seen:?}");
    let expected = reverse_dns.then_some("peer.kaipo.test");
    let names: std::collections::BTreeSet<Option<&str>> =
        seen.iter().map(|(n, _)| n.as_deref()).collect();
    if reverse_dns {
        // Unnamed in the interval the lookup was asked at, named from the next one on: the
        // sender's 4 s span at least three snapshots after the first.
        assert_eq!(names, [None, expected].into(), "{seen:?}");
        let first_named = seen.iter().position(|(n, _)| n.is_some()).unwrap_or(0);
        assert!(
            seen[first_named..]
                .iter()
                .all(|(n, _)| n.as_deref() == expected),
            "{seen:?}"
        );
        assert!(seen.len() - first_named >= 3, "{seen:?}");
    } else {
        assert_eq!(names, [None].into(), "{seen:?}");
    }
    let row = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["key"] == net.host_ip.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (row["remote_name"].as_str(), row["tx_bytes"].as_u64()),
        (expected, Some(bytes)),
        "{report}"
    );
    Ok(())
}

#[test]
fn the_daemon_names_remotes_by_reverse_dns_when_configured() -> anyhow::Result<()> {
    reverse_dns_in_the_daemon(10, true)
}

#[test]
fn the_daemon_does_no_reverse_dns_by_default() -> anyhow::Result<()> {
    reverse_dns_in_the_daemon(11, false)
}

/// `[names.services]` changed under a running daemon: SIGHUP applies the new name from the next
/// interval; a file with a bad entry is logged and changes nothing. Three senders of 8 datagrams
/// each, one per configuration, carry the name in force when they sent, in the snapshots and in
/// `report --by service`.
#[test]
fn a_reload_renames_services_and_a_bad_file_changes_nothing() -> anyhow::Result<()> {
    let net = Net::in_range("10.234", 12)?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("kaipo-names-reload-{pid}"));
    fs::create_dir_all(&dir)?;
    let _made = Cleanup(vec![Made::Dir(dir.clone())]);
    let port = 47_000 + (pid % 1000) as u16;
    let named = |name: &str| format!("[names.services]\n\"udp/{port}\" = \"{name}\"\n");
    let mut daemon = NsDaemon::start(&net, &dir.join("daemon"), &named("before"))?;
    let count = 8u64;
    let mut sink = Spawned::spawn("udp-sink", {
        let mut c = Command::new(TRAFFIC);
        c.args([
            "udp-sink",
            &format!("{}:{port}", net.host_ip),
            &(3 * count).to_string(),
        ]);
        c
    })?;
    let _: u32 = sink.expect_num("pid", STEP)?;
    let _: u16 = sink.expect_num("port", STEP)?;
    let send = |size: u64| -> anyhow::Result<u32> {
        let mut sender = Spawned::spawn("udp-send", {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &net.name, TRAFFIC, "udp-send"])
                .args([
                    &format!("{}:{port}", net.host_ip),
                    &count.to_string(),
                    &size.to_string(),
                ]);
            c
        })?;
        let pid: u32 = sender.expect_num("pid", STEP)?;
        sender.expect("sent", STEP)?;
        sender.wait_success(STEP)?;
        // The interval with its datagrams closes before the configuration changes again.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(pid)
    };
    let first = send(100)?;
    daemon.reload(&named("after"), "SIGHUP: reloaded")?;
    let second = send(200)?;
    daemon.reload(
        &format!("{}\"udp/x\" = \"bad\"\n", named("worse")),
        "SIGHUP: keeping the previous configuration",
    )?;
    let log = daemon.daemon.stderr();
    assert!(
        log.contains("key names.services.\"udp/x\": bad port \"x\""),
        "{log}"
    );
    let third = send(300)?;
    sink.expect("received", STEP)?;
    let snapshots = daemon.stop()?;
    let report = daemon.report_json("service")?;

    let mut seen = std::collections::BTreeMap::new();
    for snapshot in &snapshots {
        for c in snapshot["connections"].as_array().into_iter().flatten() {
            let pid = c["pid"].as_u64().unwrap_or(0) as u32;
            if [first, second, third].contains(&pid) {
                *seen
                    .entry((pid, c["service"].as_str().unwrap_or_default().to_owned()))
                    .or_insert(0) += c["tx_bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    let bytes = |size: u64| count * (size + UDP4_OVERHEAD);
    assert_eq!(
        seen,
        [
            ((first, "before".to_owned()), bytes(100)),
            ((second, "after".to_owned()), bytes(200)),
            ((third, "after".to_owned()), bytes(300)),
        ]
        .into()
    );
    let by_service: std::collections::BTreeMap<String, u64> = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["tx_bytes"].as_u64().unwrap_or(0) > 0)
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_owned(),
                r["tx_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        (
            by_service.get("before"),
            by_service.get("after"),
            by_service.get("worse")
        ),
        (Some(&bytes(100)), Some(&(bytes(200) + bytes(300))), None),
        "{report}"
    );
    Ok(())
}
