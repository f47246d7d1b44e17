//! `spinlock_t` and `struct mutex`: a test-and-test-and-set lock, whose waiters spin,
//! yield and sleep ([`Backoff`]); a mutex's waiters sleep on the lock's own queue
//! instead, woken one at a time by the unlock, as a kernel mutex's do.

use crate::sched::{point, Site};
use crate::sync::waitq::WaitQueue;
use crate::sync::{holder, Backoff};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Where a lock's waiters sleep: nowhere of their own (a spin lock, `()`: the
/// backoff's fixed sleeps), or a [`WaitQueue`] (a mutex).
pub trait Waiters: Default + std::fmt::Debug {
    /// Sleeps while `blocked()`, if waiters sleep here; `false` if they do not.
    fn sleep(&self, blocked: impl Fn() -> bool) -> bool;
    /// Wakes one sleeper after a release.
    fn wake_one(&self);
}

impl Waiters for () {
    fn sleep(&self, _: impl Fn() -> bool) -> bool {
        false
    }
    fn wake_one(&self) {}
}

impl Waiters for WaitQueue {
    fn sleep(&self, blocked: impl Fn() -> bool) -> bool {
        WaitQueue::sleep(self, blocked);
        true
    }
    fn wake_one(&self) {
        WaitQueue::wake_one(self);
    }
}

/// A raw lock: `lock`/`unlock` in any code shape. A spin lock's `Q` is `()`, so it
/// is no larger than its two words (a queue in every page lock of the arena changed
/// hpt's timing: its rarest window fell by a fifth).
#[derive(Debug, Default)]
pub struct RawLock<Q: Waiters> {
    locked: AtomicBool,
    /// Ghost: the [`holder`] id of the thread holding it.
    holder: AtomicU32,
    /// A mutex's sleeping waiters.
    queue: Q,
}

/// A raw spin lock.
pub type RawSpinLock = RawLock<()>;

impl<Q: Waiters> RawLock<Q> {
    pub fn new() -> Self {
        RawLock {
            locked: AtomicBool::new(false),
            holder: AtomicU32::new(holder::NOBODY),
            queue: Q::default(),
        }
    }

    #[track_caller]
    pub fn try_lock(&self) -> bool {
        point(Site::new("spin.trylock"));
        let got = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if got {
            self.holder.store(holder::current(), Ordering::Relaxed);
        }
        got
    }

    #[track_caller]
    pub fn lock(&self) {
        let mut b = Backoff::new("spin.lock.wait");
        while !self.try_lock() {
            while self.locked.load(Ordering::Relaxed) {
                b.spin_or(|| self.queue.sleep(|| self.locked.load(Ordering::SeqCst)));
            }
        }
    }

    #[track_caller]
    pub fn unlock(&self) {
        self.unlock_at(std::panic::Location::caller());
    }

    /// [`unlock`](Self::unlock) whose step points at `loc`: a guard's drop passes the
    /// line that took the lock, so the trace names the model's call site rather
    /// than this file.
    fn unlock_at(&self, loc: &'static std::panic::Location<'static>) {
        point(Site {
            loc,
            ..Site::new("spin.unlock")
        });
        self.holder.store(holder::NOBODY, Ordering::Relaxed);
        // SeqCst, not just Release: a mutex's wake-up handshake ([`WaitQueue`]).
        let was = self.locked.swap(false, Ordering::SeqCst);
        debug_assert!(was, "unlock of an unlocked spinlock");
        self.queue.wake_one();
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    /// Who holds it (a [`holder`] id), if anyone: for checks and reports.
    pub fn holder(&self) -> Option<u32> {
        self.is_locked().then(|| self.holder.load(Ordering::Relaxed))
    }
}

/// A lock that owns the data it protects.
#[derive(Debug, Default)]
pub struct Lock<Q: Waiters, T> {
    raw: RawLock<Q>,
    data: std::sync::Mutex<T>,
}

/// A spin lock that owns the data it protects.
pub type SpinLock<T> = Lock<(), T>;

/// Holds a [`Lock`]; unlocks on drop.
pub struct Guard<'a, Q: Waiters, T> {
    raw: &'a RawLock<Q>,
    data: Option<std::sync::MutexGuard<'a, T>>,
    /// Where the lock was taken: the unlock step of the drop points there.
    taken_at: &'static std::panic::Location<'static>,
}

/// Holds a [`SpinLock`].
pub type SpinGuard<'a, T> = Guard<'a, (), T>;

impl<Q: Waiters, T> Lock<Q, T> {
    pub fn new(v: T) -> Self {
        Lock {
            raw: RawLock::new(),
            data: std::sync::Mutex::new(v),
        }
    }

    /// Who holds it (a [`holder`] id), if anyone.
    pub fn holder(&self) -> Option<u32> {
        self.raw.holder()
    }

    #[track_caller]
    pub fn lock(&self) -> Guard<'_, Q, T> {
        self.raw.lock();
        Guard {
            raw: &self.raw,
            data: Some(lock_uncontended(&self.data)),
            taken_at: std::panic::Location::caller(),
        }
    }
}

/// Takes a std mutex that an outer raw lock already serialises. A poisoned mutex
/// means a model panicked while holding it; the engine reports that panic, so the
/// data is still handed out for the state dump.
pub(crate) fn lock_uncontended<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<Q: Waiters, T> std::ops::Deref for Guard<'_, Q, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_ref().expect("guard holds data until drop")
    }
}

impl<Q: Waiters, T> std::ops::DerefMut for Guard<'_, Q, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data.as_mut().expect("guard holds data until drop")
    }
}

impl<Q: Waiters, T> Drop for Guard<'_, Q, T> {
    fn drop(&mut self) {
        self.data = None;
        self.raw.unlock_at(self.taken_at);
    }
}
