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
    /// Which delays go where.
    pub policy: Policy,
}

/// Which delays a point draws from (defined with the descriptors, which name each
/// model's default).
pub use crate::model::InjectionPolicy as Policy;

impl Injection {
    /// The injection before issue 17, and the rates of every model's default: a
    /// delay at 1 % of plain points and 20 % of race windows, any kind anywhere.
    /// `bench` measures each model's default against it.
    pub const UNIFORM: Injection = Injection {
        prob: 0.01,
        window_boost: 20.0,
        policy: Policy::Uniform,
    };

    /// A model's default: [`Injection::UNIFORM`]'s rates with the policy its
    /// descriptor names.
    pub fn default_with(policy: Policy) -> Injection {
        Injection {
            policy,
            ..Injection::UNIFORM
        }
    }

    /// Parses `PROB,BOOST,POLICY` (`0.001,100,uniform`), as `bench --candidate` takes it.
    pub fn parse(s: &str) -> Result<Injection, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [prob, boost, policy] = parts[..] else {
            return Err(format!("'{s}': expected PROB,BOOST,POLICY"));
        };
        // The ranges a scenario accepts (`delay_prob`, `window_boost`).
        let num = |x: &str, what: &str, ok: fn(f64) -> bool, range: &str| match x.parse::<f64>() {
            Ok(v) if ok(v) => Ok(v),
            _ => Err(format!("'{s}': {what} '{x}' is not a number {range}")),
        };
        Ok(Injection {
            prob: num(prob, "probability", |v| (0.0..=1.0).contains(&v), "in 0..=1")?,
            window_boost: num(
                boost,
                "window boost",
                |v| v >= 1.0 && v.is_finite(),
                "of at least 1",
            )?,
            policy: <Policy as clap::ValueEnum>::from_str(policy, false)
                .map_err(|_| format!("'{s}': policy '{policy}' is not uniform, targeted or preempt"))?,
        })
    }

    /// Injection off.
    pub fn off(self) -> Injection {
        Injection { prob: 0.0, ..self }
    }
}

/// How many threads share a core: `threads / cores`, at least 1.
pub fn crowd(threads: usize) -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (threads / cores).max(1) as u64
}

/// Threads per core from which a run is *crowded*, whatever its policy: every
/// injection probability is divided by the crowd, and a waiter with a queue sleeps on
/// it ([`crate::sync::Backoff::spin_or`]).
///
/// The OS already deschedules each of `crowd` threads a core at points of its own
/// choosing, every time slice; an injected yield or sleep on top costs a whole round of
/// the run queue, `crowd` slices. At 1024 threads on 2 cores with the full rates
/// (`run --model M --threads 1024 --duration 4s`): hash-protect made 19–25 ops/s, a
/// 4 s run took 37–55 s to wind down and its irq window was never entered, against
/// 3.9–4.4 M ops/s and every window entered with the rates divided by 512; pfncache
/// 6,805 against 252–339 k, its two vCPU-eviction windows never entered against
/// entered (with no injection at all, 726,815 ops/s but those two never entered: they
/// need an injected delay).
///
/// Windows are thinned too, which costs some races found at these sizes: thinning
/// plain points only, the bench's curve missed a window of hash-protect at 256 and
/// 1024 threads and of pfncache at 1024 (entered by the rule here), while
/// hash-protect's `no-cpus-read-lock` at 256 threads was caught in 3.5–7.3 s, against
/// once in three 20 s runs here (and 1.0–6.8 s by the binary before crowded runs).
/// At 64 threads (crowd 32), crowded against not, two or three seeds each: the rarest
/// window of hash-protect 0–2/s → 3.2–5.7/s, hpt 33–36 → 57–73, memslot 2.0–2.7 →
/// 4.0–6.2, pfncache 6.7 → 28.7. At 32 threads (crowd 16) hash-protect's irq window
/// fell (7.7 → 2.2/s), so runs of 16 a core or fewer, where the policies were tuned,
/// inject at the full rates.
pub const CROWDED: u64 = 32;

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
    policy: Policy,
    /// [`crowd`] of the run (1 under [`Policy::Uniform`]).
    crowd: u64,
    /// [`crowd`] of the run is at least [`CROWDED`].
    crowded: bool,
}

impl Injector {
    pub fn new(mut rng: Rng, inj: Injection, threads: usize) -> Self {
        let per_core = crowd(threads);
        let crowd = match inj.policy {
            Policy::Uniform => 1,
            Policy::Targeted | Policy::Preempt => per_core,
        };
        let crowded = per_core >= CROWDED;
        let thin = if crowded { per_core as f64 } else { 1.0 };
        let window_prob = (inj.prob * inj.window_boost).min(0.5) / thin;
        let plain_prob = match inj.policy {
            Policy::Targeted => inj.prob / crowd as f64,
            Policy::Uniform | Policy::Preempt => inj.prob / thin,
        };
        Injector {
            plain: Gap::new(plain_prob, &mut rng),
            window: Gap::new(window_prob, &mut rng),
            policy: inj.policy,
            crowd,
            crowded,
            rng,
        }
    }

