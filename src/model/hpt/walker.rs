//! rmap walkers: `kvm_unmap_rmapp()` (in an MMU-notifier invalidation) and `kvm_age_rmapp()`.
//!
//! Both run in notifier context, which holds `kvm->srcu` and `kvm->mmu_lock`
//! (`kvm_mmu_notifier_invalidate_range_start` → `kvm_unmap_hva_range`), so the pivot's
//! table swap cannot happen under them. They hold an rmap lock and may only try-lock
//! an HPTE (lock order HPTE → rmap): on failure, drop the rmap lock, wait, retry.

use super::table::{self, Table, RMAP_INDEX, RMAP_PRESENT, V_HVLOCK, V_VALID};
use super::{cov, Hpt};
use crate::model::notifier::Change;
use crate::model::Ctx;
use crate::model::Violation;
use crate::sync::Backoff;
use std::sync::atomic::Ordering::Relaxed;

impl Hpt {
    /// Runs `f` on the current table in notifier context (SRCU + `mmu_lock`).
    fn in_notifier<T>(&self, f: impl FnOnce(&Table) -> T) -> T {
        let idx = self.mmu.srcu().read_lock();
        self.mmu.mmu_lock().lock();
        let t = self.current();
        let r = f(&t);
        self.mmu.mmu_lock().unlock();
        self.mmu.srcu().read_unlock(idx);
        r
    }

    /// An mmu-notifier invalidation of one or two guest pages that the host replaces
    /// (migration, reclaim): `invalidate_range_start()` raises
    /// `mmu_invalidate_in_progress` and, under `mmu_lock`, runs
    /// `kvm_unmap_gfn_range_hv()` → `kvm_unmap_rmapp()` for each gfn; the host then
    /// changes its ptes and frees the old pages; `invalidate_range_end()` bumps
    /// `mmu_invalidate_seq`. H1 afterwards: no entry is VALID for a page it let go.
    pub(super) fn notifier_unmap(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        let pages = self.params.pages;
        let gfn = self.pick_unmap_gfn(cx);
        let n = if cx.rng().chance(0.25) { 2 } else { 1 }.min(pages - gfn);
        let first = self.mmu.layout.region(0, 0) + gfn;
        let old: Vec<(u64, u64)> = (gfn..gfn + n)
            .filter_map(|g| Some((g, self.mmu.peek_pte(self.hva_of(g))?)))
            .collect();
        cx.event("invalidate_range_start gfn {a} ({b} pages)", gfn, n);
        let done =
            self.mmu
                .invalidate_and_unmap(first, n, Change::Replace, &mut |_, _| Ok(()), &mut |s, e| {
                    let t = self.current();
                    let (g0, g1) = (self.gfn_of_hva(s), self.gfn_of_hva(e));
                    let end = if self.checks.unmap_whole_range { g1 } else { g1 - 1 };
                    (g0..end).try_for_each(|g| self.unmap_rmapp(cx, &t, g))
                });
        done?;
        if !self.params.checks {
            return Ok(());
        }
        let t = self.current();
        for (g, pfn) in old {
            for i in 0..t.npte() {
                self.h1_entry(&t, i, Some((g, pfn)))?;
            }
        }
        Ok(())
    }

    /// The guest page of a host address in the memslot's region.
    fn gfn_of_hva(&self, hva: u64) -> u64 {
        let l = &self.mmu.layout;
        (hva - l.hva(l.region(0, 0))) / crate::model::mem::PAGE_SIZE
    }

    /// `kvm_unmap_rmapp()` for `gfn` (notifier context: SRCU and `mmu_lock` held):
    /// unlink every chain member and make it ABSENT, checking R1 and R2 on the way.
    fn unmap_rmapp(&self, cx: &mut dyn Ctx, t: &Table, gfn: u64) -> Result<(), Violation> {
        let mut busy = Backoff::new("hpt.unmap_rmapp.hpte_busy");
        loop {
            let w = self.rmap.lock(gfn);
            if w & RMAP_PRESENT == 0 {
                self.rmap.unlock(gfn, w);
                return Ok(());
            }
            if let Err(v) = self.per_op_chain_check(t, gfn, w) {
                self.rmap.unlock(gfn, w);
                return Err(v);
            }
            let i = (w & RMAP_INDEX) as usize;
            let Some(v) = t.try_lock(i, V_HVLOCK) else {
                self.rmap.unlock(gfn, w);
                cx.cover(cov::WALKER_HPTE_BUSY);
                if !self.checks.unmap_waits_for_hpte {
                    return Ok(());
                }
                while t.v[i].load(Relaxed) & V_HVLOCK != 0 {
                    busy.spin();
                }
                continue;
            };
            if v & V_VALID != 0 {
                cx.cover(cov::UNMAP_UNLINKED_VALID);
            }
            let r = table::unmap_hpte(t, gfn, w, i, v | V_HVLOCK);
            let (w2, v2) = r.as_ref().map_or((w, v), |&(w2, v2)| (w2, v2));
            self.rmap.unlock(gfn, w2);
            t.unlock(i, v2);
            cx.event("unmap hpte {a} gfn {b}", i as u64, gfn);
            r?;
        }
    }

