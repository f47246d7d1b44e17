//! `struct mutex`: a sleeping lock.
//!
//! A kernel mutex differs from a spin lock only in what a waiter does with its CPU:
//! it sleeps on the mutex's wait list until the unlock hands over. Here a waiter goes
//! through [`Backoff`](crate::sync::Backoff) like a spin lock's (its rounds are the
//! det scheduler's wait points), but where the backoff would sleep for a fixed time it
//! sleeps on the lock's own queue, woken by the unlock: with a thousand vCPU threads
//! waiting for `kvm->lock` through a resize commit, sleeping for a fixed time kept all
//! of them cycling through the run queue.

/// A mutex that owns the data it protects (`kvm->lock`).
pub type Mutex<T> = super::spinlock::Lock<super::waitq::WaitQueue, T>;
/// A raw mutex (`gpc->refresh_lock`).
pub type RawMutex = super::spinlock::RawLock<super::waitq::WaitQueue>;
