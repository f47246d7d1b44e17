//! Memslot DELETE against the mmu-notifier `change_pte` of KSM, on arm64 stage 2,
//! per `spec/memslot.md` (seed 003, 2230f9e1171a "KVM: Avoid illegal stage2 mapping
//! on invalid memory slot").
//!
//! A DELETE publishes an INVALID copy of the slot (A), flushes its stage-2 range (B)
//! and publishes the array without it; KSM merges a page of the slot's memory in two
//! invalidate_range_start/end brackets, calling `change_pte` before each pte store.
//! Before 2230f9e1171a, `kvm_set_spte_gfn()` mapped the new page for every slot
//! overlapping the hva, the INVALID one included (C): after (B), in a table a
//! neighbouring RAM slot keeps alive, so nothing flushes the gfn again and the guest's
//! pflash reads hit stage 2 instead of exiting to QEMU.
//!
//! Roles: the memslot updater (`kvm_set_memslot()`), the primary MMU (KSM merges,
//! unmerges) and vCPUs (guest accesses: a stage-2 hit, or `user_mem_abort()`).
//! Memory is the arena of [`super::mem`]; the invalidation counters, `mmu_lock` and
//! the swap's wait are [`super::notifier::Invalidations`].
//!
//! Where this follows the kernel rather than the spec:
//! - `kvm_swap_active_memslots()` publishes under `mn_invalidate_lock` after the wait
//!   and releases `slots_arch_lock` before `synchronize_srcu_expedited()`; the final
//!   generation is `(gen & ~IN_PROGRESS) + KVM_ADDRESS_SPACE_NUM` (one address space).
//! - S4 ("a swap publishes only with count == 0") is the wait loop's own exit
//!   condition, and the spec disables it for the one variant without the wait; it is
//!   not a separate check. S5, Q1 and the consequence invariants catch a missing wait.
//! - `no-swap-block` keeps the 2230f9e1171a handler, so that the wait is the only
//!   step it lacks (the spec's "everything else as in v5.15+" includes v6.4).
//! - Guest accesses are reads (the pflash status read); write permission faults on a
//!   read-only KSM leaf are left out.

mod check;
mod host;
mod ksm;
mod notify;
mod protocol;
mod slots;
mod stage2;
mod updater;
mod vcpu;

