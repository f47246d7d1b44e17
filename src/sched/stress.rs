//! Stress mode: real threads run freely; points inject seeded delays.
//!
//! The injection decision (whether, and which delay) is drawn from the worker's own
//! [`Stream::Delays`](crate::rng::Stream) stream, so a seed fixes every worker's
//! decisions; the OS still picks the interleaving, so a stress failure reproduces
//! only probabilistically (`replay --times N` measures how often).
//!
//! A point is on every hot path (each atomic and lock operation of a model), so it
//! does not draw per point: each site class keeps a count of points to skip before
//! its next delay, drawn from the geometric distribution of the gap between
//! successes of a per-point Bernoulli(`p`) trial. Same injected process, one
//! decrement per point.

use crate::rng::Rng;
use std::time::Duration;

/// How a run injects delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Injection {
    /// Probability of a delay at a plain point (0 turns injection off).
    pub prob: f64,
    /// Race windows inject with `prob * window_boost` (capped at 0.5).
    pub window_boost: f64,
}

impl Injection {
    /// The default: a delay at 1 % of plain points and 20 % of race windows.
    pub const DEFAULT: Injection = Injection {
        prob: 0.01,
        window_boost: 20.0,
    };

    /// A candidate default measured side by side by `bench`: the same rate at race
    /// windows, a fifth of it at plain points. Not the default: on pfncache it
    /// detected several race variants later (the README's performance section).
    pub const CANDIDATE: Injection = Injection {
        prob: 0.002,
        window_boost: 100.0,
    };

    /// Injection off.
    pub fn off(self) -> Injection {
        Injection { prob: 0.0, ..self }
    }
}

/// Points left to skip before the next delay, for one class of sites (`left` is
/// the first count; the thread-local fast path of [`super::point`] counts it down).
#[derive(Clone, Copy)]
struct Gap {
    left: u64,
    /// `ln(1 - p)`; 0 when `p` is 0 (never inject).
    log_q: f64,
    p: f64,
}

impl Gap {
    fn new(p: f64, rng: &mut Rng) -> Self {
        let mut g = Gap {
            left: 0,
            log_q: (1.0 - p).ln(),
            p,
        };
        g.left = g.draw(rng);
        g
    }

    /// Points before the next success of Bernoulli(`p`) trials (inverse CDF of
    /// the geometric distribution).
    fn draw(&self, rng: &mut Rng) -> u64 {
        if self.p <= 0.0 {
            return u64::MAX;
        }
        if self.p >= 1.0 {
            return 0;
        }
        // u uniform in (0, 1].
        let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let k = u.ln() / self.log_q;
        if k >= u64::MAX as f64 {
            u64::MAX
        } else {
            k as u64
        }
    }
}

/// Per-worker delay injector.
pub struct Injector {
    rng: Rng,
    plain: Gap,
    window: Gap,
}

impl Injector {
    pub fn new(mut rng: Rng, inj: Injection) -> Self {
        let window_prob = (inj.prob * inj.window_boost).min(0.5);
        Injector {
            plain: Gap::new(inj.prob, &mut rng),
            window: Gap::new(window_prob, &mut rng),
            rng,
        }
    }

    /// The skip count of a site class before its first delay.
    pub fn first_gap(&self, window: bool) -> u64 {
        self.gap(window).left
    }

    fn gap(&self, window: bool) -> &Gap {
        if window {
            &self.window
        } else {
            &self.plain
        }
    }

    /// A point of the class whose skip count ran out: inject a delay, and return
    /// the next skip count (the fast path in [`super::point`] counts it down).
    pub fn fire(&mut self, window: bool) -> u64 {
        let gap = *self.gap(window);
        let next = gap.draw(&mut self.rng);
        self.delay();
        next
    }

    /// A spin (half the time), a yield, or a short sleep: three very different
    /// lengths, because races need windows from nanoseconds to a scheduler tick.
    #[cold]
    fn delay(&mut self) {
        match self.rng.below(100) {
            0..=49 => {
                for _ in 0..self.rng.below(2000) {
                    std::hint::spin_loop();
                }
            }
            50..=89 => std::thread::yield_now(),
            _ => std::thread::sleep(Duration::from_micros(5 + self.rng.below(50))),
        }
    }
}

/// The wait after the `rounds`-th failed attempt of a spin loop.
pub fn backoff(rounds: u32) {
    if rounds < 8 {
        for _ in 0..(1u32 << rounds) {
            std::hint::spin_loop();
        }
    } else if rounds < 200 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(20));
    }
}
