//! The event bus: the bounded channels between the pipeline's stages, the messages they carry,
//! and counts of what they could not carry.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit};

use crate::store::{IntervalBatch, Query, Report};

/// Live intervals that may wait for the aggregator. One is plenty in normal operation; a few
/// absorb a slow moment without deferring.
pub const INTERVAL_QUEUE: usize = 4;
/// Store batches that may wait for the store worker (80 s of history at the default interval).
pub const BATCH_QUEUE: usize = 8;
/// Queries that may wait for the store worker, all clients together.
pub const QUERY_SLOTS: usize = 4;
/// Snapshots a subscriber may fall behind by before it misses some.
pub const SUBSCRIBER_QUEUE: usize = 8;

/// What the store worker is asked to do.
pub enum StoreJob {
    Write(IntervalBatch),
    /// The permit is one of [`QUERY_SLOTS`]; it is released when the job is done, which keeps
    /// queries from filling the room that batches need.
    Query {
        query: Query,
        reply: oneshot::Sender<Result<Report, String>>,
        permit: OwnedSemaphorePermit,
    },
    /// The network names reports by network group by, from a reload.
    Names(crate::config::names::SharedNames),
    /// Everything before this has been sent; finish and stop.
    Shutdown,
}

/// A store queue with room for every batch plus every query slot.
pub fn store_queue() -> (mpsc::Sender<StoreJob>, mpsc::Receiver<StoreJob>) {
    mpsc::channel(BATCH_QUEUE + QUERY_SLOTS)
}

/// Counters of what the bus could not carry, shared by every stage.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Live intervals closed.
    pub intervals: AtomicU64,
    /// Live intervals not closed on time because the aggregator had no room (nothing is lost:
    /// the next interval covers them).
    pub intervals_deferred: AtomicU64,
    /// Store batches dropped because the store worker had no room.
    pub batches_dropped: AtomicU64,
    /// Snapshots that slow subscribers missed, including those still owed to a subscriber
    /// that was dropped for not reading.
    pub snapshots_dropped: AtomicU64,
    /// Clients connected now, and subscribers among them.
    pub clients: AtomicU64,
    pub subscribers: AtomicU64,
    /// How full the kernel's maps were at the last interval (eBPF backend).
    pub maps: std::sync::Mutex<Option<crate::collect::MapUsage>>,
}

impl BusStats {
    pub fn maps(&self) -> Option<crate::collect::MapUsage> {
        *self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// [`BusStats`] read at one moment, as `status` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusCounts {
    pub intervals: u64,
    pub intervals_deferred: u64,
    pub batches_dropped: u64,
    pub snapshots_dropped: u64,
    pub clients: u64,
    pub subscribers: u64,
}

impl BusStats {
    pub fn counts(&self) -> BusCounts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BusCounts {
            intervals: read(&self.intervals),
            intervals_deferred: read(&self.intervals_deferred),
            batches_dropped: read(&self.batches_dropped),
            snapshots_dropped: read(&self.snapshots_dropped),
            clients: read(&self.clients),
            subscribers: read(&self.subscribers),
        }
    }
}

