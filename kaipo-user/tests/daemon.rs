//! `kaipo daemon` end to end: known traffic from known processes over loopback, exact figures in
//! history and over the socket, each caller seeing what they may, bad clients, a damaged
//! database, and nothing left in the kernel after the daemon stops.
//!
//! Needs root (the daemon loads eBPF programs; the unprivileged checks run as nobody through
//! `setpriv`). Tests run one after another: they count kaipo's programs in the kernel.
//!
//! Child processes with a known pid send the traffic: this test binary started again with
//! KAIPO_TEST_ROLE set runs only `child_role`, which plays the part asked for.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::UdpSocket,
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kaipo::{
    api::{client, protocol::StatusReport},
    store::{Dimension, Query, Report, ReportRow, Store},
};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());
const ROLE: &str = "KAIPO_TEST_ROLE";
const NOBODY: u32 = 65534;
/// IPv4 and UDP headers on top of each datagram's payload.
const UDP4_HEADERS: u64 = 28;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests run the daemon, which loads eBPF programs: run them as root"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Waits for `what` to hold, polling; panics with `describe` after `secs`.
fn wait_until(secs: u64, describe: impl Fn() -> String, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what() {
        assert!(
            Instant::now() < deadline,
            "waited {secs} s for: {}",
            describe()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Ids and names of the programs the kernel holds now.
fn loaded_programs() -> HashMap<u32, String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), p.name_as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Ids of the programs that `pid` holds through program and link fds. Counting these rather
/// than every `kaipo_*` program keeps the test right while another kaipo runs beside it.
fn programs_held_by(pid: u32) -> HashSet<u32> {
    let fds = fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("the daemon's fds");
    fds.filter_map(Result::ok)
        .filter_map(|fd| fs::read_to_string(fd.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// Checks that the daemon holds all of kaipo's programs, and returns their ids.
fn daemon_programs(daemon: &Daemon) -> HashSet<u32> {
    let held = programs_held_by(daemon.pid());
    let loaded = loaded_programs();
    let names: HashSet<&str> = held
        .iter()
        .filter_map(|id| loaded.get(id).map(String::as_str))
        .filter(|name| name.starts_with("kaipo_"))
        .collect();
    // Seven programs always run; an eighth (TC ingress) stands in for XDP when another program
    // holds the interface's XDP hook, as a parallel test's daemon may on lo.
    assert!((7..=8).contains(&names.len()), "{names:?}");
    held
}

/// Waits until none of `ids` is loaded any more.
fn wait_unloaded(ids: &HashSet<u32>) {
    wait_until(
        5,
        || format!("programs {ids:?} unloaded"),
        || !loaded_programs().keys().any(|id| ids.contains(id)),
    );
}

/// A folder for one test, removed on drop; 0755 so that nobody can use what is in it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kaipo-daemon-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the scratch folder");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Self(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("lib/kaipo.db")
    }

    fn socket(&self) -> PathBuf {
        self.0.join("run/kaipo.sock")
    }

    /// A copy of `from` in this folder, executable by everyone.
    fn executable(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.0.join(name);
        fs::copy(from, &to).expect("copying a binary");
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod binary");
        to
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running `kaipo daemon`, killed on drop if a test fails before stopping it.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
    socket: PathBuf,
}

impl Daemon {
    /// Starts the daemon on loopback with `extra` flags and waits until it answers on its
    /// socket, which it does only once every program is attached.
    fn start(scratch: &Scratch, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(scratch, extra, &[])
    }

    /// [`Daemon::start`] with variables added to its environment.
    fn start_with_env(scratch: &Scratch, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kaipo"))
            .arg("daemon")
            .arg("--db")
            .arg(scratch.db())
            .arg("--socket")
            .arg(scratch.socket())
            .args([
                "--iface",
                "lo",
                "--include-loopback",
                "--live-interval",
                "250ms",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kaipo daemon");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut daemon = Daemon {
            child,
            stderr,
            socket: scratch.socket(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = daemon.child.try_wait().expect("waiting for the daemon") {
                panic!(
                    "the daemon exited ({status}) during start: {}",
                    daemon.stderr()
                );
            }
            if block_on(client::status(&daemon.socket)).is_ok() {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "no answer in 30 s: {}",
                daemon.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn status(&self) -> StatusReport {
        block_on(client::status(&self.socket)).expect("status from the daemon")
    }

    /// Stops the daemon with `signal` and returns how it exited.
    fn stop(mut self, signal: libc::c_int) -> (ExitStatus, String) {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the daemon") {
                // The stderr thread ends with the pipe; give it a moment to catch the last line.
                thread::sleep(Duration::from_millis(50));
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "the daemon did not stop in 30 s");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child that sent `count` UDP datagrams of `size` bytes to a socket of its own over
/// loopback, and stays alive until dropped so that the daemon can read what it is.
struct Sender {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Sender {
    fn start(program: Option<&Path>, as_nobody: bool, count: u64, size: u64) -> Sender {
        let me = std::env::current_exe().expect("the test binary");
        let program = program.unwrap_or(&me);
        let mut cmd = if as_nobody {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(program);
            cmd
        } else {
            Command::new(program)
        };
        let mut child = cmd
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env(ROLE, "sender")
            .env("KAIPO_TEST_COUNT", count.to_string())
            .env("KAIPO_TEST_SIZE", size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting a sender");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the sender did not report in 20 s");
            // libtest prints "test child_role ... " just before, on the same line.
            if line.contains("KAIPO-SENT") {
                break;
            }
        }
        let stdin = child.stdin.take();
        Sender { child, stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Not a test of its own: the entry point of the child processes above. Run without
/// KAIPO_TEST_ROLE, it has nothing to do.
#[test]
fn child_role() {
    match std::env::var(ROLE).as_deref() {
        Ok("sender") => send_role(),
        Ok("client") => client_role(),
        Ok(other) => panic!("unknown {ROLE} {other}"),
        Err(_) => {}
    }
}

fn send_role() {
    let number = |var: &str| -> usize {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{var} not set"))
    };
    let (count, size) = (number("KAIPO_TEST_COUNT"), number("KAIPO_TEST_SIZE"));
    let rx = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    tx.connect(rx.local_addr().expect("receiver address"))
        .expect("connect");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let payload = vec![0x5a_u8; size];
    let mut buf = vec![0u8; size + 1];
    // One at a time, so that none is dropped on a full receive queue.
    for _ in 0..count {
        assert_eq!(tx.send(&payload).expect("send"), size);
        assert_eq!(rx.recv(&mut buf).expect("recv"), size);
    }
    println!("KAIPO-SENT {count} {size}");
    std::io::stdout().flush().expect("flush");
    // Until the test closes stdin.
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// The IP-layer bytes of `count` datagrams of `size` bytes.
fn udp_bytes(count: u64, size: u64) -> u64 {
    count * (size + UDP4_HEADERS)
}

fn process_in(status: &StatusReport, pid: u32) -> Option<&kaipo::pipeline::totals::ProcessTotal> {
    status.totals.processes.iter().find(|p| p.pid == pid)
}

/// Waits until the daemon's totals for `pid` reach `bytes` each way.
fn wait_for_totals(daemon: &Daemon, pid: u32, bytes: u64) -> StatusReport {
    let mut last = None;
    wait_until(
        20,
        || format!("{bytes} bytes each way for pid {pid}"),
        || {
            let status = daemon.status();
            let done = process_in(&status, pid)
                .is_some_and(|p| p.total.rx_bytes >= bytes && p.total.tx_bytes >= bytes);
            last = Some(status);
            done
        },
    );
    last.expect("a status")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn last_hour(by: Dimension) -> Query {
    let now = now_ms();
    Query {
        from_ms: now - 3_600_000,
        to_ms: now + 60_000,
        by,
        top: 0,
        uid: None,
        per: None,
    }
}

/// Rows of a report by process, keyed by pid: (rx bytes, tx bytes, rx packets, tx packets).
fn by_pid(report: &Report) -> HashMap<u32, (u64, u64, u64, u64)> {
    report
        .rows
        .iter()
        .filter_map(|r| {
            let pid = r.key.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()?;
            Some((pid, (r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)))
        })
        .collect()
}

fn history(db: &Path) -> HashMap<u32, (u64, u64, u64, u64)> {
    let mut store = Store::open_read_only(db).expect("opening history");
    // A batch is stamped with its slot of the store interval's grid: with `--interval 1d`
    // that slot began at midnight UTC, so reach back past it.
    let query = Query {
        from_ms: now_ms() - 26 * 3_600_000,
        ..last_hour(Dimension::Process)
    };
    by_pid(&store.query(&query).expect("querying history"))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

/// Capability sets and no_new_privs of every thread of `pid`.
fn thread_privileges(pid: u32) -> Vec<HashMap<String, String>> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    tasks
        .filter_map(Result::ok)
        .map(|task| {
            let status = fs::read_to_string(task.path().join("status")).expect("task status");
            status
                .lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.starts_with("Cap") || *k == "NoNewPrivs" || *k == "Uid")
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn history_is_exact_survives_a_restart_and_gets_the_last_interval() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("history");
    // First run: 500 ms store intervals, so that history fills while the daemon runs.
    let daemon = Daemon::start(&scratch, &["--interval", "500ms"]);
    let programs = daemon_programs(&daemon);
    assert_eq!(mode(&scratch.socket()), 0o666, "socket 0666");
    assert_eq!(mode(&scratch.0.join("run")), 0o755, "socket folder 0755");
    assert_eq!(mode(&scratch.db()) & 0o777, 0o640, "database 0640");
    // Privileges: every thread holds CAP_SYS_PTRACE alone, in every set that could give
    // more back, with no_new_privs; and it still counts (map reads need no capability).
    for task in thread_privileges(daemon.pid()) {
        let ptrace = format!("{:016x}", 1u64 << 19);
        assert_eq!(task["CapEff"], ptrace, "{task:?}");
        assert_eq!(task["CapPrm"], ptrace, "{task:?}");
        assert_eq!(task["CapBnd"], ptrace, "{task:?}");
        assert_eq!(task["CapInh"], "0000000000000000", "{task:?}");
        assert_eq!(task["CapAmb"], "0000000000000000", "{task:?}");
        assert_eq!(task["NoNewPrivs"], "1", "{task:?}");
    }
    assert!(
        daemon
            .stderr()
            .contains("capabilities kept: CAP_SYS_PTRACE"),
        "{}",
        daemon.stderr()
    );

    let first = Sender::start(None, false, 100, 300);
    let expected = udp_bytes(100, 300);
    let status = wait_for_totals(&daemon, first.pid(), expected);
    let p = process_in(&status, first.pid()).expect("the sender");
    assert_eq!(
        (
            p.total.rx_bytes,
            p.total.tx_bytes,
            p.total.rx_packets,
            p.total.tx_packets
        ),
        (expected, expected, 100, 100),
        "{p:?}"
    );
    let me = std::env::current_exe().expect("the test binary");
    let exe_name = me.file_name().and_then(|n| n.to_str()).expect("a name");
    assert_eq!(p.app, exe_name);
    assert_eq!((p.uid, p.user.as_deref()), (0, Some("root")));
    assert!(p.start_time > 0);
    drop(first);

    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    wait_unloaded(&programs);
    assert!(!scratch.socket().exists(), "the socket is removed at exit");
    let first_pid = status
        .totals
        .processes
        .iter()
        .find(|p| p.app == exe_name)
        .map(|p| p.pid);
    let first_pid = first_pid.expect("the first sender");
    let stored = history(&scratch.db());
    assert_eq!(
        stored.get(&first_pid),
        Some(&(expected, expected, 100, 100)),
        "{stored:?}"
    );

    // `kaipo report` reads the same figures from the file.
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args([
            "report", "--format", "json", "--by", "process", "--since", "1h", "--db",
        ])
        .arg(scratch.db())
        .output()
        .expect("running kaipo report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let rows: Vec<ReportRow> = serde_json::from_value(report["rows"].clone()).expect("report rows");
    let report = Report {
        rows,
        ..Report::default()
    };
    assert_eq!(
        by_pid(&report).get(&first_pid),
        Some(&(expected, expected, 100, 100))
    );

    // Second run on the same file, with a store interval far longer than the test: the
    // second sender's traffic reaches history only through the flush at SIGINT.
    let daemon = Daemon::start(&scratch, &["--interval", "1d"]);
    let programs = daemon_programs(&daemon);
    let asked = block_on(client::query(
        &daemon.socket,
        &last_hour(Dimension::Process),
    ))
    .expect("a query over the socket");
    assert_eq!(
        by_pid(&asked).get(&first_pid),
        Some(&(expected, expected, 100, 100))
    );
    let second = Sender::start(None, false, 50, 100);
    let second_pid = second.pid();
    let expected2 = udp_bytes(50, 100);
    wait_for_totals(&daemon, second_pid, expected2);
    drop(second);
    let asked = block_on(client::query(
        &daemon.socket,
        &last_hour(Dimension::Process),
    ))
    .expect("a query over the socket");
    assert_eq!(
        by_pid(&asked).get(&second_pid),
        None,
        "not in history before the stop"
    );
    let (exit, stderr) = daemon.stop(libc::SIGINT);
    assert!(exit.success(), "exit {exit}: {stderr}");
    wait_unloaded(&programs);
    let stored = history(&scratch.db());
    assert_eq!(
        stored.get(&first_pid),
        Some(&(expected, expected, 100, 100)),
        "no double count"
    );
    assert_eq!(
        stored.get(&second_pid),
        Some(&(expected2, expected2, 50, 50)),
        "{stored:?}"
    );
}

#[test]
fn each_caller_sees_only_what_they_may() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("callers");
    let me = std::env::current_exe().expect("the test binary");
    // Longer than a command name (15 bytes): only the executable's path gives the whole name.
    let nobody_exe = scratch.executable(&me, "kaipo-nobody-sender-bin");
    let kaipo = scratch.executable(Path::new(env!("CARGO_BIN_EXE_kaipo")), "kaipo");
    let daemon = Daemon::start(&scratch, &["--interval", "500ms"]);

    let root_sender = Sender::start(None, false, 40, 200);
    let nobody_sender = Sender::start(Some(&nobody_exe), true, 30, 500);
    let (root_bytes, nobody_bytes) = (udp_bytes(40, 200), udp_bytes(30, 500));
    wait_for_totals(&daemon, root_sender.pid(), root_bytes);
    let status = wait_for_totals(&daemon, nobody_sender.pid(), nobody_bytes);
    let theirs = process_in(&status, nobody_sender.pid()).expect("nobody's sender");
    assert_eq!((theirs.uid, theirs.total.tx_bytes), (NOBODY, nobody_bytes));
    // The daemon, without root's other capabilities, still reads another user's executable.
    assert_eq!(theirs.app, "kaipo-nobody-sender-bin");
    assert!(status.caller.privileged && status.interfaces == ["lo"]);
    // Every lost counter, by the names `watch --json` uses, capture drops included.
    let lost = serde_json::to_value(status.totals.lost.expect("root sees the lost counters"))
        .expect("lost as JSON");
    let names: Vec<&str> = lost
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = kaipo::model::Lost::NAMES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(status.totals.attribution.is_some());
    // How full the kernel's maps are, with their capacities (sockets: the slots and the shared
    // map together); the senders' sockets are counted there.
    let maps = status.maps.expect("root sees the kernel maps");
    assert_eq!(
        (maps.sockets_max, maps.flows_max),
        (
            u64::from(kaipo_common::MAX_SOCKETS) + u64::from(kaipo_common::SOCK_SLOT_COUNT),
            Some(u64::from(kaipo_common::MAX_FLOWS))
        )
    );
    assert!(
        maps.sockets >= 1 && maps.sockets <= maps.sockets_max,
        "{maps:?}"
    );
    assert!(status
        .totals
        .interfaces
        .iter()
        .any(|i| i.name == "lo" && i.total.tx_bytes > 0));

    // As nobody: their own process, exactly, and nothing of root's, no interfaces.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&kaipo)
        .args(["status", "--json", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("running kaipo status as nobody");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mine: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(
        mine["caller"],
        serde_json::json!({"uid": NOBODY, "privileged": false})
    );
    assert_eq!(mine["interfaces"], serde_json::json!([]));
    assert_eq!(mine["totals"]["interfaces"], serde_json::json!([]));
    assert_eq!(mine["totals"]["unattributed"]["rx_bytes"], 0);
    // Nothing of the host as a whole: no attribution, no lost counters, no database path.
    assert_eq!(mine["attributed_ratio"], Value::Null);
    assert_eq!(mine["totals"].get("attribution"), None, "{mine}");
    assert_eq!(mine["totals"].get("lost"), None, "{mine}");
    assert_eq!(mine.get("maps"), None, "{mine}");
    assert_eq!(mine["store"]["path"], Value::Null);
    assert_eq!(mine["store"]["last_error"], Value::Null);
    let processes = mine["totals"]["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 1, "{processes:?}");
    assert_eq!(processes[0]["pid"], nobody_sender.pid());
    assert_eq!(processes[0]["rx_bytes"], nobody_bytes);
    assert_eq!(processes[0]["tx_bytes"], nobody_bytes);
    let apps = mine["totals"]["apps"].as_array().expect("apps");
    assert!(apps.iter().all(|a| a["uid"] == NOBODY), "{apps:?}");

    let table = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&kaipo)
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("running kaipo status as nobody");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("showing only the processes of uid 65534"),
        "{text}"
    );
    assert!(
        text.contains(&format!(" {} ", nobody_sender.pid())),
        "{text}"
    );
    assert!(
        !text.contains(&format!(" {} ", root_sender.pid())),
        "{text}"
    );
    assert!(!text.contains("INTERFACE"), "{text}");

    // History over the socket: nobody's query is limited to nobody, whatever it asks.
    let everyone = last_hour(Dimension::Process);
    wait_until(
        10,
        || "both senders in history".into(),
        || {
            let rows = by_pid(&block_on(client::query(&daemon.socket, &everyone)).expect("query"));
            rows.contains_key(&root_sender.pid()) && rows.contains_key(&nobody_sender.pid())
        },
    );
    let asked = run_client_as_nobody(&nobody_exe, &daemon.socket, "query");
    let rows = by_pid(&serde_json::from_value(asked["report"].clone()).expect("a report"));
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        [&nobody_sender.pid()],
        "{asked}"
    );
    let snapshot = run_client_as_nobody(&nobody_exe, &daemon.socket, "subscribe");
    let snap = &snapshot["snapshot"];
    assert_eq!(snap["interfaces"], serde_json::json!([]));
    assert!(snap["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .all(|p| p["uid"] == NOBODY));
    let totals = snap["totals"]["processes"].as_array().expect("totals");
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(totals[0]["pid"], nobody_sender.pid());

    // A member of group kaipo sees everything, like root.
    let group = KaipoGroup::ensure();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--inh-caps=-all"])
        .arg(format!("--groups={}", group.gid))
        .arg(&kaipo)
        .args(["status", "--json", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("running kaipo status as nobody in group kaipo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let member: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(member["caller"]["privileged"], true);
    let pids: Vec<&Value> = member["totals"]["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| &p["pid"])
        .collect();
    assert!(pids.contains(&&Value::from(root_sender.pid())), "{pids:?}");
    assert_eq!(member["interfaces"], serde_json::json!(["lo"]));
    drop(group);

    // Root's table shows both.
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("running kaipo status");
    let text = String::from_utf8_lossy(&out.stdout);
    for pid in [root_sender.pid(), nobody_sender.pid()] {
        assert!(text.contains(&format!(" {pid} ")), "{pid} in {text}");
    }
    assert!(
        text.contains("INTERFACE") && text.contains("attributed since start:"),
        "{text}"
    );
    drop((root_sender, nobody_sender));
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
}

/// Group `kaipo`, created for the test when the machine has none (and then removed).
struct KaipoGroup {
    gid: u32,
    created: bool,
}

impl KaipoGroup {
    fn ensure() -> KaipoGroup {
        let lookup = || {
            let out = Command::new("getent")
                .args(["group", "kaipo"])
                .output()
                .ok()?;
            let line = String::from_utf8(out.stdout).ok()?;
            line.split(':').nth(2)?.trim().parse().ok()
        };
        if let Some(gid) = lookup() {
            return KaipoGroup {
                gid,
                created: false,
            };
        }
        let status = Command::new("groupadd")
            .args(["--system", "kaipo"])
            .status()
            .expect("running groupadd");
        assert!(status.success(), "groupadd kaipo: {status}");
        KaipoGroup {
            gid: lookup().expect("group kaipo after groupadd"),
            created: true,
        }
    }
}

impl Drop for KaipoGroup {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("groupdel").arg("kaipo").status();
        }
    }
}

/// Runs the test binary's `client` role as nobody: one request over the socket, and the
/// first answer line, parsed.
fn run_client_as_nobody(program: &Path, socket: &Path, op: &str) -> Value {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(program)
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, "client")
        .env("KAIPO_TEST_OP", op)
        .env("KAIPO_TEST_SOCKET", socket)
        .output()
        .expect("running the client role as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("KAIPO-ANSWER ").map(|(_, answer)| answer))
        .unwrap_or_else(|| {
            panic!(
                "no answer: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("an answer line")
}

/// Sends one request (`query` for the last hour with no uid, or `subscribe`) and prints the
/// first answer line.
fn client_role() {
    let socket = std::env::var("KAIPO_TEST_SOCKET").expect("KAIPO_TEST_SOCKET");
    let request = match std::env::var("KAIPO_TEST_OP").as_deref() {
        Ok("query") => kaipo::api::protocol::Request::Query(last_hour(Dimension::Process)),
        Ok("subscribe") => kaipo::api::protocol::Request::Subscribe,
        other => panic!("unknown op {other:?}"),
    };
    let mut stream = UnixStream::connect(&socket).expect("connecting as nobody");
    stream
        .write_all(request.to_line().as_bytes())
        .expect("sending");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("reading");
    println!("KAIPO-ANSWER {}", line.trim_end());
}

/// Sends `request` on a fresh connection and returns every line the daemon sends before it
/// closes the connection.
fn exchange(socket: &Path, request: &[u8]) -> Vec<Value> {
    let stream = UnixStream::connect(socket).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A long request may not fit the socket's buffer: write it from another thread while
    // this one reads the answer.
    let mut writer = stream.try_clone().expect("clone");
    let request = request.to_vec();
    let sending = thread::spawn(move || {
        // The daemon may close before it has read everything: that is what is tested.
        let _ = writer.write_all(&request);
    });
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        match line {
            Ok(line) => lines.push(serde_json::from_str(&line).expect("a JSON answer")),
            // A reset after the daemon closed with unread input: the end.
            Err(_) => break,
        }
    }
    sending.join().expect("the writer thread");
    lines
}

#[test]
fn bad_clients_get_an_error_and_everyone_else_is_served() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("clients");
    let daemon = Daemon::start(&scratch, &["--interval", "500ms"]);

    // A subscriber that never reads, for the whole test.
    let mut idle_subscriber = UnixStream::connect(&daemon.socket).expect("connecting");
    idle_subscriber
        .write_all(b"{\"v\":1,\"op\":\"subscribe\"}\n")
        .expect("subscribing");

    let oversized = format!(
        "{{\"v\":1,\"op\":\"status\",\"pad\":\"{}\"}}\n",
        "x".repeat(100_000)
    );
    let cases: [(&[u8], &str); 4] = [
        (b"this is not json\n", "not valid JSON"),
        (b"{\"v\":1,\"op\":\"status\"\n", "not valid JSON"),
        (
            b"{\"v\":1,\"op\":\"query\",\"query\":{\"by\":\"weather\"}}\n",
            "invalid query",
        ),
        (oversized.as_bytes(), "longer than 65536 bytes"),
    ];
    for (request, expected) in cases {
        let answers = exchange(&daemon.socket, request);
        assert_eq!(
            answers.len(),
            1,
            "one answer, then the connection closes: {answers:?}"
        );
        assert_eq!(answers[0]["v"], 1);
        assert_eq!(answers[0]["ok"], false);
        let error = answers[0]["error"].as_str().expect("an error message");
        assert!(error.contains(expected), "{error}");
    }

    // Many clients at once, each answered.
    let socket = daemon.socket.clone();
    let answered = block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move { client::status(&socket).await }));
        }
        let mut ok = 0;
        for task in tasks {
            if task.await.expect("a client task").is_ok() {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(answered, 64);
    // And the live figures keep moving with the idle subscriber still connected.
    let intervals = daemon.status().bus.intervals;
    wait_until(
        10,
        || "more live intervals".into(),
        || daemon.status().bus.intervals >= intervals + 4,
    );
    assert_eq!(daemon.status().bus.subscribers, 1);
    // The client library's subscription reads typed snapshots, one per live interval.
    let socket = daemon.socket.clone();
    let (first, second) = block_on(async move {
        let mut live = client::subscribe(&socket).await.expect("subscribing");
        let first = live.next().await.expect("a snapshot").expect("not the end");
        let second = live.next().await.expect("a snapshot").expect("not the end");
        (first, second)
    });
    assert!(first.totals.since_ms > 0);
    assert_eq!(first.totals.interfaces[0].name, "lo");
    let ts = |s: &kaipo::api::protocol::Snapshot| s.interval["ts_ms"].as_u64().expect("ts_ms");
    assert!(ts(&second) > ts(&first));
    assert_eq!(first.interval["backend"], "ebpf");
    // SIGHUP (reloading) is not supported yet: it must not stop the daemon.
    // SAFETY: sending a signal to our own child.
    assert_eq!(
        unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
    let intervals = daemon.status().bus.intervals;
    wait_until(
        10,
        || "live intervals after SIGHUP".into(),
        || daemon.status().bus.intervals >= intervals + 2,
    );
    drop(idle_subscriber);
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
}

#[test]
fn a_damaged_database_is_moved_aside_and_a_fresh_one_started() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("damaged");
    fs::create_dir_all(scratch.db().parent().expect("a parent")).expect("mkdir");
    // Bytes that no SQLite header starts with, from a fixed-seed generator.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let junk: Vec<u8> = (0..8192)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    fs::write(scratch.db(), &junk).expect("writing junk");

    let daemon = Daemon::start(&scratch, &["--interval", "500ms"]);
    let stderr = daemon.stderr();
    let moved = stderr
        .split("moved the unusable file to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no word of the damaged file on stderr: {stderr}"));
    let moved = PathBuf::from(moved);
    assert!(
        moved.starts_with(scratch.db().parent().expect("a parent")),
        "{}",
        moved.display()
    );
    assert_eq!(
        fs::read(&moved).expect("the moved file"),
        junk,
        "moved as it was"
    );
    let status = daemon.status();
    let note = status
        .store
        .note
        .expect("status tells about the moved file");
    assert!(note.contains(&moved.display().to_string()), "{note}");
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    // The fresh database is kaipo's and readable.
    Store::open_read_only(scratch.db()).expect("a fresh history");
}

#[test]
fn the_daemon_needs_root_and_says_so() {
    require_root();
    let scratch = Scratch::new("unprivileged");
    let kaipo = scratch.executable(Path::new(env!("CARGO_BIN_EXE_kaipo")), "kaipo");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&kaipo)
        .arg("daemon")
        .arg("--db")
        .arg(scratch.db())
        .arg("--socket")
        .arg(scratch.socket())
        .output()
        .expect("running kaipo daemon as nobody");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kaipo needs root"), "{stderr}");
    assert!(!scratch.db().exists() && !scratch.socket().exists());
}

#[test]
fn status_without_a_daemon_says_how_to_start_one() {
    let scratch = Scratch::new("nodaemon");
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(["status", "--socket"])
        .arg(scratch.socket())
        .output()
        .expect("running kaipo status");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no kaipo daemon is running"), "{stderr}");
    assert!(stderr.contains("sudo kaipo daemon"), "{stderr}");
}

fn sighup(daemon: &Daemon) {
    // SAFETY: sending a signal to our own child.
    assert_eq!(
        unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
}

/// This month's bytes of `app` both ways in history, as `kaipo report --since <month start>`
/// reads them.
fn stored_this_month(db: &Path, app: &str) -> u64 {
    let (month_start, month_end) = kaipo::alert::quota::month_bounds(now_ms() as u64);
    let Ok(mut store) = Store::open_read_only(db) else {
        return 0;
    };
    let query = Query {
        from_ms: month_start as i64,
        to_ms: month_end as i64,
        ..last_hour(Dimension::App)
    };
    store
        .query(&query)
        .expect("querying history")
        .rows
        .iter()
        .find(|r| r.key == app)
        .map_or(0, |r| r.rx_bytes + r.tx_bytes)
}

/// The one firing alert of `rule` in `daemon`'s status, once it is there:
/// (used bytes, quota bytes, fired at).
fn quota_alert(daemon: &Daemon, rule: &str, secs: u64) -> (Option<u64>, Option<u64>, u64) {
    let mut found = None;
    wait_until(
        secs,
        || {
            format!(
                "alert {rule} firing: {:?}\n{}",
                daemon.status().alerts,
                daemon.stderr()
            )
        },
        || {
            found = daemon
                .status()
                .alerts
                .iter()
                .find(|n| n.rule == rule)
                .map(|n| (n.evidence.used_bytes, n.evidence.quota_bytes, n.fired_ms));
            found.is_some()
        },
    );
    found.expect("an alert")
}

/// Lines of `text` that contain `what`.
fn lines_with(text: &str, what: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// A quota rule added or changed by SIGHUP counts this month's history (it used to start from
/// zero), fires at once when that is over the quota (it used to wait the default minute), and
/// so does one read at start; a bad file changes nothing and says why in one line.
#[test]
fn quotas_count_history_on_reload_and_start_and_bad_reloads_change_nothing() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("quota");
    let config = scratch.0.join("kaipo.toml");
    let config_arg = config.to_str().expect("a UTF-8 path").to_owned();
    fs::write(&config, "[alerts]\n").expect("config");
    let args = ["--interval", "1s", "--config", config_arg.as_str()];
    let daemon = Daemon::start(&scratch, &args);
    let me = std::env::current_exe().expect("the test binary");
    let app = "kaipo-quota-app";
    let program = scratch.executable(&me, app);
    // 200 datagrams of 1000 bytes, each counted sent and received by the app.
    let sender = Sender::start(Some(&program), false, 200, 1000);
    let each_way = udp_bytes(200, 1000);
    let both = 2 * each_way;
    assert_eq!(both, 411_200);
    wait_for_totals(&daemon, sender.pid(), each_way);
    drop(sender);
    wait_until(
        20,
        || format!("{both} bytes of {app} in history"),
        || stored_this_month(&scratch.db(), app) == both,
    );

    let rule = |quota: u64, extra: &str| {
        format!(
            "[alerts]\n[[alerts.rule]]\nname = \"monthly\"\nkind = \"quota\"\ntarget = \"{app}\"\nquota = {quota}\n{extra}"
        )
    };
    // Added by a reload, with the default `for` of one minute: fires within seconds.
    fs::write(&config, rule(400_000, "")).expect("config");
    sighup(&daemon);
    let (used, quota, first_fired) = quota_alert(&daemon, "monthly", 15);
    assert_eq!((used, quota), (Some(both), Some(400_000)));
    // Changed: cleared, then read from history again.
    fs::write(&config, rule(300_000, "")).expect("config");
    sighup(&daemon);
    let mut changed = None;
    wait_until(
        15,
        || format!("a refired alert: {}", daemon.stderr()),
        || {
            let a = quota_alert(&daemon, "monthly", 5);
            changed = Some(a);
            a.1 == Some(300_000)
        },
    );
    let (used, _, fired) = changed.expect("the changed alert");
    assert_eq!(used, Some(both));
    assert!(fired > first_fired);
    assert_eq!(
        lines_with(
            &daemon.stderr(),
            "counts 411200 bytes from this month's history"
        )
        .len(),
        2,
        "{}",
        daemon.stderr()
    );

    // Bad files, each of which would also lower the quota: nothing changes, one line each.
    let app_total = |d: &Daemon| {
        d.status()
            .totals
            .apps
            .iter()
            .find(|a| a.app == app)
            .map(|a| (a.total.rx_bytes, a.total.tx_bytes))
    };
    assert_eq!(app_total(&daemon), Some((each_way, each_way)));
    let bad = [
        (
            rule(100, "fro = \"1s\"\n"),
            format!("{config_arg}, line 7, key alerts.rule.fro: unknown field `fro`, expected one of `name`, `kind`, `scope`, `target`, `direction`, `above`, `for`, `learn`, `score`, `quota`"),
        ),
        (
            format!("[daemon]\ninterval = \"4000d\"\n{}", rule(100, "")),
            format!("{config_arg}, line 2, key daemon.interval: '4000d' is out of range: a duration is at most 3650d"),
        ),
        (
            rule(100, "for = \"99999d\"\n"),
            format!("{config_arg}, line 7, key alerts.rule.for: '99999d' is out of range: a duration is at most 3650d"),
        ),
        (
            rule(100, "scope = \"user\"\n"),
            format!("{config_arg}, line 3, key alerts.rule 'monthly': kind = \"quota\" needs quota = BYTES, target = NAME and scope = \"app\" or \"interface\""),
        ),
    ];
    for (n, (text, reason)) in bad.iter().enumerate() {
        fs::write(&config, text).expect("config");
        sighup(&daemon);
        let marker = "kaipo: SIGHUP: keeping the previous configuration: ";
        wait_until(
            10,
            || format!("{} refusals: {}", n + 1, daemon.stderr()),
            || lines_with(&daemon.stderr(), marker).len() == n + 1,
        );
        let refusals = lines_with(&daemon.stderr(), marker);
        assert_eq!(refusals[n], format!("{marker}{reason}"));
        let now = quota_alert(&daemon, "monthly", 1);
        assert_eq!(now, (Some(both), Some(300_000), fired), "after {reason}");
    }
    assert_eq!(lines_with(&daemon.stderr(), "reloaded").len(), 2);
    assert_eq!(
        app_total(&daemon),
        Some((each_way, each_way)),
        "the counters are kept"
    );

    // A restart reads the same figure at start.
    fs::write(&config, rule(300_000, "")).expect("config");
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    assert_eq!(stored_this_month(&scratch.db(), app), both);
    let daemon = Daemon::start(&scratch, &args);
    let (used, quota, _) = quota_alert(&daemon, "monthly", 15);
    assert_eq!((used, quota), (Some(both), Some(300_000)));
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
}

/// A panic in a task (here the reload's, through a trigger only debug builds read) ends the
/// daemon with status 101 and one line; it used to end only the task, and the daemon then
/// exited 0, which systemd does not restart.
#[cfg(debug_assertions)]
#[test]
fn a_panic_in_any_task_ends_the_daemon_with_a_failure() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("panic");
    let config = scratch.0.join("kaipo.toml");
    fs::write(&config, "").expect("config");
    let mut daemon = Daemon::start_with_env(
        &scratch,
        &["--config", config.to_str().expect("a UTF-8 path")],
        &[(kaipo::daemon::reload::PANIC_ON_RELOAD, "1")],
    );
    let programs = daemon_programs(&daemon);
    sighup(&daemon);
    let mut exit = None;
    let said = Arc::clone(&daemon.stderr);
    wait_until(
        15,
        || format!("the daemon to exit: {}", said.lock().unwrap()),
        || {
            exit = daemon.child.try_wait().expect("waiting for the daemon");
            exit.is_some()
        },
    );
    thread::sleep(Duration::from_millis(50));
    let stderr = daemon.stderr();
    assert_eq!(exit.and_then(|e| e.code()), Some(101), "{stderr}");
    let said = lines_with(&stderr, "panicked");
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(
        said[0].starts_with("kaipo: internal error: thread '")
            && said[0].ends_with(": KAIPO_TEST_PANIC_ON_RELOAD is set; exiting with status 101"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("note:")).count(),
        0,
        "{stderr}"
    );
    wait_unloaded(&programs);
}

/// With minute-long store intervals the traffic is still in the open batch (or split across
/// one boundary) when SIGHUP adds the rule: history plus what no batch holds yet is still the
/// exact figure, and the same figure is in history once the daemon stops.
#[test]
fn a_quota_added_by_reload_counts_traffic_no_batch_holds_yet() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("quota-pending");
    let config = scratch.0.join("kaipo.toml");
    fs::write(&config, "").expect("config");
    let daemon = Daemon::start(
        &scratch,
        &[
            "--interval",
            "1m",
            "--config",
            config.to_str().expect("UTF-8"),
        ],
    );
    let me = std::env::current_exe().expect("the test binary");
    let app = "kaipo-quota-live";
    let program = scratch.executable(&me, app);
    let sender = Sender::start(Some(&program), false, 150, 700);
    let each_way = udp_bytes(150, 700);
    assert_eq!(2 * each_way, 218_400);
    wait_for_totals(&daemon, sender.pid(), each_way);
    drop(sender);
    fs::write(
        &config,
        format!(
            "[alerts]\n[[alerts.rule]]\nname = \"live\"\nkind = \"quota\"\ntarget = \"{app}\"\nquota = 200000\n"
        ),
    )
    .expect("config");
    sighup(&daemon);
    let (used, quota, _) = quota_alert(&daemon, "live", 15);
    assert_eq!((used, quota), (Some(218_400), Some(200_000)));
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    assert_eq!(stored_this_month(&scratch.db(), app), 218_400);
}

/// Runs `kaipo daemon` on `db` and `socket` with `extra` flags, expecting it to exit by itself
/// within 30 s; returns its exit code and stderr. A daemon that keeps running is killed and
/// shows as no exit code.
fn run_to_exit(db: &Path, socket: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .arg("daemon")
        .arg("--db")
        .arg(db)
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kaipo daemon");
    let mut pipe = child.stderr.take().expect("piped stderr");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting for the daemon") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    (code, reader.join().expect("the stderr reader"))
}

/// Every file and folder under `dir` with its size and modification time.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d)
            .expect("read dir")
            .map(|e| e.expect("entry"))
        {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                todo.push(entry.path());
            }
            let mtime = meta.modified().expect("mtime");
            out.push((entry.path(), meta.len(), mtime));
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_daemon_on_one_database_is_refused_and_touches_nothing() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("twice");
    // An hour per interval: the first daemon writes nothing while the second tries.
    let first = Daemon::start(&scratch, &["--interval", "1h"]);
    let before = listing(&scratch.0);
    let second_socket = scratch.0.join("run/second.sock");
    let (code, stderr) = run_to_exit(
        &scratch.db(),
        &second_socket,
        &["--iface", "lo", "--include-loopback"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!(
        "another kaipo daemon (pid {}) is recording history in {}",
        first.pid(),
        scratch.db().display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(
        listing(&scratch.0),
        before,
        "the second daemon changed files"
    );
    assert!(!second_socket.exists());
    assert_eq!(
        first.status().pid,
        first.pid(),
        "the first one still serves"
    );
    let (exit, stderr) = first.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    // Once the first is gone, the database is free again.
    let again = Daemon::start(&scratch, &["--interval", "1h"]);
    let (exit, stderr) = again.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
}

#[test]
fn a_daemon_that_cannot_start_leaves_no_files_behind() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("noiface");
    let (code, stderr) = run_to_exit(&scratch.db(), &scratch.socket(), &["--iface", "missing0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("missing0"), "{stderr}");
    let left: Vec<PathBuf> = listing(&scratch.0).into_iter().map(|e| e.0).collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "{stderr}");
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        fs::create_dir_all(at).expect("the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m,mode=0750", "kaipo-test"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn remount(&self, how: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .expect("running mount");
        assert!(status.success(), "remount {how} {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_read_only_filesystem_holds_history_until_it_can_be_written() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("readonly");
    let mount = Tmpfs::mount(scratch.db().parent().expect("a parent"));
    // History from an earlier run, then the filesystem turns read-only.
    drop(Store::open(scratch.db(), &kaipo::store::Retention::default()).expect("a database"));
    mount.remount("ro");

    let daemon = Daemon::start(&scratch, &["--interval", "500ms"]);
    let store = daemon.status().store;
    assert_eq!(store.batches_written, 0);
    let error = store
        .last_error
        .expect("the status says why nothing is written");
    assert!(
        error.contains(&scratch.db().display().to_string()),
        "{error}"
    );
    let note = store.note.expect("a note");
    assert!(note.contains("held in memory"), "{note}");

    let sender = Sender::start(None, false, 200, 100);
    let expected = udp_bytes(200, 100);
    wait_for_totals(&daemon, sender.pid(), expected);
    // The intervals that carried the traffic are held, not written.
    wait_until(
        10,
        || format!("a held interval: {:?}", daemon.status().store),
        || daemon.status().store.backlog > 0,
    );
    let store = daemon.status().store;
    assert_eq!(store.batches_written, 0, "{store:?}");
    assert!(store.last_error.is_some(), "{store:?}");

    mount.remount("rw");
    wait_until(
        10,
        || format!("written after the remount: {:?}", daemon.status().store),
        || {
            let s = daemon.status().store;
            s.batches_written > 0 && s.backlog == 0 && s.last_error.is_none()
        },
    );
    assert_eq!(
        daemon.status().store.note,
        Some(format!(
            "history database {}: opened",
            scratch.db().display()
        )),
        "the note no longer says history is held"
    );
    let pid = sender.pid();
    drop(sender);
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    let stored = history(&scratch.db());
    assert_eq!(
        stored.get(&pid),
        Some(&(expected, expected, 200, 200)),
        "{stored:?}"
    );
}

#[test]
fn damage_past_the_header_is_found_at_start_and_history_goes_on_in_a_fresh_file() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("deepdamage");
    fs::create_dir_all(scratch.db().parent().expect("a parent")).expect("mkdir");
    // An hour of earlier history from made-up processes, enough for many pages.
    let old_pid = |n: u32, i: u32| 4_100_000 + n * 100 + i;
    {
        let (mut store, _) =
            Store::open(scratch.db(), &kaipo::store::Retention::default()).expect("a database");
        let hour_ago = now_ms() - 3_600_000;
        for n in 0..30_u32 {
            let traffic = (0..50)
                .map(|i| kaipo::store::TrafficRow {
                    app: "old".to_owned(),
                    pid: old_pid(n, i),
                    cmdline: format!("/opt/old --worker {i} {}", "z".repeat(300)),
                    remote: format!("10.2.{n}.{i}"),
                    service: "https".to_owned(),
                    rx_bytes: 1000,
                    tx_bytes: 1000,
                    rx_packets: 1,
                    tx_packets: 1,
                    ..Default::default()
                })
                .collect();
            let batch = kaipo::store::IntervalBatch {
                ts_ms: hour_ago + i64::from(n + 1) * 60_000,
                interval_ms: 60_000,
                traffic,
                interfaces: vec![],
            };
            store.write(&batch).expect("writing earlier history");
        }
    }
    // Noise over the middle of the file: the header, the first tables and the newest rows
    // stay sound, so nothing short of reading every page sees it.
    let mut bytes = fs::read(scratch.db()).expect("the database");
    let pages = bytes.len() / 4096;
    assert!(pages >= 20, "{pages} pages");
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for b in &mut bytes[pages * 3 / 10 * 4096..pages * 6 / 10 * 4096] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 40) as u8;
    }
    fs::write(scratch.db(), &bytes).expect("writing the damage");

    let daemon = Daemon::start(&scratch, &["--interval", "500ms"]);
    let stderr = daemon.stderr();
    let moved = stderr
        .split("moved the unusable file to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no word of the damaged file on stderr: {stderr}"));
    let moved = PathBuf::from(moved);
    assert_eq!(
        fs::read(&moved).expect("the moved file"),
        bytes,
        "moved intact"
    );
    let note = daemon.status().store.note.expect("a note");
    assert!(note.contains(&moved.display().to_string()), "{note}");
    assert!(note.contains("damaged"), "{note}");

    let sender = Sender::start(None, false, 100, 300);
    let expected = udp_bytes(100, 300);
    wait_for_totals(&daemon, sender.pid(), expected);
    let pid = sender.pid();
    drop(sender);
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    let stored = history(&scratch.db());
    assert_eq!(stored.get(&pid), Some(&(expected, expected, 100, 100)));
    let old: Vec<&u32> = stored.keys().filter(|p| **p >= old_pid(0, 0)).collect();
    assert_eq!(
        old,
        Vec::<&u32>::new(),
        "the fresh file holds only new history"
    );
}

/// A system user made for one test, removed on drop (never `kaipo`: other tests and a real
/// install may use that one).
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create(tag: &str) -> TestUser {
        let name = format!("kt17{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("userdel")
            .arg(&name)
            .stderr(Stdio::null())
            .status();
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .status()
            .expect("running useradd");
        assert!(status.success(), "useradd {name}: {status}");
        let out = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        TestUser { name, uid }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// `/proc/PID/status` fields of every thread of `pid`, by name.
fn thread_status(pid: u32) -> Vec<HashMap<String, String>> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's threads")
        .filter_map(Result::ok)
        .map(|task| {
            fs::read_to_string(task.path().join("status"))
                .expect("task status")
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn the_daemon_becomes_its_own_user_confined_and_still_counts_exactly() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let user = TestUser::create("d");
    let scratch = Scratch::new("own-user");
    let config = scratch.0.join("kaipo.toml");
    fs::write(&config, "[daemon]\ninclude_loopback = true\n").unwrap();
    // Outside the daemon's folders, readable by root and by the daemon's user alike.
    let outside = std::env::temp_dir().join(format!("kaipo-outside-{}", std::process::id()));
    fs::write(&outside, "not for kaipo").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
    let probe = (
        kaipo::daemon::reload::PROBE_ON_RELOAD,
        outside.to_str().unwrap(),
    );
    let daemon = Daemon::start_with_env(
        &scratch,
        &["--interval", "500ms", "--user", &user.name],
        &[("KAIPO_CONFIG", config.to_str().unwrap()), probe],
    );
    let uid = user.uid.to_string();
    let ptrace = format!("{:016x}", 1u64 << 19);
    let tasks = thread_status(daemon.pid());
    assert!(tasks.len() >= 2, "the store thread runs too: {tasks:?}");
    for task in &tasks {
        assert_eq!(
            task["Uid"],
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{task:?}"
        );
        let gid = task["Gid"].split('\t').next().unwrap();
        assert_eq!(
            task["Gid"],
            format!("{gid}\t{gid}\t{gid}\t{gid}"),
            "{task:?}"
        );
        assert_eq!(task["Groups"], gid, "only the user's own group: {task:?}");
        assert_eq!(task["Seccomp"], "2", "{task:?}");
        assert_eq!(task["Seccomp_filters"], "1", "{task:?}");
        assert_eq!(task["NoNewPrivs"], "1", "{task:?}");
        assert_eq!(task["CapEff"], ptrace, "{task:?}");
        assert_eq!(task["CapPrm"], ptrace, "{task:?}");
        assert_eq!(task["CapBnd"], ptrace, "{task:?}");
        assert_eq!(task["CapAmb"], "0000000000000000", "{task:?}");
    }
    // Its folders are its own now; the socket is still everyone's to connect to.
    use std::os::unix::fs::MetadataExt as _;
    for path in [scratch.0.join("lib"), scratch.db(), scratch.0.join("run")] {
        assert_eq!(
            fs::metadata(&path).unwrap().uid(),
            user.uid,
            "{}",
            path.display()
        );
    }
    assert_eq!(mode(&scratch.socket()), 0o666);
    let status = daemon.status();
    let sandbox = status.sandbox.clone().expect("the sandbox in status");
    assert_eq!(
        (
            sandbox.user.as_str(),
            sandbox.uid,
            sandbox.stays_root.as_deref()
        ),
        (user.name.as_str(), user.uid, None)
    );
    assert_eq!(sandbox.capabilities, ["CAP_SYS_PTRACE"]);
    assert!(sandbox.no_new_privs);
    assert!(sandbox.seccomp.in_force, "{:?}", sandbox.seccomp);
    assert!(
        sandbox
            .seccomp
            .detail
            .ends_with("system calls allowed, others fail with EPERM"),
        "{:?}",
        sandbox.seccomp
    );
    assert_eq!(
        (sandbox.landlock.in_force, sandbox.landlock.detail.as_str()),
        (false, kaipo::sandbox::landlock::OFF)
    );
    let table = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(["status", "--socket"])
        .arg(scratch.socket())
        .output()
        .expect("kaipo status");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!(
            "sandbox: user {} (uid {}), capabilities CAP_SYS_PTRACE, no_new_privs\nseccomp: in force: ",
            user.name, user.uid
        )),
        "{table}"
    );

    // Still counts a known process exactly, names it, and writes history.
    let sender = Sender::start(None, false, 80, 200);
    let expected = udp_bytes(80, 200);
    let status = wait_for_totals(&daemon, sender.pid(), expected);
    let p = process_in(&status, sender.pid()).expect("the sender");
    assert_eq!(
        (
            p.total.rx_bytes,
            p.total.tx_bytes,
            p.total.rx_packets,
            p.total.tx_packets
        ),
        (expected, expected, 80, 80)
    );
    let me = std::env::current_exe().unwrap();
    assert_eq!(
        p.app,
        me.file_name().unwrap().to_str().unwrap(),
        "named by its executable"
    );
    let sender_pid = sender.pid();
    drop(sender);

    // Reloads its configuration under Landlock: one more alert rule than before.
    fs::write(
        &config,
        "[daemon]\ninclude_loopback = true\n[[alerts.rule]]\nname = \"big\"\nkind = \"rate\"\n\
         scope = \"app\"\nabove = 1000000000\n",
    )
    .unwrap();
    // SAFETY: a signal to our own child.
    assert_eq!(
        unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
    wait_until(
        10,
        || daemon.stderr(),
        || {
            daemon.stderr().contains(&format!(
                "SIGHUP: reloaded {} (1 alert rules)",
                config.display()
            ))
        },
    );
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    assert!(
        !scratch.socket().exists(),
        "the socket is removed at exit: {stderr}"
    );
    assert_eq!(
        history(&scratch.db()).get(&sender_pid),
        Some(&(expected, expected, 80, 80))
    );

    // With Landlock: files confined, and processes outside the domain named by their command.
    let daemon = Daemon::start_with_env(
        &scratch,
        &["--interval", "500ms", "--user", &user.name, "--landlock"],
        &[("KAIPO_CONFIG", config.to_str().unwrap()), probe],
    );
    let sandbox = daemon.status().sandbox.expect("the sandbox in status");
    match kaipo::sandbox::landlock::kernel_abi() {
        Ok(abi) => {
            assert!(sandbox.landlock.in_force, "{sandbox:?}");
            assert_eq!(
                sandbox.landlock.detail,
                format!(
                    "files limited to {}, {} (read-write) and /proc, /sys, /etc, /usr, {} \
                     (read-only), Landlock ABI {}",
                    scratch.0.join("lib").display(),
                    scratch.0.join("run").display(),
                    config.display(),
                    abi
                )
            );
        }
        Err(why) => assert_eq!(
            (sandbox.landlock.in_force, sandbox.landlock.detail.as_str()),
            (false, why.as_str())
        ),
    }
    let sender = Sender::start(None, false, 30, 500);
    let expected2 = udp_bytes(30, 500);
    let status = wait_for_totals(&daemon, sender.pid(), expected2);
    let p = process_in(&status, sender.pid()).expect("the sender");
    assert_eq!(
        (
            p.total.rx_bytes,
            p.total.tx_bytes,
            p.total.rx_packets,
            p.total.tx_packets
        ),
        (expected2, expected2, 30, 30)
    );
    if sandbox.landlock.in_force {
        let exe = me.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            p.app,
            &exe[..15],
            "the command name: /proc/PID/exe is out of reach"
        );
    }
    let sender_pid2 = sender.pid();
    drop(sender);
    // Landlock refuses the file outside the daemon's folders.
    // SAFETY: a signal to our own child.
    assert_eq!(
        unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
    let refused = format!(
        "kaipo: sandbox probe: execve /bin/true: Operation not permitted (os error 1); read {}: {}\n",
        outside.display(),
        if sandbox.landlock.in_force {
            "Permission denied (os error 13)"
        } else {
            "13 bytes"
        }
    );
    wait_until(
        10,
        || daemon.stderr(),
        || daemon.stderr().contains(&refused),
    );
    let _ = fs::remove_file(&outside);
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    let stored = history(&scratch.db());
    assert_eq!(stored.get(&sender_pid), Some(&(expected, expected, 80, 80)));
    assert_eq!(
        stored.get(&sender_pid2),
        Some(&(expected2, expected2, 30, 30))
    );
}

#[test]
fn a_user_that_does_not_exist_is_refused_before_anything_is_created() {
    require_root();
    let scratch = Scratch::new("no-user");
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args([
            "daemon",
            "--iface",
            "lo",
            "--user",
            "kt17-no-such-user",
            "--db",
        ])
        .arg(scratch.db())
        .arg("--socket")
        .arg(scratch.socket())
        .output()
        .expect("running kaipo daemon");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kaipo: daemon.user is \"kt17-no-such-user\" but there is no such user; create it \
         (useradd --system --no-create-home --shell /usr/sbin/nologin kt17-no-such-user), or set \
         daemon.user = \"root\" to keep the daemon root\n"
    );
    assert!(!scratch.0.join("lib").exists() && !scratch.0.join("run").exists());
}

#[test]
fn an_encrypted_history_is_read_exactly_with_its_key_and_never_replaced_without_it() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("encrypted");
    let key = scratch.0.join("db.key");
    fs::write(
        &key,
        "3b7f0c5e9a1d2f4b6c8e0a1b3c5d7e9f11223344556677889900aabbccddeeff\n",
    )
    .unwrap();
    let config = scratch.0.join("kaipo.toml");
    fs::write(
        &config,
        format!("[storage]\nencryption_key_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    let env = [("KAIPO_CONFIG", config.to_str().unwrap())];
    let daemon = Daemon::start_with_env(&scratch, &["--interval", "500ms"], &env);
    let sender = Sender::start(None, false, 40, 250);
    let expected = udp_bytes(40, 250);
    wait_for_totals(&daemon, sender.pid(), expected);
    let pid = sender.pid();
    drop(sender);
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
    let bytes = fs::read(scratch.db()).unwrap();
    assert!(
        !bytes.starts_with(b"SQLite format 3"),
        "the file is encrypted"
    );

    let report = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kaipo"))
            .args([
                "report", "--format", "json", "--by", "process", "--since", "1h", "--db",
            ])
            .arg(scratch.db())
            .env("KAIPO_CONFIG", config)
            .output()
            .expect("running kaipo report")
    };
    // With the daemon's setting: exact.
    let out = report(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<ReportRow> = serde_json::from_value(json["rows"].clone()).unwrap();
    let got = by_pid(&Report {
        rows,
        ..Report::default()
    });
    assert_eq!(got.get(&pid), Some(&(expected, expected, 40, 40)));
    // Without it: a clear error, exit 1, the file byte-identical.
    let plain = scratch.0.join("plain.toml");
    fs::write(&plain, "").unwrap();
    let out = report(&plain);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "the history database {} is not a plain SQLite file: it is encrypted (set [storage] \
             encryption_key_file to its key) or damaged",
            scratch.db().display()
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(scratch.db()).unwrap(), bytes);

    // A daemon with a wrong key, or a key file that is missing, exits 1 and touches nothing.
    let files_before: Vec<_> = fs::read_dir(scratch.0.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    fs::write(&key, format!("{}\n", "7".repeat(64))).unwrap();
    let run_daemon = || {
        Command::new(env!("CARGO_BIN_EXE_kaipo"))
            .args(["daemon", "--iface", "lo", "--db"])
            .arg(scratch.db())
            .arg("--socket")
            .arg(scratch.socket())
            .env("KAIPO_CONFIG", &config)
            .output()
            .expect("running kaipo daemon")
    };
    let out = run_daemon();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "kaipo: cannot read the history database {} with the key from {}: the key is wrong, \
             or the file is not an encrypted kaipo database; nothing was changed (the file is \
             left as it is)\n",
            scratch.db().display(),
            key.display()
        )
    );
    fs::remove_file(&key).unwrap();
    let out = run_daemon();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "kaipo: cannot read the database key {}: No such file or directory (os error 2); \
             nothing was changed\n",
            key.display()
        )
    );
    assert_eq!(fs::read(scratch.db()).unwrap(), bytes, "byte for byte");
    let files_after: Vec<_> = fs::read_dir(scratch.0.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files_after, files_before, "nothing moved aside or created");
}

/// `curl` against the remote API: (HTTP status, body).
fn curl(cert: &Path, port: u16, path: &str, token: Option<&str>, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert"])
        .arg(cert)
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"));
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.output().expect("curl is not installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl's status line");
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_remote_api_serves_the_sockets_figures_over_tls_to_token_holders_only() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("remote");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
    let (cert_file, key_file) = (scratch.0.join("cert.pem"), scratch.0.join("key.pem"));
    fs::write(&cert_file, cert.pem()).unwrap();
    fs::write(&key_file, key_pair.serialize_pem()).unwrap();
    let (full, nobody) = ("full-token-0123456789abcdef", "nobody-token-0123456789");
    let tokens = scratch.0.join("tokens");
    fs::write(&tokens, format!("{full} full\n{nobody} uid:{NOBODY}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = scratch.0.join("kaipo.toml");
    fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             tokens_file = \"{}\"\nrequests_per_minute = 8\nmax_connections = 2\n",
            cert_file.display(),
            key_file.display(),
            tokens.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_env(
        &scratch,
        &["--interval", "500ms"],
        &[("KAIPO_CONFIG", config.to_str().unwrap())],
    );
    assert!(
        daemon
            .stderr()
            .contains(&format!("kaipo: remote API on https://127.0.0.1:{port}\n")),
        "{}",
        daemon.stderr()
    );
    let sender = Sender::start(None, false, 50, 300);
    let expected = udp_bytes(50, 300);
    let local = wait_for_totals(&daemon, sender.pid(), expected);
    let mine = process_in(&local, sender.pid()).unwrap().total;

    // No token, or a wrong one: 401 and nothing else.
    let (code, body) = curl(&cert_file, port, "/v1/status", None, &[]);
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        body,
        "{\"error\":\"a valid token is needed: Authorization: Bearer TOKEN\",\"ok\":false,\"v\":1}\n"
    );
    let (code, _) = curl(
        &cert_file,
        port,
        "/v1/status",
        Some("full-token-0123456789abcdeX"),
        &[],
    );
    assert_eq!(code, 401);

    // The full token sees what the socket shows root: the sender, to the byte.
    let (code, body) = curl(&cert_file, port, "/v1/status", Some(full), &[]);
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let status: StatusReport = serde_json::from_value(answer["status"].clone()).unwrap();
    assert!(status.caller.privileged);
    let p = process_in(&status, sender.pid()).expect("the sender over HTTPS");
    assert_eq!(p.total, mine);
    assert_eq!(
        (
            p.total.rx_bytes,
            p.total.tx_bytes,
            p.total.rx_packets,
            p.total.tx_packets
        ),
        (expected, expected, 50, 50)
    );
    // A uid-scoped token sees only that uid: not root's sender, no interfaces.
    let (code, body) = curl(&cert_file, port, "/v1/status", Some(nobody), &[]);
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let status: StatusReport = serde_json::from_value(answer["status"].clone()).unwrap();
    assert_eq!(
        (status.caller.uid, status.caller.privileged),
        (NOBODY, false)
    );
    assert!(process_in(&status, sender.pid()).is_none());
    assert!(status.totals.processes.iter().all(|p| p.uid == NOBODY));
    assert!(status.interfaces.is_empty());

    // History, as the socket's query answers it.
    let now = now_ms();
    let q = format!(
        "/v1/query?from_ms={}&to_ms={}&by=process&top=0",
        now - 3_600_000,
        now + 60_000
    );
    // First through the socket (polling costs the token nothing), then once over HTTPS.
    let query = Query {
        from_ms: now - 3_600_000,
        to_ms: now + 60_000,
        by: Dimension::Process,
        top: 0,
        uid: None,
        per: None,
    };
    let mut over_socket = HashMap::new();
    wait_until(
        15,
        || "the sender in history".to_owned(),
        || {
            over_socket = by_pid(&block_on(client::query(&daemon.socket, &query)).unwrap());
            over_socket.get(&sender.pid()) == Some(&(expected, expected, 50, 50))
        },
    );
    let (code, body) = curl(&cert_file, port, &q, Some(full), &[]);
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let report: Report = serde_json::from_value(answer["report"].clone()).unwrap();
    assert_eq!(by_pid(&report), over_socket);
    let (code, body) = curl(&cert_file, port, "/v1/query?by=planet", Some(full), &[]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid query"), "{body}");

    // Live snapshots as server-sent events.
    let (code, body) = curl(
        &cert_file,
        port,
        "/v1/subscribe",
        Some(full),
        &["-N", "--max-time", "2"],
    );
    assert_eq!(code, 200, "{body}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    // 250 ms snapshots for 2 s.
    assert!(events.len() >= 5, "{} events: {body}", events.len());
    assert!(events
        .iter()
        .all(|e| e["ok"] == true && e["snapshot"].is_object()));

    // The uid token has used 1 of its 8 requests a minute: 7 more pass, the next is refused.
    for _ in 0..7 {
        assert_eq!(
            curl(&cert_file, port, "/v1/status", Some(nobody), &[]).0,
            200
        );
    }
    let (code, body) = curl(&cert_file, port, "/v1/status", Some(nobody), &["-i"]);
    assert_eq!(code, 429, "{body}");
    // The budget refills at one request per 7.5 s: the wait left depends on the time the
    // requests above took, and is said the same way in the header and the body.
    let wait: u64 = body
        .split("Retry-After: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {body}"));
    assert!((1..=8).contains(&wait), "{body}");
    assert!(body.contains(&format!("retry in {wait} s")), "{body}");
    // The full token has a budget of its own.
    assert_eq!(curl(&cert_file, port, "/v1/status", Some(full), &[]).0, 200);

    // Two connections at once at most: with two idle ones open (no TLS handshake yet), a third
    // is closed as it arrives and curl gets no answer at all; once they close, it is served.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("a connection"))
        .collect();
    // The daemon takes both before the next connection arrives.
    thread::sleep(Duration::from_millis(300));
    let (code, body) = curl(&cert_file, port, "/v1/status", Some(full), &[]);
    assert_eq!((code, body.as_str()), (0, ""));
    drop(held);
    wait_until(
        5,
        || "a request served after the idle connections closed".to_owned(),
        || curl(&cert_file, port, "/v1/status", Some(full), &[]).0 == 200,
    );
    drop(sender);
    let (exit, stderr) = daemon.stop(libc::SIGTERM);
    assert!(exit.success(), "exit {exit}: {stderr}");
}