use crate::model::mem::{Arena, Pfn};
use crate::model::notifier::Invalidations;
use crate::model::{
    CoverDesc, Ctx, Expect, Model, ModelConfig, ModelDesc, OpDesc, RoleDesc, VariantDesc, VariantKind,
    Violation,
};
use crate::rng::Rng;
use host::HostPt;
use protocol::{ChangePte, Protocol};
use slots::{Memslots, GFNS, HOST_PAGES};
use stage2::Stage2;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The memslot model's facts: ops, coverage, variants.
pub static DESC: ModelDesc = ModelDesc {
    name: "memslot",
    protocol: "memslot DELETE/MOVE vs KSM's change_pte on arm64 stage 2 (kvm_set_memslot, kvm_mmu_notifier_change_pte)",
    kernel_files: &["virt/kvm/kvm_main.c", "arch/arm64/kvm/mmu.c", "arch/arm64/kvm/hyp/pgtable.c", "mm/ksm.c"],
    seed: "003_3319bf83ae727d6d.txt",
    spec: "memslot.md",
    roles: &[
        RoleDesc { name: "updater", doc: "the VMM's memslot ioctls (kvm_set_memslot): pflash B toggled between DELETE and CREATE, or moved" },
        RoleDesc { name: "host", doc: "the primary MMU: KSM merges (write_protect_page + replace_page), unmerges (break_ksm's wp_page_copy)" },
        RoleDesc { name: "vCPU", doc: "guest accesses: a stage-2 hit, or kvm_handle_guest_abort/user_mem_abort" },
    ],
    ops: &[
        OpDesc { name: "memslot_toggle", role: UPDATER, weight: 4, doc: "DELETE slot B if present, else CREATE it (QEMU pflash ROMD <-> I/O)" },
        OpDesc { name: "memslot_move", role: UPDATER, weight: 1, doc: "MOVE slot B to its other gfn base (invalidate, then activate the moved slot)" },
        OpDesc { name: "ksm_merge", role: HOST, weight: 4, doc: "try_to_merge_one_page: write_protect_page and replace_page brackets, then drop the old page" },
        OpDesc { name: "unmerge", role: HOST, weight: 2, doc: "break_ksm's COW (wp_page_copy) of one page: a bracket replacing it with set_pte_at_notify, then drop the old one" },
        OpDesc { name: "guest_access", role: VCPU, weight: 1, doc: "a guest read: stage-2 hit, or the fault path (MMIO exit, retry, map)" },
    ],
    params: &[],
    coverage: &[
        CoverDesc { name: "change_pte_saw_invalid_slot", per: &["ksm_merge", "unmerge"], doc: "The change_pte handler met an INVALID slot overlapping the hva (the (C) window; skipped by the fixed handler)." },
        CoverDesc { name: "spte_set_table_present", per: &["ksm_merge", "unmerge"], doc: "kvm_set_spte_gfn found the stage-2 table and installed a leaf." },
        CoverDesc { name: "spte_set_enomem", per: &["ksm_merge", "unmerge"], doc: "kvm_set_spte_gfn found no table and, without a memcache, mapped nothing (-ENOMEM)." },
        CoverDesc { name: "swap_waited_on_count", per: &["memslot_toggle", "memslot_move"], doc: "kvm_swap_active_memslots slept because mn_active_invalidate_count != 0." },
        CoverDesc { name: "bracket_overlapped_delete", per: &["ksm_merge", "unmerge"], doc: "An invalidate_range_start ran between a DELETE/MOVE's INVALID publish (A) and its final swap." },
        CoverDesc { name: "change_pte_walked_slots", per: &["ksm_merge", "unmerge"], doc: "change_pte passed its in_progress test and walked the overlapping slots." },
        CoverDesc { name: "fault_retry", per: &["guest_access"], doc: "user_mem_abort's mmu_invalidate_retry said retry under mmu_lock." },
        CoverDesc { name: "fault_mmio_exit_invalid", per: &["guest_access"], doc: "kvm_handle_guest_abort found the slot INVALID and took the MMIO exit." },
        CoverDesc { name: "stale_access_exit", per: &["guest_access"], doc: "A guest access to a gfn that must exit (flushed, no valid slot yet) found no leaf and exited (the S6 path)." },
        CoverDesc { name: "page_freed_after_merge", per: &["ksm_merge"], doc: "KSM dropped its reference on the merged-away page after range_end and freed it." },
    ],
    variants: &[
        VariantDesc {
            name: "buggy",
            commit: "2230f9e1171a^ (v5.15-v6.3)",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["S1", "S2", "S6", "S7"]),
            cells: &[],
            needs_concurrency: true,
            doc: "change_pte runs kvm_set_spte_gfn for every overlapping slot, INVALID included",
        },
        VariantDesc {
            name: "skip-invalid",
            commit: "2230f9e1171a (v6.4-v6.9)",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: &[],
            needs_concurrency: false,
            doc: "kvm_change_spte_gfn skips an INVALID slot",
        },
        VariantDesc {
            name: "removed",
            commit: "f3b65bbaed7c (v6.10+)",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: &[],
            needs_concurrency: false,
            doc: "no .change_pte: the brackets stay, stage 2 is refilled by faults only",
        },
        VariantDesc {
            name: "x86like",
            commit: "x86 kvm_set_pte_rmap",
            kind: VariantKind::Control,
            expect: Expect::Clean,
            cells: &[],
            needs_concurrency: true,
            doc: "negative control: the handler rewrites existing leaves only, never installs one",
        },
        VariantDesc {
            name: "no-swap-block",
            commit: "52ac8b358b0c not applied",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["Q1", "S5", "S7", "Q2"]),
            cells: &[],
            needs_concurrency: true,
            doc: "ablation: the swap publishes without waiting for mn_active_invalidate_count == 0",
        },
        VariantDesc::mutant("mut-fault-no-retry", &["S7", "Q2"], true, "user_mem_abort maps without mmu_invalidate_retry"),
        VariantDesc::mutant("mut-retry-seq-only", &["S7", "Q2"], true, "mmu_invalidate_retry tests the sequence but not in_progress"),
        VariantDesc::mutant("mut-map-after-unlock", &["S7", "Q2"], true, "the fault drops mmu_lock after its retry test, then maps"),
        VariantDesc::mutant("mut-end-no-seq", &["S7", "Q2"], true, "kvm_mmu_invalidate_end forgets mmu_invalidate_seq++"),
        VariantDesc::mutant("mut-unmap-short", &["S8", "S7", "Q2"], true, "kvm_unmap_gfn_range stops one gfn short of the range end"),
        VariantDesc::mutant("mut-no-flush", &["S2", "S6", "S7", "Q2"], true, "kvm_invalidate_memslot skips kvm_arch_flush_shadow_memslot"),
        VariantDesc::mutant("mut-flush-before-swap", &["S2", "S6", "S7", "Q2"], true, "the INVALID slot's flush runs before its swap publishes it"),
        VariantDesc::mutant("mut-no-synchronize-srcu", &["S2", "S6", "S7", "Q2"], true, "kvm_swap_active_memslots skips synchronize_srcu_expedited"),
    ],
    injection: crate::model::InjectionPolicy::Uniform,
    hidden: false,
    build,
};

/// Role bits of the descriptor's ops.
const UPDATER: u32 = 0;
const HOST: u32 = 1;
const VCPU: u32 = 2;

/// Op ids (indices into the descriptor's ops).
mod op {
    pub const TOGGLE: usize = 0;
    pub const MOVE: usize = 1;
    pub const MERGE: usize = 2;
    pub const UNMERGE: usize = 3;
    pub const ACCESS: usize = 4;
}

