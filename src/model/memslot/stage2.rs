//! The arm64 stage-2 page table, two levels: last-level tables of [`TABLE_GFNS`]
//! leaves, allocated on demand and freed when their last leaf goes.
//!
//! The walker rules the race depends on (arch/arm64/kvm/hyp/pgtable.c):
//! - `kvm_pgtable_stage2_map()` from a fault has a memcache and may allocate a table;
//!   from `kvm_set_spte_gfn()` it has none, so `stage2_map_walk_leaf()` returns
//!   -ENOMEM for a missing table and maps nothing, but installs a leaf in an existing
//!   table even where the leaf was empty;
//! - `kvm_pgtable_stage2_unmap()` frees a table whose valid count reaches zero.
//!
//! So once B's leaves are flushed, a change_pte can map B's gfn only while slot A's
//! leaves keep the shared table alive. Faults map under `mmu_lock` for read
//! (concurrently, with cmpxchg on the ptes); the inner lock stands in for those
//! atomic pte updates and is not a preemption point.

use super::slots::TABLE_GFNS;
use crate::model::mem::Pfn;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::ops::Range;
use std::sync::Mutex;

/// A stage-2 leaf: the host page it maps, and that page's arena generation when it
/// was mapped (ghost, so a freed-and-reused page is told apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Leaf {
    pub pfn: Pfn,
    pub gen: u64,
}

#[derive(Debug, Default)]
struct Table {
    leaf: [Option<Leaf>; TABLE_GFNS as usize],
    /// The walker's count of valid entries (the refcount of the table page).
    valid: usize,
}

/// What `kvm_pgtable_stage2_map()` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mapped {
    Installed,
    /// No table and no memcache: -ENOMEM, nothing mapped.
    NoTable,
}

#[derive(Debug, Default)]
pub(super) struct Stage2 {
    tables: Mutex<BTreeMap<u64, Table>>,
}

fn split(gfn: u64) -> (u64, usize) {
    (gfn / TABLE_GFNS, (gfn % TABLE_GFNS) as usize)
}

impl Stage2 {
    fn tables(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Table>> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hardware walk of a guest access.
    pub fn lookup(&self, gfn: u64) -> Option<Leaf> {
        let (t, i) = split(gfn);
        self.tables().get(&t).and_then(|t| t.leaf[i])
    }

    /// `kvm_pgtable_stage2_map()` of one page; `memcache` says whether the caller can
    /// allocate a missing table.
    pub fn map(&self, gfn: u64, leaf: Leaf, memcache: bool) -> Mapped {
        let (t, i) = split(gfn);
        let mut tables = self.tables();
        if !memcache && !tables.contains_key(&t) {
            return Mapped::NoTable;
        }
        let table = tables.entry(t).or_default();
        if table.leaf[i].replace(leaf).is_none() {
            table.valid += 1;
        }
        Mapped::Installed
    }

    /// x86's `kvm_set_pte_rmap()`: rewrites the leaf only if one is there.
    pub fn rewrite(&self, gfn: u64, leaf: Leaf) -> bool {
        let (t, i) = split(gfn);
        match self.tables().get_mut(&t).and_then(|t| t.leaf[i].as_mut()) {
            Some(l) => {
                *l = leaf;
                true
            }
            None => false,
        }
    }

    /// `kvm_pgtable_stage2_unmap()` of `gfns`: clears leaves, frees emptied tables.
    /// Returns how many leaves it cleared.
    pub fn unmap(&self, gfns: Range<u64>) -> usize {
        let mut tables = self.tables();
        let mut cleared = 0;
        for gfn in gfns {
            let (t, i) = split(gfn);
            let Some(table) = tables.get_mut(&t) else { continue };
            if table.leaf[i].take().is_some() {
                cleared += 1;
                table.valid -= 1;
                if table.valid == 0 {
                    tables.remove(&t);
                }
            }
        }
        cleared
    }

    /// Every leaf, in gfn order (ghost reverse map and checks).
    pub fn leaves(&self) -> Vec<(u64, Leaf)> {
        let tables = self.tables();
        let mut out = Vec::new();
        for (t, table) in tables.iter() {
            for (i, l) in table.leaf.iter().enumerate() {
                if let Some(l) = l {
                    out.push((t * TABLE_GFNS + i as u64, *l));
                }
            }
        }
        out
    }

    /// The gfn of a leaf that maps `pfn` as of generation `gen` (the ghost reverse map).
    pub fn mapping_of(&self, pfn: Pfn, gen: u64) -> Option<u64> {
        self.leaves()
            .into_iter()
            .find(|(_, l)| l.pfn == pfn && l.gen == gen)
            .map(|(g, _)| g)
    }

    /// Q3: each table's valid count equals its leaves and no empty table remains.
    pub fn check_tables(&self) -> Result<(), String> {
        for (t, table) in self.tables().iter() {
            let leaves = table.leaf.iter().filter(|l| l.is_some()).count();
            if leaves != table.valid || leaves == 0 {
                return Err(format!(
                    "stage-2 table {t} has valid count {} and {leaves} leaves",
                    table.valid
                ));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let mut s = String::from("stage 2:");
        for (t, table) in self.tables().iter() {
            let _ = write!(s, "\n  table {t} (valid {}):", table.valid);
            for (i, l) in table.leaf.iter().enumerate() {
                if let Some(l) = l {
                    let _ = write!(s, " gfn{}->pfn{}.g{}", *t * TABLE_GFNS + i as u64, l.pfn, l.gen);
                }
            }
        }
        s.push('\n');
        s
    }
}
