//! HPT resizing vs HPT updates (KVM PPC Book3S HV), per `spec/hpt-resize.md`.
//!
//! The protocol of commit 38c53af85306 ("KVM: PPC: Book3S HV: Fix exclusion between
//! HPT resizing and other HPT updates") and of the code it fixed (5e9859699aba).
//! A resize commit clears `mmu_ready` (then `hpte_setup_done`), fences, IPIs every
//! vCPU out of the guest and rehashes the old table entry by entry; then it pivots to
//! the new table. Before the fix a vCPU could re-enter the guest without re-checking
//! the flag (B1, B2) and a page fault could make an already-rehashed entry VALID
//! again (B3), linking an index of the old table into an rmap chain: with a smaller
//! new table that index points past the end of the new rev array.
//!
//! Roles: vCPUs (`kvm_run`: the run loop with guest accesses, H_ENTER, H_REMOVE and
//! host page faults), a resizer (prepare + commit) and an rmap walker (notifier
//! unmap and aging). Which pages and entries they aim at (the workload's biases
//! that make the racing parties meet) is `pick.rs`.

mod check;
mod pick;
mod protocol;
mod resize;
mod table;
mod vcpu;
mod walker;

use crate::model::notifier::{Layout, Mmu};
use crate::model::{
    CoverDesc, Ctx, Expect, Model, ModelConfig, ModelDesc, OpDesc, ParamDesc, ParamKind, RoleDesc,
    VariantDesc, VariantKind, Violation,
};
use crate::sync::{AtomicBool, Cpus, Mutex};
use protocol::Checks;
use std::sync::atomic::{AtomicU64 as StdU64, Ordering};
use std::sync::{Arc, RwLock};
use table::{Rmap, Table};

/// Role bits of the descriptor's ops.
const VCPU: u32 = 0;
const RESIZER: u32 = 1;
const WALKER: u32 = 2;

/// Op ids (indices into the descriptor's ops).
const OP_KVM_RUN: usize = 0;
const OP_PREPARE: usize = 1;
const OP_COMMIT: usize = 2;
const OP_UNMAP: usize = 3;
const OP_AGE: usize = 4;

/// Coverage counter ids (indices into the descriptor's coverage).
mod cov {
    pub const IPI_WAITED_FOR_GUEST: usize = 0;
    pub const ENTRY_REFUSED_NOT_READY: usize = 1;
    pub const FAULT_BAILED_NOT_READY: usize = 2;
    pub const FAULT_STALE_TABLE: usize = 3;
    pub const SETUP_BLOCKED_BY_RESIZE: usize = 4;
    pub const FAULT_OVERLAPPED_COMMIT: usize = 5;
    pub const SHRINK_COMMITTED: usize = 6;
    pub const GROW_COMMITTED: usize = 7;
    pub const WALKER_HPTE_BUSY: usize = 8;
    pub const COMMIT_ERROR_PATH: usize = 9;
    pub const FAULT_RETRIED_INVALIDATION: usize = 10;
    pub const H_ENTER_ABSENT_INVALIDATION: usize = 11;
    pub const UNMAP_UNLINKED_VALID: usize = 12;
    pub const GUEST_ENTERED: usize = 13;
    pub const COMMIT_REHASHED: usize = 14;
    pub const FAULT_GUP_RACED_INVALIDATION: usize = 15;
}

