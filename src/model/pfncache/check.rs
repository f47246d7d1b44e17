//! The invariants, each checked only where the spec says it is safe: I1–I6 under the
//! cache's read lock, Q1–Q4 with every worker parked, and the teardown state.
//! (I7 and the M invariants are checked by the arena and the cache at the moment of
//! the access or change.)

use super::cache::Gpc;
use super::{cov, Op, PfnCache};
use crate::model::mem::{Khva, PFN_ERR};
use crate::model::notifier::{is_error_gpa, is_error_hva, offset_in_page};
use crate::model::Violation;

impl PfnCache {
    /// I1–I6 with `c`'s read lock held: nothing a writer could change is read without
    /// it. I4 applies to a cache `kvm_gpc_check()` could accept (active, and fresh if
    /// GPA-based): a GPA cache whose generation is stale may legitimately keep a page
    /// the host has replaced, since no reader may use it before a re-translation.
    pub(super) fn check_read_locked(&self, op: &mut Op, c: &Gpc) {
        if c.active.peek() && is_error_gpa(c.gpa.peek()) && is_error_hva(c.uhva.peek()) {
            // Between `active = true` and __kvm_gpc_refresh(): why Q2 is not safe here.
            op.cover(cov::READER_SAW_HALF_ACTIVATED);
        }
        if let Err(v) = self.read_locked_invariants(c) {
            op.flag(v);
        }
    }

    /// The dereference of `len` bytes at khva after a successful `kvm_gpc_check()`:
    /// I1–I6 at this very moment (the page must still be the one the host maps at the
    /// cache's hva, I4), I8 (the page is the one the memslots map at the cache's gpa,
    /// from the oracle of every memslot set since `epoch`, read before the check),
    /// then the access itself (I3, I4, I7).
    pub(super) fn check_access(&self, op: &mut Op, c: &Gpc, len: u64, epoch: u64) {
        let khva = c.khva();
        let r = self
            .read_locked_invariants(c)
            .and_then(|()| self.fresh_at_access(c, epoch))
            .and_then(|()| {
                self.mmu.arena.access(khva, len, "reader access").map_err(|v| {
                    let mut state = c.describe();
                    state.push_str(&v.state);
                    v.with_state(state)
                })
            });
        if let Err(v) = r {
            op.flag(v);
        }
    }

    /// I8, access-time freshness of a GPA cache: the page the access reaches is the
    /// page the host maps at the hva that the gpa has in a memslot set that was
    /// active at some moment since the reader's check began. Read from the oracle of
    /// memslot sets and the host page table, not from the cache's own generation, so
    /// a check that accepted a stale translation is seen whatever its generation.
    fn fresh_at_access(&self, c: &Gpc, epoch: u64) -> Result<(), Violation> {
        let gpa = c.gpa.peek();
        if is_error_gpa(gpa) {
            return Ok(());
        }
        let Some(hvas) = self.mmu.translations_since(epoch, gpa) else {
            return Ok(());
        };
        let reached = self.mmu.arena.mapped_pfn(c.khva());
        let expected: Vec<Option<u64>> = hvas
            .iter()
            .map(|&h| {
                if is_error_hva(h) {
                    None
                } else {
                    self.mmu.peek_pte(h)
                }
            })
            .collect();
        if reached.is_some() && expected.contains(&reached) {
            return Ok(());
        }
        Err(self.cache_violation(
            c,
            "I8",
            format!(
                "gpc{}: an access after a passing kvm_gpc_check reaches pfn {} but the memslots map gpa {gpa:#x} to {} \
                 (hva {}) in every set active since the check",
                c.id,
                reached.map_or("none".to_string(), |p| p.to_string()),
                expected
                    .iter()
                    .map(|p| p.map_or("nothing".to_string(), |p| format!("pfn {p}")))
                    .collect::<Vec<_>>()
                    .join(" / "),
                hvas.iter().map(|h| format!("{h:#x}")).collect::<Vec<_>>().join(" / ")
            ),
        ))
    }

