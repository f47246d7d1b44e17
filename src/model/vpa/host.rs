//! The host side: the reclaimer (M) that frees and reuses guest pages nobody pins,
//! userspace's dirty-log harvest (`kvm_vm_ioctl_get_dirty_log_hv` →
//! `kvmppc_harvest_vpa_dirty`) with its invariant V7, and vCPU teardown
//! (`kvmppc_core_vcpu_free_hv`).

use super::area::{Vcpu, DTL, SLB, VPA};
use super::{cov, Op, Vpa};
use crate::model::Violation;
use std::sync::atomic::AtomicU64 as GhostU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// Ghost dirty-log bookkeeping for V7, per guest page, on a ghost clock:
/// `need` = the latest tick taken just before a writing step stored its `dirty`
/// flags, published when that step ended; `reported` = the latest tick taken just
/// after the page was reported (a harvest saw the area dirty, or an unpin marked it).
pub(super) struct DirtyGhost {
    clock: GhostU64,
    need: Vec<GhostU64>,
    reported: Vec<GhostU64>,
}

impl DirtyGhost {
    pub fn new(pages: u64) -> Self {
        DirtyGhost {
            clock: GhostU64::new(1),
            need: (0..pages).map(|_| GhostU64::new(0)).collect(),
            reported: (0..pages).map(|_| GhostU64::new(0)).collect(),
        }
    }

    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst)
    }

    /// A writing step that ended: its pages were written before tick `t`, and the
    /// dirty flags it stores come after.
    pub fn written(&self, pages: &[u64], t: u64) {
        for &p in pages {
            if let Some(n) = self.need.get(p as usize) {
                n.fetch_max(t, SeqCst);
            }
        }
    }

    /// `mark_page_dirty()` of a page.
    pub fn report(&self, page: u64) {
        let t = self.tick();
        if let Some(r) = self.reported.get(page as usize) {
            r.fetch_max(t, SeqCst);
        }
    }
}

impl Vpa {
    /// M: frees every guest page no one pins and reuses it at once (its generation
    /// moves; a token taken before names a dead page).
    pub(super) fn reclaim(&self, op: &mut Op) {
        for page in 0..self.pages {
            crate::point!("reclaim.page");
            if self.arena.recycle(page, "reclaimer")
                && self.idle_after_unpin[page as usize].swap(false, Relaxed)
            {
                op.cover(cov::RECLAIM_AFTER_AREA_UNPIN);
                op.event("reclaimed page {a}", page, 0);
            }
        }
    }

    /// U: `kvm_vm_ioctl_get_dirty_log_hv`. V7: every page a writing step that ended
    /// before this harvest began has written through an area is reported by now.
    pub(super) fn harvest(&self, op: &mut Op) {
        let need: Vec<u64> = self.dirty.need.iter().map(|n| n.load(SeqCst)).collect();
        for v in &self.vcpus {
            v.lock.lock(op.worker());
            self.harvest_vpa_dirty(v, VPA);
            self.harvest_vpa_dirty(v, DTL);
            v.lock.unlock();
        }
        for (page, &n) in need.iter().enumerate() {
            let r = self.dirty.reported[page].load(SeqCst);
            if n > r {
                op.flag(
                    Violation::new(
                        "V7",
                        format!(
                            "guest page {page} was written through an area (step before tick {n}) but no dirty-log harvest or unpin reported it (last report at tick {r})"
                        ),
                    )
                    .with_state(self.arena.describe(page as u64)),
                );
                return;
            }
        }
    }

    /// `kvmppc_harvest_vpa_dirty()`: a dirty, pinned area's page is reported.
    fn harvest_vpa_dirty(&self, v: &Vcpu, area: usize) {
        let a = &v.areas[area];
        if !a.dirty.load(SeqCst) {
            return;
        }
        let Some(t) = a.pinned.load() else { return };
        a.dirty.store(false, SeqCst);
        self.dirty.report(t.page);
    }

    /// `kvmppc_core_vcpu_free_hv()`: under the lock, unpin the three areas.
    pub(super) fn teardown(&self, v: &Vcpu) -> Result<(), Violation> {
        let mut first = Ok(());
        v.lock.lock(usize::MAX - 1);
        for area in [DTL, SLB, VPA] {
            let a = &v.areas[area];
            if let Some(t) = a.pinned.peek() {
                let r = self.unpin(Some(t), (v.id, area), a.dirty.peek());
                a.pinned.store(None);
                if first.is_ok() {
                    first = r;
                }
            }
        }
        v.lock.unlock();
        first
    }
}
