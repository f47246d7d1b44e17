//! The MMU-notifier machinery of a VM: the host page table, the invalidation
//! counters and the memslot set, as virt/kvm/kvm_main.c keeps them.
//!
//! - `host_pt` maps each host virtual page to a page of the [`Arena`]. It changes
//!   *only* inside [`Mmu::invalidate`], between `invalidate_range_start()` and
//!   `invalidate_range_end()`, as the primary MMU does: a secondary MMU may rely on
//!   "no new mapping until range_end" (Sean Christopherson on the 2024 pfncache rework).
//! - `mn_active_invalidate_count` under `mn_invalidate_lock` covers the whole
//!   start→end window and is raised *before* the gpc walk
//!   (`kvm_mmu_notifier_invalidate_range_start()`); `mmu_invalidate_in_progress` and
//!   `mmu_invalidate_seq` under `mmu_lock` change only if a memslot overlaps the range
//!   (`__kvm_handle_hva_range()` with `kvm_mmu_invalidate_begin()`/`_end()`).
//! - The memslot set is double-buffered like `kvm->__memslots[as_id][2]`: an update
//!   writes the inactive copy, flags its generation `KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS`,
//!   waits for `mn_active_invalidate_count == 0`, publishes it, waits for SRCU readers
//!   and only then stores the final generation (`kvm_swap_active_memslots()`). A DELETE
//!   publishes an INVALID copy of the slot first (`kvm_invalidate_memslot()`).

use super::mem::{Arena, Pfn, PAGE_SIZE};
use super::Violation;
use crate::sync::Backoff;
use crate::sync::{AtomicU32, AtomicU64, RawSpinLock, Srcu};
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::AtomicU64 as StdU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// `KVM_HVA_ERR_BAD` (`PAGE_OFFSET`): every address at or above it is an error hva.
pub const HVA_ERR_BAD: u64 = 0xffff_8000_0000_0000;
/// Where the VMM's guest memory mappings start in the model's host address space.
const HVA_BASE: u64 = 0x7f00_0000_0000;
/// `INVALID_GPA`.
pub const INVALID_GPA: u64 = u64::MAX;
/// `KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS`.
pub const GEN_UPDATE_IN_PROGRESS: u64 = 1 << 63;

/// `kvm_is_error_hva()`.
pub fn is_error_hva(hva: u64) -> bool {
    hva >= HVA_ERR_BAD
}

/// `kvm_is_error_gpa()`.
pub fn is_error_gpa(gpa: u64) -> bool {
    gpa == INVALID_GPA
}

/// `offset_in_page()`.
pub fn offset_in_page(addr: u64) -> u64 {
    addr & (PAGE_SIZE - 1)
}

/// `PAGE_ALIGN_DOWN()`.
pub fn page_align_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// Where guest memory lives in the host address space.
///
/// Each memslot has two candidate userspace regions (`alt` 0 and 1) so that a
/// delete-and-recreate can move it: the region it does not use is plain VMM memory
/// outside every memslot. After all slot regions come `outside_pages` more pages that
/// are never part of a memslot (e.g. a Xen shared-info overlay mapped only by hva).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub slots: usize,
    pub slot_pages: u64,
    pub outside_pages: u64,
}

impl Layout {
    pub fn hva_pages(&self) -> u64 {
        self.slots as u64 * 2 * self.slot_pages + self.outside_pages
    }

    pub fn gfns(&self) -> u64 {
        self.slots as u64 * self.slot_pages
    }

    /// First host page of slot `slot`'s region `alt`.
    pub fn region(&self, slot: usize, alt: u8) -> u64 {
        (slot as u64 * 2 + alt as u64) * self.slot_pages
    }

    /// First host page that no memslot can ever cover.
    pub fn outside(&self) -> u64 {
        self.slots as u64 * 2 * self.slot_pages
    }

    /// The host virtual address of host page `page`.
    pub fn hva(&self, page: u64) -> u64 {
        HVA_BASE + page * PAGE_SIZE
    }

    /// The host page an hva lies in, if it is one the model maps.
    pub fn hva_page(&self, hva: u64) -> Option<u64> {
        let page = hva.checked_sub(HVA_BASE)? / PAGE_SIZE;
        (page < self.hva_pages()).then_some(page)
    }
}

/// One memslot as a set stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    pub present: bool,
    /// `KVM_MEMSLOT_INVALID`: being deleted; translates to `KVM_HVA_ERR_BAD`.
    pub invalid: bool,
    pub alt: u8,
}

impl SlotState {
    const PRESENT: u64 = 1;
    const INVALID: u64 = 2;
    const ALT: u64 = 4;

    fn encode(self) -> u64 {
        let bit = |on: bool, bit: u64| if on { bit } else { 0 };
        bit(self.present, Self::PRESENT) | bit(self.invalid, Self::INVALID) | bit(self.alt != 0, Self::ALT)
    }

