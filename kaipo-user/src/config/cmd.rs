//! `kaipo config ...`.

use std::{io::Write, path::Path};

use super::{edit, Config};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (the file over the defaults) as TOML.
    Show,
    /// Print one key's effective value (`metrics.listen`).
    Get { key: String },
    /// Set one key in the file, keeping its comments; refused when the result is invalid.
    Set { key: String, value: String },
    /// Write a file with every key at its default, commented.
    Init {
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the file's path.
    Path,
    /// Validate the file; exits 1 with the line and key of the first problem.
    Check,
}

pub fn run(command: &ConfigCommand, path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => {
            let config = Config::load(path)?;
            writeln!(out, "{}", toml::to_string_pretty(&config)?.trim_end())?;
        }
        ConfigCommand::Get { key } => writeln!(out, "{}", edit::get(&Config::load(path)?, key)?)?,
        ConfigCommand::Set { key, value } => {
            let config = edit::set(path, key, value)?;
            writeln!(out, "{key} = {}", edit::get(&config, key)?)?;
        }
        ConfigCommand::Init { force } => {
            edit::init(path, *force)?;
            writeln!(out, "wrote {}", path.display())?;
        }
        ConfigCommand::Path => writeln!(out, "{}", path.display())?,
        ConfigCommand::Check => {
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
