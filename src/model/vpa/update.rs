//! The target vCPU applying its pending registrations: `kvmppc_update_vpas()` and
//! `kvmppc_update_vpa()` (book3s_hv.c), run by the vCPU's own thread before it
//! becomes runnable, and `init_vpa()`.

use super::area::{page_of, Token, Vcpu, AREA_NAMES, DTL, NOT_RUNNABLE, SLB, VPA};
use super::protocol::{Recheck, Rules};
use super::{cov, Op, Vpa};
use crate::model::Violation;
use crate::sync::Backoff;
use std::sync::atomic::Ordering::SeqCst;

/// Offsets inside the 640-byte lppaca that the model writes (shared-proc byte,
/// `yield_count`, `enqueue_dispatch_tb`, `dtl_idx`), each a field of the structure.
pub(super) const LP_SHARED_PROC: u64 = 0x24;
pub(super) const LP_YIELD_COUNT: u64 = 0x68;
pub(super) const LP_ENQUEUE_TB: u64 = 0xd8;
pub(super) const LP_DTL_IDX: u64 = 0x1a8;

/// The applied part of an area before `kvmppc_update_vpa` replaced it.
struct Old {
    pinned: Option<Token>,
    dirty: bool,
}

impl Vpa {
    /// `kvmppc_update_vpas(vcpu)`, on the vCPU's own thread.
    pub(super) fn update_vpas(&self, op: &mut Op, v: &Vcpu) {
        let pending = |a: usize| v.areas[a].update_pending.load(SeqCst);
        if !(pending(VPA) || pending(SLB) || pending(DTL)) {
            return;
        }
        v.lock.lock(op.worker());
        if v.areas[VPA].update_pending.load(SeqCst) {
            let old = self.update_vpa(op, v, VPA);
            self.unpin_old(op, v, VPA, old);
            let va = v.areas[VPA].pinned.load();
            if va.is_some() || self.proto.uncond_init_vpa {
                self.init_vpa(op, v.id, va, v.areas[VPA].pinned_end.load());
            }
        }
        if v.areas[DTL].update_pending.load(SeqCst) {
            let old = self.update_vpa(op, v, DTL);
            self.unpin_old(op, v, DTL, old);
            if self.proto.reset_dtl_ptr {
                self.applied_write(op, v, "dtl_ptr");
                v.dtl_ptr.store(v.areas[DTL].pinned.load());
                v.dtl_index.store(0, SeqCst);
            }
        }
        if v.areas[SLB].update_pending.load(SeqCst) {
            let old = self.update_vpa(op, v, SLB);
            self.unpin_old(op, v, SLB, old);
        }
        v.lock.unlock();
    }

    fn unpin_old(&self, op: &mut Op, v: &Vcpu, area: usize, old: Old) {
        if self.proto.unpin_old && old.pinned.is_some() {
            let dirty = old.dirty && self.proto.unpin_with_dirty;
            op.note(self.unpin(old.pinned, (v.id, area), dirty));
        }
    }

