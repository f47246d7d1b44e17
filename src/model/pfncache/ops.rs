//! The operations workers run: the cache users' calls (with their arguments drawn
//! from the worker's stream), the reader pattern, the host's invalidations with the
//! gpc walk, and memslot updates.

use super::cache::{Field, Gpc};
use super::protocol::Lifecycle;
use super::refresh::valid_len;
use super::{cov, op, Op, PfnCache};
use crate::model::mem::{PAGE_SIZE, PFN_ERR};
use crate::model::notifier::{is_error_gpa, is_error_hva, Change, INVALID_GPA};
use std::ops::Range;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

/// Refreshes a reader attempts before giving up (the kernel's loops are unbounded;
/// a reader starved by invalidations is a liveness question this model leaves out).
const READER_REFRESHES: u32 = 4;

/// How often a reader picks the cache being brought up ([`PfnCache::pick_cache`]).
const READER_FOLLOWS_BRING_UP: f64 = 0.75;

/// `bringing_up` when no activate is bringing a cache up.
pub(super) const NO_BRING_UP: usize = usize::MAX;

impl PfnCache {
    /// A user op on cache `c`, inside the owning vCPU's lifetime.
    pub(super) fn user_op(&self, op: &mut Op, c: &Gpc, id: usize) {
        if id == op::RECREATE {
            return self.recreate(op, c);
        }
        c.lifetime.read_lock();
        match id {
            op::READ => {
                let len = self.pick_len(op, 0);
                self.read(op, c, len);
            }
            op::CHECK => self.check_op(op, c),
            op::REFRESH => {
                let len = self.pick_len(op, 0);
                // Callers refresh only a cache they activated (Xen tests gpc->active).
                if c.active.load(Acquire) {
                    let _ = self.refresh(op, c, len);
                }
            }
            op::ACTIVATE => {
                let gpa = self.pick_gpa(op);
                let len = self.pick_len(op, gpa);
                let up = self.bring_up_begins(c);
                let _ = self.activate(op, c, gpa, len);
                self.bring_up_ends(c, up);
            }
            op::ACTIVATE_HVA => {
                let uhva = self.pick_hva(op);
                let len = self.pick_len(op, uhva);
                let up = self.bring_up_begins(c);
                let _ = self.activate_hva(op, c, uhva, len);
                self.bring_up_ends(c, up);
            }
            op::DEACTIVATE => self.deactivate(op, c),
            op::WRITE => {
                let len = self.pick_len(op, 0);
                self.write(op, c, len);
            }
            _ => unreachable!("op id {id} is not a cache user's"),
        }
        c.lifetime.read_unlock();
    }

    /// The shared cache a user op works on: any, except that a reader (read, write,
    /// check) mostly follows a cache being brought up fresh from `kvm_gpc_init()` while
    /// that activate runs. Xen's VMM sets up a new vCPU's vcpu_info or the
    /// shared_info (`kvm_gpc_activate()`) while other vCPUs already deliver event
    /// channels through it (`kvm_xen_set_evtchn_fast()` checks the cache under its
    /// read lock). Without this, readers met a cache between `active = true` and its
    /// first refresh (reader_saw_half_activated) in 0.3-0.4 % of their ops.
    pub(super) fn pick_cache(&self, op: &mut Op, id: usize) -> &Gpc {
        let any = op.rng().index(self.params.caches);
        let reader = matches!(id, op::READ | op::WRITE | op::CHECK);
        match reader.then(|| self.reader_follows_bring_up(op)).flatten() {
            Some(c) => c,
            None => &self.caches[any],
        }
    }

    /// The cache being brought up, if there is one and the reader follows it (read
    /// without a lock: the harness's choice of cache).
    pub(super) fn reader_follows_bring_up(&self, op: &mut Op) -> Option<&Gpc> {
        let up = self.bringing_up.load(Relaxed);
        (up != NO_BRING_UP && op.rng().chance(READER_FOLLOWS_BRING_UP)).then(|| &self.caches[up])
    }

