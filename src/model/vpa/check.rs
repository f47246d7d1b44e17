//! The invariants read at quiescent points (every worker parked between operations)
//! and at teardown: V1b, V2, V3, V6. (V1 and C1 are checked at each access, V4 at
//! each hcall, V5a/V5b at each write, V7 at each harvest.)

use super::area::{page_of, show, Vcpu, AREA_NAMES, DTL};
use super::hcall::DTL_ENTRY;
use super::Vpa;
use crate::model::Violation;

impl Vpa {
    pub(super) fn quiescent(&self) -> Result<(), Violation> {
        for v in &self.vcpus {
            if let Some(h) = v.lock.holder() {
                return Err(self.fail(
                    v,
                    "V6",
                    format!("at rest vcpu{}'s vpa_update_lock is held by worker {h}", v.id),
                ));
            }
            for area in 0..3 {
                self.check_area(v, area)?;
            }
            self.check_dtl_ptr(v)?;
        }
        self.check_pins()
    }

    fn fail(&self, v: &Vcpu, id: &'static str, msg: String) -> Violation {
        let mut state = v.describe();
        for t in v.areas.iter().filter_map(|a| a.pinned.peek()) {
            state.push_str(&self.arena.describe(t.page));
        }
        Violation::new(id, msg).with_state(state)
    }

    /// V1b and V2 for one area.
    fn check_area(&self, v: &Vcpu, area: usize) -> Result<(), Violation> {
        let a = &v.areas[area];
        let reg = v.ghost.lock().reg[area];
        let name = AREA_NAMES[area];
        if a.update_pending.peek() {
            let pending = (a.next_gpa.peek(), a.len.peek());
            let ok = match reg {
                Some(r) => pending == r,
                None => pending.0 == 0,
            };
            if !ok {
                return Err(self.fail(
                    v,
                    "V1b",
                    format!(
                        "vcpu{} {name}: pending {:#x} len {} but the last call registered {reg:?}",
                        v.id, pending.0, pending.1
                    ),
                ));
            }
            return Ok(());
        }
        let (pinned, end) = (a.pinned.peek(), a.pinned_end.peek());
        let ok = match (reg, pinned) {
            (None, None) => true,
            (Some((g, l)), Some(t)) => {
                let (page, _) = page_of(g);
                a.gpa.peek() == g && t.page == page && t.off == g % 4096 && a.len.peek() == l
            }
            _ => false,
        };
        if !ok {
            return Err(self.fail(
                v,
                "V1b",
                format!(
                    "vcpu{} {name}: nothing pending, applied gpa {:#x} len {} pinned {}, but the last call registered {reg:?}",
                    v.id,
                    a.gpa.peek(),
                    a.len.peek(),
                    show(pinned)
                ),
            ));
        }
        if let Some(t) = pinned {
            let len_ok =
                end.is_some_and(|e| e.page == t.page && e.gen == t.gen && e.off == t.off + a.len.peek());
            if !len_ok {
                return Err(self.fail(
                    v,
                    "V2",
                    format!(
                        "vcpu{} {name}: pinned {} end {} but len {}",
                        v.id,
                        show(pinned),
                        show(end),
                        a.len.peek()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// V3: `dtl_ptr` is NULL exactly when the DTL is, else inside it on an entry boundary.
    fn check_dtl_ptr(&self, v: &Vcpu) -> Result<(), Violation> {
        let (ptr, start, end) = (
            v.dtl_ptr.peek(),
            v.areas[DTL].pinned.peek(),
            v.areas[DTL].pinned_end.peek(),
        );
        let ok = match (ptr, start, end) {
            (None, None, _) => true,
            (Some(p), Some(s), Some(e)) => {
                p.page == s.page
                    && p.gen == s.gen
                    && s.off <= p.off
                    && p.off < e.off
                    && (p.off - s.off) % DTL_ENTRY == 0
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.fail(
                v,
                "V3",
                format!(
                    "vcpu{}: dtl_ptr {} outside the DTL [{}, {})",
                    v.id,
                    show(ptr),
                    show(start),
                    show(end)
                ),
            ))
        }
    }

    /// V6: each page's pins are exactly the areas that hold a token on it (no leak,
    /// no lost pin), and its ledger agrees.
    fn check_pins(&self) -> Result<(), Violation> {
        for page in 0..self.pages {
            let mut held: Vec<(usize, usize, u64)> = Vec::new();
            for v in &self.vcpus {
                for (area, a) in v.areas.iter().enumerate() {
                    if let Some(t) = a.pinned.peek().filter(|t| t.page == page) {
                        held.push((v.id, area, t.gen));
                    }
                }
            }
            let mut ledger = self.ledger[page as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let pins = self.arena.state(page).map_or(0, |s| s.pins);
            held.sort_unstable();
            ledger.sort_unstable();
            if pins != held.len() as i64 || ledger != held {
                return Err(Violation::new(
                    "V6",
                    format!(
                        "guest page {page}: {pins} pins, pin ledger {ledger:?}, but the areas holding it are {held:?} (a leaked or lost pin)"
                    ),
                )
                .with_state(format!("{}{}", self.arena.describe(page), self.dump_state())));
            }
        }
        Ok(())
    }

    /// After teardown: no area pin is left anywhere.
    pub(super) fn at_rest(&self) -> Result<(), Violation> {
        for v in &self.vcpus {
            self.teardown(v)?;
        }
        for page in 0..self.pages {
            let pins = self.arena.state(page).map_or(0, |s| s.pins);
            if pins != 0 {
                return Err(Violation::new(
                    "V6",
                    format!("after teardown guest page {page} still has {pins} pins"),
                )
                .with_state(self.arena.describe(page)));
            }
        }
        Ok(())
    }

    pub(super) fn dump_state(&self) -> String {
        self.vcpus.iter().map(|v| v.describe()).collect()
    }
}
