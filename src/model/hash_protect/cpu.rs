//! The CPUs: translation mode, irq state, the guest kernel's fetches through the
//! bolted range, interrupts, the per-CPU stopper work, and CPU hotplug.

use super::stop_machine::MultiStop;
use super::table::{ABSENT, HVLOCK, VALID};
use super::{cov, HashProtect};
use crate::model::{Ctx, Violation};
use crate::sync::mutex::RawMutex;
use crate::sync::{bitlock, AtomicBool, AtomicU32, Backoff};
use std::sync::atomic::{AtomicBool as StdBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// MSR[IR|DR] set: translation on.
pub(super) const VIRTUAL: u32 = 0;
/// MSR[IR|DR] clear: real mode, only the RMO is reachable.
pub(super) const REAL: u32 = 1;

/// How many times the irq source yields waiting for an update before it fires anyway.
const IRQ_BURST_WAIT: u32 = 64;

pub(super) fn mode_name(m: u32) -> &'static str {
    if m == REAL {
        "real"
    } else {
        "virtual"
    }
}

pub(super) struct Cpu {
    pub online: AtomicBool,
    pub mode: AtomicU32,
    /// Not soft-masked (`local_irq_disable` clears it).
    pub soft_irq_on: AtomicBool,
    /// MSR[EE] (`hard_irq_disable` clears it).
    pub hard_irq_on: AtomicBool,
    pub pending_irq: AtomicBool,
    /// Held by whoever runs this CPU now: its own worker during an op, the
    /// stop_machine caller driving the CPU's stopper while the worker is away, or CPU
    /// hotplug taking the CPU down or bringing it up (nothing else runs on it then).
    /// A mutex: a worker whose CPU a stop_machine caller drives waits out the whole
    /// rendezvous, and in a crowded run it does so off the run queue, woken by the
    /// caller's unlock (polling, 1021 such workers left the caller a thousandth of
    /// the cores: a stop_machine took tens of seconds at 1024 threads).
    pub claim: RawMutex,
    /// The `multi_cpu_stop` work queued on this CPU's stopper (`cpu_stop_queue_work`).
    pub work: Mutex<Option<Arc<MultiStop>>>,
    /// Ghost: this CPU's stopper runs `multi_cpu_stop()` (the irq source's bias).
    pub in_stopper: StdBool,
}

impl Cpu {
    pub(super) fn new() -> Self {
        Cpu {
            online: AtomicBool::new(true),
            mode: AtomicU32::new(VIRTUAL),
            soft_irq_on: AtomicBool::new(true),
            hard_irq_on: AtomicBool::new(true),
            pending_irq: AtomicBool::new(false),
            claim: RawMutex::new(),
            work: Mutex::new(None),
            in_stopper: StdBool::new(false),
        }
    }

