//! The vCPU side: `kvmppc_vcpu_run_hv` → `kvmppc_run_vcpu` → `kvmppc_run_core`, the
//! guest's accesses and hypercalls (`kvmppc_do_h_enter`, `kvmppc_do_h_remove` in
//! book3s_hv_rm_mmu.c) and the host page fault (`kvmppc_book3s_hv_page_fault`).

use super::table::{self, Table, AVPN_SHIFT, GROUP, V_ABSENT, V_BOLTED, V_HVLOCK, V_VALID};
use super::{cov, Hpt, Vcpu};
use crate::model::Ctx;
use crate::model::Violation;
use crate::sync::Cpus;
use crate::{point, window};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

/// A fault recorded at guest exit (`vcpu->arch.pgfault_index`, `pgfault_hpte[]`),
/// tagged with the table it was computed against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fault {
    index: usize,
    v: u64,
    r: u64,
    gen: u64,
}

/// Share of guest accesses through a VALID entry that then remove it (`H_REMOVE`,
/// as Linux's hash MMU does on munmap, page migration and `hpte_removebolted`): a
/// guest that churns its mappings keeps the rmap chains changing under the walkers.
const H_REMOVE_SHARE: f64 = 0.3;

/// Why the guest exited.
enum Exit {
    /// Ran its accesses (or was kicked by the resize IPI).
    Done,
    /// Touched an ABSENT entry: a hypervisor page fault for the host to resolve.
    PageFault(Fault),
}

impl Vcpu {
    /// Interrupts off, on a host CPU of its own (taken first, as the vCPU thread is
    /// running when it disables interrupts): from here until [`exit`](Self::exit) the
    /// resize IPI waits.
    fn irq_off(&self, cpus: &Cpus) {
        cpus.take();
        let w = self.run.load(SeqCst);
        self.run.store(w | 1, SeqCst);
    }

    /// Guest exit with interrupts back on (a pending IPI is taken here); the host CPU
    /// may run another vCPU.
    fn exit(&self, cpus: &Cpus) {
        let w = self.run.load(SeqCst);
        self.kick.store(false, SeqCst);
        self.run.store((w & !1) + 2, SeqCst);
        cpus.give();
    }
}

impl Hpt {
    /// One `KVM_RUN` ioctl: up to `passes` trips around the run loop.
    ///
    /// R4 is reported at the end of the op, so that a fault of the same op that
    /// corrupted a chain (R3) is reported first: the corruption is what matters. A
    /// violation found in the guest still leaves the guest (interrupts back on) before
    /// the op returns, so a caught run never leaves the resize IPI waiting.
    pub(super) fn kvm_run(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        let vcpu = &self.vcpus[cx.worker()];
        let mut r4 = None;
        if !self.checks.setup_in_loop && !self.mmu_ready.load(SeqCst) {
            // B1 (buggy): the only setup check, once per KVM_RUN in kvmppc_vcpu_run_hv().
            self.setup_htab(cx);
        }
        for _ in 0..self.params.passes {
            if self.checks.setup_in_loop && !self.mmu_ready.load(SeqCst) {
                // Fixed kvmppc_run_vcpu(): drop vc->lock, block in kvmhv_setup_mmu().
                self.setup_htab(cx);
            }
            window!("hpt.vcpu.before_irq_off");
            if self.checks.irq_off_before_recheck {
                vcpu.irq_off(&self.cpus);
            }
            window!("hpt.vcpu.irqoff_recheck");
            if self.checks.irqoff_recheck && !self.mmu_ready.load(SeqCst) {
                // Fixed kvmppc_run_core(): refuse to enter, resize in progress.
                vcpu.exit(&self.cpus);
                cx.cover(cov::ENTRY_REFUSED_NOT_READY);
                continue;
            }
            if !self.checks.irq_off_before_recheck {
                vcpu.irq_off(&self.cpus);
            }
            cx.cover(cov::GUEST_ENTERED);
            let exit = self.guest(cx, vcpu, &mut r4);
            vcpu.exit(&self.cpus);
            window!("hpt.vcpu.after_exit");
            if let Exit::PageFault(f) = exit? {
                let idx = self.mmu.srcu().read_lock();
                let r = self.page_fault(cx, f);
                self.mmu.srcu().read_unlock(idx);
                r?;
            }
        }
        r4.map_or(Ok(()), Err)
    }

