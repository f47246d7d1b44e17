//! The KVM `gfn_to_pfn_cache` against mmu-notifier invalidation, memslot updates and
//! its own activate/deactivate/refresh paths, per `spec/pfncache.md`.
//!
//! The fixed protocol is mainline virt/kvm/pfncache.c (as of late 2025): a cache maps
//! one guest page into the kernel; readers (the Xen shinfo/evtchn pattern) use it
//! under `gpc->lock` for read after `kvm_gpc_check()`, and refresh it otherwise.
//! `hva_to_pfn_retry()` drops the lock to translate and map, and installs the result
//! only if no invalidation can have been missed (`mn_active_invalidate_count`, then
//! `mmu_invalidate_seq`); the notifier clears `valid` before the primary MMU changes
//! the page. Each buggy variant puts back the protocol steps of one historical bug
//! ([`protocol::Protocol`]) and nothing else; no check knows which variant runs.
//!
//! Roles: cache users (vCPU-side: activate, deactivate, refresh, check, read, recreate
//! the vCPU), the host (mmu-notifier invalidations that replace or protect pages) and
//! the VMM (memslot updates). Memory is the arena of [`super::mem`], the notifier
//! machinery that of [`super::notifier`].
//!
//! **A hole in mainline that this model reproduces.** `mmu_invalidate_seq` only moves
//! for ranges that overlap a memslot, and `mn_active_invalidate_count` is back to zero
//! once an event ends; so an invalidation of an hva that no memslot covers, falling
//! entirely inside `hva_to_pfn_retry()`'s unlocked window, goes unseen, and the
//! refresh installs (and, unpinned, drops the last reference to) the page the host
//! just replaced. Two ways in: an HVA-based cache outside every memslot (kernel notes
//! §4c), and a GPA-based cache whose memslot is deleted during the refresh and later
//! re-created at the same userspace address — the generation-triggered re-translation
//! then finds the same uhva with `valid` still set and keeps the stale pfn (the
//! `8332f0ed` fast path). The default workload keeps the host's invalidations inside
//! memslot 0, which is never moved or deleted; `unbacked_invalidations = true` (and
//! `outside_pages`) lift that, and the fixed protocol then fails I4 within seconds.

mod cache;
mod check;
mod dirty;
mod lifecycle;
mod ops;
mod own_gpa;
mod protocol;
mod refresh;
mod vcpu;

use crate::model::notifier::{Layout, Mmu};
use crate::model::Ctx;
use crate::model::{
    Cell, CoverDesc, Expect, Model, ModelConfig, ModelDesc, OpDesc, ParamDesc, ParamKind, RoleDesc,
    VariantDesc, VariantKind, Violation,
};
use crate::rng::Rng;
use crate::sync::RawSpinLock;
use cache::Gpc;
use dirty::DirtyLog;
use protocol::Protocol;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use vcpu::GuestVcpu;

