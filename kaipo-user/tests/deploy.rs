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
    state.set_kernel(
        vec![kaipo::metrics::ProgramStat {
            name: "kaipo_xdp".into(),
            run_time_ns: 10,
            run_count: 1,
        }],
        None,
    );
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

/// The flags of the README's tested `podman run -d --name kaipo ...` line (tests/tests/image.rs
/// runs exactly these), without `-d`, the name, the history volume and the image.
fn podman_flags() -> Vec<String> {
    let readme = std::fs::read_to_string(deploy().join("../README.md")).expect("README");
    let mut words = Vec::new();
    for line in readme
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("podman run -d --name kaipo "))
    {
        let line = line.trim();
        words.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_owned),
        );
        if !line.ends_with('\\') {
            break;
        }
    }
    assert_eq!(words.pop().as_deref(), Some("localhost/kaipo:latest"));
    let mut flags = Vec::new();
    let mut it = words.into_iter().skip(2);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-d" => {}
            "--name" | "--security-opt" => {
                let v = it.next().expect("a value");
                if w == "--security-opt" {
                    flags.push(format!("--security-opt={v}"));
                }
            }
            "-v" => {
                let v = it.next().expect("a volume");
                if !v.starts_with("kaipo-history:") {
                    flags.push(format!("-v={v}"));
                }
            }
            _ => flags.push(w),
        }
    }
    flags
}

type Yaml = serde_yaml::Value;

fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).expect("manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Yaml::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

use serde::Deserialize as _;

fn get<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn s(v: &Yaml) -> &str {
    v.as_str().unwrap_or_default()
}

/// The manifests parse, and the DaemonSet's pod spec is the tested `podman run` line:
/// every flag maps to its field, and a flag with no mapping fails the test.
#[test]
fn kubernetes_manifests_mirror_the_tested_container_flags() {
    let dir = deploy().join("kubernetes");
    let mut objects: Vec<Yaml> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in &files {
        objects.extend(yaml_docs(f));
    }
    let by_kind = |kind: &str| -> &Yaml {
        objects
            .iter()
            .find(|o| s(&o["kind"]) == kind)
            .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"))
    };
    for o in &objects {
        assert!(!s(&o["apiVersion"]).is_empty() && !s(&o["metadata"]["name"]).is_empty());
        if s(&o["kind"]) != "Namespace" {
            assert_eq!(s(&o["metadata"]["namespace"]), "kaipo", "{o:?}");
        }
    }
    let ds = by_kind("DaemonSet");
    let pod = get(ds, "spec.template.spec");
    let c = get(pod, "containers.0");
    assert_eq!(s(&c["image"]), "localhost/kaipo:latest");
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    let mount = |path: &str| {
        let m = c["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .find(|m| s(&m["mountPath"]) == path)
            .unwrap_or_else(|| panic!("no mount at {path}"));
        let vol = pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("the mount's volume");
        (
            s(&vol["hostPath"]["path"]).to_owned(),
            m["readOnly"].as_bool().unwrap_or(false),
        )
    };
    let flags = podman_flags();
    assert!(flags.len() >= 7, "{flags:?}");
    for flag in &flags {
        match flag.as_str() {
            "--pid=host" => assert_eq!(pod["hostPID"].as_bool(), Some(true)),
            "--network=host" => assert_eq!(pod["hostNetwork"].as_bool(), Some(true)),
            // Kubernetes has no field for it; the hostPath mount of the cgroup tree below
            // gives the socket hooks the host's root cgroup.
            "--cgroupns=host" => {}
            "--read-only" => assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true)),
            "--cap-drop=all" => assert_eq!(sc["capabilities"]["drop"], Yaml::from(vec!["ALL"])),
            "--security-opt=seccomp=unconfined" => {
                assert_eq!(s(&sc["seccompProfile"]["type"]), "Unconfined");
            }
            f if f.starts_with("--cap-add=") => {
                let want: Vec<&str> = f["--cap-add=".len()..].split(',').collect();
                assert_eq!(sc["capabilities"]["add"], Yaml::from(want), "{f}");
            }
            f if f.starts_with("-v=") => {
                let parts: Vec<&str> = f[3..].split(':').collect();
                let (host, ro) = mount(parts[1]);
                assert_eq!(host, parts[0], "{f}");
                assert_eq!(ro, parts.get(2) == Some(&"ro"), "{f}");
            }
            f => panic!("the README's podman flag {f} has no counterpart checked here"),
        }
    }
    // The node's name is the host label.
    let env = get(c, "env.0");
    assert_eq!(s(&env["name"]), "KAIPO_METRICS_HOST");
    assert_eq!(s(get(env, "valueFrom.fieldRef.fieldPath")), "spec.nodeName");
    // One port, named metrics, from the config to the PodMonitor.
    let cm = by_kind("ConfigMap");
    let config = kaipo::config::Config::parse(
        s(&cm["data"]["kaipo.toml"]),
        Path::new("configmap kaipo.toml"),
    )
    .expect("the ConfigMap's kaipo.toml is a valid configuration");
    let port = config.metrics.listen.expect("metrics.listen").port();
    assert_eq!(port, 9542);
    assert_eq!(s(get(c, "ports.0.name")), "metrics");
    assert_eq!(
        get(c, "ports.0.containerPort").as_u64(),
        Some(u64::from(port))
    );
    let svc = by_kind("Service");
    assert_eq!(
        get(svc, "spec.ports.0.port").as_u64(),
        Some(u64::from(port))
    );
    assert_eq!(s(get(svc, "spec.ports.0.targetPort")), "metrics");
    let pm = by_kind("PodMonitor");
    assert_eq!(s(get(pm, "spec.podMetricsEndpoints.0.port")), "metrics");
    let pod_labels = get(ds, "spec.template.metadata.labels");
    for selector in [
        get(pm, "spec.selector.matchLabels"),
        get(svc, "spec.selector"),
        get(ds, "spec.selector.matchLabels"),
    ] {
        for (k, v) in selector.as_mapping().expect("selector") {
            assert_eq!(&pod_labels[k], v, "selector {k:?}");
        }
    }
    assert_eq!(
        pod["serviceAccountName"],
        by_kind("ServiceAccount")["metadata"]["name"]
    );
    let config_volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| s(&v["name"]) == "config")
        .expect("config volume");
    assert_eq!(config_volume["configMap"]["name"], cm["metadata"]["name"]);
}

