//! The HTML report as a browser sees it: render a fixed report to a file, load it in headless
//! Chromium and check the DOM Chromium built from it. This catches what string checks on the
//! generated text cannot: markup the parser repairs or drops, escaping that turns into
//! elements, SVG that does not end up in the document.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use kaipo::{
    report::{ExportFormat, HtmlExporter},
    store::{Dimension, Report, ReportRow, SeriesPoint, Tier},
};

const T0: i64 = 1_795_600_800_000; // 2026-11-25T10:00:00Z
const HOUR: i64 = 3_600_000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn row(key: &str, rx_bytes: u64, tx_bytes: u64) -> ReportRow {
    ReportRow {
        key: key.into(),
        name: None,
        rx_bytes,
        tx_bytes,
        rx_packets: rx_bytes / 1400,
        tx_packets: tx_bytes / 1400,
        process: None,
    }
}

/// Twelve hours by app, hour tier, with a quiet stretch the store has no buckets for.
fn report() -> Report {
    let rows = vec![
        row("firefox", 3 * GIB, 200 * MIB),
        row("apt", GIB, 10 * MIB),
        row("<script>alert(1)</script>", 300 * MIB, 300 * MIB),
        row("sshd", 20 * MIB, 60 * MIB),
        row("curl, \"the\" tool & co", 5 * MIB, MIB),
    ];
    let total = ReportRow {
        key: String::new(),
        name: None,
        rx_bytes: 4 * GIB + 330 * MIB,
        tx_bytes: 572 * MIB,
        rx_packets: 3_400_000,
        tx_packets: 500_000,
        process: None,
    };
    let series = (0..12)
        .filter(|h| !(5..8).contains(h))
        .map(|h| SeriesPoint {
            ts_ms: T0 + h * HOUR,
            rx_bytes: (h as u64 + 1) * 100 * MIB,
            tx_bytes: 40 * MIB,
        })
        .collect();
    Report {
        from_ms: T0,
        to_ms: T0 + 12 * HOUR,
        by: Some(Dimension::App),
        tier: Some(Tier::Hour),
        top_apps: rows.clone(),
        top_remotes: vec![
            row("151.101.1.69", 2 * GIB, 100 * MIB),
            row("2001:db8::53", GIB, 50 * MIB),
            row("10.0.0.2", 400 * MIB, 400 * MIB),
            row("", MIB, 0),
        ],
        rows,
        total,
        series,
        ..Report::default()
    }
}

fn chromium() -> PathBuf {
    let candidates = ["chromium", "chromium-browser"];
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .flat_map(|dir| candidates.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is needed to check the HTML report and is not installed \
                 (no chromium in PATH); run scripts/setup.sh"
            )
        })
}

/// Chromium's own serialization of the DOM it built from `page`.
fn dump_dom(page: &Path, scratch: &Path) -> String {
    let profile = scratch.join("profile");
    // `timeout` so a wedged browser fails the test instead of hanging it.
    let output = Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("DOM is UTF-8")
}

/// The serialized content of the element with this id, up to its section's end.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let end = dom[start..].find("</section>").expect("section ends") + start;
    &dom[start..end]
}

#[test]
fn chromium_shows_names_totals_and_charts() {
    let scratch = env::temp_dir().join(format!("kaipo-report-html-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();
    let page = scratch.join("report.html");
    let mut html = Vec::new();
    let exporter = HtmlExporter;
    kaipo::report::Exporter::export(&exporter, &report(), &mut html).unwrap();
    assert_eq!(
        kaipo::report::Exporter::format(&exporter),
        ExportFormat::Html
    );
    fs::write(&page, &html).unwrap();

    let dom = dump_dom(&page, &scratch);

    // The hostile key stayed text: no script element exists, its text is there, escaped.
    assert!(
        !dom.contains("<script"),
        "a script element got into the DOM"
    );
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(dom.contains(
        "<title>kaipo: Traffic by app from 2026-11-25T10:00:00Z to 2026-11-25T22:00:00Z (12h), \
         hour tier</title>"
    ));

    let totals = section(&dom, "totals");
    for (label, value) in [
        ("Received", "4.3 GiB"),
        ("Sent", "572.0 MiB"),
        ("Total", "4.9 GiB"),
        ("Average rate", "118.5 KiB/s"),
    ] {
        assert!(
            totals.contains(&format!(
                "{label}</span><span class=\"value\">{value}</span>"
            )),
            "{label} {value} not in {totals}"
        );
    }

    let rows = section(&dom, "rows");
    for name in [
        "firefox",
        "apt",
        "sshd",
        "curl, \"the\" tool &amp; co",
        "(others)",
    ] {
        assert!(
            rows.contains(&format!("<td>{name}</td>")),
            "{name} not in the table"
        );
    }
    assert!(rows.contains("<tfoot>\n<tr><td>Total</td><td title=\"4640997376 bytes\">4.3 GiB</td>"));
    assert_eq!(
        rows.matches("<tr").count(),
        1 + 5 + 1 + 1,
        "header, rows, others, total"
    );

    // One bar per top app and per top remote, each with received and sent parts.
    let apps = section(&dom, "top-apps");
    assert!(apps.contains("<svg class=\"chart bars\""));
    assert_eq!(apps.matches("<g class=\"bar\"").count(), 5);
    assert_eq!(apps.matches("<rect class=\"rx\"").count(), 5);
    assert!(apps.contains("<title>firefox: received 3.0 GiB, sent 200.0 MiB</title>"));
    let remotes = section(&dom, "top-remotes");
    assert_eq!(remotes.matches("<g class=\"bar\"").count(), 4);
    assert!(remotes.contains(">(unknown)</text>"));

    // Nine hourly points; the three missing hours are a gap between two lines, not zeros.
    let bandwidth = section(&dom, "bandwidth");
    assert_eq!(bandwidth.matches("<polyline class=\"line rx\"").count(), 2);
    assert_eq!(bandwidth.matches("<polyline class=\"line tx\"").count(), 2);
    assert_eq!(bandwidth.matches("<circle class=\"dot rx\"").count(), 9);
    assert!(!bandwidth.contains("received 0 B/s"));
    // Labels every three hours, on the hour.
    let labels: Vec<&str> = bandwidth
        .split("<text class=\"time\"")
        .skip(1)
        .filter_map(|t| t.split_once('>')?.1.split_once('<').map(|(l, _)| l))
        .collect();
    assert_eq!(labels, ["12:00", "15:00", "18:00", "21:00"]);

    fs::remove_dir_all(&scratch).unwrap();
}
