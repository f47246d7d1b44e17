//! The resizer: `kvm_vm_ioctl_resize_hpt_prepare()` and
//! `kvm_vm_ioctl_resize_hpt_commit()` with `resize_hpt_rehash()`,
//! `resize_hpt_rehash_hpte()` and `resize_hpt_pivot()` (book3s_64_mmu_hv.c).

use super::table::{self, Table, GROUP, RMAP_PRESENT, V_ABSENT, V_BOLTED, V_HVLOCK, V_VALID};
use super::{cov, Hpt};
use crate::model::Ctx;
use crate::model::Violation;
use crate::sync::atomic::fence;
use crate::sync::Backoff;
use crate::window;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

/// Rehash steps between two explicit preemption points in the commit.
const REHASH_POINT_EVERY: usize = 4;

impl Hpt {
    /// Prepare a resize to the other size (mostly shrinking, per the spec's bias).
    /// The kernel allocates in a workqueue and userspace polls; the model allocates
    /// under `kvm->lock` at once, which only removes a harmless "not ready" retry.
    pub(super) fn resize_prepare(&self, _cx: &mut dyn Ctx) -> Result<(), Violation> {
        let cur_order = self.current().order;
        let order = if cur_order == self.params.order_large {
            self.params.order_small
        } else {
            self.params.order_large
        };
        let table = Arc::new(Table::new(self.new_gen(), order));
        let mut rec = self.kvm_lock.lock();
        rec.pending = Some(table);
        Ok(())
    }

    /// The commit, in the kernel's order. Failed commits (nothing prepared, or a
    /// bolted collision) still clear the flag, fence, IPI and set it again.
    pub(super) fn resize_commit(&self, cx: &mut dyn Ctx) -> Result<(), Violation> {
        let mut rec = self.kvm_lock.lock();
        if !self.mmu_ready.load(SeqCst) {
            return Ok(()); // -EIO
        }
        self.mmu_ready.store(false, SeqCst);
        self.ghost.committing.store(1, SeqCst);
        fence();
        cx.event("commit: mmu_ready = 0", 0, 0);
        window!("hpt.commit.before_ipi");
        self.ipi_all_vcpus(cx);
        self.ghost.ipi_window.store(1, SeqCst);
        let old = self.current();
        let mut found = None;
        match rec.pending.take() {
            None => cx.cover(cov::COMMIT_ERROR_PATH), // -ENXIO
            Some(new) => match self.rehash(cx, &old, &new) {
                Err(()) => cx.cover(cov::COMMIT_ERROR_PATH), // -ENOSPC: keep the old table
                Ok(()) => {
                    if self.params.checks {
                        found = self.after_rehash(&old).err();
                    }
                    self.pivot(cx, &new);
                    if self.params.checks {
                        found = found.or_else(|| self.after_pivot(&new).err());
                    }
                    cx.cover(cov::COMMIT_REHASHED);
                    cx.cover(if new.npte() < old.npte() {
                        cov::SHRINK_COMMITTED
                    } else {
                        cov::GROW_COMMITTED
                    });
                }
            },
        }
        // Until mmu_ready returns to 1, the old table counts as rehashed up to the
        // cursor: an entry made VALID there during pivot and SRCU sync is lost too.
        self.ghost.rehash.store(0, SeqCst);
        self.ghost.ipi_window.store(0, SeqCst);
        self.ghost.committing.store(0, SeqCst);
        self.mmu_ready.store(true, SeqCst);
        fence();
        cx.event("commit: mmu_ready = 1", 0, 0);
        drop(rec);
        found.map_or(Ok(()), Err)
    }

    /// `on_each_cpu(resize_hpt_boot_vcpu, NULL, 1)`: wait until every vCPU that had
    /// interrupts off (past its entry check, or in the guest) has exited once. The
    /// kernel IPIs host CPUs: a vCPU with interrupts off is running on one, and holds
    /// one of the model's `pcpus` ([`crate::sync::Cpus`], vcpu.rs `irq_off`), so this
    /// waits for at most that many vCPUs, whatever the thread count.
    fn ipi_all_vcpus(&self, cx: &dyn Ctx) {
        let n = if self.checks.ipi_every_vcpu {
            self.vcpus.len()
        } else {
            self.vcpus.len().saturating_sub(1)
        };
        for v in &self.vcpus[..n] {
            let w = v.run.load(SeqCst);
            if w & 1 == 0 {
                continue;
            }
            v.kick.store(true, SeqCst);
            cx.cover(cov::IPI_WAITED_FOR_GUEST);
            let mut b = Backoff::new("hpt.commit.ipi_wait");
            while v.run.load(SeqCst) == w {
                b.spin();
            }
        }
    }