    /// `kvmppc_update_vpa(vcpu, vpap)`, with the lock held; returns the old applied
    /// area for the caller to unpin.
    fn update_vpa(&self, op: &mut Op, v: &Vcpu, area: usize) -> Old {
        let x = &v.areas[area];
        let owner = (v.id, area);
        // We can't pin under the lock (get_user_pages): drop it, pin, retake it
        // and check that no new area was registered in the meantime.
        let mut retry = Backoff::new("apply.retry");
        let (gpa, mut va) = loop {
            let gpa = x.next_gpa.load(SeqCst);
            let seq = v.ghost.lock().seq[area];
            v.lock.unlock();
            crate::window!("apply.unlocked");
            let pinned = if gpa != 0 { self.pin(op, gpa, owner) } else { None };
            crate::window!("apply.pinned");
            let same = match self.proto.recheck {
                Recheck::Locked => {
                    v.lock.lock(op.worker());
                    gpa == x.next_gpa.load(SeqCst)
                }
                Recheck::None => {
                    v.lock.lock(op.worker());
                    true
                }
                Recheck::Unlocked => {
                    let same = gpa == x.next_gpa.load(SeqCst);
                    crate::window!("apply.recheck_unlocked");
                    v.lock.lock(op.worker());
                    same
                }
            };
            if same {
                if v.ghost.lock().seq[area] >= seq + 2 && gpa == x.next_gpa.peek() {
                    op.cover(cov::APPLY_ABA);
                }
                break (gpa, pinned);
            }
            // sigh... unpin that one and try again
            if let Some((t, _)) = pinned {
                op.note(self.unpin(Some(t), owner, false));
            }
            op.cover(cov::APPLY_RETRY);
            retry.yield_now();
        };
        self.applied_write(op, v, "update_pending");
        x.update_pending.store(false, SeqCst);
        let len = x.len.load(SeqCst);
        if let Some((t, nb)) = va {
            if nb < len {
                // Now too short: userspace changed the mappings; unregister.
                op.note(self.unpin(Some(t), owner, false));
                va = None;
            }
        }
        let va = va.map(|(t, _)| t);
        let old = Old {
            pinned: x.pinned.load(),
            dirty: x.dirty.load(SeqCst),
        };
        self.applied_write(op, v, AREA_NAMES[area]);
        x.gpa.store(gpa, SeqCst);
        x.pinned.store(va);
        x.dirty.store(false, SeqCst);
        if let Some(t) = va {
            x.pinned_end.store(Some(t.plus(len)));
        }
        self.check_applied(op, v, area, gpa, va, len);
        old
    }

    /// V1b at apply time: nothing pending, so the applied area is what the last
    /// successful call registered (gpa, page and length).
    fn check_applied(&self, op: &mut Op, v: &Vcpu, area: usize, gpa: u64, va: Option<Token>, len: u64) {
        if v.areas[area].update_pending.peek() {
            return;
        }
        let reg = v.ghost.lock().reg[area];
        let ok = match (reg, va) {
            (None, None) => gpa == 0,
            (Some((g, l)), Some(t)) => g == gpa && page_of(g).0 == t.page && g % 4096 == t.off && l == len,
            _ => false,
        };
        if !ok {
            op.flag(
                Violation::new(
                    "V1b",
                    format!(
                        "vcpu{} applied {} gpa {gpa:#x} len {len} pinned {} with nothing pending, but the last successful call registered {reg:?}",
                        v.id,
                        AREA_NAMES[area],
                        super::area::show(va)
                    ),
                )
                .with_state(v.describe()),
            );
        }
    }

    /// V5a: under the mainline protocol the applied fields are written only by the
    /// owning vCPU's thread, holding its lock, while it is not runnable.
    fn applied_write(&self, op: &mut Op, v: &Vcpu, field: &str) {
        if self.proto.rules != Rules::Mainline {
            return;
        }
        let (me, holder, state) = (op.worker(), v.lock.holder(), v.state.load(SeqCst));
        if me != v.id || holder != Some(me) || state != NOT_RUNNABLE {
            op.flag(
                Violation::new(
                    "V5a",
                    format!(
                        "worker {me} writes vcpu{}'s applied {field} (lock holder {holder:?}, vcpu state {state})",
                        v.id
                    ),
                )
                .with_state(v.describe()),
            );
        }
    }

    /// `init_vpa(vcpu, vpa)`: sets the shared-processor byte and `yield_count = 1`.
    pub(super) fn init_vpa(&self, op: &mut Op, v: usize, va: Option<Token>, end: Option<Token>) {
        let range = (va, end);
        let at = |off| va.map(|t| t.plus(off));
        op.note(self.touch(v, VPA, at(LP_SHARED_PROC), 1, range, "init_vpa"));
        op.note(self.touch(v, VPA, at(LP_YIELD_COUNT), 4, range, "init_vpa"));
    }
}
