//! `cargo xtask man`, `cargo xtask completions` and `cargo xtask deb`: the man pages and
//! shell completions generated from kaipo's clap definition (the same one the binary parses
//! with, so they cannot drift from it), and a Debian package holding the binary, the systemd
//! unit, the man pages and the completions.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use clap::CommandFactory as _;

use crate::{run, workspace_root};

#[derive(Debug, clap::Args)]
pub struct OutArgs {
    /// Directory to write into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DebArgs {
    /// The kaipo binary to package [default: build target/release/kaipo].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Where the package goes [default: target/kaipo_VERSION_ARCH.deb].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `kaipo.1` and one `kaipo-SUBCOMMAND.1` per subcommand (nested ones too).
pub fn man(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let cmd = kaipo::cli::Cli::command();
    write_pages(&cmd, "kaipo", out, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = cmd.clone().bin_name(name.replace('-', " "));
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .title(name.to_ascii_uppercase())
        .render(&mut text)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = out.join(format!("{name}.1"));
    fs::write(&path, text)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), out, written)?;
    }
    Ok(())
}

/// Completions for bash, zsh and fish, under the names each shell looks for.
pub fn completions(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use clap_complete::Shell;
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "kaipo"),
        (Shell::Zsh, "_kaipo"),
        (Shell::Fish, "kaipo.fish"),
    ] {
        let mut cmd = kaipo::cli::Cli::command();
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, "kaipo", &mut text);
        let path = out.join(file);
        fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Removes the staging tree on every way out.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const POSTINST: &str = r#"#!/bin/sh
# kaipo's package: the group whose members may read every process's figures, the user the
# daemon becomes once its programs are attached, and systemd told about the unit. The service is
# not enabled: `systemctl enable --now kaipo` once configured.
set -e
if [ "$1" = configure ]; then
    getent group kaipo >/dev/null || groupadd --system kaipo
    getent passwd kaipo >/dev/null || useradd --system --gid kaipo --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin --comment "kaipo daemon" kaipo
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl disable --now kaipo.service >/dev/null 2>&1 || true
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
# Purging leaves the history (/var/lib/kaipo) and the group in place: they are the user's data
# and other readers' membership. Remove them by hand if they are no longer wanted.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
"#;

pub fn deb(args: &DebArgs) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => {
            run(crate::cargo().args(["build", "--release", "-p", "kaipo-user", "--bin", "kaipo"]))?;
            root.join("target/release/kaipo")
        }
    };
    if !binary.is_file() {
        bail!("{} is not a file", binary.display());
    }
    let version = env!("CARGO_PKG_VERSION");
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .context("dpkg --print-architecture")?
            .stdout,
    )?
    .trim()
    .to_owned();
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| root.join(format!("target/kaipo_{version}_{arch}.deb")));
    let staging = Staging(root.join(format!("target/deb-staging-{}", std::process::id())));
    let _ = fs::remove_dir_all(&staging.0);
    let tree = &staging.0;
    let bin = tree.join("usr/bin/kaipo");
    fs::create_dir_all(bin.parent().context("parent")?)?;
    fs::copy(&binary, &bin)?;
    run(Command::new("strip").arg("--strip-debug").arg(&bin))?;
    let unit = tree.join("usr/lib/systemd/system/kaipo.service");
    fs::create_dir_all(unit.parent().context("parent")?)?;
    let text = kaipo::service::render(Path::new("/usr/bin/kaipo"))
        .map_err(|e| anyhow::anyhow!("the unit for /usr/bin/kaipo: {e}"))?
        .text;
    fs::write(&unit, text)?;
    let man_dir = tree.join("usr/share/man/man1");
    for page in man(&man_dir)? {
        run(Command::new("gzip").args(["-9n"]).arg(&page))?;
    }
    let comp = staging.0.join("completions");
    completions(&comp)?;
    for (file, dest) in [
        ("kaipo", "usr/share/bash-completion/completions/kaipo"),
        ("_kaipo", "usr/share/zsh/vendor-completions/_kaipo"),
        (
            "kaipo.fish",
            "usr/share/fish/vendor_completions.d/kaipo.fish",
        ),
    ] {
        let dest = tree.join(dest);
        fs::create_dir_all(dest.parent().context("parent")?)?;
        fs::copy(comp.join(file), dest)?;
    }
    fs::remove_dir_all(&comp)?;
    let doc = tree.join("usr/share/doc/kaipo");
    fs::create_dir_all(&doc)?;
    fs::write(doc.join("copyright"), "kaipo\nLicense: MIT OR Apache-2.0\n")?;
    let control = tree.join("DEBIAN");
    fs::create_dir_all(&control)?;
    let installed_kib = dir_size(tree)? / 1024;
    fs::write(
        control.join("control"),
        format!(
            "Package: kaipo\nVersion: {version}\nArchitecture: {arch}\nMaintainer: kaipo developers <kaipo@localhost>\n\
             Installed-Size: {installed_kib}\nDepends: libc6, libpcap0.8, libgcc-s1, libssl3, passwd\nSection: net\nPriority: optional\n\
             Description: which process is using the network, counted in the kernel\n \
             kaipo counts bytes and packets per process, connection and interface with eBPF\n \
             programs, keeps history, serves Prometheus metrics and a live dashboard.\n"
        ),
    )?;
    for (name, text) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        let path = control.join(name);
        fs::write(&path, text)?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    if let Some(dir) = output.parent() {
        fs::create_dir_all(dir)?;
    }
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(tree)
        .arg(&output))?;
    println!("wrote {}", output.display());
    Ok(output)
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        total += if meta.is_dir() {
            dir_size(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages and completions come from the clap definition: a page per subcommand, and
    /// completions that know the subcommands and their flags.
    #[test]
    fn pages_and_completions_follow_the_command_line() {
        let dir = std::env::temp_dir().join(format!("kaipo-xtask-man-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let pages = man(&dir.join("man")).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "kaipo.1",
            "kaipo-daemon.1",
            "kaipo-report.1",
            "kaipo-config-set.1",
        ] {
            assert!(names.contains(&want.to_owned()), "{names:?}");
        }
        let report = fs::read_to_string(dir.join("man/kaipo-report.1")).unwrap();
        assert!(report.contains("\\-\\-prometheus"), "{report}");
        completions(&dir.join("comp")).unwrap();
        let bash = fs::read_to_string(dir.join("comp/kaipo")).unwrap();
        assert!(bash.contains("--metrics-host") && bash.contains("install-service"));
        let fish = fs::read_to_string(dir.join("comp/kaipo.fish")).unwrap();
        assert!(fish.contains("-l prometheus"), "{fish}");
        let zsh = fs::read_to_string(dir.join("comp/_kaipo")).unwrap();
        assert!(zsh.starts_with("#compdef kaipo"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
