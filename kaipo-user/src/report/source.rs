//! Where a report's figures come from: the store read directly (`--db`), or the daemon over
//! its socket when it runs, since the daemon can answer callers who may not read the database
//! and keeps its query cache warm across invocations.

use crate::config::names::SharedNames;
use std::{
    error::Error,
    io,
    path::{Path, PathBuf},
};

use crate::store::{Query, Report, Store, StoreError};

pub const DEFAULT_DB_PATH: &str = crate::api::protocol::DEFAULT_DB;
pub const DEFAULT_SOCKET_PATH: &str = crate::api::protocol::DEFAULT_SOCKET;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "no kaipo history at {}: `kaipo daemon` creates it when it first runs (or pass --db PATH)",
        .path.display()
    )]
    NoDatabase { path: PathBuf },
    /// Damaged, foreign, too new, unreadable: the store's message names the file and says
    /// what to do.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no kaipo daemon socket at {}; is `kaipo daemon` running?", .path.display())]
    NoSocket { path: PathBuf },
    /// The daemon's client names the socket in each of its errors.
    #[error(transparent)]
    Daemon(BoxError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read the database file directly.
    Store(PathBuf),
    /// Ask the daemon; when it cannot be reached and `fallback` is set, read that database.
    Daemon {
        socket: PathBuf,
        fallback: Option<PathBuf>,
    },
}

impl Source {
    /// `--db` wins; an explicit `--socket` means the daemon and nothing else; with neither,
    /// the daemon when its default socket exists, else the default database.
    pub fn choose(db: Option<&Path>, socket: Option<&Path>) -> Self {
        Self::choose_among(
            db,
            socket,
            Path::new(DEFAULT_SOCKET_PATH),
            Path::new(DEFAULT_DB_PATH),
        )
    }

    fn choose_among(
        db: Option<&Path>,
        socket: Option<&Path>,
        default_socket: &Path,
        default_db: &Path,
    ) -> Self {
        match (db, socket) {
            (Some(db), _) => Self::Store(db.to_owned()),
            (None, Some(socket)) => Self::Daemon {
                socket: socket.to_owned(),
                fallback: None,
            },
            (None, None) if default_socket.exists() => Self::Daemon {
                socket: default_socket.to_owned(),
                fallback: Some(default_db.to_owned()),
            },
            (None, None) => Self::Store(default_db.to_owned()),
        }
    }

    /// Answers `query` with one store or daemon query: both cache by [`Query`], so the query
    /// is passed through exactly as built.
    pub async fn fetch(&self, query: &Query) -> Result<Report, ReportError> {
        self.fetch_with(query, None, &SharedNames::default()).await
    }

    /// Like [`Source::fetch`], reading an encrypted database with the key in `key_file`
    /// (`[storage] encryption_key_file`, the daemon's setting); a store read directly groups
    /// by network with `names` (the daemon groups with its own).
    pub async fn fetch_with(
        &self,
        query: &Query,
        key_file: Option<&Path>,
        names: &SharedNames,
    ) -> Result<Report, ReportError> {
        match self {
            Self::Store(path) => read_store(path, query, key_file, names),
            Self::Daemon { socket, fallback } => {
                if !socket.exists() && fallback.is_none() {
                    return Err(ReportError::NoSocket {
                        path: socket.clone(),
                    });
                }
                match ask_daemon(socket, query).await {
                    Ok(report) => Ok(report),
                    Err(err) => match fallback {
                        Some(db) if daemon_unreachable(&*err) => {
                            log::warn!("{err}; reading {} directly", db.display());
                            read_store(db, query, key_file, names)
                        }
                        _ => Err(ReportError::Daemon(err)),
                    },
                }
            }
        }
    }
}

/// The one place `kaipo report` talks to the daemon. `ClientError::NotRunning` carries the
/// `io::Error` (`NotFound` or `ConnectionRefused`) as its source, which `daemon_unreachable`
/// takes as "no daemon": `kaipo report` then reads the default database.
#[cfg(unix)]
async fn ask_daemon(socket: &Path, query: &Query) -> Result<Report, BoxError> {
    Ok(crate::api::client::query(socket, query).await?)
}

/// Windows has no daemon to ask; the database is read.
#[cfg(not(unix))]
async fn ask_daemon(socket: &Path, _: &Query) -> Result<Report, BoxError> {
    Err(Box::new(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no kaipo daemon at {}: the daemon does not run on Windows",
            socket.display()
        ),
    )))
}

/// A daemon that is not there (a socket left behind by a daemon that died, or the client
/// not wired yet), as opposed to one that answered with an error.
fn daemon_unreachable(err: &(dyn Error + 'static)) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            )
        })
    })
}

/// An error and its causes, outermost first.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

