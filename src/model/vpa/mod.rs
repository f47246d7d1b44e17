//! VPA / DTL / SLB-shadow registration on KVM PPC Book3S HV, per `spec/vpa.md`
//! (seed 001: "Make virtual processor area registration more robust", 2012).
//!
//! **Protocol (mainline arch/powerpc/kvm/book3s_hv.c).** A guest registers three
//! per-vCPU areas in its memory with H_REGISTER_VPA, for itself or another vCPU.
//! `do_h_register_vpa()` checks the arguments (reading the length word at offset 4
//! through a short pin), then under the *target's* `vpa_update_lock` only records a
//! pending update (`next_gpa`, `len`, `update_pending`). The target's own thread
//! applies it before it becomes runnable (`kvmppc_update_vpas()`): it drops the lock
//! to pin the new page, retakes it and retries if `next_gpa` moved, installs the new
//! `pinned_addr`/`pinned_end`, unpins the old page (marking it dirty if written) and
//! re-initialises the VPA or resets `dtl_ptr`. The vcore runner writes through the
//! applied pointers without the lock (dispatch trace log entries that wrap at
//! `pinned_end`, `yield_count` at guest entry and exit, the SLB shadow), which is safe
//! only because nothing changes them while the vCPU is runnable; `prepare_threads`
//! sends a vCPU with a pending update back to apply it first. Before the seed fix
//! the caller wrote the target's live pointers with no lock and unpinned its *own*
//! old area; `buggy` and `buggy-dtl` are that code.
//!
//! **Invariants.** V1 (every access through an area: live, pinned, same generation,
//! in range), C1 (consequence: the page is pinned *for that area*, whatever code path
//! produced the address — a ledger of area pins per page), V1b (applied = last
//! registered when nothing is pending), V2 (`pinned_end − pinned == len`), V3
//! (`dtl_ptr` inside the DTL on an entry boundary), V4 (each hcall's return code =
//! the sequential reference's, per row of the bad-input table), V5a/V5b (who writes
//! the applied and pending fields, from the lock's recorded holder), V6 (pins equal
//! live tokens; no NULL or double unpin; none left after teardown), V7 (written pages
//! reach the dirty log).
//!
//! **Where this follows the kernel over the spec.**
//! - `struct kvmppc_vpa` has one `len`, shared by the pending and applied parts;
//!   `pinned_end = va + len` with the `len` current at relock (what makes `aba-xyx`
//!   correct). The model keeps that single field.
//! - `__kvmppc_create_dtl_entry()` returns early unless both `dtl_ptr` and the VPA are
//!   set (spec: only `dtl_ptr`); the caller returns if the VPA is NULL anyway.
//! - Guest memory starts at gpa 0, as a guest's first memslot does: the pre-fix
//!   hcall accepts address 0 (a real page), as the spec's table says.
//! - The runner follows the POWER8 path: the dispatch-time writes happen after the
//!   vcore lock is dropped, with the vCPU held in the guest until they end.
//! - V8 (no stale dispatch) is not modelled: it checks the `prepare_threads` kick,
//!   which is covered by `kick_for_pending` but is not needed for memory safety.

mod area;
mod check;
mod hcall;
mod host;
mod protocol;
mod runner;
mod update;

use crate::model::mem::Arena;
use crate::model::{
    Cell, CoverDesc, Ctx, Expect, Model, ModelConfig, ModelDesc, OpDesc, ParamDesc, ParamKind, RoleDesc,
    VariantDesc, VariantKind, Violation,
};
use crate::rng::Rng;
use crate::sync::RawSpinLock;
use area::{PinRec, Vcpu, MAX_PAGES, NOT_RUNNABLE};
use host::DirtyGhost;
use protocol::{Protocol, Rules};
use std::sync::atomic::AtomicBool as GhostBool;
use std::sync::Arc;

const RACE_CAUGHT: &[&str] = &["V1", "C1", "V6", "V1b", "V2", "V3", "V4", "V7"];

