//! `hash__change_memory_range()` and `change_memory_range_fn()`
//! (arch/powerpc/mm/book3s64/hash_pgtable.c), with the per-page update of
//! `change_memory_range()` → `mmu_hash_ops.hpte_updateboltedpp` →
//! `pSeries_lpar_hpte_updateboltedpp()` → H_PROTECT.

use super::protocol::{Hypervisor, MasterPick, ParmsAt};
use super::stop_machine::{MultiStop, Step, PREPARE};
use super::table::{pp, HRet, ABSENT, PAGE, VALID};
use super::{cov, cpu, HashProtect};
use crate::model::{Ctx, Violation};
use crate::sync::atomic::fence;
use crate::sync::{AtomicU32, AtomicU64, Backoff};
use crate::window;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

/// `struct change_memory_parms` (the 2b2095f3a6b4 layout: `master_cpu` is atomic).
#[derive(Default)]
pub(super) struct Parms {
    pub start: AtomicU64,
    pub end: AtomicU64,
    pub step: AtomicU64,
    pub newpp: AtomicU64,
    pub master_cpu: AtomicU32,
    /// `atomic_t cpu_counter`, as an `i32` in a `u32`.
    pub cpu_counter: AtomicU32,
    /// The structure's real address (ghost: what a real-mode access would use).
    pub addr: AtomicU64,
}

/// Offset of `cpu_counter` inside the structure.
const COUNTER_OFFSET: u64 = 0x24;

/// Where `change_memory_range_fn` is on one CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Master or secondary?
    Choose,
    /// chmem_secondary_loop: `local_irq_save(flags); hard_irq_disable();`
    IrqSave,
    /// `mtmsrd` with IR|DR clear.
    GoReal,
    /// `lwarx; addic -1; stwcx.`: "Tell the master we are in real mode".
    Decrement,
    /// "Spin until the counter goes to zero".
    Spin,
    /// `mtmsrd %[msr]`: back to virtual mode.
    GoVirtual,
    /// `local_irq_restore(flags)`.
    IrqRestore,
    /// Master: "Wait for all but one CPU (this one) to call-in".
    WaitCallIn,
    /// Master: `change_memory_range()` at this address.
    Protect(u64),
    /// Master: `mb(); atomic_dec(&parms->cpu_counter)`.
    Signal,
    Returned,
}

/// `change_memory_range_fn()`'s frame on one CPU.
pub(super) struct FnState {
    phase: Phase,
    saved: (bool, bool),
    spun: bool,
    signalled: bool,
    /// The master's copy of the range: (start, end, step, newpp).
    range: (u64, u64, u64, u64),
}

/// How a `hash__change_memory_range()` call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// `start >= end` after alignment: `return false`, nothing done.
    Refused,
    /// The range was changed (`return true`).
    Done,
    /// A stop_machine participant found a violation and every participant was let go
    /// ([`MultiStop::abandoned`]). The kernel's caller would still be in
    /// `wait_for_completion()` (`__stop_cpus()` waits for `cpu_stop_done`, i.e. for
    /// every `multi_cpu_stop()` to reach EXIT), so it never returns to a half-changed
    /// range: nothing of this call may be checked (H2), and the violation is reported
    /// by the participant that found it.
    Abandoned,
}

impl FnState {
    pub(super) fn new() -> Self {
        FnState {
            phase: Phase::Choose,
            saved: (true, true),
            spun: false,
            signalled: false,
            range: (0, 0, PAGE, 0),
        }
    }

    pub(super) fn returned(&self) -> bool {
        self.phase == Phase::Returned
    }
}

impl HashProtect {
    /// A changer's op: `hash__mark_rodata_ro()` (range 0, text and rodata) or
    /// `hash__mark_initmem_nx()` (range 1), alternating between two pp values so every
    /// call really changes the entries.
    pub(super) fn changer_op(&self, cx: &mut dyn Ctx, range: usize) -> Result<(), Violation> {
        let cpu = self.cpu_of(cx.worker());
        self.cpus[cpu].claim.lock();
        let r = self.changer(cx, cpu, range);
        self.cpus[cpu].claim.unlock();
        r
    }

