//! `struct gfn_to_pfn_cache` (include/linux/kvm_types.h) with its locks, plus the
//! ghost bookkeeping that lets M5 see a writer overlap a reader.
//!
//! Every field store goes through [`Gpc::set`], which checks M5 at the moment of the
//! store: no reader may be inside the read-side section and no other writer inside
//! the write section. Readers snapshot a mutation counter when they lock and compare
//! it when they unlock, so a store that slipped past the first check (an unlocked
//! store racing the reader's entry) is still seen. The ghost counters are plain std
//! atomics: bookkeeping of the harness, not state of the protocol.

use super::own_gpa::Bracket;
use super::Op;
use crate::model::mem::{Khva, Pfn, PFN_ERR};
use crate::model::notifier::{HVA_ERR_BAD, INVALID_GPA};
use crate::model::Violation;
use crate::sync::mutex::RawMutex;
use crate::sync::{holder, AtomicBool, AtomicU32, AtomicU64, RawRwLock};
use std::fmt::Write;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool as StdBool, AtomicU32 as StdU32, AtomicU64 as StdU64};

/// Lock words a cache can move between when `rwlock_init()` runs on a held lock
/// (52491a38): re-initialising a lock in place makes it a fresh, unlocked lock for
/// new comers while earlier holders still believe they hold it; a fresh slot models
/// exactly that without corrupting the lock the holders will release.
const LOCK_SLOTS: usize = 4;

/// Events kept per cache for violation reports.
const HISTORY: usize = 16;

/// A field of the cache, for [`Gpc::set`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    Gpa,
    Uhva,
    Memslot,
    Generation,
    Pfn,
    Khva,
    Active,
    Valid,
    Dirty,
    NeedsInvalidation,
}

/// Proof of a read-side section: which lock word was taken and the mutation count then.
#[must_use = "a read-side section must be closed with read_unlock"]
pub(super) struct ReadHeld {
    slot: usize,
    mutations: u64,
}

/// Proof of a write-side section.
#[must_use = "a write-side section must be closed with write_unlock"]
pub(super) struct WriteHeld {
    slot: usize,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    worker: usize,
    what: &'static str,
    a: u64,
    b: u64,
}

#[derive(Default)]
struct Ghost {
    readers_in: StdU32,
    writers_in: StdU32,
    mutations: StdU64,
    /// A refresh of this cache has `gpc->lock` dropped (coverage of the walk's window).
    refresh_unlocked: StdBool,
    /// Events that may legitimately fail a check of this cache right after a
    /// refresh, begun and ended so far, each bracketing its effect on the cache (L1):
    /// activates and deactivates (the only events that move a cache or end its use),
    /// and the invalidations that cleared its `valid`.
    lifecycle: Bracket,
    invalidations: Bracket,
    /// Who re-initialised `gpc->lock` last and who held the old lock word then, from
    /// the locks' holder record ("worker 2", "held for read by worker 5").
    reinit: std::sync::Mutex<Option<(String, String)>>,
    history: std::sync::Mutex<(Vec<Event>, usize)>,
}

pub(super) struct Gpc {
    pub id: usize,
    /// `gpc->lock`: the word in use is `locks[lock_idx]`.
    locks: [RawRwLock; LOCK_SLOTS],
    lock_idx: AtomicU32,
    /// `gpc->refresh_lock`.
    pub refresh_lock: RawMutex,
    /// The vCPU owning the cache: ops on it hold this shared; destroying and
    /// re-creating the vCPU holds it exclusively (what `vcpu->mutex` and the vCPU's
    /// lifetime give the kernel: no cache call runs on a vCPU being torn down).
    pub lifetime: RawRwLock,
    pub gpa: AtomicU64,
    pub uhva: AtomicU64,
    /// Slot index + 1, 0 for NULL.
    pub memslot: AtomicU64,
    pub generation: AtomicU64,
    pub pfn: AtomicU64,
    pub khva: AtomicU64,
    pub active: AtomicBool,
    pub valid: AtomicBool,
    /// On `kvm->gpc_list`: written only under `gpc_lock`.
    pub on_list: AtomicBool,
    /// `gpc->dirty` (before cf1d88b3): the page is to be marked dirty when released.
    pub dirty: AtomicBool,
    /// `gpc->needs_invalidation` (the unmerged 2024 proposal): see [`super::protocol`].
    pub needs_invalidation: AtomicBool,
    ghost: Ghost,
}

