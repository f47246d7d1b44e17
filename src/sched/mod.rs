//! Preemption points: the one hook between the models and the scheduler.
//!
//! Models and the `sync` primitives call [`point`] wherever another CPU could act
//! between two steps of a protocol (every atomic access of the facade, every lock
//! operation, and the explicit race windows a spec lists). A waiter whose condition
//! is still false calls [`Backoff::spin`](crate::sync::Backoff::spin) instead, which tells the scheduler that this
//! thread cannot make progress by itself.
//!
//! What a point *does* depends on the thread's [`Mode`]:
//! - outside a torture worker (unit tests, the main thread): nothing;
//! - stress: a seeded draw may inject a spin, a yield or a short sleep, with a higher
//!   probability at race-window sites ([`Site::window`]) — see [`stress`];
//! - det: the thread records the step and hands the baton to whoever the seeded
//!   strategy picks — see [`det`].

mod baton;
pub mod det;
pub mod strategy;
pub mod stress;

use std::cell::RefCell;
use std::panic::Location;

/// What the access a point guards does to shared state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read (`atomic.load`): changes nothing, so the det scheduler does not count
    /// it as progress that a blocked waiter should re-check.
    Read,
    /// Anything that may change shared state (a store, an RMW, a lock operation, a
    /// named step of a protocol).
    Effect,
}

/// Where a preemption point is: a stable name (used in traces and schedules), the
/// source location, whether a spec marks it as a race window, and what the guarded
/// access does.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    pub name: &'static str,
    pub window: bool,
    pub access: Access,
    pub loc: &'static Location<'static>,
}

impl Site {
    #[track_caller]
    pub fn new(name: &'static str) -> Self {
        Site {
            name,
            window: false,
            access: Access::Effect,
            loc: Location::caller(),
        }
    }

    /// A point before a read of shared state (see [`Access::Read`]).
    #[track_caller]
    pub fn read(name: &'static str) -> Self {
        Site {
            access: Access::Read,
            ..Site::new(name)
        }
    }

    /// A site that a spec names as a race window: stress mode injects delays here more often.
    #[track_caller]
    pub fn window(name: &'static str) -> Self {
        Site {
            window: true,
            ..Site::new(name)
        }
    }
}

/// A plain preemption point named `$name`.
#[macro_export]
macro_rules! point {
    ($name:expr) => {
        $crate::sync::point($crate::sync::Site::new($name))
    };
}

/// A race-window preemption point named `$name`.
#[macro_export]
macro_rules! window {
    ($name:expr) => {
        $crate::sync::point($crate::sync::Site::window($name))
    };
}

/// The scheduling regime of the current thread.
pub enum Mode {
    Stress(stress::Injector),
    Det(det::Handle),
}

thread_local! {
    static MODE: RefCell<Option<Mode>> = const { RefCell::new(None) };
}

/// Installs `mode` for the current thread (a torture worker) until the guard drops.
pub fn enter(mode: Mode) -> ModeGuard {
    MODE.with(|m| *m.borrow_mut() = Some(mode));
    ModeGuard(())
}

/// Clears the thread's mode on drop.
pub struct ModeGuard(());

impl Drop for ModeGuard {
    fn drop(&mut self) {
        MODE.with(|m| *m.borrow_mut() = None);
    }
}

/// A preemption point: another thread may run here.
#[inline]
pub fn point(site: Site) {
    MODE.with(|m| {
        if let Some(mode) = m.borrow_mut().as_mut() {
            match mode {
                Mode::Stress(inj) => inj.point(&site),
                Mode::Det(h) => h.det.step(h.idx, &site, det::Point::Plain),
            }
        }
    });
}

/// A failed wait or a yield. Returns true if a det scheduler took it (the caller
/// must not also back off in real time: the scheduler already ran someone else).
pub(crate) fn wait_point(site: Site, kind: det::Point) -> bool {
    MODE.with(|m| match m.borrow_mut().as_mut() {
        Some(Mode::Det(h)) => {
            h.det.step(h.idx, &site, kind);
            true
        }
        Some(Mode::Stress(inj)) => {
            inj.point(&site);
            false
        }
        None => false,
    })
}

/// Tells a det scheduler which op the current thread is in (`None`: between ops);
/// the end of an op is progress for livelock detection. No-op in other modes.
pub fn op(name: Option<&'static str>) {
    MODE.with(|m| {
        if let Some(Mode::Det(h)) = m.borrow().as_ref() {
            h.det.op(h.idx, name);
        }
    });
}
