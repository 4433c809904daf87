//! A client of the daemon's socket, for `kaipo status`, `kaipo report` and `kaipo live`. Needs
//! no privileges: the daemon decides from the connection's credentials what the caller sees.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::{net::unix::OwnedWriteHalf, net::UnixStream, time::timeout};

use super::{
    protocol::{Request, Snapshot, StatusReport, VERSION},
    wire::{write_all, Line, LineReader},
};
use crate::store::{Query, Report};

/// Longest answer line a client accepts (a status with thousands of processes is a few MiB).
const MAX_ANSWER: usize = 64 << 20;
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the daemon's own limit on a query, so that its error arrives first.
const QUERY_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket. The source is the `io::Error` (`NotFound` or
    /// `ConnectionRefused`), so callers can tell this apart and fall back.
    #[error(
        "no kaipo daemon is running at {} ({reason}); start one with `sudo kaipo daemon`, or \
         start the kaipo service (`sudo systemctl start kaipo`)",
        socket.display()
    )]
    NotRunning {
        socket: PathBuf,
        reason: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to the kaipo daemon at {}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to the kaipo daemon at {}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kaipo daemon answered: {0}")]
    Daemon(String),
    #[error("the kaipo daemon's answer is not understood ({0}); are kaipo and its daemon the same version?")]
    Protocol(String),
    #[error("the kaipo daemon did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// What the daemon sees now, as far as this caller may see it.
pub async fn status(socket: &Path) -> Result<StatusReport, ClientError> {
    let mut conn = Connection::open(socket).await?;
    conn.send(&Request::Status).await?;
    conn.answer("status", STATUS_TIMEOUT).await
}

/// History from the daemon's store. A caller who is not root nor in group `kaipo` gets only
/// the traffic of their own processes, whatever `q.uid` says.
pub async fn query(socket: &Path, q: &Query) -> Result<Report, ClientError> {
    let mut conn = Connection::open(socket).await?;
    conn.send(&Request::Query(q.clone())).await?;
    conn.answer("report", QUERY_TIMEOUT).await
}

/// A stream of live snapshots, one per live interval.
pub async fn subscribe(socket: &Path) -> Result<Subscription, ClientError> {
    let mut conn = Connection::open(socket).await?;
    conn.send(&Request::Subscribe).await?;
    Ok(Subscription { conn })
}

pub struct Subscription {
    conn: Connection,
}

impl Subscription {
    /// The next snapshot; None when the daemon stops.
    pub async fn next(&mut self) -> Result<Option<Snapshot>, ClientError> {
        self.next_as().await
    }

    /// The next snapshot as any type that reads it (`serde_json::Value`, for one).
    pub async fn next_as<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        match self.conn.next_line().await? {
            Some(line) => parse_answer(&line, "snapshot").map(Some),
            None => Ok(None),
        }
    }
}

struct Connection {
    socket: PathBuf,
    reader: LineReader,
    write: OwnedWriteHalf,
}

impl Connection {
    async fn open(socket: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).await.map_err(|source| {
            let reason = match source.kind() {
                io::ErrorKind::NotFound => "no socket there",
                io::ErrorKind::ConnectionRefused => "nothing listens on the socket",
                _ => "",
            };
            if reason.is_empty() {
                ClientError::Connect {
                    socket: socket.to_owned(),
                    source,
                }
            } else {
                ClientError::NotRunning {
                    socket: socket.to_owned(),
                    reason,
                    source,
                }
            }
        })?;
        let (read, write) = stream.into_split();
        Ok(Self {
            socket: socket.to_owned(),
            reader: LineReader::new(read, MAX_ANSWER),
            write,
        })
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        write_all(&self.write, request.to_line().as_bytes())
            .await
            .map_err(|e| self.io_error(e))
    }

    /// The next line, None at the end of the stream.
    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        match self.reader.next_line().await {
            Ok(Line::Line(line)) => Ok(Some(line)),
            Ok(Line::Eof) => Ok(None),
            Ok(Line::TooLong) => Err(ClientError::Protocol(format!(
                "an answer longer than {MAX_ANSWER} bytes"
            ))),
            Err(e) => Err(self.io_error(e)),
        }
    }

    async fn answer<T: DeserializeOwned>(
        &mut self,
        field: &str,
        wait: Duration,
    ) -> Result<T, ClientError> {
        let line = timeout(wait, self.next_line())
            .await
            .map_err(|_| ClientError::Timeout(wait))??;
        let line = line.ok_or_else(|| {
            ClientError::Protocol("the connection closed without an answer".into())
        })?;
        parse_answer(&line, field)
    }
}

/// Reads `{"v":1,"ok":true,"<field>":...}` or `{"v":1,"ok":false,"error":"..."}`.
pub fn parse_answer<T: DeserializeOwned>(line: &[u8], field: &str) -> Result<T, ClientError> {
    let mut value: Value =
        serde_json::from_slice(line).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if value.get("v").and_then(Value::as_u64) != Some(VERSION) {
        return Err(ClientError::Protocol(format!(
            "version {} instead of {VERSION}",
            value.get("v").unwrap_or(&Value::Null)
        )));
    }
    match value.get("ok").and_then(Value::as_bool) {
        Some(true) => {
            let body = value
                .get_mut(field)
                .map(Value::take)
                .ok_or_else(|| ClientError::Protocol(format!("no \"{field}\" in the answer")))?;
            serde_json::from_value(body).map_err(|e| ClientError::Protocol(e.to_string()))
        }
        Some(false) => Err(ClientError::Daemon(
            value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
        )),
        None => Err(ClientError::Protocol("no \"ok\" in the answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answers_and_errors() {
        let n: Vec<u32> = parse_answer(br#"{"v":1,"ok":true,"report":[1,2]}"#, "report").unwrap();
        assert_eq!(n, [1, 2]);
        let err = parse_answer::<Value>(br#"{"v":1,"ok":false,"error":"no"}"#, "x").unwrap_err();
        assert_eq!(err.to_string(), "the kaipo daemon answered: no");
        let err = parse_answer::<Value>(br#"{"v":2,"ok":true}"#, "x").unwrap_err();
        assert!(err.to_string().contains("version 2 instead of 1"), "{err}");
        assert!(parse_answer::<Value>(br#"{"v":1,"ok":true}"#, "status").is_err());
    }

    #[tokio::test]
    async fn says_how_to_start_a_daemon_when_none_runs() {
        let path =
            std::env::temp_dir().join(format!("kaipo-no-daemon-{}.sock", std::process::id()));
        let err = status(&path).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no kaipo daemon is running"), "{text}");
        assert!(text.contains("sudo kaipo daemon"), "{text}");
        let io = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .expect("the io::Error is the source");
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        // A socket file without a listener: refused, same advice.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener);
        let err = status(&path).await.unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        std::fs::remove_file(&path).unwrap();
    }
}
