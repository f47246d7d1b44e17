//! Det-mode strategies: who runs after each scheduling point.
//!
//! A strategy only *chooses*; the baton passing is in [`super::det`]. Every choice that
//! differs from the [`default_choice`] is recorded as a [`Decision`], so a run's
//! decision list is its schedule: replaying those decisions (the [`Strategy::Replay`]
//! strategy) reproduces the run exactly without the generating strategy, and dropping
//! some of them is how `shrink` removes preemptions.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How a det run chooses, as saved in `schedule.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StrategySpec {
    /// At each point, switch with probability `switch_prob` to a uniformly chosen
    /// runnable thread (possibly the same one).
    Random { switch_prob: f64 },
    /// PCT with bug depth `depth` over an estimated `steps` scheduling points.
    Pct { depth: u32, steps: u64 },
    /// Follow a recorded decision list (replay and shrink).
    Replay { decisions: Vec<Decision> },
}

/// One recorded choice: at the `choice`-th scheduling decision of the run, thread
/// `thread` ran next although the default choice was another thread. Keyed by the
/// decision's index, not the step number: a thread's last point and its exit are two
/// decisions at the same step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub choice: u64,
    pub thread: usize,
}

/// What a strategy sees at a choice: its index among the run's choices, the step
/// number, the thread that just ran (if any), and the runnable threads in index order
/// (never empty).
pub struct Choice<'a> {
    pub index: u64,
    pub step: u64,
    pub current: Option<usize>,
    pub runnable: &'a [usize],
}

impl Choice<'_> {
    fn current_runnable(&self) -> Option<usize> {
        self.current.filter(|c| self.runnable.contains(c))
    }
}

/// Keep running the current thread if it can; otherwise the next runnable thread in
/// cyclic index order (round robin, so spinning waiters all get their turn).
pub fn default_choice(c: &Choice) -> usize {
    if let Some(cur) = c.current_runnable() {
        return cur;
    }
    let from = c.current.map_or(0, |x| x + 1);
    c.runnable
        .iter()
        .copied()
        .find(|&t| t >= from)
        .unwrap_or(c.runnable[0])
}

/// A live strategy.
pub enum Strategy {
    Random { rng: Rng, p: f64 },
    Pct(Pct),
    Replay { decisions: Vec<Decision>, next: usize },
}

impl Strategy {
    pub fn new(spec: &StrategySpec, threads: usize, rng: Rng) -> Self {
        match spec {
            StrategySpec::Random { switch_prob } => Strategy::Random { rng, p: *switch_prob },
            StrategySpec::Pct { depth, steps } => Strategy::Pct(Pct::new(threads, *depth, *steps, rng)),
            StrategySpec::Replay { decisions } => Strategy::Replay {
                decisions: decisions.clone(),
                next: 0,
            },
        }
    }

    pub fn choose(&mut self, c: &Choice) -> usize {
        match self {
            Strategy::Random { rng, p } => match c.current_runnable() {
                Some(cur) if !rng.chance(*p) => cur,
                _ => c.runnable[rng.index(c.runnable.len())],
            },
            Strategy::Pct(p) => p.choose(c),
            Strategy::Replay { decisions, next } => {
                while decisions.get(*next).is_some_and(|d| d.choice < c.index) {
                    *next += 1;
                }
                match decisions.get(*next) {
                    Some(d) if d.choice == c.index && c.runnable.contains(&d.thread) => {
                        *next += 1;
                        d.thread
                    }
                    _ => default_choice(c),
                }
            }
        }
    }
}

/// Probabilistic Concurrency Testing (Burckhardt et al., ASPLOS 2010): distinct random
/// initial priorities, `depth - 1` priority-change points uniform over the estimated
/// step count; always run the highest-priority runnable thread, and at a change point
/// drop the running thread below every initial priority. A bug of depth `d` is found
/// with probability at least 1/(n·k^(d−1)).
pub struct Pct {
    prio: Vec<u64>,
    /// Sorted change points (step numbers).
    changes: Vec<u64>,
    next_change: usize,
}

impl Pct {
    fn new(threads: usize, depth: u32, steps: u64, mut rng: Rng) -> Self {
        let d = u64::from(depth.max(1));
        // Initial priorities d..d+n in a random order (Fisher–Yates).
        let mut prio: Vec<u64> = (0..threads as u64).map(|i| d + i).collect();
        for i in (1..prio.len()).rev() {
            let j = rng.index(i + 1);
            prio.swap(i, j);
        }
        let mut changes: Vec<u64> = (1..d).map(|_| 1 + rng.below(steps.max(1))).collect();
        changes.sort_unstable();
        Pct {
            prio,
            changes,
            next_change: 0,
        }
    }

    fn choose(&mut self, c: &Choice) -> usize {
        while let Some(&cp) = self.changes.get(self.next_change) {
            if cp > c.step {
                break;
            }
            if cp == c.step {
                if let Some(cur) = c.current {
                    // The i-th change point lowers to d-1-i: below all initial ones,
                    // and each later change lower still.
                    self.prio[cur] = (self.changes.len() - self.next_change) as u64 - 1;
                }
            }
            self.next_change += 1;
        }
        *c.runnable
            .iter()
            .max_by_key(|&&t| self.prio[t])
            .expect("runnable is never empty")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn default_keeps_the_runner_then_goes_round_robin() {
        let c = Choice {
            index: 0,
            step: 1,
            current: Some(1),
            runnable: &[0, 1, 2],
        };
        assert_eq!(default_choice(&c), 1);
        let c = Choice {
            index: 0,
            step: 1,
            current: Some(1),
            runnable: &[0, 2],
        };
        assert_eq!(default_choice(&c), 2);
        let c = Choice {
            index: 0,
            step: 1,
            current: Some(2),
            runnable: &[0, 1],
        };
        assert_eq!(default_choice(&c), 0);
    }

    #[test]
    fn pct_runs_the_highest_priority_and_demotes_at_change_points() {
        let mut p = Pct::new(3, 2, 10, Rng::stream(1, Stream::Schedule, 0));
        let top = (0..3).max_by_key(|&t| p.prio[t]).unwrap();
        let cp = p.changes[0];
        let all = [0, 1, 2];
        let mk = |step| Choice {
            index: step,
            step,
            current: Some(top),
            runnable: &all,
        };
        for s in 1..cp {
            assert_eq!(p.choose(&mk(s)), top);
        }
        assert_ne!(p.choose(&mk(cp)), top, "demoted at the change point");
    }
}
