//! Flight recorder: the last operations and events of every worker.
//!
//! A fixed ring per worker (memory bounded by configuration, not run length). The
//! owner is the only writer; the monitor reads it only to render a report, so the
//! per-ring std mutex is uncontended on the hot path.

use std::sync::Mutex;
use std::time::Instant;

/// Entries kept per worker.
pub const RING: usize = 64;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Begin,
    End,
    Failed,
    Event,
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub t_ns: u64,
    pub kind: Kind,
    /// Op name for Begin/End/Failed, event name for Event.
    pub what: &'static str,
    pub a: u64,
    pub b: u64,
}

#[derive(Debug)]
pub struct Ring {
    entries: Vec<Entry>,
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

    fn push(&mut self, e: Entry) {
        if self.entries.len() < RING {
            self.entries.push(e);
        } else {
            self.entries[self.next] = e;
        }
        self.next = (self.next + 1) % RING;
    }

    /// Oldest first.
    pub fn in_order(&self) -> Vec<Entry> {
        if self.entries.len() < RING {
            self.entries.clone()
        } else {
            let (a, b) = self.entries.split_at(self.next);
            b.iter().chain(a).copied().collect()
        }
    }
}

/// All workers' rings.
pub struct Recorder {
    start: Instant,
    rings: Vec<Mutex<Ring>>,
}

impl Recorder {
    pub fn new(workers: usize) -> Self {
        Recorder {
            start: Instant::now(),
            rings: (0..workers).map(|_| Mutex::new(Ring::new())).collect(),
        }
    }

    pub fn record(&self, worker: usize, kind: Kind, what: &'static str, a: u64, b: u64) {
        let t_ns = self.start.elapsed().as_nanos() as u64;
        let mut r = self.rings[worker].lock().unwrap_or_else(|e| e.into_inner());
        match kind {
            Kind::Begin => r.current = Some(what),
            Kind::End | Kind::Failed => r.current = None,
            Kind::Event => {}
        }
        r.push(Entry {
            t_ns,
            kind,
            what,
            a,
            b,
        });
    }

    /// A snapshot of worker `w`'s ring and current op.
    pub fn snapshot(&self, w: usize) -> (Option<&'static str>, Vec<Entry>) {
        let r = self.rings[w].lock().unwrap_or_else(|e| e.into_inner());
        (r.current, r.in_order())
    }

    pub fn workers(&self) -> usize {
        self.rings.len()
    }
}
