//! The guest-memory arena: host pages and kernel mappings of them, with every misuse
//! *reported*, never undefined.
//!
//! A model never holds a Rust reference to "memory". A page is an index (its pfn) into
//! a fixed pool; it has a generation that changes each time it is allocated, a
//! refcount, a count of host page-table mappings, a count of long-term pins and a count
//! of kernel mappings (`kmap`). A kernel virtual address ([`Khva`]) names a *mapping
//! slot* and its slot generation plus a byte offset, so `PAGE_ALIGN_DOWN(khva)` and
//! `khva + offset` work as in C while a stale address stays recognisable: using it after
//! `kunmap()`, while the page is free, or past the end of the page is a [`Violation`]
//! carrying the page's recent history, never a crash.
//!
//! A mapping maps the *physical* page, as `kmap()` does: it takes no reference, and
//! after the page is freed and reallocated the same mapping reaches the new contents.
//! That is not an error by itself — `hva_to_pfn_retry()` legitimately reuses its old
//! khva when GUP returns the same pfn, whatever happened to the page in between — so
//! whether a reallocated page is still the *right* page is the caller's invariant
//! (pfncache's I4: the host still maps the cache's hva to it). The generation at
//! `kmap()` time is kept to say so in reports.
//!
//! The kernel objects behind it: `struct page` refcounts (`get_page`/`put_page`,
//! `kvm_release_page_clean()`), the pin a pre-85165781 `gfn_to_pfn_cache` held on its
//! pfn, and `kmap()`/`kunmap()` as used by `gpc_map()`/`gpc_unmap()` in
//! virt/kvm/pfncache.c. Invariant ids are those of spec/pfncache.md: M1 (refcount floor),
//! M2 (kmap count, dead token), M4 (double free), I3 (access through a dead or NULL
//! mapping), I4 (access to a freed page), I7 (access past the end of the page).

use super::Violation;
use crate::sync::spinlock::SpinGuard;
use crate::sync::SpinLock;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64 as StdU64, Ordering};

pub const PAGE_SIZE: u64 = 4096;
const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// A host page frame number: an index into the arena.
pub type Pfn = u64;

/// `KVM_PFN_ERR_FAULT`: no page.
pub const PFN_ERR: Pfn = u64::MAX;

/// Events kept per page for violation reports.
const HISTORY: usize = 16;

/// Bits of a [`Khva`]: offset in the page, mapping slot, slot generation.
const SLOT_SHIFT: u32 = 12;
const SLOT_BITS: u32 = 16;
const GEN_SHIFT: u32 = SLOT_SHIFT + SLOT_BITS;
const GEN_MASK: u64 = (1 << 32) - 1;

/// A kernel virtual address inside a `kmap()` of a page, or NULL.
///
/// Packs (slot generation, slot, offset) so that the address arithmetic of
/// pfncache.c (`khva - offset_in_page(khva)`, `old_khva + page_offset`) is plain
/// integer arithmetic, and NULL is 0 because slot generations start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Khva(pub u64);

impl Khva {
    pub const NULL: Khva = Khva(0);

    pub fn is_null(self) -> bool {
        self.0 == 0
    }

    /// `PAGE_ALIGN_DOWN(khva)`.
    pub fn base(self) -> Khva {
        Khva(self.0 & !PAGE_MASK)
    }

    /// `offset_in_page(khva)`.
    pub fn offset(self) -> u64 {
        self.0 & PAGE_MASK
    }

    /// The address `off` bytes into this one's page (`old_khva + page_offset` on a
    /// page-aligned khva). NULL stays NULL, as `NULL + off` would be caught by the
    /// first dereference anyway.
    pub fn with_offset(self, off: u64) -> Khva {
        if self.is_null() {
            self
        } else {
            Khva(self.base().0 | (off & PAGE_MASK))
        }
    }

    fn slot(self) -> usize {
        ((self.0 >> SLOT_SHIFT) & ((1 << SLOT_BITS) - 1)) as usize
    }

    fn slot_gen(self) -> u64 {
        (self.0 >> GEN_SHIFT) & GEN_MASK
    }

    fn new(slot: usize, gen: u64) -> Khva {
        Khva((gen & GEN_MASK) << GEN_SHIFT | (slot as u64) << SLOT_SHIFT)
    }
}

impl std::fmt::Display for Khva {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_null() {
            f.write_str("NULL")
        } else {
            write!(f, "map{}.g{}+{:#x}", self.slot(), self.slot_gen(), self.offset())
        }
    }
}