    fn read_locked_invariants(&self, c: &Gpc) -> Result<(), Violation> {
        let active = c.active.peek();
        let valid = c.valid.peek();
        let fail = |id, msg: String| Err(self.cache_violation(c, id, msg));
        if active && !c.on_list.peek() {
            return fail(
                "I2",
                format!("gpc{} is active but not on gpc_list: invalidations miss it", c.id),
            );
        }
        if !valid {
            return Ok(());
        }
        if !active {
            return fail(
                "I1",
                format!("gpc{} is valid but not active: {}", c.id, c.how_valid_inactive()),
            );
        }
        let (pfn, khva, uhva, gpa) = (c.pfn.peek(), Khva(c.khva.peek()), c.uhva.peek(), c.gpa.peek());
        if pfn == PFN_ERR || khva.is_null() {
            return fail(
                "I3",
                format!("gpc{} is valid with pfn {pfn:#x} and khva {khva}", c.id),
            );
        }
        match self.mmu.arena.mapped_pfn(khva) {
            Some(p) if p == pfn => {}
            Some(p) => {
                return fail(
                    "I3",
                    format!("gpc{} khva {khva} maps pfn {p}, not its pfn {pfn}", c.id),
                )
            }
            None => {
                return fail(
                    "I3",
                    format!("gpc{} is valid with khva {khva} already unmapped", c.id),
                )
            }
        }
        let expected = if is_error_gpa(gpa) {
            offset_in_page(uhva)
        } else {
            offset_in_page(gpa)
        };
        if khva.offset() != expected || offset_in_page(uhva) != expected {
            return fail(
                "I5",
                format!(
                    "gpc{} offsets disagree: khva {khva}, uhva {uhva:#x}, gpa {gpa:#x}",
                    c.id
                ),
            );
        }
        let fresh = if is_error_gpa(gpa) {
            true
        } else {
            let t = self.mmu.translate(gpa);
            let same_gen = c.generation.peek() == t.generation;
            if same_gen && (uhva != t.uhva || c.memslot.peek() != t.slot.map_or(0, |s| s as u64 + 1)) {
                return fail(
                    "I6",
                    format!(
                        "gpc{} uhva {uhva:#x} but gpa {gpa:#x} translates to {:#x} in its generation",
                        c.id, t.uhva
                    ),
                );
            }
            same_gen
        };
        if fresh {
            let live = self.mmu.arena.state(pfn).is_some_and(|s| s.allocated);
            let pte = self.mmu.peek_pte(uhva);
            if !live || pte != Some(pfn) {
                return fail(
                    "I4",
                    format!(
                        "gpc{} is valid with pfn {pfn} ({}), but the host maps {uhva:#x} to {}",
                        c.id,
                        if live { "live" } else { "FREED" },
                        pte.map_or("nothing".to_string(), |p| format!("pfn {p}"))
                    ),
                );
            }
        }
        Ok(())
    }

    /// A violation about cache `c`, with its state, history and its page's history.
    pub(super) fn cache_violation(&self, c: &Gpc, id: &'static str, msg: String) -> Violation {
        let mut state = c.describe();
        let pfn = c.pfn.peek();
        if pfn != PFN_ERR {
            state.push_str(&self.mmu.arena.describe(pfn));
        }
        Violation::new(id, msg).with_state(state)
    }

    /// Q1–Q4 with every worker parked between operations.
    pub(super) fn quiescent(&self) -> Result<(), Violation> {
        let mut khvas = 0;
        let mut pins = vec![0i64; self.mmu.arena.npages()];
        for c in &self.caches {
            let (active, valid, on_list) = (c.active.peek(), c.valid.peek(), c.on_list.peek());
            let (pfn, khva) = (c.pfn.peek(), Khva(c.khva.peek()));
            if !c.locks_free() {
                return Err(self.cache_violation(c, "Q4", format!("at rest a lock of gpc{} is held", c.id)));
            }
            if active != on_list {
                return Err(self.cache_violation(
                    c,
                    "Q1",
                    format!("gpc{}: active {active} but on_list {on_list}", c.id),
                ));
            }
            if active && is_error_gpa(c.gpa.peek()) && is_error_hva(c.uhva.peek()) {
                return Err(self.cache_violation(
                    c,
                    "Q2",
                    format!("gpc{} is active with neither gpa nor uhva", c.id),
                ));
            }
            if !active && (valid || pfn != PFN_ERR || !khva.is_null()) {
                return Err(self.cache_violation(
                    c,
                    "Q2",
                    format!(
                        "gpc{} is inactive but valid {valid}, pfn {pfn:#x}, khva {khva}{}",
                        c.id,
                        if valid {
                            format!(": {}", c.how_valid_inactive())
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
            if !khva.is_null() {
                khvas += 1;
                if self.mmu.arena.mapped_pfn(khva) != Some(pfn) {
                    return Err(self.cache_violation(
                        c,
                        "Q3",
                        format!(
                            "gpc{} khva {khva} is not a live mapping of its pfn {pfn:#x}",
                            c.id
                        ),
                    ));
                }
            }
            if self.params.pin && pfn != PFN_ERR {
                if let Some(n) = pins.get_mut(pfn as usize) {
                    *n += 1;
                }
            }
        }
        let live = self.mmu.arena.live_maps();
        if live != khvas {
            return Err(Violation::new(
                "Q3",
                format!("{live} kernel mappings are live but caches hold {khvas}: a kmap leaked or was lost"),
            )
            .with_state(self.dump_state()));
        }
        for (pfn, &cache_pins) in pins.iter().enumerate() {
            let pfn = pfn as u64;
            let Some(st) = self.mmu.arena.state(pfn) else {
                continue;
            };
            let expected = if st.allocated { st.mapcount + cache_pins } else { 0 };
            if st.refcount != expected || st.pins != cache_pins {
                return Err(Violation::new(
                    "Q3",
                    format!(
                        "pfn {pfn}: refcount {} pins {} but host mappings {} + cache pins {cache_pins}",
                        st.refcount, st.pins, st.mapcount
                    ),
                )
                .with_state(self.mmu.arena.describe(pfn)));
            }
        }
        self.mmu.check_quiescent()
    }

    /// After every worker stopped: no cache or list lock is still held.
    pub(super) fn at_rest(&self) -> Result<(), Violation> {
        if self.gpc_lock.is_locked() {
            return Err(Violation::new("Q4", "at teardown kvm->gpc_lock is held"));
        }
        Ok(())
    }

    pub(super) fn dump_state(&self) -> String {
        let mut s = String::new();
        for c in &self.caches {
            s.push_str(&c.describe());
        }
        s.push_str(&self.mmu.describe());
        s
    }
}