    /// The skip count of a site class before its first delay.
    pub fn first_gap(&self, window: bool) -> u64 {
        self.gap(window).left
    }

    /// Threads per core for [`backoff`]: [`crowd`] under [`Policy::Targeted`], else
    /// one. [`Policy::Preempt`] keeps the uniform backoff: with the targeted one
    /// (sleeping waiters) hash-protect's early-dec race was caught 3x later.
    pub fn crowd(&self) -> u64 {
        match self.policy {
            Policy::Targeted => self.crowd,
            Policy::Uniform | Policy::Preempt => 1,
        }
    }

    /// The run is [`CROWDED`]: waiters sleep on their resource's queue.
    pub fn crowded(&self) -> bool {
        self.crowded
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
        match (self.policy, window) {
            (Policy::Uniform, _) => self.mixed(),
            (Policy::Targeted, false) => self.spin(2000 / self.crowd),
            (Policy::Targeted, true) if self.crowd > 1 => std::thread::yield_now(),
            (Policy::Targeted, true) => self.mixed(),
            (Policy::Preempt, false) if self.crowd > 1 => std::thread::sleep(Duration::from_micros(1)),
            (Policy::Preempt, _) => self.mixed(),
        }
        next
    }

    /// A spin (half the time), a yield, or a short sleep: three very different
    /// lengths, because races need windows from nanoseconds to a scheduler tick.
    #[cold]
    fn mixed(&mut self) {
        match self.rng.below(100) {
            0..=49 => self.spin(2000),
            50..=89 => std::thread::yield_now(),
            _ => std::thread::sleep(Duration::from_micros(5 + self.rng.below(50))),
        }
    }

    /// Up to `max` spin-loop hints.
    fn spin(&mut self, max: u64) {
        for _ in 0..self.rng.below(max.max(1)) {
            std::hint::spin_loop();
        }
    }
}

/// The wait after the `rounds`-th failed attempt of a spin loop, with `crowd`
/// threads per core ([`Injector::crowd`]): a few spins while every
/// thread can have a core, then yields, then sleeps. The more threads share a core,
/// the sooner the sleeps and the longer: a waiter that yields stays on the run queue,
/// and at 1024 threads on 2 cores the lock holder it waits for (descheduled, most
/// likely) got a core only after every yielding waiter had had its turn: half the run
/// went into `sched_yield` (README, Performance). Spins and yields happen here; the
/// sleep is returned, for the caller to take ([`crate::sync::Backoff`]).
pub fn backoff(rounds: u32, crowd: u64) -> Option<Duration> {
    let yields = (200 / crowd).max(4) as u32;
    if crowd == 1 && rounds < 8 {
        for _ in 0..(1u32 << rounds) {
            std::hint::spin_loop();
        }
        None
    } else if rounds < yields {
        std::thread::yield_now();
        None
    } else {
        Some(Duration::from_micros(20 * crowd.min(50)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// Mean first skip count of a worker's plain and window sites over 400 seeds.
    fn mean_gaps(policy: Policy, threads: usize) -> (f64, f64) {
        let (mut plain, mut window) = (0.0, 0.0);
        for seed in 0..400 {
            let inj = Injector::new(
                Rng::stream(seed, Stream::Delays, 0),
                Injection::default_with(policy),
                threads,
            );
            plain += inj.first_gap(false) as f64 / 400.0;
            window += inj.first_gap(true) as f64 / 400.0;
        }
        (plain, window)
    }

    #[test]
    fn crowded_runs_inject_crowd_times_less_often() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let few = (4 * cores).max(2);
        let many = CROWDED as usize * 2 * cores;
        for policy in [Policy::Uniform, Policy::Preempt] {
            let (plain, window) = mean_gaps(policy, few);
            let (plain_c, window_c) = mean_gaps(policy, many);
            assert!(!Injector::new(Rng::stream(0, Stream::Delays, 0), Injection::UNIFORM, few).crowded());
            // 1 % of plain points and 20 % of windows (gaps ~99 and ~4); crowded, both
            // rates divided by 64 or more.
            assert!((60.0..150.0).contains(&plain), "{policy:?} plain {plain}");
            assert!((2.0..7.0).contains(&window), "{policy:?} window {window}");
            assert!(plain_c > 60.0 * plain, "{policy:?} plain {plain} -> {plain_c}");
            assert!(
                window_c > 60.0 * window,
                "{policy:?} window {window} -> {window_c}"
            );
        }
        let inj = Injector::new(Rng::stream(0, Stream::Delays, 0), Injection::UNIFORM, many);
        assert!(inj.crowded());
    }
}