/// The pfncache model's facts: ops, params, coverage, variants.
pub static DESC: ModelDesc = ModelDesc {
    name: "pfncache",
    protocol: "gfn_to_pfn_cache vs mmu-notifier invalidation, activate/deactivate/refresh (virt/kvm/pfncache.c)",
    kernel_files: &["virt/kvm/pfncache.c", "virt/kvm/kvm_main.c"],
    seed: "002_9bfd3e53a6907b2a.txt",
    spec: "pfncache.md",
    roles: &[
        RoleDesc { name: "user", doc: "cache users (vCPU side): activate, deactivate, refresh, check, read" },
        RoleDesc { name: "host", doc: "the primary MMU: mmu-notifier invalidations that replace or protect pages" },
        RoleDesc { name: "VMM", doc: "memslot updates" },
    ],
    ops: &[
        OpDesc { name: "read", role: USER, weight: 10, doc: "a reader: kvm_gpc_check under gpc->lock (read), use the mapping, else refresh and retry" },
        OpDesc { name: "check", role: USER, weight: 2, doc: "kvm_gpc_check alone, and the invariants of an accepted cache" },
        OpDesc { name: "refresh", role: USER, weight: 2, doc: "kvm_gpc_refresh: __kvm_gpc_refresh under refresh_lock, hva_to_pfn_retry" },
        OpDesc { name: "activate", role: USER, weight: 3, doc: "kvm_gpc_activate at a random gpa and length" },
        OpDesc { name: "activate_hva", role: USER, weight: 2, doc: "kvm_gpc_activate_hva at a random userspace address" },
        OpDesc { name: "deactivate", role: USER, weight: 2, doc: "kvm_gpc_deactivate: unmap and unlist" },
        // Weight 3, not 1: a cache is seen between `active = true` and its first refresh
        // (reader_saw_half_activated) only when an activate brings up a cache fresh from
        // kvm_gpc_init(), i.e. after a re-creation; at 1, readers met that state in 0.3 %
        // of their ops. A VMM that hot-plugs vCPUs and re-registers their areas often.
        OpDesc { name: "recreate_vcpu", role: USER, weight: 3, doc: "destroy and re-init a vCPU's cache (kvm_gpc_init on a dead cache)" },
        OpDesc { name: "invalidate", role: HOST, weight: 1, doc: "host mmu-notifier event: invalidate_range_start, replace or protect pages, range_end" },
        OpDesc { name: "memslot_update", role: VMM, weight: 1, doc: "VMM: move, delete/re-create or flag a memslot (kvm_swap_active_memslots)" },
        OpDesc { name: "write", role: USER, weight: 4, doc: "a writer (Xen evtchn_pending, runstate): check/refresh, write through khva, mark the page dirty" },
        // Weight 2 (a migrating VMM reads the dirty log every round): the host threads
        // then invalidate in a quarter of their ops, not a third, so that the caches
        // are valid more often when a walk comes (walk_recheck_saw_change needs a walk
        // to meet a valid cache that a user is changing).
        OpDesc { name: "harvest", role: VMM, weight: 2, doc: "VMM's final dirty-log read (KVM_GET_DIRTY_LOG with every vCPU out of KVM_RUN)" },
        OpDesc { name: "kvm_run", role: USER, weight: 3, doc: "a vCPU's KVM_RUN: requests, its guest-mode cache refreshed, guest entry, guest accesses through the pfn" },
        OpDesc { name: "read_own_gpa", role: USER, weight: 12, doc: "a reader of the first GPA-based active cache (as all vCPUs read Xen's shared_info) with its own gpa (the pre-58f5ee5f check/refresh API shape), bounded by L1" },
    ],
    params: &[
        ParamDesc { name: "pin", kind: ParamKind::Bool { default: false }, doc: "pinning era: the cache holds a page reference (always on for double-put and leaked-ref)" },
        ParamDesc { name: "caches", kind: ParamKind::Int { default: 0, min: 0, max: MAX_CACHES }, doc: "shared gfn_to_pfn_caches in the VM (0: one per 8 threads, at least 4)" },
        ParamDesc { name: "slots", kind: ParamKind::Int { default: 3, min: 2, max: 8 }, doc: "memslots" },
        ParamDesc { name: "slot_pages", kind: ParamKind::Int { default: 4, min: 1, max: 64 }, doc: "pages per memslot" },
        ParamDesc { name: "outside_pages", kind: ParamKind::Int { default: 0, min: 0, max: 64 }, doc: "host pages outside every memslot (HVA caches may point there)" },
        ParamDesc { name: "unbacked_invalidations", kind: ParamKind::Bool { default: false }, doc: "the host may invalidate memory no memslot covers (reproduces the mainline finding)" },
    ],
    coverage: &[
        CoverDesc { name: "retry_saw_invalidate_count", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs hva_to_pfn_retry: relocked and mmu_notifier_retry_cache() saw `mn_active_invalidate_count != 0`." },
        CoverDesc { name: "retry_saw_seq_change", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs hva_to_pfn_retry: the count was zero but `mmu_invalidate_seq` moved: a whole event ran while the lock was dropped." },
        CoverDesc { name: "retry_count_before_in_progress", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs hva_to_pfn_retry: saw the count raised by an invalidation between its gpc walk and `mmu_invalidate_in_progress++` (notifier.rs range_start; the window 58cd407c closed)." },
        CoverDesc { name: "retry_dropped_stale_pfn", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs hva_to_pfn_retry: on a retry, the pfn just found is no longer in the host page table: the retry kept a stale page out." },
        CoverDesc { name: "refresh_reused_old_khva", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs hva_to_pfn_retry: GUP found the pfn the cache already had and reused its khva (6addfcf2's window)." },
        CoverDesc { name: "walk_during_unlocked_refresh", per: &["invalidate"], doc: "ops.rs gpc_walk: met a cache whose refresh had the lock dropped." },
        CoverDesc { name: "walk_cleared_valid", per: &["invalidate"], doc: "ops.rs gpc_walk: cleared `valid` under the write lock." },
        CoverDesc { name: "walk_recheck_saw_change", per: &["invalidate"], doc: "ops.rs gpc_walk: the cache changed between the read pre-check and the write lock (9fa336e3)." },
        CoverDesc { name: "walk_waited_for_readers", per: &["invalidate"], doc: "ops.rs gpc_walk: wanted the write lock while readers were inside (check → dereference)." },
        CoverDesc { name: "walk_saw_listed_inactive", per: &["invalidate"], doc: "ops.rs gpc_walk: met a listed but inactive cache (activate or deactivate mid-way)." },
        CoverDesc { name: "reader_check_failed_refreshed", per: &["read"], doc: "ops.rs read: the reader's kvm_gpc_check failed and its refresh succeeded." },
        // `write` and `check` are here too: both run check_read_locked on a shared cache
        // (use_cache, check_op), so they can enter the window and their hits counted.
        CoverDesc { name: "reader_saw_half_activated", per: &["read", "read_own_gpa", "write", "check"], doc: "check.rs check_read_locked: a reader saw a cache activated but not yet refreshed (activate's last window)." },
        CoverDesc { name: "refresh_waited_for_refresh_lock", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa", "deactivate"], doc: "refresh.rs lock_refresh: waited for another holder of `refresh_lock` (93984f19's window)." },
        CoverDesc { name: "refresh_found_inactive", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs refresh_locked: found the cache deactivated under its write lock." },
        CoverDesc { name: "refresh_saw_stale_generation", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs refresh_locked: re-translated because the memslot generation moved." },
        CoverDesc { name: "refresh_hit_missing_memslot", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs refresh_locked: the translation hit a deleted or INVALID memslot." },
        CoverDesc { name: "activate_moved_within_page", per: &["activate"], doc: "refresh.rs refresh_locked: an activate moved a valid cache within its page (8332f0ed's path)." },
        CoverDesc { name: "memslot_swap_waited_for_invalidations", per: &["memslot_update"], doc: "ops.rs memslot_update: kvm_swap_active_memslots waited for invalidations to finish." },
        CoverDesc { name: "harvest_saw_written_page_still_mapped", per: &["harvest"], doc: "dirty.rs harvest: found a page written since the last harvest that a valid cache still maps (cf1d88b3's window)." },
        CoverDesc { name: "walk_evicted_vcpu_in_guest", per: &["invalidate"], doc: "vcpu.rs evict_vcpus: an invalidation found a vCPU in guest mode using the cache and kicked it out (df06dae3's path)." },
        CoverDesc { name: "vcpu_entry_cancelled_cache_invalidated", per: &["kvm_run"], doc: "vcpu.rs kvm_run: the vCPU set IN_GUEST_MODE, then saw its guest cache invalidated and cancelled the entry." },
        CoverDesc { name: "reader_check_failed_after_own_refresh", per: &["read_own_gpa"], doc: "own_gpa.rs read_shared: the reader's kvm_gpc_check failed right after its own successful refresh (58f5ee5f's ping-pong step)." },
        CoverDesc { name: "retry_saw_needs_invalidation_cleared", per: &["read", "refresh", "activate", "activate_hva", "write", "kvm_run", "read_own_gpa"], doc: "refresh.rs hva_to_pfn_retry: relocked and found `needs_invalidation` cleared (needs-invalidation only)." },
        CoverDesc { name: "walk_cleared_needs_invalidation_while_invalid", per: &["invalidate"], doc: "ops.rs gpc_walk: cleared `needs_invalidation` of a cache that was not valid (needs-invalidation only)." },
    ],
    variants: &[
        VariantDesc {
            name: "fixed",
            commit: "mainline",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: UNBACKED_CELLS,
            needs_concurrency: false,
            doc: "mainline pfncache.c: refresh_lock, valid only at install, count+seq retry, read-lock pre-check",
        },
        VariantDesc {
            name: "speculative-valid",
            commit: "58cd407c",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["I3", "I4", "G1"]),
            cells: &[],
            needs_concurrency: true,
            doc: "refresh drops the lock with placeholder valid=true; retry tests in_progress, not the count",
        },
        VariantDesc {
            name: "no-refresh-lock",
            commit: "93984f19",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["M3", "M2", "M4", "Q1", "Q2", "Q3", "I1", "I2", "I3", "I4", "I5"]),
            cells: &[],
            needs_concurrency: true,
            doc: "no gpc->refresh_lock: two refreshes of one cache interleave around the dropped lock",
        },
        VariantDesc {
            name: "inactive-refresh",
            commit: "ecbcf030",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["I1", "I2", "I3", "I4", "I5", "M5", "Q1", "Q2", "Q3"]),
            cells: &[],
            needs_concurrency: true,
            doc: "check/refresh ignore `active`; activate resets fields unlocked and lists after activating",
        },
        VariantDesc {
            name: "lock-reinit",
            commit: "52491a38",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["M5", "I3"]),
            cells: &[],
            needs_concurrency: true,
            doc: "activate re-initialises gpc->lock, under a reader that still holds it",
        },
        VariantDesc {
            name: "deactivate-race",
            commit: "6addfcf2",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["I1", "I2", "I3", "M2", "Q1", "Q2", "Q3"]),
            cells: &[],
            needs_concurrency: true,
            doc: "activate/deactivate outside refresh_lock: a refresh re-installs what deactivate unmapped",
        },
        VariantDesc {
            name: "same-page-khva",
            commit: "8332f0ed",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["I5", "I7"]),
            cells: &[],
            needs_concurrency: false,
            doc: "a move within the same page keeps the old khva offset",
        },
        VariantDesc {
            name: "double-put",
            commit: "79593c08",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["I3", "M1", "M2", "Q3"]),
            cells: &[],
            needs_concurrency: false,
            doc: "pinning era: a failed translation releases the pfn but leaves gpc->pfn/khva naming it",
        },
        VariantDesc {
            name: "leaked-ref",
            commit: "3dddf65b",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["Q3"]),
            cells: &[],
            needs_concurrency: false,
            doc: "pinning era: a refresh that finds the same pfn keeps a second reference",
        },
        VariantDesc {
            name: "len-after-activate",
            commit: "5c9ca4ed",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["Q2"]),
            cells: &[],
            needs_concurrency: false,
            doc: "the length is checked after the cache is listed and active, leaving it without an address",
        },
        VariantDesc {
            name: "invalid-gpa",
            commit: "fc62a4e8",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["Q2"]),
            cells: &[],
            needs_concurrency: false,
            doc: "activate(INVALID_GPA) is accepted, leaving an active cache without an address",
        },
        VariantDesc {
            name: "no-recheck",
            commit: "9fa336e3 reverted",
            kind: VariantKind::Control,
            expect: Expect::Clean,
            cells: &[],
            needs_concurrency: true,
            doc: "negative control: the walk clears valid without re-checking under the write lock",
        },
        VariantDesc {
            name: "dirty-kept",
            commit: "cf1d88b3",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["D1"]),
            cells: &[],
            needs_concurrency: false,
            doc: "gpc->dirty kept until the pfn is released: a harvest misses a page written through a still-mapped cache",
        },
        VariantDesc {
            name: "evict-request",
            commit: "df06dae3",
            kind: VariantKind::Race,
            expect: Expect::Stall,
            cells: &[],
            needs_concurrency: false,
            doc: "eviction sets KVM_REQ_GPC_INVALIDATE, which nothing consumes: the vCPU cancels every guest entry, KVM_RUN never returns",
        },
        VariantDesc {
            name: "refresh-historic",
            commit: "93984f19",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["I3", "I4", "I5", "M2", "M3", "M4", "Q1", "Q2", "Q3", "I1", "I2", "G1"]),
            cells: &[],
            needs_concurrency: true,
            doc: "93984f19's own story: speculative valid and no refresh_lock, a second refresh reads the stale generation as fresh",
        },
        VariantDesc {
            name: "gpa-arg",
            commit: "58f5ee5f",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["L1"]),
            cells: &[],
            needs_concurrency: true,
            doc: "check/refresh take the caller's gpa: two readers with different gpas ping-pong the cache",
        },
        VariantDesc {
            name: "needs-invalidation",
            commit: "dwmw2 2024 proposal (unmerged)",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            // Route 1 of the finding stays open under the flag (docs/findings): the
            // walk of an event that ran before the refresh set the flag never clears it.
            cells: UNBACKED_CELLS,
            needs_concurrency: true,
            doc: "mainline plus gpc->needs_invalidation: set before the refresh drops the lock, cleared by any invalidation of the uhva",
        },
        // A mutant that leaves a valid cache on a replaced page may first be seen by a
        // vCPU in guest mode using its own cache (G1): the per-vCPU caches refresh
        // through the same path and sit at the end of gpc_list (seen for
        // mut-walk-skips-last in a stress run of the suite).
        VariantDesc::mutant("mut-seq-after-gup", &["I4", "I8", "G1"], true, "hva_to_pfn_retry reads mmu_invalidate_seq after hva_to_pfn, not before dropping the lock"),
        VariantDesc::mutant("mut-retry-count-only", &["I4", "I8", "G1"], true, "the retry test looks at mn_active_invalidate_count only, not mmu_invalidate_seq"),
        VariantDesc::mutant("mut-walk-skips-last", &["I4", "I8", "G1"], false, "the gpc walk stops one cache short of the end of gpc_list"),
        VariantDesc::mutant("mut-check-skips-generation", &["I8"], false, "kvm_gpc_check does not compare the memslot generation of a GPA cache"),
        VariantDesc::mutant("mut-reader-skips-recheck", &["I3", "I4", "I8"], true, "a reader whose refresh succeeded uses the cache without kvm_gpc_check under the new read lock"),
        VariantDesc::mutant("mut-valid-before-retry-test", &["M3", "I3", "I4", "I5", "I8", "G1"], true, "hva_to_pfn_retry sets valid right after relocking, before the retry test passed"),
    ],
    injection: crate::model::InjectionPolicy::Uniform,
    hidden: false,
    build,
};

