//! The unit text for one binary: the path quoted the way systemd reads it, and home folders
//! handled so that a binary installed by `cargo install` (under /root) can still start.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// The unit with `@KAIPO@` standing for the binary.
pub const UNIT_TEMPLATE: &str = include_str!("../../../packaging/kaipo.service");

/// The line of the template replaced when the binary lives under a home folder.
const PROTECT_HOME_LINE: &str = "\nProtectHome=yes\n";

/// Folders `ProtectHome=` hides from the service (systemd.exec(5)).
const HOME_FOLDERS: [&str; 3] = ["/root", "/home", "/run/user"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("--binary {0} must be an absolute path")]
    Relative(PathBuf),
    #[error(
        "{0} does not exist; install kaipo first (for example to /usr/local/bin) and pass \
         --binary with its path"
    )]
    Missing(PathBuf),
    #[error("{0} is not a file; pass --binary with the path of the kaipo executable")]
    NotAFile(PathBuf),
    #[error("{0} is not executable; chmod 0755 it or pass --binary with another path")]
    NotExecutable(PathBuf),
    #[error("{0} is not valid UTF-8; install kaipo to a path such as /usr/local/bin/kaipo")]
    NotUtf8(PathBuf),
    #[error(
        "{path:?} contains a control character, which a unit file cannot hold; install kaipo \
         to a path such as /usr/local/bin/kaipo"
    )]
    ControlCharacter { path: String },
    #[error(
        "{path} {why}; the service starts as root, so whoever can replace it would run code as \
         root. Install it where only root can write: install -o root -g root -m 0755 {binary} \
         /usr/local/bin/kaipo, then kaipo install-service --binary /usr/local/bin/kaipo"
    )]
    Replaceable {
        path: PathBuf,
        why: String,
        binary: PathBuf,
    },
}

/// A unit ready to write, and what the user should know about it.
#[derive(Debug)]
pub struct Unit {
    pub text: String,
    pub notes: Vec<String>,
}

