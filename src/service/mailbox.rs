//! The newest-only mailbox between a frame source and its detection loop: a new item replaces
//! one that was never taken, so a slow consumer costs skipped items, never latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One slot holding the newest item.
pub(crate) struct Mailbox<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
    closed: AtomicBool,
    /// Set by `wake`, cleared by the next `take`: a wake while nobody waits is not lost.
    woken: AtomicBool,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            slot: Mutex::new(None),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        }
    }
}

impl<T> Mailbox<T> {
    /// Leaves `item`; returns the item it replaced, which was never taken.
    pub fn put(&self, item: T) -> Option<T> {
        let old = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(item);
        self.ready.notify_all();
        old
    }

    /// Takes the newest item, waiting up to `wait` for one; `None` on time-out, once closed,
    /// and on a `wake` (one that came while nobody waited included).
    pub fn take(&self, wait: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, wait, |s| {
                s.is_none() && !self.is_closed() && !self.woken.load(Ordering::Acquire)
            })
            .unwrap_or_else(|p| p.into_inner());
        self.woken.store(false, Ordering::Release);
        slot.take()
    }

    /// Drops a waiting item; true if there was one.
    pub fn discard(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// Ends a waiting `take`, or the next one if none waits (state changes, a result in).
    pub fn wake(&self) {
        let _slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        self.woken.store(true, Ordering::Release);
        self.ready.notify_all();
    }

    /// No more waiting: every `take` returns at once from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_newest_item_wins_and_replaced_ones_come_back() {
        let m = Mailbox::default();
        assert_eq!(m.put(1), None);
        assert_eq!(m.put(2), Some(1));
        assert_eq!(m.take(Duration::ZERO), Some(2));
        assert_eq!(m.take(Duration::from_millis(1)), None);
        m.put(3);
        assert!(m.discard());
        assert!(!m.discard());
    }

    #[test]
    fn a_waiting_take_gets_an_item_put_later_and_close_releases_it() {
        let m = Arc::new(Mailbox::default());
        let producer = {
            let m = m.clone();
            std::thread::spawn(move || m.put(7))
        };
        assert_eq!(m.take(Duration::from_secs(60)), Some(7));
        producer.join().unwrap();
        let waiter = {
            let m = m.clone();
            std::thread::spawn(move || m.take(Duration::from_secs(60)))
        };
        m.close();
        assert_eq!(waiter.join().unwrap(), None);
        assert!(m.is_closed());
    }

    #[test]
    fn a_wake_ends_the_waiting_take_or_the_next_one() {
        let m = Arc::new(Mailbox::<u32>::default());
        // Before anyone waits: the next take returns at once, the one after waits again.
        m.wake();
        let started = std::time::Instant::now();
        assert_eq!(m.take(Duration::from_secs(60)), None);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the wake was lost"
        );
        let started = std::time::Instant::now();
        assert_eq!(m.take(Duration::from_millis(20)), None);
        assert!(started.elapsed() >= Duration::from_millis(20));
        // While one waits.
        let waiter = {
            let m = m.clone();
            std::thread::spawn(move || m.take(Duration::from_secs(60)))
        };
        m.wake();
        assert_eq!(waiter.join().unwrap(), None);
    }
}