impl Gpc {
    /// A cache as `kvm_gpc_init()` leaves it.
    pub fn new(id: usize) -> Self {
        Gpc {
            id,
            locks: Default::default(),
            lock_idx: AtomicU32::new(0),
            refresh_lock: RawMutex::new(),
            lifetime: RawRwLock::new(),
            gpa: AtomicU64::new(INVALID_GPA),
            uhva: AtomicU64::new(HVA_ERR_BAD),
            memslot: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            pfn: AtomicU64::new(PFN_ERR),
            khva: AtomicU64::new(0),
            active: AtomicBool::new(false),
            valid: AtomicBool::new(false),
            on_list: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            needs_invalidation: AtomicBool::new(false),
            ghost: Ghost::default(),
        }
    }

    /// `kvm_gpc_init()` on a new vCPU's cache (its locks are new and unheld).
    pub fn init(&self, op: &mut Op) {
        self.set(op, Field::Gpa, INVALID_GPA);
        self.set(op, Field::Uhva, HVA_ERR_BAD);
        self.set(op, Field::Memslot, 0);
        self.set(op, Field::Generation, 0);
        self.set(op, Field::Pfn, PFN_ERR);
        self.set(op, Field::Khva, 0);
        self.set(op, Field::Active, 0);
        self.set(op, Field::Valid, 0);
        self.set(op, Field::Dirty, 0);
        self.set(op, Field::NeedsInvalidation, 0);
        self.record(op, "gpc{a}: init", 0, 0);
    }

    // ---- gpc->lock -----------------------------------------------------------------

    fn lock_word(&self) -> (usize, &RawRwLock) {
        let slot = self.lock_idx.load(Acquire) as usize % LOCK_SLOTS;
        (slot, &self.locks[slot])
    }

    #[track_caller]
    pub fn read_lock(&self) -> ReadHeld {
        let (slot, l) = self.lock_word();
        l.read_lock();
        self.ghost.readers_in.fetch_add(1, SeqCst);
        ReadHeld {
            slot,
            mutations: self.ghost.mutations.load(SeqCst),
        }
    }

