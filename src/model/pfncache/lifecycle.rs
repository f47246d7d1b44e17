//! `kvm_gpc_activate()`, `kvm_gpc_activate_hva()`, `kvm_gpc_deactivate()` and the
//! vCPU re-creation that gives a cache a fresh `kvm_gpc_init()`.

use super::cache::{Field, Gpc};
use super::protocol::Lifecycle;
use super::refresh::valid_len;
use super::{Errno, Op, PfnCache};
use crate::model::mem::PFN_ERR;
use crate::model::notifier::{is_error_gpa, is_error_hva, HVA_ERR_BAD, INVALID_GPA};
use std::sync::atomic::Ordering::{Acquire, Release};

impl PfnCache {
    /// `kvm_gpc_activate(gpc, gpa, len)`. Since fc62a4e8 an INVALID_GPA is refused
    /// (with a WARN: a caller bug the harness makes on purpose, like syzbot).
    pub(super) fn activate(&self, op: &mut Op, c: &Gpc, gpa: u64, len: u64) -> Result<(), Errno> {
        if self.proto.reject_invalid_gpa && is_error_gpa(gpa) {
            return Err(Errno::Inval);
        }
        self.activate_common(op, c, gpa, HVA_ERR_BAD, len)
    }

    /// `kvm_gpc_activate_hva(gpc, uhva, len)`: `access_ok()` refuses kernel addresses.
    pub(super) fn activate_hva(&self, op: &mut Op, c: &Gpc, uhva: u64, len: u64) -> Result<(), Errno> {
        if is_error_hva(uhva) {
            return Err(Errno::Inval);
        }
        self.activate_common(op, c, INVALID_GPA, uhva, len)
    }

    /// `__kvm_gpc_activate()`: also how an active cache moves to a new address.
    fn activate_common(&self, op: &mut Op, c: &Gpc, gpa: u64, uhva: u64, len: u64) -> Result<(), Errno> {
        if self.proto.len_check_early && !valid_len(gpa, uhva, len) {
            return Err(Errno::Inval);
        }
        c.record(op, "gpc{a}: activate at gpa {b:x}", gpa, uhva);
        c.lifecycle().begin();
        let r = self.activate_bracketed(op, c, gpa, uhva, len);
        c.lifecycle().end();
        r
    }

    fn activate_bracketed(&self, op: &mut Op, c: &Gpc, gpa: u64, uhva: u64, len: u64) -> Result<(), Errno> {
        match self.proto.lifecycle {
            Lifecycle::Mainline => {
                let locked = self.lock_refresh(op, c);
                let r = self
                    .enable(op, c)
                    .and_then(|()| self.refresh_locked(op, c, gpa, uhva, len));
                self.unlock_refresh(c, locked);
                r
            }
            Lifecycle::OutsideRefreshLock => {
                self.enable(op, c)?;
                let locked = self.lock_refresh(op, c);
                let r = self.refresh_locked(op, c, gpa, uhva, len);
                self.unlock_refresh(c, locked);
                r
            }
            Lifecycle::Unenforced => {
                self.reset_unlocked(op, c);
                let locked = self.lock_refresh(op, c);
                let r = self.refresh_locked(op, c, gpa, uhva, len);
                self.unlock_refresh(c, locked);
                r
            }
        }
    }

    /// The `!gpc->active` block of `__kvm_gpc_activate()`: refuse a valid inactive
    /// cache (5762cb10), list it, then activate it — "a concurrent refresh must not
    /// establish a mapping until the cache is reachable by mmu_notifier events".
    fn enable(&self, op: &mut Op, c: &Gpc) -> Result<(), Errno> {
        if c.active.load(Acquire) {
            return Ok(());
        }
        if c.valid.load(Acquire) {
            // KVM_BUG_ON(gpc->valid): the kernel itself noticing that I1 failed.
            op.flag(self.cache_violation(
                c,
                "I1",
                format!(
                    "KVM_BUG_ON: activate found gpc{} valid but inactive: {}",
                    c.id,
                    c.how_valid_inactive()
                ),
            ));
            return Err(Errno::Io);
        }
        if self.proto.reinit_lock_on_activate {
            c.reinit_lock(op);
        }
        self.list(c, true);
        crate::window!("activate.listed_not_active");
        let w = c.write_lock();
        c.set(op, Field::Active, 1);
        c.write_unlock(w);
        crate::window!("activate.active_not_refreshed");
        Ok(())
    }

