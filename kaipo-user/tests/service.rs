//! `kaipo install-service` / `uninstall-service` into a staging root, and the unit passes
//! `systemd-analyze verify`. Needs no privileges; needs `systemd-analyze` (Debian package
//! `systemd`, installed by scripts/setup.sh).

use std::{
    fs,
    os::unix::fs::{symlink, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kaipo-service-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn stage_executable(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn verify(unit: &Path) -> String {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze is not installed: apt-get install systemd (scripts/setup.sh)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    said
}

fn kaipo(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(args)
        .output()
        .expect("running kaipo");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn install_writes_the_unit_and_group_once_and_uninstall_removes_the_unit() {
    let s = Scratch::new("install");
    let root = s.0.to_str().expect("utf-8 path");
    fs::create_dir_all(s.0.join("etc")).unwrap();
    fs::write(s.0.join("etc/group"), "root:x:0:\nsystemd-journal:x:999:\n").unwrap();
    fs::write(s.0.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    // The staged binary the unit will run.
    stage_executable(&s.0.join("usr/bin/kaipo"));
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        "/usr/bin/kaipo",
    ]);
    assert!(ok, "{text}");
    let unit_path = s.0.join("etc/systemd/system/kaipo.service");
    assert_eq!(
        text,
        format!(
            "wrote {} (runs /usr/bin/kaipo)\ncreated group kaipo\ncreated user kaipo\n",
            unit_path.display()
        )
    );
    let unit = fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.contains("\nExecStart=\"/usr/bin/kaipo\" daemon\n"),
        "{unit}"
    );
    assert!(!unit.contains("@KAIPO@"));
    assert!(unit.contains(
        "\nCapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_PTRACE \
         CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID CAP_CHOWN CAP_SETPCAP\n"
    ));
    // The highest free system gid.
    assert_eq!(
        fs::read_to_string(s.0.join("etc/group")).unwrap(),
        "root:x:0:\nsystemd-journal:x:999:\nkaipo:x:998:\n"
    );
    // The user, in that group, with the highest free system uid.
    assert_eq!(
        fs::read_to_string(s.0.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/bash\nkaipo:x:999:998:kaipo daemon:/nonexistent:/usr/sbin/nologin\n"
    );
    // Again: the group is there already.
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        "/usr/bin/kaipo",
    ]);
    assert!(
        ok && !text.contains("created group") && !text.contains("created user"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(s.0.join("etc/group"))
            .unwrap()
            .matches("kaipo:")
            .count(),
        1
    );
    // Enabling needs the live system.
    let (ok, text) = kaipo(&["install-service", "--root", root, "--enable"]);
    assert!(
        !ok && text.contains("--enable needs the live system"),
        "{text}"
    );
    let (ok, text) = kaipo(&["uninstall-service", "--root", root]);
    assert!(ok, "{text}");
    assert_eq!(
        text,
        format!(
            "removed {}\nkept user kaipo, group kaipo and /var/lib/kaipo\n",
            unit_path.display()
        )
    );
    assert!(!unit_path.exists());
    let (ok, text) = kaipo(&["uninstall-service", "--root", root]);
    assert!(ok && text.contains("was not installed"), "{text}");
}

#[test]
fn the_installed_unit_passes_systemd_analyze_verify() {
    let s = Scratch::new("verify");
    let root = s.0.to_str().expect("utf-8 path");
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        env!("CARGO_BIN_EXE_kaipo"),
    ]);
    assert!(ok, "{text}");
    verify(&s.0.join("etc/systemd/system/kaipo.service"));
}

#[test]
fn a_binary_that_does_not_exist_is_refused_and_nothing_is_written() {
    let s = Scratch::new("missing");
    let root = s.0.to_str().expect("utf-8 path");
    let missing = s.0.join("nowhere/kaipo");
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(
        text,
        format!(
            "kaipo: {} does not exist; install kaipo first (for example to /usr/local/bin) and \
             pass --binary with its path\n",
            missing.display()
        )
    );
    assert!(!s.0.join("etc").exists());
    let (ok, text) = kaipo(&["install-service", "--root", root, "--binary", root]);
    assert!(!ok && text.contains("is not a file"), "{text}");
    let (ok, text) = kaipo(&["install-service", "--root", root, "--binary", "kaipo"]);
    assert_eq!(
        (ok, text.as_str()),
        (false, "kaipo: --binary kaipo must be an absolute path\n")
    );
    assert!(!s.0.join("etc").exists());
}

