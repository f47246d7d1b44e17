//! Flight recorder: the last operations and events of every worker.
//!
//! A fixed ring per worker (memory bounded by configuration, not run length). The
//! owner is the only writer; the monitor reads it only to render a report, so the
//! per-ring std mutex is uncontended on the hot path. Each ring's lock sits on its
//! own cache line: adjacent workers' locks on one line made every record a cache
//! miss for both (false sharing), which serialised the workers.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Entries kept per worker.
pub const RING: usize = 64;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Begin,
    End,
    Failed,
    Event,
    /// The running op's arguments (shown in its header by the protocol view).
    Args,
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Nanoseconds since the start, or the det step number (see [`Recorder::steps`]).
    pub t_ns: u64,
    pub kind: Kind,
    /// Op name for Begin/End/Failed; for Event and Args a name that may carry a
    /// format for its arguments (`"h_enter hpte={a} gfn={b}"`, see
    /// [`crate::model::Ctx::event`]).
    pub what: &'static str,
    pub a: u64,
    pub b: u64,
}

/// When an entry was recorded, as read on the hot path: the raw clock reading (the
/// subtraction from the start and the conversion to nanoseconds cost as much again as
/// reading the clock, so they wait for a snapshot), or a det step number.
#[derive(Clone, Copy, Debug)]
enum Stamp {
    Wall(Instant),
    Step(u64),
}

/// An [`Entry`] as stored.
#[derive(Clone, Copy, Debug)]
struct Raw {
    at: Stamp,
    kind: Kind,
    what: &'static str,
    a: u64,
    b: u64,
}

#[derive(Debug)]
pub struct Ring {
    entries: Vec<Raw>,
    next: usize,
    /// The op running now, if any (for stall reports).
    pub current: Option<&'static str>,
}

impl Ring {
    fn new() -> Self {
        Ring {
            entries: Vec::with_capacity(RING),
            next: 0,
            current: None,
        }
    }

    fn push(&mut self, e: Raw) {
        if self.entries.len() < RING {
            self.entries.push(e);
        } else {
            self.entries[self.next] = e;
        }
        self.next = (self.next + 1) % RING;
    }

    /// Oldest first, stamped in nanoseconds since `start` (or det steps).
    fn in_order(&self, start: Instant) -> Vec<Entry> {
        let (a, b) = if self.entries.len() < RING {
            (&self.entries[..], &[][..])
        } else {
            let (a, b) = self.entries.split_at(self.next);
            (b, a)
        };
        a.iter()
            .chain(b)
            .map(|r| Entry {
                t_ns: match r.at {
                    Stamp::Wall(t) => t.saturating_duration_since(start).as_nanos() as u64,
                    Stamp::Step(s) => s,
                },
                kind: r.kind,
                what: r.what,
                a: r.a,
                b: r.b,
            })
            .collect()
    }
}

/// Where timestamps come from: the wall clock (stress), or the det scheduler's step
/// counter, so that a det report is as reproducible as its trace.
enum Clock {
    Wall(Instant),
    Steps(Arc<AtomicU64>),
}

/// All workers' rings.
pub struct Recorder {
    clock: Clock,
    rings: Vec<CachePadded<Mutex<Ring>>>,
}

impl Recorder {
    pub fn new(workers: usize) -> Self {
        Self::with_clock(workers, Clock::Wall(Instant::now()))
    }

    /// A recorder stamping entries with det step numbers.
    pub fn with_step_clock(workers: usize, steps: Arc<AtomicU64>) -> Self {
        Self::with_clock(workers, Clock::Steps(steps))
    }

    fn with_clock(workers: usize, clock: Clock) -> Self {
        Recorder {
            clock,
            rings: (0..workers)
                .map(|_| CachePadded::new(Mutex::new(Ring::new())))
                .collect(),
        }
    }

    /// True if timestamps are det step numbers.
    pub fn steps(&self) -> bool {
        matches!(self.clock, Clock::Steps(_))
    }

    /// The timestamp an entry recorded now would get.
    pub fn now(&self) -> u64 {
        match &self.clock {
            Clock::Wall(start) => start.elapsed().as_nanos() as u64,
            Clock::Steps(s) => s.load(Ordering::Relaxed),
        }
    }

    pub fn record(&self, worker: usize, kind: Kind, what: &'static str, a: u64, b: u64) {
        let at = match &self.clock {
            Clock::Wall(_) => Stamp::Wall(Instant::now()),
            Clock::Steps(s) => Stamp::Step(s.load(Ordering::Relaxed)),
        };
        let mut r = self.rings[worker].lock().unwrap_or_else(|e| e.into_inner());
        match kind {
            Kind::Begin => r.current = Some(what),
            Kind::End | Kind::Failed => r.current = None,
            Kind::Event | Kind::Args => {}
        }
        r.push(Raw { at, kind, what, a, b });
    }

    /// A snapshot of worker `w`'s ring and current op.
    pub fn snapshot(&self, w: usize) -> (Option<&'static str>, Vec<Entry>) {
        let start = match &self.clock {
            Clock::Wall(start) => *start,
            Clock::Steps(_) => Instant::now(),
        };
        let r = self.rings[w].lock().unwrap_or_else(|e| e.into_inner());
        (r.current, r.in_order(start))
    }

    pub fn workers(&self) -> usize {
        self.rings.len()
    }
}
