//! `kaipo install-service` on macOS: a launchd property list for the daemon in
//! `/Library/LaunchDaemons`, loaded with `launchctl bootstrap system` when `--enable` asks
//! for it. Without `--enable` the job is written `Disabled`, as a systemd unit that is not
//! enabled: launchd then does not start it at boot.
//!
//! The daemon runs as root there (macOS has no capabilities to keep instead) and logs its
//! stderr to `/var/log/kaipo.log`. `KeepAlive` with `SuccessfulExit = false` restarts it
//! after a crash (exit 101 on any panic) but not after a clean stop, as the unit's
//! `Restart=on-failure` does.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

pub const LABEL: &str = "org.kaipo.daemon";
pub const PLIST_PATH: &str = "Library/LaunchDaemons/org.kaipo.daemon.plist";
pub const LOG_PATH: &str = "/var/log/kaipo.log";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The property list that runs `binary daemon`; `enabled` decides whether launchd starts it.
pub fn plist(binary: &Path, enabled: bool) -> String {
    let binary = xml_escape(&binary.display().to_string());
    let disabled = if enabled { "<false/>" } else { "<true/>" };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LABEL}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{binary}</string>
		<string>daemon</string>
	</array>
	<key>Disabled</key>
	{disabled}
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>5</integer>
	<key>ProcessType</key>
	<string>Background</string>
	<key>StandardErrorPath</key>
	<string>{LOG_PATH}</string>
</dict>
</plist>
"#
    )
}

fn launchctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("launchctl")
        .args(args)
        .status()
        .with_context(|| format!("running launchctl {}", args.join(" ")))?;
    if !status.success() {
        bail!("launchctl {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// Writes the property list under `root` (`/` for the live system) and, live and with
/// `enable`, loads it.
pub fn install(
    root: &Path,
    binary: Option<PathBuf>,
    enable: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let live = root == Path::new("/");
    if enable && !live {
        bail!("--enable needs the live system, not --root");
    }
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe()
            .and_then(fs::canonicalize)
            .context("finding the kaipo binary")?,
    };
    if !binary.is_absolute() {
        bail!("--binary {} must be an absolute path", binary.display());
    }
    let path = root.join(PLIST_PATH);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, plist(&binary, enable))
        .with_context(|| format!("writing {}", path.display()))?;
    // launchd refuses a job file that others may write.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    writeln!(out, "wrote {} (runs {})", path.display(), binary.display())?;
    if live && enable {
        let path = path.display().to_string();
        launchctl(&["bootstrap", "system", &path])?;
        writeln!(out, "loaded and started {LABEL}")?;
    } else if live {
        writeln!(
            out,
            "start it with: sudo kaipo install-service --enable (the job is written disabled)"
        )?;
    }
    Ok(())
}

pub fn uninstall(root: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = root.join(PLIST_PATH);
    if root == Path::new("/") && path.exists() {
        // A job that is not loaded is not an error here.
        let _ = Command::new("launchctl")
            .args(["bootout", &format!("system/{LABEL}")])
            .status();
    }
    match fs::remove_file(&path) {
        Ok(()) => writeln!(out, "removed {}", path.display())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            writeln!(out, "{} was not installed", path.display())?
        }
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    Ok(())
}
