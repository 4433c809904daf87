//! The collector leaves nothing behind: after `kaipo watch` ends, by its own `--duration`, by
//! SIGINT, by SIGTERM or even by SIGKILL, none of its programs is left in the kernel.
//!
//! Needs root. The check follows the ids of the programs the child itself holds, so another
//! kaipo running at the same time does not disturb it.

use std::{
    collections::HashSet,
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs and need root"
    );
}

/// Ids of the BPF programs a process holds open, from its fd table.
fn programs_held_by(pid: u32) -> HashSet<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return HashSet::new();
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// Names of kaipo's programs among `ids` that the kernel still has loaded.
fn still_loaded(ids: &HashSet<u32>) -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .filter(|n| n.starts_with("kaipo_"))
        .collect()
}

/// Starts `kaipo watch` on loopback and returns once its first interval has been printed, which
/// happens only after every program is attached.
fn start_watch(extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(["watch", "--json", "--iface", "lo", "--interval", "100ms"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning kaipo");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("kaipo printed no interval in 20 s");
    let first = first.expect("reading kaipo's output");
    assert!(
        first.starts_with("{\"ts_ms\":"),
        "unexpected first line: {first}"
    );
    // Keep draining so kaipo never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    child
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for kaipo") {
            return status;
        }
        assert!(Instant::now() < deadline, "kaipo did not exit within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal_case(signal: Option<libc::c_int>, expect_success: bool) {
    require_root();
    let mut child = match signal {
        Some(_) => start_watch(&[]),
        None => start_watch(&["--duration", "2s"]),
    };
    let held = programs_held_by(child.id());
    // Seven programs always run; an eighth (TC ingress) stands in for XDP when another program
    // holds the interface's XDP hook, as a parallel test's kaipo may on lo.
    assert!(
        (7..=8).contains(&still_loaded(&held).len()),
        "kaipo's programs should be loaded while it runs: {:?}",
        still_loaded(&held)
    );
    if let Some(sig) = signal {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
    }
    let status = wait_exit(&mut child);
    assert_eq!(status.success(), expect_success, "exit status {status}");
    // The kernel frees programs once their last link and fd are gone; that is immediate on
    // process exit, but allow the deferred free a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !still_loaded(&held).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        still_loaded(&held),
        Vec::<String>::new(),
        "programs left after exit"
    );
}

#[test]
fn duration_end_detaches_everything() {
    signal_case(None, true);
}

#[test]
fn sigint_detaches_everything() {
    signal_case(Some(libc::SIGINT), true);
}

#[test]
fn sigterm_detaches_everything() {
    signal_case(Some(libc::SIGTERM), true);
}

#[test]
fn sigkill_leaves_nothing_attached() {
    signal_case(Some(libc::SIGKILL), false);
}

#[test]
fn missing_interface_is_a_clear_error() {
    require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(["watch", "--iface", "kaipo-no-such0", "--duration", "1s"])
        .output()
        .expect("running kaipo");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interface 'kaipo-no-such0' does not exist"),
        "stderr was: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr was: {stderr}");
}

#[test]
fn unprivileged_user_is_told_to_use_root() {
    require_root();
    // A copy the unprivileged user can surely execute, wherever the build tree lives.
    let dir = std::env::temp_dir().join(format!("kaipo-unpriv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bin = dir.join("kaipo");
    std::fs::copy(env!("CARGO_BIN_EXE_kaipo"), &bin).expect("copying kaipo");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod bin");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["watch", "--duration", "1s"])
        .output()
        .expect("running setpriv (util-linux)");
    std::fs::remove_dir_all(&dir).expect("removing temp dir");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kaipo needs root"), "stderr was: {stderr}");
    assert!(
        stderr.contains("missing: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"),
        "stderr was: {stderr}"
    );
}
