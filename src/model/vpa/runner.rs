//! Running vCPUs (POWER8 path): the vCPU thread making itself runnable
//! (`kvmppc_run_vcpu`: `kvmppc_update_vpas` first), the vcore runner
//! (`kvmppc_run_core`: `prepare_threads`, `kvmppc_start_thread` →
//! `kvmppc_update_vpa_dispatch` / `__kvmppc_create_dtl_entry`, the yield count at
//! guest entry and exit in book3s_hv_rmhandlers.S, the SLB shadow restore), and
//! H_CONFER's `kvmppc_get_yield_count`.

use super::area::{Token, Vcpu, DTL, IN_GUEST, NOT_RUNNABLE, RUNNABLE, SLB, VPA};
use super::hcall::DTL_ENTRY;
use super::update::{LP_DTL_IDX, LP_ENQUEUE_TB, LP_YIELD_COUNT};
use super::{cov, Op, Vpa};
use crate::sync::Backoff;
use std::sync::atomic::Ordering::SeqCst;

impl Vpa {
    /// The vCPU thread's turn: a vCPU out of the guest applies its pending updates and
    /// joins the vcore's runnable list; a runnable one leaves it (an exit to the host).
    pub(super) fn run(&self, op: &mut Op, v: &Vcpu) {
        if v.state.load(SeqCst) == NOT_RUNNABLE {
            if self.proto.apply_before_runnable {
                self.update_vpas(op, v);
            }
            self.vcore.lock();
            v.state.store(RUNNABLE, SeqCst);
            self.vcore.unlock();
            if !self.proto.apply_before_runnable {
                self.update_vpas(op, v);
            }
        } else {
            self.leave(v);
        }
    }

    /// The vCPU leaves the runnable list once no runner has it in the guest.
    pub(super) fn leave(&self, v: &Vcpu) {
        let mut b = Backoff::new("vcpu.wait_guest_exit");
        loop {
            self.vcore.lock();
            if v.state.load(SeqCst) != IN_GUEST {
                v.state.store(NOT_RUNNABLE, SeqCst);
                self.vcore.unlock();
                return;
            }
            self.vcore.unlock();
            b.spin();
        }
    }

    /// A vcore runner: `prepare_threads` under the vcore lock, then for each vCPU it
    /// took into the guest the dispatch-time VPA/DTL writes, guest entry, the SLB
    /// shadow restore and guest exit, then back on the runnable list.
    pub(super) fn dispatch(&self, op: &mut Op) {
        let mut picked = Vec::new();
        self.vcore.lock();
        for v in &self.vcpus {
            if v.state.load(SeqCst) != RUNNABLE {
                continue;
            }
            // prepare_threads: a vCPU with an update pending is woken to apply it itself.
            let a = &v.areas;
            if a[VPA].update_pending.load(SeqCst)
                || a[SLB].update_pending.load(SeqCst)
                || a[DTL].update_pending.load(SeqCst)
            {
                v.state.store(NOT_RUNNABLE, SeqCst);
                op.cover(cov::KICK_FOR_PENDING);
                continue;
            }
            v.state.store(IN_GUEST, SeqCst);
            picked.push(v);
        }
        self.vcore.unlock();
        for v in &picked {
            self.update_vpa_dispatch(op, v);
            self.guest_entry_exit(op, v, "guest entry");
            self.slb_restore(op, v);
            self.guest_entry_exit(op, v, "guest exit");
        }
        if !picked.is_empty() {
            self.vcore.lock();
            for v in &picked {
                v.state.store(RUNNABLE, SeqCst);
            }
            self.vcore.unlock();
        }
    }

    /// The area's pinned range as one accessor loads it.
    fn range(&self, v: &Vcpu, area: usize) -> (Option<Token>, Option<Token>) {
        (v.areas[area].pinned.load(), v.areas[area].pinned_end.load())
    }

    fn note_pending(&self, op: &mut Op, v: &Vcpu, area: usize) {
        if v.areas[area].update_pending.load(SeqCst) {
            op.cover(cov::DISPATCH_WITH_PENDING);
        }
    }