    fn changer(&self, cx: &mut dyn Ctx, cpu: usize, range: usize) -> Result<(), Violation> {
        let (lo, hi) = self.ranges[range];
        let newpp = if self.ghost.range_pp[range].load(SeqCst) == super::PP_RO {
            super::PP_RW
        } else {
            super::PP_RO
        };
        if cx.rng().below(16) == 0 {
            // Bad input: an empty range is refused before anything happens.
            let a = lo as u64 * PAGE;
            let change = self.hash_change_memory_range(cx, cpu, a, a, newpp)?;
            assert_eq!(
                change,
                Change::Refused,
                "hash__change_memory_range accepted an empty range"
            );
            return Ok(());
        }
        // _stext / __init_begin are not page aligned: the call aligns them.
        let start = lo as u64 * PAGE + 0x100;
        let end = hi as u64 * PAGE - 0x80;
        cx.event("chmem.call start={a:x} newpp={b}", start, newpp);
        if self.hash_change_memory_range(cx, cpu, start, end, newpp)? == Change::Abandoned {
            return Ok(());
        }
        // H2: after change_memory_range returns, the whole range has the new pp and
        // is valid (HVLOCK may still be held by a KVM fault path that is leaving).
        for page in lo..hi {
            let v = self.table.hpte[page].peek();
            if v & VALID == 0 || v & ABSENT != 0 || pp(v) != newpp {
                return Err(Violation::new(
                    "H2",
                    format!("after change_memory_range(pp {newpp}) returned, page {page} is {v:#x}"),
                )
                .with_state(self.dump_state()));
            }
        }
        self.ghost.range_pp[range].store(newpp, SeqCst);
        Ok(())
    }

    /// `hash__change_memory_range(start, end, newpp)`.
    fn hash_change_memory_range(
        &self,
        cx: &mut dyn Ctx,
        cpu: usize,
        start: u64,
        end: u64,
        newpp: u64,
    ) -> Result<Change, Violation> {
        let step = PAGE;
        let start = start / step * step; // ALIGN_DOWN
        let end = end.div_ceil(step) * step; // ALIGN (up)
        if start >= end {
            return Ok(Change::Refused);
        }
        if self.hv == Hypervisor::BareMetal || !self.proto.stop_machine {
            // No LPAR (or before 87e65ad7bd3a): the caller updates every entry while
            // the other CPUs go on running.
            self.change_memory_range(cx, cpu, start, end, step, newpp)?;
            return Ok(Change::Done);
        }
        // mutex_lock(&chmem_lock);
        self.sleep_until(cx, cpu, &|| self.chmem_lock.try_lock())?;
        // Fill the parms.
        let parms = &self.parms;
        parms.start.store(start, SeqCst);
        parms.end.store(end, SeqCst);
        parms.step.store(step, SeqCst);
        parms.newpp.store(newpp, SeqCst);
        match self.proto.master {
            MasterPick::FirstArrival => parms.master_cpu.store(0, SeqCst),
            MasterPick::CallerCpu => parms.master_cpu.store(cpu as u32, SeqCst),
        }
        let addr = match self.proto.parms {
            ParmsAt::Static => self.parms_static_addr,
            ParmsAt::Stack => self.stack_addr(cpu),
        };
        parms.addr.store(addr, SeqCst);
        // cpus_read_lock();
        if self.proto.cpus_read_lock {
            if let Err(v) = self.sleep_until(cx, cpu, &|| self.hotplug.try_read_lock()) {
                self.chmem_lock.unlock();
                return Err(v);
            }
            self.ghost.changer_in_setup.store(true, SeqCst);
        }
        // atomic_set(&chmem_parms.cpu_counter, num_online_cpus());
        let online = self.num_online.load(SeqCst);
        let count = if self.proto.counter_short {
            online - 1
        } else {
            online
        };
        parms.cpu_counter.store(count, SeqCst);
        let setup = self.counter_in_range("setup", count as i32, count as i32);
        // mb(): "Ensure state is consistent before we call the other CPUs".
        fence();
        window!("chmem.before_stop_machine");
        let r = setup.and_then(|()| self.stop_machine_cpuslocked(cx, cpu));
        if self.proto.cpus_read_lock {
            self.ghost.changer_in_setup.store(false, SeqCst);
            self.hotplug.read_unlock();
        }
        self.chmem_lock.unlock();
        r
    }

