//! Per-worker counters, cache-padded, summed by the monitor.
//!
//! There is no global contended counter on the hot path: each worker writes only its
//! own slots (a relaxed load+store, since it is the single writer) and the monitor
//! sums them when it draws progress or writes the summary. Every slot has its own
//! cache line: the per-worker vectors are small allocations the allocator packs
//! next to each other, so unpadded, one worker's coverage counters shared a line
//! with the next worker's op counters.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct WorkerCounters {
    pub ops_total: AtomicU64,
    pub ops_by_kind: Vec<CachePadded<AtomicU64>>,
    pub coverage: Vec<CachePadded<AtomicU64>>,
}

fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed) + 1, Relaxed);
}

impl WorkerCounters {
    fn new(ops: usize, cov: usize) -> Self {
        WorkerCounters {
            ops_total: AtomicU64::new(0),
            ops_by_kind: (0..ops).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            coverage: (0..cov).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
        }
    }

    pub fn op_done(&self, op: usize) {
        bump(&self.ops_by_kind[op]);
        bump(&self.ops_total);
    }

    pub fn cover(&self, id: usize) {
        bump(&self.coverage[id]);
    }
}

pub struct Counters {
    pub workers: Vec<CachePadded<WorkerCounters>>,
}

impl Counters {
    pub fn new(workers: usize, ops: usize, cov: usize) -> Self {
        Counters {
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::new(ops, cov)))
                .collect(),
        }
    }

    pub fn ops_total(&self) -> u64 {
        self.workers.iter().map(|w| w.ops_total.load(Relaxed)).sum()
    }

    fn sum(&self, pick: impl Fn(&WorkerCounters) -> &Vec<CachePadded<AtomicU64>>, n: usize) -> Vec<u64> {
        let mut out = vec![0; n];
        for w in &self.workers {
            for (o, c) in out.iter_mut().zip(pick(w)) {
                *o += c.load(Relaxed);
            }
        }
        out
    }

    pub fn ops_by_kind(&self, n: usize) -> Vec<u64> {
        self.sum(|w| &w.ops_by_kind, n)
    }

    pub fn coverage(&self, n: usize) -> Vec<u64> {
        self.sum(|w| &w.coverage, n)
    }
}
