//! `kaipo install-service` and `kaipo uninstall-service`: the hardened systemd unit from
//! `packaging/kaipo.service`, the `kaipo` group, and systemd told about them.
//!
//! `--root DIR` writes under DIR instead of `/` (a staging tree, or a test): no command is
//! run there, and the group goes straight into DIR/etc/group.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

pub mod launchd;
mod unit;

pub use self::unit::{render, under_home, Unit, UnitError, UNIT_TEMPLATE};

pub const UNIT_PATH: &str = "etc/systemd/system/kaipo.service";
pub const UNIT_NAME: &str = "kaipo.service";

/// What `kaipo install-service` does.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Install under this directory instead of / (nothing is run there).
    pub root: PathBuf,
    /// The kaipo binary the unit runs; `None`: this one.
    pub binary: Option<PathBuf>,
    /// Also start the service now and at every boot.
    pub enable: bool,
}

/// What `kaipo uninstall-service` does.
#[derive(Clone, Debug)]
pub struct UninstallOptions {
    /// Remove from under this directory instead of /.
    pub root: PathBuf,
}

fn is_live(root: &Path) -> bool {
    root == Path::new("/")
}

/// Whether systemd manages this machine (what sd_booted checks).
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

pub fn install(args: &InstallOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .and_then(fs::canonicalize)
            .context("finding the kaipo binary")?,
    };
    let unit = render(&binary)?;
    check_binary(&args.root, &binary)?;
    for note in &unit.notes {
        eprintln!("kaipo: {note}");
    }
    let path = args.root.join(UNIT_PATH);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, &unit.text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    writeln!(out, "wrote {} (runs {})", path.display(), binary.display())?;
    if ensure_group(&args.root)? {
        writeln!(out, "created group {}", crate::daemon::access::GROUP)?;
    }
    if ensure_user(&args.root)? {
        writeln!(out, "created user {USER}")?;
    }
    if !is_live(&args.root) {
        if args.enable {
            bail!("--enable needs the live system, not --root");
        }
        return Ok(());
    }
    if !systemd_runs() {
        if args.enable {
            bail!("systemd does not run here; the unit is in place but cannot be enabled");
        }
        writeln!(out, "systemd does not run here; nothing reloaded")?;
        return Ok(());
    }
    systemctl(&["daemon-reload"])?;
    if args.enable {
        systemctl(&["enable", "--now", UNIT_NAME])?;
        writeln!(out, "enabled and started {UNIT_NAME}")?;
    } else {
        writeln!(out, "start it with: systemctl enable --now {UNIT_NAME}")?;
    }
    Ok(())
}

pub fn uninstall(args: &UninstallOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = args.root.join(UNIT_PATH);
    let live = is_live(&args.root) && systemd_runs();
    if live && path.exists() {
        // A unit that is not loaded or not enabled is not an error here.
        let _ = Command::new("systemctl")
            .args(["disable", "--now", UNIT_NAME])
            .status();
    }
    match fs::remove_file(&path) {
        Ok(()) => writeln!(out, "removed {}", path.display())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            writeln!(out, "{} was not installed", path.display())?
        }
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    if live {
        systemctl(&["daemon-reload"])?;
    }
    // The user and group stay: the history database they own and its readers' membership
    // still use them.
    writeln!(
        out,
        "kept user {USER}, group {} and /var/lib/kaipo",
        crate::daemon::access::GROUP
    )?;
    Ok(())
}

/// The binary must be there: on the live system, an executable only root can replace; in a
/// staging tree, an executable under it (or on this machine, where the tree is for it).
fn check_binary(root: &Path, binary: &Path) -> Result<(), UnitError> {
    if is_live(root) {
        unit::check_executable(binary, binary)?;
        return unit::check_only_root_writes(binary);
    }
    let staged = root.join(binary.strip_prefix("/").unwrap_or(binary));
    if staged.exists() {
        unit::check_executable(&staged, binary)
    } else {
        unit::check_executable(binary, binary)
    }
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !status.success() {
        bail!("systemctl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The user the daemon becomes after start.
const USER: &str = crate::config::DEFAULT_DAEMON_USER;

/// Creates the system user `kaipo` (group `kaipo`, no home, no login) when missing. Returns
/// whether it did.
fn ensure_user(root: &Path) -> anyhow::Result<bool> {
    let passwd_file = root.join("etc/passwd");
    let users = match fs::read_to_string(&passwd_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", passwd_file.display())),
    };
    if users.lines().any(|l| l.split(':').next() == Some(USER)) {
        return Ok(false);
    }
    let group = crate::daemon::access::GROUP;
    if is_live(root) {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--gid",
                group,
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "kaipo daemon",
                USER,
            ])
            .status()
            .context("running useradd")?;
        if !status.success() {
            bail!("useradd --system {USER} failed ({status})");
        }
        return Ok(true);
    }
    // A staging tree: the highest free system uid, and the gid of group kaipo there.
    let groups = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    let gid = groups
        .lines()
        .find(|l| l.split(':').next() == Some(group))
        .and_then(|l| l.split(':').nth(2))
        .context("group kaipo is missing from the staging tree's etc/group")?
        .to_owned();
    let used: Vec<u32> = users
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let uid = (100..1000)
        .rev()
        .find(|u| !used.contains(u))
        .context("no free system uid")?;
    let sep = if users.is_empty() || users.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    fs::write(
        &passwd_file,
        format!("{users}{sep}{USER}:x:{uid}:{gid}:kaipo daemon:/nonexistent:/usr/sbin/nologin\n"),
    )
    .with_context(|| format!("writing {}", passwd_file.display()))?;
    Ok(true)
}

/// Creates the system group `kaipo` when missing. Returns whether it did.
fn ensure_group(root: &Path) -> anyhow::Result<bool> {
    let name = crate::daemon::access::GROUP;
    let group_file = root.join("etc/group");
    let groups = match fs::read_to_string(&group_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", group_file.display())),
    };
    if groups.lines().any(|l| l.split(':').next() == Some(name)) {
        return Ok(false);
    }
    if is_live(root) {
        let status = Command::new("groupadd")
            .args(["--system", name])
            .status()
            .context("running groupadd")?;
        if !status.success() {
            bail!("groupadd --system {name} failed ({status})");
        }
        return Ok(true);
    }
    // A staging tree: the highest free system gid, as groupadd --system would pick.
    let used: Vec<u32> = groups
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let gid = (100..1000)
        .rev()
        .find(|g| !used.contains(g))
        .context("no free system gid")?;
    if let Some(dir) = group_file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let sep = if groups.is_empty() || groups.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    fs::write(&group_file, format!("{groups}{sep}{name}:x:{gid}:\n"))
        .with_context(|| format!("writing {}", group_file.display()))?;
    Ok(true)
}
