//! The stutter barrier: park every worker between operations for a deep check.
//!
//! Like rcutorture's `stutter_wait()`, but the point is the check, not the pause: a
//! quiescent invariant (Q1–Q3 of the HPT spec, Q1–Q4 of pfncache) is only meaningful
//! when no operation is half done. The last worker to park runs the check, so the
//! barrier needs no controller thread and works under any scheduler; a worker that
//! leaves for good (budget spent, stop requested) counts as parked.

use crate::sync::Backoff;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
struct State {
    requested: bool,
    parked: usize,
    active: usize,
    epoch: u64,
}

pub struct Stutter {
    /// Fast-path flag read between every two ops.
    flag: AtomicBool,
    /// [`State::epoch`], for parked workers to poll without the lock (1024 workers
    /// polling one mutex spent their time in its futex).
    released: AtomicU64,
    state: Mutex<State>,
    /// Stress mode: parked workers sleep here until the release. A parked worker
    /// that yielded instead took the core from the ones still finishing their op
    /// (at 1024 workers on 2 cores, most of the run went into those yields). Det
    /// mode waits through [`Backoff`]: the scheduler must run the others.
    wake: Option<Condvar>,
}

impl Stutter {
    pub fn new(workers: usize, det: bool) -> Self {
        Stutter {
            flag: AtomicBool::new(false),
            released: AtomicU64::new(0),
            wake: (!det).then(Condvar::new),
            state: Mutex::new(State {
                active: workers,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks every worker to park at its next op boundary.
    pub fn request(&self) {
        let mut s = self.state();
        if s.active > 0 {
            s.requested = true;
            self.flag.store(true, Ordering::Release);
        }
    }

    pub fn pending(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Called between ops when [`pending`](Self::pending): parks until the check ran.
    /// The last worker to arrive runs `check` and releases the others.
    pub fn park(&self, check: &mut dyn FnMut()) {
        let mut s = self.state();
        if !s.requested {
            return;
        }
        s.parked += 1;
        if s.parked == s.active {
            drop(s);
            self.run_and_release(check);
            return;
        }
        let epoch = s.epoch;
        if let Some(cv) = &self.wake {
            while s.epoch == epoch {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            return;
        }
        drop(s);
        let mut b = Backoff::new("stutter.parked");
        while self.released.load(Ordering::Acquire) == epoch {
            b.spin();
        }
    }

    /// A worker stops for good; if it was the last one the others waited for, it runs
    /// the check.
    pub fn leave(&self, check: &mut dyn FnMut()) {
        let mut s = self.state();
        s.active -= 1;
        if s.requested && s.parked == s.active && s.active > 0 {
            drop(s);
            self.run_and_release(check);
        }
    }

    fn run_and_release(&self, check: &mut dyn FnMut()) {
        check();
        let mut s = self.state();
        s.requested = false;
        s.parked = 0;
        s.epoch += 1;
        self.flag.store(false, Ordering::Release);
        self.released.store(s.epoch, Ordering::Release);
        if let Some(cv) = &self.wake {
            cv.notify_all();
        }
    }
}