    fn decode(w: u64) -> Self {
        SlotState {
            present: w & Self::PRESENT != 0,
            invalid: w & Self::INVALID != 0,
            alt: (w & Self::ALT != 0) as u8,
        }
    }
}

/// One of the two memslot sets.
struct SlotSet {
    generation: AtomicU64,
    slots: Vec<AtomicU64>,
}

/// The result of `__gfn_to_memslot()` + `gfn_to_hva_memslot()` on one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// `slots->generation` of the set the translation was made in.
    pub generation: u64,
    /// The slot holding the gfn, if the set has one there (even an INVALID one).
    pub slot: Option<usize>,
    /// The hva, or [`HVA_ERR_BAD`] for no slot or an INVALID slot.
    pub uhva: u64,
}

/// How an invalidation changes the host page table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The pages are replaced and the old ones freed (migration, KSM, reclaim).
    Replace,
    /// The mapping stays (mprotect, soft-dirty clearing): a refresh finds the same pfn.
    Protect,
}

/// The gpc walk run inside `invalidate_range_start()`: `gfn_to_pfn_cache_invalidate_start()`.
pub type Walk<'a> = &'a mut dyn FnMut(u64, u64) -> Result<(), Violation>;

/// Memslot sets the oracle of [`Mmu::translations_since`] remembers.
const ORACLE_GENERATIONS: usize = 64;

/// The per-VM notifier state and memslots.
pub struct Mmu {
    pub arena: Arena,
    pub layout: Layout,
    host_pt: Vec<AtomicU64>,
    mn_invalidate_lock: RawSpinLock,
    mn_active_invalidate_count: AtomicU64,
    mmu_lock: RawSpinLock,
    mmu_invalidate_in_progress: AtomicU64,
    mmu_invalidate_seq: AtomicU64,
    sets: [SlotSet; 2],
    /// Index of the active set (`rcu_assign_pointer(kvm->memslots[as_id], slots)`).
    active: AtomicU32,
    /// `kvm->slots_lock`: one memslot update at a time.
    slots_lock: RawSpinLock,
    srcu: Srcu,
    /// Ghost, for checks only: the invalidations whose gpc walk is done and whose
    /// `mmu_invalidate_in_progress++` is not (the window 58cd407c closed).
    walked_not_begun: StdU64,
    /// Ghost oracle of the recent memslot sets: (epoch, slot states) of each set
    /// published, newest last, remembered just before it is published.
    oracle: std::sync::Mutex<VecDeque<(u64, Vec<SlotState>)>>,
    oracle_next: StdU64,
}

/// Why `mmu_notifier_retry_cache()` said retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// `mn_active_invalidate_count != 0`.
    Count,
    /// The count was zero but `mmu_invalidate_seq` moved.
    Seq,
}

impl Mmu {
    /// Every host page mapped to a fresh page; every slot present in region 0.
    /// `spare_pages` are the pages beyond one per host page (replacements in flight,
    /// pinned pages the host no longer maps); `maps` the kernel mapping slots.
    pub fn new(layout: Layout, spare_pages: usize, maps: usize) -> Self {
        let hva_pages = layout.hva_pages() as usize;
        let arena = Arena::new(hva_pages + spare_pages, maps);
        let host_pt = (0..hva_pages)
            .map(|_| {
                AtomicU64::new(
                    arena
                        .alloc_mapped("boot")
                        .expect("arena sized for the host page table"),
                )
            })
            .collect();
        let initial = SlotState {
            present: true,
            invalid: false,
            alt: 0,
        }
        .encode();
        let set = || SlotSet {
            generation: AtomicU64::new(0),
            slots: (0..layout.slots).map(|_| AtomicU64::new(initial)).collect(),
        };
        Mmu {
            arena,
            layout,
            host_pt,
            mn_invalidate_lock: RawSpinLock::new(),
            mn_active_invalidate_count: AtomicU64::new(0),
            mmu_lock: RawSpinLock::new(),
            mmu_invalidate_in_progress: AtomicU64::new(0),
            mmu_invalidate_seq: AtomicU64::new(0),
            sets: [set(), set()],
            active: AtomicU32::new(0),
            slots_lock: RawSpinLock::new(),
            srcu: Srcu::new(),
            walked_not_begun: StdU64::new(0),
            oracle: std::sync::Mutex::new(VecDeque::from([(
                0,
                vec![SlotState::decode(initial); layout.slots],
            )])),
            oracle_next: StdU64::new(1),
        }
    }

    // ---- the host page table -------------------------------------------------------

