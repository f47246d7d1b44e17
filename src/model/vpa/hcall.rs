//! H_REGISTER_VPA: `do_h_register_vpa()` as mainline has it and as it was before the
//! seed fix, the arguments callers draw (well-formed, malformed, X-Y-X bursts), and
//! the sequential reference V4 compares each return code with.

use super::area::{Reg, Token, Vcpu, DTL, IN_GUEST, LEN_READ, NOT_RUNNABLE, SLB, VPA};
use super::protocol::Rules;
use super::{cov, Op, Vpa};
use crate::model::mem::PAGE_SIZE;
use crate::model::Violation;
use std::sync::atomic::Ordering::SeqCst;

pub(super) const H_SUCCESS: i64 = 0;
pub(super) const H_PARAMETER: i64 = -4;
pub(super) const H_RESOURCE: i64 = -16;

/// `H_VPA_FUNC_SHIFT` (63 - 18) and the subfunctions.
const H_VPA_FUNC_SHIFT: u32 = 45;
pub(super) const REG_VPA: u64 = 1;
pub(super) const REG_DTL: u64 = 2;
pub(super) const REG_SLB: u64 = 3;
pub(super) const DEREG_VPA: u64 = 5;
pub(super) const DEREG_DTL: u64 = 6;
pub(super) const DEREG_SLB: u64 = 7;

/// `sizeof(struct lppaca)`, `sizeof(struct dtl_entry)`, `sizeof(struct reg_vpa)`.
pub(super) const LPPACA_SIZE: u64 = 640;
pub(super) const DTL_ENTRY: u64 = 48;
const REG_VPA_SIZE: u64 = 8;
/// Pre-fix minimum SLB shadow length.
const PREFIX_SLB_MIN: u64 = 16;

/// One H_REGISTER_VPA call: the target's vCPU id, `flags`, `addr`, and the length
/// word the guest stored at `addr + 4` before the call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Args {
    pub target: u64,
    pub flags: u64,
    pub addr: u64,
    pub len_word: u64,
}

impl Args {
    fn new(target: u64, subfunc: u64, addr: u64, len_word: u64) -> Self {
        Args {
            target,
            flags: subfunc << H_VPA_FUNC_SHIFT,
            addr,
            len_word,
        }
    }

    pub fn subfunc(&self) -> u64 {
        (self.flags >> H_VPA_FUNC_SHIFT) & 7
    }
}

/// The area a subfunction (de)registers.
pub(super) fn area_of(subfunc: u64) -> Option<usize> {
    match subfunc {
        REG_VPA | DEREG_VPA => Some(VPA),
        REG_DTL | DEREG_DTL => Some(DTL),
        REG_SLB | DEREG_SLB => Some(SLB),
        _ => None,
    }
}

/// The length `do_h_register_vpa` reads: a u16 for the VPA, a u32 otherwise.
fn length(subfunc: u64, word: u64) -> u64 {
    if subfunc == REG_VPA {
        word & 0xffff
    } else {
        word & 0xffff_ffff
    }
}

