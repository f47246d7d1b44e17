//! Where a stress-mode waiter sleeps once spinning and yielding have not got it what
//! it waits for: a queue of its own resource, woken one sleeper at a time by the
//! release (`futex(2)`'s shape, as a kernel mutex's `wait_list`).
//!
//! A waiter that only slept for a fixed time stayed on the run queue every few
//! microseconds: with a thousand threads on two cores the thread it waited for got a
//! core back only after all of them had had theirs. A waiter on this queue is off the
//! run queue until the release. The handshake loses no wakeup: a sleeper registers
//! under the queue's lock and then looks at the resource, the releaser releases and
//! then looks for sleepers (all `SeqCst`), so one of the two sees the other; a
//! releaser that sees a sleeper takes the queue's lock, which waits until the sleeper
//! is inside its wait. Det mode never sleeps here: its waits are scheduler points.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The longest sleep without a wakeup (a safety net, not a poll: a release wakes).
const SLEEP_LIMIT: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct WaitQueue {
    /// Sleepers registered under `lock` before their last look at the resource.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl WaitQueue {
    pub(crate) const fn new() -> Self {
        WaitQueue {
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Sleeps until a [`WaitQueue::wake_one`], unless `blocked()` (a `SeqCst` look at
    /// the resource) is false once this sleeper is registered. The caller looks again,
    /// as after any wait.
    pub(crate) fn sleep(&self, blocked: impl Fn() -> bool) {
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleepers.fetch_add(1, SeqCst);
        let guard = if blocked() {
            self.wake
                .wait_timeout(guard, SLEEP_LIMIT)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        } else {
            guard
        };
        self.sleepers.fetch_sub(1, SeqCst);
        drop(guard);
    }

    /// Wakes one sleeper, if any: called after a `SeqCst` release of the resource.
    pub(crate) fn wake_one(&self) {
        if self.sleepers.load(SeqCst) != 0 {
            drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
            self.wake.notify_one();
        }
    }
}