/// One line of a page's history.
#[derive(Debug, Clone, Copy)]
struct Event {
    /// Arena-wide order of events, so histories of two pages can be interleaved.
    at: u64,
    what: &'static str,
    /// Who did it: a free-form tag from the caller (e.g. "gpc2 refresh").
    why: &'static str,
    gen: u64,
    refcount: i64,
}

/// A bounded ring of the last [`HISTORY`] events.
#[derive(Debug, Default)]
struct Ring {
    events: Vec<Event>,
    next: usize,
}

impl Ring {
    fn push(&mut self, e: Event) {
        if self.events.len() < HISTORY {
            self.events.push(e);
        } else {
            self.events[self.next] = e;
        }
        self.next = (self.next + 1) % HISTORY;
    }

    fn in_order(&self) -> impl Iterator<Item = &Event> {
        let (a, b) = self.events.split_at(self.next.min(self.events.len()));
        b.iter().chain(a.iter())
    }
}

#[derive(Debug, Default)]
struct Page {
    /// Bumped at every allocation: a mapping made before a free names the old one.
    gen: u64,
    allocated: bool,
    refcount: i64,
    /// Host page-table entries pointing here (the refcount floor, M1).
    mapcount: i64,
    /// Long-term references held by caches (pinning era).
    pins: i64,
    kmaps: i64,
    history: Ring,
}

/// What a page looks like now (for checks and dumps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageState {
    pub gen: u64,
    pub allocated: bool,
    pub refcount: i64,
    pub mapcount: i64,
    pub pins: i64,
    pub kmaps: i64,
}

impl std::fmt::Display for PageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} gen {} ref {} map {} pin {} kmap {}",
            if self.allocated { "allocated" } else { "FREE" },
            self.gen,
            self.refcount,
            self.mapcount,
            self.pins,
            self.kmaps
        )
    }
}

#[derive(Debug, Default)]
struct MapSlot {
    gen: u64,
    live: bool,
    pfn: Pfn,
    page_gen: u64,
}

/// The fixed pool of pages and kernel mapping slots.
pub struct Arena {
    pages: Vec<SpinLock<Page>>,
    free_pages: SpinLock<Vec<Pfn>>,
    maps: Vec<SpinLock<MapSlot>>,
    free_maps: SpinLock<Vec<usize>>,
    /// Ghost clock ordering history events (not protocol state).
    clock: StdU64,
}

impl Arena {
    /// `pages` free pages and `maps` kernel mapping slots (at most 2^16).
    pub fn new(pages: usize, maps: usize) -> Self {
        let maps = maps.min(1 << SLOT_BITS);
        Arena {
            pages: (0..pages).map(|_| SpinLock::new(Page::default())).collect(),
            // Popped from the end: pfn 0 first, and a freed page is the next one reused.
            free_pages: SpinLock::new((0..pages as Pfn).rev().collect()),
            maps: (0..maps).map(|_| SpinLock::new(MapSlot::default())).collect(),
            free_maps: SpinLock::new((0..maps).rev().collect()),
            clock: StdU64::new(0),
        }
    }

    pub fn npages(&self) -> usize {
        self.pages.len()
    }

    fn page(&self, pfn: Pfn) -> Option<&SpinLock<Page>> {
        self.pages.get(usize::try_from(pfn).ok()?)
    }

    /// The page of `pfn`, or invariant `inv` reported for an operation (`what`) on a
    /// pfn outside the arena — a wild pfn is a finding, never an out-of-bounds access.
    fn page_or(
        &self,
        pfn: Pfn,
        inv: &'static str,
        why: &'static str,
        what: &'static str,
    ) -> Result<&SpinLock<Page>, Violation> {
        self.page(pfn)
            .ok_or_else(|| Violation::new(inv, format!("{why}: {what} of pfn {pfn:#x} outside the arena")))
    }

    fn log(&self, p: &mut Page, what: &'static str, why: &'static str) {
        let at = self.clock.fetch_add(1, Ordering::Relaxed);
        let (gen, refcount) = (p.gen, p.refcount);
        p.history.push(Event {
            at,
            what,
            why,
            gen,
            refcount,
        });
    }

