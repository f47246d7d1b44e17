//! `kvm_set_memslot()` (virt/kvm/kvm_main.c, v6.3) for slot B: CREATE, DELETE, MOVE.

use super::slots::{Slot, Slots, A_PAGES, B_BASES, B_PAGES, GEN_UPDATE_IN_PROGRESS, SLOT_B};
use super::{cov, Memslot, Op};
use crate::model::Violation;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// The change a `kvm_set_memslot()` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Create(Slot),
    Delete(Slot),
    Move(Slot, Slot),
}

impl Memslot {
    /// DELETE B if it is present, else CREATE it at a random base.
    pub(super) fn memslot_toggle(&self, op: &mut Op) {
        self.slots.slots_lock.lock();
        let change = match self.slots.active().find(SLOT_B) {
            Some(b) => Change::Delete(b),
            None => {
                let base = B_BASES[op.rng().index(2)];
                Change::Create(Slot::new(SLOT_B, base, B_PAGES, A_PAGES))
            }
        };
        self.set_memslot(op, change);
        self.slots.slots_lock.unlock();
    }

    /// MOVE B to its other base (if B is present).
    pub(super) fn memslot_move(&self, op: &mut Op) {
        self.slots.slots_lock.lock();
        if let Some(b) = self.slots.active().find(SLOT_B) {
            let base = if b.base_gfn == B_BASES[0] {
                B_BASES[1]
            } else {
                B_BASES[0]
            };
            self.set_memslot(op, Change::Move(b, Slot { base_gfn: base, ..b }));
        }
        self.slots.slots_lock.unlock();
    }

    /// `kvm_set_memslot()`, with `slots_lock` held.
    fn set_memslot(&self, op: &mut Op, change: Change) {
        // mutex_lock(&kvm->slots_arch_lock);
        self.slots.slots_arch_lock.lock();
        // if (change == KVM_MR_DELETE || change == KVM_MR_MOVE) kvm_invalidate_memslot(...)
        let old = match change {
            Change::Delete(old) | Change::Move(old, _) => {
                self.invalidate_memslot(op, old);
                Some(old)
            }
            Change::Create(_) => None,
        };
        // kvm_prepare_memory_region(): nothing to model on arm64 for these changes.
        // kvm_create_memslot / kvm_delete_memslot / kvm_move_memslot: edit the
        // inactive array, then kvm_activate_memslot() → kvm_swap_active_memslots().
        self.swap_active_memslots(op, |slots| {
            slots.retain(|s| s.id != SLOT_B);
            match change {
                Change::Create(new) | Change::Move(_, new) => slots.push(new),
                Change::Delete(_) => {}
            }
        });
        self.update_in_flight.store(false, Relaxed);
        op.event(
            match change {
                Change::Create(_) => "U CREATE B published",
                Change::Delete(_) => "U DELETE B (base gfn {a}): final swap published the array without B",
                Change::Move(..) => "U MOVE B (old base gfn {a}): final swap published the moved slot",
            },
            old.map_or(0, |o| o.base_gfn),
            0,
        );
        // kvm_commit_memory_region(); the INVALID copy is freed. S2 on return.
        if let Some(old) = old {
            self.check_flushed(op, old);
        }
    }

