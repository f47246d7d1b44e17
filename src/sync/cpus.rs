//! The host's physical CPUs, as a count a vCPU holds while its interrupts are off.
//!
//! In the kernel a vCPU with interrupts off (past its entry check, in the guest, until
//! its exit) is running on a physical CPU that nothing preempts, so at most as many
//! vCPUs as the host has CPUs are there at once, and an IPI that waits for them
//! (`on_each_cpu()` in `resize_hpt_commit()`) waits for vCPUs that are running. A
//! model's vCPU *thread* with "interrupts off" is preempted by the OS like any other:
//! with 1022 vCPU threads on 2 cores, a resize commit waited for each preempted one to
//! be run again, behind hundreds of runnable threads a core (README, "Issue 17
//! targets"). Taking one of these CPUs for the interrupts-off stretch gives the model
//! the kernel's bound back; a vCPU that finds none free waits off the run queue (on a
//! condition variable, woken by the `give` of a CPU), as a vCPU thread the host has not
//! scheduled does.
//!
//! The count is std atomics: taking a free CPU is no preemption point, so with at
//! least as many CPUs as vCPUs nothing about a run changes, det schedules included. A
//! failed take is a [`Backoff`] round (a det wait point; in stress a spin or a yield)
//! and, where the backoff would sleep, a wait for a `give` ([`WaitQueue`]).

use crate::sync::waitq::WaitQueue;
use crate::sync::Backoff;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

#[derive(Debug)]
pub struct Cpus {
    free: AtomicUsize,
    /// At least as many CPUs as threads: nobody ever waits, so nothing is counted,
    /// and a run does exactly what it did before there were host CPUs (no shared
    /// counter for every vCPU entry to bounce).
    enough: bool,
    queue: WaitQueue,
}

impl Cpus {
    /// `n` CPUs for the vCPUs among `threads` workers.
    pub fn new(n: usize, threads: usize) -> Self {
        Cpus {
            free: AtomicUsize::new(n),
            enough: n >= threads,
            queue: WaitQueue::new(),
        }
    }

    fn try_take(&self) -> bool {
        self.enough
            || self
                .free
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Takes a CPU, waiting for one if none is free.
    #[track_caller]
    pub fn take(&self) {
        let mut b = Backoff::new("cpus.wait");
        while !self.try_take() {
            b.spin_or(|| {
                self.queue.sleep(|| self.free.load(SeqCst) == 0);
                true
            });
        }
    }

    /// Gives back a CPU taken by [`Cpus::take`], waking one sleeping waiter.
    pub fn give(&self) {
        if self.enough {
            return;
        }
        self.free.fetch_add(1, SeqCst);
        self.queue.wake_one();
    }
}
