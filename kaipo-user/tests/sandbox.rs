//! The daemon's confinement layers, each put in force in a child process (this test binary
//! started again with KAIPO_SANDBOX_ROLE set), which then tries what they must refuse and what
//! they must still allow, and reports each outcome on stdout.
//!
//! Needs no root: seccomp with no_new_privs and Landlock are open to every user.
#![cfg(target_os = "linux")]

use std::{
    ffi::CString,
    fs,
    io::{ErrorKind, Write as _},
    path::{Path, PathBuf},
    process::Command,
};

use kaipo::sandbox::{landlock, seccomp};

const ROLE: &str = "KAIPO_SANDBOX_ROLE";

/// Runs `role` in a child and returns its report lines.
fn in_child(role: &str, dir: &Path) -> Vec<String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("KAIPO_SANDBOX_DIR", dir)
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once("KAIPO-SANDBOX ").map(|(_, r)| r.to_owned()))
        .collect()
}

fn report(line: &str) {
    println!("KAIPO-SANDBOX {line}");
    std::io::stdout().flush().unwrap();
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => "denied".into(),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("KAIPO_SANDBOX_DIR").unwrap());
    match role.as_str() {
        "seccomp" => {
            let allowed = seccomp::install().expect("installing the filter");
            report(&format!("allowed {allowed}"));
            // execve: refused with EPERM, the process goes on.
            let path = CString::new("/bin/true").unwrap();
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: NUL-terminated argument and environment arrays of valid strings.
            let ret = unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            report(&format!("execve {ret} {errno:?}"));
            // SAFETY: integer arguments only.
            let ret = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            report(&format!("ptrace {ret} {errno:?}"));
            // SAFETY: unshare with a flag only.
            let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            report(&format!("unshare {ret} {errno:?}"));
            // What the daemon does goes on working: files, threads, sockets, thread names.
            fs::write(dir.join("written"), "x").unwrap();
            let name = std::thread::Builder::new()
                .name("kaipo-test".into())
                .spawn(|| std::thread::current().name().map(str::to_owned))
                .unwrap()
                .join()
                .unwrap();
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").map(drop);
            report(&format!(
                "file {} thread {name:?} socket {}",
                fs::read_to_string(dir.join("written")).unwrap(),
                outcome(socket)
            ));
        }
        "landlock" => {
            let allowed = landlock::Allowed::for_daemon(
                &dir.join("lib/kaipo.db"),
                &dir.join("run/kaipo.sock"),
                &dir.join("kaipo.toml"),
            );
            let outcome_ll = landlock::restrict(&allowed).expect("the ruleset");
            report(&format!("in_force {}", outcome_ll.in_force));
            report(&format!(
                "db folder write {}",
                outcome(fs::write(dir.join("lib/new.db-wal"), "x"))
            ));
            report(&format!(
                "socket folder write {}",
                outcome(fs::write(dir.join("run/x"), "x"))
            ));
            report(&format!(
                "config read {}",
                outcome(fs::read_to_string(dir.join("kaipo.toml")))
            ));
            report(&format!(
                "config write {}",
                outcome(fs::write(dir.join("kaipo.toml"), "x"))
            ));
            report(&format!(
                "beside the config read {}",
                outcome(fs::read_to_string(dir.join("secret")))
            ));
            report(&format!(
                "proc read {}",
                outcome(fs::read_to_string("/proc/self/status").map(drop))
            ));
            report(&format!(
                "etc write {}",
                outcome(fs::write("/etc/kaipo-landlock-test", "x"))
            ));
            report(&format!(
                "tmp read {}",
                outcome(fs::read_dir(std::env::temp_dir()).map(drop))
            ));
        }
        other => panic!("unknown role {other}"),
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kaipo-sandbox-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("lib")).unwrap();
        fs::create_dir_all(dir.join("run")).unwrap();
        fs::write(dir.join("kaipo.toml"), "[daemon]\n").unwrap();
        fs::write(dir.join("secret"), "s").unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_seccomp_filter_refuses_execve_ptrace_and_unshare_and_allows_the_daemons_work() {
    let s = Scratch::new("seccomp");
    let lines = in_child("seccomp", &s.0);
    let eperm = Some(libc::EPERM);
    assert_eq!(
        lines,
        [
            format!("allowed {}", seccomp::allowed_count()),
            format!("execve -1 {eperm:?}"),
            format!("ptrace -1 {eperm:?}"),
            format!("unshare -1 {eperm:?}"),
            "file x thread Some(\"kaipo-test\") socket ok".to_owned(),
        ]
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(seccomp::allowed_count(), 126);
}

#[test]
fn the_landlock_ruleset_refuses_files_outside_the_daemons_folders() {
    let s = Scratch::new("landlock");
    let lines = in_child("landlock", &s.0);
    if landlock::kernel_abi().is_err() {
        assert_eq!(lines[0], "in_force false");
        return;
    }
    assert_eq!(
        lines,
        [
            "in_force true",
            "db folder write ok",
            "socket folder write ok",
            "config read ok",
            "config write denied",
            "beside the config read denied",
            "proc read ok",
            "etc write denied",
            "tmp read denied",
        ]
    );
}

/// `kaipo watch` runs its own collector and filters its system calls once attached, and
/// still prints every interval.
#[test]
fn watch_filters_its_system_calls_once_collecting() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: kaipo watch loads eBPF programs, which needs root");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args([
            "watch",
            "--iface",
            "lo",
            "--include-loopback",
            "--interval",
            "500ms",
            "--duration",
            "3s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kaipo watch");
    let status_path = format!("/proc/{}/status", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        let status = fs::read_to_string(&status_path).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if field("Seccomp:").as_deref() == Some("2") {
            seen = Some((field("Seccomp_filters:"), field("NoNewPrivs:")));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        seen,
        Some((Some("1".into()), Some("1".into()))),
        "Seccomp 2 never showed: {stderr}"
    );
    assert!(!stderr.contains("seccomp"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON interval"))
        .collect();
    // 3 s of 500 ms intervals, the last one cut short by the duration.
    assert!(
        (6..=7).contains(&lines.len()),
        "{} intervals: {stdout}",
        lines.len()
    );
}
