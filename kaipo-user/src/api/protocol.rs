//! The daemon's local API, version 1: JSON lines over a Unix stream socket.
//!
//! Each request is one JSON object on one line (at most [`MAX_LINE`] bytes); each answer is one
//! JSON object on one line. Every object carries `"v":1`; answers carry `"ok"`, and either the
//! requested value or `"error"`. The README's "Daemon API" section documents it for clients.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    model::IntervalRecord,
    pipeline::{bus::BusCounts, totals::Totals},
    store::Query,
};

pub const VERSION: u64 = 1;
/// Longest request line accepted, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// Where the daemon listens and keeps its history unless told otherwise. macOS's `/` is
/// read-only, so there they live in `/var/run` and `/var/db`, as its own daemons' do.
#[cfg(not(target_os = "macos"))]
pub const DEFAULT_SOCKET: &str = "/run/kaipo/kaipo.sock";
#[cfg(not(target_os = "macos"))]
pub const DEFAULT_DB: &str = "/var/lib/kaipo/kaipo.db";
#[cfg(target_os = "macos")]
pub const DEFAULT_SOCKET: &str = "/var/run/kaipo/kaipo.sock";
#[cfg(target_os = "macos")]
pub const DEFAULT_DB: &str = "/var/db/kaipo/kaipo.db";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Subscribe,
    Query(Query),
}

impl Request {
    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let value = match self {
            Self::Status => serde_json::json!({"v": VERSION, "op": "status"}),
            Self::Subscribe => serde_json::json!({"v": VERSION, "op": "subscribe"}),
            Self::Query(q) => serde_json::json!({"v": VERSION, "op": "query", "query": q}),
        };
        format!("{value}\n")
    }
}

/// Reads one request line. The error is the message sent back to the client. Fields other than
/// `v`, `op` and `query` are ignored.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|err| format!("request is not valid JSON: {err}"))?;
    let Value::Object(map) = value else {
        return Err("request must be a JSON object".into());
    };
    match map.get("v") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v}; this daemon speaks version {VERSION}"
            ))
        }
        None => return Err(format!("request has no \"v\"; send \"v\":{VERSION}")),
    }
    let op = map
        .get("op")
        .and_then(Value::as_str)
        .ok_or("request has no \"op\" string")?;
    match op {
        "status" => Ok(Request::Status),
        "subscribe" => Ok(Request::Subscribe),
        "query" => {
            let query = map.get("query").ok_or("query request has no \"query\"")?;
            let query = Query::deserialize(query).map_err(|err| format!("invalid query: {err}"))?;
            if query.from_ms > query.to_ms {
                return Err(format!(
                    "invalid query: from_ms {} is after to_ms {}",
                    query.from_ms, query.to_ms
                ));
            }
            Ok(Request::Query(query))
        }
        other => Err(format!(
            "unknown op \"{other}\"; known: status, subscribe, query"
        )),
    }
}

/// A successful answer line carrying `value` under `field`, newline included.
pub fn ok_line(field: &str, value: &impl Serialize) -> String {
    match serde_json::to_string(value) {
        Ok(json) => format!("{{\"v\":{VERSION},\"ok\":true,\"{field}\":{json}}}\n"),
        Err(err) => error_line(&format!("cannot encode the answer: {err}")),
    }
}

pub fn error_line(message: &str) -> String {
    let value = serde_json::json!({"v": VERSION, "ok": false, "error": message});
    format!("{value}\n")
}

/// A live snapshot on the wire: the `kaipo watch --json` record plus totals since start.
#[derive(Serialize)]
pub struct SnapshotOut<'a> {
    #[serde(flatten)]
    pub record: &'a IntervalRecord,
    pub totals: &'a Totals,
}

/// A live snapshot as a client reads it. The interval's fields are those of `kaipo watch
/// --json` (see the README), kept as JSON.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Snapshot {
    pub totals: Totals,
    #[serde(flatten)]
    pub interval: serde_json::Map<String, Value>,
}

/// Who asked, and what they may see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerInfo {
    pub uid: u32,
    /// Root or a member of group `kaipo`: sees every process and interface.
    pub privileged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradationInfo {
    pub what: String,
    pub why: String,
}

/// The store's health as the store worker last saw it. Callers who see only their own
/// processes get the counts but not the path, the error or the note, which name files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The database file; null for callers who see only their own processes.
    pub path: Option<String>,
    /// Batches the store keeps in memory after a failed write, retried with the next one.
    pub backlog: u64,
    pub batches_written: u64,
    pub last_write_ms: Option<u64>,
    /// Why history cannot be written now; null once a write succeeds again.
    pub last_error: Option<String>,
    /// When a write or upkeep last failed (kept after recovery).
    pub last_error_ms: Option<u64>,
    /// What opening the store had to say (a file created, or a damaged one moved aside).
    pub note: Option<String>,
}

