//! A guest access: the stage-2 walk, or `kvm_handle_guest_abort()` →
//! `user_mem_abort()` (arch/arm64/kvm/mmu.c, v6.3).

use super::protocol::FaultRetry;
use super::slots::{A_PAGES, B_BASES, B_PAGES, C_BASE, C_PAGES};
use super::stage2::Mapped;
use super::{cov, Memslot, Op};
use crate::model::Violation;
use std::sync::atomic::Ordering::Relaxed;

impl Memslot {
    /// The vCPUs' bias: B's gfns (either base) and A's, which share B's table; C's
    /// rarely, so that C's table is often empty (change_pte's -ENOMEM path).
    fn pick_gfn(&self, op: &mut Op) -> u64 {
        match op.rng().below(400) {
            0..=199 => B_BASES[0] + op.rng().below(2 * B_PAGES),
            200..=398 => op.rng().below(A_PAGES),
            _ => C_BASE + op.rng().below(C_PAGES),
        }
    }

    /// One guest read of a random gfn.
    pub(super) fn guest_access(&self, op: &mut Op) {
        let gfn = self.pick_gfn(op);

        // ---- The hardware walk: a present leaf is used with no exit. ----
        // Read with the S6 oracle and the page's liveness as one step under mmu_lock
        // (read): a hit that raced (B)'s flush or a notifier's zap is not reported.
        self.inv.mmu_lock.read_lock();
        let leaf = self.stage2.lookup(gfn);
        let must_exit = self.stale[gfn as usize].load(Relaxed);
        let live = leaf.map(|l| {
            self.arena
                .state(l.pfn)
                .is_some_and(|s| s.allocated && s.gen == l.gen)
        });
        self.inv.mmu_lock.read_unlock();
        if let Some(leaf) = leaf {
            op.event("V guest read hits stage 2: gfn {a} pfn {b}", gfn, leaf.pfn);
            if must_exit {
                op.flag(Violation::new(
                    "S6",
                    format!(
                        "guest read of gfn {gfn} hit stage 2 (pfn {}) though its slot was flushed and no valid \
                         slot covers it: it must exit to the VMM (pflash status read bypasses QEMU)",
                        leaf.pfn
                    ),
                ));
            }
            if live == Some(false) {
                op.flag(
                    Violation::new(
                        "S7",
                        format!(
                            "guest read of gfn {gfn} reached pfn {} (gen {}), a page the host freed",
                            leaf.pfn, leaf.gen
                        ),
                    )
                    .with_state(self.arena.describe(leaf.pfn)),
                );
            }
            return;
        }

        // ---- kvm_handle_guest_abort() ----
        let idx = self.slots.srcu.read_lock();
        let snap = self.slots.active();
        // memslot = gfn_to_memslot(); hva = gfn_to_hva_memslot_prot();
        let slot = snap.lookup(gfn);
        match slot {
            Some(s) if !s.invalid => {}
            _ => {
                // kvm_is_error_hva(hva): io_mem_abort(), the VMM emulates the access.
                if slot.is_some() {
                    op.cover(cov::MMIO_EXIT_INVALID);
                }
                if must_exit {
                    op.cover(cov::STALE_ACCESS_EXIT);
                }
                op.event("V MMIO exit (no slot or INVALID) gfn {a}", gfn, 0);
                self.slots.srcu.read_unlock(idx);
                return;
            }
        }
        let slot = slot.expect("matched above");
        crate::window!("vcpu.between_slot_lookup_and_fault");

        // ---- user_mem_abort() ----
        // mmu_seq = vcpu->kvm->mmu_invalidate_seq; (smp_rmb)
        let mmu_seq = self.inv.seq();
        // pfn = __gfn_to_pfn_memslot(...): GUP with a reference.
        let Some(pfn) = op.note(
            self.host
                .gup(&self.arena, slot.host_page(gfn), "user_mem_abort GUP"),
        ) else {
            self.slots.srcu.read_unlock(idx);
            return;
        };
        crate::window!("vcpu.between_gup_and_retry_check");
        self.inv.mmu_lock.read_lock();
        // if (mmu_invalidate_retry(kvm, mmu_seq)) goto out_unlock;
        let retry = match self.proto.fault_retry {
            FaultRetry::InProgressAndSeq => self.inv.retry(mmu_seq, true),
            FaultRetry::SeqOnly => self.inv.retry(mmu_seq, false),
            FaultRetry::Never => false,
        };
        if retry {
            op.cover(cov::FAULT_RETRY);
            self.inv.mmu_lock.read_unlock();
        } else {
            if !self.proto.fault_maps_under_lock {
                self.inv.mmu_lock.read_unlock();
                crate::window!("vcpu.mapping_after_unlock");
            }
            // kvm_pgtable_stage2_map(pgt, fault_ipa, ..., memcache, ...)
            let mapped = self.stage2.map(gfn, self.leaf_of(pfn), true);
            debug_assert_eq!(mapped, Mapped::Installed, "a fault has a memcache");
            op.event("V fault maps stage-2 leaf gfn {a} pfn {b}", gfn, pfn);
            self.check_install(op, &slot, gfn, "user_mem_abort");
            if self.proto.fault_maps_under_lock {
                self.inv.mmu_lock.read_unlock();
            }
        }
        // kvm_release_pfn_clean(pfn);
        self.release_page(op, pfn, "user_mem_abort release", false);
        self.slots.srcu.read_unlock(idx);
    }
}
