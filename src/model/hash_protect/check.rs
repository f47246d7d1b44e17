//! Whole-model checks at rest, and the state dump for reports.

use super::table::{pp, ABSENT, HVLOCK, VALID};
use super::{cpu, HashProtect};
use crate::model::Violation;
use crate::sync::holder;
use std::sync::atomic::Ordering::SeqCst;

impl HashProtect {
    /// With every worker between ops: H2 (every bolted entry VALID with its range's
    /// last pp, no ABSENT, no HVLOCK) and the state H3 promises after stop_machine
    /// (every online CPU in virtual mode with interrupts on, no stopper work left).
    pub(super) fn at_rest(&self) -> Result<(), Violation> {
        for (r, &(lo, hi)) in self.ranges.iter().enumerate() {
            let want = self.ghost.range_pp[r].load(SeqCst);
            for page in lo..hi {
                let v = self.table.hpte[page].peek();
                if v & VALID == 0 || v & (ABSENT | HVLOCK) != 0 || pp(v) != want {
                    return Err(Violation::new(
                        "H2",
                        format!("at rest, page {page} is {v:#x} (range {r} was last set to pp {want})"),
                    )
                    .with_state(self.dump_state()));
                }
            }
        }
        for (k, c) in self.cpus.iter().enumerate() {
            let irqs = c.soft_irq_on.peek() && c.hard_irq_on.peek();
            if c.online.peek() && (c.mode.peek() != cpu::VIRTUAL || !irqs) {
                return Err(Violation::new(
                    "H3",
                    format!(
                        "at rest, CPU {k} is in {} mode with irqs {}",
                        cpu::mode_name(c.mode.peek()),
                        if irqs { "on" } else { "off" }
                    ),
                )
                .with_state(self.dump_state()));
            }
            if c.has_work() {
                return Err(Violation::new(
                    "H3",
                    format!("at rest, CPU {k} still has stopper work queued"),
                ));
            }
        }
        Ok(())
    }

    ///
    /// It names who holds each lock of the protocol (the CPUs' claims too), so a STALL
    /// report, which has only this dump and the flight log, says what every stuck
    /// worker waits for: a changer sleeping in `chmem_lock`/`cpus_read_lock`/
    /// `stop_cpus_mutex` waits for the holder named here, a worker whose op has begun
    /// but whose CPU's claim is someone else's waits for that claim.
    pub(super) fn dump_state(&self) -> String {
        let mut s = String::new();
        for (k, c) in self.cpus.iter().enumerate() {
            s += &format!(
                "cpu{k}: {} {} soft_irq {} hard_irq {} pending {} claim {}{}\n",
                if c.online.peek() { "online" } else { "offline" },
                cpu::mode_name(c.mode.peek()),
                c.soft_irq_on.peek(),
                c.hard_irq_on.peek(),
                c.pending_irq.peek(),
                held_by(c.claim.holder()),
                if c.has_work() { ", stopper work queued" } else { "" }
            );
        }
        s += &format!(
            "chmem_lock {}, cpu_hotplug_lock {}, stop_cpus_mutex {}\n",
            held_by(self.chmem_lock.holder()),
            self.hotplug.holders(),
            held_by(self.stop_cpus.holder())
        );
        let p = &self.parms;
        s += &format!(
            "chmem_parms @ {:#x}: [{:#x}, {:#x}) newpp {} master_cpu {} cpu_counter {} (rmo_size {:#x}, online {})\n",
            p.addr.peek(),
            p.start.peek(),
            p.end.peek(),
            p.newpp.peek(),
            p.master_cpu.peek(),
            p.cpu_counter.peek() as i32,
            self.rmo_size,
            self.num_online.peek()
        );
        if let Some(ms) = self.msdata.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            s += &ms.describe();
            s.push('\n');
        }
        s + &self.table.describe()
    }
}

/// `held by worker 3`, or `free`.
fn held_by(h: Option<u32>) -> String {
    h.map_or_else(
        || "free".to_string(),
        |w| format!("held by {}", holder::describe(w)),
    )
}
