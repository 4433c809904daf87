//! The Debian package: `xtask deb` builds it from the binary under test; it lists the unit,
//! the man pages and the completions; `dpkg -i` installs it on this machine, where `man kaipo`
//! renders, bash completes `kaipo`, the unit passes `systemd-analyze verify` and group kaipo
//! exists; `dpkg --purge` removes it and leaves the history in place. Needs root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use kaipo_tests::{kaipo_bin, require_root, run};

/// dpkg refuses to run while another dpkg or apt holds its lock: retry for a while.
fn dpkg(args: &[&str]) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let out = Command::new("dpkg").args(args).output()?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        ensure!(
            err.contains("lock") && start.elapsed() < Duration::from_secs(120),
            "dpkg {args:?}: {err}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Purges the package and removes what the test made, whatever happened.
struct Cleanup {
    dir: PathBuf,
    marker: PathBuf,
    made_history_dir: bool,
    /// The package's postinst creates group and user kaipo and purging keeps them; the test
    /// removes them again when they were not there before (the user first: it is the group's).
    made_group: bool,
    made_user: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", "kaipo"]);
        let _ = std::fs::remove_file(&self.marker);
        if self.made_history_dir {
            let _ = std::fs::remove_dir(self.marker.parent().unwrap_or(Path::new("/nonexistent")));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_user {
            let _ = Command::new("userdel").arg("kaipo").output();
        }
        if self.made_group {
            let _ = Command::new("groupdel").arg("kaipo").output();
        }
    }
}

#[test]
fn the_package_installs_documents_completes_and_purges() -> anyhow::Result<()> {
    require_root()?;
    ensure!(
        !Path::new("/usr/bin/kaipo").exists() || dpkg(&["-s", "kaipo"]).is_ok(),
        "/usr/bin/kaipo exists and is not from the kaipo package: not overwriting it"
    );
    let pid = std::process::id();
    let history = Path::new("/var/lib/kaipo");
    let cleanup = Cleanup {
        dir: std::env::temp_dir().join(format!("kaipo-deb-{pid}")),
        marker: history.join(format!("kaipo-deb-test-{pid}")),
        made_history_dir: !history.exists(),
        made_group: !Command::new("getent")
            .args(["group", "kaipo"])
            .status()?
            .success(),
        made_user: !Command::new("getent")
            .args(["passwd", "kaipo"])
            .status()?
            .success(),
    };
    std::fs::create_dir_all(&cleanup.dir)?;
    let kaipo = kaipo_bin()?;
    let deb = cleanup.dir.join("kaipo.deb");
    run(Command::new(kaipo.with_file_name("xtask"))
        .args(["deb", "--binary"])
        .arg(&kaipo)
        .arg("--output")
        .arg(&deb))
    .context("xtask deb (build the workspace's binaries first: cargo build --bins)")?;
    let deb = deb.to_str().context("path")?;

    let listing = run(Command::new("dpkg-deb").args(["-c", deb]))?;
    for path in [
        "./usr/bin/kaipo",
        "./usr/lib/systemd/system/kaipo.service",
        "./usr/share/man/man1/kaipo.1.gz",
        "./usr/share/man/man1/kaipo-daemon.1.gz",
        "./usr/share/man/man1/kaipo-report.1.gz",
        "./usr/share/bash-completion/completions/kaipo",
        "./usr/share/zsh/vendor-completions/_kaipo",
        "./usr/share/fish/vendor_completions.d/kaipo.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} not in\n{listing}"
        );
    }
    let fields = run(Command::new("dpkg-deb").args(["-f", deb, "Package", "Depends"]))?;
    assert!(
        fields.contains("Package: kaipo") && fields.contains("libpcap0.8"),
        "{fields}"
    );

    dpkg(&["-i", deb])?;
    std::fs::create_dir_all(history)?;
    std::fs::write(&cleanup.marker, "history")?;
    assert!(Path::new("/usr/bin/kaipo").is_file());
    let version = run(Command::new("/usr/bin/kaipo").arg("--version"))?;
    assert_eq!(
        version.trim(),
        format!("kaipo {}", env!("CARGO_PKG_VERSION"))
    );
    let page = run(Command::new("man")
        .args(["-P", "cat", "kaipo-report"])
        .env("MANWIDTH", "100"))?;
    assert!(page.contains("--prometheus"), "{page}");
    let man_path = run(Command::new("man").args(["-w", "kaipo"]))?;
    assert_eq!(man_path.trim(), "/usr/share/man/man1/kaipo.1.gz");
    let complete = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/kaipo && complete -p kaipo \
         && COMP_WORDS=(kaipo rep) COMP_CWORD=1 && _kaipo kaipo rep kaipo && echo ${COMPREPLY[*]}",
    ]))?;
    assert!(complete.contains(" -F _kaipo kaipo"), "{complete}");
    assert_eq!(complete.lines().last(), Some("report"), "{complete}");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/kaipo.service"])
        .output()?;
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let group = run(Command::new("getent").args(["group", "kaipo"]))?;
    assert!(group.starts_with("kaipo:"), "{group}");
    // The user the daemon becomes, in group kaipo, with no home and no shell.
    let user = run(Command::new("getent").args(["passwd", "kaipo"]))?;
    let fields: Vec<&str> = user.trim().split(':').collect();
    assert_eq!(
        (fields[0], fields.get(5).copied(), fields.get(6).copied()),
        ("kaipo", Some("/nonexistent"), Some("/usr/sbin/nologin")),
        "{user}"
    );
    assert_eq!(
        fields.get(3),
        group.split(':').nth(2).as_ref(),
        "{user} {group}"
    );

    dpkg(&["--purge", "kaipo"])?;
    assert!(!Path::new("/usr/bin/kaipo").exists());
    assert!(!Path::new("/usr/lib/systemd/system/kaipo.service").exists());
    assert_eq!(std::fs::read_to_string(&cleanup.marker)?, "history");
    drop(cleanup);
    Ok(())
}
