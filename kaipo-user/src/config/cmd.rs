//! `kaipo config ...`.

use std::{io::Write, path::Path};

use super::{edit, Config};

/// What `kaipo config` was asked to do (the command line's spelling is in `cli`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigAction {
    Show,
    Get { key: String },
    Set { key: String, value: String },
    Init { force: bool },
    Path,
    Check,
}

pub fn run(command: &ConfigAction, path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ConfigAction::Show => {
            let config = Config::load(path)?;
            writeln!(out, "{}", toml::to_string_pretty(&config)?.trim_end())?;
        }
        ConfigAction::Get { key } => writeln!(out, "{}", edit::get(&Config::load(path)?, key)?)?,
        ConfigAction::Set { key, value } => {
            let config = edit::set(path, key, value)?;
            writeln!(out, "{key} = {}", edit::get(&config, key)?)?;
        }
        ConfigAction::Init { force } => {
            edit::init(path, *force)?;
            writeln!(out, "wrote {}", path.display())?;
        }
        ConfigAction::Path => writeln!(out, "{}", path.display())?,
        ConfigAction::Check => {
            Config::load(path)?;
            if path.exists() {
                writeln!(out, "{}: ok", path.display())?;
            } else {
                writeln!(
                    out,
                    "{}: no such file; every default applies",
                    path.display()
                )?;
            }
        }
    }
    Ok(())
}