/// The HPT model's facts: ops, params, coverage, variants.
pub static DESC: ModelDesc = ModelDesc {
    name: "hpt",
    protocol: "HPT resize vs page faults / H_ENTER / H_REMOVE (PPC Book3S HV, 38c53af85306)",
    kernel_files: &[
        "arch/powerpc/kvm/book3s_64_mmu_hv.c",
        "arch/powerpc/kvm/book3s_hv.c",
        "arch/powerpc/kvm/book3s_hv_rm_mmu.c",
    ],
    seed: "000_8347254e9178b5f1.txt",
    spec: "hpt-resize.md",
    roles: &[
        RoleDesc {
            name: "vCPU",
            doc: "KVM_RUN passes: guest accesses, H_ENTER, H_REMOVE, host page faults",
        },
        RoleDesc {
            name: "resizer",
            doc: "KVM_PPC_RESIZE_HPT_PREPARE and _COMMIT",
        },
        RoleDesc {
            name: "walker",
            doc: "mmu-notifier rmap walks: kvm_unmap_rmapp and aging",
        },
    ],
    ops: &[
        OpDesc {
            name: "kvm_run",
            role: VCPU,
            weight: 1,
            doc: "kvmppc_vcpu_run_hv: setup, run-loop passes that may enter the guest",
        },
        OpDesc {
            name: "resize_prepare",
            role: RESIZER,
            weight: 8,
            doc: "kvm_vm_ioctl_resize_hpt_prepare: allocate the next table",
        },
        OpDesc {
            name: "resize_commit",
            role: RESIZER,
            weight: 1,
            doc: "kvm_vm_ioctl_resize_hpt_commit: clear mmu_ready, IPI, rehash, pivot",
        },
        OpDesc {
            name: "notifier_unmap",
            role: WALKER,
            weight: 2,
            doc: "an mmu-notifier invalidation of 1-2 guest pages: kvm_unmap_rmapp under mmu_lock, then the host frees the pages",
        },
        OpDesc {
            name: "age_rmap",
            role: WALKER,
            weight: 1,
            doc: "kvm_age_rmapp: clear the referenced bits of one chain",
        },
    ],
    params: &[
        ParamDesc {
            name: "order_large",
            kind: ParamKind::Int {
                default: 10,
                min: 8,
                max: 18,
            },
            doc: "log2 bytes of the larger of the two table sizes the resizer alternates",
        },
        ParamDesc {
            name: "order_small",
            kind: ParamKind::Int {
                default: 8,
                min: 8,
                max: 18,
            },
            doc: "log2 bytes of the smaller table (not above order_large)",
        },
        ParamDesc {
            name: "pages",
            kind: ParamKind::Int {
                default: 32,
                min: 1,
                max: 1 << 16,
            },
            doc: "guest real pages (rmap words)",
        },
        ParamDesc {
            name: "vas",
            kind: ParamKind::Int {
                default: 96,
                min: 1,
                max: 1 << 20,
            },
            doc: "guest virtual pages the vCPUs touch",
        },
        ParamDesc {
            name: "bolted",
            kind: ParamKind::Int {
                default: 4,
                min: 0,
                max: 64,
            },
            doc: "virtual pages below this are entered BOLTED (survive a resize, ABSENT)",
        },
        ParamDesc {
            name: "passes",
            kind: ParamKind::Int {
                default: 4,
                min: 1,
                max: 1000,
            },
            doc: "run-loop passes per kvm_run op",
        },
        ParamDesc {
            name: "accesses",
            kind: ParamKind::Int {
                default: 12,
                min: 1,
                max: 10_000,
            },
            doc: "guest accesses per guest entry",
        },
        ParamDesc {
            name: "hot",
            kind: ParamKind::Int {
                default: 4,
                min: 0,
                max: 1 << 16,
            },
            doc: "guest real pages in the shared hot set: half the guest accesses and rmap walks go there (0: none)",
        },
        ParamDesc {
            name: "pcpus",
            kind: ParamKind::Int {
                default: 16,
                min: 1,
                max: 1024,
            },
            doc: "host CPUs: at most this many vCPUs have interrupts off (are in the guest) at once",
        },
        ParamDesc {
            name: "checks",
            kind: ParamKind::Bool { default: true },
            doc: "evaluate per-op invariants (off only to measure their cost)",
        },
    ],
    coverage: &[
        CoverDesc {
            name: "ipi_waited_for_guest_exit",
            per: &["resize_commit"],
            doc: "resize.rs ipi_all_vcpus: resize_hpt_commit's IPI found a vCPU interrupts-off and waited for its exit",
        },
        CoverDesc {
            name: "guest_entry_refused_mmu_not_ready",
            per: &["kvm_run"],
            doc: "vcpu.rs kvm_run: kvmppc_run_core's interrupts-off recheck saw !mmu_ready and refused entry",
        },
        CoverDesc {
            name: "fault_bailed_mmu_not_ready",
            per: &["kvm_run"],
            doc: "vcpu.rs page_fault: kvmppc_book3s_hv_page_fault saw !mmu_ready under the HPTE lock and bailed",
        },
        CoverDesc {
            name: "fault_on_stale_table",
            per: &["kvm_run"],
            doc: "vcpu.rs page_fault: a host fault resumed after a whole commit replaced the table it started on",
        },
        CoverDesc {
            name: "setup_blocked_by_resize",
            per: &["kvm_run"],
            doc: "vcpu.rs setup_htab: kvmppc_hv_setup_htab_rma waited on kvm->lock while a resize was in progress",
        },
        CoverDesc {
            name: "fault_overlapped_commit",
            per: &["kvm_run"],
            doc: "vcpu.rs page_fault: a host fault ran while a commit was rehashing or IPI-ing its table",
        },
        CoverDesc {
            name: "shrinking_resize_committed",
            per: &["resize_commit"],
            doc: "resize.rs resize_commit: a commit pivoted to a smaller table",
        },
        CoverDesc {
            name: "growing_resize_committed",
            per: &["resize_commit"],
            doc: "resize.rs resize_commit: a commit pivoted to a larger table",
        },
        CoverDesc {
            name: "walker_hpte_lock_busy",
            per: &["notifier_unmap", "age_rmap"],
            doc: "walker.rs unmap_rmapp/age_rmap: an rmap walker found a chain member HPTE-locked (by a fault, H_REMOVE or rehash) and retried",
        },
        CoverDesc {
            name: "commit_error_path",
            per: &["resize_commit"],
            doc: "resize.rs resize_commit: a commit took -ENXIO (nothing prepared) or -ENOSPC (rehash failed)",
        },
        CoverDesc {
            name: "fault_retried_invalidation",
            per: &["kvm_run"],
            doc: "vcpu.rs page_fault: mmu_invalidate_retry() under the rmap lock said retry (an invalidation ran since mmu_seq)",
        },
        CoverDesc {
            name: "h_enter_absent_invalidation",
            per: &["kvm_run"],
            doc: "vcpu.rs h_enter: kvmppc_do_h_enter's mmu_invalidate_retry() under the rmap lock made the entry ABSENT",
        },
        CoverDesc {
            name: "unmap_unlinked_valid",
            per: &["notifier_unmap"],
            doc: "walker.rs unmap_rmapp: kvm_unmap_rmapp made a VALID entry ABSENT before the host let its page go",
        },
        CoverDesc {
            name: "guest_entered",
            per: &["kvm_run"],
            doc: "vcpu.rs kvm_run: a run-loop pass entered the guest (outcome counter: compare with kvm_run ops)",
        },
        CoverDesc {
            name: "commit_rehashed",
            per: &["resize_commit"],
            doc: "resize.rs resize_commit: a commit rehashed and pivoted (outcome counter: compare with resize_commit ops)",
        },
        CoverDesc {
            name: "fault_gup_raced_invalidation",
            per: &["kvm_run"],
            doc: "vcpu.rs page_fault: the page the fault pinned was replaced by the host before the fault took the rmap lock",
        },
    ],
    variants: &[
        VariantDesc {
            name: "fixed",
            commit: "38c53af85306",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: &[],
            needs_concurrency: false,
            doc: "mmu_ready re-checked in the run loop, with interrupts off, and in the page fault",
        },
        VariantDesc {
            name: "buggy",
            commit: "5e9859699aba",
            kind: VariantKind::Race,
            // Q1 too: an entry a vCPU re-validated in the old table during the rehash is
            // still VALID when the rehash ends (seen first in stress under load). H1: such
            // an entry is outside the rmap chains an invalidation walks, so it outlives
            // its host page (seen first in a stress run with two copies of the suite).
            expect: Expect::Caught(&["R1", "R2", "R3", "R4", "Q1", "H1"]),
            cells: &[],
            needs_concurrency: true,
            doc: "before 38c53af85306: vCPUs re-enter the guest and re-validate entries during rehash",
        },
        VariantDesc::mutant("mut-fault-retry-before-rmap-lock", &["H1"], true, "the page fault tests mmu_invalidate_retry() just before lock_rmap(), not under it"),
        VariantDesc::mutant("mut-seq-after-gup", &["H1"], true, "the page fault snapshots mmu_invalidate_seq after get_user_pages, not before"),
        VariantDesc::mutant("mut-h-enter-no-retry", &["H1"], true, "H_ENTER makes the entry VALID without testing mmu_invalidate_retry() under the rmap lock"),
        VariantDesc::mutant("mut-unmap-range-short", &["H1"], false, "kvm_unmap_gfn_range walks [start, end - 1): the last page of the range keeps its HPTEs"),
        VariantDesc::mutant("mut-unmap-skips-busy-hpte", &["H1"], true, "kvm_unmap_rmapp gives up on a page whose chain head is HPTE-locked instead of waiting"),
        VariantDesc::mutant("mut-ipi-skips-last-vcpu", &["R4", "R3", "R1", "R2", "Q1", "H1"], true, "the resize IPI loop stops one vCPU short: the last vCPU stays in the guest during rehash"),
        VariantDesc::mutant("mut-irq-off-after-recheck", &["R4", "R3", "R1", "R2", "Q1", "H1"], true, "kvmppc_run_core marks the vCPU interrupts-off only after its mmu_ready recheck passed"),
    ],
    injection: crate::model::InjectionPolicy::Targeted,
    hidden: false,
    build,
};

