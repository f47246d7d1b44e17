//! Waiting for a condition another thread must make true.

use crate::sched::{det, stress, wait_point, Site};
use std::time::Duration;

/// Escalating wait for a condition another thread must make true.
///
/// Spins briefly, then yields, then sleeps, so that 64 workers on 2 cores never
/// livelock on each other's spin loops.
pub struct Backoff {
    site: Site,
    rounds: u32,
}

impl Backoff {
    #[track_caller]
    pub fn new(name: &'static str) -> Self {
        Backoff {
            site: Site::new(name),
            rounds: 0,
        }
    }

    /// One failed attempt: wait a little before the caller re-checks.
    pub fn spin(&mut self) {
        self.pause(det::Point::Wait);
    }

    /// `cond_resched()` in a retry loop: let others run, without claiming that this
    /// thread cannot go on by itself (its next attempt may succeed).
    pub fn yield_now(&mut self) {
        self.pause(det::Point::Yield);
    }

    /// A [`Backoff::spin`] whose sleep, where the stress backoff asks for one in a
    /// [`stress::CROWDED`] run, is `queue`: a wait on a queue that the release of the
    /// resource ends ([`super::Cpus`], a mutex). `queue` returns whether it waited (a
    /// spin lock has no queue): if not, the fixed sleep.
    ///
    /// A queue wakes one sleeper a release, so the waiters get the resource one wakeup
    /// after another; with a few threads a core, all of them looking again after a
    /// short sleep is quicker (hpt, 16 threads on 2 cores: with the queue for
    /// `kvm->lock` the resizer made ~60 % of its ops and the rarest window fell by a
    /// third, five alternating pairs), while with hundreds a core the looking again is
    /// what fills the run queue (hpt, 1024 threads: 30 k ops/s polling, 690 k queued;
    /// hash-protect, whose CPUs' claims are mutexes: 25 ops/s polling, 14,534 queued,
    /// both before crowded runs injected less).
    pub(crate) fn spin_or(&mut self, queue: impl FnOnce() -> bool) {
        if let Some(nap) = self.round(det::Point::Wait) {
            if !crate::sched::crowded() || !queue() {
                std::thread::sleep(nap);
            }
        }
    }

    fn pause(&mut self, kind: det::Point) {
        if let Some(nap) = self.round(kind) {
            std::thread::sleep(nap);
        }
    }

    /// One failed attempt: a det scheduling point, or the stress backoff's spin or
    /// yield, and the sleep it asks for (returned).
    fn round(&mut self, kind: det::Point) -> Option<Duration> {
        self.rounds = self.rounds.saturating_add(1);
        if wait_point(self.site, kind) {
            None
        } else {
            stress::backoff(self.rounds, crate::sched::crowd())
        }
    }

    /// How many failed attempts so far (coverage: a contended wait).
    pub fn rounds(&self) -> u32 {
        self.rounds
    }
}
