//! The hashed page table, its reverse map and the per-page rmap words.
//!
//! Bit layout follows the kernel (arch/powerpc/include/asm/kvm_book3s_64.h,
//! asm/book3s/64/mmu-hash.h): `HPTE_V_VALID 0x01`, `HPTE_V_BOLTED 0x10`,
//! `HPTE_V_ABSENT 0x20`, `HPTE_V_HVLOCK 0x40`, AVPN from bit 7; an rmap word holds the
//! chain head in its low 32 bits, `KVMPPC_RMAP_PRESENT` at bit 32 and the lock at bit
//! 63. Every index read from shared state is bounds-checked *before* it is used: an
//! out-of-range index is the seed's oops (`kvmppc_add_revmap_chain+0x50`) and is
//! reported as R1, never turned into a panic.

use crate::model::Violation;
use crate::sync::{bitlock, AtomicU32, AtomicU64};
use std::fmt::Write;
use std::sync::atomic::Ordering::{Relaxed, Release};

pub const V_VALID: u64 = 0x01;
pub const V_BOLTED: u64 = 0x10;
pub const V_ABSENT: u64 = 0x20;
pub const V_HVLOCK: u64 = 0x40;
pub const AVPN_SHIFT: u32 = 7;

pub const RMAP_INDEX: u64 = 0xffff_ffff;
pub const RMAP_PRESENT: u64 = 1 << 32;
pub const RMAP_LOCK: u64 = 1 << 63;

/// Entries per PTEG (`HPTES_PER_GROUP`).
pub const GROUP: usize = 8;

/// The guest real page a `guest_rpte` maps (we store the gfn above the 12-bit page offset).
pub fn rpte_gfn(rpte: u64) -> u64 {
    rpte >> 12
}

/// The host page an R word names (the host real address above the 12-bit offset).
pub fn r_pfn(r: u64) -> u64 {
    r >> 12
}

pub fn avpn(v: u64) -> u64 {
    v >> AVPN_SHIFT
}

/// `struct revmap_entry`: the guest's view of the R word plus the chain links.
#[derive(Debug, Default)]
pub struct Rev {
    pub guest_rpte: AtomicU64,
    pub forw: AtomicU32,
    pub back: AtomicU32,
}

/// One HPT (`struct kvm_hpt_info`): V and R words and the rev array.
#[derive(Debug)]
pub struct Table {
    /// Model-only identity, so a fault recorded against one table is never applied to
    /// another (the spec's generation-tag caveat, both variants).
    pub gen: u64,
    pub order: u32,
    pub v: Vec<AtomicU64>,
    pub r: Vec<AtomicU64>,
    pub rev: Vec<Rev>,
}

impl Table {
    /// A zeroed table of `2^(order-4)` entries (`kvmppc_allocate_hpt`).
    pub fn new(gen: u64, order: u32) -> Self {
        let n = 1usize << (order - 4);
        Table {
            gen,
            order,
            v: (0..n).map(|_| AtomicU64::new(0)).collect(),
            r: (0..n).map(|_| AtomicU64::new(0)).collect(),
            rev: (0..n).map(|_| Rev::default()).collect(),
        }
    }

    /// `kvmppc_hpt_npte()`.
    pub fn npte(&self) -> usize {
        self.v.len()
    }

    /// PTEG index mask (`kvmppc_hpt_mask()`).
    pub fn hash_mask(&self) -> u64 {
        (1u64 << (self.order - 7)) - 1
    }

    /// First index of the primary PTEG of `va` (a stand-in for the real hash).
    pub fn group_of(&self, va: u64) -> usize {
        ((crate::rng::mix64(va) & self.hash_mask()) as usize) * GROUP
    }

    /// `try_lock_hpte(hptep, bits)`: set HVLOCK if none of `bits` is set.
    #[track_caller]
    pub fn try_lock(&self, i: usize, bits: u64) -> Option<u64> {
        bitlock::try_lock(&self.v[i], V_HVLOCK, bits & !V_HVLOCK)
    }

    /// `while (!try_lock_hpte(hptep, HPTE_V_HVLOCK)) cpu_relax();`
    #[track_caller]
    pub fn lock(&self, i: usize) -> u64 {
        bitlock::lock(&self.v[i], V_HVLOCK)
    }

    /// `unlock_hpte()` / `__unlock_hpte()`: publish V and unlock in one release store.
    #[track_caller]
    pub fn unlock(&self, i: usize, v: u64) {
        bitlock::unlock_store(&self.v[i], V_HVLOCK, v & !V_HVLOCK);
    }

    /// One entry, for reports.
    pub fn describe(&self, i: usize) -> String {
        if i >= self.npte() {
            return format!("index {i} is outside this table (npte {})", self.npte());
        }
        let v = self.v[i].peek();
        let rev = &self.rev[i];
        format!(
            "hpt gen {} [{i}] V={v:#x}{} R={:#x} guest_rpte={:#x} (gfn {}) forw={} back={}",
            self.gen,
            flags(v),
            self.r[i].peek(),
            rev.guest_rpte.peek(),
            rpte_gfn(rev.guest_rpte.peek()),
            rev.forw.peek(),
            rev.back.peek()
        )
    }

    /// Non-empty entries of this table, for state dumps.
    pub fn dump(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "hpt gen {} order {} npte {}:",
            self.gen,
            self.order,
            self.npte()
        );
        for i in 0..self.npte() {
            if self.v[i].peek() != 0 {
                let _ = writeln!(out, "  {}", self.describe(i));
            }
        }
    }
}