/// The unbacked-invalidation finding (docs/findings/unbacked-invalidation.md): with
/// the host allowed to invalidate memory no memslot covers, mainline installs a page
/// the host replaced.
const UNBACKED_CELLS: &[Cell] = &[Cell {
    params: &[("unbacked_invalidations", "true"), ("outside_pages", "1")],
    expect: Expect::Caught(&["I4"]),
}];

/// The most shared caches a VM may have (`params.caches`).
const MAX_CACHES: u64 = 256;

/// Role bits of the descriptor's ops.
const USER: u32 = 0;
const HOST: u32 = 1;
const VMM: u32 = 2;

/// Op ids (indices into the descriptor's ops).
mod op {
    pub const READ: usize = 0;
    pub const CHECK: usize = 1;
    pub const REFRESH: usize = 2;
    pub const ACTIVATE: usize = 3;
    pub const ACTIVATE_HVA: usize = 4;
    pub const DEACTIVATE: usize = 5;
    pub const RECREATE: usize = 6;
    pub const INVALIDATE: usize = 7;
    pub const MEMSLOT: usize = 8;
    pub const WRITE: usize = 9;
    pub const HARVEST: usize = 10;
    pub const KVM_RUN: usize = 11;
    pub const READ_OWN_GPA: usize = 12;
}

