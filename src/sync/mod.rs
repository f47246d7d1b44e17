//! Kernel-style synchronisation on real atomics.
//!
//! Every operation is a preemption point ([`crate::sched::point`]) and every wait is a
//! [`Backoff`] loop, so the same primitives serve stress mode
//! (real contention plus injected delays) and can be driven by a scheduler. Locks are
//! *raw* — `lock`/`unlock` rather than RAII only — because the kernel paths being
//! modelled drop and retake locks in the middle of a function (`hva_to_pfn_retry`,
//! `kvmppc_run_vcpu` around `kvmppc_hv_setup_htab_rma`). There is no `unsafe` here:
//! data-carrying locks keep their data in a std `Mutex` that the raw lock makes
//! uncontended.

pub mod atomic;
mod backoff;
pub mod bitlock;
mod cpus;
pub mod holder;
pub mod mutex;
pub mod rwlock;
pub mod spinlock;
pub mod srcu;
mod waitq;

/// The preemption-point hook, re-exported so that models reach the scheduler only
/// through this facade (as shuttle's models see only its `sync` module).
pub use crate::sched::{point, Site};
pub use atomic::{AtomicBool, AtomicU32, AtomicU64};
pub use backoff::Backoff;
pub use cpus::Cpus;
pub use mutex::Mutex;
pub use rwlock::RawRwLock;
pub use spinlock::{RawSpinLock, SpinLock};
pub use srcu::Srcu;

/// Site-name prefixes of the primitives in this module (and of the engine's stutter
/// barrier): their steps are how a protocol step is carried out, not the protocol.
const PRIMITIVE_SITES: &[&str] = &[
    "atomic.", "smp_mb", "spin.", "rwlock.", "srcu.", "bitlock.", "stutter.",
];

/// Whether a preemption point named `name` belongs to a synchronisation primitive
/// rather than to a model's protocol (a `crate::window!`/`crate::point!` site or a
/// model's own wait). The protocol view leaves these out.
pub fn is_primitive_site(name: &str) -> bool {
    PRIMITIVE_SITES.iter().any(|p| name.starts_with(p))
}
