//! The memslot arrays: `kvm->__memslots[as_id][2]` with the active one published
//! under SRCU (`rcu_assign_pointer(kvm->memslots[as_id], slots)`), as
//! virt/kvm/kvm_main.c keeps them since the v5.17 memslot rework.
//!
//! An update builds the *inactive* array, publishes it and waits for SRCU readers
//! before it touches the array it replaced; a reader clones the `Arc` of the array
//! it looked up and keeps that snapshot for its whole read section, which is what
//! S1 is checked against.

use crate::model::mem::PAGE_SIZE;
use crate::sync::{AtomicU32, AtomicU64, RawSpinLock, Srcu};
use std::ops::Range;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;
use std::sync::Mutex;

/// Slot ids of the layout (spec "Layout").
pub(super) const SLOT_A: usize = 0;
pub(super) const SLOT_B: usize = 1;
pub(super) const SLOT_C: usize = 2;

/// The last-level stage-2 table spans this many gfns (512 in the spec's 64K-page
/// example; scaled down so that A and B still share one table).
pub(super) const TABLE_GFNS: u64 = 16;
/// RAM slot A: gfns [0, 8) at host pages [0, 8).
pub(super) const A_PAGES: u64 = 8;
/// Flash slot B: 4 gfns at host pages [8, 12), at gfn 8 or (after a MOVE) gfn 12:
/// both positions share A's table.
pub(super) const B_PAGES: u64 = 4;
pub(super) const B_BASES: [u64; 2] = [8, 12];
/// Slot C aliases A's first two host pages at gfns [16, 18), a table of its own: two
/// slots overlap one hva, so the notifier loops run over more than one slot, and a
/// table that empties often lets change_pte meet a missing table (-ENOMEM).
pub(super) const C_BASE: u64 = TABLE_GFNS;
pub(super) const C_PAGES: u64 = 2;
/// Host pages the VMM maps (A's and B's memory).
pub(super) const HOST_PAGES: u64 = A_PAGES + B_PAGES;
/// Guest frames any slot can ever cover.
pub(super) const GFNS: u64 = C_BASE + C_PAGES;

/// `KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS`.
pub(super) use crate::model::notifier::GEN_UPDATE_IN_PROGRESS;

/// `struct kvm_memory_slot`: the part the protocol reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub id: usize,
    pub base_gfn: u64,
    pub npages: u64,
    /// `userspace_addr`, as a host page index.
    pub hva_page: u64,
    /// `KVM_MEMSLOT_INVALID`: a DELETE or MOVE is in flight; lookups see an error hva.
    pub invalid: bool,
}

impl Slot {
    pub fn new(id: usize, base_gfn: u64, npages: u64, hva_page: u64) -> Self {
        Slot {
            id,
            base_gfn,
            npages,
            hva_page,
            invalid: false,
        }
    }

    pub fn gfns(&self) -> Range<u64> {
        self.base_gfn..self.base_gfn + self.npages
    }

    pub fn covers(&self, gfn: u64) -> bool {
        self.gfns().contains(&gfn)
    }

    /// `__gfn_to_hva_memslot()`, as a host page.
    pub fn host_page(&self, gfn: u64) -> u64 {
        self.hva_page + (gfn - self.base_gfn)
    }

    /// `hva_to_gfn_memslot()` for a host page inside the slot's userspace range
    /// (`kvm_for_each_memslot_in_hva_range()`), or `None` outside it.
    pub fn gfn_of(&self, page: u64) -> Option<u64> {
        (self.hva_page..self.hva_page + self.npages)
            .contains(&page)
            .then(|| self.base_gfn + (page - self.hva_page))
    }

    pub fn hva(&self) -> u64 {
        self.hva_page * PAGE_SIZE
    }
}

/// `struct kvm_memslots`: a generation and the slots.
#[derive(Debug)]
pub(super) struct Slots {
    pub generation: AtomicU64,
    pub slots: Vec<Slot>,
}

impl Slots {
    /// `__gfn_to_memslot()`: the slot covering `gfn`, INVALID ones included.
    pub fn lookup(&self, gfn: u64) -> Option<Slot> {
        self.slots.iter().copied().find(|s| s.covers(gfn))
    }

    pub fn find(&self, id: usize) -> Option<Slot> {
        self.slots.iter().copied().find(|s| s.id == id)
    }

    /// A valid (not INVALID) slot covering `gfn`.
    pub fn valid_at(&self, gfn: u64) -> Option<Slot> {
        self.lookup(gfn).filter(|s| !s.invalid)
    }
}

/// Both arrays, the active index, `kvm->srcu`, `slots_lock` and `slots_arch_lock`.
pub(super) struct Memslots {
    /// The two arrays. A cell holds the `Arc` an update last stored; the protocol's
    /// ordering is in `active` and `srcu`, so the cell is a plain (uncontended)
    /// std mutex, not a preemption point.
    arrays: [Mutex<Arc<Slots>>; 2],
    active: AtomicU32,
    pub srcu: Srcu,
    pub slots_lock: RawSpinLock,
    pub slots_arch_lock: RawSpinLock,
}

impl Memslots {
    /// Boot: A, B (at its first base) and C present.
    pub fn new() -> Self {
        let boot = || {
            Arc::new(Slots {
                generation: AtomicU64::new(0),
                slots: vec![
                    Slot::new(SLOT_A, 0, A_PAGES, 0),
                    Slot::new(SLOT_B, B_BASES[0], B_PAGES, A_PAGES),
                    Slot::new(SLOT_C, C_BASE, C_PAGES, 0),
                ],
            })
        };
        Memslots {
            arrays: [Mutex::new(boot()), Mutex::new(boot())],
            active: AtomicU32::new(0),
            srcu: Srcu::new(),
            slots_lock: RawSpinLock::new(),
            slots_arch_lock: RawSpinLock::new(),
        }
    }

    /// `srcu_dereference(kvm->memslots[as_id], &kvm->srcu)` (caller is in a read
    /// section, or holds `slots_lock`): the active array as a snapshot.
    pub fn active(&self) -> Arc<Slots> {
        let i = self.active.load(Acquire) as usize;
        self.cell(i)
    }

    /// Fills the inactive array (`kvm_replace_memslot()` on `kvm_get_inactive_memslots()`),
    /// flagged `gen | KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS`; returns it.
    pub fn fill_inactive(&self, gen: u64, slots: Vec<Slot>) -> Arc<Slots> {
        let i = 1 - self.active.load(Acquire) as usize;
        let next = Arc::new(Slots {
            generation: AtomicU64::new(gen | GEN_UPDATE_IN_PROGRESS),
            slots,
        });
        *self.arrays[i].lock().unwrap_or_else(|e| e.into_inner()) = next.clone();
        next
    }

    /// `rcu_assign_pointer(kvm->memslots[as_id], slots)`: the inactive array becomes active.
    pub fn flip(&self) {
        let i = self.active.load(Acquire);
        self.active.store(1 - i, Release);
    }

    /// The active array without preemption points (checks and dumps).
    pub fn peek_active(&self) -> Arc<Slots> {
        self.cell(self.active.peek() as usize)
    }

    fn cell(&self, i: usize) -> Arc<Slots> {
        self.arrays[i].lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
