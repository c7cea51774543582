//! A memory budget, in bytes, shared by every decode in the process.
//!
//! The decode concurrency bounds how many images are decoded at once, but not how much memory
//! they take: one 50-megapixel 16-bit PNG needs hundreds of megabytes before it is resized,
//! and a 1 GB device cannot hold several. So each decode first estimates, from the image
//! header alone, the bytes it will hold at its peak (decoder output plus the conversion to
//! 8-bit RGB), then reserves them here before allocating anything:
//!
//! * an estimate larger than the whole budget can never fit → [`BudgetError::NeverFits`]
//!   (the HTTP layer answers 413, like any other too-large image);
//! * otherwise the decode waits until enough of the budget is free, at most `max_wait`, and
//!   then gives up → [`BudgetError::Busy`] (503 with `Retry-After`).
//!
//! Waiting is a plain `Mutex` + `Condvar`: decodes run on blocking threads, never on the async
//! runtime. Waiters are woken whenever memory is returned; there is no queue order, so under a
//! steady stream of small images a large one may wait its full `max_wait` and get 503 — the
//! bounded answer the client can retry.
//!
//! The total can be changed while the service runs ([`DecodeBudget::set_total`]): a budget
//! derived from the memory limit is set again once the workers have warmed up and the memory
//! they took is known. Decodes already holding memory keep it; waiters see the new total.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bytes available to all concurrent decodes, and how long one decode may wait for them.
#[derive(Debug)]
pub struct DecodeBudget {
    total: AtomicU64,
    max_wait: Duration,
    in_use: Mutex<u64>,
    returned: Condvar,
}

/// Why a decode may not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The image alone needs more than the whole budget.
    #[error(
        "decoding this image needs about {} MiB, more than the decode memory budget of {} MiB",
        mib(*needed),
        mib(*total)
    )]
    NeverFits {
        /// Estimated bytes.
        needed: u64,
        /// The budget.
        total: u64,
    },
    /// Other decodes held too much of the budget for longer than the allowed wait.
    #[error(
        "decoding this image needs about {} MiB and other images held the decode memory budget \
         for {} ms; try again shortly",
        mib(*needed),
        waited.as_millis()
    )]
    Busy {
        /// Estimated bytes.
        needed: u64,
        /// How long the decode waited.
        waited: Duration,
    },
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl DecodeBudget {
    /// A budget of `total` bytes; a decode waits at most `max_wait` for its share.
    pub fn new(total: u64, max_wait: Duration) -> Self {
        Self {
            total: AtomicU64::new(total),
            max_wait,
            in_use: Mutex::new(0),
            returned: Condvar::new(),
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Changes the budget; waiting decodes are woken to look at it again.
    pub fn set_total(&self, total: u64) {
        // Under the lock, so that no waiter checks the old total and then misses the wake-up.
        let _in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        self.total.store(total, Ordering::Relaxed);
        self.returned.notify_all();
    }

    /// The longest a decode waits for memory.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Bytes currently reserved by decodes in progress.
    pub fn in_use(&self) -> u64 {
        *self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until `bytes` are free (at most `max_wait`) and reserves them until the returned
    /// guard is dropped.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation<'_>, BudgetError> {
        let total = self.total();
        if bytes > total {
            return Err(BudgetError::NeverFits {
                needed: bytes,
                total,
            });
        }
        let started = Instant::now();
        let deadline = started + self.max_wait;
        // A panic elsewhere while holding the lock cannot leave the count half-updated: every
        // critical section is a single addition or subtraction.
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        while *in_use + bytes > self.total() {
            let now = Instant::now();
            if now >= deadline {
                return Err(BudgetError::Busy {
                    needed: bytes,
                    waited: started.elapsed(),
                });
            }
            in_use = self
                .returned
                .wait_timeout(in_use, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *in_use += bytes;
        Ok(Reservation {
            budget: self,
            bytes,
        })
    }
}

/// Memory reserved for one decode; returned to the budget when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a DecodeBudget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut in_use = self
            .budget
            .in_use
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *in_use -= self.bytes;
        drop(in_use);
        self.budget.returned.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn too_big_for_the_whole_budget_is_refused_at_once() {
        let budget = DecodeBudget::new(100, Duration::from_secs(3600));
        let err = budget.reserve(101).unwrap_err();
        assert_eq!(
            err,
            BudgetError::NeverFits {
                needed: 101,
                total: 100
            }
        );
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn reservations_add_up_and_are_returned() {
        let budget = DecodeBudget::new(100, Duration::ZERO);
        let a = budget.reserve(60).unwrap();
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        // Full: with no wait allowed, the next one is refused as busy.
        assert!(matches!(budget.reserve(1), Err(BudgetError::Busy { .. })));
        drop(a);
        let c = budget.reserve(60).unwrap();
        drop((b, c));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_waiting_decode_starts_when_memory_is_returned() {
        // The wait is effectively unbounded, so the waiter can only succeed because the
        // holder's drop woke it.
        let budget = Arc::new(DecodeBudget::new(100, Duration::from_secs(3600)));
        let held = budget.reserve(80).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                budget.reserve(50).map(|r| r.bytes)
            })
        };
        started_rx.recv().unwrap();
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(50));
        assert_eq!(budget.in_use(), 0);
    }
}
