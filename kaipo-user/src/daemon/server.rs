//! The Unix socket server: one task per client, each with its own bounded buffers, so that a
//! slow or hostile client costs only its own connection.

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::Path,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::{
    net::{unix::OwnedWriteHalf, UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch, Semaphore},
    time::timeout,
};

use super::{
    access::{self, Caller},
    store_worker::now_ms,
    view::{self, DaemonInfo},
};
use crate::{
    api::{
        protocol::{
            error_line, ok_line, parse_request, CallerInfo, Request, StatusReport, StoreStatus,
            MAX_LINE,
        },
        wire::{write_all, Line, LineReader},
    },
    pipeline::{
        aggregate::Snapshot,
        bus::{BusStats, StoreJob, Subscriptions},
    },
    store::{Query, Report},
};

#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections at once, all users together.
    pub max_clients: usize,
    /// Connections at once per user who sees only their own processes.
    pub max_per_user: usize,
    /// How long a connection may stay silent between requests.
    pub idle: Duration,
    /// How long one answer or snapshot may take to write before the client is dropped.
    pub write_timeout: Duration,
    pub query_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_clients: 256,
            max_per_user: 16,
            idle: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            query_timeout: Duration::from_secs(60),
        }
    }
}

/// What every client task reads.
pub struct Shared {
    pub info: DaemonInfo,
    pub snapshots: Subscriptions<Snapshot>,
    pub store: mpsc::Sender<StoreJob>,
    pub store_status: Arc<Mutex<StoreStatus>>,
    pub stats: Arc<BusStats>,
    pub query_slots: Arc<Semaphore>,
    pub limits: Limits,
    /// The id of the group whose members see everything, looked up per connection.
    pub privileged_group: fn() -> Option<u32>,
    per_user: Mutex<HashMap<u32, usize>>,
    /// Alerts firing now; they name other users' apps, so only privileged callers see them.
    pub alerts: crate::alert::ActiveAlerts,
}

impl Shared {
    pub fn new(
        info: DaemonInfo,
        snapshots: Subscriptions<Snapshot>,
        store: mpsc::Sender<StoreJob>,
        store_status: Arc<Mutex<StoreStatus>>,
        stats: Arc<BusStats>,
        limits: Limits,
    ) -> Self {
        Self {
            info,
            snapshots,
            store,
            store_status,
            stats,
            query_slots: Arc::new(Semaphore::new(crate::pipeline::bus::QUERY_SLOTS)),
            limits,
            privileged_group: || access::group_id(access::GROUP).ok().flatten(),
            per_user: Mutex::new(HashMap::new()),
            alerts: Arc::default(),
        }
    }

    /// Takes a connection slot, or says why there is none.
    fn admit(&self, uid: u32, limited: bool) -> Result<Admitted<'_>, String> {
        let clients = self.stats.clients.fetch_add(1, Ordering::Relaxed) as usize;
        let mut slot = Admitted {
            shared: self,
            uid: None,
        };
        if clients >= self.limits.max_clients {
            return Err(format!("too many clients ({clients}); try again later"));
        }
        if limited {
            let mut per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_user.entry(uid).or_default();
            if *n >= self.limits.max_per_user {
                return Err(format!("too many connections from uid {uid} ({n})"));
            }
            *n += 1;
            slot.uid = Some(uid);
        }
        Ok(slot)
    }
}

/// A connection slot, given back on drop.
struct Admitted<'a> {
    shared: &'a Shared,
    uid: Option<u32>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.shared.stats.clients.fetch_sub(1, Ordering::Relaxed);
        if let Some(uid) = self.uid {
            let mut per_user = self
                .shared
                .per_user
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_user.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    per_user.remove(&uid);
                }
            }
        }
    }
}

/// Creates the socket: missing parent folders 0755, the socket 0666 (access is decided per
/// request from the caller's credentials). A socket left behind by a daemon that died is
/// replaced; one that answers belongs to a running daemon and is an error.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    super::create_parents(path)?;
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; remove it or pass another --socket",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another kaipo daemon is listening on {}; stop it first (or pass another --socket)",
                path.display()
            );
        }
        fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

/// Accepts clients until `stop` turns true.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, Arc::clone(&shared)));
                }
                Err(err) => {
                    // Out of file descriptors, most likely; give clients a moment to leave.
                    log::warn!("accepting a client: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = crate::pipeline::bus::stopped(&mut stop) => return,
        }
    }
}

async fn connection(stream: UnixStream, shared: Arc<Shared>) {
    let caller = match access::peer(&stream) {
        Ok(caller) => caller,
        Err(err) => {
            log::debug!("a client without credentials: {err}");
            return;
        }
    };
    let only_uid = caller.only_uid((shared.privileged_group)());
    serve_client(stream, &caller, only_uid, &shared).await;
}