    /// `change_memory_range()`: one `hpte_updateboltedpp` per step, on the caller's
    /// CPU, which may take interrupts between the hcalls.
    fn change_memory_range(
        &self,
        cx: &mut dyn Ctx,
        cpu: usize,
        start: u64,
        end: u64,
        step: u64,
        newpp: u64,
    ) -> Result<(), Violation> {
        let mut idx = start;
        while !self.range_done(idx, end, step) {
            self.take_irq(cx, cpu)?;
            self.updateboltedpp(cx, cpu, idx, newpp, false)?;
            crate::point!("chmem.between_steps");
            idx += step;
        }
        Ok(())
    }

    /// `for (idx = start; idx < end; idx += step)`.
    fn range_done(&self, idx: u64, end: u64, step: u64) -> bool {
        if self.proto.range_stops_short {
            idx + step >= end
        } else {
            idx >= end
        }
    }

    /// `mmu_hash_ops.hpte_updateboltedpp(newpp, idx, ...)`: H_PROTECT under an LPAR,
    /// the native update on bare metal. `master`: called by the stop_machine master,
    /// whose CPU checks H4 while the entry is out.
    fn updateboltedpp(
        &self,
        cx: &mut dyn Ctx,
        cpu: usize,
        ea: u64,
        newpp: u64,
        master: bool,
    ) -> Result<(), Violation> {
        let page = (ea / PAGE) as usize;
        self.ghost.protecting.store(page as u64 + 1, SeqCst);
        let mut found = None;
        let mut window = || {
            self.ghost.window_page.store(page as u64 + 1, SeqCst);
            window!("hprotect.window");
            cx.cover(cov::HPROTECT_WINDOWS);
            if master {
                if let Err(v) = self.master_alone(cx, cpu) {
                    found.get_or_insert(v);
                }
            }
            self.ghost.window_page.store(0, SeqCst);
        };
        let rc = match self.hv {
            Hypervisor::Phyp => self.table.protect_phyp(page, newpp, &mut window),
            Hypervisor::Kvm => self.table.protect_kvm(page, newpp, &mut window),
            Hypervisor::BareMetal => self.table.update_native(page, newpp, &mut window),
        };
        // BUG_ON(lpar_rc != H_SUCCESS): a harness fault, not an invariant.
        assert_eq!(rc, HRet::Success, "BUG_ON(lpar_rc != H_SUCCESS) for page {page}");
        found.map_or(Ok(()), Err)
    }

    /// H4, checked by the master while an entry is out: every other online CPU is in
    /// real mode with hard irqs off, and `cpu_counter == 1`.
    fn master_alone(&self, cx: &dyn Ctx, me: usize) -> Result<(), Violation> {
        let mut others = 0;
        for (k, c) in self.cpus.iter().enumerate() {
            if k == me || !c.online.peek() {
                continue;
            }
            others += 1;
            if c.mode.peek() != cpu::REAL || c.hard_irq_on.peek() {
                return Err(Violation::new(
                    "H4",
                    format!(
                        "master CPU {me} is inside H_PROTECT while CPU {k} is in {} mode with hard irqs {}",
                        cpu::mode_name(c.mode.peek()),
                        if c.hard_irq_on.peek() { "on" } else { "off" }
                    ),
                )
                .with_state(self.dump_state()));
            }
        }
        let n = self.parms.cpu_counter.peek() as i32;
        if n != 1 {
            return Err(Violation::new(
                "H4",
                format!("master CPU {me} is inside H_PROTECT with cpu_counter {n} (not 1)"),
            )
            .with_state(self.dump_state()));
        }
        if others > 0 {
            cx.cover(cov::SECONDARIES_REAL_DURING_UPDATE);
        }
        Ok(())
    }

    /// H5: the counter within `0..=num_online` before and after each change.
    fn counter_in_range(&self, what: &str, old: i32, new: i32) -> Result<(), Violation> {
        let online = self.num_online.peek() as i32;
        if old > online || new < 0 || new > online {
            return Err(Violation::new(
                "H5",
                format!("cpu_counter {old} -> {new} at {what} with {online} CPUs online"),
            )
            .with_state(self.dump_state()));
        }
        Ok(())
    }

