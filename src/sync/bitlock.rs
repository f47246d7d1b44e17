//! A lock bit inside a word that also carries data.
//!
//! The HPTE V word holds `HPTE_V_HVLOCK` beside `VALID`/`ABSENT`, and an rmap word holds
//! `KVMPPC_RMAP_LOCK_BIT` beside the chain head; see `try_lock_hpte()` and `lock_rmap()`
//! in arch/powerpc/include/asm/kvm_book3s_64.h. Unlock is a release store of the whole
//! word with the bit clear, which is how the kernel publishes a new HPTE and unlocks in
//! one store.

use super::AtomicU64;
use crate::sync::Backoff;
use std::sync::atomic::Ordering;

/// Sets `lock` in `word` only if none of `lock | forbid` is set, in one CAS — the shape
/// of `try_lock_hpte(hpte, bits)`. Returns the word as it was before locking.
#[track_caller]
pub fn try_lock(word: &AtomicU64, lock: u64, forbid: u64) -> Option<u64> {
    let old = word.load(Ordering::Relaxed);
    if old & (lock | forbid) != 0 {
        return None;
    }
    word.compare_exchange(old, old | lock, Ordering::Acquire, Ordering::Relaxed)
        .ok()
}

/// Spins until `lock` can be set in `word`; returns the word before locking.
#[track_caller]
pub fn lock(word: &AtomicU64, lock: u64) -> u64 {
    let mut b = Backoff::new("bitlock.wait");
    loop {
        if let Some(old) = try_lock(word, lock, 0) {
            return old;
        }
        b.spin();
    }
}

/// Stores `value` (which must have `lock` clear) with release ordering: unlocks and
/// publishes in one store.
#[track_caller]
pub fn unlock_store(word: &AtomicU64, lock: u64, value: u64) {
    debug_assert_eq!(value & lock, 0, "unlock_store with the lock bit set");
    word.store(value & !lock, Ordering::Release);
}
