//! Quiescent and teardown invariants (Q2, Q3, R1 over every rmap word) and the dump.

use super::table::{self, RMAP_INDEX, RMAP_LOCK, RMAP_PRESENT, V_HVLOCK, V_VALID};
use super::Hpt;
use crate::model::Violation;
use std::fmt::Write;
use std::sync::atomic::Ordering::SeqCst;

impl Hpt {
    /// With every worker parked: each rmap chain is sound (R1, R2), every VALID entry
    /// is on exactly its page's chain and every member is VALID (Q2), no lock bit is
    /// left set (Q3).
    pub(super) fn quiescent(&self) -> Result<(), Violation> {
        let t = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut on_chain = vec![0u32; t.npte()];
        for gfn in 0..self.rmap.words.len() as u64 {
            let w = self.rmap.words[gfn as usize].peek();
            if w & RMAP_LOCK != 0 {
                return Err(Violation::new(
                    "Q3",
                    format!("rmap[gfn {gfn}] lock bit left set: {w:#x}"),
                ));
            }
            self.check_chain(&t, gfn, w)?;
            if w & RMAP_PRESENT != 0 {
                let head = (w & RMAP_INDEX) as usize;
                let mut k = head;
                loop {
                    on_chain[k] += 1;
                    k = t.rev[k].forw.peek() as usize;
                    if k == head {
                        break;
                    }
                }
            }
        }
        for (i, &n) in on_chain.iter().enumerate() {
            let v = t.v[i].peek();
            if v & V_HVLOCK != 0 {
                return Err(
                    Violation::new("Q3", format!("HVLOCK left set on entry {i}")).with_state(t.describe(i))
                );
            }
            let valid = v & V_VALID != 0;
            if valid != (n == 1) {
                let gfn = table::rpte_gfn(t.rev[i].guest_rpte.peek());
                return Err(Violation::new(
                    "Q2",
                    format!(
                        "entry {i} is {} but on {n} rmap chain(s) (its page: gfn {gfn})",
                        if valid { "VALID" } else { "not VALID" }
                    ),
                )
                .with_state(self.dump_state()));
            }
        }
        Ok(())
    }

    /// After all workers stopped: nothing in flight.
    pub(super) fn at_rest(&self) -> Result<(), Violation> {
        let busy = [
            ("mmu_ready is clear", !self.mmu_ready.peek()),
            ("an SRCU reader is still inside", self.srcu.active_readers() != 0),
            ("mmu_lock is held", self.mmu_lock.is_locked()),
            (
                "a vCPU still has interrupts off",
                self.vcpus.iter().any(|v| v.run.peek() & 1 != 0),
            ),
            (
                "a rehash is still marked in progress",
                self.ghost.rehash().is_some(),
            ),
        ];
        match busy.iter().find(|(_, b)| *b) {
            Some((what, _)) => Err(Violation::new("Q3", format!("at teardown {what}"))),
            None => Ok(()),
        }
    }

    pub(super) fn dump_state(&self) -> String {
        let t = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut s = format!(
            "mmu_ready={} rehash(gen, cursor)={:?} ipi_window={}\n",
            self.mmu_ready.peek(),
            self.ghost.rehash(),
            self.ghost.ipi_window.load(SeqCst)
        );
        t.dump(&mut s);
        let _ = writeln!(s, "rmap (PRESENT words):");
        for (g, w) in self.rmap.words.iter().enumerate() {
            let w = w.peek();
            if w & (RMAP_PRESENT | RMAP_LOCK) != 0 {
                let _ = writeln!(s, "  gfn {g}: {w:#x} head {}", w & RMAP_INDEX);
            }
        }
        s
    }
}
