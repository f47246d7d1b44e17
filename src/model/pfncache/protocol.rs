//! Which protocol steps a variant has: mainline, with one historical step put back.
//!
//! Each flag is one step of pfncache.c that a kernel commit added or changed; a buggy
//! variant is mainline with exactly that commit reverted (its pre-image reconstructed
//! in the kernel notes, §5). Checks never read these flags.

/// How activate and deactivate are ordered against `refresh_lock` and `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Mainline (6addfcf2): both under `refresh_lock`; `list_add` then `active = true`;
    /// `active = false` then `list_del` then unmap; check and refresh demand `active`.
    Mainline,
    /// Before 6addfcf2: activate's list/active block and all of deactivate run outside
    /// `refresh_lock` (only the refresh takes it).
    OutsideRefreshLock,
    /// Before ecbcf030: `active` is not enforced by check or refresh; activate resets
    /// the fields with plain unlocked stores, sets `active` and only then lists the
    /// cache; deactivate unlists, unmaps (under `refresh_lock`), then clears `active`.
    Unenforced,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Protocol {
    /// The cache holds a reference on its pfn (before 85165781). A parameter, not a
    /// variant: the pinning-era bugs default to it, the others run unpinned so that a
    /// stale page is really freed.
    pub pin: bool,
    /// Before 58cd407c: refresh drops the lock with placeholder `valid = true` and the
    /// retry test is `in_progress || seq changed` under `mmu_lock`.
    pub speculative_valid: bool,
    /// 93984f19: `gpc->refresh_lock` exists (serialises refresh, activate, deactivate).
    pub refresh_lock: bool,
    pub lifecycle: Lifecycle,
    /// Before 52491a38: activating an inactive cache re-initialises `gpc->lock`.
    pub reinit_lock_on_activate: bool,
    /// 8332f0ed: the same-page fast path sets `khva = old_khva + page_offset`.
    pub same_page_khva: bool,
    /// 79593c08: a translation error clears pfn/khva before the old pfn is released.
    pub error_path_purges: bool,
    /// 3dddf65b: a refresh that finds the pfn it already holds drops the new reference.
    pub put_reused_ref: bool,
    /// 5c9ca4ed: the length is checked before activating and before refreshing, not
    /// inside `__kvm_gpc_refresh()` after the cache is listed and active.
    pub len_check_early: bool,
    /// fc62a4e8: `kvm_gpc_activate(INVALID_GPA)` is refused.
    pub reject_invalid_gpa: bool,
    /// 9fa336e3: the walk re-tests the cache under the write lock before clearing `valid`.
    pub walk_recheck: bool,
    /// Before cf1d88b3: a refresh records the caller's intent to write in `gpc->dirty`,
    /// and the page reaches the dirty log only when the cache lets its pfn go
    /// (`__release_gpc()`: a refresh to another pfn, unmap, deactivate). Since then the
    /// writer marks the page itself (`kvm_gpc_mark_dirty_in_slot()`).
    pub dirty_in_cache: bool,
    /// Before df06dae3: evicting vCPUs for a gpc invalidation sets
    /// `KVM_REQ_GPC_INVALIDATE` in `vcpu->requests`, which nothing consumes; since then
    /// the eviction is `KVM_REQ_OUTSIDE_GUEST_MODE` (`KVM_REQUEST_NO_ACTION`): kick only.
    pub evict_sets_request: bool,
    /// Before 58f5ee5f: `check()` and `refresh()` take the caller's gpa, and a refresh
    /// moves the cache to it.
    pub gpa_arg: bool,
    /// Not merged (dwmw2's 2024 series, 723f68f4 in his tree): `gpc->needs_invalidation`
    /// is set before `hva_to_pfn_retry()` drops the lock, cleared by any invalidation
    /// of the cache's uhva even while `valid` is false, and the retry loop goes round
    /// again if it was cleared. Modelled alone, on top of mainline's count/seq test.
    pub needs_invalidation: bool,
    /// Mutant switches: steps of the mainline path that no commit changed.
    pub slips: Slips,
}