    /// Marks `c` as being brought up if an activate is about to enable it fresh from
    /// `kvm_gpc_init()` (no address yet): the only activate that leaves a window where
    /// the cache is active with no address.
    fn bring_up_begins(&self, c: &Gpc) -> bool {
        let up = !c.active.peek() && is_error_gpa(c.gpa.peek()) && is_error_hva(c.uhva.peek());
        if up {
            self.bringing_up.store(c.id, Relaxed);
        }
        up
    }

    fn bring_up_ends(&self, c: &Gpc, up: bool) {
        if up {
            let _ = self
                .bringing_up
                .compare_exchange(c.id, NO_BRING_UP, Relaxed, Relaxed);
        }
    }

    /// A GPA for `activate`: half the time a gfn of memslot 0 (guests keep Xen's
    /// shared structures in a few low pages, in memory the VMM never moves, and it is
    /// where the host invalidates by default: see `Params`), else any gfn (in a live
    /// memslot or not); any 64-byte offset; now and then INVALID_GPA, the argument
    /// fc62a4e8 refuses. With any gfn only, a third of GPA caches could meet a walk.
    fn pick_gpa(&self, op: &mut Op) -> u64 {
        if op.rng().chance(0.1) {
            return INVALID_GPA;
        }
        let l = self.params.layout;
        let gfns = if op.rng().chance(0.5) {
            l.slot_pages
        } else {
            l.gfns()
        };
        let gfn = op.rng().below(gfns);
        gfn * PAGE_SIZE + op.rng().below(PAGE_SIZE / 64) * 64
    }

    /// An hva for `activate_hva`: inside memslot 0, which memslot updates never move
    /// or delete, or — with `outside_pages` — in memory no memslot covers.
    fn pick_hva(&self, op: &mut Op) -> u64 {
        let l = self.params.layout;
        let page = if l.outside_pages > 0 && op.rng().chance(0.5) {
            l.outside() + op.rng().below(l.outside_pages)
        } else {
            l.region(0, 0) + op.rng().below(l.slot_pages)
        };
        l.hva(page) + op.rng().below(PAGE_SIZE / 64) * 64
    }

    /// A length for an access at `addr`'s offset: a small structure, sometimes one
    /// that crosses the end of the page (what 5c9ca4ed checks before activating).
    fn pick_len(&self, op: &mut Op, addr: u64) -> u64 {
        const LENS: [u64; 4] = [8, 16, 64, 256];
        if op.rng().chance(0.05) {
            return PAGE_SIZE - addr % PAGE_SIZE + 8;
        }
        LENS[op.rng().index(LENS.len())]
    }

    /// `kvm_gpc_check(gpc, len)`, with the read lock held.
    pub(super) fn check(&self, c: &Gpc, len: u64) -> bool {
        if self.proto.lifecycle != Lifecycle::Unenforced && !c.active.load(Acquire) {
            return false;
        }
        let gpa = c.gpa.load(Acquire);
        if self.proto.slips.check_generation
            && !is_error_gpa(gpa)
            && c.generation.load(Acquire) != self.mmu.generation()
        {
            return false;
        }
        let uhva = c.uhva.load(Acquire);
        if is_error_hva(uhva) || !valid_len(gpa, uhva, len) {
            return false;
        }
        c.valid.load(Acquire)
    }

    /// The Xen shinfo/evtchn pattern: check, refresh while it fails, then use `len`
    /// bytes at khva under the read lock.
    fn read(&self, op: &mut Op, c: &Gpc, len: u64) {
        self.use_cache(op, c, len, false);
    }

