//! Hash-MMU LPAR kernels changing their own bolted mappings with H_PROTECT, per
//! `spec/hash-protect.md` (seed 004: 87e65ad7bd3a, follow-up 2b2095f3a6b4).
//!
//! `hash__mark_rodata_ro()` changes the pp of every bolted linear-map entry of the
//! kernel text with `hpte_updateboltedpp`. Under PowerVM the H_PROTECT hcall briefly
//! removes the entry, so another CPU fetching kernel text in that window takes a miss
//! the guest kernel cannot handle (the seed's oops). 87e65ad7bd3a does the change
//! under stop_machine with every other CPU spinning in real mode on
//! `chmem_parms.cpu_counter`; 2b2095f3a6b4 makes the first CPU to arrive the master.
//! Under KVM the miss traps to the hypervisor, which waits for HVLOCK and retries (the
//! race is absorbed); on bare metal the entry is rewritten in place.
//!
//! Roles: W (the rodata changer, CPU 0), W2 (`mark_initmem_nx`, a second caller
//! serialised by `chmem_lock`), CPUs fetching through the bolted range (their irq
//! handlers too), the irq source and CPU hotplug. Threads are CPUs only while inside an
//! op; see [`stop_machine`] for how a stop_machine still reaches every online CPU.
//!
//! **Spec vs kernel.** (1) The kernel's 2b2095f3a6b4 resets `master_cpu` to 0 with the
//! other parms, before `cpus_read_lock()`; the model does the same. (2) The spec's H5
//! reads "at every change of the counter"; the model checks the value before and after
//! each change against `num_online_cpus()`, which is what makes a CPU that went offline
//! between `atomic_set` and stop_machine (`no-cpus-read-lock`) an H5 violation at the
//! first secondary's decrement instead of only a hang (the hang, H3, still ends any run
//! in which no violation is seen: exit 3). (3) H7's irq clause is checked as "a
//! participant whose hard irqs were off after DISABLE_IRQ keeps them off until EXIT":
//! checking that DISABLE_IRQ turned them off would recognise the `no-irq-disable` act
//! itself (and fire with one thread); that variant is caught by its consequence.

mod check;
mod chmem;
mod cpu;
mod protocol;
mod stop_machine;
mod table;

use crate::model::{
    Cell, CoverDesc, Ctx, Expect, Model, ModelConfig, ModelDesc, OpDesc, ParamDesc, ParamKind, RoleDesc,
    VariantDesc, VariantKind, Violation,
};
use crate::sync::{RawRwLock, RawSpinLock};
use chmem::Parms;
use cpu::Cpu;
use protocol::{Hypervisor, Protocol};
use std::sync::atomic::{AtomicBool as StdBool, AtomicU64 as StdU64};
use std::sync::{Arc, Mutex};
use table::{Table, PAGE};

/// Role bits of the descriptor's ops.
const CHANGER: u32 = 0;
const CHANGER2: u32 = 1;
const CPU: u32 = 2;
const IRQ: u32 = 3;
const HOTPLUG: u32 = 4;

const OP_MARK_RODATA_RO: usize = 0;
const OP_MARK_INITMEM_NX: usize = 1;
const OP_CPU_EXEC: usize = 2;
const OP_IRQ: usize = 3;
const OP_HOTPLUG: usize = 4;

/// The two pp values the changers alternate between.
const PP_RO: u64 = 3;
const PP_RW: u64 = 2;

/// Coverage counter ids (indices into the descriptor's coverage).
mod cov {
    pub const HPROTECT_WINDOWS: usize = 0;
    pub const VIRTUAL_ACCESS_IN_WINDOW: usize = 1;
    pub const SECONDARIES_REAL_DURING_UPDATE: usize = 2;
    pub const KVM_ABSORBED: usize = 3;
    pub const MASTER_SPUN: usize = 4;
    pub const IRQ_DEFERRED_WHILE_DISABLED: usize = 5;
    pub const STOP_STATE_ADVANCES: usize = 6;
    pub const HOTPLUG_NEAR_SETUP: usize = 7;
    pub const REALMODE_ACCESSES_CHECKED: usize = 8;
}

