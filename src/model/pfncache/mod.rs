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
mod lifecycle;
mod ops;
mod protocol;
mod refresh;

use crate::engine::OpCtx;
use crate::model::notifier::{Layout, Mmu};
use crate::model::{
    param_bool, param_u64, reject_unknown_params, Model, ModelConfig, ModelInfo, OpSpec, VariantInfo,
    Violation,
};
use crate::rng::Rng;
use crate::sync::RawSpinLock;
use cache::Gpc;
use protocol::Protocol;
use std::sync::Arc;

pub static VARIANTS: &[VariantInfo] = &[
    VariantInfo {
        name: "fixed",
        commit: "mainline",
        needs_concurrency: false,
        expect_violation: false,
        summary:
            "mainline pfncache.c: refresh_lock, valid only at install, count+seq retry, read-lock pre-check",
    },
    VariantInfo {
        name: "speculative-valid",
        commit: "58cd407c",
        needs_concurrency: true,
        expect_violation: true,
        summary: "refresh drops the lock with placeholder valid=true; retry tests in_progress, not the count",
    },
    VariantInfo {
        name: "no-refresh-lock",
        commit: "93984f19",
        needs_concurrency: true,
        expect_violation: true,
        summary: "no gpc->refresh_lock: two refreshes of one cache interleave around the dropped lock",
    },
    VariantInfo {
        name: "inactive-refresh",
        commit: "ecbcf030",
        needs_concurrency: true,
        expect_violation: true,
        summary: "check/refresh ignore `active`; activate resets fields unlocked and lists after activating",
    },
    VariantInfo {
        name: "lock-reinit",
        commit: "52491a38",
        needs_concurrency: true,
        expect_violation: true,
        summary: "activate re-initialises gpc->lock, under a reader that still holds it",
    },
    VariantInfo {
        name: "deactivate-race",
        commit: "6addfcf2",
        needs_concurrency: true,
        expect_violation: true,
        summary: "activate/deactivate outside refresh_lock: a refresh re-installs what deactivate unmapped",
    },
    VariantInfo {
        name: "same-page-khva",
        commit: "8332f0ed",
        needs_concurrency: false,
        expect_violation: true,
        summary: "a move within the same page keeps the old khva offset",
    },
    VariantInfo {
        name: "double-put",
        commit: "79593c08",
        needs_concurrency: false,
        expect_violation: true,
        summary: "pinning era: a failed translation releases the pfn but leaves gpc->pfn/khva naming it",
    },
    VariantInfo {
        name: "leaked-ref",
        commit: "3dddf65b",
        needs_concurrency: false,
        expect_violation: true,
        summary: "pinning era: a refresh that finds the same pfn keeps a second reference",
    },
    VariantInfo {
        name: "len-after-activate",
        commit: "5c9ca4ed",
        needs_concurrency: false,
        expect_violation: true,
        summary: "the length is checked after the cache is listed and active, leaving it without an address",
    },
    VariantInfo {
        name: "invalid-gpa",
        commit: "fc62a4e8",
        needs_concurrency: false,
        expect_violation: true,
        summary: "activate(INVALID_GPA) is accepted, leaving an active cache without an address",
    },
    VariantInfo {
        name: "no-recheck",
        commit: "9fa336e3 reverted",
        needs_concurrency: true,
        expect_violation: false,
        summary: "negative control: the walk clears valid without re-checking under the write lock",
    },
];

pub static INFO: ModelInfo = ModelInfo {
    name: "pfncache",
    summary:
        "gfn_to_pfn_cache vs mmu-notifier invalidation, activate/deactivate/refresh (virt/kvm/pfncache.c)",
    variants: VARIANTS,
    ops: || OPS,
    build,
};

/// Role bits of [`OPS`].
const USER: u32 = 0;
const HOST: u32 = 1;
const VMM: u32 = 2;

/// Op ids (indices into [`OPS`]).
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
}

static OPS: &[OpSpec] = &[
    OpSpec {
        name: "read",
        role: USER,
        weight: 10,
    },
    OpSpec {
        name: "check",
        role: USER,
        weight: 2,
    },
    OpSpec {
        name: "refresh",
        role: USER,
        weight: 2,
    },
    OpSpec {
        name: "activate",
        role: USER,
        weight: 3,
    },
    OpSpec {
        name: "activate_hva",
        role: USER,
        weight: 2,
    },
    OpSpec {
        name: "deactivate",
        role: USER,
        weight: 2,
    },
    OpSpec {
        name: "recreate_vcpu",
        role: USER,
        weight: 1,
    },
    OpSpec {
        name: "invalidate",
        role: HOST,
        weight: 1,
    },
    OpSpec {
        name: "memslot_update",
        role: VMM,
        weight: 1,
    },
];