/// The sequential reference: the return code of `rules` for `a` on a VM of `nvcpus`
/// vCPUs and `pages` guest pages from gpa 0, with the target's registration `reg`
/// (the ghost of the last successful calls) at the linearization point.
pub(super) fn reference(rules: Rules, a: &Args, nvcpus: usize, pages: u64, reg: &Reg) -> i64 {
    if a.target >= nvcpus as u64 {
        return H_PARAMETER;
    }
    let sub = a.subfunc();
    let registered = |area: usize| reg.reg[area].is_some();
    let in_slot = a.addr / PAGE_SIZE < pages;
    let nb = PAGE_SIZE - a.addr % PAGE_SIZE;
    let len = length(sub, a.len_word);
    match rules {
        Rules::Mainline => {
            let bad_area = a.addr & 0x7f != 0 || a.addr == 0 || !in_slot || len > nb || len < REG_VPA_SIZE;
            if (REG_VPA..=REG_SLB).contains(&sub) && bad_area {
                return H_PARAMETER;
            }
            match sub {
                REG_VPA if len < LPPACA_SIZE => H_PARAMETER,
                REG_DTL if len < DTL_ENTRY => H_PARAMETER,
                REG_DTL | REG_SLB if !registered(VPA) => H_RESOURCE,
                DEREG_VPA if registered(DTL) || registered(SLB) => H_RESOURCE,
                REG_VPA | REG_DTL | REG_SLB | DEREG_VPA | DEREG_DTL | DEREG_SLB => H_SUCCESS,
                _ => H_PARAMETER,
            }
        }
        Rules::PreFix => match sub {
            0 | 4 => H_PARAMETER,
            REG_VPA..=REG_SLB => {
                if a.addr & 0x7f != 0 {
                    H_PARAMETER
                } else if sub >= REG_DTL && !registered(VPA) {
                    H_RESOURCE
                } else if !in_slot || len > nb {
                    H_PARAMETER
                } else {
                    let min = [LPPACA_SIZE, DTL_ENTRY, PREFIX_SLB_MIN][(sub - 1) as usize];
                    if len < min {
                        H_PARAMETER
                    } else {
                        H_SUCCESS
                    }
                }
            }
            DEREG_VPA if registered(DTL) || registered(SLB) => H_RESOURCE,
            _ => H_SUCCESS,
        },
    }
}

impl Vpa {
    /// A well-formed call: any area, a random target (often the caller itself), an
    /// aligned address in guest memory with a length that fits.
    fn pick_call(&self, op: &mut Op, caller: usize) -> Args {
        let target = self.pick_target(op, caller);
        let sub = [
            REG_VPA, REG_VPA, REG_VPA, REG_DTL, REG_DTL, REG_DTL, REG_SLB, REG_SLB, DEREG_VPA, DEREG_DTL,
            DEREG_DTL, DEREG_SLB,
        ][op.rng().index(12)];
        let len = self.pick_len(op, sub);
        let addr = self.pick_addr(op, len);
        Args::new(target, sub, addr, len)
    }

    /// One well-formed call, or half the time for DEREG_VPA the guest's CPU-offline
    /// sequence (DTL, SLB shadow, then VPA), which is what lets DEREG_VPA succeed.
    pub(super) fn pick_calls(&self, op: &mut Op, caller: usize) -> Vec<Args> {
        let a = self.pick_call(op, caller);
        if a.subfunc() == DEREG_VPA && op.rng().chance(0.5) {
            let first = |sub| Args::new(a.target, sub, 0, 0);
            return vec![first(DEREG_DTL), first(DEREG_SLB), a];
        }
        vec![a]
    }

    fn pick_target(&self, op: &mut Op, caller: usize) -> u64 {
        if op.rng().chance(0.3) {
            caller as u64
        } else {
            op.rng().below(self.vcpus.len() as u64)
        }
    }

    /// A length that passes every check of its area (DTL lengths are often not a
    /// multiple of 48, small so that the log wraps).
    fn pick_len(&self, op: &mut Op, sub: u64) -> u64 {
        match sub {
            REG_VPA => [LPPACA_SIZE, 1024][op.rng().index(2)],
            REG_DTL => {
                DTL_ENTRY * (1 + op.rng().below(4))
                    + if op.rng().chance(0.5) {
                        op.rng().below(DTL_ENTRY)
                    } else {
                        0
                    }
            }
            REG_SLB => [16, 64, 256][op.rng().index(3)],
            _ => 0,
        }
    }

    /// A 128-byte aligned gpa whose page holds `len` bytes from it.
    fn pick_addr(&self, op: &mut Op, len: u64) -> u64 {
        let page = op.rng().below(self.pages);
        let slots = (PAGE_SIZE - len.min(PAGE_SIZE)) / 128 + 1;
        page * PAGE_SIZE + op.rng().below(slots) * 128
    }