const KVM: &[(&str, &str)] = &[("hypervisor", "kvm")];
const BARE: &[(&str, &str)] = &[("hypervisor", "bare-metal")];

pub static DESC: ModelDesc = ModelDesc {
    name: "hash-protect",
    protocol: "hash LPAR H_PROTECT of bolted kernel mappings under stop_machine (87e65ad7bd3a, 2b2095f3a6b4)",
    kernel_files: &[
        "arch/powerpc/mm/book3s64/hash_pgtable.c",
        "kernel/stop_machine.c",
        "arch/powerpc/platforms/pseries/lpar.c",
        "arch/powerpc/kvm/book3s_hv_rm_mmu.c",
    ],
    seed: "004_67590d50e4aaf037.txt",
    spec: "hash-protect.md",
    roles: &[
        RoleDesc { name: "W", doc: "hash__mark_rodata_ro on CPU 0" },
        RoleDesc { name: "W2", doc: "hash__mark_initmem_nx: a second caller serialised by chmem_lock" },
        RoleDesc { name: "cpu", doc: "a CPU running kernel code: virtual-mode fetches, interrupts, its stopper" },
        RoleDesc { name: "irq", doc: "the interrupt source" },
        RoleDesc { name: "hotplug", doc: "CPU hotplug under cpus_write_lock" },
    ],
    ops: &[
        OpDesc { name: "mark_rodata_ro", role: CHANGER, weight: 1, doc: "hash__change_memory_range over text+rodata" },
        OpDesc { name: "mark_initmem_nx", role: CHANGER2, weight: 1, doc: "hash__change_memory_range over initmem" },
        OpDesc { name: "cpu_exec", role: CPU, weight: 4, doc: "virtual-mode fetches through the bolted range, taking interrupts and stopper work" },
        OpDesc { name: "raise_irq", role: IRQ, weight: 8, doc: "an interrupt for a random online CPU (pending while it has irqs off)" },
        OpDesc { name: "hotplug", role: HOTPLUG, weight: 2, doc: "take a CPU offline or bring it back (cpus_write_lock)" },
    ],
    params: &[
        ParamDesc {
            name: "hypervisor",
            kind: ParamKind::Choice { default: "phyp", choices: &["phyp", "kvm", "bare-metal"] },
            doc: "how H_PROTECT changes an entry: remove/re-insert, ABSENT under HVLOCK, or native in place",
        },
        ParamDesc {
            name: "text_pages",
            kind: ParamKind::Int { default: 4, min: 1, max: 64 },
            doc: "bolted linear-map pages of text+rodata (mark_rodata_ro's range)",
        },
        ParamDesc {
            name: "initmem_pages",
            kind: ParamKind::Int { default: 2, min: 1, max: 64 },
            doc: "bolted pages of initmem (mark_initmem_nx's range)",
        },
        ParamDesc {
            name: "accesses",
            kind: ParamKind::Int { default: 16, min: 1, max: 10_000 },
            doc: "virtual-mode fetches per cpu_exec op",
        },
    ],
    coverage: &[
        CoverDesc { name: "hprotect_windows", per: &["mark_rodata_ro", "mark_initmem_nx"], doc: "an H_PROTECT (or native update) reached its window: entry out (phyp), ABSENT under HVLOCK (kvm), rewritten before tlbie (bare metal)" },
        CoverDesc { name: "virtual_access_in_window", per: &["cpu_exec"], doc: "a CPU fetched, in virtual mode, the page whose H_PROTECT window was open (no stop_machine)" },
        CoverDesc { name: "secondaries_real_during_update", per: &["mark_rodata_ro", "mark_initmem_nx"], doc: "the master, inside H_PROTECT, found every other online CPU in real mode with hard irqs off" },
        CoverDesc { name: "kvm_absorbed", per: &["cpu_exec"], doc: "kvmppc_hpte_hv_fault waited for HVLOCK and found the entry valid again: the guest retries" },
        CoverDesc { name: "master_spun", per: &["mark_rodata_ro", "mark_initmem_nx"], doc: "the master saw cpu_counter > 1 and waited for the secondaries to call in" },
        CoverDesc { name: "irq_deferred_while_disabled", per: &["raise_irq"], doc: "an interrupt arrived at a CPU with soft or hard irqs off and stayed pending" },
        CoverDesc { name: "stop_state_advances", per: &["mark_rodata_ro", "mark_initmem_nx"], doc: "the last ack_state of a state advanced multi_stop_data.state" },
        CoverDesc { name: "hotplug_near_setup", per: &["hotplug"], doc: "cpus_write_lock waited while a changer held cpus_read_lock around the counter setup and stop_machine" },
        CoverDesc { name: "realmode_accesses_checked", per: &["mark_rodata_ro", "mark_initmem_nx"], doc: "a secondary's real-mode fetch or counter access was checked against the RMO (H6)" },
    ],
    variants: &[
        VariantDesc {
            name: "fixed",
            commit: "2b2095f3a6b4",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: &[Cell { params: KVM, expect: Expect::Clean }, Cell { params: BARE, expect: Expect::Clean }],
            needs_concurrency: false,
            doc: "stop_machine, secondaries in real mode on cpu_counter, first CPU to arrive is the master",
        },
        VariantDesc {
            name: "fixed-87e65ad",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Fixed,
            expect: Expect::Clean,
            cells: &[Cell { params: KVM, expect: Expect::Clean }, Cell { params: BARE, expect: Expect::Clean }],
            needs_concurrency: false,
            doc: "master_cpu = smp_processor_id() at setup (2b2095f3a6b4 only silenced DEBUG_PREEMPT)",
        },
        VariantDesc {
            name: "buggy",
            commit: "87e65ad7bd3a^",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["H1"]),
            cells: &[Cell { params: KVM, expect: Expect::Clean }, Cell { params: BARE, expect: Expect::Clean }],
            needs_concurrency: true,
            doc: "no stop_machine: H_PROTECT per page while every other CPU runs (phyp: the seed's oops)",
        },
        VariantDesc {
            name: "early-dec",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["H4", "H1"]),
            cells: &[Cell { params: KVM, expect: Expect::Caught(&["H4"]) }],
            needs_concurrency: true,
            doc: "the secondary decrements cpu_counter before switching to real mode",
        },
        VariantDesc {
            name: "master-no-wait",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["H4", "H1"]),
            cells: &[Cell { params: KVM, expect: Expect::Caught(&["H4"]) }],
            needs_concurrency: true,
            doc: "the master skips `while (atomic_read(&cpu_counter) > 1)`",
        },
        VariantDesc {
            name: "no-cpus-read-lock",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["H5", "H4", "H1"]),
            cells: &[Cell { params: KVM, expect: Expect::Caught(&["H5", "H4"]) }],
            needs_concurrency: true,
            doc: "cpu_counter set without cpus_read_lock: hotplug between atomic_set and stop_machine",
        },
        VariantDesc {
            name: "parms-on-stack",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["H6"]),
            cells: &[Cell { params: KVM, expect: Expect::Caught(&["H6"]) }],
            needs_concurrency: true,
            doc: "chmem_parms on the caller's stack, above the RMO: secondaries touch it in real mode",
        },
        VariantDesc {
            name: "no-irq-disable",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Race,
            expect: Expect::Caught(&["H1", "H4"]),
            cells: &[Cell { params: KVM, expect: Expect::Caught(&["H4"]) }],
            needs_concurrency: true,
            doc: "no DISABLE_IRQ action and no local_irq_save in the secondary: an irq handler runs in virtual mode",
        },
        VariantDesc {
            name: "no-secondary-irqsave",
            commit: "87e65ad7bd3a",
            kind: VariantKind::Control,
            expect: Expect::Clean,
            cells: &[Cell { params: KVM, expect: Expect::Clean }],
            needs_concurrency: false,
            doc: "control: only the secondary's local_irq_save/hard_irq_disable dropped (DISABLE_IRQ already did it)",
        },
        VariantDesc::mutant("m-state-before-ack-reset", &["H7"], true, "set_state publishes the new state before resetting thread_ack"),
        VariantDesc::mutant("m-secondary-leaves-at-one", &["H4", "H1"], true, "the secondary's spin ends at cpu_counter <= 1 instead of 0"),
        VariantDesc::mutant("m-master-signals-first", &["H4", "H1"], true, "the master's atomic_dec comes before change_memory_range"),
        VariantDesc::mutant("m-counter-short", &["H4", "H5", "H1"], false, "cpu_counter set to num_online_cpus() - 1"),
        VariantDesc::mutant("m-range-stops-short", &["H2"], false, "change_memory_range's walk stops one step before end"),
        VariantDesc::mutant("m-secondary-stays-real", &["H3"], true, "the secondary never switches back to virtual mode"),
        VariantDesc {
            name: "m-secondary-skips-dec",
            commit: "mutant",
            kind: VariantKind::Mutant,
            expect: Expect::Stall,
            cells: &[],
            needs_concurrency: true,
            doc: "the secondary never decrements cpu_counter: the master waits forever (H3, a stall)",
        },
    ],
    injection: crate::model::InjectionPolicy::Preempt,
    hidden: false,
    build,
};

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    let name = cfg.variant.name;
    let (proto, bare_metal_ok) =
        Protocol::of(name).ok_or_else(|| format!("hash-protect has no protocol for variant {name}"))?;
    let hv = Hypervisor::parse(cfg.params.choice("hypervisor"));
    if hv == Hypervisor::BareMetal && !bare_metal_ok {
        return Err(format!(
            "variant {name} changes the LPAR stop_machine path, which bare metal does not take \
             (n/a in the spec's table): use hypervisor=phyp or kvm"
        ));
    }
    let text = cfg.params.int("text_pages") as usize;
    let init = cfg.params.int("initmem_pages") as usize;
    Ok(Arc::new(HashProtect::new(
        proto,
        hv,
        (text, init),
        cfg.params.int("accesses"),
        cfg.threads,
    )))
}

