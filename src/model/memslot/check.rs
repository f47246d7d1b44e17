//! The invariants that read state (spec "Invariants"): S1 at every leaf install, S7
//! when a page is freed, S8 after an invalidation's unmap, and the quiescent Q1–Q3. S2 is in the updater, S3 in
//! change_pte, S5 at every counter decrement, S6 and the access side of S7 in the
//! guest access. None of them knows which variant runs.

use super::slots::{Slot, GEN_UPDATE_IN_PROGRESS};
use super::{Memslot, Op};
use crate::model::mem::Pfn;
use crate::model::Violation;
use std::fmt::Write;

impl Memslot {
    /// S8, right after `kvm_unmap_gfn_range()` of an invalidation, `mmu_lock` still
    /// held for write (no fault or change_pte can map meanwhile): the range has no
    /// leaf. Once every host pte change ran change_pte (`wp_page_copy()`'s
    /// `set_pte_at_notify()`), a leaf an unmap left behind was mostly remapped by the
    /// bracket's own change_pte before anything read it, so S7 and Q2 saw a short
    /// unmap in one 10 s run of four; this sees it at the unmap.
    pub(super) fn check_unmapped(&self, op: &mut Op, slot: &Slot, gfn: u64) {
        if let Some(leaf) = self.stage2.lookup(gfn) {
            op.flag(Violation::new(
                "S8",
                format!(
                    "kvm_unmap_gfn_range of gfn {gfn} (slot {}) returned with a stage-2 leaf still \
                     there (pfn {}): the invalidation's range is not unmapped",
                    slot.id, leaf.pfn
                ),
            ));
        }
    }

    /// S1, at a leaf install under `mmu_lock`: the gfn is covered by a non-INVALID
    /// slot *in the mapper's own SRCU snapshot* (`slot` comes from it).
    pub(super) fn check_install(&self, op: &mut Op, slot: &Slot, gfn: u64, who: &'static str) {
        if slot.invalid || !slot.covers(gfn) {
            op.flag(Violation::new(
                "S1",
                format!(
                    "{who} installed a stage-2 leaf at gfn {gfn} for slot {} [gfn {}, {}), which its own \
                     SRCU snapshot shows {}",
                    slot.id,
                    slot.base_gfn,
                    slot.base_gfn + slot.npages,
                    if slot.invalid {
                        "INVALID (being deleted)"
                    } else {
                        "not covering it"
                    }
                ),
            ));
        }
    }

    /// Drops a reference on `pfn` (its host mapping too if `mapping`), and S7: if
    /// that freed the page, no stage-2 leaf may still map it. Returns whether it freed.
    pub(super) fn release_page(&self, op: &mut Op, pfn: Pfn, why: &'static str, mapping: bool) -> bool {
        let gen = self.arena.state(pfn).map_or(0, |s| s.gen);
        let r = if mapping {
            self.arena.unmap_host(pfn, why)
        } else {
            self.arena.put(pfn, why)
        };
        op.note(r);
        let freed = self
            .arena
            .state(pfn)
            .is_some_and(|s| !s.allocated || s.gen != gen);
        if freed {
            if let Some(gfn) = self.stage2.mapping_of(pfn, gen) {
                op.flag(
                    Violation::new(
                        "S7",
                        format!("{why}: pfn {pfn} (gen {gen}) freed while stage-2 gfn {gfn} still maps it"),
                    )
                    .with_state(format!(
                        "{}{}",
                        self.arena.describe(pfn),
                        self.stage2.describe()
                    )),
                );
            }
        }
        freed
    }

    /// Q1–Q3 with every worker parked at an op boundary.
    pub(super) fn quiescent(&self) -> Result<(), Violation> {
        // Q1: no invalidation in flight, no update in progress, no lock held.
        let (count, in_progress, _) = self.inv.peek();
        let active = self.slots.peek_active();
        let gen = active.generation.peek();
        if count != 0 || in_progress != 0 || gen & GEN_UPDATE_IN_PROGRESS != 0 {
            return Err(Violation::new(
                "Q1",
                format!(
                    "at rest mn_active_invalidate_count = {count}, mmu_invalidate_in_progress = {in_progress}, \
                     memslot generation {gen:#x}"
                ),
            )
            .with_state(self.dump_state()));
        }
        let held = [
            self.inv.held_lock(),
            self.slots.slots_lock.is_locked().then_some("slots_lock"),
            self.slots
                .slots_arch_lock
                .is_locked()
                .then_some("slots_arch_lock"),
            (self.slots.srcu.active_readers() != 0).then_some("kvm->srcu (a reader)"),
            self.host.held_ptl().map(|_| "a host pte lock"),
        ];
        if let Some(what) = held.into_iter().flatten().next() {
            return Err(Violation::new("Q1", format!("at rest {what} is still held")));
        }
        // Q2: every leaf lies in a valid active slot and maps what the host maps there.
        for (gfn, leaf) in self.stage2.leaves() {
            let Some(slot) = active.valid_at(gfn) else {
                return Err(Violation::new(
                    "Q2",
                    format!(
                        "at rest stage-2 gfn {gfn} is mapped (pfn {}) but no valid slot covers it",
                        leaf.pfn
                    ),
                )
                .with_state(self.dump_state()));
            };
            let host = self.host.peek(slot.host_page(gfn));
            if host != leaf.pfn {
                return Err(Violation::new(
                    "Q2",
                    format!(
                        "at rest stage-2 gfn {gfn} maps pfn {} but the host maps pfn {host} at its hva {:#x}",
                        leaf.pfn,
                        slot.hva() + (gfn - slot.base_gfn) * crate::model::mem::PAGE_SIZE
                    ),
                )
                .with_state(self.dump_state()));
            }
        }
        // Q3: table bookkeeping.
        self.stage2
            .check_tables()
            .map_err(|m| Violation::new("Q3", m).with_state(self.dump_state()))
    }

    pub(super) fn dump_state(&self) -> String {
        let (count, in_progress, seq) = self.inv.peek();
        let active = self.slots.peek_active();
        let mut s = format!(
            "mn_active_invalidate_count {count} mmu_invalidate_in_progress {in_progress} mmu_invalidate_seq {seq}\n\
             memslots: generation {:#x}",
            active.generation.peek()
        );
        for slot in &active.slots {
            let _ = write!(
                s,
                " | slot{} gfn [{}, {}) host page {}{}",
                slot.id,
                slot.base_gfn,
                slot.base_gfn + slot.npages,
                slot.hva_page,
                if slot.invalid { " INVALID" } else { "" }
            );
        }
        let stale: Vec<usize> = (0..self.stale.len())
            .filter(|&g| self.stale[g].load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let _ = write!(s, "\nmust exit to MMIO (S6): gfns {stale:?}\n");
        s.push_str(&self.stage2.describe());
        s.push_str("host page table:");
        for h in 0..self.host.pages() {
            let _ = write!(s, " {h}->{}", self.host.peek(h));
        }
        let _ = writeln!(s, " (KSM page {})", self.ksm_page);
        s
    }
}