    /// Stopper work is queued (no preemption point: a peek before taking it).
    pub(super) fn has_work(&self) -> bool {
        self.work.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn queued(&self) -> Option<Arc<MultiStop>> {
        self.work.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl HashProtect {
    /// A CPU runs guest-kernel code: fetches through the bolted range in virtual mode,
    /// taking interrupts and running its stopper between them. An offline CPU runs
    /// nothing; hotplug needs the claim, so the CPU stays online for the whole op.
    pub(super) fn cpu_exec(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        let cpu = self.cpu_of(cx.worker());
        let c = &self.cpus[cpu];
        c.claim.lock();
        let mut r = Ok(());
        let accesses = if c.online.load(SeqCst) { self.accesses } else { 0 };
        for _ in 0..accesses {
            r = self.service(cx, cpu).and_then(|()| {
                let page = self.pick_page(cx);
                self.translate(cx, cpu, page)
            });
            if r.is_err() {
                break;
            }
        }
        c.claim.unlock();
        r
    }

    /// What a CPU does at a scheduling point: take a pending interrupt if it is
    /// enabled, and run queued stopper work (the stopper thread preempts anything).
    pub(super) fn service(&self, cx: &mut dyn Ctx, cpu: usize) -> Result<(), Violation> {
        self.take_irq(cx, cpu)?;
        if let Some(ms) = self.cpus[cpu].queued() {
            self.run_stoppers(cx, cpu, &ms, false)?;
        }
        Ok(())
    }

    /// Delivers a pending interrupt if soft and hard irqs are on. Exception entry turns
    /// relocation on, so the handler fetches in virtual mode; `rfid` restores the mode.
    pub(super) fn take_irq(&self, cx: &mut dyn Ctx, cpu: usize) -> Result<(), Violation> {
        let c = &self.cpus[cpu];
        if !c.pending_irq.peek() || !c.soft_irq_on.load(SeqCst) || !c.hard_irq_on.load(SeqCst) {
            return Ok(());
        }
        if !c.pending_irq.swap(false, SeqCst) {
            return Ok(());
        }
        let prev = c.mode.swap(VIRTUAL, SeqCst);
        let what = if prev == REAL {
            "irq.handler cpu={a} (taken in real mode)"
        } else {
            "irq.handler cpu={a}"
        };
        cx.event(what, cpu as u64, 0);
        let page = self.pick_page(cx);
        let r = self.translate(cx, cpu, page);
        c.mode.store(prev, SeqCst);
        r
    }

    /// Mostly a CPU whose stopper runs `multi_cpu_stop()`, else any CPU. The irqs that
    /// matter reach a CPU between its DISABLE_IRQ and EXIT (deferred by the fix, taken
    /// in virtual mode without it); aimed at random times and CPUs, 0.3% of them did,
    /// as updates are a short part of the run. So three irqs in four come in bursts
    /// during an update: the source waits a little for a stopper to run (a bounded
    /// wait, so that a run without updates still raises irqs) and aims at one of its
    /// CPUs. Like `pick_page`'s bias, it shapes the workload, never what a check
    /// accepts.
    fn pick_irq_target(&self, cx: &mut dyn Ctx) -> usize {
        let n = self.cpus.len();
        if cx.rng().below(4) != 0 {
            let mut b = Backoff::new("irq.await_update");
            while self.ghost.in_stopper.load(SeqCst) == 0 && b.rounds() < IRQ_BURST_WAIT {
                b.yield_now();
            }
        }
        let any = cx.rng().index(n);
        if self.ghost.in_stopper.load(SeqCst) == 0 {
            return any;
        }
        (0..n)
            .map(|i| (any + i) % n)
            .find(|&k| self.cpus[k].in_stopper.load(SeqCst))
            .unwrap_or(any)
    }

    /// Mostly the page being protected (the spec's bias), else any bolted page.
    fn pick_page(&self, cx: &mut dyn Ctx) -> usize {
        let hot = self.ghost.protecting.load(SeqCst);
        if hot != 0 && cx.rng().below(4) != 0 {
            (hot - 1) as usize
        } else {
            cx.rng().index(self.table.hpte.len())
        }
    }

    /// One virtual-mode access to bolted `page`. H1: a miss must never reach the guest
    /// kernel (for it, bolted mappings are always valid).
    pub(super) fn translate(&self, cx: &mut dyn Ctx, cpu: usize, page: usize) -> Result<(), Violation> {
        if self.ghost.window_page.load(SeqCst) == page as u64 + 1 {
            cx.cover(cov::VIRTUAL_ACCESS_IN_WINDOW);
        }
        let e = &self.table.hpte[page];
        let v = e.load(SeqCst);
        if v & VALID != 0 {
            return Ok(());
        }
        if self.hv == super::protocol::Hypervisor::Kvm && v & ABSENT != 0 {
            // VPM=1: the miss traps to kvmppc_hpte_hv_fault(); kvmppc_hv_find_lock_hpte()
            // matches VALID|ABSENT and spins on HVLOCK; then "if the HPTE is valid by
            // now, retry the instruction".
            let locked = bitlock::lock(e, HVLOCK);
            bitlock::unlock_store(e, HVLOCK, locked);
            if locked & VALID != 0 {
                cx.cover(cov::KVM_ABSORBED);
                cx.event("kvm.fault_absorbed cpu={a} page={b}", cpu as u64, page as u64);
                return Ok(());
            }
        }
        Err(Violation::new(
            "H1",
            format!(
                "CPU {cpu} took a hash miss on bolted kernel page {page} (hpte {v:#x}): \
                 the fault reaches the guest kernel (\"Unable to handle kernel instruction fetch\")"
            ),
        )
        .with_state(self.dump_state()))
    }

    /// The irq source: an interrupt for an online CPU; it waits as pending while that
    /// CPU has interrupts off.
    pub(super) fn raise_irq(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        let cpu = self.pick_irq_target(cx);
        let c = &self.cpus[cpu];
        if !c.online.load(SeqCst) || c.pending_irq.swap(true, SeqCst) {
            return Ok(());
        }
        if !c.soft_irq_on.load(SeqCst) || !c.hard_irq_on.load(SeqCst) {
            cx.cover(cov::IRQ_DEFERRED_WHILE_DISABLED);
        }
        Ok(())
    }

    /// CPU hotplug: under `cpus_write_lock()`, and serialised with stop_machine (the
    /// kernel takes a CPU down with one), take a CPU offline or bring it back.
    ///
    /// `takedown_cpu()` runs `take_cpu_down` on the dying CPU's stopper, which preempts
    /// its task, and the CPU then only reaches `play_dead`: it fetches no kernel text
    /// (and takes no interrupt) afterwards. So hotplug claims the CPU, waiting for the
    /// worker that runs it to leave its op; flipping `online` under a running worker
    /// let an offline CPU go on fetching, unseen by stop_machine (not a participant)
    /// and by H4 (which skips offline CPUs), into the master's H_PROTECT window.
    pub(super) fn hotplug(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        if self.hotpluggable.is_empty() {
            return Ok(());
        }
        let cpu = self.hotpluggable[cx.rng().index(self.hotpluggable.len())];
        if !self.hotplug.try_write_lock() {
            if self.ghost.changer_in_setup.load(SeqCst) {
                cx.cover(cov::HOTPLUG_NEAR_SETUP);
            }
            self.hotplug.write_lock();
        }
        self.stop_cpus.lock();
        let c = &self.cpus[cpu];
        c.claim.lock();
        if c.online.load(SeqCst) {
            c.online.store(false, SeqCst);
            self.num_online.fetch_sub(1, SeqCst);
        } else {
            c.online.store(true, SeqCst);
            self.num_online.fetch_add(1, SeqCst);
        }
        let what = if c.online.peek() {
            "hotplug cpu={a} online (num_online={b})"
        } else {
            "hotplug cpu={a} offline (num_online={b})"
        };
        cx.event(what, cpu as u64, u64::from(self.num_online.peek()));
        c.claim.unlock();
        self.stop_cpus.unlock();
        self.hotplug.write_unlock();
        Ok(())
    }
}
