//! `kaipo store encrypt|decrypt`: what the conversion did, in words.

use std::{io::Write, path::PathBuf};

use anyhow::Context as _;

use crate::store::{
    convert::{self, Direction},
    StoreKey,
};

/// What `kaipo store encrypt|decrypt` does.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub direction: Direction,
    pub db: PathBuf,
    /// None: no key given and none configured, which is an error.
    pub key_file: Option<PathBuf>,
}

pub fn run(opts: &StoreOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let key_file = opts.key_file.as_deref().context(
        "no key: pass --key-file FILE, or set [storage] encryption_key_file in the configuration \
         (a file with 64 hex digits: openssl rand -hex 32 > FILE)",
    )?;
    let key = StoreKey::load(key_file)?;
    let done = convert::convert(&opts.db, &key, opts.direction)?;
    drop(key);
    let (verb, next) = match opts.direction {
        Direction::Encrypt => (
            "encrypted",
            format!(
                "the daemon and `kaipo report --db` need [storage] encryption_key_file = \"{}\"",
                key_file.display()
            ),
        ),
        Direction::Decrypt => (
            "decrypted",
            "remove [storage] encryption_key_file before the daemon starts again".to_owned(),
        ),
    };
    writeln!(
        out,
        "{verb} {}: {} rows in {} tables, every one kept; {next}",
        opts.db.display(),
        done.rows(),
        done.tables.len()
    )?;
    Ok(())
}
