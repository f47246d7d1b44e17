//! kvmtorture: a torture harness for the memory-management race protocols of KVM and
//! the powerpc hash MMU.
//!
//! Layers, from the bottom: [`sched`] (the preemption-point hook), [`sync`]
//! (kernel-style primitives on real atomics), [`model`] (one protocol per module,
//! each with a fixed and buggy variants), [`engine`] (the torture loop), [`scenario`]
//! (TOML + flags → a validated run), [`report`] (results directory, summaries,
//! progress) and [`app`] (the commands `main.rs` dispatches to).
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod duration;
pub mod engine;
pub mod error;
pub mod interrupt;
pub mod model;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod scenario_set;
pub mod sched;
pub mod settings;
pub mod status;
pub mod sync;