    /// A violation about page `pfn`, with its state and history attached.
    /// Refuses a bad access to page `pfn`: notes it in the page's history, releases the
    /// page lock (the report reads the page) and reports invariant `inv`.
    fn refuse(
        &self,
        mut p: SpinGuard<'_, Page>,
        pfn: Pfn,
        inv: &'static str,
        why: &'static str,
        note: &'static str,
        msg: String,
    ) -> Violation {
        self.log(&mut p, note, why);
        drop(p);
        self.violation(inv, pfn, msg)
    }

    fn violation(&self, id: &'static str, pfn: Pfn, msg: String) -> Violation {
        Violation::new(id, msg).with_state(self.describe(pfn))
    }

    /// Allocates a page for a host page-table entry: refcount 1, mapcount 1.
    /// `None` if the pool is exhausted.
    #[track_caller]
    pub fn alloc_mapped(&self, why: &'static str) -> Option<Pfn> {
        let pfn = self.free_pages.lock().pop()?;
        let mut p = self.pages[pfn as usize].lock();
        p.gen += 1;
        p.allocated = true;
        p.refcount = 1;
        p.mapcount = 1;
        self.log(&mut p, "alloc+map", why);
        Some(pfn)
    }

    /// A host page-table entry stops pointing at `pfn`: drops the mapping and its ref.
    #[track_caller]
    pub fn unmap_host(&self, pfn: Pfn, why: &'static str) -> Result<(), Violation> {
        let page = self.page_or(pfn, "M1", why, "host unmap")?;
        {
            let mut p = page.lock();
            if !p.allocated || p.mapcount <= 0 {
                return Err(self.refuse(
                    p,
                    pfn,
                    "M1",
                    why,
                    "BAD host unmap",
                    format!("{why}: host unmap of unmapped pfn {pfn}"),
                ));
            }
            p.mapcount -= 1;
            self.log(&mut p, "host unmap", why);
        }
        self.put(pfn, why)
    }

    /// One more host page-table entry comes to point at the live page `pfn`
    /// (`get_page()` + `page_add_anon_rmap()`, as `replace_page()` does for a KSM page).
    #[track_caller]
    pub fn map_host(&self, pfn: Pfn, why: &'static str) -> Result<(), Violation> {
        let page = self.page_or(pfn, "M1", why, "host map")?;
        let mut p = page.lock();
        if !p.allocated || p.refcount <= 0 {
            return Err(self.refuse(
                p,
                pfn,
                "M1",
                why,
                "BAD host map",
                format!("{why}: host map of free pfn {pfn}"),
            ));
        }
        p.refcount += 1;
        p.mapcount += 1;
        self.log(&mut p, "host map", why);
        Ok(())
    }

    /// `get_page_unless_zero()`, as GUP does: takes a reference if the page is live.
    #[track_caller]
    pub fn try_get(&self, pfn: Pfn, why: &'static str) -> bool {
        let Some(page) = self.page(pfn) else { return false };
        let mut p = page.lock();
        if !p.allocated || p.refcount <= 0 {
            return false;
        }
        p.refcount += 1;
        self.log(&mut p, "get", why);
        true
    }

    /// `put_page()`: drops a reference; the last one frees the page (M1, M4).
    #[track_caller]
    pub fn put(&self, pfn: Pfn, why: &'static str) -> Result<(), Violation> {
        let page = self.page_or(pfn, "M4", why, "put")?;
        let mut p = page.lock();
        if !p.allocated {
            return Err(self.refuse(
                p,
                pfn,
                "M4",
                why,
                "BAD put of free page",
                format!("{why}: put of pfn {pfn}, already freed (double free)"),
            ));
        }
        if p.refcount - 1 < p.mapcount + p.pins {
            return Err(self.refuse(
                p,
                pfn,
                "M1",
                why,
                "BAD put below floor",
                format!("{why}: put of pfn {pfn} would drop its refcount below host mappings + pins"),
            ));
        }
        p.refcount -= 1;
        if p.refcount > 0 {
            self.log(&mut p, "put", why);
            return Ok(());
        }
        p.allocated = false;
        self.log(&mut p, "put -> FREED", why);
        drop(p);
        self.free_pages.lock().push(pfn);
        Ok(())
    }