    /// Before ecbcf030: plain stores with no lock, `active` before `list_add`.
    fn reset_unlocked(&self, op: &mut Op, c: &Gpc) {
        if c.active.load(Acquire) {
            return;
        }
        c.set(op, Field::Khva, 0);
        crate::window!("activate.unlocked_reset");
        c.set(op, Field::Pfn, PFN_ERR);
        crate::window!("activate.unlocked_reset");
        c.set(op, Field::Uhva, HVA_ERR_BAD);
        crate::window!("activate.unlocked_reset");
        c.set(op, Field::Valid, 0);
        crate::window!("activate.unlocked_reset");
        c.set(op, Field::Active, 1);
        crate::window!("activate.active_not_listed");
        self.list(c, true);
    }

    /// `list_add`/`list_del` under `kvm->gpc_lock`.
    fn list(&self, c: &Gpc, on: bool) {
        self.gpc_lock.lock();
        c.on_list.store(on, Release);
        self.gpc_lock.unlock();
    }

    /// `kvm_gpc_deactivate()`.
    pub(super) fn deactivate(&self, op: &mut Op, c: &Gpc) {
        c.lifecycle().begin();
        if self.proto.lifecycle == Lifecycle::Unenforced {
            self.deactivate_unenforced(op, c);
        } else {
            self.deactivate_mainline(op, c);
        }
        c.lifecycle().end();
    }

    fn deactivate_mainline(&self, op: &mut Op, c: &Gpc) {
        let locked = self.proto.lifecycle == Lifecycle::Mainline && self.lock_refresh(op, c);
        if c.active.load(Acquire) {
            c.record(op, "gpc{a}: deactivate (pfn {b})", c.pfn.peek(), 0);
            // "Deactivate the cache before removing it from the list, KVM must stall
            // mmu_notifier events until all users go away".
            let w = c.write_lock();
            c.set(op, Field::Active, 0);
            let old_dirty = self.dirty_to_release(c);
            let (old_pfn, old_khva) = c.take_mapping(op);
            c.write_unlock(w);
            crate::window!("deactivate.before_list_del");
            self.list(c, false);
            crate::window!("deactivate.before_unmap");
            self.release(op, c, old_pfn, old_khva, "deactivate");
            if old_pfn != PFN_ERR {
                self.release_dirty(op, c, old_dirty);
            }
        }
        self.unlock_refresh(c, locked);
    }

    /// Before ecbcf030: unlist, unmap under `refresh_lock`
    /// (`kvm_gfn_to_pfn_cache_unmap()`), and only then clear `active`, unlocked.
    fn deactivate_unenforced(&self, op: &mut Op, c: &Gpc) {
        if !c.active.load(Acquire) {
            return;
        }
        c.record(op, "gpc{a}: deactivate (pfn {b})", c.pfn.peek(), 0);
        self.list(c, false);
        crate::window!("deactivate.unlisted_still_active");
        let locked = self.lock_refresh(op, c);
        let w = c.write_lock();
        let (old_pfn, old_khva) = c.take_mapping(op);
        c.write_unlock(w);
        self.release(op, c, old_pfn, old_khva, "deactivate");
        self.unlock_refresh(c, locked);
        crate::window!("deactivate.unmapped_still_active");
        c.set(op, Field::Active, 0);
    }

    /// Destroys the vCPU owning the cache and creates a new one in its place:
    /// `kvm_gpc_deactivate()` at teardown, `kvm_gpc_init()` on the new, zeroed cache.
    /// This is where a cache that was never activated comes from.
    pub(super) fn recreate(&self, op: &mut Op, c: &Gpc) {
        c.lifetime.write_lock();
        self.deactivate(op, c);
        c.init(op);
        c.lifetime.write_unlock();
    }
}