    /// `read_unlock()`, checking M5: nothing was stored while the section was open,
    /// and the lock released is the lock taken.
    #[track_caller]
    pub fn read_unlock(&self, h: ReadHeld) -> Result<(), Violation> {
        let stored = self.ghost.mutations.load(SeqCst) - h.mutations;
        let now = self.lock_idx.peek() as usize % LOCK_SLOTS;
        self.ghost.readers_in.fetch_sub(1, SeqCst);
        self.locks[h.slot].read_unlock();
        if now != h.slot {
            let (by, held) = self
                .ghost
                .reinit
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            return Err(self.violation(
                "M5",
                format!(
                    "read_unlock of gpc{}->lock by {}: the lock was re-initialised by {by} while it was {held}",
                    self.id,
                    holder::describe(holder::current())
                ),
            ));
        }
        if stored != 0 {
            return Err(self.violation(
                "M5",
                format!(
                    "gpc{} changed {stored} time(s) inside a read-side section",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    #[track_caller]
    pub fn write_lock(&self) -> WriteHeld {
        let (slot, l) = self.lock_word();
        l.write_lock();
        self.ghost.writers_in.fetch_add(1, SeqCst);
        WriteHeld { slot }
    }

    #[track_caller]
    pub fn write_unlock(&self, h: WriteHeld) {
        self.ghost.writers_in.fetch_sub(1, SeqCst);
        self.locks[h.slot].write_unlock();
    }

    /// Readers inside the lock word in use now (coverage only).
    pub fn lock_readers(&self) -> u64 {
        self.locks[self.lock_idx.peek() as usize % LOCK_SLOTS].readers()
    }

    /// `rwlock_init(&gpc->lock)` on a cache that may be in use (before 52491a38).
    pub fn reinit_lock(&self, op: &mut Op) {
        let (_, old) = self.lock_word();
        *self.ghost.reinit.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((holder::describe(holder::current()), old.holders()));
        let next = (self.lock_idx.load(Acquire) + 1) % LOCK_SLOTS as u32;
        self.lock_idx.store(next, Release);
        self.record(op, "gpc{a}: gpc->lock re-initialised (slot {b})", next as u64, 0);
    }

    /// Every lock of the cache is free (teardown and quiescent checks).
    pub fn locks_free(&self) -> bool {
        self.locks
            .iter()
            .all(|l| l.readers() == 0 && !l.is_write_locked())
            && !self.refresh_lock.is_locked()
            && self.lifetime.readers() == 0
            && !self.lifetime.is_write_locked()
    }

    // ---- fields --------------------------------------------------------------------

    /// Stores a field, checking M5 at the moment of the store.
    #[track_caller]
    pub fn set(&self, op: &mut Op, f: Field, v: u64) {
        self.ghost.mutations.fetch_add(1, SeqCst);
        let readers = self.ghost.readers_in.load(SeqCst);
        let writers = self.ghost.writers_in.load(SeqCst);
        if readers != 0 || writers > 1 {
            op.flag(self.violation(
                "M5",
                format!("gpc{}.{f:?} = {v:#x} stored while {readers} reader(s) and {writers} writer(s) hold gpc->lock", self.id),
            ));
        }
        match f {
            Field::Gpa => self.gpa.store(v, Release),
            Field::Uhva => self.uhva.store(v, Release),
            Field::Memslot => self.memslot.store(v, Release),
            Field::Generation => self.generation.store(v, Release),
            Field::Pfn => self.pfn.store(v, Release),
            Field::Khva => self.khva.store(v, Release),
            Field::Active => self.active.store(v != 0, Release),
            Field::Valid => self.valid.store(v != 0, Release),
            Field::Dirty => self.dirty.store(v != 0, Release),
            Field::NeedsInvalidation => self.needs_invalidation.store(v != 0, Release),
        }
    }

    /// Drops the mapping with the write lock held (`valid = false`, `pfn = ERR`,
    /// `khva = NULL`) and returns the old pfn and khva page, which the caller releases.
    pub fn take_mapping(&self, op: &mut Op) -> (Pfn, Khva) {
        let old = (self.pfn.load(Acquire), self.khva().base());
        self.set(op, Field::Valid, 0);
        self.set(op, Field::Pfn, PFN_ERR);
        self.set(op, Field::Khva, 0);
        old
    }

    pub fn khva(&self) -> Khva {
        Khva(self.khva.load(Acquire))
    }

    pub fn set_refresh_unlocked(&self, dropped: bool) {
        self.ghost.refresh_unlocked.store(dropped, Relaxed);
    }

    /// The bracket of this cache's activates and deactivates (L1): begun before the
    /// event changes the cache, ended after.
    pub fn lifecycle(&self) -> &Bracket {
        &self.ghost.lifecycle
    }

    /// The bracket of the invalidations that cleared this cache's `valid` (L1).
    pub fn invalidations(&self) -> &Bracket {
        &self.ghost.invalidations
    }

    pub fn refresh_unlocked(&self) -> bool {
        self.ghost.refresh_unlocked.load(Relaxed)
    }

    // ---- reports -------------------------------------------------------------------

    /// Notes an event in the cache's history and the flight recorder.
    pub fn record(&self, op: &Op, what: &'static str, a: u64, b: u64) {
        op.event(what, self.id as u64, a);
        let mut h = self.ghost.history.lock().unwrap_or_else(|e| e.into_inner());
        let e = Event {
            worker: op.cx.worker(),
            what,
            a,
            b,
        };
        let (ring, next) = &mut *h;
        if ring.len() < HISTORY {
            ring.push(e);
        } else {
            ring[*next] = e;
        }
        *next = (*next + 1) % HISTORY;
    }

    /// How the cache came to be valid while inactive, from its history: the last
    /// act that left it inactive (`init`, `deactivate`) and the last that made it
    /// valid (an install), in the order they happened. Part of the message of every
    /// "valid but inactive" violation, so that two races that both end there read
    /// differently (and `shrink`, which keeps a failure's message, keeps its race).
    pub fn how_valid_inactive(&self) -> String {
        let h = self.ghost.history.lock().unwrap_or_else(|e| e.into_inner());
        let (ring, next) = &*h;
        let (a, b) = ring.split_at((*next).min(ring.len()));
        let events: Vec<&Event> = b.iter().chain(a).collect();
        let last = |f: &dyn Fn(&str) -> bool| events.iter().rposition(|e| f(e.what));
        let inactive = last(&|w| w.contains(": init") || w.contains(": deactivate"));
        let valid = last(&|w| w.contains("install") || w.contains("keeps pfn"));
        let text = |i: usize| {
            let e = events[i];
            format!(
                "`{}` (worker {})",
                crate::model::event_text(e.what, self.id as u64, e.a),
                e.worker
            )
        };
        match (inactive, valid) {
            (Some(i), Some(v)) if i < v => format!(
                "made valid after it was made inactive: {}, then {}",
                text(i),
                text(v)
            ),
            (Some(i), Some(v)) => format!(
                "valid from before it was made inactive: {}, then {}",
                text(v),
                text(i)
            ),
            (None, Some(v)) => format!("made valid by {}", text(v)),
            (Some(i), None) => format!("no install since {}", text(i)),
            (None, None) => "no install in its history".to_string(),
        }
    }

    pub fn violation(&self, id: &'static str, msg: String) -> Violation {
        Violation::new(id, msg).with_state(self.describe())
    }

    /// The fields (read without preemption points) and the recent history.
    pub fn describe(&self) -> String {
        let gpa = self.gpa.peek();
        let mut s = format!(
            "gpc{}: active {} valid {} on_list {} gpa {} uhva {:#x} memslot {} generation {:#x} pfn {} khva {}\n  \
             lock word {} (readers {}, writer {}), refresh_lock {}\n  history (oldest first):\n",
            self.id,
            self.active.peek(),
            self.valid.peek(),
            self.on_list.peek(),
            if gpa == INVALID_GPA { "INVALID".to_string() } else { format!("{gpa:#x}") },
            self.uhva.peek(),
            self.memslot.peek().checked_sub(1).map_or("NULL".to_string(), |s| s.to_string()),
            self.generation.peek(),
            match self.pfn.peek() {
                PFN_ERR => "ERR".to_string(),
                p => p.to_string(),
            },
            Khva(self.khva.peek()),
            self.lock_idx.peek(),
            self.lock_readers(),
            self.locks[self.lock_idx.peek() as usize % LOCK_SLOTS].is_write_locked(),
            if self.refresh_lock.is_locked() { "held" } else { "free" },
        );
        let h = self.ghost.history.lock().unwrap_or_else(|e| e.into_inner());
        let (ring, next) = &*h;
        let (a, b) = ring.split_at((*next).min(ring.len()));
        for e in b.iter().chain(a) {
            // Event formats name the recorder's arguments: the cache, then `a`.
            let what = crate::model::event_text(e.what, self.id as u64, e.a);
            let _ = writeln!(s, "    worker {:<3} {what:<40} b={:#x}", e.worker, e.b);
        }
        s
    }
}