/// Test-only knowledge: coverage hints and the ranges' last pp, never read by the
/// protocol.
#[derive(Default)]
struct Ghost {
    /// The page of the latest H_PROTECT + 1 (the CPUs' fetch bias).
    protecting: StdU64,
    /// The page whose H_PROTECT window is open + 1, or 0.
    window_page: StdU64,
    /// pp each range was last changed to (H2 at rest).
    range_pp: [StdU64; 2],
    /// A changer holds cpus_read_lock around its setup.
    changer_in_setup: StdBool,
    /// How many CPUs' stoppers run `multi_cpu_stop()` now (the irq source's bias).
    in_stopper: StdU64,
}

pub struct HashProtect {
    proto: Protocol,
    hv: Hypervisor,
    table: Table,
    /// Page ranges [lo, hi) of mark_rodata_ro and mark_initmem_nx.
    ranges: [(usize, usize); 2],
    cpus: Vec<Cpu>,
    /// Worker → CPU (None: the irq/hotplug worker, which is not a CPU).
    cpu_of_worker: Vec<Option<usize>>,
    /// CPUs the hotplug role may take offline (those of plain CPU workers).
    hotpluggable: Vec<usize>,
    num_online: crate::sync::AtomicU32,
    rmo_size: u64,
    parms_static_addr: u64,
    /// Where chmem_secondary_loop's instructions are (kernel text).
    secondary_loop_addr: u64,
    parms: Parms,
    chmem_lock: RawSpinLock,
    /// `cpu_hotplug_lock`.
    hotplug: RawRwLock,
    /// `stop_cpus_mutex`.
    stop_cpus: RawSpinLock,
    /// The last stop_machine's msdata (for the dump).
    msdata: Mutex<Option<Arc<stop_machine::MultiStop>>>,
    accesses: u64,
    threads: usize,
    ghost: Ghost,
}

