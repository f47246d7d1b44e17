//! `struct mutex`: a sleeping lock.
//!
//! A kernel mutex differs from a spin lock only in what a waiter does with its CPU.
//! Here every waiter goes through [`Backoff`](crate::sync::Backoff), which already
//! escalates from spinning to yielding to sleeping, so the mutex *is* the spin lock
//! under the name the kernel code uses (`kvm->lock`, `gpc->refresh_lock`).

pub type Mutex<T> = super::SpinLock<T>;
pub type RawMutex = super::RawSpinLock;