    /// `hva_to_pfn()`: the page mapped at `uhva`, with a reference taken. Like GUP-fast
    /// it re-reads the entry after taking the reference, so a page freed and reused
    /// in between is never returned. `None` for an hva nothing maps (EFAULT).
    pub fn gup(&self, uhva: u64, why: &'static str) -> Result<Option<Pfn>, Violation> {
        let Some(page) = self.layout.hva_page(uhva) else {
            return Ok(None);
        };
        let pte = &self.host_pt[page as usize];
        let mut b = Backoff::new("gup.pte_changed");
        loop {
            let pfn = pte.load(Acquire);
            if self.arena.try_get(pfn, why) {
                if pte.load(Acquire) == pfn {
                    return Ok(Some(pfn));
                }
                self.arena.put(pfn, why)?;
            }
            b.spin();
        }
    }

    /// The page mapped at `uhva` now, without a preemption point (checks only).
    pub fn peek_pte(&self, uhva: u64) -> Option<Pfn> {
        let page = self.layout.hva_page(uhva)?;
        Some(self.host_pt[page as usize].peek())
    }

    /// One host page-table change of `npages` pages from host page `first`, bracketed
    /// by `invalidate_range_start()`/`_end()` with `walk` as the gpc walk.
    ///
    /// The range is always finished, even if the walk or the page table reports a
    /// violation, so no counter is left raised for other threads to wait on.
    pub fn invalidate(&self, first: u64, npages: u64, change: Change, walk: Walk) -> Result<(), Violation> {
        self.invalidate_and_unmap(first, npages, change, walk, &mut |_, _| Ok(()))
    }

    /// [`invalidate`](Self::invalidate) for a VM with an rmap-based secondary MMU:
    /// `unmap` is its `kvm_unmap_gfn_range()` (HPT: `kvm_unmap_rmapp()` per gfn), run
    /// with `mmu_lock` held right after `mmu_invalidate_in_progress++`, for the hva
    /// range `[start, end)` of the memslot the range overlaps; the old pages are freed
    /// only after it.
    pub fn invalidate_and_unmap(
        &self,
        first: u64,
        npages: u64,
        change: Change,
        walk: Walk,
        unmap: Walk,
    ) -> Result<(), Violation> {
        let pages = first..(first + npages).min(self.layout.hva_pages());
        let mut new = Vec::with_capacity(pages.clone().count());
        if change == Change::Replace {
            for _ in pages.clone() {
                match self.arena.alloc_mapped("host fault-in") {
                    Some(p) => new.push(p),
                    None => break,
                }
            }
        }
        let (start, end) = (self.layout.hva(pages.start), self.layout.hva(pages.end));
        let mut result = self.invalidate_range_start(start, end, walk, unmap);
        crate::window!("notifier.before_pte_change");
        // The primary MMU changes the ptes and frees the old pages only now.
        for (page, pfn) in pages.zip(new) {
            let old = self.host_pt[page as usize].swap(pfn, AcqRel);
            crate::point!("notifier.pte_changed");
            result = result.and(self.arena.unmap_host(old, "host pte change"));
        }
        crate::window!("notifier.before_range_end");
        result.and(self.invalidate_range_end(start, end))
    }

    /// `kvm_mmu_notifier_invalidate_range_start()`: raise the count, walk the caches,
    /// then (if a memslot overlaps) `mmu_invalidate_in_progress++` under `mmu_lock`.
    fn invalidate_range_start(&self, start: u64, end: u64, walk: Walk, unmap: Walk) -> Result<(), Violation> {
        self.mn_invalidate_lock.lock();
        self.mn_active_invalidate_count.fetch_add(1, AcqRel);
        self.mn_invalidate_lock.unlock();
        crate::window!("range_start.before_gpc_walk");
        let walked = walk(start, end);
        self.walked_not_begun.fetch_add(1, Relaxed);
        // The window 58cd407c is about: caches are invalidated, in_progress is not up yet.
        crate::window!("range_start.before_in_progress");
        let mut begun = false;
        let unmapped = self.handle_hva_range(start, end, |m| {
            m.mmu_invalidate_in_progress.fetch_add(1, AcqRel);
            begun = true;
            m.walked_not_begun.fetch_sub(1, Relaxed);
            unmap(start, end)
        });
        if !begun {
            // No memslot overlaps the range: in_progress never rises for it.
            self.walked_not_begun.fetch_sub(1, Relaxed);
        }
        walked.and(unmapped)
    }

    /// `kvm_mmu_notifier_invalidate_range_end()`: `seq++; smp_wmb(); in_progress--`
    /// under `mmu_lock` if a memslot overlaps, then drop the count.
    fn invalidate_range_end(&self, start: u64, end: u64) -> Result<(), Violation> {
        let ended = self.handle_hva_range(start, end, |m| {
            m.mmu_invalidate_seq.fetch_add(1, Release);
            match m.mmu_invalidate_in_progress.fetch_sub(1, AcqRel) {
                0 => Err(Violation::new(
                    "Q4",
                    "mmu_invalidate_in_progress below zero (KVM_BUG_ON)",
                )),
                _ => Ok(()),
            }
        });
        self.mn_invalidate_lock.lock();
        let prev = self.mn_active_invalidate_count.fetch_sub(1, AcqRel);
        self.mn_invalidate_lock.unlock();
        match prev {
            0 => Err(Violation::new("Q4", "mn_active_invalidate_count below zero")),
            _ => ended,
        }
    }

