//! `cargo xtask fuzz`: runs each cargo-fuzz target (fuzz/) for a bounded time, one after the
//! other, and sums up what each did. Never part of `cargo xtask test`.
//!
//! Each target starts from its committed seeds (fuzz/corpus/TARGET, left untouched) and a
//! working corpus under target/fuzz-corpus/TARGET that grows from run to run; a crash leaves
//! its input in target/fuzz-artifacts/TARGET/.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::workspace_root;

/// The targets in fuzz/fuzz_targets/, in the order they run.
pub const TARGETS: [&str; 5] = [
    "pcap_frame",
    "api_request",
    "http_head",
    "config",
    "dns_answer",
];

/// What one target's run did, from libFuzzer's output.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    runs: u64,
    corpus: u64,
    crashes: Vec<String>,
}

pub fn run(seconds: u64, only: Option<String>) -> anyhow::Result<()> {
    let targets: Vec<&str> = match &only {
        Some(name) => match TARGETS.iter().find(|t| **t == name.as_str()) {
            Some(t) => vec![*t],
            None => bail!("no fuzz target {name}; targets: {}", TARGETS.join(", ")),
        },
        None => TARGETS.to_vec(),
    };
    let has_cargo_fuzz = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_cargo_fuzz {
        bail!(
            "`cargo +nightly fuzz` is not available: install cargo-fuzz with \
             `cargo install cargo-fuzz --locked` and the nightly toolchain with \
             `rustup toolchain install nightly` (scripts/setup.sh does both)"
        );
    }
    let root = workspace_root();
    let mut outcomes = Vec::new();
    for target in &targets {
        println!("fuzz: {target} for {seconds} s");
        let outcome = run_target(&root, target, seconds)?;
        outcomes.push((target, outcome));
    }
    println!(
        "\n{:<12} {:>12} {:>8} {:>8}",
        "target", "runs", "corpus", "crashes"
    );
    let mut crashed = 0;
    for (target, o) in &outcomes {
        println!(
            "{target:<12} {:>12} {:>8} {:>8}",
            o.runs,
            o.corpus,
            o.crashes.len()
        );
        for artifact in &o.crashes {
            println!("  crash input: {artifact}");
        }
        crashed += usize::from(!o.crashes.is_empty());
    }
    if crashed > 0 {
        bail!("{crashed} fuzz target(s) crashed; reproduce with `cargo +nightly fuzz run --fuzz-dir fuzz TARGET INPUT`");
    }
    Ok(())
}

/// `cargo +nightly`, without what the stable cargo running xtask set to pin its toolchain.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}

fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let work = root.join("target").join("fuzz-corpus").join(target);
    let artifacts = root.join("target").join("fuzz-artifacts").join(target);
    for dir in [&work, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let seeds = root.join("fuzz").join("corpus").join(target);
    let mut cmd = nightly_cargo();
    cmd.current_dir(root)
        // The build is cached between targets and runs; incremental artifacts would only
        // take disk space.
        .env("CARGO_INCREMENTAL", "0")
        .args(["fuzz", "run", "--fuzz-dir", "fuzz", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // libFuzzer's default: one process, one job (`-jobs` would write fuzz-N.log files).
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let stderr = child.stderr.take().context("cargo fuzz's stderr")?;
    let mut outcome = Outcome::default();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading libFuzzer's output")?;
        read_line(&line, &mut outcome);
        // libFuzzer's progress lines are many; keep what tells a story.
        // Cargo's relay of the eBPF build's progress is noise here.
        let noise = line.starts_with("warning: kaipo-user@")
            || (line.starts_with('#') && !line.contains("DONE") && !line.contains("INITED"));
        if !noise {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    if !status.success() && outcome.crashes.is_empty() {
        // A failed build, or a crash libFuzzer wrote no input for (timeout, out of memory
        // are reported as crashes with an input, so this is the build).
        bail!("cargo fuzz run {target} failed: {status}");
    }
    Ok(outcome)
}

/// Takes the figures libFuzzer prints: `#N DONE cov: C ft: F corp: K/Sb ...`, the final
/// `stat::number_of_executed_units: N`, and `Test unit written to PATH` for each crash.
fn read_line(line: &str, outcome: &mut Outcome) {
    if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
        if let Ok(n) = n.trim().parse() {
            outcome.runs = n;
        }
    } else if let Some(rest) = line.strip_prefix('#') {
        let mut words = rest.split_whitespace();
        if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
            outcome.runs = outcome.runs.max(n);
        }
        let corpus = rest
            .split_whitespace()
            .skip_while(|w| *w != "corp:")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .and_then(|c| c.parse().ok());
        if let Some(c) = corpus {
            outcome.corpus = c;
        }
    } else if let Some(path) = line.split("Test unit written to ").nth(1) {
        outcome.crashes.push(path.trim().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_figures() {
        let mut o = Outcome::default();
        for line in [
            "INFO: seed corpus: files: 25 min: 42b max: 1514b total: 4000b rss: 40Mb",
            "#26\tINITED cov: 310 ft: 600 corp: 20/2100b exec/s: 0 rss: 45Mb",
            "#524288\tpulse  cov: 900 ft: 2400 corp: 310/40Kb lim: 4096 exec/s: 87381 rss: 400Mb",
            "#5300001\tDONE   cov: 912 ft: 2450 corp: 318/41Kb lim: 4096 exec/s: 88333 rss: 410Mb",
            "stat::number_of_executed_units: 5300017",
            "artifact_prefix='/t/a/'; Test unit written to /t/a/crash-0123abcd",
        ] {
            read_line(line, &mut o);
        }
        assert_eq!(
            o,
            Outcome {
                runs: 5_300_017,
                corpus: 318,
                crashes: vec!["/t/a/crash-0123abcd".into()],
            }
        );
    }
}