    /// Keeps one reference the caller took with [`try_get`](Self::try_get) as a
    /// long-term pin (the pinning-era cache keeping its GUP reference).
    #[track_caller]
    pub fn keep_as_pin(&self, pfn: Pfn, why: &'static str) -> Result<(), Violation> {
        let page = self.page_or(pfn, "M1", why, "pin")?;
        let mut p = page.lock();
        if !p.allocated || p.refcount < p.mapcount + p.pins + 1 {
            return Err(self.refuse(
                p,
                pfn,
                "M1",
                why,
                "BAD pin without a ref",
                format!("{why}: pin of pfn {pfn} without a spare reference"),
            ));
        }
        p.pins += 1;
        self.log(&mut p, "pin", why);
        Ok(())
    }

    /// Drops a pin and its reference (`kvm_release_pfn()` of a pinned pfn) (M1, M4).
    #[track_caller]
    pub fn unpin(&self, pfn: Pfn, why: &'static str) -> Result<(), Violation> {
        let page = self.page_or(pfn, "M1", why, "unpin")?;
        {
            let mut p = page.lock();
            if !p.allocated {
                return Err(self.refuse(
                    p,
                    pfn,
                    "M4",
                    why,
                    "BAD unpin of free page",
                    format!("{why}: unpin of pfn {pfn}, already freed"),
                ));
            }
            if p.pins <= 0 {
                return Err(self.refuse(
                    p,
                    pfn,
                    "M1",
                    why,
                    "BAD unpin below zero",
                    format!("{why}: unpin of pfn {pfn}, which has no pin"),
                ));
            }
            p.pins -= 1;
            self.log(&mut p, "unpin", why);
        }
        self.put(pfn, why)
    }

    /// The host reclaims an idle page and at once reuses it for the same frame (a
    /// `put` to zero and a fresh allocation in one step): the generation moves, so
    /// every token or mapping taken before names a dead page. Refused (`false`)
    /// while the page is pinned, mapped by the kernel or holds an extra reference,
    /// so a pin in progress (`try_get` done, pin not yet kept) is never lost.
    #[track_caller]
    pub fn recycle(&self, pfn: Pfn, why: &'static str) -> bool {
        let Some(page) = self.page(pfn) else { return false };
        let mut p = page.lock();
        if !p.allocated || p.pins != 0 || p.kmaps != 0 || p.refcount != p.mapcount {
            return false;
        }
        self.log(&mut p, "reclaim -> FREED", why);
        p.gen += 1;
        self.log(&mut p, "reused", why);
        true
    }

    /// `kmap()`: maps a page the caller holds a reference on. `Ok(None)` if every
    /// mapping slot is in use (`gpc_map()` returning NULL).
    #[track_caller]
    pub fn kmap(&self, pfn: Pfn, why: &'static str) -> Result<Option<Khva>, Violation> {
        let page = self.page_or(pfn, "M4", why, "kmap")?;
        let Some(slot) = self.free_maps.lock().pop() else {
            return Ok(None);
        };
        let mut p = page.lock();
        if !p.allocated {
            let v = self.refuse(
                p,
                pfn,
                "M4",
                why,
                "BAD kmap of free page",
                format!("{why}: kmap of pfn {pfn}, which is free"),
            );
            self.free_maps.lock().push(slot);
            return Err(v);
        }
        p.kmaps += 1;
        self.log(&mut p, "kmap", why);
        let mut m = self.maps[slot].lock();
        m.gen = (m.gen % GEN_MASK) + 1;
        m.live = true;
        m.pfn = pfn;
        m.page_gen = p.gen;
        Ok(Some(Khva::new(slot, m.gen)))
    }

    /// `kunmap()` of the mapping `khva` lies in (M2: it must be live).
    #[track_caller]
    pub fn kunmap(&self, khva: Khva, why: &'static str) -> Result<(), Violation> {
        let slot = khva.slot();
        let pfn = {
            let Some(ms) = self.maps.get(slot).filter(|_| !khva.is_null()) else {
                return Err(Violation::new(
                    "M2",
                    format!("{why}: kunmap of invalid address {khva}"),
                ));
            };
            let mut m = ms.lock();
            if !m.live || m.gen != khva.slot_gen() {
                let pfn = m.pfn;
                drop(m);
                return Err(self.violation(
                    "M2",
                    pfn,
                    format!("{why}: kunmap of {khva}, a mapping already unmapped (last page: pfn {pfn})"),
                ));
            }
            m.live = false;
            m.pfn
        };
        let mut p = self.pages[pfn as usize].lock();
        p.kmaps -= 1;
        self.log(&mut p, "kunmap", why);
        let negative = p.kmaps < 0;
        drop(p);
        self.free_maps.lock().push(slot);
        if negative {
            return Err(self.violation("M2", pfn, format!("{why}: kmap count of pfn {pfn} below zero")));
        }
        Ok(())
    }