/// The answer to `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// kaipo version of the daemon.
    pub version: String,
    pub pid: u32,
    pub started_ms: u64,
    pub now_ms: u64,
    pub backend: String,
    pub degradations: Vec<DegradationInfo>,
    /// Length of one stored interval.
    pub interval_ms: u64,
    /// How often the live figures (and subscribers' snapshots) are refreshed.
    pub live_interval_ms: u64,
    pub include_loopback: bool,
    /// Monitored interfaces (empty for callers who see only their own processes).
    pub interfaces: Vec<String>,
    pub caller: CallerInfo,
    /// Everything since start; `totals.lost` and `totals.attribution` only for callers who
    /// see everything.
    pub totals: Totals,
    /// See [`Totals::attributed_ratio`]: 0.0 to 1.0, None without interface traffic and for
    /// callers who see only their own processes.
    pub attributed_ratio: Option<f64>,
    pub bus: BusCounts,
    pub store: StoreStatus,
    /// Alerts firing now (only for callers who see everything; absent from older daemons).
    #[serde(default)]
    pub alerts: Vec<crate::alert::Notification>,
    /// How full the kernel's maps are (eBPF backend, callers who see everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maps: Option<crate::collect::MapUsage>,
    /// What confines the daemon since start (absent from older daemons).
    #[serde(default)]
    pub sandbox: Option<SandboxStatus>,
}

/// How the daemon is confined after start: who it runs as, what it can still do, and which
/// layers are in force.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub user: String,
    pub uid: u32,
    /// Why the daemon still runs as root; null once it switched to its own user.
    pub stays_root: Option<String>,
    /// Capabilities held after start.
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    pub seccomp: SandboxLayer,
    pub landlock: SandboxLayer,
}

/// One confinement layer: in force or not, and what it does or why not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxLayer {
    pub in_force: bool,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Dimension;

    #[test]
    fn parses_each_op_and_round_trips_queries() {
        assert_eq!(
            parse_request(br#"{"v":1,"op":"status"}"#),
            Ok(Request::Status)
        );
        assert_eq!(
            parse_request(br#"{"v":1,"op":"subscribe","extra":true}"#),
            Ok(Request::Subscribe)
        );
        let q = Query {
            from_ms: 1,
            to_ms: 2,
            by: Dimension::Process,
            top: 5,
            uid: None,
            per: None,
        };
        let line = Request::Query(q.clone()).to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(
            parse_request(line.trim_end().as_bytes()),
            Ok(Request::Query(q))
        );
    }

    #[test]
    fn explains_what_is_wrong_with_a_request() {
        let err = |line: &str| parse_request(line.as_bytes()).unwrap_err();
        assert!(err("{nope").starts_with("request is not valid JSON"));
        assert_eq!(err("[1]"), "request must be a JSON object");
        assert!(err(r#"{"op":"status"}"#).contains("no \"v\""));
        assert!(err(r#"{"v":2,"op":"status"}"#).contains("unsupported protocol version 2"));
        assert!(err(r#"{"v":1}"#).contains("no \"op\""));
        assert!(err(r#"{"v":1,"op":"reboot"}"#).contains("unknown op \"reboot\""));
        assert!(err(r#"{"v":1,"op":"query"}"#).contains("no \"query\""));
        assert!(err(r#"{"v":1,"op":"query","query":{"by":"planet"}}"#).starts_with("invalid query"));
        assert_eq!(
            err(r#"{"v":1,"op":"query","query":{"from_ms":5,"to_ms":4,"by":"app","top":0}}"#),
            "invalid query: from_ms 5 is after to_ms 4"
        );
        // An empty range is a question with an empty answer, not an error.
        assert!(parse_request(
            br#"{"v":1,"op":"query","query":{"from_ms":4,"to_ms":4,"by":"app","top":0}}"#
        )
        .is_ok());
    }

    #[test]
    fn answers_are_one_line_with_version_and_ok() {
        let ok: Value = serde_json::from_str(&ok_line("report", &vec![1, 2])).unwrap();
        assert_eq!(ok, serde_json::json!({"v":1,"ok":true,"report":[1,2]}));
        let line = error_line("bad \"thing\"\nhere");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let err: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(err["error"], "bad \"thing\"\nhere");
        assert_eq!(err["ok"], false);
    }
}
