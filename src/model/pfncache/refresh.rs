//! `kvm_gpc_refresh()`, `__kvm_gpc_refresh()` and `hva_to_pfn_retry()`
//! (virt/kvm/pfncache.c), with the pre-58cd407c speculative form of the last.

use super::cache::{Field, Gpc, WriteHeld};
use super::protocol::Lifecycle;
use super::{cov, Errno, Op, PfnCache};
use crate::model::mem::{Khva, Pfn, PAGE_SIZE, PFN_ERR};
use crate::model::notifier::{
    is_error_gpa, is_error_hva, offset_in_page, page_align_down, Retry, HVA_ERR_BAD, INVALID_GPA,
};
use crate::sync::Backoff;
use std::sync::atomic::Ordering::Acquire;

/// Rounds of `hva_to_pfn_retry()` before the model gives up with -EFAULT. The kernel
/// retries for ever while any invalidation is in flight VM-wide (the livelock dwmw2
/// reported in 2024); under a torture load of back-to-back invalidations that would
/// starve a refresher, so the model bounds it. Giving up takes the error path, which
/// is always safe.
const MAX_RETRY_ROUNDS: u32 = 2000;

/// `kvm_gpc_is_valid_len()`: the offset comes from the gpa of a GPA-based cache and
/// from the uhva of an HVA-based one (18f06e97).
pub(super) fn valid_len(gpa: u64, uhva: u64, len: u64) -> bool {
    let offset = if is_error_gpa(gpa) {
        offset_in_page(uhva)
    } else {
        offset_in_page(gpa)
    };
    offset + len <= PAGE_SIZE
}

impl PfnCache {
    /// Takes `gpc->refresh_lock` if the protocol has one; returns whether it did.
    pub(super) fn lock_refresh(&self, op: &mut Op, c: &Gpc) -> bool {
        if !self.proto.refresh_lock {
            return false;
        }
        if !c.refresh_lock.try_lock() {
            op.cover(cov::REFRESH_WAITED_FOR_LOCK);
            c.refresh_lock.lock();
        }
        true
    }

    pub(super) fn unlock_refresh(&self, c: &Gpc, locked: bool) {
        if locked {
            c.refresh_lock.unlock();
        }
    }

    /// `kvm_gpc_refresh(gpc, len)`: `guard(mutex)(&gpc->refresh_lock)`, the length
    /// check, then `__kvm_gpc_refresh()` with the cache's own address.
    pub(super) fn refresh(&self, op: &mut Op, c: &Gpc, len: u64) -> Result<(), Errno> {
        let locked = self.lock_refresh(op, c);
        let r = self.refresh_held(op, c, len);
        self.unlock_refresh(c, locked);
        r
    }

    /// `kvm_gpc_refresh()` inside its `refresh_lock` guard.
    pub(super) fn refresh_held(&self, op: &mut Op, c: &Gpc, len: u64) -> Result<(), Errno> {
        let gpa = c.gpa.load(Acquire);
        let uhva = c.uhva.load(Acquire);
        if self.proto.len_check_early && !valid_len(gpa, uhva, len) {
            Err(Errno::Inval)
        } else {
            if is_error_gpa(gpa) && is_error_hva(uhva) {
                // The WARN_ON_ONCE() at the top of __kvm_gpc_refresh(), reached with the
                // cache's own state: Q2's first half, read under refresh_lock where
                // gpa and uhva cannot change.
                let active = c.active.peek();
                op.flag(self.cache_violation(
                    c,
                    "Q2",
                    format!(
                        "WARN in __kvm_gpc_refresh: refresh of gpc{} (active {active}) with neither gpa nor uhva",
                        c.id
                    ),
                ));
            }
            let arg_uhva = if is_error_gpa(gpa) { uhva } else { HVA_ERR_BAD };
            self.refresh_locked(op, c, gpa, arg_uhva, len)
        }
    }

