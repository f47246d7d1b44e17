//! The invariants: R3 and H1 as an entry becomes VALID, R4 and H1 at every guest
//! step, H1 after an invalidation, the quiescent and teardown checks (Q2, Q3, H1, R1
//! over every rmap word), and the dump. No check reads which protocol steps run.

use super::table::{self, RMAP_INDEX, RMAP_LOCK, RMAP_PRESENT, V_HVLOCK, V_VALID};
use super::{Hpt, Table};
use crate::model::{Ctx, Violation};
use crate::sync::holder;
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
            if valid {
                self.h1_entry(&t, i, None)?;
            }
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
        self.mmu.check_quiescent()
    }

    /// H1 for entry `i` of table `t`, read without a preemption point: if VALID, the
    /// host page its R word names is live and is the page the host maps at its guest
    /// page now. With `freed = Some(pfn)`, the entry must not name `pfn`, a page an
    /// invalidation of its guest page has just let go.
    pub(super) fn h1_entry(&self, t: &Table, i: usize, freed: Option<(u64, u64)>) -> Result<(), Violation> {
        let (v, r, gr) = (t.v[i].peek(), t.r[i].peek(), t.rev[i].guest_rpte.peek());
        if v & V_VALID == 0 {
            return Ok(());
        }
        let (pfn, gfn) = (table::r_pfn(r), table::rpte_gfn(gr));
        let host = self.mmu.peek_pte(self.hva_of(gfn));
        let live = self.mmu.arena.state(pfn).is_some_and(|s| s.allocated);
        let bad = match freed {
            Some((g, old)) => g == gfn && pfn == old,
            None => host != Some(pfn) || !live,
        };
        if !bad {
            return Ok(());
        }
        Err(Violation::new(
            "H1",
            format!(
                "entry {i} of HPT gen {} is VALID for gfn {gfn} naming host pfn {pfn} ({}), but the host maps gfn {gfn} to {} \
                 after an invalidation of that page finished",
                t.gen,
                if live { "live" } else { "FREED" },
                host.map_or("nothing".to_string(), |p| format!("pfn {p}"))
            ),
        )
        .with_state(format!("{}\n{}", t.describe(i), self.mmu.arena.describe(pfn))))
    }

    /// After all workers stopped: nothing in flight.
    pub(super) fn at_rest(&self) -> Result<(), Violation> {
        if let Some(w) = self.mmu.mmu_lock().holder() {
            return Err(Violation::new(
                "Q3",
                format!("at teardown mmu_lock is held by {}", holder::describe(w)),
            ));
        }
        if let Some(w) = self.kvm_lock.holder() {
            return Err(Violation::new(
                "Q3",
                format!("at teardown kvm->lock is held by {}", holder::describe(w)),
            ));
        }
        let busy = [
            ("mmu_ready is clear", !self.mmu_ready.peek()),
            (
                "an SRCU reader is still inside",
                self.mmu.srcu().active_readers() != 0,
            ),
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

    /// R4 at every step a vCPU is in the guest: no vCPU may be in the guest between
    /// the end of a resize commit's IPI and `mmu_ready = 1` (the IPI's whole point is
    /// that the rehash runs with every vCPU out).
    pub(super) fn r4_check(&self, cx: &dyn Ctx) -> Option<Violation> {
        if !self.params.checks || self.ghost.ipi_window.load(SeqCst) == 0 {
            return None;
        }
        cx.event("enters the guest inside the IPI window", 0, 0);
        Some(
            Violation::new(
                "R4",
                format!(
                    "vCPU {} is in the guest while a resize commit has mmu_ready clear and its IPI done",
                    cx.worker()
                ),
            )
            .with_state(format!(
                "mmu_ready = {}, rehash (gen, cursor) = {:?}",
                self.mmu_ready.peek(),
                self.ghost.rehash()
            )),
        )
    }

    /// H1 at a guest access through VALID entry `i`: the host page its R word names is
    /// the page the host maps at the entry's guest page now, and it is live. Every
    /// invalidation unmaps the rmap chain (`kvm_unmap_rmapp`) before the host lets the
    /// page go, and the fault and H_ENTER re-test `mmu_invalidate_retry()` under the
    /// rmap lock, so a VALID entry naming a page the host no longer maps is a guest
    /// access to memory the host has freed or reused. The entry is read twice around
    /// the check (the hardware walk is atomic with respect to `tlbie`; the model's
    /// reads are not): a change in between means the access happened before it.
    pub(super) fn h1_access(&self, t: &Table, i: usize) -> Option<Violation> {
        if !self.params.checks {
            return None;
        }
        let snap = |t: &Table| (t.v[i].peek(), t.r[i].peek(), t.rev[i].guest_rpte.peek());
        let before = snap(t);
        let (v, r, gr) = before;
        if v & V_VALID == 0 {
            return None;
        }
        let pfn = table::r_pfn(r);
        let gfn = table::rpte_gfn(gr);
        let hva = self.hva_of(gfn);
        let host = self.mmu.peek_pte(hva);
        let live = self.mmu.arena.state(pfn).is_some_and(|s| s.allocated);
        if host == Some(pfn) && live || snap(t) != before {
            return None;
        }
        Some(
            Violation::new(
                "H1",
                format!(
                    "guest access through VALID entry {i} (gen {}) reaches host pfn {pfn} ({}), but the host maps gfn {gfn} to {}: \
                     an invalidation of that page finished and left the entry VALID",
                    t.gen,
                    if live { "reused" } else { "FREED" },
                    host.map_or("nothing".to_string(), |p| format!("pfn {p}"))
                ),
            )
            .with_state(format!("{}\n{}", t.describe(i), self.mmu.arena.describe(pfn))),
        )
    }

    /// H1 as entry `i` becomes VALID for `gfn` naming `pfn`, with its HPTE lock still
    /// held (so `kvm_unmap_rmapp` cannot have reached it): the host maps that page
    /// there now and it is live. The page can only have been replaced by an
    /// invalidation that `mmu_invalidate_retry()` should have reported.
    pub(super) fn h1_install(&self, t: &Table, i: usize, gfn: u64, pfn: u64) -> Option<Violation> {
        let host = self.mmu.peek_pte(self.hva_of(gfn));
        let live = self.mmu.arena.state(pfn).is_some_and(|s| s.allocated);
        if !self.params.checks || host == Some(pfn) && live {
            return None;
        }
        Some(
            Violation::new(
                "H1",
                format!(
                    "entry {i} of HPT gen {} made VALID for gfn {gfn} with host pfn {pfn} ({}), but an invalidation \
                     already replaced that page: the host maps gfn {gfn} to {}",
                    t.gen,
                    if live { "live" } else { "FREED" },
                    host.map_or("nothing".to_string(), |p| format!("pfn {p}"))
                ),
            )
            .with_state(format!("{}\n{}", t.describe(i), self.mmu.arena.describe(pfn))),
        )
    }

    /// R3: while table `t` is being rehashed, no entry below the cursor may become
    /// VALID or be linked into an rmap chain. Called with entry `i` locked.
    pub(super) fn r3_check(&self, t: &Table, i: usize, what: &str) -> Option<Violation> {
        let cursor = self
            .ghost
            .cursor_in(t.gen)
            .filter(|&c| self.params.checks && i < c)?;
        Some({
            let gfn = table::rpte_gfn(t.rev[i].guest_rpte.peek());
            let w = self.rmap.words[gfn as usize].peek();
            Violation::new(
                "R3",
                format!(
                    "{what} at index {i} of table gen {} while the rehash cursor is at {cursor}: \
                     the entry was already rehashed and will not be in the new table",
                    t.gen
                ),
            )
            .with_state(format!(
                "{}\nrmap[gfn {gfn}] = {w:#x} (PRESENT={}, head {})\nmmu_ready = {}",
                t.describe(i),
                w & RMAP_PRESENT != 0,
                w & table::RMAP_INDEX,
                self.mmu_ready.peek()
            ))
        })
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