/// Coverage counter ids (indices into the descriptor's coverage): one per race
/// window of the spec's preemption-point list.
mod cov {
    pub const RETRY_COUNT: usize = 0;
    pub const RETRY_SEQ: usize = 1;
    pub const RETRY_BEFORE_IN_PROGRESS: usize = 2;
    pub const RETRY_DROPPED_STALE_PFN: usize = 3;
    pub const REUSED_OLD_KHVA: usize = 4;
    pub const WALK_DURING_UNLOCKED_REFRESH: usize = 5;
    pub const WALK_CLEARED_VALID: usize = 6;
    pub const WALK_RECHECK_CHANGED: usize = 7;
    pub const WALK_WAITED_FOR_READERS: usize = 8;
    pub const WALK_LISTED_INACTIVE: usize = 9;
    pub const READER_REFRESHED: usize = 10;
    pub const READER_SAW_HALF_ACTIVATED: usize = 11;
    pub const REFRESH_WAITED_FOR_LOCK: usize = 12;
    pub const REFRESH_FOUND_INACTIVE: usize = 13;
    pub const REFRESH_STALE_GENERATION: usize = 14;
    pub const REFRESH_NO_MEMSLOT: usize = 15;
    pub const SAME_PAGE_MOVE: usize = 16;
    pub const SWAP_WAITED: usize = 17;
    pub const HARVEST_SAW_MAPPED_DIRTY: usize = 18;
    pub const EVICTED_VCPU_IN_GUEST: usize = 19;
    pub const ENTRY_CANCELLED_INVALIDATED: usize = 20;
    pub const CHECK_FAILED_AFTER_OWN_REFRESH: usize = 21;
    pub const RETRY_NEEDS_INVALIDATION: usize = 22;
    pub const WALK_CLEARED_FLAG_INVALID: usize = 23;
}

