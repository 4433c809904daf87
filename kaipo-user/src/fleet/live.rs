//! `kaipo live --prometheus URL`: the dashboard over the whole fleet, one row per host and one
//! per host and app, refreshed from Prometheus every interval.
//!
//! Rates are `rate()` over the last minute (Prometheus's figure, smoothed over its scrapes);
//! totals are the counters' current values, that is the traffic since each daemon started
//! (an app's own series: since it entered its host's top N). [`poll`] gathers a [`FleetView`]
//! and [`draw`] is a pure function of it, so the dashboard is tested without a terminal.

use std::{collections::BTreeMap, time::Duration};

use ratatui::{
    layout::{Constraint, Layout},
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row, Table},
    Frame,
};

use super::{
    prom::{Labels, Prometheus},
    FleetError,
};
use crate::{format, ui::theme::Theme};

/// The window rates are taken over: four scrapes at a 15 s interval.
pub const RATE_WINDOW: &str = "1m";

/// Traffic of one host, or of one app on one host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetRow {
    pub host: String,
    /// `None` on a host row.
    pub app: Option<String>,
    pub rx_per_s: f64,
    pub tx_per_s: f64,
    pub rx_total: u64,
    pub tx_total: u64,
    /// Host rows: the attributed ratio since the daemon started, 0 to 1.
    pub attributed: Option<f64>,
    /// Host rows: lost events per second.
    pub lost_per_s: f64,
    /// Host rows: the daemon's CPU use, in cores.
    pub cpu: Option<f64>,
}

/// What the dashboard shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetView {
    pub url: String,
    pub hosts: Vec<FleetRow>,
    /// Largest rate first, at most `top`.
    pub apps: Vec<FleetRow>,
    /// The last poll's failure; the rows stay those of the last good poll.
    pub error: Option<String>,
}

fn label(l: &Labels, name: &str) -> String {
    l.get(name).cloned().unwrap_or_default()
}

fn is_rx(l: &Labels) -> bool {
    l.get("direction").is_some_and(|d| d == "rx")
}

/// One poll of every host; `top` app rows at most (0: all).
pub async fn poll(prom: &Prometheus, top: usize) -> Result<FleetView, FleetError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let rates =
        format!("sum by (host, app, direction) (rate(kaipo_app_bytes_total[{RATE_WINDOW}]))");
    let totals = "sum by (host, app, direction) (kaipo_app_bytes_total)";
    let ratio = "max by (host) (kaipo_attributed_ratio)";
    let lost = format!("sum by (host) (rate(kaipo_lost_events_total[{RATE_WINDOW}]))");
    let cpu = format!("sum by (host) (rate(process_cpu_seconds_total[{RATE_WINDOW}]))");
    let (rates, totals, ratio, lost, cpu) = tokio::try_join!(
        prom.instant(&rates, now),
        prom.instant(totals, now),
        prom.instant(ratio, now),
        prom.instant(&lost, now),
        prom.instant(&cpu, now),
    )?;
    let mut hosts: BTreeMap<String, FleetRow> = BTreeMap::new();
    let mut apps: BTreeMap<(String, String), FleetRow> = BTreeMap::new();
    for (samples, is_rate) in [(&rates, true), (&totals, false)] {
        for s in samples {
            let (host, app) = (label(&s.labels, "host"), label(&s.labels, "app"));
            let h = hosts.entry(host.clone()).or_insert_with(|| FleetRow {
                host: host.clone(),
                ..FleetRow::default()
            });
            let a = apps
                .entry((host.clone(), app.clone()))
                .or_insert_with(|| FleetRow {
                    host,
                    app: Some(app),
                    ..FleetRow::default()
                });
            let v = if s.value.is_finite() { s.value } else { 0.0 };
            for row in [h, a] {
                match (is_rate, is_rx(&s.labels)) {
                    (true, true) => row.rx_per_s += v,
                    (true, false) => row.tx_per_s += v,
                    (false, true) => row.rx_total += v.round() as u64,
                    (false, false) => row.tx_total += v.round() as u64,
                }
            }
        }
    }
    for s in &ratio {
        if let Some(h) = hosts.get_mut(&label(&s.labels, "host")) {
            h.attributed = s.value.is_finite().then_some(s.value);
        }
    }
    for s in &lost {
        if let Some(h) = hosts.get_mut(&label(&s.labels, "host")) {
            h.lost_per_s = s.value;
        }
    }
    for s in &cpu {
        if let Some(h) = hosts.get_mut(&label(&s.labels, "host")) {
            h.cpu = Some(s.value);
        }
    }
    let mut apps: Vec<FleetRow> = apps.into_values().collect();
    apps.sort_by(|a, b| {
        let key = |r: &FleetRow| (r.rx_per_s + r.tx_per_s, r.rx_total + r.tx_total);
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| (&a.host, &a.app).cmp(&(&b.host, &b.app)))
    });
    if top > 0 {
        apps.truncate(top);
    }
    Ok(FleetView {
        url: prom.url(),
        hosts: hosts.into_values().collect(),
        apps,
        error: None,
    })
}