    /// The page a live mapping maps, or `None` if `khva` is NULL or unmapped.
    pub fn mapped_pfn(&self, khva: Khva) -> Option<Pfn> {
        if khva.is_null() {
            return None;
        }
        let m = self.maps.get(khva.slot())?.lock();
        (m.live && m.gen == khva.slot_gen()).then_some(m.pfn)
    }

    /// Reads or writes `len` bytes at `khva` (I3: mapped; I4: the page is not free;
    /// I7: within the page).
    #[track_caller]
    pub fn access(&self, khva: Khva, len: u64, why: &'static str) -> Result<(), Violation> {
        if khva.is_null() {
            return Err(Violation::new("I3", format!("{why}: dereference of a NULL khva")));
        }
        let (pfn, page_gen) = {
            let Some(ms) = self.maps.get(khva.slot()) else {
                return Err(Violation::new(
                    "I3",
                    format!("{why}: access through invalid address {khva}"),
                ));
            };
            let m = ms.lock();
            if !m.live || m.gen != khva.slot_gen() {
                let pfn = m.pfn;
                drop(m);
                return Err(self.violation(
                    "I3",
                    pfn,
                    format!("{why}: access through {khva} after kunmap (last page there: pfn {pfn})"),
                ));
            }
            (m.pfn, m.page_gen)
        };
        let p = self.pages[pfn as usize].lock();
        let (allocated, gen) = (p.allocated, p.gen);
        drop(p);
        if !allocated {
            return Err(self.violation(
                "I4",
                pfn,
                format!("{why}: use after free: {khva} maps pfn {pfn} (gen {page_gen} when mapped, now {gen}), which is free"),
            ));
        }
        if khva.offset() + len > PAGE_SIZE {
            return Err(self.violation(
                "I7",
                pfn,
                format!("{why}: access of {len} bytes at {khva} runs past the end of the page"),
            ));
        }
        Ok(())
    }

    pub fn state(&self, pfn: Pfn) -> Option<PageState> {
        let p = self.page(pfn)?.lock();
        Some(PageState {
            gen: p.gen,
            allocated: p.allocated,
            refcount: p.refcount,
            mapcount: p.mapcount,
            pins: p.pins,
            kmaps: p.kmaps,
        })
    }

    /// Live kernel mappings (quiescent checks: every one must be owned by someone).
    pub fn live_maps(&self) -> usize {
        self.maps.iter().filter(|m| m.lock().live).count()
    }

    /// Page `pfn`'s state and recent history, oldest first.
    pub fn describe(&self, pfn: Pfn) -> String {
        let Some(page) = self.page(pfn) else {
            return format!("pfn {pfn:#x}: not a page of the arena\n");
        };
        let p = page.lock();
        let st = PageState {
            gen: p.gen,
            allocated: p.allocated,
            refcount: p.refcount,
            mapcount: p.mapcount,
            pins: p.pins,
            kmaps: p.kmaps,
        };
        let mut s = format!("page pfn {pfn}: {st}\n  history (oldest first):\n");
        for e in p.history.in_order() {
            let _ = writeln!(
                s,
                "    #{:<6} gen {:<3} ref {:<2} {:<22} by {}",
                e.at, e.gen, e.refcount, e.what, e.why
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> Arena {
        Arena::new(4, 4)
    }

    #[test]
    fn alloc_free_and_reuse_bump_the_generation() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        let g = a.state(p).unwrap().gen;
        a.unmap_host(p, "t").unwrap();
        assert!(!a.state(p).unwrap().allocated);
        let q = a.alloc_mapped("t").unwrap();
        assert_eq!(p, q, "the last freed page is reused first");
        assert_eq!(a.state(q).unwrap().gen, g + 1);
    }

    #[test]
    fn a_put_below_the_host_mapping_floor_is_m1() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        let v = a.put(p, "t").unwrap_err();
        assert_eq!(v.invariant, "M1");
        assert!(v.state.contains("alloc+map"), "history attached: {}", v.state);
        assert!(a.state(p).unwrap().allocated, "the bad put was not applied");
    }

    #[test]
    fn a_double_free_is_m4() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        assert!(a.try_get(p, "gup"));
        a.unmap_host(p, "t").unwrap();
        a.put(p, "t").unwrap();
        assert!(!a.try_get(p, "gup"), "no reference on a freed page");
        let v = a.put(p, "t").unwrap_err();
        assert_eq!(v.invariant, "M4");
        assert!(v.state.contains("put -> FREED"), "{}", v.state);
    }