fn read_store(
    path: &Path,
    query: &Query,
    key_file: Option<&Path>,
    names: &SharedNames,
) -> Result<Report, ReportError> {
    let key = key_file.map(crate::store::StoreKey::load).transpose()?;
    let mut store = Store::open_read_only_with_key(path, key.as_ref()).map_err(|e| match e {
        // Said here rather than by the store because only `kaipo report` has a --db to offer.
        StoreError::NotFound { path } => ReportError::NoDatabase { path },
        other => ReportError::Store(other),
    })?;
    store.set_names(names.clone());
    Ok(store.query(query)?)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::{Dimension, IntervalBatch, TrafficRow};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kaipo-report-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn query() -> Query {
        Query {
            from_ms: 0,
            to_ms: 1000,
            by: Dimension::App,
            top: 20,
            uid: None,
            per: None,
        }
    }

    #[test]
    fn chooses_db_then_socket_then_default_socket_then_default_db() {
        let dir = scratch("choose");
        let (sock, db) = (dir.join("kaipo.sock"), dir.join("kaipo.db"));
        let other = Path::new("/elsewhere/x.db");
        let choose = |d, s| Source::choose_among(d, s, &sock, &db);
        assert_eq!(choose(Some(other), None), Source::Store(other.into()));
        assert_eq!(choose(None, None), Source::Store(db.clone()));
        assert_eq!(
            choose(None, Some(other)),
            Source::Daemon {
                socket: other.into(),
                fallback: None
            }
        );
        fs::write(&sock, b"").unwrap();
        assert_eq!(
            choose(None, None),
            Source::Daemon {
                socket: sock.clone(),
                fallback: Some(db.clone())
            }
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn reads_what_the_daemon_wrote() {
        let dir = scratch("read");
        let path = dir.join("kaipo.db");
        let (mut writer, _) = Store::open(&path, &Default::default()).unwrap();
        writer
            .write(&IntervalBatch {
                ts_ms: 60_000,
                interval_ms: 60_000,
                traffic: vec![TrafficRow {
                    app: "firefox".into(),
                    remote: "10.0.0.2".into(),
                    service: "https".into(),
                    rx_bytes: 1000,
                    tx_bytes: 200,
                    rx_packets: 3,
                    tx_packets: 2,
                    ..Default::default()
                }],
                interfaces: vec![],
            })
            .unwrap();
        let query = Query {
            to_ms: 120_000,
            ..query()
        };
        let report = Source::Store(path).fetch(&query).await.unwrap();
        assert_eq!((report.from_ms, report.to_ms), (0, 120_000));
        let keys: Vec<_> = report
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.rx_bytes))
            .collect();
        assert_eq!(keys, [("firefox", 1000)]);
        assert_eq!((report.total.rx_bytes, report.total.tx_bytes), (1000, 200));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn explains_missing_empty_and_damaged_databases() {
        let dir = scratch("errors");
        let missing = dir.join("missing.db");
        let err = Source::Store(missing.clone())
            .fetch(&query())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no kaipo history at {}: `kaipo daemon` creates it when it first runs \
                 (or pass --db PATH)",
                missing.display()
            )
        );
        let empty = dir.join("empty.db");
        fs::write(&empty, b"").unwrap();
        let err = Source::Store(empty).fetch(&query()).await.unwrap_err();
        assert!(matches!(err, ReportError::NoDatabase { .. }), "{err}");
        let text = dir.join("text.db");
        fs::write(
            &text,
            b"this is a text file, not SQLite, long enough to have a header",
        )
        .unwrap();
        let err = Source::Store(text.clone())
            .fetch(&query())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ReportError::Store(StoreError::Corrupt { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "the history database {} is damaged",
                text.display()
            )),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn daemon_seam_says_not_available_or_falls_back() {
        let dir = scratch("daemon");
        let (sock, db) = (dir.join("kaipo.sock"), dir.join("kaipo.db"));
        let err = Source::Daemon {
            socket: sock.clone(),
            fallback: None,
        }
        .fetch(&query())
        .await
        .unwrap_err();
        assert!(matches!(err, ReportError::NoSocket { .. }), "{err}");
        fs::write(&sock, b"").unwrap();
        let err = Source::Daemon {
            socket: sock.clone(),
            fallback: None,
        }
        .fetch(&query())
        .await
        .unwrap_err();
        // A file that is not a listening socket: the client's refusal, which names the socket.
        assert!(matches!(err, ReportError::Daemon(_)), "{err}");
        assert!(
            err.to_string().contains(&sock.display().to_string()),
            "{err}"
        );
        // With a fallback the database is read instead, so its error is what shows.
        let err = Source::Daemon {
            socket: sock,
            fallback: Some(db),
        }
        .fetch(&query())
        .await
        .unwrap_err();
        assert!(matches!(err, ReportError::NoDatabase { .. }), "{err}");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(daemon_unreachable(&refused));
        assert!(!daemon_unreachable(&io::Error::other("bad query")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