/// Role masks and CPUs of the workers: W on CPU 0, W2 (also a CPU) on CPU 1, the
/// irq source and hotplug on a worker of their own, every other worker a CPU.
fn layout(threads: usize) -> Vec<(u32, Option<usize>)> {
    let all = 1 << CHANGER | 1 << CHANGER2 | 1 << CPU | 1 << IRQ | 1 << HOTPLUG;
    match threads {
        1 => vec![(all, Some(0))],
        2 => vec![
            (1 << CHANGER | 1 << CHANGER2 | 1 << IRQ | 1 << HOTPLUG, Some(0)),
            (1 << CPU, Some(1)),
        ],
        n => {
            let mut v = vec![
                (1 << CHANGER, Some(0)),
                (1 << CHANGER2 | 1 << CPU, Some(1)),
                (1 << IRQ | 1 << HOTPLUG, None),
            ];
            v.extend((3..n).map(|w| (1 << CPU, Some(w - 1))));
            v
        }
    }
}

impl HashProtect {
    fn new(
        proto: Protocol,
        hv: Hypervisor,
        (text, init): (usize, usize),
        accesses: u64,
        threads: usize,
    ) -> Self {
        let lay = layout(threads);
        let ncpus = lay.iter().filter(|(_, c)| c.is_some()).count();
        let hotpluggable = if threads >= 4 {
            (2..ncpus).collect()
        } else {
            Vec::new()
        };
        let pages = text + init;
        // The data page after the bolted ranges holds the static chmem_parms; the RMO
        // ends right after it, and task stacks are above it.
        let parms_static_addr = pages as u64 * PAGE + 0x200;
        let ghost = Ghost::default();
        ghost.range_pp[0].store(PP_RW, std::sync::atomic::Ordering::SeqCst);
        ghost.range_pp[1].store(PP_RW, std::sync::atomic::Ordering::SeqCst);
        HashProtect {
            proto,
            hv,
            table: Table::new(pages, PP_RW),
            ranges: [(0, text), (text, pages)],
            cpus: (0..ncpus).map(|_| Cpu::new()).collect(),
            cpu_of_worker: lay.iter().map(|(_, c)| *c).collect(),
            hotpluggable,
            num_online: crate::sync::AtomicU32::new(ncpus as u32),
            rmo_size: (pages as u64 + 1) * PAGE,
            parms_static_addr,
            secondary_loop_addr: 0x4400,
            parms: Parms::default(),
            chmem_lock: RawSpinLock::new(),
            hotplug: RawRwLock::new(),
            stop_cpus: RawSpinLock::new(),
            msdata: Mutex::new(None),
            accesses,
            threads,
            ghost,
        }
    }

