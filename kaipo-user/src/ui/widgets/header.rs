//! The header: rates, attribution, losses and backend on the first line; then PAUSED, alerts,
//! an ended source and every degradation, each on lines of its own and wrapped so none is
//! cut; then the totals since start.

use ratatui::text::{Line, Span};

use super::wrap;
use crate::ui::state::{LiveState, SourceStatus};

/// What a paused header says, so the mark cannot be missed or misread.
pub const PAUSED: &str = "PAUSED: the screen holds still, counting goes on; p resumes";

/// The header's lines for a terminal `width` x `height`. Warnings take at most a quarter of
/// the height (at least one line); what does not fit is counted on the last warning line.
pub fn lines(state: &LiveState, width: u16, height: u16) -> Vec<Line<'static>> {
    let shown = state.shown();
    let theme = state.theme;
    let header = shown.header();
    let unit = shown.unit();
    let (rx, tx) = shown.interface_rates();

    // A ratio above 1 would be a source's mistake; a share above 100 % is never shown.
    let attributed = header.attributed_ratio.map_or_else(
        || "-".into(),
        |r| format!("{:.1}%", r.clamp(0.0, 1.0) * 100.0),
    );
    let backend = if header.backend.is_empty() {
        "-"
    } else {
        header.backend.as_str()
    };
    let lost = shown.lost_total();
    let collector = if shown.intervals() == 0 {
        "waiting for the collector".to_string()
    } else {
        format!("{backend} via {}", header.source.label())
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("kaipo ", theme.title()),
        Span::styled(format!("RX {}", unit.rate(rx)), theme.rx()),
        Span::raw("  "),
        Span::styled(format!("TX {}", unit.rate(tx)), theme.tx()),
        Span::raw(format!("  attributed {attributed}  ")),
        Span::styled(
            format!("lost {lost}"),
            if lost > 0 {
                theme.warning()
            } else {
                Default::default()
            },
        ),
        Span::raw(format!("  {collector}")),
    ])];

    let mut warnings: Vec<Line<'static>> = Vec::new();
    if state.paused() {
        for text in wrap(PAUSED, width.into()) {
            warnings.push(Line::styled(text, theme.paused()));
        }
    }
    let messages = header
        .alerts
        .iter()
        .map(|alert| format!("ALERT {alert}"))
        .chain(source_warning(shown.source_status()))
        .chain(header.degradations.iter().cloned());
    for message in messages {
        for text in wrap(&message, width.into()) {
            warnings.push(Line::styled(text, theme.warning()));
        }
    }
    let room = usize::from(height / 4).max(1);
    if warnings.len() > room {
        let hidden = warnings.len() - (room - 1);
        warnings.truncate(room - 1);
        warnings.push(Line::styled(
            format!("… {hidden} more lines of warnings; a taller terminal shows them"),
            theme.warning(),
        ));
    }
    lines.extend(warnings);

    let totals = shown.interface_totals();
    lines.push(Line::styled(
        format!(
            "since start RX {} TX {} · {} processes · {} connections",
            crate::format::bytes(totals.rx),
            crate::format::bytes(totals.tx),
            shown.processes.len(),
            shown.connections.len(),
        ),
        theme.muted(),
    ));
    lines
}

fn source_warning(status: &SourceStatus) -> Option<String> {
    match status {
        SourceStatus::Live => None,
        SourceStatus::Ended => Some("source ended, showing its last data".into()),
        SourceStatus::Failed(e) => Some(format!("source failed: {e}")),
    }
}