    /// One row of the spec's bad-input table, drawn uniformly.
    pub(super) fn pick_bad_call(&self, op: &mut Op, caller: usize) -> Args {
        let target = self.pick_target(op, caller);
        let good = |s: &Vpa, op: &mut Op, sub| {
            let len = s.pick_len(op, sub);
            (len, s.pick_addr(op, len))
        };
        match op.rng().below(9) {
            0 => {
                let (len, addr) = good(self, op, REG_VPA);
                Args::new(self.vcpus.len() as u64 + op.rng().below(4), REG_VPA, addr, len)
            }
            1 => Args::new(target, [0, 4][op.rng().index(2)], 0, 0),
            2 => {
                let (len, addr) = good(self, op, REG_VPA);
                Args::new(target, REG_VPA, addr + 8 * (1 + op.rng().below(15)), len)
            }
            3 => Args::new(target, REG_VPA, 0, LPPACA_SIZE),
            4 => {
                let addr = (self.pages + op.rng().below(4)) * PAGE_SIZE;
                Args::new(target, REG_SLB, addr, 16)
            }
            5 => {
                let sub = [REG_VPA, REG_DTL, REG_SLB][op.rng().index(3)];
                let addr = op.rng().below(self.pages) * PAGE_SIZE + PAGE_SIZE - 128 * (1 + op.rng().below(4));
                let len = if op.rng().chance(0.5) {
                    PAGE_SIZE - addr % PAGE_SIZE + 8
                } else {
                    op.rng().below(REG_VPA_SIZE)
                };
                Args::new(target, sub, addr, len)
            }
            6 => {
                let (sub, min) = if op.rng().chance(0.5) {
                    (REG_VPA, LPPACA_SIZE)
                } else {
                    (REG_DTL, DTL_ENTRY)
                };
                let len = REG_VPA_SIZE + op.rng().below(min - REG_VPA_SIZE);
                Args::new(target, sub, self.pick_addr(op, min), len)
            }
            7 => Args::new(
                target,
                REG_SLB,
                self.pick_addr(op, 16),
                REG_VPA_SIZE + op.rng().below(8),
            ),
            _ => {
                let (len, addr) = good(self, op, REG_DTL);
                Args::new(
                    target,
                    [REG_DTL, REG_SLB, DEREG_VPA][op.rng().index(3)],
                    addr,
                    len,
                )
            }
        }
    }

    /// The `aba-xyx` mix: register X, then Y, then X again (with another length) for
    /// one area of one target, so that a target pinning X in `kvmppc_update_vpa`'s
    /// unlocked window relocks to find X pending again.
    pub(super) fn aba_burst(&self, op: &mut Op, caller: usize) -> Vec<Args> {
        let target = self.pick_target(op, caller);
        let sub = [REG_VPA, REG_DTL, REG_SLB][op.rng().index(3)];
        let base = target * 3 + sub;
        let x = (base % self.pages) * PAGE_SIZE;
        let y = ((base + 1) % self.pages) * PAGE_SIZE + 128;
        let (l1, l2, l3) = (
            self.pick_len(op, sub),
            self.pick_len(op, sub),
            self.pick_len(op, sub),
        );
        vec![
            Args::new(target, sub, x, l1),
            Args::new(target, sub, y, l2),
            Args::new(target, sub, x, l3),
        ]
    }

    /// Runs one call from vCPU `caller` and checks its return code against the
    /// reference (V4) and its coverage.
    pub(super) fn hcall(&self, op: &mut Op, caller: usize, a: Args) {
        op.event(
            "h_register_vpa target {a} flags<<56|addr {b:x}",
            a.target,
            a.subfunc() << 56 | a.addr,
        );
        let (ret, snap) = match self.proto.rules {
            Rules::Mainline => self.h_register_vpa(op, a),
            Rules::PreFix => self.h_register_vpa_prefix(op, caller, a),
        };
        let want = reference(self.proto.rules, &a, self.vcpus.len(), self.pages, &snap);
        match ret {
            H_PARAMETER => op.cover(cov::BAD_H_PARAMETER),
            H_RESOURCE => op.cover(cov::BAD_H_RESOURCE),
            _ => {}
        }
        if ret == H_SUCCESS
            && a.subfunc() >= DEREG_VPA
            && area_of(a.subfunc()).is_some_and(|x| snap.reg[x].is_none())
        {
            op.cover(cov::DEREG_UNREGISTERED);
        }
        if ret != want {
            let state = self
                .vcpus
                .get(a.target as usize)
                .map_or(String::new(), |v| v.describe());
            op.flag(
                Violation::new(
                    "V4",
                    format!(
                        "H_REGISTER_VPA(target {}, subfunc {}, addr {:#x}, length word {}) returned {ret}, the sequential reference {want} (registration at the linearization point: {:?})",
                        a.target,
                        a.subfunc(),
                        a.addr,
                        a.len_word,
                        snap.reg
                    ),
                )
                .with_state(state),
            );
        }
    }