    fn cpu_of(&self, worker: usize) -> usize {
        self.cpu_of_worker[worker].expect("this worker's roles run on a CPU")
    }

    /// A task's stack on `cpu`: above the RMO.
    fn stack_addr(&self, cpu: usize) -> u64 {
        self.rmo_size + (cpu as u64 + 1) * PAGE - 0x400
    }

    /// The LPAR path with stop_machine runs (not `buggy`, not bare metal).
    fn stops_machine(&self) -> bool {
        self.proto.stop_machine && self.hv != Hypervisor::BareMetal
    }
}

impl Model for HashProtect {
    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        layout(threads).into_iter().map(|(m, _)| m).collect()
    }

    fn step(&self, cx: &mut dyn Ctx, op: usize) -> Result<(), Violation> {
        match op {
            OP_MARK_RODATA_RO => self.changer_op(cx, 0),
            OP_MARK_INITMEM_NX => self.changer_op(cx, 1),
            OP_CPU_EXEC => self.cpu_exec(cx),
            OP_IRQ => self.raise_irq(cx),
            OP_HOTPLUG => self.hotplug(cx),
            _ => unreachable!("op id {op} outside the descriptor's ops"),
        }
    }

    fn check_quiescent(&self) -> Result<(), Violation> {
        self.at_rest()
    }

    fn finish(&self) -> Result<(), Violation> {
        self.at_rest()
    }

    fn dump(&self) -> String {
        self.dump_state()
    }

    fn coverage_applies(&self, id: usize) -> bool {
        let sm = self.stops_machine();
        match id {
            cov::HPROTECT_WINDOWS => true,
            cov::VIRTUAL_ACCESS_IN_WINDOW => !sm,
            cov::KVM_ABSORBED => !sm && self.hv == Hypervisor::Kvm,
            cov::HOTPLUG_NEAR_SETUP => sm && self.proto.cpus_read_lock && !self.hotpluggable.is_empty(),
            cov::SECONDARIES_REAL_DURING_UPDATE
            | cov::MASTER_SPUN
            | cov::IRQ_DEFERRED_WHILE_DISABLED
            | cov::STOP_STATE_ADVANCES
            | cov::REALMODE_ACCESSES_CHECKED => sm && self.threads > 1,
            _ => false,
        }
    }
}
