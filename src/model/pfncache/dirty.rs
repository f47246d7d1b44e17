//! The dirty log, the writes through caches that must reach it, and the VMM's final
//! harvest (cf1d88b3 "KVM: Remove dirty handling from gfn_to_pfn_cache completely").
//!
//! Mainline: whoever writes through a cache marks the page dirty at once
//! (`kvm_gpc_mark_dirty_in_slot()`: `mark_page_dirty_in_slot(kvm, gpc->memslot, gfn)`).
//! Before cf1d88b3 a refresh stored the caller's intent to write in `gpc->dirty`
//! (`gpc->dirty = ret ? false : dirty` at `out:`), and the page reached the dirty log
//! only in `__release_gpc()` (`if (dirty) mark_page_dirty(kvm, gpa)`), i.e. when a
//! refresh let the old pfn go or the cache was unmapped. The commit's point: "Any time
//! a vCPU exits the run loop to userspace might be its last; the VMM might do its
//! final check of the dirty log" — a page written through a cache that is still
//! mapped then escapes the final copy of a migration.
//!
//! D1, checked at each harvest: every guest page written through a cache since the
//! previous harvest is in the log. The harvest runs with every writer out of KVM_RUN
//! (the VMM stopped its vCPUs), so a write is either wholly before it or after it.

use super::cache::{Field, Gpc};
use super::{cov, Op, PfnCache};
use crate::model::mem::PAGE_SIZE;
use crate::model::notifier::is_error_gpa;
use crate::sync::{AtomicBool, RawRwLock};
use std::fmt::Write;
use std::sync::atomic::AtomicU64 as StdU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

pub(super) struct DirtyLog {
    /// The memslots' dirty bitmaps, one bit per gfn: `mark_page_dirty_in_slot()` sets
    /// a bit, `KVM_GET_DIRTY_LOG` reads and clears them.
    log: Vec<AtomicBool>,
    /// The vCPUs as the VMM sees them: a writer is inside KVM_RUN (shared); the final
    /// harvest holds it exclusively (every vCPU has exited to userspace).
    running: RawRwLock,
    /// Ghost: which cache (id + 1) last wrote each gfn since the previous harvest.
    written: Vec<StdU64>,
}

impl DirtyLog {
    pub fn new(gfns: u64) -> Self {
        DirtyLog {
            log: (0..gfns).map(|_| AtomicBool::new(false)).collect(),
            running: RawRwLock::new(),
            written: (0..gfns).map(|_| StdU64::new(0)).collect(),
        }
    }

    /// `mark_page_dirty_in_slot()` / `mark_page_dirty()`.
    fn mark(&self, gfn: u64) {
        if let Some(bit) = self.log.get(gfn as usize) {
            bit.store(true, Relaxed);
        }
    }
}

impl PfnCache {
    /// A writer (Xen's `evtchn_pending` bit, the runstate area): the reader pattern
    /// with a write through the mapping, inside KVM_RUN.
    pub(super) fn write(&self, op: &mut Op, c: &Gpc, len: u64) {
        self.dirty.running.read_lock();
        self.use_cache(op, c, len, true);
        self.dirty.running.read_unlock();
    }

    /// After a write through `c` (read lock held, `kvm_gpc_check()` passed). A cache
    /// activated by hva has no memslot and no dirty log: only guest pages count.
    pub(super) fn wrote_through(&self, op: &mut Op, c: &Gpc) {
        let gpa = c.gpa.load(Acquire);
        if is_error_gpa(gpa) {
            return;
        }
        let gfn = gpa / PAGE_SIZE;
        if !self.proto.dirty_in_cache && c.memslot.load(Acquire) != 0 {
            // kvm_gpc_mark_dirty_in_slot(gpc)
            self.dirty.mark(gfn);
        }
        if let Some(w) = self.dirty.written.get(gfn as usize) {
            w.store(c.id as u64 + 1, Relaxed);
        }
        c.record(op, "gpc{a}: write through khva (gfn {b})", gfn, 0);
    }

    /// `gpc->dirty = ret ? false : dirty` at the end of a refresh (before cf1d88b3),
    /// write lock held: every user of the model's caches writes through them, so
    /// every successful refresh declares the cache dirty.
    pub(super) fn note_refresh_dirty(&self, op: &mut Op, c: &Gpc, ok: bool) {
        if self.proto.dirty_in_cache {
            c.set(op, Field::Dirty, ok as u64);
        }
    }

    /// `old_dirty`/`old_gpa` as a refresh or unmap snapshots them under the write lock:
    /// the gfn `__release_gpc()` will mark dirty, if any.
    pub(super) fn dirty_to_release(&self, c: &Gpc) -> Option<u64> {
        let gpa = c.gpa.load(Acquire);
        (self.proto.dirty_in_cache && c.dirty.load(Acquire) && !is_error_gpa(gpa)).then_some(gpa / PAGE_SIZE)
    }

    /// `if (dirty) mark_page_dirty(kvm, gpa)` in `__release_gpc()`.
    pub(super) fn release_dirty(&self, op: &mut Op, c: &Gpc, gfn: Option<u64>) {
        if let Some(gfn) = gfn {
            self.dirty.mark(gfn);
            c.record(op, "gpc{a}: release: mark_page_dirty(gfn {b})", gfn, 0);
        }
    }

    /// The VMM's final `KVM_GET_DIRTY_LOG` with every vCPU stopped: read and clear the
    /// log, and check D1 against the writes made since the previous harvest.
    pub(super) fn harvest(&self, op: &mut Op) {
        self.dirty.running.write_lock();
        let mut missed = None;
        let mut harvested = 0;
        for (gfn, (bit, writer)) in self.dirty.log.iter().zip(&self.dirty.written).enumerate() {
            let logged = bit.swap(false, Acquire);
            harvested += logged as u64;
            let writer = writer.swap(0, Relaxed);
            if writer == 0 {
                continue;
            }
            if self.caches.iter().any(|c| {
                let gpa = c.gpa.peek();
                c.valid.peek() && !is_error_gpa(gpa) && gpa / PAGE_SIZE == gfn as u64
            }) {
                op.cover(cov::HARVEST_SAW_MAPPED_DIRTY);
            }
            if !logged && missed.is_none() {
                missed = Some((gfn as u64, writer as usize - 1));
            }
        }
        self.dirty.running.write_unlock();
        op.event("KVM_GET_DIRTY_LOG: {a} dirty gfn(s) harvested", harvested, 0);
        if let Some((gfn, id)) = missed {
            let c = &self.caches[id];
            op.flag(self.cache_violation(
                c,
                "D1",
                format!(
                    "gfn {gfn:#x} was written through gpc{id} since the last harvest, but the dirty \
                     log does not have it: the final copy of a migration misses that write"
                ),
            ));
        }
    }

    /// The dirty state of the caches, for reports.
    pub(super) fn describe_dirty(&self) -> String {
        let mut s = String::new();
        let pending: Vec<usize> = (0..self.dirty.log.len())
            .filter(|&g| self.dirty.log[g].peek())
            .collect();
        let _ = writeln!(s, "dirty log (gfns): {pending:?}");
        s
    }
}