    /// The reader pattern, for a read or (`write`) a write through the mapping.
    pub(super) fn use_cache(&self, op: &mut Op, c: &Gpc, len: u64, write: bool) {
        let mut h = c.read_lock();
        self.check_read_locked(op, c);
        let mut refreshes = 0;
        let mut epoch = self.mmu.oracle_epoch();
        let mut trusted = false;
        while !trusted && !self.check(c, len) {
            op.note(c.read_unlock(h));
            crate::window!("reader.check_failed");
            if refreshes == READER_REFRESHES || !c.active.load(Acquire) || self.refresh(op, c, len).is_err() {
                return;
            }
            refreshes += 1;
            op.cover(cov::READER_REFRESHED);
            h = c.read_lock();
            self.check_read_locked(op, c);
            epoch = self.mmu.oracle_epoch();
            trusted = !self.proto.slips.reader_rechecks;
        }
        // Between a successful check and the dereference.
        crate::window!("reader.checked");
        self.check_access(op, c, len, epoch);
        if write {
            self.wrote_through(op, c);
        }
        for _ in 0..op.rng().below(4) {
            crate::window!("reader.holding");
        }
        op.note(c.read_unlock(h));
    }

    /// A caller that checks the cache and keeps the read lock a while whatever the
    /// answer (the spec's reader "holding the read lock for a random time", which is
    /// what a re-initialised lock (52491a38) must overlap).
    fn check_op(&self, op: &mut Op, c: &Gpc) {
        let h = c.read_lock();
        self.check_read_locked(op, c);
        let len = self.pick_len(op, 0);
        self.check(c, len);
        for _ in 0..1 + op.rng().below(8) {
            crate::window!("check.holding");
        }
        op.note(c.read_unlock(h));
    }

    /// A host page-table change over a page, two, or (three times in ten) a whole
    /// memslot's worth (an munmap or a THP split covers many pages at once): half the
    /// time starting at a valid shared cache's page (else any cache's), so that walks
    /// meet valid caches that users are moving (9fa336e3's window needs one); mostly a
    /// replacement, so old pages are freed. Only memslot 0's memory unless
    /// `unbacked_invalidations` (see `Params`).
    pub(super) fn invalidate(&self, op: &mut Op) {
        let l = self.params.layout;
        let scope = if self.params.unbacked_invalidations {
            0..l.hva_pages()
        } else {
            l.region(0, 0)..l.region(0, 0) + l.slot_pages
        };
        let target = if op.rng().chance(0.5) {
            let any = &self.caches[op.rng().index(self.caches.len())];
            self.valid_shared_page(op, &scope)
                .or_else(|| l.hva_page(any.uhva.peek()).filter(|p| scope.contains(p)))
        } else {
            None
        };
        let page = target.unwrap_or_else(|| scope.start + op.rng().below(scope.end - scope.start));
        let npages = match op.rng().below(10) {
            0..=3 => 1,
            4..=6 => 2,
            _ => l.slot_pages,
        }
        .min(scope.end - page);
        let change = if op.rng().chance(0.75) {
            Change::Replace
        } else {
            Change::Protect
        };
        op.cx.op_args("page {a}, {b} page(s)", page, npages);
        let r = self.mmu.invalidate(page, npages, change, &mut |s, e| {
            self.gpc_walk(op, s, e);
            Ok(())
        });
        op.note(r);
    }

    /// The page of a valid shared cache inside `scope`, if any (the search starts at a
    /// random cache; read without a lock: the harness's choice of page).
    fn valid_shared_page(&self, op: &mut Op, scope: &Range<u64>) -> Option<u64> {
        let (l, n) = (self.params.layout, self.params.caches);
        let first = op.rng().index(n);
        (0..n)
            .map(|k| &self.caches[(first + k) % n])
            .filter(|c| c.valid.peek())
            .find_map(|c| l.hva_page(c.uhva.peek()).filter(|p| scope.contains(p)))
    }

