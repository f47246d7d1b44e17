//! KVM's mmu-notifier callbacks and the arm64 handlers they run
//! (virt/kvm/kvm_main.c v6.3, arch/arm64/kvm/mmu.c).

use super::protocol::ChangePte;
use super::slots::Slot;
use super::stage2::{Leaf, Mapped};
use super::{cov, Memslot, Op};
use crate::model::mem::Pfn;
use crate::model::notifier::Underflow;
use crate::model::Violation;
use std::sync::atomic::Ordering::Relaxed;

/// What `__kvm_handle_hva_range()` runs: its `on_lock` and per-slot `handler`.
#[derive(Clone, Copy)]
enum Handler {
    /// range_start: `kvm_mmu_invalidate_begin` + `kvm_unmap_gfn_range`.
    Unmap,
    /// range_end: `kvm_mmu_invalidate_end`, no handler.
    End,
    /// change_pte: the variant's handler with the new pte's page.
    ChangePte(Pfn),
}

fn s5(u: Underflow) -> Violation {
    Violation::new("S5", format!("{} went below zero (BUG_ON)", u.0))
}

impl Memslot {
    /// `kvm_mmu_notifier_invalidate_range_start()` for host page `page`.
    pub(super) fn range_start(&self, op: &mut Op, page: u64) {
        // spin_lock(&kvm->mn_invalidate_lock); kvm->mn_active_invalidate_count++; ...
        self.inv.count_up();
        if self.update_in_flight.load(Relaxed) {
            op.cover(cov::BRACKET_OVERLAPPED_DELETE);
        }
        // __kvm_handle_hva_range(kvm, &hva_range): begin + kvm_unmap_gfn_range.
        self.handle_hva_range(op, page, Handler::Unmap);
        op.event(
            "K range_start hva {a}: count++, in_progress++ if a slot overlaps",
            page,
            0,
        );
    }

    /// `kvm_mmu_notifier_invalidate_range_end()`.
    pub(super) fn range_end(&self, op: &mut Op, page: u64) {
        // __kvm_handle_hva_range(kvm, &hva_range): kvm_mmu_invalidate_end under mmu_lock.
        self.handle_hva_range(op, page, Handler::End);
        // --mn_active_invalidate_count; rcuwait_wake_up() at zero.
        let r = self.inv.count_down().map_err(s5);
        op.note(r);
        op.event(
            "K range_end hva {a}: seq++, in_progress--, count-- and wake",
            page,
            0,
        );
    }

    /// `kvm_mmu_notifier_change_pte()` (v5.15–v6.9), called from `set_pte_at_notify()`
    /// *before* the pte store.
    pub(super) fn change_pte(&self, op: &mut Op, page: u64, pfn: Pfn) {
        if self.proto.change_pte == ChangePte::Removed {
            // f7842747d13d: set_pte_at_notify() is plain set_pte_at().
            return;
        }
        // WARN_ON_ONCE(!READ_ONCE(kvm->mn_active_invalidate_count));
        if self.inv.count() == 0 {
            op.flag(Violation::new(
                "S3",
                format!("change_pte of host page {page} outside any invalidate_range_start/end"),
            ));
        }
        // if (!READ_ONCE(kvm->mmu_invalidate_in_progress)) return;  (071064f14d87)
        if self.inv.in_progress() == 0 {
            return;
        }
        op.cover(cov::CHANGE_PTE_WALKED);
        op.event("K change_pte hva {a} to pfn {b} (before set_pte_at)", page, pfn);
        self.handle_hva_range(op, page, Handler::ChangePte(pfn));
    }

    /// `__kvm_handle_hva_range()` of the one-page range at `page`: under SRCU, every
    /// slot of the active array whose userspace range overlaps it (INVALID slots
    /// count); `mmu_lock` for write and `on_lock` at the first, then the handler.
    fn handle_hva_range(&self, op: &mut Op, page: u64, h: Handler) {
        let idx = self.slots.srcu.read_lock();
        let snap = self.slots.active();
        let hits: Vec<(Slot, u64)> = snap
            .slots
            .iter()
            .filter_map(|s| s.gfn_of(page).map(|g| (*s, g)))
            .collect();
        if !hits.is_empty() {
            // cd4c71835228 moved arm64's dcache clean after the slot iteration,
            // widening the window between the slot lookup and the handler.
            crate::window!("hva_range.between_slot_lookup_and_mmu_lock");
            self.inv.mmu_lock.write_lock();
            match h {
                Handler::Unmap => self.inv.begin(),
                Handler::End => {
                    let r = self.inv.end(self.proto.end_bumps_seq).map_err(s5);
                    op.note(r);
                }
                Handler::ChangePte(_) => {}
            }
            for (slot, gfn) in hits {
                match h {
                    Handler::Unmap => {
                        self.unmap_gfn_range(gfn);
                        self.check_unmapped(op, &slot, gfn);
                    }
                    Handler::End => break,
                    Handler::ChangePte(pfn) => self.change_spte(op, &slot, gfn, pfn),
                }
            }
            self.inv.mmu_lock.write_unlock();
        }
        self.slots.srcu.read_unlock(idx);
    }

    /// `kvm_unmap_gfn_range()` of one gfn (arm64: `__unmap_stage2_range()`).
    fn unmap_gfn_range(&self, gfn: u64) {
        let end = if self.proto.unmap_whole_range {
            gfn + 1
        } else {
            gfn
        };
        self.stage2.unmap(gfn..end);
    }

    /// The change_pte handler for one slot: `kvm_set_spte_gfn()` (v6.3), the
    /// 2230f9e1171a `kvm_change_spte_gfn()`, or x86's rewrite-only handler.
    fn change_spte(&self, op: &mut Op, slot: &Slot, gfn: u64, pfn: Pfn) {
        if slot.invalid {
            op.cover(cov::CHANGE_PTE_INVALID);
        }
        match self.proto.change_pte {
            ChangePte::SetSpte => self.set_spte_gfn(op, slot, gfn, pfn),
            ChangePte::SkipInvalid => {
                // if (range->slot->flags & KVM_MEMSLOT_INVALID) return false;
                if !slot.invalid {
                    self.set_spte_gfn(op, slot, gfn, pfn);
                }
            }
            ChangePte::RewriteOnly => {
                let leaf = self.leaf_of(pfn);
                if self.stage2.rewrite(gfn, leaf) {
                    self.check_install(op, slot, gfn, "change_pte rewrite");
                }
            }
            ChangePte::Removed => {}
        }
    }

    /// arm64 `kvm_set_spte_gfn()`: `kvm_pgtable_stage2_map()` with a NULL memcache.
    fn set_spte_gfn(&self, op: &mut Op, slot: &Slot, gfn: u64, pfn: Pfn) {
        match self.stage2.map(gfn, self.leaf_of(pfn), false) {
            Mapped::Installed => {
                op.cover(cov::SPTE_TABLE_PRESENT);
                op.event(
                    "K kvm_set_spte_gfn installs stage-2 leaf (C) gfn {a} pfn {b}",
                    gfn,
                    pfn,
                );
                self.check_install(op, slot, gfn, "kvm_set_spte_gfn");
            }
            Mapped::NoTable => op.cover(cov::SPTE_ENOMEM),
        }
    }

    /// A stage-2 leaf for `pfn`, a page the caller holds a reference on.
    pub(super) fn leaf_of(&self, pfn: Pfn) -> Leaf {
        let gen = self.arena.state(pfn).map_or(0, |s| s.gen);
        Leaf { pfn, gen }
    }
}
