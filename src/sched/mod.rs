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

use std::cell::{Cell, RefCell};
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
    /// Points a plain / a window site may pass before the next one takes the slow
    /// path ([`slow_point`]): a stress injector's geometric skip counts, 0 in det
    /// mode (every point is a step), `u64::MAX` without a mode. Plain `Cell`s
    /// without a destructor, so the fast path is one thread-local load, a compare
    /// and a store: a point sits before every atomic access of every model.
    static PLAIN_LEFT: Cell<u64> = const { Cell::new(u64::MAX) };
    static WINDOW_LEFT: Cell<u64> = const { Cell::new(u64::MAX) };
    /// The thread runs under a det scheduler (gates [`op`]).
    static DET: Cell<bool> = const { Cell::new(false) };
    /// Threads per core of this stress worker's run ([`stress::crowd`]).
    static CROWD: Cell<u64> = const { Cell::new(1) };
    /// This stress worker's run is [`stress::CROWDED`].
    static CROWDED: Cell<bool> = const { Cell::new(false) };
}

/// Which skip counter a site class uses.
fn left(window: bool) -> &'static std::thread::LocalKey<Cell<u64>> {
    if window {
        &WINDOW_LEFT
    } else {
        &PLAIN_LEFT
    }
}

/// Installs `mode` for the current thread (a torture worker) until the guard drops.
pub fn enter(mode: Mode) -> ModeGuard {
    let (plain, window, det, crowd, crowded) = match &mode {
        Mode::Stress(inj) => (
            inj.first_gap(false),
            inj.first_gap(true),
            false,
            inj.crowd(),
            inj.crowded(),
        ),
        Mode::Det(_) => (0, 0, true, 1, false),
    };
    CROWD.with(|c| c.set(crowd));
    CROWDED.with(|c| c.set(crowded));
    PLAIN_LEFT.with(|c| c.set(plain));
    WINDOW_LEFT.with(|c| c.set(window));
    DET.with(|c| c.set(det));
    MODE.with(|m| *m.borrow_mut() = Some(mode));
    ModeGuard(())
}

/// Clears the thread's mode on drop.
pub struct ModeGuard(());

impl Drop for ModeGuard {
    fn drop(&mut self) {
        MODE.with(|m| *m.borrow_mut() = None);
        PLAIN_LEFT.with(|c| c.set(u64::MAX));
        WINDOW_LEFT.with(|c| c.set(u64::MAX));
        DET.with(|c| c.set(false));
        CROWD.with(|c| c.set(1));
        CROWDED.with(|c| c.set(false));
    }
}

/// Threads per core of this stress worker's run (1 outside one).
pub(crate) fn crowd() -> u64 {
    CROWD.with(Cell::get)
}

/// This stress worker's run is [`stress::CROWDED`] (false outside one).
pub(crate) fn crowded() -> bool {
    CROWDED.with(Cell::get)
}

/// A preemption point: another thread may run here.
///
/// The fast path only counts down the site class's skip count; the count reaching
/// zero (a stress delay is due, or det mode, where it stays zero) takes the slow path.
#[inline]
pub fn point(site: Site) {
    let left = left(site.window);
    let n = left.with(Cell::get);
    if n > 0 {
        left.with(|c| c.set(n - 1));
    } else {
        slow_point(&site);
    }
}

/// A point whose skip count ran out: a det step, or a stress delay and the next gap.
#[cold]
#[inline(never)]
fn slow_point(site: &Site) {
    MODE.with(|m| match m.borrow_mut().as_mut() {
        Some(Mode::Stress(inj)) => {
            let gap = inj.fire(site.window);
            left(site.window).with(|c| c.set(gap));
        }
        Some(Mode::Det(h)) => h.det.step(h.idx, site, det::Point::Plain),
        // No torture mode on this thread: never come back here.
        None => left(site.window).with(|c| c.set(u64::MAX)),
    });
}

/// A failed wait or a yield. Returns true if a det scheduler took it (the caller
/// must not also back off in real time: the scheduler already ran someone else).
pub(crate) fn wait_point(site: Site, kind: det::Point) -> bool {
    if !DET.with(Cell::get) {
        // Stress: a plain point (it may inject a delay); no mode: nothing.
        point(site);
        return false;
    }
    MODE.with(|m| {
        if let Some(Mode::Det(h)) = m.borrow_mut().as_mut() {
            h.det.step(h.idx, &site, kind);
        }
    });
    true
}

/// Tells a det scheduler which op the current thread is in (`None`: between ops);
/// the end of an op is progress for livelock detection. No-op in other modes.
pub fn op(name: Option<&'static str>) {
    if !DET.with(Cell::get) {
        return;
    }
    MODE.with(|m| {
        if let Some(Mode::Det(h)) = m.borrow().as_ref() {
            h.det.op(h.idx, name);
        }
    });
}