    /// `__kvm_handle_hva_range()`: under SRCU, for the first memslot overlapping
    /// `[start, end)` take `mmu_lock` and run `on_lock`.
    fn handle_hva_range(
        &self,
        start: u64,
        end: u64,
        on_lock: impl FnOnce(&Self) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        let idx = self.srcu.read_lock();
        let set = &self.sets[self.active.load(Acquire) as usize];
        let overlaps = (0..self.layout.slots).any(|s| {
            let st = SlotState::decode(set.slots[s].load(Acquire));
            let first = self.layout.hva(self.layout.region(s, st.alt));
            let last = first + self.layout.slot_pages * PAGE_SIZE;
            st.present && first < end && start < last
        });
        let mut r = Ok(());
        if overlaps {
            self.mmu_lock.lock();
            r = on_lock(self);
            // kvm_unmap_gfn_range() + kvm_flush_remote_tlbs(): no stage 2 in this model.
            self.mmu_lock.unlock();
        }
        self.srcu.read_unlock(idx);
        r
    }

    // ---- what the pfn cache reads --------------------------------------------------

    /// `kvm->mmu_invalidate_seq`, read with acquire (then `smp_rmb()` in the caller's
    /// protocol), as `hva_to_pfn_retry()` snapshots it under the gpc write lock.
    pub fn invalidate_seq(&self) -> u64 {
        self.mmu_invalidate_seq.load(Acquire)
    }

    /// `mmu_notifier_retry_cache()`: the count, `smp_rmb()`, then the sequence.
    pub fn retry_cache(&self, mmu_seq: u64) -> Option<Retry> {
        if self.mn_active_invalidate_count.load(Acquire) != 0 {
            return Some(Retry::Count);
        }
        crate::sync::atomic::fence();
        (self.mmu_invalidate_seq.load(Acquire) != mmu_seq).then_some(Retry::Seq)
    }

    /// The pre-58cd407c retry test, `mmu_notifier_retry_hva()` under `mmu_lock`,
    /// simplified (spec V1) to `in_progress || seq != mmu_seq`, which is stricter than
    /// the historical range-filtered test and still misses the gpc walk's window.
    pub fn retry_in_progress(&self, mmu_seq: u64) -> bool {
        self.mmu_lock.lock();
        let retry = self.mmu_invalidate_in_progress.load(Acquire) != 0
            || self.mmu_invalidate_seq.load(Acquire) != mmu_seq;
        self.mmu_lock.unlock();
        retry
    }

    /// `mmu_invalidate_in_progress` without a preemption point (coverage only).
    pub fn peek_in_progress(&self) -> u64 {
        self.mmu_invalidate_in_progress.peek()
    }

    // ---- memslots ------------------------------------------------------------------

    /// `kvm_memslots(kvm)->generation` + `__gfn_to_memslot()` + `gfn_to_hva_memslot()`
    /// on one set, under SRCU.
    pub fn translate(&self, gpa: u64) -> Translation {
        let idx = self.srcu.read_lock();
        let set = &self.sets[self.active.load(Acquire) as usize];
        let generation = set.generation.load(Acquire);
        let gfn = gpa / PAGE_SIZE;
        let mut t = Translation {
            generation,
            slot: None,
            uhva: HVA_ERR_BAD,
        };
        if !is_error_gpa(gpa) && gfn < self.layout.gfns() {
            let slot = (gfn / self.layout.slot_pages) as usize;
            let st = SlotState::decode(set.slots[slot].load(Acquire));
            if st.present {
                t.slot = Some(slot);
                if !st.invalid {
                    let page = self.layout.region(slot, st.alt) + gfn % self.layout.slot_pages;
                    t.uhva = self.layout.hva(page) + offset_in_page(gpa);
                }
            }
        }
        self.srcu.read_unlock(idx);
        t
    }

    /// The active set's generation (`kvm_gpc_check()` reads it with no lock).
    pub fn generation(&self) -> u64 {
        let idx = self.srcu.read_lock();
        let g = self.sets[self.active.load(Acquire) as usize]
            .generation
            .load(Acquire);
        self.srcu.read_unlock(idx);
        g
    }

    /// Slot `slot` in the active set.
    pub fn slot(&self, slot: usize) -> SlotState {
        let idx = self.srcu.read_lock();
        let st = SlotState::decode(self.sets[self.active.load(Acquire) as usize].slots[slot].load(Acquire));
        self.srcu.read_unlock(idx);
        st
    }