    /// Mainline `do_h_register_vpa()`. Returns the code and the ghost registration
    /// at the linearization point (the target's lock held).
    fn h_register_vpa(&self, op: &mut Op, a: Args) -> (i64, Reg) {
        // tvcpu = kvmppc_find_vcpu(kvm, vcpuid); if (!tvcpu) return H_PARAMETER;
        let Some(tv) = self.vcpus.get(a.target as usize) else {
            return (H_PARAMETER, Reg::default());
        };
        let snapshot = |tv: &Vcpu| *tv.ghost.lock();
        let sub = a.subfunc();
        let (addr, mut len) = if (REG_VPA..=REG_SLB).contains(&sub) {
            // Registering a new area: the address must be cache-line aligned.
            if a.addr & 0x7f != 0 || a.addr == 0 {
                return (H_PARAMETER, snapshot(tv));
            }
            // Convert the logical address and read the length at offset 4, then unpin.
            let Some((va, nb)) = self.pin(op, a.addr, (op.worker(), LEN_READ)) else {
                return (H_PARAMETER, snapshot(tv));
            };
            let len = length(sub, a.len_word);
            op.note(self.unpin(Some(va), (op.worker(), LEN_READ), false));
            // Between the unlocked length read and the target's lock.
            crate::window!("register.len_read");
            if len > nb || len < REG_VPA_SIZE {
                return (H_PARAMETER, snapshot(tv));
            }
            (a.addr, len)
        } else {
            (0, 0)
        };

        // spin_lock(&tvcpu->arch.vpa_update_lock);
        if self.proto.register_locked {
            tv.lock.lock(op.worker());
        }
        let mut ghost = tv.ghost.lock();
        let snap = *ghost;
        let registered = |area: usize| {
            let x = &tv.areas[area];
            if self.proto.pending_view && x.update_pending.load(SeqCst) {
                x.next_gpa.load(SeqCst) != 0
            } else {
                x.pinned.load().is_some()
            }
        };
        let mut unlocked_write = None;
        let (err, target) = match sub {
            REG_VPA if len < LPPACA_SIZE => (H_PARAMETER, None),
            REG_VPA => (H_SUCCESS, Some(VPA)),
            REG_DTL if len < DTL_ENTRY => (H_PARAMETER, None),
            REG_DTL => {
                len -= len % DTL_ENTRY;
                // Check that they have previously registered a VPA.
                if registered(VPA) {
                    (H_SUCCESS, Some(DTL))
                } else {
                    (H_RESOURCE, None)
                }
            }
            REG_SLB if registered(VPA) => (H_SUCCESS, Some(SLB)),
            REG_SLB => (H_RESOURCE, None),
            // Check they don't still have a DTL or SLB buf registered.
            DEREG_VPA if registered(DTL) || registered(SLB) => (H_RESOURCE, None),
            DEREG_VPA => (H_SUCCESS, Some(VPA)),
            DEREG_DTL => (H_SUCCESS, Some(DTL)),
            DEREG_SLB => (H_SUCCESS, Some(SLB)),
            _ => (H_PARAMETER, None),
        };
        if let Some(area) = target {
            let x = &tv.areas[area];
            let holder = tv.lock.holder();
            if holder != Some(op.worker()) {
                unlocked_write = Some((area, holder));
            }
            // vpap->next_gpa = vpa; vpap->len = len; vpap->update_pending = 1;
            x.next_gpa.store(addr, SeqCst);
            x.len.store(len, SeqCst);
            x.update_pending.store(true, SeqCst);
            ghost.reg[area] = (addr != 0).then_some((addr, len));
            ghost.seq[area] += 1;
            if tv.state.load(SeqCst) != NOT_RUNNABLE {
                op.cover(if addr != 0 {
                    cov::REGISTER_WHILE_RUNNABLE
                } else {
                    cov::DEREG_WHILE_RUNNABLE
                });
            }
        }
        drop(ghost);
        if self.proto.register_locked {
            tv.lock.unlock();
        }
        if let Some((area, holder)) = unlocked_write {
            op.flag(
                Violation::new(
                    "V5b",
                    format!(
                        "worker {} wrote vcpu{}'s pending {} fields while the lock holder was {holder:?}",
                        op.worker(),
                        tv.id,
                        super::area::AREA_NAMES[area]
                    ),
                )
                .with_state(tv.describe()),
            );
        }
        (err, snap)
    }