/// Coverage counters: one per race window of the spec's preemption-point list.
mod cov {
    /// `hva_to_pfn_retry()` relocked and saw `mn_active_invalidate_count != 0`.
    pub const RETRY_COUNT: usize = 0;
    /// ... saw the count at zero but `mmu_invalidate_seq` moved: a whole event ran
    /// while the lock was dropped.
    pub const RETRY_SEQ: usize = 1;
    /// ... saw the count while `mmu_invalidate_in_progress` was still zero: the window
    /// between the gpc walk and `in_progress++` that 58cd407c closed.
    pub const RETRY_BEFORE_IN_PROGRESS: usize = 2;
    /// ... the pfn it had just found is no longer in the host page table: the retry
    /// kept a stale page out.
    pub const RETRY_DROPPED_STALE_PFN: usize = 3;
    /// GUP found the pfn the cache already had and reused its khva (6addfcf2's window).
    pub const REUSED_OLD_KHVA: usize = 4;
    /// The gpc walk met a cache whose refresh had the lock dropped.
    pub const WALK_DURING_UNLOCKED_REFRESH: usize = 5;
    /// The gpc walk cleared `valid`.
    pub const WALK_CLEARED_VALID: usize = 6;
    /// The cache changed between the walk's read pre-check and its write lock (9fa336e3).
    pub const WALK_RECHECK_CHANGED: usize = 7;
    /// The walk wanted the write lock while readers were inside (check → dereference).
    pub const WALK_WAITED_FOR_READERS: usize = 8;
    /// The walk met a listed but inactive cache (activate or deactivate mid-way).
    pub const WALK_LISTED_INACTIVE: usize = 9;
    /// A reader's check failed and its refresh succeeded.
    pub const READER_REFRESHED: usize = 10;
    /// A reader saw a cache activated but not yet refreshed (activate's last window).
    pub const READER_SAW_HALF_ACTIVATED: usize = 11;
    /// A refresh waited for another holder of `refresh_lock` (93984f19's window).
    pub const REFRESH_WAITED_FOR_LOCK: usize = 12;
    /// A refresh found the cache deactivated under its write lock.
    pub const REFRESH_FOUND_INACTIVE: usize = 13;
    /// A refresh re-translated because the memslot generation moved.
    pub const REFRESH_STALE_GENERATION: usize = 14;
    /// A refresh's translation hit a deleted or INVALID memslot.
    pub const REFRESH_NO_MEMSLOT: usize = 15;
    /// An activate moved a valid cache within its page (8332f0ed's path).
    pub const SAME_PAGE_MOVE: usize = 16;
    /// A memslot swap waited for invalidations to finish.
    pub const SWAP_WAITED: usize = 17;

    pub const NAMES: &[&str] = &[
        "retry_saw_invalidate_count",
        "retry_saw_seq_change",
        "retry_count_before_in_progress",
        "retry_dropped_stale_pfn",
        "refresh_reused_old_khva",
        "walk_during_unlocked_refresh",
        "walk_cleared_valid",
        "walk_recheck_saw_change",
        "walk_waited_for_readers",
        "walk_saw_listed_inactive",
        "reader_check_failed_refreshed",
        "reader_saw_half_activated",
        "refresh_waited_for_refresh_lock",
        "refresh_found_inactive",
        "refresh_saw_stale_generation",
        "refresh_hit_missing_memslot",
        "activate_moved_within_page",
        "memslot_swap_waited_for_invalidations",
    ];
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
}

const PARAM_KEYS: &[&str] = &[
    "pin",
    "caches",
    "slots",
    "slot_pages",
    "outside_pages",
    "unbacked_invalidations",
];

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    let p = &cfg.params;
    reject_unknown_params(p, PARAM_KEYS)?;
    let mut proto = Protocol::of(cfg.variant.name)?;
    proto.pin = param_bool(p, "pin", proto.pin)?;
    let params = Params {
        caches: param_u64(p, "caches", 4, 1..=16)? as usize,
        layout: Layout {
            slots: param_u64(p, "slots", 3, 2..=8)? as usize,
            slot_pages: param_u64(p, "slot_pages", 4, 1..=64)?,
            outside_pages: param_u64(p, "outside_pages", 0, 0..=64)?,
        },
        unbacked_invalidations: param_bool(p, "unbacked_invalidations", false)?,
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
    cx: &'a mut OpCtx<'b>,
    first: Option<Violation>,
}

impl<'a, 'b> Op<'a, 'b> {
    fn new(cx: &'a mut OpCtx<'b>) -> Self {
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
    caches: Vec<Gpc>,
}

impl PfnCache {
    fn new(params: Params, proto: Protocol, threads: usize) -> Self {
        let caches = params.caches;
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
            mmu,
            proto,
            params,
        }
    }
}

impl Model for PfnCache {
    fn ops(&self) -> &'static [OpSpec] {
        OPS
    }

    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        let (user, host, vmm) = (1 << USER, 1 << HOST, 1 << VMM);
        match threads {
            1 => vec![user | host | vmm],
            2 => vec![user, host | vmm],
            // One host thread, two from six workers up; the first also updates
            // memslots. More would keep mn_active_invalidate_count raised nearly all
            // the time and starve every refresh (the count is VM-wide).
            n => (0..n)
                .map(|w| match w {
                    0 => host | vmm,
                    1 if n >= 6 => host,
                    _ => user,
                })
                .collect(),
        }
    }

    fn coverage_names(&self) -> &'static [&'static str] {
        cov::NAMES
    }

    fn step(&self, cx: &mut OpCtx, id: usize) -> Result<(), Violation> {
        let mut op = Op::new(cx);
        match id {
            op::INVALIDATE => self.invalidate(&mut op),
            op::MEMSLOT => self.memslot_update(&mut op),
            _ => {
                let c = &self.caches[op.rng().index(self.caches.len())];
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
        self.dump_state()
    }
}
