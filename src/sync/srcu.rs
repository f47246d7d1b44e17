//! Sleepable RCU: read-side sections and `synchronize_srcu()`.
//!
//! Two reader counters and an index, like the kernel's original SRCU. A reader bumps
//! the counter of the current index and re-checks the index (retrying if a grace
//! period flipped it in between); `synchronize` flips the index and waits for the old
//! counter to drain. With sequentially consistent counters one flip suffices: a reader
//! either registered before the flip (and is waited for) or enters after it (and sees
//! everything published before `synchronize` was called).
//!
//! The HPT model uses it as `kvm->srcu`: page faults run inside a read section and
//! `resize_hpt_pivot()` is followed by `synchronize_srcu_expedited()` so no fault still
//! holds the old table when `mmu_ready` returns to 1.

use super::RawSpinLock;
use crate::sched::{point, Site};
use crate::sync::Backoff;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};

#[derive(Debug, Default)]
pub struct Srcu {
    idx: AtomicUsize,
    readers: [AtomicI64; 2],
    gp_lock: RawSpinLock,
}

/// Proof of a read-side section; pass it back to [`Srcu::read_unlock`].
#[must_use = "an SRCU read section must be closed with read_unlock"]
#[derive(Debug)]
pub struct SrcuIdx(usize);

impl Srcu {
    pub fn new() -> Self {
        Self::default()
    }

    #[track_caller]
    pub fn read_lock(&self) -> SrcuIdx {
        point(Site::new("srcu.read_lock"));
        loop {
            let i = self.idx.load(SeqCst);
            self.readers[i].fetch_add(1, SeqCst);
            if self.idx.load(SeqCst) == i {
                return SrcuIdx(i);
            }
            self.readers[i].fetch_sub(1, SeqCst);
        }
    }

    #[track_caller]
    pub fn read_unlock(&self, idx: SrcuIdx) {
        point(Site::new("srcu.read_unlock"));
        let prev = self.readers[idx.0].fetch_sub(1, SeqCst);
        debug_assert!(prev > 0, "srcu read_unlock without read_lock");
    }

    /// Waits until every read section that began before this call has ended.
    #[track_caller]
    pub fn synchronize(&self) {
        self.gp_lock.lock();
        point(Site::new("srcu.synchronize"));
        let old = self.idx.load(SeqCst);
        self.idx.store(1 - old, SeqCst);
        let mut b = Backoff::new("srcu.synchronize.wait");
        while self.readers[old].load(SeqCst) != 0 {
            b.spin();
        }
        self.gp_lock.unlock();
    }

    /// Readers inside a section now (for quiescent checks).
    pub fn active_readers(&self) -> i64 {
        self.readers[0].load(SeqCst) + self.readers[1].load(SeqCst)
    }
}
