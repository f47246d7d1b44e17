//! Atomics facade: std atomics whose every access is a preemption point.
//!
//! Models use these for shared protocol state so that a scheduler can interleave
//! threads between any two accesses, exactly where two CPUs could. Ghost state and
//! statistics that are not part of the protocol use std atomics directly, so they add
//! no scheduling points. Each method is `#[track_caller]`: the point's site is the
//! model's source line.

use crate::sched::{point, Site};
use std::sync::atomic::{self, Ordering};

macro_rules! facade {
    ($name:ident, $std:ty, $t:ty) => {
        #[derive(Debug, Default)]
        pub struct $name($std);

        impl $name {
            pub const fn new(v: $t) -> Self {
                Self(<$std>::new(v))
            }

            #[track_caller]
            pub fn load(&self, o: Ordering) -> $t {
                point(Site::read("atomic.load"));
                self.0.load(o)
            }

            #[track_caller]
            pub fn store(&self, v: $t, o: Ordering) {
                point(Site::new("atomic.store"));
                self.0.store(v, o)
            }

            #[track_caller]
            pub fn swap(&self, v: $t, o: Ordering) -> $t {
                point(Site::new("atomic.swap"));
                self.0.swap(v, o)
            }

            #[track_caller]
            pub fn compare_exchange(&self, cur: $t, new: $t, ok: Ordering, fail: Ordering) -> Result<$t, $t> {
                point(Site::new("atomic.cas"));
                self.0.compare_exchange(cur, new, ok, fail)
            }

            /// Read without a preemption point: for invariant checks and dumps only,
            /// never for protocol decisions.
            pub fn peek(&self) -> $t {
                self.0.load(Ordering::SeqCst)
            }
        }
    };
}

macro_rules! facade_int {
    ($name:ident, $t:ty) => {
        impl $name {
            #[track_caller]
            pub fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                point(Site::new("atomic.fetch_add"));
                self.0.fetch_add(v, o)
            }

            #[track_caller]
            pub fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                point(Site::new("atomic.fetch_sub"));
                self.0.fetch_sub(v, o)
            }

            #[track_caller]
            pub fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                point(Site::new("atomic.fetch_or"));
                self.0.fetch_or(v, o)
            }

            #[track_caller]
            pub fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                point(Site::new("atomic.fetch_and"));
                self.0.fetch_and(v, o)
            }
        }
    };
}

facade!(AtomicU64, atomic::AtomicU64, u64);
facade!(AtomicU32, atomic::AtomicU32, u32);
facade!(AtomicBool, atomic::AtomicBool, bool);
facade_int!(AtomicU64, u64);
facade_int!(AtomicU32, u32);

/// A full memory barrier (`smp_mb()`), also a preemption point.
#[track_caller]
pub fn fence() {
    point(Site::new("smp_mb"));
    atomic::fence(Ordering::SeqCst);
}