/// The VPA model's facts.
pub static DESC: ModelDesc = ModelDesc {
    name: "vpa",
    protocol: "H_REGISTER_VPA: VPA/DTL/SLB-shadow registration, pending updates applied by the target (book3s_hv.c)",
    kernel_files: &["arch/powerpc/kvm/book3s_hv.c", "arch/powerpc/kvm/book3s_64_mmu_hv.c"],
    seed: "001_2c3ac0c027298c9c.txt",
    spec: "vpa.md",
    roles: &[
        RoleDesc { name: "vCPU", doc: "T: applies its pending updates (kvmppc_update_vpas) and joins or leaves the runnable list" },
        RoleDesc { name: "caller", doc: "C: H_REGISTER_VPA on random targets (itself included), malformed calls, H_CONFER" },
        RoleDesc { name: "runner", doc: "R: vcore runner: prepare_threads, dispatch-time VPA/DTL writes, yield count, SLB shadow" },
        RoleDesc { name: "reclaimer", doc: "M: frees and reuses every guest page nobody pins" },
        RoleDesc { name: "VMM", doc: "U: dirty-log harvest (V7)" },
    ],
    ops: &[
        OpDesc { name: "run", role: VCPU, weight: 4, doc: "a vCPU out of the guest applies its updates and becomes runnable; a runnable one leaves" },
        OpDesc { name: "dispatch", role: RUNNER, weight: 4, doc: "kvmppc_run_core: prepare_threads, then dispatch, entry, SLB restore, exit of each runnable vCPU" },
        OpDesc { name: "hcall", role: CALLER, weight: 4, doc: "H_REGISTER_VPA (register or deregister an area) on a random target; X-Y-X bursts in aba-xyx" },
        OpDesc { name: "hcall_bad", role: CALLER, weight: 1, doc: "one row of the bad-input table" },
        OpDesc { name: "confer", role: CALLER, weight: 1, doc: "H_CONFER: a target's yield_count under its vpa_update_lock" },
        OpDesc { name: "reclaim", role: RECLAIMER, weight: 4, doc: "free and reuse every unpinned guest page" },
        OpDesc { name: "harvest", role: VMM, weight: 1, doc: "get_dirty_log: harvest the VPA and DTL dirty flags of every vCPU (V7)" },
    ],
    params: &[ParamDesc {
        name: "pages",
        kind: ParamKind::Int { default: 0, min: 0, max: MAX_PAGES },
        doc: "guest pages (gpa 0 up); areas are registered in them (0: half the vCPUs, at least 8)",
    }],
    coverage: &[
        CoverDesc { name: "apply_retry", per: &["run"], doc: "kvmppc_update_vpa relocked and found next_gpa changed: unpinned and retried" },
        CoverDesc { name: "apply_aba", per: &["run"], doc: "kvmppc_update_vpa relocked to the same gpa although two or more registrations ran in its unlocked window (X-Y-X)" },
        CoverDesc { name: "register_while_target_runnable", per: &["hcall"], doc: "a registration was made pending while the target was runnable or in the guest" },
        CoverDesc { name: "kick_for_pending", per: &["dispatch"], doc: "prepare_threads took a runnable vCPU with an update pending off the runnable list" },
        CoverDesc { name: "dispatch_with_pending", per: &["dispatch"], doc: "a runner wrote through an old, still pinned area while an update of it was pending" },
        CoverDesc { name: "dtl_wrap", per: &["dispatch"], doc: "__kvmppc_create_dtl_entry wrapped dtl_ptr at pinned_end" },
        CoverDesc { name: "dereg_while_runnable", per: &["hcall"], doc: "a deregistration was made pending while the target was runnable or in the guest" },
        CoverDesc { name: "reclaim_after_area_unpin", per: &["reclaim"], doc: "the reclaimer freed and reused a page whose last pin an area unpin dropped" },
        CoverDesc { name: "bad_h_parameter", per: &["hcall", "hcall_bad"], doc: "an hcall returned H_PARAMETER (malformed input)" },
        CoverDesc { name: "bad_h_resource", per: &["hcall", "hcall_bad"], doc: "an hcall returned H_RESOURCE (DTL/SLB without a VPA, DEREG_VPA with DTL/SLB)" },
        CoverDesc { name: "dereg_unregistered", per: &["hcall", "hcall_bad"], doc: "a deregistration of an unregistered area returned H_SUCCESS" },
    ],
    variants: &[
        VariantDesc {
            name: "fixed",
            commit: "mainline",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: &[Cell { params: &[("pages", "64")], expect: Expect::Clean }],
            needs_concurrency: false,
            doc: "mainline book3s_hv.c, with the pre-v6.1 dtl.dirty store (see vb4-dtl-dirty)",
        },
        VariantDesc {
            name: "buggy",
            commit: "pre \"Make VPA registration more robust\" (seed 001)",
            kind: VariantKind::Race,
            expect: Expect::Caught(RACE_CAUGHT),
            cells: &[],
            needs_concurrency: true,
            doc: "the caller writes the target's live VPA/DTL/SLB pointers unlocked and unpins its own old area",
        },
        VariantDesc {
            name: "buggy-dtl",
            commit: "pre \"Make VPA registration more robust\" + DTL writer",
            kind: VariantKind::Race,
            expect: Expect::Caught(RACE_CAUGHT),
            cells: &[],
            needs_concurrency: true,
            doc: "pre-fix hcall also resets dtl_ptr; the runner writes DTL entries and wraps at a pinned_end of another page",
        },
        VariantDesc {
            name: "uncond-init-vpa",
            commit: "55b665b0263a^",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["V1"]),
            cells: &[],
            needs_concurrency: false,
            doc: "kvmppc_update_vpas calls init_vpa even after DEREG_VPA left the VPA NULL (sequential)",
        },
        VariantDesc {
            name: "apply-no-recheck",
            commit: "ablation of the relock recheck",
            kind: VariantKind::Race,
            // Rarely V4 or V1 first, under load: a later hcall checks its preconditions
            // against the lost registration (-EBUSY where the reference says 0), or the
            // runner writes through an area applied with the other registration's length.
            expect: Expect::Caught(&["V1b", "V4", "V1"]),
            cells: &[],
            needs_concurrency: true,
            doc: "kvmppc_update_vpa installs the gpa it pinned without comparing it with next_gpa: a registration is lost",
        },
        VariantDesc {
            name: "aba-xyx",
            commit: "mainline (negative control)",
            kind: VariantKind::Control,
            expect: Expect::Clean,
            cells: &[],
            needs_concurrency: true,
            doc: "callers register X, Y, X in bursts inside the target's unlocked pin window: the by-value recheck is correct",
        },
        VariantDesc {
            name: "vb4-dtl-dirty",
            commit: "e4335f53198f (v6.1, mainline)",
            kind: VariantKind::Unconfirmed,
            expect: Expect::Unknown,
            cells: &[],
            needs_concurrency: false,
            doc: "nothing sets dtl.dirty: DTL pages never reach the dirty log (V7); code reading only",
        },
        // V1/V2 too: the unlocked compare can install one registration's address with the
        // other's length, and the runner then writes outside the pinned range. V4, as for
        // apply-no-recheck: a later hcall checks its preconditions against the lost
        // registration (seen first in a stress run with two copies of the suite).
        VariantDesc::mutant("m-recheck-unlocked", &["V1b", "V1", "V2", "V4"], true, "kvmppc_update_vpa compares gpa with next_gpa before retaking the lock"),
        VariantDesc::mutant("m-keep-old-pin", &["V6", "V7"], false, "kvmppc_update_vpas forgets to unpin the replaced area"),
        VariantDesc::mutant("m-dtl-ptr-kept", &["V1", "C1", "V3"], false, "applying a DTL update leaves dtl_ptr in the old log"),
        VariantDesc::mutant("m-wrap-past-end", &["V1", "V3"], false, "the DTL wrap test fires one entry late (dt > pinned_end)"),
        VariantDesc::mutant("m-runnable-before-apply", &["V5a", "V1", "C1"], false, "the vCPU joins the runnable list before it applies its pending updates"),
        VariantDesc::mutant("m-register-unlocked", &["V5b", "V1b"], false, "do_h_register_vpa writes the pending fields without the target's lock"),
        VariantDesc::mutant("m-applied-view", &["V4"], false, "vpa_is_registered looks at pinned_addr only, ignoring a pending update"),
        VariantDesc::mutant("m-unpin-clean", &["V7"], false, "the replaced area is unpinned as clean even when it was written"),
    ],
    injection: crate::model::InjectionPolicy::Targeted,
    hidden: false,
    build,
};

