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

/// The unit with `@KAIPO@` standing for the binary.
pub const UNIT_TEMPLATE: &str = include_str!("../../../packaging/kaipo.service");
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

/// The unit for `binary`.
pub fn unit(binary: &Path) -> String {
    UNIT_TEMPLATE.replace("@KAIPO@", &binary.display().to_string())
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
    if !binary.is_absolute() {
        bail!("--binary {} must be an absolute path", binary.display());
    }
    let path = args.root.join(UNIT_PATH);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, unit(&binary)).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    writeln!(out, "wrote {} (runs {})", path.display(), binary.display())?;
    if ensure_group(&args.root)? {
        writeln!(out, "created group {}", crate::daemon::access::GROUP)?;
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
    // The group stays: the history database and its readers' membership still use it.
    writeln!(
        out,
        "kept group {} and /var/lib/kaipo",
        crate::daemon::access::GROUP
    )?;
    Ok(())
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