    /// `kvm_age_rmapp()`: walk the chain under the rmap lock, clearing referenced bits
    /// of entries it can try-lock; checks R1 and R2.
    pub(super) fn age_rmap(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        let gfn = self.pick_age_gfn(cx);
        self.in_notifier(|t| {
            let w = self.rmap.lock(gfn);
            // Always checked: the aging walk follows the links it validates.
            let r = self.check_chain(t, gfn, w);
            if r.is_ok() && w & RMAP_PRESENT != 0 {
                let head = (w & RMAP_INDEX) as usize;
                let mut i = head;
                loop {
                    let next = t.rev[i].forw.load(Relaxed) as usize;
                    if let Some(v) = t.try_lock(i, V_HVLOCK) {
                        t.r[i].store(t.r[i].load(Relaxed) & !0x100, Relaxed);
                        t.unlock(i, v);
                    } else {
                        cx.cover(cov::WALKER_HPTE_BUSY);
                    }
                    i = next;
                    if i == head {
                        break;
                    }
                }
            }
            self.rmap.unlock(gfn, w);
            r
        })
    }

    /// The unmap walker's per-op R1/R2 check, unless `params.checks` is off
    /// (benchmarks); its unlinking bounds-checks every index it follows regardless.
    fn per_op_chain_check(&self, t: &Table, gfn: u64, w: u64) -> Result<(), Violation> {
        if self.params.checks {
            self.check_chain(t, gfn, w)
        } else {
            Ok(())
        }
    }

    /// R1 and R2 for the chain of `gfn` whose rmap word `w` is locked: the head and
    /// every link inside the table, the walk back at the head within `npte` steps,
    /// `rev[rev[k].forw].back == k`, every member VALID (or HVLOCK held by a thread
    /// about to change it) and naming this page.
    pub(super) fn check_chain(&self, t: &Table, gfn: u64, w: u64) -> Result<(), Violation> {
        if w & RMAP_PRESENT == 0 {
            return Ok(());
        }
        let fail = |inv: &'static str, msg: String, k: usize| {
            let mut st = format!("rmap[gfn {gfn}] = {w:#x}\n{}\n", t.describe(k));
            t.dump(&mut st);
            Err(Violation::new(inv, msg).with_state(st))
        };
        let head = (w & RMAP_INDEX) as usize;
        if head >= t.npte() {
            return fail(
                "R1",
                format!(
                    "rmap[gfn {gfn}] is PRESENT with head index {head}, but the current HPT (gen {}) has only {} entries",
                    t.gen,
                    t.npte()
                ),
                head,
            );
        }
        let mut k = head;
        for _ in 0..t.npte() {
            let v = t.v[k].peek();
            let gr = t.rev[k].guest_rpte.peek();
            if v & (V_VALID | V_HVLOCK) == 0 {
                return fail(
                    "R2",
                    format!("chain of gfn {gfn}: member {k} is neither VALID nor locked"),
                    k,
                );
            }
            if table::rpte_gfn(gr) != gfn {
                return fail(
                    "R2",
                    format!("chain of gfn {gfn}: member {k} maps gfn {}", table::rpte_gfn(gr)),
                    k,
                );
            }
            let f = t.rev[k].forw.peek() as usize;
            if f >= t.npte() {
                return fail(
                    "R1",
                    format!(
                        "chain of gfn {gfn}: rev[{k}].forw = {f} is outside the HPT (npte {})",
                        t.npte()
                    ),
                    k,
                );
            }
            if t.rev[f].back.peek() as usize != k {
                return fail(
                    "R2",
                    format!("chain of gfn {gfn}: rev[{f}].back != {k} (rev[{k}].forw = {f})"),
                    k,
                );
            }
            k = f;
            if k == head {
                return Ok(());
            }
        }
        fail(
            "R2",
            format!("chain of gfn {gfn} does not return to its head {head} within npte steps"),
            head,
        )
    }
}
