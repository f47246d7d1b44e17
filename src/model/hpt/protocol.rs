//! Which protocol steps a variant has: the fixed protocol, with the three checks of
//! 38c53af85306 taken out (the historical race) or one step slipped (a mutant).
//!
//! Each flag is one step of the kernel path; checks never read these flags.

/// The steps of the fixed path that a variant can lack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checks {
    /// B1: setup-if-not-ready inside the run loop (`kvmppc_run_vcpu`), not once per
    /// KVM_RUN in `kvmppc_vcpu_run_hv`.
    pub setup_in_loop: bool,
    /// B2: `!mmu_ready` in the interrupts-off re-check of `kvmppc_run_core`.
    pub irqoff_recheck: bool,
    /// B3: `mmu_ready` checked under the HPTE lock in `kvmppc_book3s_hv_page_fault`.
    pub fault_recheck: bool,
    /// `kvmppc_book3s_hv_page_fault()` tests `mmu_invalidate_retry()` after
    /// `lock_rmap()`; the mutant tests it just before taking the rmap lock.
    pub fault_retry_under_rmap_lock: bool,
    /// The fault snapshots `mmu_invalidate_seq` (then `smp_rmb()`) before it looks
    /// the page up; the mutant snapshots it after `get_user_pages`.
    pub seq_before_gup: bool,
    /// `kvmppc_do_h_enter()` writes an ABSENT entry if `mmu_invalidate_retry()` says
    /// so under the rmap lock; the mutant drops that test.
    pub h_enter_retry: bool,
    /// `kvm_unmap_gfn_range_hv()` walks `[start, end)`; the mutant stops one gfn short.
    pub unmap_whole_range: bool,
    /// `kvm_unmap_rmapp()` retries a chain member whose HPTE is locked; the mutant gives
    /// up on the page instead of waiting.
    pub unmap_waits_for_hpte: bool,
    /// `resize_hpt_boot_vcpu` is IPIed to every CPU; the mutant's loop misses the last vCPU.
    pub ipi_every_vcpu: bool,
    /// `kvmppc_run_core()` disables interrupts *before* re-checking `mmu_ready`; the
    /// mutant marks the vCPU interrupts-off only after the re-check passed.
    pub irq_off_before_recheck: bool,
}

impl Checks {
    const FIXED: Checks = Checks {
        setup_in_loop: true,
        irqoff_recheck: true,
        fault_recheck: true,
        fault_retry_under_rmap_lock: true,
        seq_before_gup: true,
        h_enter_retry: true,
        unmap_whole_range: true,
        unmap_waits_for_hpte: true,
        ipi_every_vcpu: true,
        irq_off_before_recheck: true,
    };

    /// The steps of variant `name` (see the descriptor's variants).
    pub fn of(name: &str) -> Result<Checks, String> {
        let f = Self::FIXED;
        Ok(match name {
            "fixed" => f,
            "buggy" => Checks {
                setup_in_loop: false,
                irqoff_recheck: false,
                fault_recheck: false,
                ..f
            },
            "mut-fault-retry-before-rmap-lock" => Checks {
                fault_retry_under_rmap_lock: false,
                ..f
            },
            "mut-seq-after-gup" => Checks {
                seq_before_gup: false,
                ..f
            },
            "mut-h-enter-no-retry" => Checks {
                h_enter_retry: false,
                ..f
            },
            "mut-unmap-range-short" => Checks {
                unmap_whole_range: false,
                ..f
            },
            "mut-unmap-skips-busy-hpte" => Checks {
                unmap_waits_for_hpte: false,
                ..f
            },
            "mut-ipi-skips-last-vcpu" => Checks {
                ipi_every_vcpu: false,
                ..f
            },
            "mut-irq-off-after-recheck" => Checks {
                irq_off_before_recheck: false,
                ..f
            },
            other => return Err(format!("hpt has no variant `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_steps() {
        for v in super::super::DESC.variants {
            Checks::of(v.name).unwrap();
        }
        assert!(Checks::of("nonsense").is_err());
    }
}