/// Sizes and rates, from the scenario's `[params]`.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Orders (log2 bytes) of the two sizes the resizer alternates between.
    order_large: u32,
    order_small: u32,
    /// Guest real pages (rmap words).
    pages: u64,
    /// Guest virtual pages the vCPUs touch.
    vas: u64,
    /// Virtual pages below this are entered BOLTED (they survive a resize, ABSENT).
    bolted: u64,
    /// Run-loop passes per `kvm_run` op (each may enter the guest).
    passes: u64,
    /// Guest accesses per guest entry.
    accesses: u64,
    /// Guest pages in the hot set every vCPU and walker favours (`pick.rs`).
    hot: u64,
    /// Evaluate the per-op invariants (R1–R4, Q1 in the commit). Off only to measure
    /// what they cost: turning them off can hide a violation, never cause one.
    checks: bool,
    /// Host CPUs a vCPU holds from interrupts off to guest exit ([`Cpus`]).
    pcpus: usize,
}

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    let p = &cfg.params;
    let params = Params {
        order_large: p.int("order_large") as u32,
        order_small: p.int("order_small") as u32,
        pages: p.int("pages"),
        vas: p.int("vas"),
        bolted: p.int("bolted"),
        passes: p.int("passes"),
        accesses: p.int("accesses"),
        checks: p.flag("checks"),
        hot: p.int("hot"),
        pcpus: p.int("pcpus") as usize,
    };
    if params.order_small > params.order_large {
        return Err("params.order_small must not exceed params.order_large".into());
    }
    let checks = Checks::of(cfg.variant.name)?;
    Ok(Arc::new(Hpt::new(params, checks, cfg.threads)))
}