/// `VALID|ABSENT|BOLTED|HVLOCK` spelled out.
pub fn flags(v: u64) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (V_VALID, "VALID"),
        (V_ABSENT, "ABSENT"),
        (V_BOLTED, "BOLTED"),
        (V_HVLOCK, "HVLOCK"),
    ] {
        if v & bit != 0 {
            s.push(if s.is_empty() { '(' } else { '|' });
            s.push_str(name);
        }
    }
    if !s.is_empty() {
        s.push(')');
    }
    s
}

/// The rmap words, one per guest page (`memslot->arch.rmap`).
#[derive(Debug)]
pub struct Rmap {
    pub words: Vec<AtomicU64>,
}

impl Rmap {
    pub fn new(pages: usize) -> Self {
        Rmap {
            words: (0..pages).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// `lock_rmap()`; returns the word as locked.
    #[track_caller]
    pub fn lock(&self, gfn: u64) -> u64 {
        bitlock::lock(&self.words[gfn as usize], RMAP_LOCK)
    }

    /// `unlock_rmap()`: store `w` with the lock bit clear.
    #[track_caller]
    pub fn unlock(&self, gfn: u64, w: u64) {
        bitlock::unlock_store(&self.words[gfn as usize], RMAP_LOCK, w & !RMAP_LOCK);
    }
}

/// R1 at a use site: a chain index read from shared state must be inside the table.
pub fn check_index(t: &Table, i: u64, what: &str, gfn: u64) -> Result<usize, Violation> {
    if (i as usize) < t.npte() {
        return Ok(i as usize);
    }
    Err(Violation::new(
        "R1",
        format!(
            "{what}: rmap chain of gfn {gfn} reaches index {i}, outside the current HPT (gen {}, npte {}) — \
             the out-of-bounds rev[] access of the seed's oops",
            t.gen,
            t.npte()
        ),
    ))
}

/// `kvmppc_add_revmap_chain()`: link `i` into the chain of `gfn` (rmap locked, word
/// `w`); unlocks the rmap. Reads `rev[head]` of the *current* table, which is where
/// the seed's oops happened when the head was a stale index.
#[track_caller]
pub fn add_revmap_chain(t: &Table, rmap: &Rmap, gfn: u64, w: u64, i: usize) -> Result<(), Violation> {
    let rev = &t.rev[i];
    if w & RMAP_PRESENT != 0 {
        let head = match check_index(t, w & RMAP_INDEX, "add_revmap_chain", gfn) {
            Ok(h) => h,
            Err(v) => {
                rmap.unlock(gfn, w);
                return Err(v);
            }
        };
        let tail = t.rev[head].back.load(Relaxed);
        let tail = match check_index(t, tail as u64, "add_revmap_chain tail", gfn) {
            Ok(x) => x,
            Err(v) => {
                rmap.unlock(gfn, w);
                return Err(v);
            }
        };
        rev.forw.store(head as u32, Relaxed);
        rev.back.store(tail as u32, Relaxed);
        crate::window!("hpt.add_revmap_chain.link");
        t.rev[tail].forw.store(i as u32, Relaxed);
        t.rev[head].back.store(i as u32, Relaxed);
        rmap.unlock(gfn, w);
    } else {
        rev.forw.store(i as u32, Relaxed);
        rev.back.store(i as u32, Relaxed);
        rmap.unlock(gfn, (w & !RMAP_INDEX) | i as u64 | RMAP_PRESENT);
    }
    Ok(())
}

/// Unlinks `i` from the chain of `gfn` whose rmap word `w` is locked (the shared core
/// of `remove_revmap_chain()` and `kvmppc_unmap_hpte()`); returns the new rmap word,
/// still to be stored by the caller.
#[track_caller]
pub fn unlink(t: &Table, gfn: u64, w: u64, i: usize) -> Result<u64, Violation> {
    let rev = &t.rev[i];
    let forw = check_index(t, rev.forw.load(Relaxed) as u64, "unlink forw", gfn)?;
    let back = check_index(t, rev.back.load(Relaxed) as u64, "unlink back", gfn)?;
    t.rev[forw].back.store(back as u32, Relaxed);
    t.rev[back].forw.store(forw as u32, Relaxed);
    let head = (w & RMAP_INDEX) as usize;
    Ok(if head != i {
        w
    } else if forw == i {
        w & !(RMAP_PRESENT | RMAP_INDEX)
    } else {
        (w & !RMAP_INDEX) | forw as u64
    })
}

/// `kvmppc_unmap_hpte()` (HPTE `i` and the rmap of `gfn` both locked): unlink, and if
/// the entry is VALID make it ABSENT and invalidate it. Returns the rmap word to store.
#[track_caller]
pub fn unmap_hpte(t: &Table, gfn: u64, w: u64, i: usize, v_locked: u64) -> Result<(u64, u64), Violation> {
    let w = unlink(t, gfn, w, i)?;
    t.rev[i].forw.store(i as u32, Relaxed);
    t.rev[i].back.store(i as u32, Relaxed);
    let mut v = v_locked;
    if v & V_VALID != 0 && rpte_gfn(t.rev[i].guest_rpte.load(Relaxed)) == gfn {
        v = (v | V_ABSENT) & !V_VALID;
        t.v[i].store(v, Release);
    }
    Ok((w, v))
}
