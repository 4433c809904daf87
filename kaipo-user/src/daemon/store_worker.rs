//! The store worker: one thread owns the SQLite store, writes each batch in one transaction,
//! answers queries between writes, and runs the store's upkeep. SQLite calls block, so they
//! stay off the async thread that serves clients and drains the ring buffer.

use std::{
    sync::{Arc, Mutex},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc;

use crate::{
    api::protocol::StoreStatus,
    pipeline::bus::StoreJob,
    store::{IntervalBatch, Query, Report},
};

/// How often the store rolls up and expires old rows.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// What the worker needs from a store; a fake stands in for tests.
pub trait History: Send + 'static {
    fn write(&mut self, batch: &IntervalBatch) -> Result<(), String>;
    fn maintain(&mut self, now_ms: i64) -> Result<(), String>;
    fn query(&mut self, query: &Query) -> Result<Report, String>;
    /// Batches held in memory after failed writes.
    fn backlog_len(&self) -> usize;
    /// The network names reports by network use from now on.
    fn set_names(&mut self, _names: crate::config::names::SharedNames) {}
    /// What happened to the file since last asked (a damaged file moved aside by a write).
    fn take_note(&mut self) -> Option<String> {
        None
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the worker thread. It ends after [`StoreJob::Shutdown`] (or when every sender is
/// gone), once everything before it is written.
pub fn spawn<H: History>(
    store: H,
    jobs: mpsc::Receiver<StoreJob>,
    status: Arc<Mutex<StoreStatus>>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("kaipo-store".into())
        .spawn(move || work(store, jobs, &status, MAINTAIN_EVERY))
}

fn update(status: &Mutex<StoreStatus>, f: impl FnOnce(&mut StoreStatus)) {
    match status.lock() {
        Ok(mut s) => f(&mut s),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

fn work<H: History>(
    mut store: H,
    mut jobs: mpsc::Receiver<StoreJob>,
    status: &Mutex<StoreStatus>,
    maintain_every: Duration,
) {
    // Upkeep first: history that aged while the daemon was not running.
    maintain(&mut store, status);
    let mut last_maintain = std::time::Instant::now();
    while let Some(job) = jobs.blocking_recv() {
        match job {
            StoreJob::Write(batch) => {
                let result = store.write(&batch);
                let backlog = store.backlog_len() as u64;
                let note = store.take_note();
                update(status, |s| {
                    s.backlog = backlog;
                    if let Some(note) = note {
                        log::warn!("{note}");
                        s.note = Some(note);
                    }
                    match result {
                        Ok(()) => {
                            s.batches_written += 1;
                            s.last_write_ms = Some(now_ms());
                            // Recovered: the failure is over (`last_error_ms` says when it
                            // last happened).
                            s.last_error = None;
                        }
                        Err(err) => {
                            log::warn!("writing history: {err}");
                            s.last_error = Some(err);
                            s.last_error_ms = Some(now_ms());
                        }
                    }
                });
                if last_maintain.elapsed() >= maintain_every {
                    maintain(&mut store, status);
                    last_maintain = std::time::Instant::now();
                }
            }
            StoreJob::Query {
                query,
                reply,
                permit,
            } => {
                // The client may have given up; its answer then goes nowhere.
                let _ = reply.send(store.query(&query));
                drop(permit);
            }
            StoreJob::Names(names) => store.set_names(names),
            StoreJob::Shutdown => break,
        }
    }
    let backlog = store.backlog_len();
    if backlog > 0 {
        log::error!("{backlog} batches of history could not be written before exit");
    }
}

fn maintain<H: History>(store: &mut H, status: &Mutex<StoreStatus>) {
    let result = store.maintain(now_ms() as i64);
    if let Some(note) = store.take_note() {
        log::warn!("{note}");
        update(status, |s| s.note = Some(note));
    }
    if let Err(err) = result {
        log::warn!("history upkeep: {err}");
        update(status, |s| {
            s.last_error = Some(err);
            s.last_error_ms = Some(now_ms());
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::{oneshot, Semaphore};

    use super::*;
    use crate::store::Dimension;

    /// Fails the writes it is told to fail, keeping them as backlog like the real store.
    #[derive(Default)]
    struct Fake {
        written: Arc<Mutex<Vec<i64>>>,
        fail_next: usize,
        backlog: usize,
        maintained: usize,
    }

    impl History for Fake {
        fn write(&mut self, batch: &IntervalBatch) -> Result<(), String> {
            if self.fail_next > 0 {
                self.fail_next -= 1;
                self.backlog += 1;
                return Err("disk full".into());
            }
            self.backlog = 0;
            self.written.lock().unwrap().push(batch.ts_ms);
            Ok(())
        }
        fn maintain(&mut self, _now_ms: i64) -> Result<(), String> {
            self.maintained += 1;
            Ok(())
        }
        fn query(&mut self, query: &Query) -> Result<Report, String> {
            Ok(Report {
                from_ms: query.from_ms,
                ..Report::default()
            })
        }
        fn backlog_len(&self) -> usize {
            self.backlog
        }
    }

    fn batch(ts_ms: i64) -> StoreJob {
        StoreJob::Write(IntervalBatch {
            ts_ms,
            ..IntervalBatch::default()
        })
    }

    #[test]
    fn writes_in_order_reports_errors_and_answers_queries() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            written: Arc::clone(&written),
            fail_next: 1,
            ..Fake::default()
        };
        let status = Arc::new(Mutex::new(StoreStatus::default()));
        let (tx, rx) = mpsc::channel(8);
        let slots = Arc::new(Semaphore::new(1));
        let (reply, answer) = oneshot::channel();
        let permit = Arc::clone(&slots).try_acquire_owned().unwrap();
        tx.try_send(batch(1)).unwrap();
        let query = Query {
            from_ms: 77,
            to_ms: 78,
            by: Dimension::App,
            top: 0,
            uid: None,
            per: None,
        };
        tx.try_send(StoreJob::Query {
            query,
            reply,
            permit,
        })
        .unwrap();
        tx.try_send(batch(2)).unwrap();
        tx.try_send(StoreJob::Shutdown).unwrap();
        tx.try_send(batch(3)).unwrap();
        work(fake, rx, &status, Duration::ZERO);
        assert_eq!(
            *written.lock().unwrap(),
            [2],
            "after Shutdown nothing is written"
        );
        assert_eq!(answer.blocking_recv().unwrap().unwrap().from_ms, 77);
        assert_eq!(slots.available_permits(), 1, "the query slot is given back");
        let s = status.lock().unwrap().clone();
        assert_eq!((s.batches_written, s.backlog), (1, 0));
        // Batch 2 was written after batch 1 failed: the error is over, its time stays.
        assert_eq!(s.last_error, None);
        assert!(s.last_write_ms.is_some() && s.last_error_ms.is_some());
    }

    /// A store that moved a damaged file aside while writing.
    struct Replacing(usize);

    impl History for Replacing {
        fn write(&mut self, _: &IntervalBatch) -> Result<(), String> {
            self.0 += 1;
            Ok(())
        }
        fn maintain(&mut self, _: i64) -> Result<(), String> {
            Ok(())
        }
        fn query(&mut self, _: &Query) -> Result<Report, String> {
            Err("no".into())
        }
        fn backlog_len(&self) -> usize {
            0
        }
        fn take_note(&mut self) -> Option<String> {
            (self.0 == 2).then(|| "moved to x.corrupt-1".to_owned())
        }
    }

    #[test]
    fn a_file_moved_aside_by_a_write_shows_in_the_note() {
        let status = Arc::new(Mutex::new(StoreStatus {
            note: Some("created".into()),
            ..StoreStatus::default()
        }));
        let (tx, rx) = mpsc::channel(8);
        for n in 1..=3 {
            tx.try_send(batch(n)).unwrap();
        }
        drop(tx);
        work(Replacing(0), rx, &status, Duration::from_secs(3600));
        let s = status.lock().unwrap().clone();
        assert_eq!(s.note.as_deref(), Some("moved to x.corrupt-1"));
        assert_eq!(s.batches_written, 3);
    }
}