    /// `gfn_to_pfn_cache_invalidate_start()`: under `gpc_lock`, each listed cache is
    /// tested under its read lock and, if its page is in range, invalidated under the
    /// write lock after a re-test (9fa336e3). Only `valid` is cleared.
    fn gpc_walk(&self, op: &mut Op, start: u64, end: u64) {
        let mut evict = Vec::new();
        self.gpc_lock.lock();
        let walked = if self.proto.slips.walk_whole_list {
            self.caches.len()
        } else {
            self.caches.len() - 1
        };
        for c in &self.caches[..walked] {
            if !c.on_list.load(Acquire) {
                continue;
            }
            let h = c.read_lock();
            if c.refresh_unlocked() {
                op.cover(cov::WALK_DURING_UNLOCKED_REFRESH);
            }
            if !c.active.peek() {
                op.cover(cov::WALK_LISTED_INACTIVE);
            }
            let hit = in_range(
                c.valid.load(Acquire),
                c.pfn.load(Acquire),
                c.uhva.load(Acquire),
                start,
                end,
            ) || self.flag_in_range(c, start, end);
            let uhva = c.uhva.load(Acquire);
            op.note(c.read_unlock(h));
            if uhva >= start && uhva < end {
                // The model's completion of 982ed0de: see `vcpu`'s "Eviction".
                evict.extend(self.guest_vcpu_of(c));
            }
            if !hit {
                continue;
            }
            // "There is a small window here where the cache could be modified".
            crate::window!("walk.read_to_write");
            if c.lock_readers() > 0 {
                op.cover(cov::WALK_WAITED_FOR_READERS);
            }
            let w = c.write_lock();
            let still = if self.proto.walk_recheck {
                in_range(
                    c.valid.load(Acquire),
                    c.pfn.load(Acquire),
                    c.uhva.load(Acquire),
                    start,
                    end,
                ) || self.flag_in_range(c, start, end)
            } else {
                // Measured for coverage only; the reverted protocol does not look.
                in_range(c.valid.peek(), c.pfn.peek(), c.uhva.peek(), start, end)
            };
            if !still {
                op.cover(cov::WALK_RECHECK_CHANGED);
            }
            if still || !self.proto.walk_recheck {
                if self.proto.needs_invalidation {
                    if !c.valid.load(Acquire) {
                        op.cover(cov::WALK_CLEARED_FLAG_INVALID);
                    }
                    c.set(op, Field::NeedsInvalidation, 0);
                }
                c.invalidations().begin();
                c.set(op, Field::Valid, 0);
                c.invalidations().end();
                c.record(op, "gpc{a}: valid = false (hva {b:x})", start, end);
                op.cover(cov::WALK_CLEARED_VALID);
            }
            c.write_unlock(w);
        }
        self.gpc_lock.unlock();
        self.evict_vcpus(op, &evict);
    }

    /// The proposed walk test: `needs_invalidation` and the uhva in range, whatever
    /// `valid` says (a refresh with the lock dropped has `valid` false).
    fn flag_in_range(&self, c: &Gpc, start: u64, end: u64) -> bool {
        let uhva = c.uhva.load(Acquire);
        self.proto.needs_invalidation && c.needs_invalidation.load(Acquire) && uhva >= start && uhva < end
    }

    /// A memslot update by the VMM. Slot 0 only changes generation (flags-only), so
    /// it always covers what `activate_hva` maps by default; the others are also
    /// deleted and re-created at their other userspace address.
    pub(super) fn memslot_update(&self, op: &mut Op) {
        let slot = op.rng().index(self.params.layout.slots);
        let st = self.mmu.slot(slot);
        let waited = if slot == 0 || (st.present && op.rng().chance(0.5)) {
            self.mmu.touch_slot()
        } else if st.present {
            op.event("delete memslot {a}", slot as u64, 0);
            self.mmu.delete_slot(slot)
        } else {
            op.event("create memslot {a} (layout {b})", slot as u64, 1 - st.alt as u64);
            self.mmu.create_slot(slot, 1 - st.alt)
        };
        if waited {
            op.cover(cov::SWAP_WAITED);
        }
    }
}

/// The walk's test: "Only a single page so no need to care about length".
fn in_range(valid: bool, pfn: u64, uhva: u64, start: u64, end: u64) -> bool {
    valid && pfn != PFN_ERR && uhva >= start && uhva < end
}
