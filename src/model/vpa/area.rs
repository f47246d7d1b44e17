//! The per-vCPU state of book3s_hv.c: the three `struct kvmppc_vpa` areas, the
//! `vpa_update_lock`, `dtl_ptr`/`dtl_index`, and the guest pages behind them.
//!
//! A pinned area address is a [`Token`] (page, byte offset, the page's generation at
//! pin time) packed into one atomic word, so a racy load of `pinned_addr` is one load
//! as in C. Every access through an area goes through [`Vpa::touch`], which checks V1
//! (the page is live, pinned, of the generation it was pinned at, and the access lies
//! in the range the accessor took with the token) and the consequence invariant C1:
//! the page holds a pin *for that area* (a pin ledger per page, kept for the purpose).

use super::{Op, Vpa};
use crate::model::mem::PAGE_SIZE;
use crate::model::Violation;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, RawSpinLock, SpinLock};
use std::sync::atomic::AtomicU64 as GhostU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// The three areas of `struct kvm_vcpu_arch`, in the order `kvmppc_update_vpas` applies them.
pub(super) const VPA: usize = 0;
pub(super) const DTL: usize = 1;
pub(super) const SLB: usize = 2;
/// Owner tag of the hcall's short pin while it reads the length word.
pub(super) const LEN_READ: usize = 3;
pub(super) const AREA_NAMES: [&str; 4] = ["vpa", "dtl", "slb_shadow", "hcall length read"];

/// vCPU states: `KVMPPC_VCPU_NOTREADY/BUSY_IN_HOST` (not runnable), on the vcore's
/// runnable list, and dispatched by a runner (in the guest).
pub(super) const NOT_RUNNABLE: u32 = 0;
pub(super) const RUNNABLE: u32 = 1;
pub(super) const IN_GUEST: u32 = 2;

const OFF_BITS: u32 = 13;
const PAGE_BITS: u32 = 11;
/// The most guest pages a token can name.
pub(super) const MAX_PAGES: u64 = 1 << PAGE_BITS;

/// A kernel address inside a pinned guest page: `pinned_addr`, `pinned_end`, `dtl_ptr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub page: u64,
    /// Byte offset in the page; `pinned_end` may be `PAGE_SIZE` itself.
    pub off: u64,
    pub gen: u64,
}

impl Token {
    /// Generations start at 1, so 0 is NULL.
    fn pack(t: Option<Token>) -> u64 {
        t.map_or(0, |t| {
            t.gen << (OFF_BITS + PAGE_BITS) | t.page << OFF_BITS | t.off
        })
    }

    fn unpack(v: u64) -> Option<Token> {
        (v != 0).then_some(Token {
            off: v & ((1 << OFF_BITS) - 1),
            page: (v >> OFF_BITS) & ((1 << PAGE_BITS) - 1),
            gen: v >> (OFF_BITS + PAGE_BITS),
        })
    }

    /// `va + n`.
    pub fn plus(self, n: u64) -> Token {
        Token {
            off: self.off + n,
            ..self
        }
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pfn{}+{:#x}(g{})", self.page, self.off, self.gen)
    }
}

pub(super) fn show(t: Option<Token>) -> String {
    t.map_or_else(|| "NULL".to_string(), |t| t.to_string())
}

/// An `Option<Token>` field read and written with one atomic access each.
#[derive(Debug, Default)]
pub(super) struct TokenCell(AtomicU64);

impl TokenCell {
    #[track_caller]
    pub fn load(&self) -> Option<Token> {
        Token::unpack(self.0.load(SeqCst))
    }
    #[track_caller]
    pub fn store(&self, t: Option<Token>) {
        self.0.store(Token::pack(t), SeqCst)
    }
    pub fn peek(&self) -> Option<Token> {
        Token::unpack(self.0.peek())
    }
}

/// `struct kvmppc_vpa`: the pending part (`next_gpa`, `len`, `update_pending`) the
/// hcall writes under the lock, and the applied part (`gpa`, `pinned_addr`,
/// `pinned_end`, `dirty`) only the owning vCPU changes.
#[derive(Debug, Default)]
pub(super) struct Area {
    pub next_gpa: AtomicU64,
    pub len: AtomicU64,
    pub update_pending: AtomicBool,
    pub gpa: AtomicU64,
    pub pinned: TokenCell,
    pub pinned_end: TokenCell,
    pub dirty: AtomicBool,
}

/// `vcpu->arch.vpa_update_lock`, recording its holder (worker + 1) as ghost state so
/// V5a/V5b can say who wrote a field without the lock.
#[derive(Debug, Default)]
pub(super) struct VpaLock {
    raw: RawSpinLock,
    holder: GhostU64,
}

impl VpaLock {
    #[track_caller]
    pub fn lock(&self, worker: usize) {
        self.raw.lock();
        self.holder.store(worker as u64 + 1, SeqCst);
    }
    #[track_caller]
    pub fn unlock(&self) {
        self.holder.store(0, SeqCst);
        self.raw.unlock();
    }
    /// The worker holding it, if any.
    pub fn holder(&self) -> Option<usize> {
        match self.holder.load(SeqCst) {
            0 => None,
            h => Some(h as usize - 1),
        }
    }
}

/// Ghost registration state of one vCPU: what the last successful (de)registration
/// of each area asked for (`reg`) and how many there were (`reg_seq`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Reg {
    pub reg: [Option<(u64, u64)>; 3],
    pub seq: [u64; 3],
}

