//! Stress mode: real threads run freely; points inject seeded delays.
//!
//! The injection decision (whether, and which delay) is drawn from the worker's own
//! [`Stream::Delays`](crate::rng::Stream) stream, so a seed fixes every worker's
//! decisions; the OS still picks the interleaving, so a stress failure reproduces
//! only probabilistically (`replay --times N` measures how often).

use super::Site;
use crate::rng::Rng;
use std::time::Duration;

/// Per-worker delay injector.
pub struct Injector {
    rng: Rng,
    prob: f64,
    window_prob: f64,
}

impl Injector {
    /// `prob` at plain sites; `prob * window_boost` (capped at 0.5) at race windows.
    pub fn new(rng: Rng, prob: f64, window_boost: f64) -> Self {
        Injector {
            rng,
            prob,
            window_prob: (prob * window_boost).min(0.5),
        }
    }

    #[inline]
    pub fn point(&mut self, site: &Site) {
        let p = if site.window { self.window_prob } else { self.prob };
        if p > 0.0 && self.rng.chance(p) {
            self.delay();
        }
    }

    /// A spin (half the time), a yield, or a short sleep: three very different
    /// lengths, because races need windows from nanoseconds to a scheduler tick.
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
