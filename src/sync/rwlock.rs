//! `rwlock_t`: many readers or one writer, with writer preference.
//!
//! A waiting writer sets `WAITING` so that new readers hold off, as the queued rwlock
//! does; otherwise a stream of readers (the gpc reader pattern) could starve the
//! refresh path forever and the watchdog would report a false hang.
//!
//! Waiters poll the state with plain loads between [`Backoff::spin`]s and retry the
//! CAS only once the lock looks free, like a test-and-test-and-set spin lock. That is
//! also what the det scheduler needs: a failed `try_*` is a point that may have
//! changed state, so waiters retrying it in a loop would look like progress to each
//! other forever (a livelock of two waiters while the holder never runs).

use crate::sched::{point, Site};
use crate::sync::{holder, Backoff};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const WRITER: u64 = 1 << 63;
const WAITING: u64 = 1 << 62;
const READERS: u64 = WAITING - 1;

#[derive(Debug, Default)]
pub struct RawRwLock {
    state: AtomicU64,
    /// Ghost: the [`holder`] id of the writer.
    writer: AtomicU32,
    /// Ghost: a bit per reader's [`holder`] id ([`holder::bit`]).
    readers: AtomicU64,
}

impl RawRwLock {
    pub const fn new() -> Self {
        RawRwLock {
            state: AtomicU64::new(0),
            writer: AtomicU32::new(holder::NOBODY),
            readers: AtomicU64::new(0),
        }
    }

    #[track_caller]
    pub fn try_read_lock(&self) -> bool {
        point(Site::new("rwlock.try_read"));
        let s = self.state.load(Ordering::Relaxed);
        let got = s & (WRITER | WAITING) == 0
            && self
                .state
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        if got {
            self.readers
                .fetch_or(holder::bit(holder::current()), Ordering::Relaxed);
        }
        got
    }

    #[track_caller]
    pub fn read_lock(&self) {
        let mut b = Backoff::new("rwlock.read.wait");
        while !self.try_read_lock() {
            while self.state.load(Ordering::Relaxed) & (WRITER | WAITING) != 0 {
                b.spin();
            }
        }
    }

    #[track_caller]
    pub fn read_unlock(&self) {
        point(Site::new("rwlock.read_unlock"));
        self.readers
            .fetch_and(!holder::bit(holder::current()), Ordering::Relaxed);
        let prev = self.state.fetch_sub(1, Ordering::Release);
        debug_assert!(prev & READERS != 0, "read_unlock without readers");
    }

    #[track_caller]
    pub fn try_write_lock(&self) -> bool {
        point(Site::new("rwlock.try_write"));
        let s = self.state.load(Ordering::Relaxed);
        let got = s & (WRITER | READERS) == 0
            && self
                .state
                .compare_exchange(s, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        if got {
            self.writer.store(holder::current(), Ordering::Relaxed);
        }
        got
    }

    #[track_caller]
    pub fn write_lock(&self) {
        let mut b = Backoff::new("rwlock.write.wait");
        while !self.try_write_lock() {
            self.state.fetch_or(WAITING, Ordering::Relaxed);
            while self.state.load(Ordering::Relaxed) & (WRITER | READERS) != 0 {
                b.spin();
            }
        }
    }

    #[track_caller]
    pub fn write_unlock(&self) {
        point(Site::new("rwlock.write_unlock"));
        self.writer.store(holder::NOBODY, Ordering::Relaxed);
        let prev = self.state.swap(0, Ordering::Release);
        debug_assert!(prev & WRITER != 0, "write_unlock without the writer");
    }

    /// Readers currently inside (for invariant checks; no preemption point).
    pub fn readers(&self) -> u64 {
        self.state.load(Ordering::SeqCst) & READERS
    }

    pub fn is_write_locked(&self) -> bool {
        self.state.load(Ordering::SeqCst) & WRITER != 0
    }

    /// Who holds it, from the ghost record: `held for write by worker 2`,
    /// `held for read by workers 1, 4`, or `free`.
    pub fn holders(&self) -> String {
        if self.is_write_locked() {
            format!(
                "held for write by {}",
                holder::describe(self.writer.load(Ordering::Relaxed))
            )
        } else if self.readers() != 0 {
            format!(
                "held for read by {}",
                holder::describe_mask(self.readers.load(Ordering::Relaxed))
            )
        } else {
            "free".to_string()
        }
    }
}