    /// KVM_SET_USER_MEMORY_REGION with size 0: publish an INVALID copy, then the set
    /// without the slot. Returns whether a swap had to wait for invalidations.
    pub fn delete_slot(&self, slot: usize) -> bool {
        self.slots_lock.lock();
        let mut waited = self.swap(|s| {
            if s[slot].present {
                s[slot].invalid = true;
            }
        });
        waited |= self.swap(|s| {
            s[slot] = SlotState {
                present: false,
                invalid: false,
                alt: s[slot].alt,
            }
        });
        self.slots_lock.unlock();
        waited
    }

    /// Create slot `slot` (if absent) at region `alt`.
    pub fn create_slot(&self, slot: usize, alt: u8) -> bool {
        self.slots_lock.lock();
        let waited = self.swap(|s| {
            if !s[slot].present {
                s[slot] = SlotState {
                    present: true,
                    invalid: false,
                    alt,
                };
            }
        });
        self.slots_lock.unlock();
        waited
    }

    /// A flags-only update (e.g. dirty logging on/off): a new generation, same mapping.
    pub fn touch_slot(&self) -> bool {
        self.slots_lock.lock();
        let waited = self.swap(|_| {});
        self.slots_lock.unlock();
        waited
    }

    /// `kvm_swap_active_memslots()` (with `slots_lock` held): fill the inactive set,
    /// flag it in progress, wait for `mn_active_invalidate_count == 0`, publish,
    /// `synchronize_srcu_expedited()`, final generation. Returns whether it waited.
    fn swap(&self, edit: impl FnOnce(&mut [SlotState])) -> bool {
        let active = self.active.load(Acquire) as usize;
        let (cur, next) = (&self.sets[active], &self.sets[1 - active]);
        let gen = cur.generation.load(Acquire);
        let mut slots: Vec<SlotState> = cur
            .slots
            .iter()
            .map(|w| SlotState::decode(w.load(Acquire)))
            .collect();
        edit(&mut slots);
        for (w, st) in next.slots.iter().zip(&slots) {
            w.store(st.encode(), Release);
        }
        next.generation.store(gen | GEN_UPDATE_IN_PROGRESS, Release);
        self.remember(&slots);
        let mut waited = false;
        let mut b = Backoff::new("memslots.wait_for_invalidations");
        self.mn_invalidate_lock.lock();
        while self.mn_active_invalidate_count.load(Acquire) != 0 {
            waited = true;
            self.mn_invalidate_lock.unlock();
            b.spin();
            self.mn_invalidate_lock.lock();
        }
        self.active.store(1 - active as u32, Release);
        self.mn_invalidate_lock.unlock();
        self.srcu.synchronize();
        // kvm_arch_nr_memslot_as_ids() is 1 here: one address space.
        next.generation
            .store((gen & !GEN_UPDATE_IN_PROGRESS) + 1, Release);
        waited
    }

    // ---- what an rmap-based secondary MMU (HPT) reads ------------------------------

    /// `kvm->mmu_lock`, which the HPT's fault path and resize pivot take too.
    pub fn mmu_lock(&self) -> &RawSpinLock {
        &self.mmu_lock
    }

    /// `kvm->srcu`, which memslot updates and the HPT's pivot synchronise.
    pub fn srcu(&self) -> &Srcu {
        &self.srcu
    }

    /// `mmu_invalidate_retry(kvm, mmu_seq)` (include/linux/kvm_host.h), called by
    /// `kvmppc_book3s_hv_page_fault()` and `kvmppc_do_h_enter()` with the rmap lock
    /// held: `in_progress`, `smp_rmb()`, then the sequence.
    pub fn invalidate_retry(&self, mmu_seq: u64) -> bool {
        if self.mmu_invalidate_in_progress.load(Acquire) != 0 {
            return true;
        }
        crate::sync::atomic::fence();
        self.mmu_invalidate_seq.load(Acquire) != mmu_seq
    }

    // ---- ghost state for checks and coverage ---------------------------------------

    /// An invalidation is between its gpc walk and `mmu_invalidate_in_progress++`
    /// (coverage of 58cd407c's window; no preemption point).
    pub fn in_walk_to_begin_window(&self) -> bool {
        self.walked_not_begun.load(Relaxed) != 0
    }

    /// The oracle's clock: how many memslot sets it has seen. Read before a
    /// `kvm_gpc_check()`, it bounds which sets the check may have been made against.
    pub fn oracle_epoch(&self) -> u64 {
        self.oracle_next.load(Relaxed)
    }

