//! `cargo xtask image`: kaipo's OCI image, built here without a registry.
//!
//! The root filesystem is the `kaipo` binary (debug information stripped) and exactly the
//! shared libraries `ldd` says it loads, each at the path the dynamic loader looks for it,
//! plus `/etc/passwd`, `/etc/group` (group `kaipo` for the API socket) and the image's
//! default configuration. `podman build` turns `Containerfile` over that context into an
//! image (it starts `FROM scratch` and runs nothing, so no container runtime is involved),
//! and `podman save` writes it as an OCI archive that `podman load` or `docker load` reads.
//! The staging directory is removed whatever happens.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{run, workspace_root};

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The kaipo binary to put in the image [default: build target/release/kaipo].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The image's name.
    #[arg(long, default_value = "localhost/kaipo:latest")]
    pub tag: String,
    /// Where the OCI archive goes.
    #[arg(long, value_name = "FILE", default_value = "target/kaipo-image.tar")]
    pub output: PathBuf,
}

/// Removes the staging directory on every way out.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn image(args: &ImageArgs) -> anyhow::Result<()> {
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
    let staging = Staging(root.join(format!("target/image-staging-{}", std::process::id())));
    let _ = fs::remove_dir_all(&staging.0);
    let rootfs = staging.0.join("rootfs");
    fs::create_dir_all(rootfs.join("usr/bin"))?;
    let installed = rootfs.join("usr/bin/kaipo");
    fs::copy(&binary, &installed).with_context(|| format!("copying {}", binary.display()))?;
    run(Command::new("strip").arg("--strip-debug").arg(&installed))
        .context("stripping the binary (binutils)")?;
    for lib in shared_libraries(&binary)? {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap_or(&lib));
        fs::create_dir_all(dest.parent().context("a library path has a parent")?)?;
        // The file itself, not a link: the image has nothing else it could point at.
        fs::copy(&lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
    }
    for dir in [
        "etc/kaipo",
        "var/lib/kaipo",
        "run/kaipo",
        "tmp",
        "proc",
        "sys",
        "dev",
    ] {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/usr/bin/kaipo\nnobody:x:65534:65534:nobody:/:/usr/bin/kaipo\n",
    )?;
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nkaipo:x:998:\nnogroup:x:65534:\n",
    )?;
    fs::copy(
        root.join("packaging/container/kaipo.toml"),
        rootfs.join("etc/kaipo/kaipo.toml"),
    )?;
    fs::copy(root.join("Containerfile"), staging.0.join("Containerfile"))?;
    run(Command::new("podman")
        .args(["build", "--quiet", "--pull=never", "--no-cache"])
        .arg("--label")
        .arg(format!(
            "org.opencontainers.image.version={}",
            env!("CARGO_PKG_VERSION")
        ))
        .args(["-t", &args.tag, "-f"])
        .arg(staging.0.join("Containerfile"))
        .arg(&staging.0))
    .context("podman build (Debian package podman)")?;
    let output = if args.output.is_absolute() {
        args.output.clone()
    } else {
        root.join(&args.output)
    };
    let _ = fs::remove_file(&output);
    run(Command::new("podman")
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&output)
        .arg(&args.tag))?;
    println!(
        "image {} written to {} ({} bytes); load it elsewhere with `podman load -i {}`",
        args.tag,
        output.display(),
        fs::metadata(&output)?.len(),
        output.display()
    );
    Ok(())
}

/// The libraries the dynamic loader maps for `binary`, the loader itself included.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    if !out.status.success() {
        bail!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8(out.stdout).context("ldd printed non-UTF-8")?;
    parse_ldd(&text)
}

/// `libpcap.so.0.8 => /lib/x86_64-linux-gnu/libpcap.so.0.8 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)` lines; `linux-vdso.so.1` has no file.
fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            bail!("a library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_every_file_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibpcap.so.0.8 => /lib/x86_64-linux-gnu/libpcap.so.0.8 (0x00007f1)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libpcap.so.0.8"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n")
                .unwrap_err()
                .to_string(),
            "a library is missing: libfoo.so.1 => not found"
        );
    }
}
