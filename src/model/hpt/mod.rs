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
//! unmap and aging).

mod check;
mod resize;
mod table;
mod vcpu;
mod walker;

use crate::engine::OpCtx;
use crate::model::{
    param_bool, param_u64, reject_unknown_params, Model, ModelConfig, ModelInfo, OpSpec, VariantInfo,
    Violation,
};
use crate::sync::{AtomicBool, Mutex, RawSpinLock, Srcu};
use std::sync::atomic::{AtomicU64 as StdU64, Ordering};
use std::sync::{Arc, RwLock};
use table::{Rmap, Table};

/// Which of the fix's three checks the protocol has (all of them, or none).
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// B1: setup-if-not-ready inside the run loop (`kvmppc_run_vcpu`), not once per
    /// KVM_RUN in `kvmppc_vcpu_run_hv`.
    setup_in_loop: bool,
    /// B2: `!mmu_ready` in the interrupts-off re-check of `kvmppc_run_core`.
    irqoff_recheck: bool,
    /// B3: `mmu_ready` checked under the HPTE lock in `kvmppc_book3s_hv_page_fault`.
    fault_recheck: bool,
}

pub static VARIANTS: &[VariantInfo] = &[
    VariantInfo {
        name: "fixed",
        commit: "38c53af85306",
        needs_concurrency: false,
        expect_violation: false,
        summary: "mmu_ready re-checked in the run loop, with interrupts off, and in the page fault",
    },
    VariantInfo {
        name: "buggy",
        commit: "5e9859699aba",
        needs_concurrency: true,
        expect_violation: true,
        summary: "before 38c53af85306: vCPUs re-enter the guest and re-validate entries during rehash",
    },
];

/// Role bits of [`OPS`].
const VCPU: u32 = 0;
const RESIZER: u32 = 1;
const WALKER: u32 = 2;

/// Op ids (indices into [`OPS`]).
const OP_KVM_RUN: usize = 0;
const OP_PREPARE: usize = 1;
const OP_COMMIT: usize = 2;
const OP_UNMAP: usize = 3;
const OP_AGE: usize = 4;

static OPS: &[OpSpec] = &[
    OpSpec {
        name: "kvm_run",
        role: VCPU,
        weight: 1,
    },
    OpSpec {
        name: "resize_prepare",
        role: RESIZER,
        weight: 1,
    },
    OpSpec {
        name: "resize_commit",
        role: RESIZER,
        weight: 1,
    },
    OpSpec {
        name: "notifier_unmap",
        role: WALKER,
        weight: 2,
    },
    OpSpec {
        name: "age_rmap",
        role: WALKER,
        weight: 1,
    },
];

/// Coverage counters: how often each race window of the spec was entered.
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
    pub const NAMES: &[&str] = &[
        "ipi_waited_for_guest_exit",
        "guest_entry_refused_mmu_not_ready",
        "fault_bailed_mmu_not_ready",
        "fault_on_stale_table",
        "setup_blocked_by_resize",
        "fault_overlapped_commit",
        "shrinking_resize_committed",
        "growing_resize_committed",
        "walker_hpte_lock_busy",
        "commit_error_path",
    ];
}

pub static INFO: ModelInfo = ModelInfo {
    name: "hpt",
    summary: "HPT resize vs page faults / H_ENTER / H_REMOVE (PPC Book3S HV, 38c53af85306)",
    variants: VARIANTS,
    ops: || OPS,
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
    /// Evaluate the per-op invariants (R1–R4, Q1 in the commit). Off only to measure
    /// what they cost: turning them off can hide a violation, never cause one.
    checks: bool,
}

const PARAM_KEYS: &[&str] = &[
    "order_large",
    "order_small",
    "pages",
    "vas",
    "bolted",
    "passes",
    "accesses",
    "checks",
];

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    let p = &cfg.params;
    reject_unknown_params(p, PARAM_KEYS)?;
    let params = Params {
        order_large: param_u64(p, "order_large", 10, 8..=18)? as u32,
        order_small: param_u64(p, "order_small", 8, 8..=18)? as u32,
        pages: param_u64(p, "pages", 32, 1..=1 << 16)?,
        vas: param_u64(p, "vas", 96, 1..=1 << 20)?,
        bolted: param_u64(p, "bolted", 4, 0..=64)?,
        passes: param_u64(p, "passes", 4, 1..=1000)?,
        accesses: param_u64(p, "accesses", 12, 1..=10_000)?,
        checks: param_bool(p, "checks", true)?,
    };
    if params.order_small > params.order_large {
        return Err("params.order_small must not exceed params.order_large".into());
    }
    let checks = match cfg.variant.name {
        "fixed" => Checks {
            setup_in_loop: true,
            irqoff_recheck: true,
            fault_recheck: true,
        },
        _ => Checks {
            setup_in_loop: false,
            irqoff_recheck: false,
            fault_recheck: false,
        },
    };
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
    /// `kvm->mmu_lock`.
    mmu_lock: RawSpinLock,
    /// `kvm->srcu`.
    srcu: Srcu,
    vcpus: Vec<Vcpu>,
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
            mmu_lock: RawSpinLock::new(),
            srcu: Srcu::new(),
            vcpus: (0..threads).map(|_| Vcpu::default()).collect(),
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
}

impl Model for Hpt {
    fn ops(&self) -> &'static [OpSpec] {
        OPS
    }

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

    fn coverage_names(&self) -> &'static [&'static str] {
        cov::NAMES
    }

    fn step(&self, cx: &mut OpCtx, op: usize) -> Result<(), Violation> {
        match op {
            OP_KVM_RUN => self.kvm_run(cx),
            OP_PREPARE => self.resize_prepare(cx),
            OP_COMMIT => self.resize_commit(cx),
            OP_UNMAP => self.notifier_unmap(cx),
            OP_AGE => self.age_rmap(cx),
            _ => unreachable!("op id {op} outside OPS"),
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