    /// `kvmppc_update_vpa_dispatch()`: `enqueue_dispatch_tb`, then
    /// `__kvmppc_create_dtl_entry()`, then `vpa.dirty = true`.
    fn update_vpa_dispatch(&self, op: &mut Op, v: &Vcpu) {
        let (vpa, vpa_end) = self.range(v, VPA);
        let Some(lp) = vpa else { return };
        crate::window!("dispatch.loaded_vpa");
        self.note_pending(op, v, VPA);
        op.note(self.touch(
            v.id,
            VPA,
            Some(lp.plus(LP_ENQUEUE_TB)),
            8,
            (vpa, vpa_end),
            "enqueue_dispatch_tb",
        ));
        let mut written = vec![lp.page];
        if self.proto.dtl_writer {
            if let Some(dt) = self.create_dtl_entry(op, v, lp, vpa_end) {
                written.push(dt);
            }
        }
        let t = self.dirty.tick();
        if self.proto.dtl_writer && self.proto.dtl_dirty && written.len() > 1 {
            v.areas[DTL].dirty.store(true, SeqCst);
        }
        v.areas[VPA].dirty.store(true, SeqCst);
        self.dirty.written(&written, t);
    }

    /// `__kvmppc_create_dtl_entry()`: one 48-byte entry at `dtl_ptr`, advance and wrap
    /// at `dtl.pinned_end`, then `vpa->dtl_idx = ++dtl_index`. Returns the page written.
    fn create_dtl_entry(&self, op: &mut Op, v: &Vcpu, lp: Token, vpa_end: Option<Token>) -> Option<u64> {
        let dt = v.dtl_ptr.load()?;
        crate::window!("dispatch.loaded_dtl_ptr");
        let (start, end) = self.range(v, DTL);
        self.note_pending(op, v, DTL);
        op.note(self.touch(v.id, DTL, Some(dt), DTL_ENTRY, (start, end), "dtl entry"));
        let mut next = dt.plus(DTL_ENTRY);
        let wrap = match end {
            Some(e) if self.proto.wrap_on_end => next == e,
            Some(e) => next.page == e.page && next.off > e.off,
            None => false,
        };
        if wrap {
            if let Some(s) = start {
                next = s;
                op.cover(cov::DTL_WRAP);
            }
        }
        v.dtl_ptr.store(Some(next));
        // smp_wmb(): the entry before vpa->dtl_idx.
        crate::window!("dispatch.dtl_before_idx");
        let idx = v.dtl_index.load(SeqCst) + 1;
        v.dtl_index.store(idx, SeqCst);
        op.note(self.touch(
            v.id,
            VPA,
            Some(lp.plus(LP_DTL_IDX)),
            8,
            (Some(lp), vpa_end),
            "vpa->dtl_idx",
        ));
        Some(dt.page)
    }

    /// Guest entry or exit (book3s_hv_rmhandlers.S): `yield_count++` through the
    /// VPA pointer loaded from the vCPU, and `vpa.dirty = 1`.
    fn guest_entry_exit(&self, op: &mut Op, v: &Vcpu, what: &'static str) {
        let (vpa, end) = self.range(v, VPA);
        let Some(lp) = vpa else { return };
        crate::window!("entry.loaded_vpa");
        self.note_pending(op, v, VPA);
        op.note(self.touch(v.id, VPA, Some(lp.plus(LP_YIELD_COUNT)), 4, (vpa, end), what));
        let t = self.dirty.tick();
        v.areas[VPA].dirty.store(true, SeqCst);
        self.dirty.written(&[lp.page], t);
    }

    /// The SLB shadow restore at guest entry: reads the buffer's header.
    fn slb_restore(&self, op: &mut Op, v: &Vcpu) {
        let (slb, end) = self.range(v, SLB);
        let Some(s) = slb else { return };
        crate::window!("entry.loaded_slb_shadow");
        self.note_pending(op, v, SLB);
        op.note(self.touch(v.id, SLB, Some(s), 8, (slb, end), "slb shadow restore"));
    }

    /// H_CONFER's `kvmppc_get_yield_count(target)`: the target's `yield_count`
    /// through its VPA, under its `vpa_update_lock`.
    pub(super) fn confer(&self, op: &mut Op, target: &Vcpu) {
        target.lock.lock(op.worker());
        let (vpa, end) = self.range(target, VPA);
        if let Some(lp) = vpa {
            op.note(self.touch(
                target.id,
                VPA,
                Some(lp.plus(LP_YIELD_COUNT)),
                4,
                (vpa, end),
                "H_CONFER yield_count",
            ));
        }
        target.lock.unlock();
    }
}