/// The Helm chart: its values hold the interval, interfaces, metrics labels and resources,
/// every `.Values` path a template reads exists, and its pod spec's security settings are the
/// plain DaemonSet's, line for line. (Helm itself is not a Debian package; the chart is not
/// rendered here.)
#[test]
fn the_helm_chart_reads_only_values_it_defines() {
    let chart = deploy().join("helm/kaipo");
    let meta = &yaml_docs(&chart.join("Chart.yaml"))[0];
    assert_eq!(s(&meta["apiVersion"]), "v2");
    assert_eq!(s(&meta["name"]), "kaipo");
    let values = &yaml_docs(&chart.join("values.yaml"))[0];
    for key in [
        "interval",
        "interfaces",
        "metrics.labels",
        "metrics.port",
        "resources",
    ] {
        assert!(!get(values, key).is_null(), "values.yaml has no {key}");
    }
    let mut read = Vec::new();
    for e in std::fs::read_dir(chart.join("templates")).expect("templates") {
        let text = std::fs::read_to_string(e.expect("entry").path()).expect("template");
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".Values.") {
            rest = &rest[i + ".Values.".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            read.push(path.trim_end_matches('.').to_owned());
        }
    }
    assert!(read.len() > 10, "{read:?}");
    for path in &read {
        assert!(
            !get(values, path).is_null(),
            "templates read .Values.{path}, undefined"
        );
    }
    let plain = std::fs::read_to_string(deploy().join("kubernetes/daemonset.yaml")).expect("ds");
    let templated =
        std::fs::read_to_string(chart.join("templates/daemonset.yaml")).expect("template");
    let security = |t: &str| -> Vec<String> {
        t.lines()
            .skip_while(|l| !l.contains("securityContext:"))
            .take_while(|l| !l.contains("volumeMounts:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(security(&plain), security(&templated));
    for field in [
        "hostPID: true",
        "hostNetwork: true",
        "fieldPath: spec.nodeName",
    ] {
        assert!(templated.contains(field), "{field}");
    }
}

/// Every metric name a PromQL expression reads: kaipo's own (`kaipo_*`, `process_*`) and
/// recording rules (`level:metric:operations`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in expr.chars().chain([' ']) {
        if c == '"' {
            in_string = !in_string;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if word.starts_with("kaipo_") || word.starts_with("process_") || word.contains(':') {
            names.push(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

/// Every expression of the Grafana dashboard: panel targets and template variables.
pub fn dashboard_exprs() -> Vec<String> {
    let text =
        std::fs::read_to_string(deploy().join("grafana/kaipo-fleet.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs: Vec<String> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    exprs.extend(
        d["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .filter_map(|v| v["definition"].as_str().map(str::to_owned)),
    );
    exprs
}

#[test]
fn the_dashboard_reads_only_metrics_kaipo_exports() {
    let mut state = kaipo::metrics::MetricsState::with_labels(
        3,
        kaipo::metrics::labels::LabelKind::ALL.to_vec(),
        "h".into(),
    );
    state.set_kernel(
        vec![kaipo::metrics::ProgramStat {
            name: "kaipo_xdp".into(),
            run_time_ns: 1,
            run_count: 1,
        }],
        None,
    );
    let text = state.render(Some(&kaipo::metrics::process::ProcessStats::default()));
    let mut known: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect();
    let rules =
        std::fs::read_to_string(deploy().join("prometheus/kaipo-rules.yml")).expect("rules");
    known.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- record: "))
            .map(str::to_owned),
    );
    assert_eq!(
        metric_names("sum by (host) (rate(kaipo_app_bytes_total{app=\"kaipo_x\"}[1m])) / a:b:c"),
        ["kaipo_app_bytes_total", "a:b:c"]
    );
    let exprs = dashboard_exprs();
    assert_eq!(exprs.len(), 14, "{exprs:#?}");
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{e} reads no kaipo metric");
        for n in names {
            assert!(
                known.contains(&n),
                "{e} reads {n}, which kaipo does not export"
            );
        }
        // Every panel can be narrowed to some hosts.
        assert!(
            e.starts_with("label_values(") || e.contains("host=~\"$host\""),
            "{e}"
        );
    }
}
