//! `stop_machine_cpuslocked()` and `multi_cpu_stop()` (kernel/stop_machine.c).
//!
//! `msdata` is the caller's `struct multi_stop_data`: `set_state()` resets
//! `thread_ack` to `num_threads` and then publishes the state; every participant
//! loops, and on each state change does the state's action (DISABLE_IRQ:
//! `local_irq_disable` + `hard_irq_disable`; RUN: `fn`) and `ack_state()`s it; the
//! last acker advances the state by one. So every CPU has hard irqs off before any CPU
//! enters RUN. The last ack of EXIT moves the state one past EXIT, as the kernel does.
//!
//! **Participants are step machines.** A kernel CPU spins in `multi_cpu_stop` on its
//! own; here a worker thread is a CPU only while it is inside an op, and a worker may
//! be parked between ops (the quiescent barrier) or gone (end of run) while a
//! stop_machine needs its CPU. So each participant advances one kernel step per call,
//! and the stop_machine caller drives the participants of CPUs that nobody is running
//! (a CPU is *claimed* by whoever runs it). A CPU whose worker is inside an op runs
//! its own participant at its next scheduling point, as the kernel's stopper thread
//! preempts whatever the CPU was doing. A driver that made no progress over all its
//! participants waits through [`Backoff`], so an oversubscribed run cannot livelock.
//!
//! Model-local rather than `crate::sync`: it carries this model's slips (a mutant
//! reorders `set_state`) and the ghost bookkeeping of H7, and nothing else needs it.

use super::chmem::FnState;
use super::{cov, HashProtect};
use crate::model::{Ctx, Violation};
use crate::sync::{AtomicU32, Backoff};
use crate::window;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool as StdBool, AtomicU32 as StdU32, AtomicU64 as StdU64};
use std::sync::Arc;

pub(super) const NONE: u32 = 0;
pub(super) const PREPARE: u32 = 1;
pub(super) const DISABLE_IRQ: u32 = 2;
pub(super) const RUN: u32 = 3;
pub(super) const EXIT: u32 = 4;

/// The protocol-view text of the state `ack_state()` just advanced to.
fn state_event(state: u32) -> &'static str {
    match state {
        DISABLE_IRQ => "stop.state DISABLE_IRQ: threads={a} acked PREPARE, last cpu={b}",
        RUN => "stop.state RUN: threads={a} acked DISABLE_IRQ, last cpu={b}",
        EXIT => "stop.state EXIT: threads={a} acked RUN, last cpu={b}",
        _ => "stop.state past EXIT: threads={a} acked EXIT, last cpu={b}",
    }
}

/// Ghost: a set of CPU ids, any number of them. (A `u64` mask held 64: at 128
/// threads CPU 76's ack set CPU 12's bit, and a fixed run reported "acked twice".)
struct CpuMask(Vec<StdU64>);

impl CpuMask {
    fn new(cpus: usize) -> Self {
        CpuMask((0..cpus.div_ceil(64)).map(|_| StdU64::new(0)).collect())
    }

    /// Adds `cpu`; whether it was in already.
    fn insert(&self, cpu: usize) -> bool {
        let bit = 1u64 << (cpu % 64);
        self.0[cpu / 64].fetch_or(bit, SeqCst) & bit != 0
    }

    /// How many CPUs are in (exact once every insert it counts has returned).
    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.load(SeqCst).count_ones()).sum()
    }
}

/// `struct multi_stop_data`, plus the completion the caller waits on and ghost state.
pub(super) struct MultiStop {
    pub state: AtomicU32,
    pub thread_ack: AtomicU32,
    pub num_threads: u32,
    /// Mutant slip: `set_state` publishes the state before resetting the acks.
    state_first: bool,
    /// `cpu_stop_done.nr_todo` counted up: participants that have left.
    pub finished: StdU32,
    /// Ghost: per state, the participants that acked it (H7).
    acked: [CpuMask; EXIT as usize + 1],
    /// Ghost: CPUs that took the master role of `change_memory_range_fn` (H5).
    pub masters: StdU32,
    /// Set when a participant found a violation: the others leave instead of waiting
    /// for a step that will never come (the run is over; the kernel would have oopsed
    /// or hung). The caller then returns before `fn` finished everywhere, which the
    /// kernel's never does, so it checks nothing of its call (`chmem::Change::Abandoned`).
    pub abandoned: StdBool,
}

impl MultiStop {
    /// `cpus`: every CPU id a participant may have (online or not).
    pub(super) fn new(num_threads: u32, cpus: usize, state_first: bool) -> Self {
        MultiStop {
            state: AtomicU32::new(NONE),
            thread_ack: AtomicU32::new(0),
            num_threads,
            state_first,
            finished: StdU32::new(0),
            acked: std::array::from_fn(|_| CpuMask::new(cpus)),
            masters: StdU32::new(0),
            abandoned: StdBool::new(false),
        }
    }

