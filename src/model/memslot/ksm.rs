//! The primary MMU's side (mm/ksm.c before v6.10, and KSM's COW breaking in
//! mm/memory.c): every host pte change inside an invalidate_range_start/end bracket,
//! each through `set_pte_at_notify()`.

use super::slots::{A_PAGES, B_PAGES};
use super::{cov, Memslot, Op};

impl Memslot {
    /// KSM's bias: B's memory (the pflash) most of the time, A's otherwise.
    fn pick_host_page(&self, op: &mut Op) -> u64 {
        if op.rng().chance(0.6) {
            A_PAGES + op.rng().below(B_PAGES)
        } else {
            op.rng().below(A_PAGES)
        }
    }

    /// `try_to_merge_one_page()`: `write_protect_page()` then `replace_page()`, each
    /// in its own bracket with `set_pte_at_notify()` (change_pte, then the pte store),
    /// and the merged-away page dropped only after the second `range_end`.
    pub(super) fn ksm_merge(&self, op: &mut Op) {
        let h = self.pick_host_page(op);
        let kpage = self.ksm_page;
        // get_mergeable_page(): follow_page() + get_page().
        let Some(page) = op.note(self.host.gup(&self.arena, h, "KSM get_mergeable_page")) else {
            return;
        };
        if page == kpage {
            op.note(self.arena.put(page, "KSM: already merged"));
            return;
        }
        op.event("K merge: bracket 1 write_protect_page hva {a} page {b}", h, page);

        // ---- write_protect_page(): bracket 1 ----
        self.range_start(op, h);
        crate::window!("ksm.after_range_start");
        // page_vma_mapped_walk() takes the pte lock; the pte must still map the page.
        self.host.lock(h);
        if self.host.get(h) != page {
            self.host.unlock(h);
            self.range_end(op, h);
            op.note(self.arena.put(page, "KSM write_protect_page: pte changed"));
            return;
        }
        // entry = ptep_clear_flush(vma, pvmw.address, pvmw.pte);
        let old = self.host.clear(h);
        op.event("K ptep_clear_flush hva {a} (was page {b})", h, old);
        if op.rng().chance(0.1) {
            // page_mapcount() + 1 + swapped != page_count(): set_pte_at(entry), bail.
            self.host.set(h, old);
            self.host.unlock(h);
            self.range_end(op, h);
            op.note(self.arena.put(page, "KSM mapcount check failed"));
            return;
        }
        // set_pte_at_notify(mm, address, pvmw.pte, pte_wrprotect(entry)):
        self.change_pte(op, h, old);
        crate::window!("ksm.between_change_pte_and_set_pte");
        self.host.set(h, old);
        self.host.unlock(h);
        self.range_end(op, h);
        crate::window!("ksm.between_brackets");

        // ---- replace_page(): bracket 2 ----
        op.event("K merge: bracket 2 replace_page hva {a} with kpage {b}", h, kpage);
        self.range_start(op, h);
        crate::window!("ksm.after_range_start");
        self.host.lock(h);
        if self.host.get(h) != page {
            // !pte_same(*ptep, orig_pte): someone changed it in between.
            self.host.unlock(h);
            self.range_end(op, h);
            op.note(self.arena.put(page, "KSM replace_page: pte changed"));
            return;
        }
        // get_page(kpage); page_add_anon_rmap(kpage, ...);
        op.note(self.arena.map_host(kpage, "KSM replace_page"));
        // ptep_clear_flush(); set_pte_at_notify(mm, addr, ptep, newpte);
        self.host.clear(h);
        self.change_pte(op, h, kpage);
        crate::window!("ksm.between_change_pte_and_set_pte");
        self.host.set(h, kpage);
        // page_remove_rmap(page); put_page(page); pte_unmap_unlock();
        op.note(self.arena.unmap_host(page, "KSM replace_page"));
        self.host.unlock(h);
        self.range_end(op, h);
        crate::window!("ksm.between_range_end_and_put");

        // try_to_merge_one_page()'s caller drops the reference get_mergeable_page took:
        // the merged-away page is freed here if nobody else holds it.
        if self.release_page(op, page, "KSM put merged-away page", false) {
            op.cover(cov::PAGE_FREED_AFTER_MERGE);
            op.event("K frees merged-away page {b} (hva {a})", h, page);
        }
    }

    /// Unmerge of host page `h`: `break_ksm()` → `handle_mm_fault(FAULT_FLAG_UNSHARE)`
    /// → `do_wp_page()` → `wp_page_copy()` (mm/memory.c, v6.4–v6.9). One bracket that
    /// replaces the page with a fresh copy if the pte is still the one the fault saw
    /// (`pte_same()` under the pte lock, which is what keeps it from undoing a
    /// concurrent `replace_page()`), the old page dropped after `range_end`.
    ///
    /// `wp_page_copy()` stores the new pte with `set_pte_at_notify()`, as KSM's
    /// brackets do: after `ptep_clear_flush()`, change_pte maps the fresh page in
    /// stage 2 before the pte store (a plain `set_pte_at()` since f7842747d13d, v6.10:
    /// the `removed` variant). Leaving it out let a merge's change_pte that ran inside
    /// this bracket (its `range_start` had already zapped) keep its leaf after this
    /// pte store, a stale leaf no invalidation removes (Q2, or S7 when the merged-away
    /// page is freed). munmap is not this op: `do_vmi_align_munmap()` detaches the VMA
    /// under `mmap_write_lock`, so no KSM bracket (`find_mergeable_vma()` under
    /// `mmap_read_lock`) runs on its hvas inside its zap; a zap under `mmap_read_lock`
    /// (`MADV_DONTNEED`), which clears the pte with no change_pte, is not modelled.
    pub(super) fn unmerge(&self, op: &mut Op) {
        let h = self.pick_host_page(op);
        let orig = self.host.get(h);
        let Some(fresh) = self.arena.alloc_mapped("fresh anonymous page") else {
            return;
        };
        self.range_start(op, h);
        crate::window!("unmerge.after_range_start");
        self.host.lock(h);
        if self.host.get(h) != orig {
            // !pte_same(): someone else changed it; the fault is retried.
            self.host.unlock(h);
            self.range_end(op, h);
            self.release_page(op, fresh, "unmerge: pte changed, drop the copy", true);
            return;
        }
        // ptep_clear_flush(vma, vmf->address, vmf->pte);
        let old = self.host.clear(h);
        // set_pte_at_notify(mm, vmf->address, vmf->pte, entry): change_pte, then the store.
        self.change_pte(op, h, fresh);
        crate::window!("unmerge.between_change_pte_and_set_pte");
        self.host.set(h, fresh);
        self.host.unlock(h);
        self.range_end(op, h);
        op.event("K unmerge replaced page {b} at hva {a}", h, old);
        // wp_page_copy() puts the old page (folio_put(old_folio)) after range_end.
        self.release_page(op, old, "unmerge: drop old page", true);
    }
}
