//! Which protocol steps a variant has. Checks never read these.

/// What `kvm_mmu_notifier_change_pte()` does with each overlapping memslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangePte {
    /// v5.15–v6.3 (d5d8184d35c9 … 2230f9e1171a^): `kvm_set_spte_gfn()` for every
    /// overlapping slot, INVALID ones included.
    SetSpte,
    /// 2230f9e1171a (v6.4–v6.9): `kvm_change_spte_gfn()` skips an INVALID slot.
    SkipInvalid,
    /// v6.10+ (f3b65bbaed7c, 997308f9ae72, f7842747d13d): no `.change_pte` at all.
    Removed,
    /// x86's `kvm_set_pte_rmap()`: rewrites existing sptes only, never installs one.
    RewriteOnly,
}

/// How `user_mem_abort()` decides to retry after `mmu_lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultRetry {
    /// `mmu_invalidate_retry()`: in_progress, then the sequence.
    InProgressAndSeq,
    /// Mutant: the sequence only.
    SeqOnly,
    /// Mutant: no retry test.
    Never,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Protocol {
    pub change_pte: ChangePte,
    /// 52ac8b358b0c: the swap waits for `mn_active_invalidate_count == 0`.
    pub swap_waits: bool,
    pub fault_retry: FaultRetry,
    /// The fault installs its leaf before dropping `mmu_lock` (mutant: after).
    pub fault_maps_under_lock: bool,
    /// `kvm_mmu_invalidate_end()` bumps `mmu_invalidate_seq`.
    pub end_bumps_seq: bool,
    /// `kvm_unmap_gfn_range()` covers the whole gfn range (mutant: one short).
    pub unmap_whole_range: bool,
    /// `kvm_invalidate_memslot()` calls `kvm_arch_flush_shadow_memslot()`.
    pub flush_invalid_slot: bool,
    /// ... and flushes only after the INVALID copy is published (mutant: before).
    pub flush_after_swap: bool,
    /// `kvm_swap_active_memslots()` calls `synchronize_srcu_expedited()`.
    pub synchronize_srcu: bool,
}

impl Protocol {
    /// v6.4–v6.9: the 2230f9e1171a handler, every other step as in mainline.
    const SKIP_INVALID: Protocol = Protocol {
        change_pte: ChangePte::SkipInvalid,
        swap_waits: true,
        fault_retry: FaultRetry::InProgressAndSeq,
        fault_maps_under_lock: true,
        end_bumps_seq: true,
        unmap_whole_range: true,
        flush_invalid_slot: true,
        flush_after_swap: true,
        synchronize_srcu: true,
    };

    pub fn of(variant: &str) -> Result<Protocol, String> {
        let base = Self::SKIP_INVALID;
        Ok(match variant {
            "buggy" => Protocol {
                change_pte: ChangePte::SetSpte,
                ..base
            },
            "skip-invalid" => base,
            "removed" => Protocol {
                change_pte: ChangePte::Removed,
                ..base
            },
            "x86like" => Protocol {
                change_pte: ChangePte::RewriteOnly,
                ..base
            },
            "no-swap-block" => Protocol {
                swap_waits: false,
                ..base
            },
            "mut-fault-no-retry" => Protocol {
                fault_retry: FaultRetry::Never,
                ..base
            },
            "mut-retry-seq-only" => Protocol {
                fault_retry: FaultRetry::SeqOnly,
                ..base
            },
            "mut-map-after-unlock" => Protocol {
                fault_maps_under_lock: false,
                ..base
            },
            "mut-end-no-seq" => Protocol {
                end_bumps_seq: false,
                ..base
            },
            "mut-unmap-short" => Protocol {
                unmap_whole_range: false,
                ..base
            },
            "mut-no-flush" => Protocol {
                flush_invalid_slot: false,
                ..base
            },
            "mut-flush-before-swap" => Protocol {
                flush_after_swap: false,
                ..base
            },
            "mut-no-synchronize-srcu" => Protocol {
                synchronize_srcu: false,
                ..base
            },
            other => return Err(format!("memslot: unknown variant {other}")),
        })
    }
}