    /// `kvmhv_setup_mmu()`: under `kvm->lock`, which a resize commit holds for its
    /// whole duration — so this blocks until the commit is over.
    fn setup_htab(&self, cx: &dyn Ctx) {
        let resizing = self.ghost.rehash().is_some() || self.ghost.ipi_window.load(SeqCst) != 0;
        let _kvm = self.kvm_lock.lock();
        if resizing {
            cx.cover(cov::SETUP_BLOCKED_BY_RESIZE);
        }
        if !self.mmu_ready.load(SeqCst) {
            self.mmu_ready.store(true, SeqCst);
        }
    }

    /// Guest execution: accesses through the current table, H_ENTER on a miss,
    /// occasional H_REMOVE, until the accesses run out, a page fault, or the IPI.
    fn guest(&self, cx: &mut dyn Ctx, vcpu: &Vcpu, r4: &mut Option<Violation>) -> Result<Exit, Violation> {
        let t = self.current();
        cx.event(
            "enters the guest (gen {a}, rehash cursor {b})",
            t.gen,
            self.ghost.cursor_in(t.gen).unwrap_or(0) as u64,
        );
        for _ in 0..self.params.accesses {
            // One access per round: a shrunk run's guest may make fewer of them.
            if !cx.round() {
                continue;
            }
            if r4.is_none() {
                *r4 = self.r4_check(cx);
            }
            if vcpu.kick.load(SeqCst) {
                break;
            }
            let va = self.pick_va(cx, &t);
            let base = t.group_of(va);
            match self.find(&t, base, va) {
                Some((i, v)) if v & V_VALID != 0 => {
                    if let Some(bad) = self.h1_access(&t, i) {
                        return Err(bad);
                    }
                    if cx.rng().chance(H_REMOVE_SHARE) {
                        self.h_remove(cx, &t, i, va)?;
                    }
                }
                Some((i, _)) => {
                    if let Some(f) = self.absent_fault(&t, i, va) {
                        cx.event("hpte {a} ABSENT: page-fault exit (gen {b})", i as u64, t.gen);
                        return Ok(Exit::PageFault(f));
                    }
                }
                None => {
                    if !self.h_enter(cx, &t, base, va)? {
                        self.evict(cx, &t, base)?;
                    }
                }
            }
        }
        Ok(Exit::Done)
    }

    /// The hardware hash lookup: an entry of `va`'s PTEG with its AVPN, VALID or ABSENT.
    fn find(&self, t: &Table, base: usize, va: u64) -> Option<(usize, u64)> {
        (base..base + GROUP).find_map(|i| {
            let v = t.v[i].load(Relaxed);
            (v & (V_VALID | V_ABSENT) != 0 && table::avpn(v) == va).then_some((i, v))
        })
    }

    /// `kvmppc_hpte_hv_fault()`: lock, snapshot, unlock, and record the fault if the
    /// entry is (still) ABSENT for `va`.
    fn absent_fault(&self, t: &Table, i: usize, va: u64) -> Option<Fault> {
        let locked = t.lock(i);
        let v = locked & !V_HVLOCK;
        let r = t.r[i].load(Relaxed);
        t.unlock(i, v);
        (v & V_ABSENT != 0 && v & V_VALID == 0 && table::avpn(v) == va).then_some(Fault {
            index: i,
            v,
            r,
            gen: t.gen,
        })
    }