    #[test]
    fn pins_count_in_the_floor_and_cannot_go_negative() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        assert!(a.try_get(p, "gup"));
        a.keep_as_pin(p, "cache").unwrap();
        assert_eq!(a.put(p, "stray").unwrap_err().invariant, "M1");
        a.unpin(p, "cache").unwrap();
        assert_eq!(a.unpin(p, "cache").unwrap_err().invariant, "M1");
        assert_eq!(a.state(p).unwrap().refcount, 1);
    }

    #[test]
    fn kunmap_twice_is_m2_and_the_slot_is_reused_with_a_new_generation() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        let k = a.kmap(p, "t").unwrap().unwrap();
        a.kunmap(k, "t").unwrap();
        assert_eq!(a.kunmap(k, "t").unwrap_err().invariant, "M2");
        let k2 = a.kmap(p, "t").unwrap().unwrap();
        assert_ne!(k, k2);
        assert_eq!(a.mapped_pfn(k), None);
        assert_eq!(a.mapped_pfn(k2.with_offset(0x80)), Some(p));
        assert_eq!(a.live_maps(), 1);
    }

    #[test]
    fn accesses_are_checked() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        let k = a.kmap(p, "t").unwrap().unwrap();
        a.access(k.with_offset(0x100), 64, "t").unwrap();
        assert_eq!(
            a.access(k.with_offset(0xff0), 64, "t").unwrap_err().invariant,
            "I7"
        );
        assert_eq!(a.access(Khva::NULL, 8, "t").unwrap_err().invariant, "I3");
        // Freed: the kmap did not pin it.
        a.unmap_host(p, "t").unwrap();
        let v = a.access(k, 8, "t").unwrap_err();
        assert_eq!(v.invariant, "I4");
        assert!(v.message.contains("gen 1 when mapped"), "{}", v.message);
        // Reallocated: the mapping reaches the page again (who may use it is the
        // caller's invariant).
        let q = a.alloc_mapped("t").unwrap();
        assert_eq!(p, q);
        a.access(k, 8, "t").unwrap();
        a.kunmap(k, "t").unwrap();
        assert_eq!(a.access(k, 8, "t").unwrap_err().invariant, "I3");
    }

    #[test]
    fn recycle_moves_the_generation_only_of_an_idle_page() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        let g = a.state(p).unwrap().gen;
        assert!(a.try_get(p, "pin"));
        assert!(
            !a.recycle(p, "m"),
            "a page with a reference in flight is not reclaimed"
        );
        a.keep_as_pin(p, "pin").unwrap();
        assert!(!a.recycle(p, "m"), "a pinned page is not reclaimed");
        a.unpin(p, "pin").unwrap();
        assert!(a.recycle(p, "m"));
        let st = a.state(p).unwrap();
        assert!(st.allocated);
        assert_eq!(st.gen, g + 1);
        assert!(a.describe(p).contains("reclaim -> FREED"));
    }

    #[test]
    fn exhausted_pools_fail_softly() {
        let a = Arena::new(1, 1);
        let p = a.alloc_mapped("t").unwrap();
        assert_eq!(a.alloc_mapped("t"), None);
        let _k = a.kmap(p, "t").unwrap().unwrap();
        assert_eq!(a.kmap(p, "t").unwrap(), None);
    }

    #[test]
    fn khva_arithmetic_matches_c() {
        let k = Khva::new(3, 7).with_offset(0x234);
        assert_eq!(k.offset(), 0x234);
        assert_eq!(k.base().with_offset(0x10).offset(), 0x10);
        assert_eq!(k.base().slot(), 3);
        assert_eq!(Khva::NULL.with_offset(0x10), Khva::NULL);
        assert_eq!(k.to_string(), "map3.g7+0x234");
    }

    #[test]
    fn history_is_bounded() {
        let a = arena();
        let p = a.alloc_mapped("t").unwrap();
        for _ in 0..100 {
            assert!(a.try_get(p, "gup"));
            a.put(p, "t").unwrap();
        }
        let d = a.describe(p);
        assert_eq!(
            d.lines().filter(|l| l.trim_start().starts_with('#')).count(),
            HISTORY
        );
    }
}