/// Sizes, from the scenario's `[params]`.
#[derive(Debug, Clone, Copy)]
struct Params {
    caches: usize,
    layout: Layout,
    /// The host may invalidate memory no memslot covers at that moment: the
    /// regions moved slots left, deleted slots' memory and `outside_pages`. Mainline
    /// misses such an invalidation when it falls entirely inside a refresh's unlocked
    /// window (no memslot overlaps, so `mmu_invalidate_seq` does not move; kernel
    /// notes §4c), so this is off by default: the host then invalidates only
    /// memslot 0's memory, which memslot updates never move or delete.
    unbacked_invalidations: bool,
    /// The memory era the caches run in: each holds a reference on its pfn (always
    /// on for the pinning-era variants). What the refcount balance (Q3) counts.
    pin: bool,
}

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    let p = &cfg.params;
    let mut proto = Protocol::of(cfg.variant.name)?;
    proto.pin |= p.flag("pin");
    let params = Params {
        caches: match p.int("caches") {
            // The users share these caches: 1022 users on 4 caches at 1024 threads
            // queued behind each cache's gpc->lock and refresh_lock (`run --model
            // pfncache --threads 1024 --duration 4s`: 4 caches 620–1,353 ops/s, 128
            // caches 9,458–17,281; 256 threads: 4 caches 6,142, 16 caches 35,019). Up
            // to 39 threads this is the 4 caches it always was.
            0 => (cfg.threads / 8).clamp(4, MAX_CACHES as usize),
            n => n as usize,
        },
        layout: Layout {
            slots: p.int("slots") as usize,
            slot_pages: p.int("slot_pages"),
            outside_pages: p.int("outside_pages"),
        },
        unbacked_invalidations: p.flag("unbacked_invalidations"),
        pin: proto.pin,
    };
    Ok(Arc::new(PfnCache::new(params, proto, cfg.threads)))
}