/// Role bits.
const VCPU: u32 = 0;
const CALLER: u32 = 1;
const RUNNER: u32 = 2;
const RECLAIMER: u32 = 3;
const VMM: u32 = 4;

/// Op ids.
mod op {
    pub const RUN: usize = 0;
    pub const DISPATCH: usize = 1;
    pub const HCALL: usize = 2;
    pub const HCALL_BAD: usize = 3;
    pub const CONFER: usize = 4;
    pub const RECLAIM: usize = 5;
    pub const HARVEST: usize = 6;
}

/// Coverage counter ids.
mod cov {
    pub const APPLY_RETRY: usize = 0;
    pub const APPLY_ABA: usize = 1;
    pub const REGISTER_WHILE_RUNNABLE: usize = 2;
    pub const KICK_FOR_PENDING: usize = 3;
    pub const DISPATCH_WITH_PENDING: usize = 4;
    pub const DTL_WRAP: usize = 5;
    pub const DEREG_WHILE_RUNNABLE: usize = 6;
    pub const RECLAIM_AFTER_AREA_UNPIN: usize = 7;
    pub const BAD_H_PARAMETER: usize = 8;
    pub const BAD_H_RESOURCE: usize = 9;
    pub const DEREG_UNREGISTERED: usize = 10;
}

