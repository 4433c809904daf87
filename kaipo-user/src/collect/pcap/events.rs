//! Lifecycle events of the pcap backend (socket owners and closes), in the eBPF backend's
//! [`Event`] shape, through a bounded queue: what does not fit is counted, as a full ring
//! buffer is on the kernel side.

use std::{
    collections::VecDeque,
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use kaipo_common::Event;
use tokio::sync::Notify;

/// Room for a burst of new sockets (the first sample on a busy host reports every active one).
pub const EVENT_QUEUE_CAPACITY: usize = 65_536;

pub(super) struct EventQueue {
    events: Mutex<VecDeque<Event>>,
    capacity: usize,
    notify: Notify,
    dropped: AtomicU64,
}

impl EventQueue {
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
        })
    }

    pub(super) fn push(&self, event: Event) {
        {
            let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            if events.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            events.push_back(event);
        }
        // A permit is stored when nobody waits, so a push between a reader's check and its
        // wait is not lost.
        self.notify.notify_one();
    }

    /// Events that found the queue full, since the start.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// The event side of the pcap collector, apart from it so that one task can wait for events
/// while another takes samples (the same split as the eBPF backend's `EventStream`).
pub struct PcapEvents {
    pub(super) queue: Arc<EventQueue>,
    /// Always 0: queued events are built in process, never decoded. Kept for the same shape as
    /// the eBPF backend's stream.
    pub malformed: u64,
}

impl PcapEvents {
    /// Waits until at least one event is queued.
    pub async fn readable(&mut self) -> io::Result<()> {
        while self.queue.is_empty() {
            self.queue.notify.notified().await;
        }
        Ok(())
    }

    /// Moves every queued event into `out`.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let mut events = self
            .queue
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let moved = events.len();
        out.extend(events.drain(..));
        moved
    }
}

#[cfg(test)]
mod tests {
    use kaipo_common::EVENT_SOCK_OWNER;

    use super::*;

    #[test]
    fn bounded_and_wakes_the_reader() {
        let queue = EventQueue::new(2);
        let mut events = PcapEvents {
            queue: Arc::clone(&queue),
            malformed: 0,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pusher = Arc::clone(&queue);
        let waited = runtime.block_on(async move {
            let reader = tokio::spawn(async move {
                events.readable().await.unwrap();
                events
            });
            tokio::task::yield_now().await;
            for cookie in 1..=3 {
                pusher.push(Event {
                    kind: EVENT_SOCK_OWNER,
                    cookie,
                    ..Event::default()
                });
            }
            reader.await.unwrap()
        });
        let mut events = waited;
        let mut out = Vec::new();
        assert_eq!(events.drain(&mut out), 2);
        assert_eq!(out.iter().map(|e| e.cookie).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(queue.dropped(), 1);
        assert_eq!(events.drain(&mut out), 0);
    }
}