    /// `__kvm_gpc_refresh(gpc, gpa, uhva)` with `refresh_lock` held by the caller.
    /// `len` is checked here, after the cache is active, only before 5c9ca4ed.
    pub(super) fn refresh_locked(
        &self,
        op: &mut Op,
        c: &Gpc,
        gpa: u64,
        uhva: u64,
        len: u64,
    ) -> Result<(), Errno> {
        if is_error_gpa(gpa) == is_error_hva(uhva) {
            return Err(Errno::Inval);
        }
        if !self.proto.len_check_early && !valid_len(gpa, uhva, len) {
            return Err(Errno::Inval);
        }
        let mut w = c.write_lock();
        if self.proto.lifecycle != Lifecycle::Unenforced && !c.active.load(Acquire) {
            op.cover(cov::REFRESH_FOUND_INACTIVE);
            c.write_unlock(w);
            return Err(Errno::Inval);
        }
        let old_pfn = c.pfn.load(Acquire);
        let old_khva = c.khva().base();
        let old_uhva = page_align_down(c.uhva.load(Acquire));
        let old_dirty = self.dirty_to_release(c);
        let mut translation_failed = false;
        let ret = 'out: {
            let (page_offset, hva_change) = if is_error_gpa(gpa) {
                c.set(op, Field::Gpa, INVALID_GPA);
                c.set(op, Field::Memslot, 0);
                c.set(op, Field::Uhva, page_align_down(uhva));
                (offset_in_page(uhva), page_align_down(uhva) != old_uhva)
            } else {
                let t = self.mmu.translate(gpa);
                let cur_gpa = c.gpa.load(Acquire);
                let cur_gen = c.generation.load(Acquire);
                if cur_gpa != gpa || cur_gen != t.generation || is_error_hva(c.uhva.load(Acquire)) {
                    if cur_gpa == gpa && cur_gen != t.generation {
                        op.cover(cov::REFRESH_STALE_GENERATION);
                    }
                    let new_uhva = page_align_down(t.uhva);
                    c.set(op, Field::Gpa, gpa);
                    c.set(op, Field::Generation, t.generation);
                    c.set(op, Field::Memslot, t.slot.map_or(0, |s| s as u64 + 1));
                    c.set(op, Field::Uhva, new_uhva);
                    // 93984f19's window: a second refresher would see all this as fresh.
                    crate::window!("refresh.translated");
                    if is_error_hva(new_uhva) {
                        op.cover(cov::REFRESH_NO_MEMSLOT);
                        c.record(op, "gpc{a}: no memslot for gpa {b:x}", gpa, t.generation);
                        translation_failed = true;
                        break 'out Err(Errno::Fault);
                    }
                    (offset_in_page(gpa), new_uhva != old_uhva)
                } else {
                    c.set(op, Field::Uhva, old_uhva);
                    (offset_in_page(gpa), false)
                }
            };
            // "The offset must be correct before calling hva_to_pfn_retry()".
            let uhva_now = c.uhva.load(Acquire);
            c.set(op, Field::Uhva, uhva_now + page_offset);
            if !c.valid.load(Acquire) || hva_change {
                let (relocked, r) = if self.proto.speculative_valid {
                    self.hva_to_pfn_speculative(op, c, w, old_pfn, old_khva)
                } else {
                    self.hva_to_pfn_retry(op, c, w)
                };
                w = relocked;
                r
            } else {
                // The pfn is still valid and the hva did not change: keep the mapping,
                // but move khva to the new offset (8332f0ed), and unmap nothing.
                if Khva(c.khva.peek()).offset() != page_offset {
                    op.cover(cov::SAME_PAGE_MOVE);
                }
                if self.proto.same_page_khva {
                    c.set(op, Field::Khva, old_khva.with_offset(page_offset).0);
                }
                c.record(
                    op,
                    "gpc{a}: keeps pfn {b} (new generation)",
                    old_pfn,
                    c.generation.peek(),
                );
                self.note_refresh_dirty(op, c, true);
                c.write_unlock(w);
                return Ok(());
            }
        };
        // Before 79593c08 a failed translation jumped straight to the release of the
        // old pfn, leaving gpc->pfn/khva naming what it released.
        let purge = ret.is_err() && (self.proto.error_path_purges || !translation_failed);
        if purge {
            c.take_mapping(op);
            c.record(op, "gpc{a}: refresh of gpa {b:x} failed", gpa, uhva);
        }
        // "Detect a pfn change before dropping the lock!"
        let unmap_old = if translation_failed && !self.proto.error_path_purges {
            true
        } else {
            old_pfn != c.pfn.load(Acquire)
        };
        self.note_refresh_dirty(op, c, ret.is_ok());
        c.write_unlock(w);
        if unmap_old && old_pfn != PFN_ERR {
            self.release(op, c, old_pfn, old_khva, "refresh: old pfn");
            self.release_dirty(op, c, old_dirty);
        }
        ret
    }

    /// Mainline `hva_to_pfn_retry()`: entered and left with the write lock held.
    fn hva_to_pfn_retry(&self, op: &mut Op, c: &Gpc, mut w: WriteHeld) -> (WriteHeld, Result<(), Errno>) {
        let old_khva = c.khva().base();
        let uhva = c.uhva.load(Acquire);
        let mut new: Option<(Pfn, Khva)> = None;
        let mut resched = Backoff::new("hva_to_pfn_retry.cond_resched");
        // Invalidate the cache before dropping the lock (58cd407c): the walk can only
        // clear `valid`, so it must not be left true while the lock is dropped.
        let slips = self.proto.slips;
        c.set(op, Field::Valid, 0);
        let mut rounds = 0;
        let (pfn, khva) = loop {
            let early_seq = slips.seq_before_gup.then(|| self.mmu.invalidate_seq());
            if self.proto.needs_invalidation {
                // Any invalidation of uhva from here on clears it, valid or not.
                c.set(op, Field::NeedsInvalidation, 1);
            }
            c.set_refresh_unlocked(true);
            c.write_unlock(w);
            crate::window!("hva_to_pfn_retry.unlocked");
            // Release the previous round's result, unless it reused the old mapping.
            if let Some((pfn, khva)) = new.take() {
                if khva != old_khva {
                    op.note_for(c, self.mmu.arena.kunmap(khva, "refresh: retry"));
                }
                op.note_for(c, self.mmu.arena.put(pfn, "refresh: retry"));
                resched.yield_now();
                rounds += 1;
                if rounds == MAX_RETRY_ROUNDS {
                    return (self.relock(c), Err(Errno::Fault));
                }
            }
            let Some(Some(pfn)) = op.note_for(c, self.mmu.gup(uhva, "refresh: gup")) else {
                return (self.relock(c), Err(Errno::Fault));
            };
            crate::window!("hva_to_pfn_retry.after_gup");
            let mmu_seq = early_seq.unwrap_or_else(|| self.mmu.invalidate_seq());
            // gpc->pfn is read unlocked: only this refresh, under refresh_lock, writes it.
            let khva = if pfn == c.pfn.load(Acquire) {
                op.cover(cov::REUSED_OLD_KHVA);
                old_khva
            } else {
                match op
                    .note_for(c, self.mmu.arena.kmap(pfn, "refresh: gpc_map"))
                    .flatten()
                {
                    Some(k) => k,
                    None => {
                        op.note_for(c, self.mmu.arena.put(pfn, "refresh: map failed"));
                        return (self.relock(c), Err(Errno::Fault));
                    }
                }
            };
            crate::window!("hva_to_pfn_retry.mapped");
            new = Some((pfn, khva));
            w = self.relock(c);
            // "Other tasks must wait for _this_ refresh to complete before attempting
            // to refresh": only the walk writes `valid` unserialised, and only clears it.
            if c.valid.load(Acquire) {
                op.flag(self.cache_violation(
                    c,
                    "M3",
                    format!("gpc{} is valid at hva_to_pfn_retry's relock", c.id),
                ));
            }
            if !slips.valid_after_retry_test {
                c.set(op, Field::Valid, 1);
            }
            let flag_cleared = self.proto.needs_invalidation && !c.needs_invalidation.load(Acquire);
            if flag_cleared {
                op.cover(cov::RETRY_NEEDS_INVALIDATION);
                continue;
            }
            match self.mmu.retry_cache(mmu_seq) {
                None => break (pfn, khva),
                Some(Retry::Seq) if !slips.retry_tests_seq => break (pfn, khva),
                Some(why) => {
                    op.cover(match why {
                        Retry::Count => cov::RETRY_COUNT,
                        Retry::Seq => cov::RETRY_SEQ,
                    });
                    if why == Retry::Count && self.mmu.in_walk_to_begin_window() {
                        op.cover(cov::RETRY_BEFORE_IN_PROGRESS);
                    }
                    if self.mmu.peek_pte(uhva) != Some(pfn) {
                        op.cover(cov::RETRY_DROPPED_STALE_PFN);
                    }
                }
            }
        };
        let reused = c.pfn.load(Acquire) == pfn;
        c.set(op, Field::Valid, 1);
        c.set(op, Field::Pfn, pfn);
        c.set(op, Field::Khva, khva.with_offset(offset_in_page(uhva)).0);
        // 6addfcf2's window: GUP found the pfn the cache had, so the old khva is put
        // back (whatever happened to it while the lock was dropped).
        let what = if khva == old_khva {
            "gpc{a}: reinstall pfn {b} at its old khva"
        } else {
            "gpc{a}: install pfn {b}"
        };
        c.record(op, what, pfn, c.generation.peek());
        self.keep_or_put(op, c, pfn, reused);
        (w, Ok(()))
    }

    /// `hva_to_pfn_retry()` and its caller before 58cd407c: placeholders published as
    /// valid, the lock dropped, GUP retried on `in_progress || seq changed`, and the
    /// result installed without touching `valid` ("At this point, gpc->valid may
    /// already have been cleared").
    fn hva_to_pfn_speculative(
        &self,
        op: &mut Op,
        c: &Gpc,
        w: WriteHeld,
        old_pfn: Pfn,
        old_khva: Khva,
    ) -> (WriteHeld, Result<(), Errno>) {
        // Placeholders for "hva is valid but not yet mapped".
        c.set(op, Field::Pfn, PFN_ERR);
        c.set(op, Field::Khva, 0);
        c.set(op, Field::Valid, 1);
        let uhva = c.uhva.load(Acquire);
        c.set_refresh_unlocked(true);
        c.write_unlock(w);
        crate::window!("speculative.unlocked");
        let mut resched = Backoff::new("hva_to_pfn_retry.cond_resched");
        let mut found = None;
        for _ in 0..MAX_RETRY_ROUNDS {
            let mmu_seq = self.mmu.invalidate_seq();
            crate::sync::atomic::fence();
            let Some(Some(pfn)) = op.note_for(c, self.mmu.gup(uhva, "refresh: gup")) else {
                break;
            };
            crate::window!("speculative.after_gup");
            if !self.mmu.retry_in_progress(mmu_seq) {
                found = Some(pfn);
                break;
            }
            op.note_for(c, self.mmu.arena.put(pfn, "refresh: retry"));
            resched.yield_now();
        }
        let mapped = found.and_then(|pfn| {
            if pfn == old_pfn {
                return Some((pfn, old_khva));
            }
            match op
                .note_for(c, self.mmu.arena.kmap(pfn, "refresh: gpc_map"))
                .flatten()
            {
                Some(k) => Some((pfn, k)),
                None => {
                    op.note_for(c, self.mmu.arena.put(pfn, "refresh: map failed"));
                    None
                }
            }
        });
        crate::window!("speculative.mapped");
        let w = self.relock(c);
        match mapped {
            None => {
                c.take_mapping(op);
                (w, Err(Errno::Fault))
            }
            Some((pfn, khva)) => {
                c.set(op, Field::Pfn, pfn);
                c.set(op, Field::Khva, khva.with_offset(offset_in_page(uhva)).0);
                c.record(
                    op,
                    "gpc{a}: install pfn {b} (speculative)",
                    pfn,
                    c.generation.peek(),
                );
                self.keep_or_put(op, c, pfn, pfn == old_pfn);
                (w, Ok(()))
            }
        }
    }

    fn relock(&self, c: &Gpc) -> WriteHeld {
        let w = c.write_lock();
        c.set_refresh_unlocked(false);
        w
    }

    /// The GUP reference after install: dropped ("the page is now tracked by the
    /// cache", 85165781) — or, in the pinning era, kept as the cache's pin unless the
    /// cache already pins this pfn (3dddf65b).
    fn keep_or_put(&self, op: &mut Op, c: &Gpc, pfn: Pfn, already_pinned: bool) {
        let arena = &self.mmu.arena;
        if !self.proto.pin {
            op.note_for(c, arena.put(pfn, "refresh: release_page_clean"));
        } else if !already_pinned {
            op.note_for(c, arena.keep_as_pin(pfn, "refresh: cache pin"));
        } else if self.proto.put_reused_ref {
            op.note_for(c, arena.put(pfn, "refresh: same pfn, drop new ref"));
        }
    }

    /// `gpc_unmap()` (and, pinned, `kvm_release_pfn()`) of a pfn the cache let go.
    pub(super) fn release(&self, op: &mut Op, c: &Gpc, pfn: Pfn, khva: Khva, why: &'static str) {
        if pfn == PFN_ERR {
            return;
        }
        if !khva.is_null() {
            op.note_for(c, self.mmu.arena.kunmap(khva, why));
        }
        if self.proto.pin {
            op.note_for(c, self.mmu.arena.unpin(pfn, why));
        }
    }
}
