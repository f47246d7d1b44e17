//! Which guest pages and entries the ops aim at: the workload's biases (issue 10,
//! Build 4: a workload that enters the race windows). None of them is read by the
//! protocol or by a check; they only decide which page or entry an op picks, from the
//! model's ghost state, so that the racing parties meet on the same page.

use super::table::{self, Table, GROUP, V_ABSENT, V_VALID};
use super::Hpt;
use crate::model::Ctx;
use std::sync::atomic::Ordering::SeqCst;

/// Share of guest accesses and of rmap walks that go to the shared hot set.
const HOT_SHARE: f64 = 0.5;

/// Share of notifier invalidations aimed at the page of the latest host fault.
const AIM_AT_FAULT: f64 = 0.5;

impl Hpt {
    /// The guest virtual page of the next access. In order:
    /// - while a rehash runs, half the time an entry just behind the cursor (the
    ///   spec's bias: the race needs an access to an already-rehashed entry);
    /// - while a resize commit is in flight (from `mmu_ready = 0` to `mmu_ready = 1`),
    ///   an ABSENT entry of the table, so the vCPU leaves the guest on a page fault
    ///   rather than on the IPI and its host fault runs against the commit — down to
    ///   resuming after the pivot replaced its table (`fault_on_stale_table`). A guest
    ///   touching a page whose HPTE an invalidation made ABSENT is an ordinary HDSI
    ///   exit; the bias only makes it coincide with the resize;
    /// - half the time a page of the shared hot set (a guest's working set: its
    ///   kernel text, per-cpu data and locks are touched by every vCPU);
    /// - otherwise uniform.
    pub(super) fn pick_va(&self, cx: &mut dyn Ctx, t: &Table) -> u64 {
        let cursor = self.ghost.cursor_in(t.gen).unwrap_or(0);
        if cursor > 0 && cx.rng().chance(0.5) {
            let back = cx.rng().index(cursor.min(2 * GROUP)) + 1;
            let v = t.v[cursor - back].peek();
            if v & (V_VALID | V_ABSENT) != 0 {
                return table::avpn(v);
            }
        }
        if self.ghost.committing.load(SeqCst) != 0 {
            if let Some(va) = self.absent_va(cx, t) {
                return va;
            }
        }
        if let Some(gfn) = self.hot_gfn(cx) {
            // One of the virtual pages the guest's linear map puts on this page.
            let per = (self.params.vas - gfn).div_ceil(self.params.pages);
            return gfn + self.params.pages * cx.rng().below(per);
        }
        cx.rng().below(self.params.vas)
    }

    /// The virtual page of an ABSENT entry of `t`, scanning from a random index.
    fn absent_va(&self, cx: &mut dyn Ctx, t: &Table) -> Option<u64> {
        let n = t.npte();
        let start = cx.rng().index(n);
        (0..n).map(|k| (start + k) % n).find_map(|i| {
            let v = t.v[i].peek();
            (v & V_ABSENT != 0 && v & V_VALID == 0).then(|| table::avpn(v))
        })
    }

    /// A page of the hot set (the first `hot` guest pages) [`HOT_SHARE`] of the time.
    fn hot_gfn(&self, cx: &mut dyn Ctx) -> Option<u64> {
        let hot = self.params.hot.min(self.params.pages).min(self.params.vas);
        (hot > 0 && cx.rng().chance(HOT_SHARE)).then(|| cx.rng().below(hot))
    }

    /// The first page of a notifier invalidation: half the time the page of the
    /// latest host fault (so an invalidation meets a fault between its
    /// `get_user_pages` and its rmap lock: `fault_gup_raced_invalidation`), else a
    /// hot page half the time (NUMA balancing, KSM and compaction move the pages in
    /// use), else uniform.
    pub(super) fn pick_unmap_gfn(&self, cx: &mut dyn Ctx) -> u64 {
        let pages = self.params.pages;
        match self.ghost.fault_gfn.load(SeqCst).checked_sub(1) {
            Some(g) if g < pages && cx.rng().chance(AIM_AT_FAULT) => g,
            _ => self.hot_gfn(cx).unwrap_or_else(|| cx.rng().below(pages)),
        }
    }

    /// The page an aging walk visits: the page of an H_REMOVE in flight if there is
    /// one, so the walk meets the HPTE its remover holds locked across the `tlbie`
    /// (`kvm_age_rmapp`'s "unlock rmap before spinning on the HPTE lock" case,
    /// `walker_hpte_lock_busy`); else a hot page half the time (reclaim ages the pages
    /// in use: they are the ones found referenced), else uniform.
    pub(super) fn pick_age_gfn(&self, cx: &mut dyn Ctx) -> u64 {
        let pages = self.params.pages;
        match self.ghost.removing_gfn.load(SeqCst).checked_sub(1) {
            Some(g) if g < pages => g,
            _ => self.hot_gfn(cx).unwrap_or_else(|| cx.rng().below(pages)),
        }
    }
}