    /// `stop_machine_cpuslocked(change_memory_range_fn, &chmem_parms, cpu_online_mask)`:
    /// returns when every participant has left `multi_cpu_stop()` (`__stop_cpus()`'s
    /// `wait_for_completion`), or when the participants were let go after a violation
    /// ([`Change::Abandoned`]).
    fn stop_machine_cpuslocked(&self, cx: &mut dyn Ctx, cpu: usize) -> Result<Change, Violation> {
        // stop_cpus() → mutex_lock(&stop_cpus_mutex): one stop_machine at a time (CPU
        // hotplug's take_cpu_down is one too).
        self.sleep_until(cx, cpu, &|| self.stop_cpus.try_lock())?;
        let num_threads = self.num_online.load(SeqCst);
        let ms = Arc::new(MultiStop::new(
            num_threads,
            self.cpus.len(),
            self.proto.state_before_ack_reset,
        ));
        *self.msdata.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&ms));
        // set_state(&msdata, MULTI_STOP_PREPARE); stop_cpus(cpu_online_mask, ...)
        ms.set_state(PREPARE);
        for c in self.cpus.iter().filter(|c| c.online.load(SeqCst)) {
            crate::point!("cpu_stop_queue_work");
            *c.work.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&ms));
        }
        cx.event(
            "stop_machine.queued threads={a} caller_cpu={b}",
            u64::from(num_threads),
            cpu as u64,
        );
        let r = self.run_stoppers(cx, cpu, &ms, true).and_then(|()| {
            if ms.abandoned.load(SeqCst) {
                // The participant that found the violation reports it.
                cx.event("stop_machine.abandoned caller_cpu={a}", cpu as u64, 0);
                return Ok(Change::Abandoned);
            }
            self.after_stop_machine(&ms).map(|()| Change::Done)
        });
        self.stop_cpus.unlock();
        r
    }

    /// Once stop_machine returned: exactly one master ran (H5) and every CPU is back
    /// in virtual mode (H3).
    fn after_stop_machine(&self, ms: &MultiStop) -> Result<(), Violation> {
        let masters = ms.masters.load(SeqCst);
        if masters != 1 {
            return Err(
                Violation::new("H5", format!("{masters} masters in one change_memory_range call"))
                    .with_state(ms.describe()),
            );
        }
        for (k, c) in self.cpus.iter().enumerate() {
            if c.online.peek() && c.mode.peek() != cpu::VIRTUAL {
                return Err(Violation::new(
                    "H3",
                    format!("stop_machine returned with CPU {k} still in real mode"),
                )
                .with_state(self.dump_state()));
            }
        }
        Ok(())
    }

    /// A task sleeping (mutex, rwsem) until `acquire` succeeds: its CPU meanwhile
    /// takes interrupts and runs its stopper, as an idle kernel CPU does.
    pub(super) fn sleep_until(
        &self,
        cx: &mut dyn Ctx,
        cpu: usize,
        acquire: &dyn Fn() -> bool,
    ) -> Result<(), Violation> {
        let mut b = Backoff::new("chmem.sleep");
        while !acquire() {
            self.service(cx, cpu)?;
            b.spin();
        }
        Ok(())
    }

    /// One step of `change_memory_range_fn()` on `cpu`.
    pub(super) fn chmem_step(
        &self,
        cx: &mut dyn Ctx,
        ms: &MultiStop,
        cpu: usize,
        f: &mut FnState,
    ) -> Result<Step, Violation> {
        let parms = &self.parms;
        let c = &self.cpus[cpu];
        let counter_addr = parms.addr.peek() + COUNTER_OFFSET;
        let early_dec = self.proto.dec_before_real;
        f.phase = match f.phase {
            Phase::Choose => {
                let secondary = match self.proto.master {
                    // "First CPU goes through, all others wait."
                    MasterPick::FirstArrival => parms.master_cpu.swap(1, SeqCst) == 1,
                    MasterPick::CallerCpu => parms.master_cpu.load(SeqCst) != cpu as u32,
                };
                if secondary {
                    Phase::IrqSave
                } else {
                    let n = ms.masters.fetch_add(1, SeqCst) + 1;
                    cx.event("chmem.master cpu={a}", cpu as u64, 0);
                    if n > 1 {
                        return Err(Violation::new("H5", format!("CPU {cpu} is master number {n}")));
                    }
                    Phase::WaitCallIn
                }
            }
            Phase::IrqSave => {
                if self.proto.secondary_irqsave {
                    f.saved = (c.soft_irq_on.load(SeqCst), c.hard_irq_on.load(SeqCst));
                    c.soft_irq_on.store(false, SeqCst);
                    c.hard_irq_on.store(false, SeqCst);
                }
                window!("chmem.secondary.irqs_off");
                if early_dec {
                    Phase::Decrement
                } else {
                    Phase::GoReal
                }
            }
            Phase::GoReal => {
                c.mode.store(cpu::REAL, SeqCst);
                window!("chmem.secondary.real");
                if early_dec {
                    Phase::Spin
                } else {
                    Phase::Decrement
                }
            }
            Phase::Decrement => {
                if !self.proto.secondary_skips_dec {
                    self.realmode_access(cx, cpu, counter_addr)?;
                    let old = parms.cpu_counter.fetch_sub(1, SeqCst) as i32;
                    self.counter_in_range("a secondary's decrement", old, old - 1)?;
                }
                window!("chmem.secondary.decremented");
                if early_dec {
                    Phase::GoReal
                } else {
                    Phase::Spin
                }
            }
            Phase::Spin => {
                self.realmode_access(cx, cpu, self.secondary_loop_addr)?;
                self.realmode_access(cx, cpu, counter_addr)?;
                let n = parms.cpu_counter.load(SeqCst) as i32;
                let leave = if self.proto.secondary_leaves_at_one {
                    n <= 1
                } else {
                    n == 0
                };
                if !leave {
                    return Ok(Step::Idle);
                }
                Phase::GoVirtual
            }
            Phase::GoVirtual => {
                if !self.proto.secondary_stays_real {
                    c.mode.store(cpu::VIRTUAL, SeqCst);
                }
                Phase::IrqRestore
            }
            Phase::IrqRestore => {
                if self.proto.secondary_irqsave {
                    c.soft_irq_on.store(f.saved.0, SeqCst);
                    c.hard_irq_on.store(f.saved.1, SeqCst);
                }
                Phase::Returned
            }
            Phase::WaitCallIn => {
                if self.proto.master_waits && parms.cpu_counter.load(SeqCst) as i32 > 1 {
                    if !f.spun {
                        f.spun = true;
                        cx.cover(cov::MASTER_SPUN);
                    }
                    return Ok(Step::Idle);
                }
                window!("chmem.master.called_in");
                f.range = (
                    parms.start.load(SeqCst),
                    parms.end.load(SeqCst),
                    parms.step.load(SeqCst),
                    parms.newpp.load(SeqCst),
                );
                if self.proto.master_signals_first {
                    Phase::Signal
                } else {
                    Phase::Protect(f.range.0)
                }
            }
            Phase::Protect(idx) => {
                let (_, end, step, newpp) = f.range;
                if self.range_done(idx, end, step) {
                    if f.signalled {
                        Phase::Returned
                    } else {
                        Phase::Signal
                    }
                } else {
                    self.updateboltedpp(cx, cpu, idx, newpp, true)?;
                    window!("chmem.master.between_steps");
                    Phase::Protect(idx + step)
                }
            }
            Phase::Signal => {
                fence();
                let old = parms.cpu_counter.fetch_sub(1, SeqCst) as i32;
                self.counter_in_range("the master's decrement", old, old - 1)?;
                f.signalled = true;
                if self.proto.master_signals_first {
                    Phase::Protect(f.range.0)
                } else {
                    Phase::Returned
                }
            }
            Phase::Returned => Phase::Returned,
        };
        Ok(Step::Moved)
    }

    /// H6: a real-mode access (instruction fetch or data) of a CPU in real mode must
    /// stay inside the RMO.
    fn realmode_access(&self, cx: &mut dyn Ctx, cpu: usize, addr: u64) -> Result<(), Violation> {
        if self.cpus[cpu].mode.peek() != cpu::REAL {
            return Ok(());
        }
        cx.cover(cov::REALMODE_ACCESSES_CHECKED);
        if addr >= self.rmo_size {
            return Err(Violation::new(
                "H6",
                format!(
                    "CPU {cpu} in real mode accesses {addr:#x}, outside the RMO [0, {:#x})",
                    self.rmo_size
                ),
            )
            .with_state(self.dump_state()));
        }
        Ok(())
    }
}