    /// `kvmppc_do_h_enter()` for `va` into its PTEG; false on `H_PTEG_FULL`.
    ///
    /// Real mode: `mmu_seq` first, then the host pte of the page (no reference
    /// taken), and under the rmap lock `mmu_invalidate_retry()`: if an invalidation
    /// may have run since, the entry is written ABSENT and the guest faults later.
    fn h_enter(&self, cx: &mut dyn Ctx, t: &Table, base: usize, va: u64) -> Result<bool, Violation> {
        let bolted = if va < self.params.bolted { V_BOLTED } else { 0 };
        let gfn = self.gfn_of(va);
        let mmu_seq = self.mmu.invalidate_seq();
        crate::sync::atomic::fence();
        window!("hpt.h_enter.host_pte");
        let Some(pfn) = self.mmu.peek_pte(self.hva_of(gfn)) else {
            return Ok(true);
        };
        // Pass 1: a slot with neither VALID nor ABSENT, try-locked in one CAS.
        let mut slot = (base..base + GROUP).find(|&i| {
            t.v[i].load(Relaxed) & V_VALID == 0 && t.try_lock(i, V_HVLOCK | V_VALID | V_ABSENT).is_some()
        });
        if slot.is_none() {
            // Pass 2: lock each slot and recheck (try_lock_hpte can fail spuriously).
            slot = (base..base + GROUP).find(|&i| {
                let v = t.lock(i);
                let free = v & (V_VALID | V_ABSENT) == 0;
                if !free {
                    t.unlock(i, v);
                }
                free
            });
        }
        let Some(i) = slot else { return Ok(false) };
        t.rev[i].guest_rpte.store(gfn << 12, Relaxed);
        let stale = self.r3_check(t, i, "H_ENTER made an entry VALID");
        window!("hpt.h_enter.before_rmap");
        let w = self.rmap.lock(gfn);
        t.r[i].store(pfn << 12, Relaxed);
        if self.checks.h_enter_retry && self.mmu.invalidate_retry(mmu_seq) {
            // "inval in progress, write a non-present HPTE"
            self.rmap.unlock(gfn, w);
            t.unlock(i, va << AVPN_SHIFT | bolted | V_ABSENT);
            cx.cover(cov::H_ENTER_ABSENT_INVALIDATION);
            cx.event(
                "H_ENTER hpte {a} ABSENT (invalidation pending, gfn {b})",
                i as u64,
                gfn,
            );
            return Ok(true);
        }
        let linked = table::add_revmap_chain(t, &self.rmap, gfn, w, i);
        let freed = self.h1_install(t, i, gfn, pfn);
        t.unlock(i, va << AVPN_SHIFT | bolted | V_VALID);
        cx.event("H_ENTER hpte {a} gfn {b}", i as u64, gfn);
        linked?;
        stale.or(freed).map_or(Ok(true), Err)
    }

    /// The guest evicts a random entry of a full PTEG (as Linux's hash code does).
    fn evict(&self, cx: &mut dyn Ctx, t: &Table, base: usize) -> Result<(), Violation> {
        let i = base + cx.rng().index(GROUP);
        let v = t.v[i].load(Relaxed);
        if v & V_BOLTED == 0 && v & (V_VALID | V_ABSENT) != 0 {
            self.h_remove(cx, t, i, table::avpn(v))?;
        }
        Ok(())
    }

    /// `kvmppc_do_h_remove()` with `H_AVPN`: remove entry `i` if it still maps `va`.
    fn h_remove(&self, cx: &dyn Ctx, t: &Table, i: usize, va: u64) -> Result<(), Violation> {
        let v = t.lock(i) & !V_HVLOCK;
        if v & (V_ABSENT | V_VALID) == 0 || table::avpn(v) != va {
            t.unlock(i, v);
            return Ok(());
        }
        let mut unlinked = Ok(());
        let mut removed = None;
        if v & V_VALID != 0 {
            t.v[i].store((v & !V_VALID) | V_HVLOCK, Relaxed);
            let gfn = table::rpte_gfn(t.rev[i].guest_rpte.load(Relaxed));
            // Workload hint, not protocol: the aging walk aims at this page now.
            self.ghost.removing_gfn.store(gfn + 1, SeqCst);
            removed = Some(gfn);
            // do_tlbies(): the broadcast TLB invalidation runs with the entry locked,
            // no longer VALID and still on its rmap chain, so an rmap walker that
            // reaches it must drop the rmap lock and wait (kvm_unmap_rmapp).
            window!("hpt.h_remove.tlbie");
            let w = self.rmap.lock(gfn);
            unlinked = match table::unlink(t, gfn, w, i) {
                Ok(w) => {
                    self.rmap.unlock(gfn, w);
                    Ok(())
                }
                Err(e) => {
                    self.rmap.unlock(gfn, w);
                    Err(e)
                }
            };
        }
        t.unlock(i, 0);
        if let Some(gfn) = removed {
            let _ = self
                .ghost
                .removing_gfn
                .compare_exchange(gfn + 1, 0, SeqCst, SeqCst);
        }
        cx.event("H_REMOVE hpte {a} (gen {b})", i as u64, t.gen);
        unlinked
    }

