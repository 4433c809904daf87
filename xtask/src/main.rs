//! `cargo xtask`: kaipo's orchestration. Building stays with cargo; this runs the steps that
//! need more than one cargo invocation (tests across both targets, clippy over both targets,
//! benchmarks that need root and network namespaces).

mod bench;

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
    /// Format check, clippy on both targets, then every test (unit, program test runs,
    /// end-to-end in network namespaces; the last two need root).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// clippy with warnings as errors, for the host crates and the eBPF crate.
    Clippy,
    /// Benchmarks; figures go to stdout for BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Test { test_args } => test(&test_args),
        Task::Clippy => clippy(),
        Task::Bench { which } => bench::run(which),
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

fn cargo() -> Command {
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
    run(cargo().args(["test", "--"]).args(test_args))
}

fn clippy() -> anyhow::Result<()> {
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
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