/// Quotes one word for a unit setting that unquotes, unescapes C-style and expands
/// specifiers; `$` doubled too where the setting also expands environment variables
/// (`ExecStart=`).
fn quote(word: &str, env_expanded: bool) -> Result<String, UnitError> {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            c if c.is_control() => {
                return Err(UnitError::ControlCharacter { path: word.into() });
            }
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '%' => out.push_str("%%"),
            '$' if env_expanded => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Whether `path` is under a folder that `ProtectHome=yes` hides.
pub fn under_home(path: &Path) -> bool {
    HOME_FOLDERS.iter().any(|home| path.starts_with(home))
}

/// The unit that runs `binary` (as it will be seen on the live system).
pub fn render(binary: &Path) -> Result<Unit, UnitError> {
    let text = binary
        .to_str()
        .ok_or_else(|| UnitError::NotUtf8(binary.into()))?;
    if !binary.is_absolute() {
        return Err(UnitError::Relative(binary.into()));
    }
    let mut unit = UNIT_TEMPLATE.replace("@KAIPO@", &quote(text, true)?);
    let mut notes = Vec::new();
    if under_home(binary) {
        // ProtectHome=read-only would show the service every user's files; an empty tmpfs
        // over the home folders with only the binary bound back in shows it nothing else.
        let lines = format!(
            "\nProtectHome=tmpfs\n# The binary is under a home folder: only it is visible there.\n\
             BindReadOnlyPaths={}\n",
            quote(text, false)?
        );
        unit = unit.replacen(PROTECT_HOME_LINE, &lines, 1);
        notes.push(format!(
            "note: {text} is under a home folder, which the service cannot see; the unit hides \
             home folders behind an empty tmpfs and binds only the binary back in \
             (ProtectHome=tmpfs, BindReadOnlyPaths). Installing to /usr/local/bin keeps home \
             folders out of the picture: install -m 0755 {text} /usr/local/bin/kaipo && kaipo \
             install-service --binary /usr/local/bin/kaipo"
        ));
    }
    Ok(Unit { text: unit, notes })
}

/// Checks that `found` (where the binary is on this machine, `binary` its path on the target
/// system) is an executable file.
pub fn check_executable(found: &Path, binary: &Path) -> Result<(), UnitError> {
    let meta = match fs::metadata(found) {
        Ok(m) => m,
        Err(_) => return Err(UnitError::Missing(binary.into())),
    };
    if !meta.is_file() {
        return Err(UnitError::NotAFile(binary.into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(UnitError::NotExecutable(binary.into()));
    }
    Ok(())
}

/// Checks that no one but root can replace `binary`: the file and every folder above it are
/// owned by root and writable by no group or other user (a sticky folder such as /tmp still
/// lets others swap names in it, so it counts as writable).
pub fn check_only_root_writes(binary: &Path) -> Result<(), UnitError> {
    for path in binary.ancestors() {
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        let why = if meta.uid() != 0 {
            Some(format!("is owned by uid {}", meta.uid()))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!(
                "is writable by its group or by everyone (mode {:04o})",
                meta.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let why = if path == binary {
                why
            } else {
                format!("is in {} which {why}", path.display())
            };
            return Err(UnitError::Replaceable {
                path: binary.into(),
                why,
                binary: binary.into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn exec_line(unit: &str) -> &str {
        unit.lines()
            .find(|l| l.starts_with("ExecStart="))
            .expect("ExecStart")
    }

    #[test]
    fn quotes_spaces_quotes_backslashes_percent_and_dollar() {
        let unit = render(Path::new("/opt/my tools/kaipo")).unwrap();
        assert_eq!(
            exec_line(&unit.text),
            r#"ExecStart="/opt/my tools/kaipo" daemon"#
        );
        assert!(unit.notes.is_empty());
        let unit = render(Path::new(r#"/opt/a"b\c%d$e/kaipo"#)).unwrap();
        assert_eq!(
            exec_line(&unit.text),
            r#"ExecStart="/opt/a\"b\\c%%d$$e/kaipo" daemon"#
        );
    }

    #[test]
    fn refuses_control_characters_and_relative_paths() {
        assert_eq!(
            render(Path::new("/opt/a\nExecStartPre=/bin/sh")).unwrap_err(),
            UnitError::ControlCharacter {
                path: "/opt/a\nExecStartPre=/bin/sh".into()
            }
        );
        assert_eq!(
            render(Path::new("bin/kaipo")).unwrap_err(),
            UnitError::Relative("bin/kaipo".into())
        );
    }

    #[test]
    fn a_binary_under_a_home_folder_gets_a_tmpfs_home_with_only_the_binary() {
        let unit = render(Path::new("/root/.cargo/bin/kaipo")).unwrap();
        assert!(!unit.text.contains("\nProtectHome=yes\n"), "{}", unit.text);
        assert_eq!(unit.text.matches("\nProtectHome=tmpfs\n").count(), 1);
        assert_eq!(
            unit.text
                .matches("\nBindReadOnlyPaths=\"/root/.cargo/bin/kaipo\"\n")
                .count(),
            1
        );
        assert_eq!(unit.notes.len(), 1);
        assert!(unit.notes[0].contains("install -m 0755 /root/.cargo/bin/kaipo /usr/local/bin"));
        // A folder named like a home folder is not one.
        let unit = render(Path::new("/homes/kaipo")).unwrap();
        assert_eq!(unit.text.matches("\nProtectHome=yes\n").count(), 1);
        assert!(unit.notes.is_empty());
        let unit = render(Path::new("/home/a b/kaipo")).unwrap();
        assert!(unit
            .text
            .contains("\nBindReadOnlyPaths=\"/home/a b/kaipo\"\n"));
    }

    #[test]
    fn missing_folders_and_plain_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("kaipo-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kaipo");
        assert_eq!(
            check_executable(&file, Path::new("/usr/bin/kaipo")),
            Err(UnitError::Missing("/usr/bin/kaipo".into()))
        );
        fs::write(&file, "").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            check_executable(&file, &file),
            Err(UnitError::NotExecutable(file.clone()))
        );
        assert_eq!(
            check_executable(&dir, &dir),
            Err(UnitError::NotAFile(dir.clone()))
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_executable(&file, &file), Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_binary_others_can_replace_is_refused() {
        // Not under /tmp, which anyone can write to: the crate's folder, which a fresh clone
        // by root leaves root's alone.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!(".unit-test-{}", std::process::id()));
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let file = bin.join("kaipo");
        fs::write(&file, "").unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o777)).unwrap();
        let why = |r: Result<(), UnitError>| match r {
            Err(UnitError::Replaceable { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        if Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .all(|p| fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
        {
            assert_eq!(
                why(check_only_root_writes(&file)),
                format!(
                    "is in {} which is writable by its group or by everyone (mode 0777)",
                    bin.display()
                )
            );
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
            if std::os::unix::fs::chown(&file, Some(65534), None).is_ok() {
                assert_eq!(why(check_only_root_writes(&file)), "is owned by uid 65534");
            }
        } else {
            // A clone owned by another user: the first folder up says so.
            assert!(why(check_only_root_writes(&file)).starts_with("is in "));
        }
        let err = check_only_root_writes(&file).unwrap_err().to_string();
        assert!(err.contains("install -o root -g root -m 0755"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
        // Files root installed are fine.
        assert_eq!(check_only_root_writes(Path::new("/bin/sh")), Ok(()));
    }
}
