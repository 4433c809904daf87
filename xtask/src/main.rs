//! `cargo xtask`: kaipo's orchestration. Building stays with cargo; this runs the steps that
//! need more than one cargo invocation (tests across both targets, clippy over both targets,
//! benchmarks that need root and network namespaces).

mod bench;
mod fuzz;
mod image;
mod package;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Format check, clippy on every target, then every test (unit, program test runs,
    /// end-to-end in network namespaces; the last two need root).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// clippy with warnings as errors, for the host crates, the eBPF crate, and kaipo-user on
    /// macOS and Windows.
    Clippy,
    /// The OCI image (Containerfile) from the kaipo binary and exactly its shared libraries,
    /// built with podman and saved as an archive for `podman load`.
    Image(image::ImageArgs),
    /// Man pages (kaipo.1 and one per subcommand) from the clap definition.
    Man(package::OutArgs),
    /// Shell completions for bash, zsh and fish from the clap definition.
    Completions(package::OutArgs),
    /// A Debian package: the binary, the systemd unit, man pages and completions.
    Deb(package::DebArgs),
    /// Benchmarks; figures go to stdout for BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Runs each cargo-fuzz target (fuzz/) for a bounded time, one after the other, and prints
    /// per target the inputs run, the corpus size and the crashes; fails on any crash. Needs
    /// the nightly toolchain and cargo-fuzz.
    Fuzz {
        /// Time per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (pcap_frame, api_request, http_head, config, dns_answer).
        target: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Test { test_args } => test(&test_args),
        Task::Clippy => clippy(),
        Task::Bench { which } => bench::run(which),
        Task::Image(args) => image::image(&args),
        Task::Man(args) => package::man(&args.out).map(|w| println!("wrote {} pages", w.len())),
        Task::Completions(args) => package::completions(&args.out).map(drop),
        Task::Deb(args) => package::deb(&args).map(drop),
        Task::Fuzz { seconds, target } => fuzz::run(seconds, target),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn test(test_args: &[String]) -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))
        .context("code is not formatted; run `cargo fmt --all`")?;
    clippy()?;
    // The end-to-end tests run the real binaries, so build them first.
    // The default members are every crate but the eBPF one, which builds only for BPF.
    run(cargo().args(["build", "--bins"]))?;
    run_tests(cargo().args(["test", "--"]).args(test_args))
}

/// Runs `cargo test`, passing its output through, and closes with one line that sums every
/// test binary's result, so the last line says what ran rather than the last (often empty)
/// binary's count.
fn run_tests(cmd: &mut Command) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some((p, f, i)) = result_counts(&line) {
            passed += p;
            failed += f;
            ignored += i;
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Passed, failed and ignored counts of a `test result:` line of libtest.
fn result_counts(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| -> u64 {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(word))
            .and_then(|n| n.trim().rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Some((count("passed"), count("failed"), count("ignored")))
}

/// Targets `kaipo` must also build for, with the pcap backend only: clippy over them keeps
/// Linux-only code and crates from leaking in. windows-gnu rather than msvc because its C
/// compiler (for the bundled SQLite) is a Debian package; macOS links its own SQLite and needs
/// no SDK for a check.
pub const OTHER_TARGETS: [&str; 2] = ["x86_64-apple-darwin", "x86_64-pc-windows-gnu"];

fn clippy() -> anyhow::Result<()> {
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The library and the binary; the tests drive Linux namespaces, /proc and Unix sockets.
    for target in OTHER_TARGETS {
        run(cargo().args([
            "clippy", "-p", "kaipo-user", "--lib", "--bins", "--target", target, "--", "-D",
            "warnings",
        ]))
        .with_context(|| {
            format!("kaipo-user does not check cleanly for {target} (scripts/setup.sh installs the target)")
        })?;
    }
    // The eBPF crate only builds for the BPF target, with the nightly toolchain.
    run(Command::new("rustup")
        .current_dir(workspace_root().join("kaipo-ebpf"))
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--bins",
            "--",
            "-D",
            "warnings",
        ])
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO"))
}

#[cfg(test)]
mod tests {
    use super::result_counts;

    #[test]
    fn sums_libtest_result_lines() {
        assert_eq!(
            result_counts(
                "test result: ok. 219 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
                 finished in 9.81s"
            ),
            Some((219, 0, 1))
        );
        assert_eq!(
            result_counts("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured"),
            Some((3, 2, 0))
        );
        assert_eq!(result_counts("running 3 tests"), None);
    }
}
