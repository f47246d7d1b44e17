//! Waiting for a condition another thread must make true.

use crate::sched::{det, stress, wait_point, Site};

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

    fn pause(&mut self, kind: det::Point) {
        self.rounds = self.rounds.saturating_add(1);
        if !wait_point(self.site, kind) {
            stress::backoff(self.rounds, crate::sched::crowd());
        }
    }

    /// How many failed attempts so far (coverage: a contended wait).
    pub fn rounds(&self) -> u32 {
        self.rounds
    }
}