/// Coverage counter ids (indices into the descriptor's coverage).
mod cov {
    pub const CHANGE_PTE_INVALID: usize = 0;
    pub const SPTE_TABLE_PRESENT: usize = 1;
    pub const SPTE_ENOMEM: usize = 2;
    pub const SWAP_WAITED: usize = 3;
    pub const BRACKET_OVERLAPPED_DELETE: usize = 4;
    pub const CHANGE_PTE_WALKED: usize = 5;
    pub const FAULT_RETRY: usize = 6;
    pub const MMIO_EXIT_INVALID: usize = 7;
    pub const STALE_ACCESS_EXIT: usize = 8;
    pub const PAGE_FREED_AFTER_MERGE: usize = 9;
}

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    Ok(Arc::new(Memslot::new(
        Protocol::of(cfg.variant.name)?,
        cfg.threads,
    )))
}

/// One operation in flight: the engine's context and the first violation seen. The
/// protocol goes on after a violation (as the kernel after a WARN) so that every
/// lock, SRCU section, reference and counter is released before the op returns.
struct Op<'a, 'b> {
    cx: &'a mut (dyn Ctx + 'b),
    first: Option<Violation>,
}

impl<'a, 'b> Op<'a, 'b> {
    fn note<T>(&mut self, r: Result<T, Violation>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(v) => {
                self.flag(v);
                None
            }
        }
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
}

/// The model: one VM's memslots, stage 2 and notifier state, and the host memory.
pub struct Memslot {
    proto: Protocol,
    arena: Arena,
    host: HostPt,
    inv: Invalidations,
    slots: Memslots,
    stage2: Stage2,
    /// The KSM stable page every merge maps (KSM holds a reference on it).
    ksm_page: Pfn,
    /// Ghost (S6): gfns whose stage-2 range was flushed by (B) and that no published
    /// array has covered with a valid slot since: an access must exit to MMIO.
    stale: Vec<AtomicBool>,
    /// Ghost (coverage): a DELETE/MOVE is between (A) and its final swap.
    update_in_flight: AtomicBool,
}

impl Memslot {
    fn new(proto: Protocol, threads: usize) -> Self {
        // Host pages, the KSM page, pages in flight (a fresh page per host worker,
        // GUP references and merged-away pages kept by KSM), and slack.
        let arena = Arena::new(HOST_PAGES as usize + 1 + 4 * threads + 16, 1);
        let host = HostPt::new(&arena, HOST_PAGES);
        let ksm_page = arena.alloc_mapped("KSM stable page").expect("arena sized");
        Memslot {
            proto,
            host,
            ksm_page,
            arena,
            inv: Invalidations::new(),
            slots: Memslots::new(),
            stage2: Stage2::default(),
            stale: (0..GFNS).map(|_| AtomicBool::new(false)).collect(),
            update_in_flight: AtomicBool::new(false),
        }
    }
}

impl Model for Memslot {
    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        let (u, h, v) = (1 << UPDATER, 1 << HOST, 1 << VCPU);
        match threads {
            1 => vec![u | h | v],
            2 => vec![u | h, v],
            // One updater, a KSM thread for every six workers, the rest vCPUs. More
            // host threads keep mn_active_invalidate_count raised nearly all the time
            // (their brackets overlap) and starve the memslot swap's wait, which has
            // no fairness in the kernel either. Fewer starve the host instead: on 2
            // cores, 14 vCPUs against one KSM thread ran 16,000 guest accesses per
            // merge, and a fault met an invalidation in 0.03% of the accesses; with
            // three KSM threads at 16 workers, in 1.7-2.1%.
            n => (0..n)
                .map(|w| match w {
                    0 => u,
                    1 => h,
                    w if w % 6 == 0 => h,
                    _ => v,
                })
                .collect(),
        }
    }

    fn step(&self, cx: &mut dyn Ctx, id: usize) -> Result<(), Violation> {
        let mut op = Op { cx, first: None };
        match id {
            op::TOGGLE => self.memslot_toggle(&mut op),
            op::MOVE => self.memslot_move(&mut op),
            op::MERGE => self.ksm_merge(&mut op),
            op::UNMERGE => self.unmerge(&mut op),
            op::ACCESS => self.guest_access(&mut op),
            other => panic!("memslot has no op {other}"),
        }
        op.first.map_or(Ok(()), Err)
    }

    fn check_quiescent(&self) -> Result<(), Violation> {
        self.quiescent()
    }

    fn finish(&self) -> Result<(), Violation> {
        self.quiescent()
    }

    fn dump(&self) -> String {
        self.dump_state()
    }

    fn coverage_applies(&self, id: usize) -> bool {
        let handler = self.proto.change_pte;
        match id {
            cov::CHANGE_PTE_INVALID | cov::CHANGE_PTE_WALKED => handler != ChangePte::Removed,
            cov::SPTE_TABLE_PRESENT | cov::SPTE_ENOMEM => {
                matches!(handler, ChangePte::SetSpte | ChangePte::SkipInvalid)
            }
            cov::SWAP_WAITED => self.proto.swap_waits,
            _ => true,
        }
    }
}
