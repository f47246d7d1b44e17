//! `spinlock_t`: a test-and-test-and-set lock.

use crate::sched::{point, Site};
use crate::sync::{holder, Backoff};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A raw spin lock: `lock`/`unlock` in any code shape.
#[derive(Debug, Default)]
pub struct RawSpinLock {
    locked: AtomicBool,
    /// Ghost: the [`holder`] id of the thread holding it.
    holder: AtomicU32,
}

impl RawSpinLock {
    pub const fn new() -> Self {
        RawSpinLock {
            locked: AtomicBool::new(false),
            holder: AtomicU32::new(holder::NOBODY),
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
                b.spin();
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
        let was = self.locked.swap(false, Ordering::Release);
        debug_assert!(was, "unlock of an unlocked spinlock");
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    /// Who holds it (a [`holder`] id), if anyone: for checks and reports.
    pub fn holder(&self) -> Option<u32> {
        self.is_locked().then(|| self.holder.load(Ordering::Relaxed))
    }
}

/// A spin lock that owns the data it protects.
#[derive(Debug, Default)]
pub struct SpinLock<T> {
    raw: RawSpinLock,
    data: std::sync::Mutex<T>,
}

/// Holds a [`SpinLock`]; unlocks on drop.
pub struct SpinGuard<'a, T> {
    raw: &'a RawSpinLock,
    data: Option<std::sync::MutexGuard<'a, T>>,
    /// Where the lock was taken: the unlock step of the drop points there.
    taken_at: &'static std::panic::Location<'static>,
}

impl<T> SpinLock<T> {
    pub fn new(v: T) -> Self {
        SpinLock {
            raw: RawSpinLock::new(),
            data: std::sync::Mutex::new(v),
        }
    }

    /// Who holds it (a [`holder`] id), if anyone.
    pub fn holder(&self) -> Option<u32> {
        self.raw.holder()
    }

    #[track_caller]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw.lock();
        SpinGuard {
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

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_ref().expect("guard holds data until drop")
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data.as_mut().expect("guard holds data until drop")
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.data = None;
        self.raw.unlock_at(self.taken_at);
    }
}
