//! Kernel-style synchronisation on real atomics.
//!
//! Every operation is a preemption point ([`crate::sched::point`]) and every wait is a
//! [`Backoff`](crate::sched::Backoff) loop, so the same primitives serve stress mode
//! (real contention plus injected delays) and can be driven by a scheduler. Locks are
//! *raw* — `lock`/`unlock` rather than RAII only — because the kernel paths being
//! modelled drop and retake locks in the middle of a function (`hva_to_pfn_retry`,
//! `kvmppc_run_vcpu` around `kvmppc_hv_setup_htab_rma`). There is no `unsafe` here:
//! data-carrying locks keep their data in a std `Mutex` that the raw lock makes
//! uncontended.

pub mod atomic;
pub mod bitlock;
pub mod mutex;
pub mod rwlock;
pub mod spinlock;
pub mod srcu;

pub use atomic::{AtomicBool, AtomicU32, AtomicU64};
pub use mutex::Mutex;
pub use rwlock::RawRwLock;
pub use spinlock::{RawSpinLock, SpinLock};
pub use srcu::Srcu;
