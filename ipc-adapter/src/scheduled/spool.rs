//! The offline spool: results that could not be published to IoT Core yet, kept in order and
//! bounded, and when to try again.
//!
//! Nucleus lite has no spooler: a PublishToIoTCore while the cloud is unreachable fails. The
//! scheduled component then keeps the result here and retries with a growing pause, oldest
//! first, so results reach IoT Core in the order they were made. The spool is bounded by count
//! and by bytes; when a new result does not fit, the oldest ones are dropped and counted. It lives
//! in memory: a restart of the component loses what it holds (the classic nucleus keeps QoS 1
//! messages in its own spooler, so there a publish does not fail while offline).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A bounded first-in, first-out queue that drops its oldest items to make room.
#[derive(Debug)]
pub struct Spool<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    dropped: u64,
}

impl<T> Spool<T> {
    /// A spool of at most `max_items` items and `max_bytes` bytes (both at least 1).
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
            dropped: 0,
        }
    }

    /// Adds `item` of `size` bytes at the back, dropping the oldest items until it fits. An item
    /// larger than the whole spool is dropped itself. Returns how many items were dropped.
    pub fn push(&mut self, item: T, size: usize) -> usize {
        if size > self.max_bytes {
            self.dropped += 1;
            return 1;
        }
        let mut dropped = 0;
        while self.items.len() >= self.max_items || self.bytes + size > self.max_bytes {
            let Some((_, old)) = self.items.pop_front() else {
                break;
            };
            self.bytes -= old;
            dropped += 1;
        }
        self.items.push_back((item, size));
        self.bytes += size;
        self.dropped += dropped as u64;
        dropped
    }

    /// The oldest item.
    pub fn front(&self) -> Option<&T> {
        self.items.front().map(|(item, _)| item)
    }

    /// Removes the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        let (item, size) = self.items.pop_front()?;
        self.bytes -= size;
        Some(item)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Items dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// When to try again after failures: a pause doubling from `min` to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
    next: Option<Instant>,
}

impl Backoff {
    /// A backoff whose pauses grow from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            delay: min,
            next: None,
        }
    }

    /// A failure at `now`: the next attempt is one pause later, and the pause after it longer.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let pause = self.delay;
        self.next = Some(now + pause);
        self.delay = (self.delay * 2).min(self.max);
        pause
    }

    /// A success: no retry pending, the pause back to its minimum.
    pub fn succeeded(&mut self) {
        self.next = None;
        self.delay = self.min;
    }

    /// When the next attempt is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_drops_the_oldest_by_count_and_by_bytes() {
        let mut spool = Spool::new(3, 100);
        for n in 1..=3 {
            assert_eq!(spool.push(n, 10), 0);
        }
        assert_eq!(spool.push(4, 10), 1, "the count bound drops 1");
        assert_eq!(spool.front(), Some(&2));
        assert_eq!(spool.push(5, 85), 2, "the byte bound drops 2 and 3");
        assert_eq!((spool.len(), spool.bytes(), spool.dropped()), (2, 95, 3));
        assert_eq!(
            spool.push(6, 101),
            1,
            "larger than the spool: itself dropped"
        );
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.pop(), Some(4));
        assert_eq!(spool.pop(), Some(5));
        assert!(spool.is_empty() && spool.bytes() == 0);
    }

    #[test]
    fn the_pause_doubles_to_its_bound_and_resets_on_success() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(b.due(), None);
        let pauses: Vec<u64> = (0..5).map(|_| b.failed(now).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 5, 5]);
        assert_eq!(b.due(), Some(now + Duration::from_secs(5)));
        b.succeeded();
        assert_eq!(b.due(), None);
        assert_eq!(b.failed(now), Duration::from_secs(1));
    }
}
