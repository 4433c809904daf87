//! Styles of the dashboard, with and without colour.
//!
//! Colour is a property of the state rather than read inside draw functions, so a snapshot
//! test decides it and `NO_COLOR` in the developer's shell cannot change a test's outcome.
//! Without colour every distinction still shows through modifiers (bold, dim, reversed),
//! which <https://no-color.org> leaves alone.

use std::ffi::OsString;

use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Self::COLOR
    }
}

impl Theme {
    pub const COLOR: Self = Self { color: true };
    pub const PLAIN: Self = Self { color: false };

    /// Colour unless `NO_COLOR` is set to a non-empty value.
    pub fn from_env() -> Self {
        Self::from_no_color(std::env::var_os("NO_COLOR"))
    }

    pub fn from_no_color(value: Option<OsString>) -> Self {
        Self {
            color: value.is_none_or(|v| v.is_empty()),
        }
    }

    fn paint(self, style: Style, color: Color) -> Style {
        if self.color {
            style.fg(color)
        } else {
            style
        }
    }

    pub fn title(self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Cyan)
    }

    pub fn column_header(self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Yellow)
    }

    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Exited processes and other rows on their way out.
    pub fn exited(self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::DIM), Color::DarkGray)
    }

    pub fn muted(self) -> Style {
        self.paint(Style::new(), Color::DarkGray)
    }

    pub fn warning(self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::LightRed)
    }

    pub fn rx(self) -> Style {
        self.paint(Style::new(), Color::Green)
    }

    pub fn tx(self) -> Style {
        self.paint(Style::new(), Color::Blue)
    }

    pub fn active_tab(self) -> Style {
        self.paint(
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            Color::Cyan,
        )
    }

    pub fn paused(self) -> Style {
        self.paint(
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            Color::Yellow,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_means_non_empty_no_color() {
        assert_eq!(Theme::from_no_color(None), Theme::COLOR);
        assert_eq!(Theme::from_no_color(Some("".into())), Theme::COLOR);
        assert_eq!(Theme::from_no_color(Some("1".into())), Theme::PLAIN);
        assert_eq!(Theme::PLAIN.rx(), Style::new());
        assert_eq!(Theme::COLOR.rx(), Style::new().fg(Color::Green));
        assert_eq!(
            Theme::PLAIN.exited(),
            Style::new().add_modifier(Modifier::DIM)
        );
    }
}