/// One step of the mainline path each; every one is `true` in mainline, and a mutant
/// variant (a slip no kernel commit made) turns exactly one off.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slips {
    /// `hva_to_pfn_retry()` reads `mmu_invalidate_seq` under the write lock, before
    /// dropping it; the mutant reads it after `hva_to_pfn()`.
    pub seq_before_gup: bool,
    /// `mmu_notifier_retry_cache()` tests the count *and* the sequence; the mutant
    /// tests only the count.
    pub retry_tests_seq: bool,
    /// The gpc walk visits every listed cache; the mutant's loop stops one short.
    pub walk_whole_list: bool,
    /// `kvm_gpc_check()` compares the memslot generation of a GPA cache.
    pub check_generation: bool,
    /// A reader whose refresh succeeded re-takes the read lock and checks again
    /// (the Xen callers' `while (!kvm_gpc_check()) { unlock; refresh; lock; }`); the
    /// mutant trusts the refresh and uses the cache without the re-check.
    pub reader_rechecks: bool,
    /// `hva_to_pfn_retry()` sets `valid` only once the retry test passed; the mutant
    /// sets it right after relocking, one step early.
    pub valid_after_retry_test: bool,
}

impl Slips {
    const NONE: Slips = Slips {
        seq_before_gup: true,
        retry_tests_seq: true,
        walk_whole_list: true,
        check_generation: true,
        reader_rechecks: true,
        valid_after_retry_test: true,
    };
}

impl Protocol {
    const MAINLINE: Protocol = Protocol {
        pin: false,
        speculative_valid: false,
        refresh_lock: true,
        lifecycle: Lifecycle::Mainline,
        reinit_lock_on_activate: false,
        same_page_khva: true,
        error_path_purges: true,
        put_reused_ref: true,
        len_check_early: true,
        reject_invalid_gpa: true,
        walk_recheck: true,
        dirty_in_cache: false,
        evict_sets_request: false,
        gpa_arg: false,
        needs_invalidation: false,
        slips: Slips::NONE,
    };

    /// The protocol of variant `name` (see the descriptor's variants).
    pub fn of(name: &str) -> Result<Protocol, String> {
        let m = Self::MAINLINE;
        Ok(match name {
            "fixed" => m,
            "speculative-valid" => Protocol {
                speculative_valid: true,
                ..m
            },
            "no-refresh-lock" => Protocol {
                refresh_lock: false,
                ..m
            },
            "inactive-refresh" => Protocol {
                lifecycle: Lifecycle::Unenforced,
                ..m
            },
            "lock-reinit" => Protocol {
                reinit_lock_on_activate: true,
                ..m
            },
            "deactivate-race" => Protocol {
                lifecycle: Lifecycle::OutsideRefreshLock,
                ..m
            },
            "same-page-khva" => Protocol {
                same_page_khva: false,
                ..m
            },
            "double-put" => Protocol {
                error_path_purges: false,
                pin: true,
                ..m
            },
            "leaked-ref" => Protocol {
                put_reused_ref: false,
                pin: true,
                ..m
            },
            "len-after-activate" => Protocol {
                len_check_early: false,
                ..m
            },
            "invalid-gpa" => Protocol {
                reject_invalid_gpa: false,
                ..m
            },
            "no-recheck" => Protocol {
                walk_recheck: false,
                ..m
            },
            "dirty-kept" => Protocol {
                dirty_in_cache: true,
                ..m
            },
            "evict-request" => Protocol {
                evict_sets_request: true,
                ..m
            },
            "refresh-historic" => Protocol {
                speculative_valid: true,
                refresh_lock: false,
                ..m
            },
            "gpa-arg" => Protocol { gpa_arg: true, ..m },
            "needs-invalidation" => Protocol {
                needs_invalidation: true,
                ..m
            },
            "mut-seq-after-gup" => Protocol {
                slips: Slips {
                    seq_before_gup: false,
                    ..Slips::NONE
                },
                ..m
            },
            "mut-retry-count-only" => Protocol {
                slips: Slips {
                    retry_tests_seq: false,
                    ..Slips::NONE
                },
                ..m
            },
            "mut-walk-skips-last" => Protocol {
                slips: Slips {
                    walk_whole_list: false,
                    ..Slips::NONE
                },
                ..m
            },
            "mut-check-skips-generation" => Protocol {
                slips: Slips {
                    check_generation: false,
                    ..Slips::NONE
                },
                ..m
            },
            "mut-reader-skips-recheck" => Protocol {
                slips: Slips {
                    reader_rechecks: false,
                    ..Slips::NONE
                },
                ..m
            },
            "mut-valid-before-retry-test" => Protocol {
                slips: Slips {
                    valid_after_retry_test: false,
                    ..Slips::NONE
                },
                ..m
            },
            other => return Err(format!("pfncache has no variant `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_protocol() {
        for v in super::super::DESC.variants {
            Protocol::of(v.name).unwrap();
        }
        assert!(Protocol::of("nonsense").is_err());
    }
}
