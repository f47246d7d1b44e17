//! The det scheduler's baton: who may run, and how the others wait for it.
//!
//! A switch is the det mode's unit of cost, so the handoff adapts to the machine:
//! a waiter *spins* on the baton while a core is free for it, and *parks* otherwise.
//! At most one spinner fewer than the cores, so the holder always keeps one. A holder
//! that passes the baton to a spinning thread (it has a core) spins for its own next
//! turn; one that had to wake a parked thread watches it for a moment: if it wakes
//! at once a core was idle and the old holder spins on, else the old holder parks at
//! once, giving its core to the new one (a direct context switch). So two threads on
//! two idle cores switch with a store and a load on one cache line.
//!
//! With more threads than cores nearly every switch goes to a parked thread, and a
//! futex wake that lands on another, idle core is the slow kind: the idle CPU (a
//! halted vCPU on a virtual machine) must be woken. A park/unpark ring of 16 threads
//! measured 10.6 µs a handoff on this 2-core VM spread over both cores, 3.1 µs with
//! every thread on one core (README, "Det handoff"). Only one thread of a det run
//! runs at a time, so such a run loses nothing by living on one core: its workers
//! pin themselves to the core the run started on, and never spin.
//!
//! Nothing here decides who runs (that is [`super::det`]'s strategy, under its
//! lock), so the spin/park/pin choices, which depend on timing, never change a
//! schedule.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::OnceLock;
use std::thread::Thread;

/// Spin iterations before a spinning waiter parks after all (the holder may run long
/// stretches between points: a deep check, a quiescent barrier).
const SPIN_LIMIT: u32 = 1 << 14;

/// The spin limit a zero budget probes with, every [`PROBE_EVERY`] waits.
const PROBE: u32 = 64;
const PROBE_EVERY: u32 = 64;

/// Spin iterations a waiter waits for a spinner's slot to free up.
const SLOT_WAIT: u32 = 1 << 6;

/// Spin iterations a holder that woke a parked thread waits for it to be running.
const WAKE_WATCH: u32 = 1 << 8;

/// Not any thread's index: the run hung, every waiter leaves.
const HUNG: usize = usize::MAX;

/// One waiter's parking spot.
struct Seat {
    thread: OnceLock<Thread>,
    parked: AtomicBool,
}

/// What the old holder knows of the thread it passed the baton to.
#[derive(Clone, Copy)]
pub(crate) enum Successor {
    /// It was spinning (it has a core), or there is no successor yet.
    Running,
    /// It was parked and has been woken.
    Woken(usize),
}

pub(crate) struct Baton {
    /// The thread that may run, or [`HUNG`].
    holder: AtomicUsize,
    seats: Vec<Seat>,
    spinners: AtomicUsize,
    max_spinners: usize,
    /// The core every worker pins itself to, when threads outnumber the cores.
    home: Option<usize>,
    /// Current spin limit: doubled by a spin that got the baton, quartered by one
    /// that gave up (on a loaded machine a spinner steals the holder's core, so the
    /// handoff degrades to parking).
    budget: AtomicU32,
    /// Waits so far, to probe with a short spin now and then once the budget is 0.
    waits: AtomicU32,
}

impl Baton {
    pub(crate) fn new(threads: usize, first: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // The core this run's coordinator is on now: det runs started side by side
        // (`hunt --jobs`) by threads that are running start on different cores.
        let home = (threads > cores)
            .then(|| nix::sched::sched_getcpu().ok())
            .flatten();
        Baton {
            holder: AtomicUsize::new(first),
            seats: (0..threads)
                .map(|_| Seat {
                    thread: OnceLock::new(),
                    parked: AtomicBool::new(false),
                })
                .collect(),
            spinners: AtomicUsize::new(0),
            max_spinners: if home.is_some() { 0 } else { cores - 1 },
            home,
            budget: AtomicU32::new(SPIN_LIMIT),
            waits: AtomicU32::new(0),
        }
    }

    /// Thread `me` is the calling OS thread (before its first wait); it moves to the
    /// run's home core if there is one. A failed pin (a cpuset without that core)
    /// leaves the thread where it was: slower handoffs, the same schedule.
    pub(crate) fn register(&self, me: usize) {
        let _ = self.seats[me].thread.set(std::thread::current());
        if let Some(cpu) = self.home {
            let mut set = nix::sched::CpuSet::new();
            if set.set(cpu).is_ok() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
        }
    }

    /// Gives the baton to `next`, waking it if it parked. Returns how the old holder
    /// should wait for its next turn.
    pub(crate) fn pass(&self, next: usize) -> Successor {
        self.holder.store(next, SeqCst);
        if self.wake(next) {
            Successor::Woken(next)
        } else {
            Successor::Running
        }
    }

    /// Ends the run: every waiter returns `false` from [`Baton::wait`].
    pub(crate) fn hang(&self) {
        self.holder.store(HUNG, SeqCst);
        for i in 0..self.seats.len() {
            self.wake(i);
        }
    }

    /// Unparks thread `i` if it parked; true if it did.
    fn wake(&self, i: usize) -> bool {
        // Pairs with `wait`: either it sees the new holder before parking, or this
        // sees `parked` (both SeqCst).
        if !self.seats[i].parked.load(SeqCst) {
            return false;
        }
        if let Some(t) = self.seats[i].thread.get() {
            t.unpark();
        }
        true
    }

    /// Whether woken thread `i` got a core within a short watch.
    fn got_core(&self, i: usize) -> bool {
        for _ in 0..WAKE_WATCH {
            if !self.seats[i].parked.load(SeqCst) {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Waits until `me` holds the baton (`true`) or the run hung (`false`).
    pub(crate) fn wait(&self, me: usize, successor: Successor) -> bool {
        // Pinned to one core, a woken thread gets it only once this one parks.
        let spin = self.max_spinners > 0
            && match successor {
                Successor::Running => true,
                Successor::Woken(next) => self.got_core(next),
            };
        if !(spin && self.spin(me)) {
            let seat = &self.seats[me];
            seat.parked.store(true, SeqCst);
            while !self.arrived(me) {
                std::thread::park();
            }
            seat.parked.store(false, SeqCst);
        }
        self.holder.load(SeqCst) == me
    }

    fn arrived(&self, me: usize) -> bool {
        let h = self.holder.load(SeqCst);
        h == me || h == HUNG
    }

    /// Spins for the baton if a core is free for a spinner; `true` if it arrived.
    fn spin(&self, me: usize) -> bool {
        // The spinner this thread just passed the baton to frees its slot a moment
        // after it sees the baton: wait that moment rather than park (at two threads
        // on two cores, parking here made every later handoff a futex wake).
        let mut tries = 0;
        while self
            .spinners
            .fetch_update(SeqCst, SeqCst, |n| (n < self.max_spinners).then_some(n + 1))
            .is_err()
        {
            if self.arrived(me) {
                return true;
            }
            tries += 1;
            if tries == SLOT_WAIT {
                return false;
            }
            std::hint::spin_loop();
        }
        let mut limit = self.budget.load(Relaxed);
        if limit == 0 && self.waits.fetch_add(1, Relaxed) % PROBE_EVERY == 0 {
            limit = PROBE;
        }
        let arrived = (0..limit).any(|_| {
            std::hint::spin_loop();
            self.arrived(me)
        });
        self.spinners.fetch_sub(1, SeqCst);
        let next = if arrived {
            (limit * 2).clamp(PROBE, SPIN_LIMIT)
        } else {
            limit / 4
        };
        self.budget.store(next, Relaxed);
        arrived
    }
}