    /// The oracle: the hvas `gpa` has in every memslot set that may have been active
    /// at some moment since `epoch` (the set active then and every later one; an
    /// unusable slot gives [`HVA_ERR_BAD`]). `None` if the oracle has forgotten a set
    /// it would need.
    pub fn translations_since(&self, epoch: u64, gpa: u64) -> Option<Vec<u64>> {
        let oracle = self.oracle.lock().unwrap_or_else(|e| e.into_inner());
        // A set is remembered just before it is published: at `epoch` the active set
        // may be the one before the last remembered.
        let from = epoch.saturating_sub(2);
        if oracle.front().is_some_and(|(n, _)| *n > from) {
            return None;
        }
        let gfn = gpa / PAGE_SIZE;
        Some(
            oracle
                .iter()
                .filter(|(n, _)| *n >= from)
                .map(|(_, slots)| {
                    if is_error_gpa(gpa) || gfn >= self.layout.gfns() {
                        return HVA_ERR_BAD;
                    }
                    let slot = (gfn / self.layout.slot_pages) as usize;
                    let st = slots[slot];
                    if st.present && !st.invalid {
                        let page = self.layout.region(slot, st.alt) + gfn % self.layout.slot_pages;
                        self.layout.hva(page) + offset_in_page(gpa)
                    } else {
                        HVA_ERR_BAD
                    }
                })
                .collect(),
        )
    }

    fn remember(&self, slots: &[SlotState]) {
        let mut oracle = self.oracle.lock().unwrap_or_else(|e| e.into_inner());
        if oracle.len() == ORACLE_GENERATIONS {
            oracle.pop_front();
        }
        let n = self.oracle_next.fetch_add(1, Relaxed);
        oracle.push_back((n, slots.to_vec()));
    }

    // ---- checks and dumps ----------------------------------------------------------