/// Why a kernel function failed (its errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errno {
    /// -EINVAL
    Inval,
    /// -EFAULT
    Fault,
    /// -EIO (`KVM_BUG_ON`)
    Io,
}

/// One operation in flight: the engine's context and the first violation seen.
///
/// The protocol keeps going after a violation, as the kernel does after a WARN, so
/// that every lock is released and every counter dropped before the op returns; a
/// half-finished op would leave other workers waiting and turn a detection into a hang.
struct Op<'a, 'b> {
    cx: &'a mut (dyn Ctx + 'b),
    first: Option<Violation>,
}

impl<'a, 'b> Op<'a, 'b> {
    fn new(cx: &'a mut (dyn Ctx + 'b)) -> Self {
        Op { cx, first: None }
    }

    /// Keeps the first violation; passes a success through.
    fn note<T>(&mut self, r: Result<T, Violation>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(v) => {
                self.flag(v);
                None
            }
        }
    }

    /// [`note`](Self::note) for a violation found on cache `c`'s behalf (by the arena
    /// or the notifier): the report also gets the cache's state and history.
    fn note_for<T>(&mut self, c: &Gpc, r: Result<T, Violation>) -> Option<T> {
        self.note(r.map_err(|v| {
            let state = format!("{}{}", c.describe(), v.state);
            v.with_state(state)
        }))
    }

    fn flag(&mut self, v: Violation) {
        if self.first.is_none() {
            self.cx.event("violation", 0, 0);
            self.first = Some(v);
        }
    }

    fn cover(&self, id: usize) {
        self.cx.cover(id);
    }

    fn event(&self, what: &'static str, a: u64, b: u64) {
        self.cx.event(what, a, b);
    }

    fn rng(&mut self) -> &mut Rng {
        self.cx.rng()
    }

    fn finish(self) -> Result<(), Violation> {
        self.first.map_or(Ok(()), Err)
    }
}

