//! `kaipo install-service` / `uninstall-service` into a staging root, and the unit passes
//! `systemd-analyze verify`. Needs no privileges; needs `systemd-analyze` (Debian package
//! `systemd`, installed by scripts/setup.sh).

use std::{fs, path::PathBuf, process::Command};

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
            "wrote {} (runs /usr/bin/kaipo)\ncreated group kaipo\n",
            unit_path.display()
        )
    );
    let unit = fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/kaipo daemon\n"),
        "{unit}"
    );
    assert!(!unit.contains("@KAIPO@"));
    assert!(unit.contains(
        "\nCapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_PTRACE CAP_SETPCAP\n"
    ));
    // The highest free system gid.
    assert_eq!(
        fs::read_to_string(s.0.join("etc/group")).unwrap(),
        "root:x:0:\nsystemd-journal:x:999:\nkaipo:x:998:\n"
    );
    // Again: the group is there already.
    let (ok, text) = kaipo(&[
        "install-service",
        "--root",
        root,
        "--binary",
        "/usr/bin/kaipo",
    ]);
    assert!(ok && !text.contains("created group"), "{text}");
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
            "removed {}\nkept group kaipo and /var/lib/kaipo\n",
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
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(s.0.join("etc/systemd/system/kaipo.service"))
        .output()
        .expect("systemd-analyze is not installed: apt-get install systemd (scripts/setup.sh)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