    /// Q4 and the host side of Q3, with every worker parked: no invalidation in
    /// flight, no lock held, every host pte maps a distinct live page mapped once.
    pub fn check_quiescent(&self) -> Result<(), Violation> {
        let count = self.mn_active_invalidate_count.peek();
        let in_progress = self.mmu_invalidate_in_progress.peek();
        if count != 0 || in_progress != 0 {
            return Err(Violation::new(
                "Q4",
                format!("at rest mn_active_invalidate_count = {count}, mmu_invalidate_in_progress = {in_progress}"),
            )
            .with_state(self.describe()));
        }
        let held = [
            ("mn_invalidate_lock", self.mn_invalidate_lock.is_locked()),
            ("mmu_lock", self.mmu_lock.is_locked()),
            ("slots_lock", self.slots_lock.is_locked()),
            ("kvm->srcu (a reader)", self.srcu.active_readers() != 0),
        ];
        if let Some((what, _)) = held.iter().find(|(_, h)| *h) {
            return Err(Violation::new("Q4", format!("at rest {what} is still held")));
        }
        let gen = self.sets[self.active.peek() as usize].generation.peek();
        if gen & GEN_UPDATE_IN_PROGRESS != 0 {
            return Err(Violation::new(
                "Q4",
                format!("at rest the memslot generation {gen:#x} is in progress"),
            ));
        }
        for (page, pte) in self.host_pt.iter().enumerate() {
            let pfn = pte.peek();
            match self.arena.state(pfn) {
                Some(st) if st.allocated && st.mapcount == 1 => {}
                _ => {
                    return Err(Violation::new(
                        "Q3",
                        format!("host page {page} maps pfn {pfn}, which is not a live page mapped once"),
                    )
                    .with_state(self.arena.describe(pfn)))
                }
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let set = &self.sets[self.active.peek() as usize];
        let mut s = format!(
            "mn_active_invalidate_count {} mmu_invalidate_in_progress {} mmu_invalidate_seq {}\n\
             memslots: generation {:#x}",
            self.mn_active_invalidate_count.peek(),
            self.mmu_invalidate_in_progress.peek(),
            self.mmu_invalidate_seq.peek(),
            set.generation.peek(),
        );
        for (i, w) in set.slots.iter().enumerate() {
            let st = SlotState::decode(w.peek());
            let _ = write!(
                s,
                " | slot{i}: {} hva {:#x}",
                match (st.present, st.invalid) {
                    (false, _) => "deleted",
                    (true, true) => "INVALID",
                    (true, false) => "present",
                },
                self.layout.hva(self.layout.region(i, st.alt))
            );
        }
        s.push_str("\nhost page table:");
        for (i, pte) in self.host_pt.iter().enumerate() {
            let _ = write!(
                s,
                "{}{:#x}->{}",
                if i % 8 == 0 { "\n  " } else { "  " },
                self.layout.hva(i as u64),
                pte.peek()
            );
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mmu() -> Mmu {
        Mmu::new(
            Layout {
                slots: 2,
                slot_pages: 2,
                outside_pages: 1,
            },
            4,
            8,
        )
    }

    #[test]
    fn translation_follows_the_memslots() {
        let m = mmu();
        let t = m.translate(3 * PAGE_SIZE + 0x10);
        assert_eq!(t.slot, Some(1));
        assert_eq!(m.layout.hva_page(t.uhva), Some(m.layout.region(1, 0) + 1));
        assert_eq!(offset_in_page(t.uhva), 0x10);
        m.delete_slot(1);
        let d = m.translate(3 * PAGE_SIZE);
        assert_eq!((d.slot, d.uhva), (None, HVA_ERR_BAD));
        assert!(d.generation > t.generation);
        m.create_slot(1, 1);
        let r = m.translate(3 * PAGE_SIZE);
        assert_eq!(m.layout.hva_page(r.uhva), Some(m.layout.region(1, 1) + 1));
        assert_eq!(r.generation & GEN_UPDATE_IN_PROGRESS, 0);
        assert!(is_error_hva(m.translate(INVALID_GPA).uhva));
        m.check_quiescent().unwrap();
    }

    #[test]
    fn seq_moves_only_for_ranges_in_a_memslot() {
        let m = mmu();
        let mut walked = 0;
        let seq = m.invalidate_seq();
        m.invalidate(m.layout.region(0, 0), 1, Change::Replace, &mut |_, _| {
            walked += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(m.retry_cache(seq), Some(Retry::Seq));
        let seq = m.invalidate_seq();
        m.invalidate(m.layout.outside(), 1, Change::Replace, &mut |_, _| Ok(()))
            .unwrap();
        assert_eq!(
            m.retry_cache(seq),
            None,
            "mmu_invalidate_seq does not move outside memslots"
        );
        // Nor for the region a slot does not use (region 1 of slot 0).
        m.invalidate(m.layout.region(0, 1), 1, Change::Replace, &mut |_, _| Ok(()))
            .unwrap();
        assert_eq!(m.retry_cache(seq), None);
        assert_eq!(walked, 1);
        m.check_quiescent().unwrap();
    }

    #[test]
    fn replace_frees_the_old_page_unless_someone_holds_it() {
        let m = mmu();
        let hva = m.layout.hva(0);
        let old = m.gup(hva, "test").unwrap().unwrap();
        m.invalidate(0, 1, Change::Replace, &mut |_, _| Ok(())).unwrap();
        let new = m.peek_pte(hva).unwrap();
        assert_ne!(old, new);
        assert!(
            m.arena.state(old).unwrap().allocated,
            "the GUP reference keeps it"
        );
        m.arena.put(old, "test").unwrap();
        assert!(!m.arena.state(old).unwrap().allocated);
        m.invalidate(0, 1, Change::Protect, &mut |_, _| Ok(())).unwrap();
        assert_eq!(m.peek_pte(hva), Some(new));
        m.check_quiescent().unwrap();
    }

    #[test]
    fn a_walk_violation_still_finishes_the_range() {
        let m = mmu();
        let r = m.invalidate(0, 1, Change::Replace, &mut |_, _| {
            Err(Violation::new("I3", "test"))
        });
        assert_eq!(r.unwrap_err().invariant, "I3");
        m.check_quiescent().unwrap();
    }
}

// ==== Invalidation counters with an arch MMU behind them (memslot model) ==============
//
// The same kvm_main.c state as [`Mmu`]'s counters, for a model whose secondary MMU has
// page tables of its own (arm64 stage 2): `mmu_lock` is an rwlock (faults map under it
// for read, notifiers zap under it for write), each counter change is returned to the
// caller so it can run the arch handler (`kvm_unmap_gfn_range()`) between them, and
// the memslot swap really sleeps on `mn_memslots_update_rcuwait` until
// `kvm_mmu_notifier_invalidate_range_end()` wakes it. Kept beside [`Mmu`] rather than
// inside it so that pfncache's notifier is untouched; both follow the same functions.

/// A counter that would have gone below zero (the kernel's `BUG_ON`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underflow(pub &'static str);

/// `kvm->mn_invalidate_lock`, `mn_active_invalidate_count`, `mn_memslots_update_rcuwait`,
/// `mmu_lock`, `mmu_invalidate_in_progress` and `mmu_invalidate_seq`.
#[derive(Debug, Default)]
pub struct Invalidations {
    mn_invalidate_lock: RawSpinLock,
    mn_active_invalidate_count: AtomicU64,
    /// `kvm->mmu_lock`; callers take it around [`begin`](Self::begin),
    /// [`end`](Self::end) and their handlers.
    pub mmu_lock: crate::sync::RawRwLock,
    mmu_invalidate_in_progress: AtomicU64,
    mmu_invalidate_seq: AtomicU64,
    /// Bumped by every `rcuwait_wake_up()`: a sleeper waits for it to move.
    wakeups: AtomicU64,
}

impl Invalidations {
    pub fn new() -> Self {
        Self::default()
    }

    /// `kvm_mmu_notifier_invalidate_range_start()`'s first step:
    /// `mn_active_invalidate_count++` under `mn_invalidate_lock`.
    pub fn count_up(&self) {
        self.mn_invalidate_lock.lock();
        self.mn_active_invalidate_count.fetch_add(1, AcqRel);
        self.mn_invalidate_lock.unlock();
    }

    /// `kvm_mmu_notifier_invalidate_range_end()`'s last step: `--count` under the lock,
    /// then `rcuwait_wake_up()` if it reached zero (outside the lock, as the kernel).
    pub fn count_down(&self) -> Result<(), Underflow> {
        self.mn_invalidate_lock.lock();
        let prev = self.mn_active_invalidate_count.fetch_sub(1, AcqRel);
        if prev == 0 {
            self.mn_active_invalidate_count.fetch_add(1, AcqRel);
        }
        self.mn_invalidate_lock.unlock();
        match prev {
            0 => Err(Underflow("mn_active_invalidate_count")),
            1 => {
                crate::window!("range_end.before_wake");
                self.wakeups.fetch_add(1, Release);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `kvm_mmu_invalidate_begin()` (caller holds `mmu_lock` for write).
    pub fn begin(&self) {
        self.mmu_invalidate_in_progress.fetch_add(1, AcqRel);
    }

    /// `kvm_mmu_invalidate_end()` (caller holds `mmu_lock` for write):
    /// `seq++; smp_wmb(); in_progress--`. `bump_seq` false leaves the sequence alone.
    pub fn end(&self, bump_seq: bool) -> Result<(), Underflow> {
        if bump_seq {
            self.mmu_invalidate_seq.fetch_add(1, Release);
        }
        match self.mmu_invalidate_in_progress.fetch_sub(1, AcqRel) {
            0 => {
                self.mmu_invalidate_in_progress.fetch_add(1, AcqRel);
                Err(Underflow("mmu_invalidate_in_progress"))
            }
            _ => Ok(()),
        }
    }

    /// `READ_ONCE(kvm->mn_active_invalidate_count)`.
    pub fn count(&self) -> u64 {
        self.mn_active_invalidate_count.load(Acquire)
    }

    /// `READ_ONCE(kvm->mmu_invalidate_in_progress)`.
    pub fn in_progress(&self) -> u64 {
        self.mmu_invalidate_in_progress.load(Acquire)
    }

    /// `mmu_seq = kvm->mmu_invalidate_seq; smp_rmb();` at the start of a fault.
    pub fn seq(&self) -> u64 {
        self.mmu_invalidate_seq.load(Acquire)
    }

    /// `mmu_invalidate_retry()` (caller holds `mmu_lock`): in progress, or the
    /// sequence moved. `check_in_progress` false tests the sequence only.
    pub fn retry(&self, mmu_seq: u64, check_in_progress: bool) -> bool {
        (check_in_progress && self.mmu_invalidate_in_progress.load(Acquire) != 0)
            || self.mmu_invalidate_seq.load(Acquire) != mmu_seq
    }

    /// The middle of `kvm_swap_active_memslots()`: under `mn_invalidate_lock`, sleep
    /// while `mn_active_invalidate_count != 0` (dropping the lock while asleep), then
    /// run `publish` (`rcu_assign_pointer()`) before unlocking. Returns whether it
    /// slept and the count `publish` ran with. `wait` false publishes at once (before
    /// 52ac8b358b0c).
    pub fn publish_when_idle(&self, wait: bool, publish: impl FnOnce()) -> (bool, u64) {
        let mut slept = false;
        let mut b = Backoff::new("memslots.swap.wait_for_invalidations");
        self.mn_invalidate_lock.lock();
        while wait && self.mn_active_invalidate_count.load(Acquire) != 0 {
            // prepare_to_rcuwait(); set_current_state(); unlock; schedule().
            slept = true;
            let token = self.wakeups.load(Acquire);
            self.mn_invalidate_lock.unlock();
            while self.wakeups.load(Acquire) == token {
                b.spin();
            }
            self.mn_invalidate_lock.lock();
        }
        let count = self.mn_active_invalidate_count.load(Acquire);
        publish();
        self.mn_invalidate_lock.unlock();
        (slept, count)
    }

    /// Counters without a preemption point (checks and dumps): count, in_progress, seq.
    pub fn peek(&self) -> (u64, u64, u64) {
        (
            self.mn_active_invalidate_count.peek(),
            self.mmu_invalidate_in_progress.peek(),
            self.mmu_invalidate_seq.peek(),
        )
    }

    /// Which of the locks is still held (quiescent checks).
    pub fn held_lock(&self) -> Option<&'static str> {
        if self.mn_invalidate_lock.is_locked() {
            Some("mn_invalidate_lock")
        } else if self.mmu_lock.is_write_locked() || self.mmu_lock.readers() != 0 {
            Some("mmu_lock")
        } else {
            None
        }
    }
}
