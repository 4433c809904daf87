//! The files under `deploy/`: Prometheus's scrape configuration and rules pass `promtool`
//! (Debian package `prometheus`, installed by scripts/setup.sh), and the rules' own unit tests
//! give their exact figures.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .join("deploy")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
        .expect("promtool is not installed: apt-get install prometheus (scripts/setup.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn prometheus_files_pass_promtool() {
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(config.contains("SUCCESS: 2 rule files found"), "{config}");
    let rules = promtool(&["check", "rules", "kaipo-rules.yml", "kaipo-alerts.yml"]);
    assert!(rules.contains("SUCCESS: 8 rules found"), "{rules}");
    assert!(rules.contains("SUCCESS: 4 rules found"), "{rules}");
    let tests = promtool(&["test", "rules", "tests/kaipo-rules-test.yml"]);
    assert!(tests.contains("SUCCESS"), "{tests}");
}

/// What the daemon serves passes `promtool check metrics` (names, units, HELP and TYPE).
#[test]
fn the_exposition_passes_promtool_check_metrics() {
    use std::io::Write as _;
    let mut state = kaipo::metrics::MetricsState::with_labels(
        3,
        vec![
            kaipo::metrics::labels::LabelKind::App,
            kaipo::metrics::labels::LabelKind::Container,
        ],
        "node-1".into(),
    );
    state.set_programs(vec![kaipo::metrics::ProgramStat {
        name: "kaipo_xdp".into(),
        run_time_ns: 10,
        run_count: 1,
    }]);
    let text = state.render(Some(&kaipo::metrics::process::ProcessStats {
        cpu_seconds: 1.0,
        resident_bytes: 10,
        start_time_seconds: 1.0,
    }));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{said}\n{text}"
    );
}
