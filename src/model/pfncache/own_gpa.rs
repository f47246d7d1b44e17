//! A reader with a gpa of its own, and L1: a reader's successful refresh must let it
//! use the cache, unless something that may legitimately undo a refresh happened.
//!
//! Before 58f5ee5f ("KVM: Drop @gpa from exported gfn=>pfn cache check() and refresh()
//! helpers") `kvm_gfn_to_pfn_cache_check(kvm, gpc, gpa, len)` failed when
//! `gpc->gpa != gpa`, and `kvm_gfn_to_pfn_cache_refresh(kvm, gpc, gpa, len)` moved the
//! cache to the caller's gpa. "Those helpers explicitly allow concurrent calls, e.g.
//! KVM could get into a livelock scenario": two readers of one cache with different
//! gpas undo each other's refresh for ever. Since then the gpa changes only through
//! activate, and every caller feeds in `gpc->gpa` (`kvm_gpc_refresh(gpc, len)` is
//! `__kvm_gpc_refresh(gpc, gpc->gpa, len)`; `kvm_gpc_check(gpc, len)` compares
//! nothing the caller passes but `len`): the fixed form of this op.
//!
//! **L1, the retry bound.** The callers' loop (`while (!kvm_gpc_check(gpc, len)) {
//! read_unlock; if (kvm_gpc_refresh(gpc, len)) return; read_lock; }`) has no bound,
//! and a legitimate one can go round many times: include/linux/kvm_host.h on
//! `kvm_gpc_refresh()`, "a successful return from this function does not mean the
//! page can be immediately accessed because it may have raced with an invalidation.
//! Callers must still lock and check the cache status". What can fail
//! `kvm_gpc_check()` right after a successful `kvm_gpc_refresh()` in mainline
//! (virt/kvm/pfncache.c), by the test it fails:
//! - `!gpc->valid`: `gfn_to_pfn_cache_invalidate_start()` cleared it (host
//!   invalidations in a loop starve a reader without bound: not a bug of the cache),
//!   or `kvm_gpc_deactivate()`/`kvm_gpc_activate()` did, or another refresh is inside
//!   `hva_to_pfn_retry()` with the lock dropped — and under `refresh_lock` a refresh
//!   that follows a successful one only re-translates when one of those happened or
//!   the memslots moved in between (`__kvm_gpc_refresh()` keeps a valid cache whose
//!   generation and uhva are unchanged);
//! - `gpc->generation != slots->generation`: a memslot update since the translation;
//! - `!gpc->active`, the address (`gpc->gpa`, `gpc->uhva`, the length test):
//!   `kvm_gpc_deactivate()`, `kvm_gpc_activate()`. Nothing else moves a cache.
//!
//! The invalidation's clear of `valid`, activate and deactivate each run inside the
//! cache's [`Bracket`] (a ghost: begun before the event changes the cache, ended
//! after). A refresh is *wasted* when it succeeded and the reader's very next check
//! failed although no bracketed event of the cache began, ended or was in flight
//! since the refresh took `refresh_lock` (what came before cannot undo an install
//! made after), and either the cache no longer has the gpa
//! the reader refreshed it for (only an activate moves a cache) or the memslot
//! generation has not moved (nothing else can undo the refresh). A round with a
//! cause is excused: it neither counts nor restarts the count, so invalidations in a
//! loop can neither trip L1 in mainline nor hide a livelock. L1 trips at the
//! [`WASTED_BOUND`]th wasted refresh without one successful use in between (the use
//! ends the reader's op, so the count is per op). By the list above mainline never
//! wastes a refresh, so any bound keeps `fixed` clean whatever the invalidation rate;
//! two makes it a repetition (the reader refreshed again and was undone again) rather
//! than one interleaving. It is no higher because the ping-pong is a race each round:
//! the reader that just refreshed only loses if the other's refresh (woken from
//! `refresh_lock`) takes `gpc->lock` before its own `read_lock()`, so a run of k
//! losses for one reader is about 2k-1 such races lost in a row. L1 reads the cache,
//! the memslot generation and the brackets: not the variant, and not who moved the
//! cache (the message names neither).

use super::cache::Gpc;
use super::{cov, Op, PfnCache};
use crate::model::mem::PAGE_SIZE;
use crate::model::notifier::{is_error_gpa, HVA_ERR_BAD};
use std::sync::atomic::AtomicU64 as StdU64;
use std::sync::atomic::Ordering::{Acquire, SeqCst};

/// Wasted refreshes (successful, then a failing check with no legitimate cause)
/// without a use between them at which L1 trips.
const WASTED_BOUND: u32 = 2;

/// Refreshes after which a reader gives up (the kernel's loop is unbounded; a reader
/// starved by legitimate invalidations is not what L1 is about, and the op must end).
const MAX_REFRESHES: u32 = 64;

/// Bytes a reader with its own gpa reads (a Xen evtchn word).
const LEN: u64 = 8;

/// Ghost counts of events that may legitimately fail a check right after a refresh:
/// how many began and how many ended, each event bracketing its effect.
#[derive(Default)]
pub(super) struct Bracket {
    begun: StdU64,
    ended: StdU64,
}

impl Bracket {
    pub fn begin(&self) {
        self.begun.fetch_add(1, SeqCst);
    }

    pub fn end(&self) {
        self.ended.fetch_add(1, SeqCst);
    }

    /// (begun, ended) now.
    fn read(&self) -> (u64, u64) {
        let ended = self.ended.load(SeqCst);
        (self.begun.load(SeqCst), ended)
    }