    /// `do_h_register_vpa()` before the seed fix: no lock, the applied view, and the
    /// caller writes the target's live pointers itself. When replacing an area it
    /// unpins `vcpu->arch.<area>` — the *caller's* own — and leaks the target's.
    fn h_register_vpa_prefix(&self, op: &mut Op, caller: usize, a: Args) -> (i64, Reg) {
        let Some(tv) = self.vcpus.get(a.target as usize) else {
            return (H_PARAMETER, Reg::default());
        };
        let me = &self.vcpus[caller];
        let sub = a.subfunc();
        // The applied view, read together with the ghost (V4's linearization point).
        let view = |area: usize| {
            let g = tv.ghost.lock();
            (tv.areas[area].pinned.load().is_some(), *g)
        };
        if sub == 0 || sub == 4 {
            return (H_PARAMETER, view(VPA).1);
        }
        if sub >= DEREG_VPA {
            let area = area_of(sub).expect("dereg subfunc");
            if sub == DEREG_VPA {
                let g = tv.ghost.lock();
                let busy = tv.areas[DTL].pinned.load().is_some() || tv.areas[SLB].pinned.load().is_some();
                let snap = *g;
                drop(g);
                if busy {
                    return (H_RESOURCE, snap);
                }
            }
            let (set, snap) = view(area);
            if set {
                let old = tv.areas[area].pinned.load();
                let dirty = tv.areas[area].dirty.load(SeqCst);
                op.note(self.unpin(old, (tv.id, area), dirty));
                // Between the unpin and the pointer store (the reclaimer may run here).
                crate::window!("prefix.unpinned");
                self.store_live(tv, area, None, 0, 0);
            }
            return (H_SUCCESS, snap);
        }
        if a.addr & 0x7f != 0 {
            return (H_PARAMETER, view(VPA).1);
        }
        let (has_vpa, snap) = view(VPA);
        if sub >= REG_DTL && !has_vpa {
            return (H_RESOURCE, snap);
        }
        let area = area_of(sub).expect("reg subfunc");
        let Some((va, nb)) = self.pin(op, a.addr, (tv.id, area)) else {
            return (H_PARAMETER, snap);
        };
        let mut len = length(sub, a.len_word);
        let min = [LPPACA_SIZE, DTL_ENTRY, PREFIX_SLB_MIN][area];
        if len > nb || len < min {
            op.note(self.unpin(Some(va), (tv.id, area), false));
            return (H_PARAMETER, snap);
        }
        if area == DTL {
            len -= len % DTL_ENTRY;
        }
        // if (tvcpu->arch.<area>) kvmppc_unpin_guest_page(kvm, vcpu->arch.<area>);
        if tv.areas[area].pinned.load().is_some() {
            let own = me.areas[area].pinned.load();
            let dirty = me.areas[area].dirty.load(SeqCst);
            let r = self.unpin(own, (caller, area), dirty).map_err(|v| {
                // The report shows the target's area and page too: the pin that leaks.
                let page = tv.areas[area]
                    .pinned
                    .peek()
                    .map_or(String::new(), |t| self.arena.describe(t.page));
                let state = format!("{}{}{page}", v.state, tv.describe());
                v.with_state(state)
            });
            op.note(r);
            crate::window!("prefix.unpinned");
        }
        self.store_live(tv, area, Some(va), a.addr, len);
        if area == VPA {
            self.init_vpa(op, tv.id, Some(va), Some(va.plus(len)));
        }
        (H_SUCCESS, snap)
    }