/// The model: a VM's notifier state and memslots, and its caches.
pub struct PfnCache {
    proto: Protocol,
    params: Params,
    mmu: Mmu,
    /// `kvm->gpc_lock`, guarding the list (each cache's `on_list`).
    gpc_lock: RawSpinLock,
    /// The shared caches (`params.caches`), then one guest-mode cache per vCPU.
    caches: Vec<Gpc>,
    /// The VM's dirty log and the VMM's view of which vCPUs are in KVM_RUN.
    dirty: DirtyLog,
    /// One vCPU per worker (its guest-mode cache is `caches[params.caches + worker]`).
    vcpus: Vec<GuestVcpu>,
    /// Workload, not protocol: the shared cache an activate is bringing up fresh from
    /// `kvm_gpc_init()`, or `NO_BRING_UP` (readers favour it: `PfnCache::pick_cache`).
    bringing_up: AtomicUsize,
}

impl PfnCache {
    fn new(params: Params, proto: Protocol, threads: usize) -> Self {
        let caches = params.caches + threads;
        // Spare pages: a replacement in flight per worker, a pinned page the host no
        // longer maps per cache, and slack. Mapping slots: a cache's own, one in flight
        // in its refresh, and slack for what buggy variants leak.
        let mmu = Mmu::new(
            params.layout,
            threads + 2 * caches + 8,
            8 * caches + 2 * threads + 16,
        );
        PfnCache {
            caches: (0..caches).map(Gpc::new).collect(),
            gpc_lock: RawSpinLock::new(),
            dirty: DirtyLog::new(params.layout.gfns()),
            vcpus: (0..threads).map(|_| GuestVcpu::new()).collect(),
            bringing_up: AtomicUsize::new(ops::NO_BRING_UP),
            mmu,
            proto,
            params,
        }
    }
}

impl Model for PfnCache {
    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        let (user, host, vmm) = (1 << USER, 1 << HOST, 1 << VMM);
        match threads {
            1 => vec![user | host | vmm],
            2 => vec![user, host | vmm],
            // Host threads also update memslots and harvest, so that no thread
            // invalidates back to back: mn_active_invalidate_count is VM-wide and every
            // refresh retries while it is raised. With a pure host thread (or two), the
            // count stayed raised nearly all the time: at 8 threads the six users ran
            // 75x fewer ops (1.5k against 113k in 5 s) and gpa-arg took 3.5 s to be
            // caught, not 0.04 s. A second host from 8 threads gives invalidations
            // that overlap (and det schedules a host often enough); below that the
            // second worker is a VMM among the users, so that a memslot update can
            // still find an invalidation in flight (kvm_swap_active_memslots()' wait).
            n => (0..n)
                .map(|w| match w {
                    0 => host | vmm,
                    1 if n >= 8 => host | vmm,
                    1 => vmm | user,
                    _ => user,
                })
                .collect(),
        }
    }

    fn step(&self, cx: &mut dyn Ctx, id: usize) -> Result<(), Violation> {
        let mut op = Op::new(cx);
        match id {
            op::INVALIDATE => self.invalidate(&mut op),
            op::MEMSLOT => self.memslot_update(&mut op),
            op::HARVEST => self.harvest(&mut op),
            op::KVM_RUN => self.kvm_run(&mut op),
            op::READ_OWN_GPA => self.read_shared(&mut op),
            _ => {
                let c = self.pick_cache(&mut op, id);
                op.cx.op_args("gpc{a}", c.id as u64, 0);
                self.user_op(&mut op, c, id);
            }
        }
        op.finish()
    }

    fn check_quiescent(&self) -> Result<(), Violation> {
        self.quiescent()
    }

    fn finish(&self) -> Result<(), Violation> {
        self.quiescent()?;
        self.at_rest()
    }

    fn dump(&self) -> String {
        self.dump_state() + &self.describe_vcpus() + &self.describe_dirty()
    }

    fn coverage_applies(&self, id: usize) -> bool {
        match id {
            cov::RETRY_NEEDS_INVALIDATION | cov::WALK_CLEARED_FLAG_INVALID => self.proto.needs_invalidation,
            _ => true,
        }
    }
}