/// A prepared resize (`struct kvm_resize_hpt`), guarded by `kvm->lock`.
#[derive(Debug, Default)]
struct ResizeRecord {
    pending: Option<Arc<Table>>,
}

/// One vCPU's run state: bit 0 set from the interrupts-off check until guest exit,
/// the rest an exit counter, so the IPI can wait for "this entry has ended".
#[derive(Debug, Default)]
struct Vcpu {
    run: crate::sync::AtomicU64,
    /// Set by the resize IPI; the guest leaves at its next access.
    kick: AtomicBool,
}

/// Test-only knowledge of the commit, used by invariants R3/R4 and to bias the
/// guest's accesses; never read by the protocol itself.
#[derive(Debug, Default)]
struct Ghost {
    /// The rehash in progress as one word, `gen << 32 | cursor` (0 if none): entries
    /// of table `gen` below `cursor` are rehashed. One word, so a reader never pairs
    /// one commit's generation with another's cursor (a failed commit keeps its table).
    rehash: StdU64,
    /// 1 from the end of the IPI until `mmu_ready` returns to 1.
    ipi_window: StdU64,
    /// The guest page of the latest host fault, plus one (0: none yet): the
    /// notifier aims at it half the time, so invalidations meet faults in flight.
    fault_gfn: StdU64,
    /// 1 from `mmu_ready = 0` to `mmu_ready = 1` of a resize commit: the guest then
    /// touches ABSENT entries, so its faults meet the commit (`pick.rs`).
    committing: StdU64,
    /// The guest page of an H_REMOVE between clearing VALID and unlinking the entry
    /// (its `tlbie`), plus one (0: none): the aging walk aims at it (`pick.rs`).
    removing_gfn: StdU64,
}