    /// `set_state()`: reset the ack counter, `smp_wmb()`, publish the state.
    pub(super) fn set_state(&self, newstate: u32) {
        if self.state_first {
            self.state.store(newstate, SeqCst);
            window!("stop_machine.set_state");
            self.thread_ack.store(self.num_threads, SeqCst);
        } else {
            self.thread_ack.store(self.num_threads, SeqCst);
            window!("stop_machine.set_state");
            self.state.store(newstate, SeqCst);
        }
    }

    /// `ack_state(msdata, curstate)`: the last one to ack moves to the next state.
    /// Returns whether this ack advanced the state. H7: each participant acks each
    /// state once, `thread_ack` stays within `1..=num_threads` before a decrement, and
    /// the state advances only when every participant has acked it.
    fn ack_state(&self, cpu: usize, curstate: u32) -> Result<bool, Violation> {
        if self.acked[curstate as usize].insert(cpu) {
            return Err(Violation::new(
                "H7",
                format!("CPU {cpu} acked state {curstate} twice"),
            ));
        }
        let old = self.thread_ack.fetch_sub(1, SeqCst);
        if old == 0 || old > self.num_threads {
            return Err(Violation::new(
                "H7",
                format!(
                    "CPU {cpu} acked state {curstate} with thread_ack {} (num_threads {})",
                    old as i32, self.num_threads
                ),
            ));
        }
        if old != 1 {
            return Ok(false);
        }
        let acks = self.acked[curstate as usize].len();
        if acks != self.num_threads {
            return Err(Violation::new(
                "H7",
                format!(
                    "state {curstate} advances after {acks} of {} participants acked it",
                    self.num_threads
                ),
            ));
        }
        self.set_state(curstate + 1);
        Ok(true)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "msdata: state {} thread_ack {} num_threads {} finished {} masters {}",
            self.state.peek(),
            self.thread_ack.peek() as i32,
            self.num_threads,
            self.finished.load(SeqCst),
            self.masters.load(SeqCst)
        )
    }
}

/// One CPU's `multi_cpu_stop()` frame.
pub(super) struct Participant {
    pub cpu: usize,
    curstate: u32,
    /// `local_save_flags(flags)` at entry: (soft, hard) irqs on.
    saved: (bool, bool),
    /// Hard irqs were off once DISABLE_IRQ was done (H7: they stay off until EXIT).
    irqs_off_since_disable: bool,
    /// `fn` in progress (RUN).
    run: Option<FnState>,
    pub done: bool,
}

/// What one step of a participant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Changed shared state or its own frame.
    Moved,
    /// Polled and found nothing new (a spin).
    Idle,
}

impl HashProtect {
    /// Starts `multi_cpu_stop()` on `cpu`: `local_save_flags(flags)`.
    fn participant(&self, cpu: usize) -> Participant {
        let c = &self.cpus[cpu];
        self.ghost.in_stopper.fetch_add(1, SeqCst);
        c.in_stopper.store(true, SeqCst);
        Participant {
            cpu,
            curstate: NONE,
            saved: (c.soft_irq_on.load(SeqCst), c.hard_irq_on.load(SeqCst)),
            irqs_off_since_disable: false,
            run: None,
            done: false,
        }
    }

    /// One pass of `multi_cpu_stop()`'s `do { ... } while (curstate != EXIT)`.
    fn stop_step(&self, cx: &mut dyn Ctx, ms: &MultiStop, p: &mut Participant) -> Result<Step, Violation> {
        let c = &self.cpus[p.cpu];
        if p.irqs_off_since_disable && c.hard_irq_on.peek() {
            return Err(Violation::new(
                "H7",
                format!(
                    "CPU {} has hard irqs on in stop_machine state {}",
                    p.cpu, p.curstate
                ),
            ));
        }
        if let Some(f) = p.run.as_mut() {
            // case MULTI_STOP_RUN: err = msdata->fn(msdata->data); (in progress)
            if self.chmem_step(cx, ms, p.cpu, f)? == Step::Idle {
                return Ok(Step::Idle);
            }
            if !f.returned() {
                return Ok(Step::Moved);
            }
            p.run = None;
            return self.ack(cx, ms, p);
        }
        // stop_machine_yield(cpumask); newstate = READ_ONCE(msdata->state);
        let newstate = ms.state.load(SeqCst);
        if newstate == p.curstate {
            return Ok(Step::Idle);
        }
        p.curstate = newstate;
        match newstate {
            DISABLE_IRQ => {
                if self.proto.stop_disables_irqs {
                    // local_irq_disable(); hard_irq_disable();
                    c.soft_irq_on.store(false, SeqCst);
                    c.hard_irq_on.store(false, SeqCst);
                }
                p.irqs_off_since_disable = !c.hard_irq_on.peek();
            }
            RUN => {
                // H7: fn runs only in RUN, after every participant acked DISABLE_IRQ.
                let acks = ms.acked[DISABLE_IRQ as usize].len();
                if ms.state.peek() != RUN || acks != ms.num_threads {
                    return Err(Violation::new(
                        "H7",
                        format!(
                            "CPU {} starts fn in state {} after {acks} of {} acked DISABLE_IRQ",
                            p.cpu,
                            ms.state.peek(),
                            ms.num_threads
                        ),
                    ));
                }
                p.run = Some(FnState::new());
                return Ok(Step::Moved);
            }
            _ => {}
        }
        self.ack(cx, ms, p)
    }