    /// `resize_hpt_rehash()`: every entry of the old table, publishing the ghost
    /// cursor after each entry is unlocked. `Err` is `-ENOSPC`.
    fn rehash(&self, cx: &dyn Ctx, old: &Table, new: &Table) -> Result<(), ()> {
        self.ghost.set_rehash(old.gen, 0);
        for i in 0..old.npte() {
            let r = self.rehash_hpte(old, new, i);
            self.ghost.set_rehash(old.gen, i + 1);
            if i % REHASH_POINT_EVERY == 0 {
                window!("hpt.commit.rehash");
            }
            r?;
        }
        cx.event("commit: rehashed gen {a} into gen {b}", old.gen, new.gen);
        Ok(())
    }

    /// `resize_hpt_rehash_hpte()`.
    fn rehash_hpte(&self, old: &Table, new: &Table, i: usize) -> Result<(), ()> {
        // "Guest is stopped, so new HPTEs can't be added or faulted in": an unlocked
        // pre-check that skips empty slots — which is what lets a buggy H_ENTER slip
        // in behind the cursor.
        if old.v[i].load(Relaxed) & (V_VALID | V_ABSENT) == 0 {
            return Ok(());
        }
        let mut v = old.lock(i) & !V_HVLOCK;
        if v & (V_VALID | V_ABSENT) == 0 {
            old.unlock(i, v);
            return Ok(());
        }
        let rpte = old.rev[i].guest_rpte.load(Relaxed);
        if v & V_VALID != 0 {
            let gfn = table::rpte_gfn(rpte);
            let idx = self.mmu.srcu().read_lock();
            let w = self.rmap.lock(gfn);
            let w = match table::unmap_hpte(old, gfn, w, i, v | V_HVLOCK) {
                Ok((w, nv)) => {
                    v = nv & !V_HVLOCK;
                    w
                }
                // A corrupt chain (only after a race) is left for R1/R2 to report.
                Err(_) => w,
            };
            self.rmap.unlock(gfn, w);
            self.mmu.srcu().read_unlock(idx);
        }
        let mut result = Ok(());
        if v & V_BOLTED != 0 {
            let va = table::avpn(v);
            let j = new.group_of(va) + i % GROUP;
            let existing = new.v[j].load(Relaxed);
            if existing & V_BOLTED != 0 {
                result = Err(()); // -ENOSPC
            } else {
                new.r[j].store(old.r[i].load(Relaxed), Relaxed);
                new.rev[j].guest_rpte.store(rpte, Relaxed);
                new.v[j].store((v & !V_VALID) | V_ABSENT, Relaxed);
            }
        }
        old.unlock(i, v);
        result
    }

    /// `resize_hpt_pivot()`: swap under `mmu_lock`, then `synchronize_srcu_expedited()`.
    fn pivot(&self, cx: &dyn Ctx, new: &Arc<Table>) {
        self.mmu.mmu_lock().lock();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(new);
        self.mmu.mmu_lock().unlock();
        cx.event(
            "commit: pivot to gen {a} ({b} entries)",
            new.gen,
            new.npte() as u64,
        );
        window!("hpt.commit.before_srcu_sync");
        self.mmu.srcu().synchronize();
    }

    /// Q1 at the end of rehash: no rmap chain, no VALID entry left in the old table.
    fn after_rehash(&self, old: &Table) -> Result<(), Violation> {
        if let Some(i) = (0..old.npte()).find(|&i| old.v[i].peek() & V_VALID != 0) {
            return Err(
                Violation::new("Q1", format!("after rehash, entry {i} of the old table is VALID"))
                    .with_state(old.describe(i)),
            );
        }
        self.no_rmap_chains("after rehash")
    }

    /// Q1 after the pivot: the new table holds only empty or ABSENT|BOLTED entries.
    fn after_pivot(&self, new: &Table) -> Result<(), Violation> {
        let bad = (0..new.npte()).find(|&i| {
            let v = new.v[i].peek();
            v != 0 && v & (V_VALID | V_HVLOCK) != 0
        });
        if let Some(i) = bad {
            return Err(Violation::new(
                "Q1",
                format!("after pivot, new entry {i} is not empty or ABSENT|BOLTED"),
            )
            .with_state(new.describe(i)));
        }
        self.no_rmap_chains("after pivot")
    }

    fn no_rmap_chains(&self, when: &str) -> Result<(), Violation> {
        match (0..self.rmap.words.len()).find(|&g| self.rmap.words[g].peek() & RMAP_PRESENT != 0) {
            None => Ok(()),
            Some(g) => {
                let w = self.rmap.words[g].peek();
                Err(Violation::new(
                    "Q1",
                    format!(
                        "{when}, rmap[gfn {g}] is still PRESENT (head {})",
                        w & table::RMAP_INDEX
                    ),
                )
                .with_state(self.dump_state()))
            }
        }
    }
}