    /// The pre-fix caller's stores of the target's live pointers, the ghost
    /// registration with the first (the pointer the others read).
    fn store_live(&self, tv: &Vcpu, area: usize, va: Option<Token>, gpa: u64, len: u64) {
        let x = &tv.areas[area];
        {
            let mut g = tv.ghost.lock();
            x.pinned.store(va);
            g.reg[area] = va.map(|_| (gpa, len));
            g.seq[area] += 1;
        }
        if tv.state.load(SeqCst) == IN_GUEST {
            crate::window!("prefix.store_while_in_guest");
        }
        x.gpa.store(gpa, SeqCst);
        x.len.store(len, SeqCst);
        x.pinned_end.store(va.map(|t| t.plus(len)));
        x.dirty.store(false, SeqCst);
        if area == DTL {
            // Model extension (buggy-dtl): the caller also resets the log pointer.
            tv.dtl_ptr.store(va);
            tv.dtl_index.store(0, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vpa::area::page_of;

    fn reg(vpa: bool, dtl: bool) -> Reg {
        let mut r = Reg::default();
        r.reg[VPA] = vpa.then_some((0x1000, 640));
        r.reg[DTL] = dtl.then_some((0x2000, 96));
        r
    }

    #[test]
    fn the_bad_input_table_row_by_row() {
        let m = Rules::Mainline;
        let p = Rules::PreFix;
        let none = reg(false, false);
        let call = |t, sub, addr, len| Args::new(t, sub, addr, len);
        for rules in [m, p] {
            assert_eq!(
                reference(rules, &call(9, REG_VPA, 0x1000, 640), 2, 4, &none),
                H_PARAMETER
            );
            assert_eq!(reference(rules, &call(0, 0, 0, 0), 2, 4, &none), H_PARAMETER);
            assert_eq!(reference(rules, &call(0, 4, 0, 0), 2, 4, &none), H_PARAMETER);
            assert_eq!(
                reference(rules, &call(0, REG_VPA, 0x1008, 640), 2, 4, &none),
                H_PARAMETER
            );
            assert_eq!(
                reference(rules, &call(0, REG_VPA, 0x5000, 640), 2, 4, &none),
                H_PARAMETER
            );
            assert_eq!(
                reference(rules, &call(0, REG_VPA, 0x1f80, 640), 2, 4, &none),
                H_PARAMETER
            );
            assert_eq!(
                reference(rules, &call(0, REG_VPA, 0x1000, 600), 2, 4, &none),
                H_PARAMETER
            );
            assert_eq!(
                reference(rules, &call(0, DEREG_VPA, 0, 0), 2, 4, &reg(true, true)),
                H_RESOURCE
            );
            assert_eq!(
                reference(rules, &call(0, DEREG_DTL, 0, 0), 2, 4, &none),
                H_SUCCESS
            );
            assert_eq!(
                reference(rules, &call(0, REG_SLB, 0x1000, 64), 2, 4, &none),
                H_RESOURCE
            );
        }
        assert_eq!(reference(m, &call(0, REG_VPA, 0, 640), 2, 4, &none), H_PARAMETER);
        assert_eq!(reference(p, &call(0, REG_VPA, 0, 640), 2, 4, &none), H_SUCCESS);
        assert_eq!(
            reference(m, &call(0, REG_SLB, 0x1000, 8), 2, 4, &reg(true, false)),
            H_SUCCESS
        );
        assert_eq!(
            reference(p, &call(0, REG_SLB, 0x1000, 8), 2, 4, &reg(true, false)),
            H_PARAMETER
        );
        assert_eq!(
            reference(m, &call(0, REG_DTL, 0x1000, 40), 2, 4, &none),
            H_PARAMETER,
            "short DTL before H_RESOURCE"
        );
        assert_eq!(
            reference(p, &call(0, REG_DTL, 0x1000, 40), 2, 4, &none),
            H_RESOURCE,
            "pre-fix: H_RESOURCE first"
        );
        assert_eq!(
            reference(m, &call(0, REG_VPA, 0x1000, 0x1_0280), 2, 4, &none),
            H_SUCCESS,
            "the VPA length is a u16"
        );
    }

    #[test]
    fn page_of_splits_a_gpa() {
        assert_eq!(page_of(0x2080), (2, PAGE_SIZE - 0x80));
    }
}