#[derive(Debug)]
pub(super) struct Vcpu {
    pub id: usize,
    pub lock: VpaLock,
    pub state: AtomicU32,
    pub areas: [Area; 3],
    pub dtl_ptr: TokenCell,
    pub dtl_index: AtomicU64,
    /// Ghost: taken together with the protocol's read or write of the registration
    /// so the sequential reference (V4) sees the same instant.
    pub ghost: SpinLock<Reg>,
}

impl Vcpu {
    pub fn new(id: usize) -> Self {
        Vcpu {
            id,
            lock: VpaLock::default(),
            state: AtomicU32::new(NOT_RUNNABLE),
            areas: Default::default(),
            dtl_ptr: TokenCell::default(),
            dtl_index: AtomicU64::new(0),
            ghost: SpinLock::new(Reg::default()),
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "vcpu{}: state {} lock holder {:?} dtl_ptr {} dtl_index {}\n",
            self.id,
            ["not-runnable", "runnable", "in-guest"][self.state.peek() as usize % 3],
            self.lock.holder(),
            show(self.dtl_ptr.peek()),
            self.dtl_index.peek()
        );
        let reg = self.ghost.lock();
        for (i, a) in self.areas.iter().enumerate() {
            s.push_str(&format!(
                "  {:<10} pending {} next_gpa {:#x} len {} | gpa {:#x} pinned {} end {} dirty {} | reg {:?}\n",
                AREA_NAMES[i],
                a.update_pending.peek(),
                a.next_gpa.peek(),
                a.len.peek(),
                a.gpa.peek(),
                show(a.pinned.peek()),
                show(a.pinned_end.peek()),
                a.dirty.peek(),
                reg.reg[i]
            ));
        }
        s
    }
}

/// Who holds an area pin on a page: (vCPU, area, page generation at pin time).
pub(super) type PinRec = (usize, usize, u64);

/// The page of a guest physical address and the bytes left in it.
pub(super) fn page_of(gpa: u64) -> (u64, u64) {
    (gpa / PAGE_SIZE, PAGE_SIZE - gpa % PAGE_SIZE)
}