    /// Whether an event began or ended since `earlier` was read, or was in flight
    /// then (so at some moment since).
    fn moved(&self, earlier: (u64, u64)) -> bool {
        self.read() != earlier || earlier.0 != earlier.1
    }
}

/// What a reader knows when its refresh takes `refresh_lock`: the cache's brackets
/// and the memslot generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Before {
    lifecycle: (u64, u64),
    invalidations: (u64, u64),
    generation: u64,
    /// The gpa the refresh is for.
    gpa: u64,
}

impl PfnCache {
    /// The gpa this worker's reader wants: its own structure in the first page of
    /// memslot 0 (never moved or deleted), as per-vCPU areas share a page, so any two
    /// readers want different gpas of one page.
    fn own_gpa(&self, op: &Op) -> u64 {
        (op.cx.worker() as u64 * 64) % PAGE_SIZE
    }

    /// A reader of the VM-wide cache, as every vCPU reads Xen's `shared_info`: the
    /// first shared cache that is active and GPA-based (the harness's choice of cache,
    /// read without a lock), inside its vCPU's lifetime.
    pub(super) fn read_shared(&self, op: &mut Op) {
        let Some(c) = self.reader_follows_bring_up(op).or_else(|| {
            self.caches[..self.params.caches]
                .iter()
                .find(|c| c.active.peek() && !is_error_gpa(c.gpa.peek()))
        }) else {
            return;
        };
        c.lifetime.read_lock();
        self.read_own_gpa(op, c);
        c.lifetime.read_unlock();
    }

    /// `check` → `refresh` → `check` … with the reader's gpa (before 58f5ee5f) or the
    /// cache's own (mainline), on a GPA-based active cache, then the access.
    fn read_own_gpa(&self, op: &mut Op, c: &Gpc) {
        let own = self.own_gpa(op);
        let mut h = c.read_lock();
        self.check_read_locked(op, c);
        let mut epoch = self.mmu.oracle_epoch();
        let (mut wasted, mut refreshes) = (0, 0);
        // What the reader knew when it set out on its last successful refresh.
        let mut refreshed: Option<Before> = None;
        loop {
            let cur = c.gpa.load(Acquire);
            if is_error_gpa(cur) || !c.active.load(Acquire) {
                // Not a GPA-based cache in use: not this reader's (HVA caches came later).
                op.note(c.read_unlock(h));
                return;
            }
            let gpa = if self.proto.gpa_arg { own } else { cur };
            if cur == gpa && self.check(c, LEN) {
                break;
            }
            if let Some(before) = refreshed.take() {
                op.cover(cov::CHECK_FAILED_AFTER_OWN_REFRESH);
                if self.wasted(c, before) {
                    wasted += 1;
                }
            }
            op.note(c.read_unlock(h));
            if wasted == WASTED_BOUND {
                op.flag(self.cache_violation(
                    c,
                    "L1",
                    format!(
                        "worker {} refreshed gpc{} for gpa {gpa:#x} {refreshes} times without one use; \
                         {wasted} of those refreshes succeeded and the check right after failed with no \
                         invalidation of the cache, memslot update or (de)activation begun, ended or in \
                         flight since (gpc->gpa is now {:#x})",
                        op.cx.worker(),
                        c.id,
                        c.gpa.peek()
                    ),
                ));
                return;
            }
            if refreshes == MAX_REFRESHES {
                return;
            }
            refreshes += 1;
            // kvm_gpc_refresh() takes refresh_lock first: what happened before it
            // cannot undo a refresh that installs after.
            let locked = self.lock_refresh(op, c);
            let r = if self.proto.gpa_arg {
                // kvm_gfn_to_pfn_cache_refresh(kvm, gpc, gpa, len): moves the cache.
                let before = self.before(c, gpa);
                self.refresh_locked(op, c, gpa, HVA_ERR_BAD, LEN).map(|()| before)
            } else {
                let before = self.before(c, c.gpa.load(Acquire));
                self.refresh_held(op, c, LEN).map(|()| before)
            };
            self.unlock_refresh(c, locked);
            if r.is_err() {
                return;
            }
            refreshed = r.ok();
            // Between kvm_gpc_refresh() returning and read_lock_irqsave().
            crate::window!("reader.refreshed");
            h = c.read_lock();
            self.check_read_locked(op, c);
            epoch = self.mmu.oracle_epoch();
        }
        crate::window!("reader.checked");
        self.check_access(op, c, LEN, epoch);
        op.note(c.read_unlock(h));
    }

    fn before(&self, c: &Gpc, gpa: u64) -> Before {
        Before {
            lifecycle: c.lifecycle().read(),
            invalidations: c.invalidations().read(),
            generation: self.mmu.generation(),
            gpa,
        }
    }

    /// Whether the refresh the reader made with `before`, which succeeded, was wasted
    /// by the check that just failed (under the read lock). A cache that left the gpa
    /// it was refreshed for needs an activate or deactivate since; one still there
    /// may also have been invalidated, or the memslots may have moved.
    fn wasted(&self, c: &Gpc, before: Before) -> bool {
        let lifecycle = Bracket::moved(c.lifecycle(), before.lifecycle);
        let invalidated = Bracket::moved(c.invalidations(), before.invalidations);
        let memslots_moved = self.mmu.generation() != before.generation;
        if c.gpa.peek() != before.gpa {
            !lifecycle
        } else {
            !(lifecycle || invalidated || memslots_moved)
        }
    }
}