    /// `kvm_invalidate_memslot()`: publish an INVALID copy (A), then
    /// `kvm_arch_flush_shadow_memslot()` (B); retake `slots_arch_lock`.
    fn invalidate_memslot(&self, op: &mut Op, old: Slot) {
        if self.proto.flush_invalid_slot && !self.proto.flush_after_swap {
            self.flush_shadow_memslot(op, old);
        }
        // kvm_copy_memslot(invalid_slot, old); invalid_slot->flags |= KVM_MEMSLOT_INVALID;
        // kvm_replace_memslot(kvm, old, invalid_slot); kvm_swap_active_memslots();
        self.swap_active_memslots(op, |slots| {
            for s in slots.iter_mut().filter(|s| s.id == old.id) {
                s.invalid = true;
            }
        });
        self.update_in_flight.store(true, Relaxed);
        op.event(
            "U (A) kvm_swap_active_memslots published INVALID B (base gfn {a})",
            old.base_gfn,
            0,
        );
        crate::window!("memslot.between_swap_A_and_flush_B");
        if self.proto.flush_invalid_slot && self.proto.flush_after_swap {
            self.flush_shadow_memslot(op, old);
        }
        crate::window!("memslot.between_flush_B_and_final_swap");
        // mutex_lock(&kvm->slots_arch_lock);
        self.slots.slots_arch_lock.lock();
    }

    /// arm64 `kvm_arch_flush_shadow_memslot()`: unmap the slot's stage-2 range under
    /// `mmu_lock` (write). Touches neither seq nor in_progress.
    fn flush_shadow_memslot(&self, op: &mut Op, old: Slot) {
        self.inv.mmu_lock.write_lock();
        let cleared = self.stage2.unmap(old.gfns());
        for g in old.gfns() {
            self.stale[g as usize].store(true, Relaxed);
        }
        self.inv.mmu_lock.write_unlock();
        op.event(
            "U (B) kvm_arch_flush_shadow_memslot unmapped B (base gfn {a}): {b} leaves",
            old.base_gfn,
            cleared as u64,
        );
    }

    /// `kvm_swap_active_memslots()` with `slots_arch_lock` held (released inside):
    /// the inactive array gets `edit` and `gen | IN_PROGRESS`, is published once
    /// `mn_active_invalidate_count` is zero, SRCU readers are waited for, and the
    /// final generation is stored.
    fn swap_active_memslots(&self, op: &mut Op, edit: impl FnOnce(&mut Vec<Slot>)) {
        let cur = self.slots.active();
        let gen = cur.generation.load(Acquire);
        let mut slots = cur.slots.clone();
        edit(&mut slots);
        let next = self.slots.fill_inactive(gen, slots);
        let (slept, _) = self.inv.publish_when_idle(self.proto.swap_waits, || {
            self.unmark_stale(&next);
            self.slots.flip();
        });
        if slept {
            op.cover(cov::SWAP_WAITED);
        }
        // mutex_unlock(&kvm->slots_arch_lock);
        self.slots.slots_arch_lock.unlock();
        // synchronize_srcu_expedited(&kvm->srcu);
        if self.proto.synchronize_srcu {
            self.slots.srcu.synchronize();
        }
        // gen = slots->generation & ~IN_PROGRESS; gen += KVM_ADDRESS_SPACE_NUM;
        next.generation
            .store((gen & !GEN_UPDATE_IN_PROGRESS) + 1, Release);
    }

    /// Ghost (S6): a published array's valid slots make their gfns reachable again.
    fn unmark_stale(&self, next: &Slots) {
        for s in next.slots.iter().filter(|s| !s.invalid) {
            for g in s.gfns() {
                self.stale[g as usize].store(false, Relaxed);
            }
        }
    }

    /// S2, when DELETE/MOVE returns, under `mmu_lock` (write): no leaf in the old
    /// range except where a valid slot of the active array covers the gfn.
    fn check_flushed(&self, op: &mut Op, old: Slot) {
        self.inv.mmu_lock.write_lock();
        let active = self.slots.active();
        let left = old
            .gfns()
            .find(|&g| self.stage2.lookup(g).is_some() && active.valid_at(g).is_none());
        self.inv.mmu_lock.write_unlock();
        if let Some(g) = left {
            op.flag(Violation::new(
                "S2",
                format!(
                    "DELETE/MOVE of slot {} [gfn {}, {}) returned with a stage-2 leaf at gfn {g}, which no valid slot covers",
                    old.id,
                    old.base_gfn,
                    old.base_gfn + old.npages
                ),
            ));
        }
    }
}
