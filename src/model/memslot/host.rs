//! The primary MMU's page table for the VMM's guest memory: one pte per host page,
//! pointing at a page of the [`Arena`] (which keeps refcounts and mapcounts).
//!
//! A pte changes only inside an invalidate_range_start/end bracket (KSM, COW,
//! unmerge), so S7 and Q2 can trust it. `ptep_clear_flush()` and `set_pte_at()` run
//! under the page-table lock; a GUP that finds the pte cleared takes that lock and
//! so waits for the store, which the model does by waiting for the pte to come back.

use crate::model::mem::{Arena, Pfn, PFN_ERR};
use crate::model::Violation;
use crate::sync::{AtomicU64, Backoff, RawSpinLock};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

/// A cleared pte (`pte_none()`).
pub(super) const PTE_NONE: Pfn = PFN_ERR;

pub(super) struct HostPt {
    ptes: Vec<AtomicU64>,
    /// The page-table lock of each pte (`pte_offset_map_lock()`): KSM's and the
    /// COW path's clear → change_pte → set sequences run under it.
    ptl: Vec<RawSpinLock>,
}

impl HostPt {
    /// Every page faulted in with an anonymous page of its own.
    pub fn new(arena: &Arena, pages: u64) -> Self {
        HostPt {
            ptes: (0..pages)
                .map(|_| {
                    AtomicU64::new(
                        arena
                            .alloc_mapped("boot fault-in")
                            .expect("arena sized for the host"),
                    )
                })
                .collect(),
            ptl: (0..pages).map(|_| RawSpinLock::new()).collect(),
        }
    }

    /// `spin_lock(ptl)` of host page `page`'s pte.
    pub fn lock(&self, page: u64) {
        self.ptl[page as usize].lock();
    }

    pub fn unlock(&self, page: u64) {
        self.ptl[page as usize].unlock();
    }

    /// A pte lock still held (quiescent checks).
    pub fn held_ptl(&self) -> Option<u64> {
        (0..self.pages()).find(|&p| self.ptl[p as usize].is_locked())
    }

    /// `get_user_pages()` of one page: a reference on the page the pte maps, re-read
    /// after the reference is taken (a page freed and reused in between is not taken).
    pub fn gup(&self, arena: &Arena, page: u64, why: &'static str) -> Result<Pfn, Violation> {
        let pte = &self.ptes[page as usize];
        let mut b = Backoff::new("host.gup.pte_locked");
        loop {
            let pfn = pte.load(Acquire);
            if pfn != PTE_NONE && arena.try_get(pfn, why) {
                if pte.load(Acquire) == pfn {
                    return Ok(pfn);
                }
                arena.put(pfn, why)?;
            }
            b.spin();
        }
    }

    /// `ptep_clear_flush()`: returns the page the pte mapped.
    pub fn clear(&self, page: u64) -> Pfn {
        self.ptes[page as usize].swap(PTE_NONE, AcqRel)
    }

    /// `set_pte_at()`.
    pub fn set(&self, page: u64, pfn: Pfn) {
        self.ptes[page as usize].store(pfn, Release);
    }

    /// The pte now (KSM's "pte changed?" test is under the pte lock).
    pub fn get(&self, page: u64) -> Pfn {
        self.ptes[page as usize].load(Acquire)
    }

    /// Without a preemption point (checks and dumps).
    pub fn peek(&self, page: u64) -> Pfn {
        self.ptes[page as usize].peek()
    }

    pub fn pages(&self) -> u64 {
        self.ptes.len() as u64
    }
}
