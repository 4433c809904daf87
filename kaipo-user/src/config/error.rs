//! Configuration errors that name the file, the line, the key and what is allowed.

use std::{fmt, path::PathBuf};

/// The io variants leave their cause to the error chain, which `kaipo` prints after the
/// message: saying it in the message too printed it twice.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Located(.0))]
    Invalid(Box<Invalid>),
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug)]
pub struct Invalid {
    pub path: PathBuf,
    /// 1-based; 0 when the problem has no single line (a missing section).
    pub line: usize,
    /// Dotted (`metrics.listen`), when known.
    pub key: Option<String>,
    pub message: String,
}

struct Located<'a>(&'a Invalid);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.0;
        write!(f, "{}", i.path.display())?;
        if i.line > 0 {
            write!(f, ", line {}", i.line)?;
        }
        if let Some(key) = &i.key {
            write!(f, ", key {key}")?;
        }
        write!(f, ": {}", i.message)
    }
}

impl ConfigError {
    pub(super) fn from_toml(path: &std::path::Path, text: &str, e: &toml::de::Error) -> Self {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        // toml's message is several lines with a source excerpt; its first line is the point.
        let message = e.message().lines().next().unwrap_or("").trim().to_owned();
        ConfigError::Invalid(Box::new(Invalid {
            path: path.to_owned(),
            line,
            key: (line > 0).then(|| key_at(text, line)).flatten(),
            message,
        }))
    }

    /// An error about a value that parsed but is not allowed; finds the key's line in `text`.
    pub(super) fn at_key(path: &std::path::Path, text: &str, key: &str, message: String) -> Self {
        let line = line_of_key(text, key).unwrap_or(0);
        ConfigError::Invalid(Box::new(Invalid {
            path: path.to_owned(),
            line,
            key: Some(key.to_owned()),
            message,
        }))
    }

    /// An error about the `[[alerts.rule]]` named `name`; the line is its `name = ...`.
    pub(super) fn at_rule(path: &std::path::Path, text: &str, name: &str, message: String) -> Self {
        let line = (1..=text.lines().count())
            .find(|&n| {
                key_at(text, n).as_deref() == Some("alerts.rule.name")
                    && text
                        .lines()
                        .nth(n - 1)
                        .is_some_and(|l| l.contains(&format!("\"{name}\"")))
            })
            .unwrap_or(0);
        ConfigError::Invalid(Box::new(Invalid {
            path: path.to_owned(),
            line,
            key: Some(format!("alerts.rule '{name}'")),
            message,
        }))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key written on `line` (1-based), under the section header above it.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line - 1)?.trim();
    let section = lines[..line - 1]
        .iter()
        .rev()
        .find_map(|l| header(l.trim()))
        .unwrap_or_default();
    if let Some(h) = header(here) {
        return Some(h);
    }
    let (key, _) = here.split_once('=')?;
    let key = key.trim().trim_matches('"');
    Some(if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    })
}

fn header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_matches('[').trim().to_owned())
}

/// The line where `section.key` is written, if it is.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    (1..=text.lines().count()).find(|&n| key_at(text, n).as_deref() == Some(dotted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_names_its_cause_once() {
        let err = anyhow::Error::from(ConfigError::Read {
            path: "/etc/kaipo/kaipo.toml".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
        assert_eq!(
            format!("{err:#}"),
            "reading /etc/kaipo/kaipo.toml: Permission denied (os error 13)"
        );
    }

    #[test]
    fn keys_are_found_under_their_section() {
        let text = "a = 1\n[metrics]\n# x\nlisten = \"\"\n[[alert]]\nname = \"x\"\n";
        assert_eq!(key_at(text, 1).as_deref(), Some("a"));
        assert_eq!(key_at(text, 2).as_deref(), Some("metrics"));
        assert_eq!(key_at(text, 3), None);
        assert_eq!(key_at(text, 4).as_deref(), Some("metrics.listen"));
        assert_eq!(key_at(text, 6).as_deref(), Some("alert.name"));
        assert_eq!(line_of_key(text, "metrics.listen"), Some(4));
    }
}