/// Sends without waiting; a full queue drops the message and counts it. Returns false when
/// the receiving stage is gone.
pub fn send_or_count<T>(tx: &mpsc::Sender<T>, msg: T, dropped: &AtomicU64) -> bool {
    match tx.try_send(msg) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            dropped.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Resolves once `stop` turns true or its sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await of the caller's.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

/// The aggregator's side of snapshot publishing: the latest value for whoever asks, and a
/// bounded broadcast for subscribers.
pub struct Publisher<T> {
    latest: watch::Sender<Option<Arc<T>>>,
    live: broadcast::Sender<Arc<T>>,
}

/// The readers' side; cheap to clone, one per client.
pub struct Subscriptions<T> {
    latest: watch::Receiver<Option<Arc<T>>>,
    // A receiver, not a sender, so that the channel closes when the publisher goes.
    live: broadcast::Receiver<Arc<T>>,
    stats: Arc<BusStats>,
}

impl<T> Clone for Subscriptions<T> {
    fn clone(&self) -> Self {
        Self {
            latest: self.latest.clone(),
            live: self.live.resubscribe(),
            stats: Arc::clone(&self.stats),
        }
    }
}

pub fn publisher<T>(stats: Arc<BusStats>) -> (Publisher<T>, Subscriptions<T>) {
    let (latest_tx, latest_rx) = watch::channel(None);
    let (live_tx, live_rx) = broadcast::channel(SUBSCRIBER_QUEUE);
    (
        Publisher {
            latest: latest_tx,
            live: live_tx,
        },
        Subscriptions {
            latest: latest_rx,
            live: live_rx,
            stats,
        },
    )
}

impl<T> Publisher<T> {
    /// Never waits: a subscriber that is behind loses its oldest snapshot instead.
    pub fn publish(&self, value: Arc<T>) {
        self.latest.send_replace(Some(Arc::clone(&value)));
        // An error only means that nobody subscribes right now.
        let _ = self.live.send(value);
    }
}

impl<T> Subscriptions<T> {
    pub fn latest(&self) -> Option<Arc<T>> {
        self.latest.borrow().clone()
    }

    /// A subscriber that receives snapshots published from now on.
    pub fn subscribe(&self) -> Subscriber<T> {
        self.stats.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber {
            rx: self.live.resubscribe(),
            stats: Arc::clone(&self.stats),
        }
    }
}

pub struct Subscriber<T> {
    rx: broadcast::Receiver<Arc<T>>,
    stats: Arc<BusStats>,
}

impl<T> Subscriber<T> {
    /// The next snapshot, or None once the publisher is gone. Snapshots this subscriber fell
    /// too far behind for are skipped and counted.
    pub async fn next(&mut self) -> Option<Arc<T>> {
        loop {
            match self.rx.recv().await {
                Ok(value) => return Some(value),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.stats
                        .snapshots_dropped
                        .fetch_add(missed, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl<T> Subscriber<T> {
    /// Gives up on a subscriber whose client stopped reading: the `unsent` snapshots it had
    /// taken but could not deliver, and every one still queued for it (those it fell behind
    /// on included), are counted as dropped.
    pub fn abandon(self, unsent: u64) {
        let queued = self.rx.len() as u64;
        self.stats
            .snapshots_dropped
            .fetch_add(unsent + queued, Ordering::Relaxed);
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.stats.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = AtomicU64::new(0);
        for i in 0..5 {
            assert!(send_or_count(&tx, i, &dropped));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(0), Ok(1)));
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(!send_or_count(&tx, 9, &dropped));
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_slow_subscriber_misses_snapshots_and_they_are_counted() {
        let stats = Arc::new(BusStats::default());
        let (publisher, subs) = publisher::<u32>(Arc::clone(&stats));
        let mut slow = subs.subscribe();
        let mut fast = subs.subscribe();
        assert_eq!(stats.counts().subscribers, 2);
        let total = SUBSCRIBER_QUEUE as u32 + 5;
        for i in 0..total {
            publisher.publish(Arc::new(i));
            assert_eq!(fast.next().await.as_deref(), Some(&i));
        }
        // The slow one gets the newest SUBSCRIBER_QUEUE; the 5 before them are counted.
        assert_eq!(slow.next().await.as_deref(), Some(&5));
        assert_eq!(stats.counts().snapshots_dropped, 5);
        assert_eq!(subs.latest().as_deref(), Some(&(total - 1)));
        drop(slow);
        assert_eq!(stats.counts().subscribers, 1);
        drop(publisher);
        // The rest of the queue, then the end.
        let mut rest = 0;
        while fast.next().await.is_some() {
            rest += 1;
        }
        assert_eq!(rest, 0, "fast had read everything already");
        assert_eq!(subs.latest().as_deref(), Some(&(total - 1)));
    }

    #[tokio::test]
    async fn an_abandoned_subscriber_counts_what_it_was_still_owed() {
        let stats = Arc::new(BusStats::default());
        let (publisher, subs) = publisher::<u32>(Arc::clone(&stats));
        let mut stuck = subs.subscribe();
        for i in 0..20 {
            publisher.publish(Arc::new(i));
        }
        // 12 overwritten before it read any, then one taken but never delivered.
        assert_eq!(stuck.next().await.as_deref(), Some(&12));
        assert_eq!(stats.counts().snapshots_dropped, 12);
        stuck.abandon(1);
        // The 7 still queued (13 to 19) and the one in hand: all 20 are accounted for.
        assert_eq!(stats.counts().snapshots_dropped, 20);
        assert_eq!(stats.counts().subscribers, 0);
    }
}