/// Serves one client: requests one after another until it closes, errs, or subscribes.
pub async fn serve_client(
    stream: UnixStream,
    caller: &Caller,
    only_uid: Option<u32>,
    shared: &Shared,
) {
    let (read, write) = stream.into_split();
    let _slot = match shared.admit(caller.uid, only_uid.is_some()) {
        Ok(slot) => slot,
        Err(message) => {
            let _ = send(&write, error_line(&message), Duration::from_secs(1)).await;
            return;
        }
    };
    let mut reader = LineReader::new(read, MAX_LINE);
    let write_timeout = shared.limits.write_timeout;
    loop {
        let line = match timeout(shared.limits.idle, reader.next_line()).await {
            Ok(Ok(Line::Line(line))) => line,
            Ok(Ok(Line::Eof) | Err(_)) => return,
            Ok(Ok(Line::TooLong)) => {
                let message = format!("request line longer than {MAX_LINE} bytes");
                let _ = send(&write, error_line(&message), write_timeout).await;
                return;
            }
            Err(_) => {
                let message = "no request for too long; closing";
                let _ = send(&write, error_line(message), write_timeout).await;
                return;
            }
        };
        let answer = match parse_request(&line) {
            Ok(Request::Status) => ok_line("status", &status(shared, caller.uid, only_uid)),
            Ok(Request::Query(mut query)) => {
                // Whatever the caller asked, a limited caller gets its own traffic only.
                if only_uid.is_some() {
                    query.uid = only_uid;
                }
                match ask_store(shared, query).await {
                    Ok(report) => ok_line("report", &report),
                    Err(message) => error_line(&message),
                }
            }
            Ok(Request::Subscribe) => {
                return stream_snapshots(reader, &write, only_uid, shared).await
            }
            Err(message) => {
                let _ = send(&write, error_line(&message), write_timeout).await;
                return;
            }
        };
        if send(&write, answer, write_timeout).await.is_err() {
            return;
        }
    }
}

/// Writes one line, giving up after `limit`: a client that does not read is dropped.
async fn send(write: &OwnedWriteHalf, line: String, limit: Duration) -> io::Result<()> {
    match timeout(limit, write_all(write, line.as_bytes())).await {
        Ok(result) => result,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

pub(crate) fn status(shared: &Shared, uid: u32, only_uid: Option<u32>) -> StatusReport {
    let store = shared
        .store_status
        .lock()
        .map_or_else(|e| e.into_inner().clone(), |s| s.clone());
    let mut report = view::status(
        &shared.info,
        shared.snapshots.latest().as_deref(),
        shared.stats.counts(),
        store,
        CallerInfo {
            uid,
            privileged: only_uid.is_none(),
        },
        now_ms(),
    );
    if only_uid.is_none() {
        report.maps = shared.stats.maps();
        report.alerts = shared
            .alerts
            .lock()
            .map_or_else(|e| e.into_inner().clone(), |a| a.clone());
    }
    report
}

/// Sends every snapshot from now on until the client or the daemon goes. While a write
/// waits on a slow client, its queue of snapshots overflows and the oldest are counted lost;
/// a client that reads nothing for the whole write timeout is dropped, and the snapshot it
/// was being sent and those still queued for it are counted too.
async fn stream_snapshots(
    mut reader: LineReader,
    write: &OwnedWriteHalf,
    only_uid: Option<u32>,
    shared: &Shared,
) {
    let mut subscriber = shared.snapshots.subscribe();
    loop {
        tokio::select! {
            next = subscriber.next() => {
                let Some(snapshot) = next else { return };
                let line = view::snapshot_line(&snapshot, only_uid);
                match send(write, line, shared.limits.write_timeout).await {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                        return subscriber.abandon(1);
                    }
                    // The client went away: nothing was owed to anyone.
                    Err(_) => return,
                }
            }
            () = reader.wait_closed() => return,
        }
    }
}

pub(crate) async fn ask_store(shared: &Shared, query: Query) -> Result<Report, String> {
    let wait = shared.limits.query_timeout;
    let permit = match timeout(wait, Arc::clone(&shared.query_slots).acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err("the daemon is shutting down".into()),
        Err(_) => return Err("the daemon is busy with other queries; try again later".into()),
    };
    let (reply, answer) = oneshot::channel();
    let job = StoreJob::Query {
        query,
        reply,
        permit,
    };
    match shared.store.try_send(job) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return Err("the store is busy writing; try again shortly".into())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return Err("the daemon is shutting down".into())
        }
    }
    match timeout(wait, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the daemon is shutting down".into()),
        Err(_) => Err(format!("the query took longer than {} s", wait.as_secs())),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