impl Vpa {
    /// `kvmppc_pin_guest_page()`: look the gfn up in the memslots, take a long-term
    /// pin (GUP) and return the kernel address and `nb`, the bytes left in the page.
    /// `None` for a gpa outside every memslot. The pin is recorded for `owner`.
    pub(super) fn pin(&self, op: &mut Op, gpa: u64, owner: (usize, usize)) -> Option<(Token, u64)> {
        let (page, nb) = page_of(gpa);
        if page >= self.pages {
            return None;
        }
        crate::point!("pin_guest_page");
        if !self.arena.try_get(page, AREA_NAMES[owner.1]) {
            return None;
        }
        op.note(self.arena.keep_as_pin(page, AREA_NAMES[owner.1]));
        let gen = self.arena.state(page).map_or(0, |s| s.gen);
        self.ledger[page as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((owner.0, owner.1, gen));
        op.event(
            "pin page {a} for vcpu*4+area {b}",
            page,
            (owner.0 * 4 + owner.1) as u64,
        );
        Some((
            Token {
                page,
                off: gpa % PAGE_SIZE,
                gen,
            },
            nb,
        ))
    }

    /// `kvmppc_unpin_guest_page()` of the pin `owner` took: marks the page dirty if
    /// `dirty` (a V7 report) and drops the pin. V6: an unpin of NULL, or of a pin
    /// `owner` does not hold (a double unpin), is refused and reported.
    pub(super) fn unpin(
        &self,
        t: Option<Token>,
        owner: (usize, usize),
        dirty: bool,
    ) -> Result<(), Violation> {
        let Some(t) = t else {
            return Err(Violation::new(
                "V6",
                format!(
                    "unpin of a NULL {} address for vcpu{} (kernel: oops)",
                    AREA_NAMES[owner.1], owner.0
                ),
            )
            .with_state(self.vcpus.get(owner.0).map_or(String::new(), |v| v.describe())));
        };
        let rec = (owner.0, owner.1, t.gen);
        {
            let mut l = self.ledger[t.page as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(i) = l.iter().position(|r| *r == rec) else {
                drop(l);
                return Err(Violation::new(
                    "V6",
                    format!(
                        "unpin of {t} for vcpu{} {}, which holds no pin there (double unpin)",
                        owner.0, AREA_NAMES[owner.1]
                    ),
                )
                .with_state(self.arena.describe(t.page)));
            };
            l.swap_remove(i);
        }
        if dirty {
            self.dirty.report(t.page);
        }
        let r = self.arena.unpin(t.page, AREA_NAMES[owner.1]).map_err(|mut v| {
            v.invariant = "V6";
            v
        });
        if self.arena.state(t.page).is_some_and(|s| s.pins == 0) {
            self.idle_after_unpin[t.page as usize].store(true, Relaxed);
        }
        r
    }

    /// An access of `n` bytes at `at` through area `area` of vCPU `v`, whose pinned
    /// range the accessor took as `[start, end)`.
    ///
    /// V1: `at` is not NULL; its page is live, pinned, and of the generation it had
    /// when pinned; the access lies in `[start, end)` and in the page.
    /// C1 (consequence): the page holds a pin *for this area*, whatever code path
    /// produced the address.
    pub(super) fn touch(
        &self,
        v: usize,
        area: usize,
        at: Option<Token>,
        n: u64,
        range: (Option<Token>, Option<Token>),
        what: &'static str,
    ) -> Result<(), Violation> {
        let name = AREA_NAMES[area];
        let Some(t) = at else {
            return Err(Violation::new(
                "V1",
                format!("{what}: vcpu{v} {name}: access through a NULL address"),
            )
            .with_state(self.vcpus[v].describe()));
        };
        let fail = |id: &'static str, msg: String| {
            let mut state = self.vcpus[v].describe();
            state.push_str(&self.arena.describe(t.page));
            Err(Violation::new(id, format!("{what}: vcpu{v} {name}: {msg}")).with_state(state))
        };
        let Some(st) = self.arena.state(t.page) else {
            return fail("V1", format!("{t} is not a guest page"));
        };
        if !st.allocated || st.pins < 1 || st.gen != t.gen {
            return fail(
                "V1",
                format!(
                    "write/read of {n} bytes at {t}: page is {} with {} pins, generation {} (pinned at {})",
                    if st.allocated { "live" } else { "FREE" },
                    st.pins,
                    st.gen,
                    t.gen
                ),
            );
        }
        let pinned_for_area = self.ledger[t.page as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(v, area, t.gen));
        if !pinned_for_area {
            return fail(
                "C1",
                format!(
                    "access of {n} bytes at {t}: the page is pinned ({} pins) but not for this area",
                    st.pins
                ),
            );
        }
        let inside = match range {
            (Some(s), Some(e)) => {
                s.page == t.page && s.gen == t.gen && e.page == t.page && s.off <= t.off && t.off + n <= e.off
            }
            _ => false,
        };
        if !inside || t.off + n > PAGE_SIZE {
            return fail(
                "V1",
                format!(
                    "access of {n} bytes at {t} is outside the area's pinned range [{}, {})",
                    show(range.0),
                    show(range.1)
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_its_packing_and_null_is_zero() {
        let t = Token {
            page: MAX_PAGES - 1,
            off: PAGE_SIZE,
            gen: 123_456,
        };
        assert_eq!(Token::unpack(Token::pack(Some(t))), Some(t));
        assert_eq!(Token::pack(None), 0);
        assert_eq!(Token::unpack(0), None);
        assert_eq!(t.plus(0).off, PAGE_SIZE);
    }
}
