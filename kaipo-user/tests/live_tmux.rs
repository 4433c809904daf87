//! `kaipo live` in a real terminal (tmux): a process sending at a known rate shows up in its
//! row with that rate, `q` ends the dashboard cleanly, and a paused screen holds still while
//! the traffic of the pause still reaches the totals.
//!
//! Needs root (the dashboard runs its own collector) and tmux (scripts/setup.sh installs it).

use std::{
    net::UdpSocket,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// One dashboard at a time: two collectors on `lo` would see each other's traffic, and the
/// tests of this file run on parallel threads.
static ONE_DASHBOARD: Mutex<()> = Mutex::new(());

const ROLE: &str = "KAIPO_LIVE_TEST_ROLE";
/// The sender's pace: datagrams per second and payload bytes; 1028 IP-layer bytes each.
const PER_SECOND: u64 = 200;
const PAYLOAD: usize = 1000;

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (scripts/setup.sh)")
}

/// Sends `PER_SECOND` datagrams a second to a local sink for `secs` seconds.
fn sender(secs: u64) {
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let to = sink.local_addr().expect("sink address");
    let payload = [7u8; PAYLOAD];
    let start = Instant::now();
    for i in 0..secs * PER_SECOND {
        socket.send_to(&payload, to).expect("send");
        let due = start + Duration::from_secs_f64((i + 1) as f64 / PER_SECOND as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Converts a rate cell such as `200.8 KiB` into bytes per second.
fn parse_rate(cell: &str) -> Option<f64> {
    let mut parts = cell.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let scale = match parts.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * scale)
}

#[test]
fn dashboard_shows_a_sender_at_its_rate_and_quits_on_q() {
    if std::env::var(ROLE).as_deref() == Ok("sender") {
        sender(30);
        return;
    }
    let _one = ONE_DASHBOARD.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs kaipo's collector and needs root"
    );
    let session = format!("kaipo-live-{}", std::process::id());
    let exit_file = std::env::temp_dir().join(format!("{session}.exit"));
    let _ = std::fs::remove_file(&exit_file);
    let command = format!(
        "{} live --iface lo --include-loopback --socket /nonexistent/kaipo.sock; echo $? > {}",
        env!("CARGO_BIN_EXE_kaipo"),
        exit_file.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "30",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    // The dashboard draws its header once its first interval closed, after every program is
    // attached: only then does the sender start, so its sockets are seen from creation.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]).stdout;
        if String::from_utf8_lossy(&screen).contains("via embedded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not start within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "dashboard_shows_a_sender_at_its_rate_and_quits_on_q",
            "--nocapture",
        ])
        .env(ROLE, "sender")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the sender");
    let pid = child.id().to_string();
    let expected = (PER_SECOND * (PAYLOAD as u64 + 28)) as f64;

    // The rate settles once three intervals are in; look for it for up to 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = None;
    let mut screen = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
            .into_owned();
        // The selected row starts with a `>` marker.
        let cells_of = |l: &str| -> Vec<String> {
            l.trim_start_matches([' ', '>'])
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let row = screen
            .lines()
            .map(cells_of)
            .find(|c| c.first() == Some(&pid));
        if let Some(cells) = row {
            // Columns: PID NAME USER CONTAINER CONNS RX/s TX/s ...; rates are "value unit".
            let rate = |at: usize| cells.get(at..at + 2).and_then(|c| parse_rate(&c.join(" ")));
            // It sends to a sink socket of its own, so it receives what it sends.
            if let (Some(rx), Some(tx)) = (rate(5), rate(7)) {
                let near = |r: f64| (expected * 0.8..=expected * 1.2).contains(&r);
                if near(rx) && near(tx) {
                    seen = Some((rx, tx));
                    break;
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exit_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = std::fs::read_to_string(&exit_file).unwrap_or_default();
    tmux(&["kill-session", "-t", &session]);
    let _ = std::fs::remove_file(&exit_file);
    assert!(
        seen.is_some(),
        "no row for pid {pid} with receive and send rates within 20% of {expected} B/s; \
         last screen:\n{screen}"
    );
    assert_eq!(code.trim(), "0", "kaipo live did not exit cleanly on q");
}

fn capture(session: &str) -> String {
    String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).into_owned()
}

/// Polls the pane every 100 ms for up to `limit` until `done` accepts it; the last capture.
fn wait_for(session: &str, limit: Duration, done: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let screen = capture(session);
        if done(&screen) {
            return Some(screen);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Bytes received on the monitored interfaces since start, from the header's
/// `since start RX 1.9 MiB TX ...`.
fn since_start_rx(screen: &str) -> Option<f64> {
    let line = screen.lines().find(|l| l.starts_with("since start RX "))?;
    let rest = line.strip_prefix("since start RX ")?;
    let cell: Vec<&str> = rest.split_whitespace().take(2).collect();
    parse_rate(&cell.join(" "))
}

/// `p` freezes the screen (PAUSED in the header, nothing else moves) but not the counting:
/// right after resuming, the totals since start hold what the sender sent while paused. A
/// pause that dropped intervals would show at most one interval more.
#[test]
fn pause_holds_the_screen_and_keeps_counting() {
    let _one = ONE_DASHBOARD.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs kaipo's collector and needs root"
    );
    let session = format!("kaipo-pause-{}", std::process::id());
    let command = format!(
        "{} live --iface lo --include-loopback --socket /nonexistent/kaipo.sock",
        env!("CARGO_BIN_EXE_kaipo"),
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "dashboard_shows_a_sender_at_its_rate_and_quits_on_q",
            "--nocapture",
        ])
        .env(ROLE, "sender")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the sender");
    let result = (|| -> Result<(f64, f64), String> {
        let pid = child.id().to_string();
        // Running: the dashboard has counted some of the sender's traffic.
        wait_for(&session, Duration::from_secs(20), |s| {
            s.contains("via embedded") && s.contains(&format!(" {pid} "))
        })
        .ok_or_else(|| format!("no row for the sender:\n{}", capture(&session)))?;
        tmux(&["send-keys", "-t", &session, "p"]);
        wait_for(&session, Duration::from_secs(5), |s| {
            s.contains("PAUSED") && s.contains(&format!(" {pid} "))
        })
        .ok_or_else(|| format!("no PAUSED mark:\n{}", capture(&session)))?;
        // The first paused frame may still be on its way to the terminal: read it once drawn.
        std::thread::sleep(Duration::from_millis(300));
        let paused = capture(&session);
        let before = since_start_rx(&paused).ok_or("no totals in the header")?;
        std::thread::sleep(Duration::from_secs(4));
        let still = capture(&session);
        if still != paused {
            return Err(format!("the paused screen moved:\n{paused}\n---\n{still}"));
        }
        tmux(&["send-keys", "-t", &session, "p"]);
        let resumed = wait_for(&session, Duration::from_secs(5), |s| !s.contains("PAUSED"))
            .ok_or_else(|| format!("still paused:\n{}", capture(&session)))?;
        let after = since_start_rx(&resumed).ok_or("no totals in the header")?;
        Ok((before, after))
    })();
    let _ = child.kill();
    let _ = child.wait();
    tmux(&["send-keys", "-t", &session, "q"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["kill-session", "-t", &session]);
    let (before, after) = result.unwrap_or_else(|e| panic!("{e}"));
    // Four seconds paused at 200 datagrams of 1028 IP-layer bytes a second; at least three
    // of those seconds' intervals have closed by the time the screen resumes.
    let sent_while_paused = 3.0 * (PER_SECOND * (PAYLOAD as u64 + 28)) as f64;
    assert!(
        after - before >= sent_while_paused * 0.8,
        "since start RX went from {before} to {after} B across a 4 s pause"
    );
}