fn rate(v: f64) -> String {
    format::bytes(if v.is_finite() {
        v.max(0.0).round() as u64
    } else {
        0
    })
}

/// The whole screen: a title line, the hosts, then the apps across hosts.
pub fn draw(frame: &mut Frame, view: &FleetView, theme: Theme) {
    let area = frame.area();
    let [title, hosts, apps] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(
            (view.hosts.len() as u16)
                .saturating_add(3)
                .min(area.height / 2),
        ),
        Constraint::Min(3),
    ])
    .areas(area);
    let mut head = format!(
        "kaipo fleet: {} hosts from {} (rates over {RATE_WINDOW}; q quits)",
        view.hosts.len(),
        view.url
    );
    if let Some(e) = &view.error {
        head = format!("{head}  {e}");
    }
    frame.render_widget(Paragraph::new(Line::styled(head, theme.title())), title);
    let header = |cols: &[&str]| {
        Row::new(cols.iter().map(|c| Cell::from(c.to_string()))).style(theme.column_header())
    };
    let host_rows = view.hosts.iter().map(|h| {
        Row::new(vec![
            h.host.clone(),
            rate(h.rx_per_s),
            rate(h.tx_per_s),
            format::bytes(h.rx_total),
            format::bytes(h.tx_total),
            h.attributed
                .map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0)),
            format!("{:.1}", h.lost_per_s),
            h.cpu
                .map_or_else(|| "-".into(), |c| format!("{:.1}%", c * 100.0)),
        ])
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    frame.render_widget(
        Table::new(host_rows, widths)
            .header(header(&[
                "HOST", "RX/s", "TX/s", "RX", "TX", "ATTRIB", "LOST/s", "CPU",
            ]))
            .block(Block::default().borders(Borders::TOP).title("Hosts")),
        hosts,
    );
    let app_rows = view.apps.iter().map(|a| {
        Row::new(vec![
            a.host.clone(),
            a.app.clone().unwrap_or_default(),
            rate(a.rx_per_s),
            rate(a.tx_per_s),
            format::bytes(a.rx_total),
            format::bytes(a.tx_total),
        ])
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Min(16),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    frame.render_widget(
        Table::new(app_rows, widths)
            .header(header(&["HOST", "APP", "RX/s", "TX/s", "RX", "TX"]))
            .block(Block::default().borders(Borders::TOP).title("Apps")),
        apps,
    );
}

/// Polls every `interval` and draws until q, Esc or Ctrl-C.
pub async fn run(url: &str, interval: Duration, top: usize) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    let prom = Prometheus::new(url, super::TIMEOUT)?;
    // The first poll before the screen changes: a wrong URL is an error on the terminal.
    let mut view = poll(&prom, top).await?;
    let theme = Theme::from_env();
    let _guard = crate::ui::terminal::TerminalGuard::enter()?;
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        terminal.draw(|f| draw(f, &view, theme))?;
        // Keys are read in short polls between refreshes, on a blocking thread.
        let quit = tokio::task::spawn_blocking(|| -> std::io::Result<bool> {
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    return Ok(matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL)));
                }
            }
            Ok(false)
        })
        .await??;
        if quit {
            return Ok(());
        }
        if tokio::time::Instant::now() >= next {
            next += interval;
            match poll(&prom, top).await {
                Ok(v) => view = v,
                Err(e) => view.error = Some(format!("{e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{backend::TestBackend, Terminal};

    use super::*;

    #[test]
    fn hosts_and_apps_draw_with_host_as_a_column() {
        let view = FleetView {
            url: "http://prom:9090".into(),
            hosts: vec![FleetRow {
                host: "web-1".into(),
                rx_per_s: 2048.0,
                tx_per_s: 100.0,
                rx_total: 3 << 20,
                tx_total: 10,
                attributed: Some(0.925),
                lost_per_s: 0.0,
                cpu: Some(0.012),
                ..FleetRow::default()
            }],
            apps: vec![FleetRow {
                host: "web-1".into(),
                app: Some("nginx".into()),
                rx_per_s: 2048.0,
                rx_total: 3 << 20,
                ..FleetRow::default()
            }],
            error: None,
        };
        let mut t = Terminal::new(TestBackend::new(100, 12)).unwrap();
        t.draw(|f| draw(f, &view, Theme::from_no_color(Some("1".into()))))
            .unwrap();
        let text: Vec<String> = (0..12)
            .map(|y| {
                (0..100)
                    .map(|x| t.backend().buffer()[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect();
        let screen = text.join("\n");
        assert!(
            text[0].starts_with("kaipo fleet: 1 hosts from http://prom:9090"),
            "{screen}"
        );
        let host = text
            .iter()
            .find(|l| l.starts_with("web-1 "))
            .expect(&screen);
        for cell in ["2.0 KiB", "3.0 MiB", "92.5%", "1.2%"] {
            assert!(host.contains(cell), "{cell} in {host}");
        }
        assert!(
            text.iter()
                .any(|l| l.starts_with("web-1") && l.contains("nginx") && l.contains("3.0 MiB")),
            "{screen}"
        );
    }
}