#[test]
fn a_path_with_spaces_quotes_and_percent_is_quoted_for_systemd() {
    let s = Scratch::new("spaces");
    let root = s.0.to_str().expect("utf-8 path");
    let dir = s.0.join("opt/my tools 100%");
    fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("kaipo");
    symlink(env!("CARGO_BIN_EXE_kaipo"), &binary).unwrap();
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        binary.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let unit_path = s.0.join("etc/systemd/system/kaipo.service");
    let unit = fs::read_to_string(&unit_path).unwrap();
    let line = format!(
        "\nExecStart=\"{}/opt/my tools 100%%/kaipo\" daemon\n",
        s.0.display()
    );
    assert_eq!(unit.matches(&line).count(), 1, "{unit}");
    // systemd finds the binary through the quoting: verify checks that ExecStart is executable.
    verify(&unit_path);
    // And says so when it cannot: the unquoted form fails verification.
    let broken = unit.replace(
        &line,
        &format!(
            "\nExecStart={}/opt/my tools 100%%/kaipo daemon\n",
            s.0.display()
        ),
    );
    fs::write(&unit_path, broken).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_binary_under_root_s_home_runs_with_home_folders_hidden_but_itself_visible() {
    // Where `cargo install` puts it when run as root.
    let home = PathBuf::from(format!("/root/.kaipo-service-test-{}", std::process::id()));
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    if fs::create_dir_all(home.join("bin")).is_err() {
        eprintln!("skipped: /root is not writable here");
        return;
    }
    let _gone = Gone(home.clone());
    let binary = home.join("bin/kaipo");
    symlink(env!("CARGO_BIN_EXE_kaipo"), &binary).unwrap();
    let s = Scratch::new("home");
    let root = s.0.to_str().expect("utf-8 path");
    let out = Command::new(env!("CARGO_BIN_EXE_kaipo"))
        .args(["install-service", "--root", root, "--binary"])
        .arg(&binary)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "kaipo: note: {b} is under a home folder, which the service cannot see; the unit \
             hides home folders behind an empty tmpfs and binds only the binary back in \
             (ProtectHome=tmpfs, BindReadOnlyPaths). Installing to /usr/local/bin keeps home \
             folders out of the picture: install -m 0755 {b} /usr/local/bin/kaipo && kaipo \
             install-service --binary /usr/local/bin/kaipo\n",
            b = binary.display()
        )
    );
    let unit_path = s.0.join("etc/systemd/system/kaipo.service");
    let unit = fs::read_to_string(&unit_path).unwrap();
    assert!(!unit.contains("\nProtectHome=yes\n"));
    assert!(unit.contains(&format!(
        "\nProtectHome=tmpfs\n# The binary is under a home folder: only it is visible there.\n\
         BindReadOnlyPaths=\"{}\"\n",
        binary.display()
    )));
    verify(&unit_path);
}

#[test]
fn the_unit_allows_packet_and_netlink_sockets_and_scores_as_stated_in_the_readme() {
    let s = Scratch::new("security");
    let root = s.0.to_str().expect("utf-8 path");
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        env!("CARGO_BIN_EXE_kaipo"),
    ]);
    assert!(ok, "{text}");
    let unit_path = s.0.join("etc/systemd/system/kaipo.service");
    let unit = fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.contains("\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET\n")
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&out.stdout);
    let score = said
        .lines()
        .find_map(|l| l.strip_prefix("→ Overall exposure level for kaipo.service: "))
        .unwrap_or_else(|| panic!("no score in: {said}"));
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let figure = score.split(' ').next().unwrap();
    assert!(
        readme.contains(&format!(
            "`systemd-analyze security` scores the unit {figure} "
        )),
        "README does not state the score {score}"
    );
    assert_eq!(score.split(' ').next(), Some(EXPECTED_EXPOSURE), "{said}");
}

/// `systemd-analyze security` of the unit: lower is better, 10 is an unsandboxed root service.
const EXPECTED_EXPOSURE: &str = "4.0";