/// vCPUs for `threads` workers: one per vCPU thread; from three workers up the last
/// is the host (reclaimer and VMM).
fn vcpu_count(threads: usize) -> usize {
    if threads <= 2 {
        threads.max(1)
    } else {
        threads - 1
    }
}

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    let proto = Protocol::of(cfg.variant.name)?;
    let nv = vcpu_count(cfg.threads);
    let pages = match cfg.params.int("pages") {
        // Three areas a vCPU: with 8 pages and 63 vCPUs every page was always pinned
        // by some area, the reclaimer never met a page an unpin had just released
        // (`reclaim_after_area_unpin` 0 at 64..1024 threads; at 64 threads 32 pages
        // gave 1,736/s). Up to 17 threads this is the 8 pages it always was.
        0 => (nv as u64 / 2).clamp(8, MAX_PAGES),
        1 => return Err("params.pages must be 0 (half the vCPUs, at least 8) or at least 2".into()),
        p => p,
    };
    Ok(Arc::new(Vpa {
        proto,
        arena: {
            let a = Arena::new(pages as usize, 1);
            for _ in 0..pages {
                a.alloc_mapped("guest memory");
            }
            a
        },
        pages,
        vcpus: (0..nv).map(Vcpu::new).collect(),
        vcore: RawSpinLock::new(),
        ledger: (0..pages).map(|_| std::sync::Mutex::new(Vec::new())).collect(),
        idle_after_unpin: (0..pages).map(|_| GhostBool::new(false)).collect(),
        dirty: DirtyGhost::new(pages),
    }))
}

/// One operation in flight: the engine's context and the first violation seen. The
/// protocol goes on after a violation (as the kernel does after a WARN) so every
/// lock is released and every pin taken is accounted for before the op returns.
struct Op<'a, 'b> {
    cx: &'a mut (dyn Ctx + 'b),
    first: Option<Violation>,
}

impl Op<'_, '_> {
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

    fn worker(&self) -> usize {
        self.cx.worker()
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

/// The model: a VM's guest pages, its vCPUs with their areas, one vcore.
pub struct Vpa {
    proto: Protocol,
    arena: Arena,
    pages: u64,
    vcpus: Vec<Vcpu>,
    /// `vc->lock`: the runnable list and the vCPU states.
    vcore: RawSpinLock,
    /// Ghost, per page: which areas hold a pin on it (C1, V6).
    ledger: Vec<std::sync::Mutex<Vec<PinRec>>>,
    /// Ghost, per page: an area unpin left it with no pin (coverage only).
    idle_after_unpin: Vec<GhostBool>,
    dirty: DirtyGhost,
}

impl Model for Vpa {
    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        let vcpu = 1 << VCPU | 1 << CALLER | 1 << RUNNER;
        let host = 1 << RECLAIMER | 1 << VMM;
        match threads {
            1 => vec![vcpu | host],
            2 => vec![vcpu | 1 << RECLAIMER, vcpu | 1 << VMM],
            n => (0..n).map(|w| if w + 1 == n { host } else { vcpu }).collect(),
        }
    }

    fn step(&self, cx: &mut dyn Ctx, id: usize) -> Result<(), Violation> {
        let mut op = Op { cx, first: None };
        let me = op.worker();
        match id {
            op::RUN => self.run(&mut op, &self.vcpus[me]),
            op::DISPATCH => self.dispatch(&mut op),
            op::HCALL | op::HCALL_BAD | op::CONFER => {
                // An hcall is an exit: the caller's vCPU is out of the guest.
                let own = &self.vcpus[me];
                if own.state.load(std::sync::atomic::Ordering::SeqCst) != NOT_RUNNABLE {
                    self.leave(own);
                }
                if id == op::CONFER {
                    let t = op.rng().index(self.vcpus.len());
                    self.confer(&mut op, &self.vcpus[t]);
                } else if id == op::HCALL_BAD {
                    let a = self.pick_bad_call(&mut op, me);
                    self.hcall(&mut op, me, a);
                } else if self.proto.aba_bursts && op.rng().chance(0.5) {
                    for a in self.aba_burst(&mut op, me) {
                        self.hcall(&mut op, me, a);
                    }
                } else {
                    for a in self.pick_calls(&mut op, me) {
                        self.hcall(&mut op, me, a);
                    }
                }
            }
            op::RECLAIM => self.reclaim(&mut op),
            op::HARVEST => self.harvest(&mut op),
            _ => unreachable!("vpa has no op {id}"),
        }
        op.first.map_or(Ok(()), Err)
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

    fn coverage_applies(&self, id: usize) -> bool {
        let mainline = self.proto.rules == Rules::Mainline;
        match id {
            cov::APPLY_RETRY | cov::KICK_FOR_PENDING | cov::DISPATCH_WITH_PENDING => mainline,
            cov::APPLY_ABA => mainline && self.proto.aba_bursts,
            cov::REGISTER_WHILE_RUNNABLE | cov::DEREG_WHILE_RUNNABLE => mainline,
            cov::DTL_WRAP => self.proto.dtl_writer,
            _ => true,
        }
    }
}
