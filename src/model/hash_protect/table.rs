//! The hashed page table's bolted kernel entries and the three ways H_PROTECT (or
//! the native update) changes one.
//!
//! One word per bolted linear-map page: `VALID`, `ABSENT` (KVM only), `HVLOCK` (KVM
//! only) and the pp bits; the AVPN and the rest of the R word do not matter here.

use crate::sync::{bitlock, AtomicU64};
use std::sync::atomic::Ordering::SeqCst;

pub(super) const VALID: u64 = 1 << 0;
/// `HPTE_V_ABSENT`: KVM's "valid for the guest, not for the hardware".
pub(super) const ABSENT: u64 = 1 << 1;
/// `HPTE_V_HVLOCK`: KVM's per-entry lock bit.
pub(super) const HVLOCK: u64 = 1 << 63;
pub(super) const PP_SHIFT: u32 = 8;
pub(super) const PP_MASK: u64 = 0x7 << PP_SHIFT;

/// The linear mapping's page size (`1 << mmu_psize_defs[mmu_linear_psize].shift`).
pub(super) const PAGE: u64 = 0x1_0000;

pub(super) fn pp(v: u64) -> u64 {
    (v & PP_MASK) >> PP_SHIFT
}

/// H_PROTECT's outcome; anything but `Success` is `BUG_ON(lpar_rc != H_SUCCESS)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HRet {
    Success,
    NotFound,
}

pub(super) struct Table {
    pub hpte: Vec<AtomicU64>,
}

impl Table {
    /// Every page bolted, VALID, with `pp`.
    pub(super) fn new(pages: usize, pp: u64) -> Self {
        Table {
            hpte: (0..pages)
                .map(|_| AtomicU64::new(VALID | pp << PP_SHIFT))
                .collect(),
        }
    }

    /// H_PROTECT as PowerVM appears to do it: remove the entry, then put it back with
    /// the new pp. `window` runs while the entry is gone (the invariant that the
    /// master's CPU checks there, and the preemption point the spec widens).
    pub(super) fn protect_phyp(&self, page: usize, newpp: u64, window: &mut dyn FnMut()) -> HRet {
        let e = &self.hpte[page];
        // 1. remove (the hash slot no longer matches: a fetch here misses).
        let v = e.fetch_and(!VALID, SeqCst);
        if v & VALID == 0 {
            return HRet::NotFound;
        }
        // 2. the window.
        window();
        // 3.–4. re-insert with the new pp.
        e.store((v & !PP_MASK) | newpp << PP_SHIFT | VALID, SeqCst);
        HRet::Success
    }

    /// `kvmppc_h_protect()` (book3s_hv_rm_mmu.c).
    pub(super) fn protect_kvm(&self, page: usize, newpp: u64, window: &mut dyn FnMut()) -> HRet {
        let e = &self.hpte[page];
        // while (!try_lock_hpte(hpte, HPTE_V_HVLOCK)) cpu_relax();
        let pte_v = bitlock::lock(e, HVLOCK);
        // Neither VALID nor ABSENT: H_NOT_FOUND.
        if pte_v & (VALID | ABSENT) == 0 {
            bitlock::unlock_store(e, HVLOCK, pte_v);
            return HRet::NotFound;
        }
        // "If the PTE is changing, invalidate it first": V = (V & ~VALID) | ABSENT with
        // HVLOCK still held, tlbie, then the new R word (R/C bits kept).
        if pte_v & VALID != 0 && pp(pte_v) != newpp {
            e.store((pte_v & !VALID) | ABSENT | HVLOCK, SeqCst);
            window();
            e.store(
                (pte_v & !(VALID | PP_MASK)) | ABSENT | HVLOCK | newpp << PP_SHIFT,
                SeqCst,
            );
        }
        // unlock_hpte(hpte, pte_v & ~HPTE_V_HVLOCK): V as it was, VALID again.
        bitlock::unlock_store(e, HVLOCK, (pte_v & !PP_MASK) | newpp << PP_SHIFT);
        HRet::Success
    }

    /// `native_hpte_updateboltedpp()`: rewrite pp in place, then tlbie (the window
    /// after the rewrite); the entry never stops being valid.
    pub(super) fn update_native(&self, page: usize, newpp: u64, window: &mut dyn FnMut()) -> HRet {
        let e = &self.hpte[page];
        let mut v = e.load(SeqCst);
        loop {
            let new = (v & !PP_MASK) | newpp << PP_SHIFT;
            match e.compare_exchange(v, new, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(cur) => v = cur,
            }
        }
        window();
        HRet::Success
    }

    pub(super) fn describe(&self) -> String {
        let words: Vec<String> = self
            .hpte
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let v = e.peek();
                format!(
                    "hpte[{i}] {}{}{} pp={}",
                    if v & VALID != 0 { "VALID " } else { "" },
                    if v & ABSENT != 0 { "ABSENT " } else { "" },
                    if v & HVLOCK != 0 { "HVLOCK " } else { "" },
                    pp(v)
                )
            })
            .collect();
        words.join("\n")
    }
}