    /// `ack_state(msdata, curstate)`, then leave after EXIT: `local_irq_restore(flags)`.
    fn ack(&self, cx: &mut dyn Ctx, ms: &MultiStop, p: &mut Participant) -> Result<Step, Violation> {
        window!("stop_machine.before_ack");
        if ms.ack_state(p.cpu, p.curstate)? {
            cx.cover(cov::STOP_STATE_ADVANCES);
            cx.event(
                state_event(p.curstate + 1),
                u64::from(ms.num_threads),
                p.cpu as u64,
            );
        }
        if p.curstate == EXIT {
            self.leave_stopper(p);
            ms.finished.fetch_add(1, SeqCst);
        }
        Ok(Step::Moved)
    }

    /// The end of `multi_cpu_stop()`, or a participant abandoned after a violation:
    /// back to the CPU's state before the stopper ran.
    fn leave_stopper(&self, p: &mut Participant) {
        let c = &self.cpus[p.cpu];
        if p.run.take().is_some() {
            // Abandoned inside fn: relocation back on.
            c.mode.store(super::cpu::VIRTUAL, SeqCst);
        }
        c.soft_irq_on.store(p.saved.0, SeqCst);
        c.hard_irq_on.store(p.saved.1, SeqCst);
        self.ghost.in_stopper.fetch_sub(1, SeqCst);
        c.in_stopper.store(false, SeqCst);
        p.done = true;
    }

    /// Runs stopper work on `my_cpu` (and, for the stop_machine caller, on every CPU
    /// nobody else runs) until the stop_machine is over for them. The caller returns
    /// when all `num_threads` participants have left (`cpu_stop_done`).
    pub(super) fn run_stoppers(
        &self,
        cx: &mut dyn Ctx,
        my_cpu: usize,
        ms: &Arc<MultiStop>,
        caller: bool,
    ) -> Result<(), Violation> {
        let mut parts: Vec<Participant> = Vec::new();
        let mut proxied: Vec<usize> = Vec::new();
        let mut b = Backoff::new("stop_machine.wait");
        let mut found = None;
        loop {
            if self.cpus[my_cpu].has_work() && self.take_work(my_cpu, ms) {
                parts.push(self.participant(my_cpu));
            }
            if caller {
                for k in (0..self.cpus.len()).filter(|&k| k != my_cpu) {
                    let c = &self.cpus[k];
                    if !c.has_work() || c.claim.is_locked() || !c.claim.try_lock() {
                        continue;
                    }
                    if self.take_work(k, ms) {
                        parts.push(self.participant(k));
                        proxied.push(k);
                    } else {
                        c.claim.unlock();
                    }
                }
            }
            let mut moved = false;
            for p in parts.iter_mut().filter(|p| !p.done) {
                let r = self.take_irq(cx, p.cpu).and_then(|()| self.stop_step(cx, ms, p));
                match r {
                    Ok(s) => moved |= s == Step::Moved,
                    Err(v) => {
                        found = Some(v);
                        ms.abandoned.store(true, SeqCst);
                        break;
                    }
                }
            }
            let over = if caller {
                ms.finished.load(SeqCst) == ms.num_threads
            } else {
                parts.iter().all(|p| p.done)
            };
            if over || ms.abandoned.load(SeqCst) {
                break;
            }
            if !moved {
                b.spin();
            }
        }
        for p in parts.iter_mut().filter(|p| !p.done) {
            self.leave_stopper(p);
        }
        if caller {
            // Work nobody took (only after an abandon).
            for c in &self.cpus {
                c.work.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
        }
        for k in proxied {
            self.cpus[k].claim.unlock();
        }
        found.map_or(Ok(()), Err)
    }

    /// The CPU's stopper thread picks up the queued `multi_cpu_stop` work.
    fn take_work(&self, cpu: usize, ms: &Arc<MultiStop>) -> bool {
        crate::point!("cpu_stopper.take_work");
        let mut w = self.cpus[cpu].work.lock().unwrap_or_else(|e| e.into_inner());
        match w.as_ref() {
            Some(q) if Arc::ptr_eq(q, ms) => {
                *w = None;
                true
            }
            _ => false,
        }
    }
}