    /// `kvmppc_book3s_hv_page_fault()`, HPT path, inside the SRCU read side.
    ///
    /// `mmu_seq` is read before the page is looked up; the page is pinned with
    /// `get_user_pages` and the reference dropped only after the entry is VALID; under
    /// the HPTE lock and the rmap lock `mmu_invalidate_retry()` sends the guest back
    /// if an invalidation may have run since (`kvm_unmap_rmapp` takes the same rmap
    /// lock, so either it sees the new chain member or the fault sees it).
    fn page_fault(&self, cx: &mut dyn Ctx, f: Fault) -> Result<(), Violation> {
        let t: Arc<Table> = self.current();
        if t.gen != f.gen {
            // The spec's caveat (both variants): the kernel indexes the new table with
            // the old index; the model resumes the guest instead.
            cx.cover(cov::FAULT_STALE_TABLE);
            return Ok(());
        }
        if self.ghost.cursor_in(t.gen).is_some() || self.ghost.ipi_window.load(SeqCst) != 0 {
            cx.cover(cov::FAULT_OVERLAPPED_COMMIT);
        }
        // "used to check for invalidations in progress"
        let early_seq = self.checks.seq_before_gup.then(|| self.mmu.invalidate_seq());
        crate::sync::atomic::fence();
        let i = f.index;
        let v0 = t.lock(i) & !V_HVLOCK;
        let r0 = t.r[i].load(Relaxed);
        let gr = t.rev[i].guest_rpte.load(Relaxed);
        t.unlock(i, v0);
        if v0 != f.v || r0 != f.r {
            return Ok(());
        }
        let gfn = table::rpte_gfn(gr);
        self.ghost.fault_gfn.store(gfn + 1, SeqCst);
        let hva = self.hva_of(gfn);
        // get_user_pages_fast(): pinning the page may sleep.
        window!("hpt.fault.pin_page");
        let Some(pfn) = self.mmu.gup(hva, "hpt page fault")? else {
            return Ok(());
        };
        // Between the lookup and the HPTE lock: the page can be replaced meanwhile.
        window!("hpt.fault.after_gup");
        let mmu_seq = early_seq.unwrap_or_else(|| self.mmu.invalidate_seq());
        let r = self.fault_install(cx, &t, i, (v0, r0, gr), pfn, mmu_seq);
        // "out_put": the entry, if VALID, now relies on the notifier, not the reference.
        let put = self.mmu.arena.put(pfn, "hpt page fault");
        r.and(put)
    }

    /// The locked part of the fault: recheck under the HPTE lock, then link and make
    /// the entry VALID under the rmap lock unless an invalidation may have run.
    fn fault_install(
        &self,
        cx: &mut dyn Ctx,
        t: &Table,
        i: usize,
        (v0, r0, gr): (u64, u64, u64),
        pfn: u64,
        mmu_seq: u64,
    ) -> Result<(), Violation> {
        let vnow = t.lock(i) & !V_HVLOCK;
        if self.checks.fault_recheck && !self.mmu_ready.load(SeqCst) {
            // B3 fix: the HPTE lock orders this read after rehash's unlock of entry i.
            t.unlock(i, vnow);
            cx.cover(cov::FAULT_BAILED_NOT_READY);
            return Ok(());
        }
        if vnow != v0 || t.r[i].load(Relaxed) != r0 || t.rev[i].guest_rpte.load(Relaxed) != gr {
            t.unlock(i, vnow);
            return Ok(());
        }
        let gfn = table::rpte_gfn(gr);
        if self.mmu.peek_pte(self.hva_of(gfn)) != Some(pfn) {
            cx.cover(cov::FAULT_GUP_RACED_INVALIDATION);
        }
        let stale = self.r3_check(t, i, "page fault made an entry VALID");
        if !self.checks.fault_retry_under_rmap_lock && self.mmu.invalidate_retry(mmu_seq) {
            t.unlock(i, vnow);
            cx.cover(cov::FAULT_RETRIED_INVALIDATION);
            return stale.map_or(Ok(()), Err);
        }
        point!("hpt.fault.lock_rmap");
        let w = self.rmap.lock(gfn);
        // "Check if we might have been invalidated; let the guest retry if so"
        if self.checks.fault_retry_under_rmap_lock && self.mmu.invalidate_retry(mmu_seq) {
            self.rmap.unlock(gfn, w);
            t.unlock(i, vnow);
            cx.cover(cov::FAULT_RETRIED_INVALIDATION);
            return stale.map_or(Ok(()), Err);
        }
        cx.event(
            "page fault: hpte {a} VALID, linked into rmap[gfn {b}]",
            i as u64,
            gfn,
        );
        let linked = table::add_revmap_chain(t, &self.rmap, gfn, w, i);
        t.r[i].store(pfn << 12, Relaxed);
        let freed = self.h1_install(t, i, gfn, pfn);
        t.unlock(i, (vnow & !V_ABSENT) | V_VALID);
        linked?;
        stale.or(freed).map_or(Ok(()), Err)
    }
}