pub struct Hpt {
    params: Params,
    checks: Checks,
    /// `kvm->arch.hpt`: swapped by the pivot under `mmu_lock`.
    current: RwLock<Arc<Table>>,
    next_gen: StdU64,
    rmap: Rmap,
    /// `kvm->arch.mmu_ready` (`hpte_setup_done` before 4.16).
    mmu_ready: AtomicBool,
    /// `kvm->lock` with the resize record it guards.
    kvm_lock: Mutex<ResizeRecord>,
    /// The host side: guest memory as one memslot of host pages in the arena, the
    /// invalidation counters, `kvm->mmu_lock` and `kvm->srcu`.
    mmu: Mmu,
    vcpus: Vec<Vcpu>,
    /// The host CPUs a vCPU runs on with interrupts off: the resize IPI
    /// (`on_each_cpu()`) waits only for vCPUs that are running.
    cpus: Cpus,
    ghost: Ghost,
}

impl Ghost {
    /// The (table generation, cursor) of the rehash in progress, if any.
    fn rehash(&self) -> Option<(u64, usize)> {
        match self.rehash.load(Ordering::SeqCst) {
            0 => None,
            w => Some((w >> 32, (w & 0xffff_ffff) as usize)),
        }
    }

    /// The cursor of a rehash of table `gen`, if that table is being rehashed.
    fn cursor_in(&self, gen: u64) -> Option<usize> {
        self.rehash().filter(|&(g, _)| g == gen).map(|(_, c)| c)
    }

    fn set_rehash(&self, gen: u64, cursor: usize) {
        self.rehash.store(gen << 32 | cursor as u64, Ordering::SeqCst);
    }
}

impl Hpt {
    fn new(params: Params, checks: Checks, threads: usize) -> Self {
        Hpt {
            current: RwLock::new(Arc::new(Table::new(1, params.order_large))),
            next_gen: StdU64::new(2),
            rmap: Rmap::new(params.pages as usize),
            mmu_ready: AtomicBool::new(true),
            kvm_lock: Mutex::new(ResizeRecord::default()),
            mmu: Mmu::new(
                Layout {
                    slots: 1,
                    slot_pages: params.pages,
                    outside_pages: 0,
                },
                threads + 8,
                1,
            ),
            vcpus: (0..threads).map(|_| Vcpu::default()).collect(),
            cpus: Cpus::new(params.pcpus, threads),
            ghost: Ghost::default(),
            params,
            checks,
        }
    }

    /// `kvm->arch.hpt` as read now.
    #[track_caller]
    fn current(&self) -> Arc<Table> {
        crate::point!("hpt.read_current");
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn new_gen(&self) -> u64 {
        self.next_gen.fetch_add(1, Ordering::Relaxed)
    }

    /// The guest real page a guest virtual page maps (the guest's linear map).
    fn gfn_of(&self, va: u64) -> u64 {
        va % self.params.pages
    }

    /// `gfn_to_hva_memslot()` of guest page `gfn` in the VM's one memslot, which
    /// never moves (so no SRCU read side is needed to read it).
    fn hva_of(&self, gfn: u64) -> u64 {
        let l = &self.mmu.layout;
        l.hva(l.region(0, 0) + gfn)
    }
}

impl Model for Hpt {
    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        let all = 1 << VCPU | 1 << RESIZER | 1 << WALKER;
        match threads {
            1 => vec![all],
            2 => vec![1 << VCPU, 1 << RESIZER | 1 << WALKER],
            n => (0..n)
                .map(|w| match w {
                    0 => 1 << RESIZER,
                    1 => 1 << WALKER,
                    _ => 1 << VCPU,
                })
                .collect(),
        }
    }

    fn step(&self, cx: &mut dyn Ctx, op: usize) -> Result<(), Violation> {
        match op {
            OP_KVM_RUN => self.kvm_run(cx),
            OP_PREPARE => self.resize_prepare(cx),
            OP_COMMIT => self.resize_commit(cx),
            OP_UNMAP => self.notifier_unmap(cx),
            OP_AGE => self.age_rmap(cx),
            _ => unreachable!("op id {op} outside the descriptor's ops"),
        }
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
