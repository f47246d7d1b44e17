//! A reader with a gpa of its own, and L1: a reader's successful refresh must let it
//! use the cache, give or take what the host and the VMM do meanwhile.
//!
//! Before 58f5ee5f ("KVM: Drop @gpa from exported gfn=>pfn cache check() and refresh()
//! helpers") `kvm_gfn_to_pfn_cache_check(kvm, gpc, gpa, len)` failed when
//! `gpc->gpa != gpa`, and `kvm_gfn_to_pfn_cache_refresh(kvm, gpc, gpa, len)` moved the
//! cache to the caller's gpa. "Those helpers explicitly allow concurrent calls, e.g.
//! KVM could get into a livelock scenario": two readers of one cache with different
//! gpas undo each other's refresh for ever. Since then the gpa changes only through
//! activate, and every caller feeds in `gpc->gpa` (the fixed form of this op).
//!
//! L1: a reader that refreshed [`REFRESH_BOUND`] times in a row, each refresh
//! succeeding, and failed the check right after each although nothing that may
//! legitimately fail it (an invalidation clearing the cache's `valid`, a memslot
//! update, an activate or deactivate of the cache: ghost counts) happened since it
//! began the refresh. A successful refresh leaves the cache valid, and only those
//! events clear `valid` or move the cache; the kernel's loop has no bound, so this is
//! a liveness property relative to the environment, not a check of any protocol step.

use super::cache::Gpc;
use super::{cov, Op, PfnCache};
use crate::model::mem::PAGE_SIZE;
use crate::model::notifier::{is_error_gpa, HVA_ERR_BAD};
use std::sync::atomic::Ordering::Acquire;

/// Consecutive successful refreshes without a use that L1 allows.
const REFRESH_BOUND: u32 = 4;

/// Refreshes after which a disturbed reader gives up (the kernel's loop is unbounded;
/// a reader starved by invalidations is not what L1 is about).
const MAX_REFRESHES: u32 = 32;

/// Bytes a reader with its own gpa reads (a Xen evtchn word).
const LEN: u64 = 8;

impl PfnCache {
    /// The gpa this worker's reader wants: its own structure in the first page of
    /// memslot 0 (never moved or deleted), as per-vCPU areas share a page, so any two
    /// readers want different gpas of one page.
    fn own_gpa(&self, op: &Op) -> u64 {
        (op.cx.worker() as u64 * 64) % PAGE_SIZE
    }

    /// A reader of the VM-wide cache, as every vCPU reads Xen's `shared_info`: the
    /// first shared cache that is active and GPA-based (the harness's choice of cache,
    /// read without a lock), inside its vCPU's lifetime.
    pub(super) fn read_shared(&self, op: &mut Op) {
        let Some(c) = self.caches[..self.params.caches]
            .iter()
            .find(|c| c.active.peek() && !is_error_gpa(c.gpa.peek()))
        else {
            return;
        };
        c.lifetime.read_lock();
        self.read_own_gpa(op, c);
        c.lifetime.read_unlock();
    }

    /// `check` → `refresh` → `check` … with the reader's gpa (before 58f5ee5f) or the
    /// cache's own (mainline), on a GPA-based active cache, then the access.
    fn read_own_gpa(&self, op: &mut Op, c: &Gpc) {
        let own = self.own_gpa(op);
        let mut h = c.read_lock();
        self.check_read_locked(op, c);
        let (mut refreshes, mut total) = (0, 0);
        let mut since = None;
        loop {
            let cur = c.gpa.load(Acquire);
            if is_error_gpa(cur) || !c.active.load(Acquire) {
                // Not a GPA-based cache in use: not this reader's (HVA caches came later).
                op.note(c.read_unlock(h));
                return;
            }
            let gpa = if self.proto.gpa_arg { own } else { cur };
            if cur == gpa && self.check(c, LEN) {
                break;
            }
            if let Some(d) = since {
                op.cover(cov::CHECK_FAILED_AFTER_OWN_REFRESH);
                if self.disturbances(c) != d {
                    // Something else may have failed it: the run of refreshes restarts.
                    refreshes = 0;
                }
            }
            op.note(c.read_unlock(h));
            if refreshes == REFRESH_BOUND {
                op.flag(self.cache_violation(
                    c,
                    "L1",
                    format!(
                        "worker {} refreshed gpc{} {refreshes} times in a row for gpa {gpa:#x}, each \
                         refresh succeeding, and failed the check right after each with no \
                         invalidation of it, memslot update or (de)activation since (gpc->gpa is now {:#x})",
                        op.cx.worker(),
                        c.id,
                        c.gpa.peek()
                    ),
                ));
                return;
            }
            if total == MAX_REFRESHES {
                return;
            }
            total += 1;
            let before = self.disturbances(c);
            let r = if self.proto.gpa_arg {
                // kvm_gfn_to_pfn_cache_refresh(kvm, gpc, gpa, len): moves the cache.
                let locked = self.lock_refresh(op, c);
                let r = self.refresh_locked(op, c, gpa, HVA_ERR_BAD, LEN);
                self.unlock_refresh(c, locked);
                r
            } else {
                self.refresh(op, c, LEN)
            };
            if r.is_err() {
                return;
            }
            refreshes += 1;
            since = Some(before);
            // Between kvm_gpc_refresh() returning and read_lock_irqsave().
            crate::window!("reader.refreshed");
            h = c.read_lock();
            self.check_read_locked(op, c);
        }
        crate::window!("reader.checked");
        self.check_access(op, c, LEN);
        op.note(c.read_unlock(h));
    }
}
