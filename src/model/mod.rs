//! The protocol models and their registry.
//!
//! A model is a table of operations plus its invariants, in the manner of
//! rcutorture's `struct rcu_torture_ops`: the engine runs operations on worker
//! threads and never looks inside; a model never sees threads, clocks or reports.
//! It checks its cheap invariants inside each operation and returns a [`Violation`]
//! the moment one fails.

pub mod hpt;
pub mod mem;
pub mod notifier;
pub mod pfncache;
pub mod testing;

use crate::engine::OpCtx;
use std::sync::Arc;

/// One kind of operation a worker can run.
#[derive(Debug, Clone, Copy)]
pub struct OpSpec {
    pub name: &'static str,
    /// The role (a bit index into a worker's role mask) that runs this op.
    pub role: u32,
    /// Default weight within the role; scenarios may override it by name.
    pub weight: u32,
}

/// An invariant that failed, with what a kernel developer needs to see.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The invariant's id from the spec (e.g. `R1`, `I3`, `Q2`).
    pub invariant: &'static str,
    pub message: String,
    /// The relevant state at the moment of failure (entries, chains, histories).
    pub state: String,
}

impl Violation {
    pub fn new(invariant: &'static str, message: impl Into<String>) -> Self {
        Violation {
            invariant,
            message: message.into(),
            state: String::new(),
        }
    }

    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state = state.into();
        self
    }
}

/// A model instance under torture.
pub trait Model: Send + Sync {
    /// The operation table; indices into it are op ids.
    fn ops(&self) -> &'static [OpSpec];
    /// Role mask of each of `threads` workers. With one thread, that worker must be
    /// able to run every op (a race variant run alone must be clean, not idle).
    fn worker_roles(&self, threads: usize) -> Vec<u32>;
    /// Names of the race-window coverage counters, indexed by [`OpCtx::cover`] ids.
    fn coverage_names(&self) -> &'static [&'static str];
    /// Runs op `op` on behalf of worker `cx.worker()`, checking per-op invariants.
    fn step(&self, cx: &mut OpCtx, op: usize) -> Result<(), Violation>;
    /// Deep check while every worker is parked between operations.
    fn check_quiescent(&self) -> Result<(), Violation>;
    /// Teardown check after all workers have stopped: leaks, locks, counters at rest.
    fn finish(&self) -> Result<(), Violation>;
    /// A human-readable dump of the model's state for a failure report.
    fn dump(&self) -> String;
}

/// A variant of a model: the fixed protocol, or one historical bug.
#[derive(Debug, Clone, Copy)]
pub struct VariantInfo {
    pub name: &'static str,
    /// The kernel commit the variant is about (the fix, or the revert for a control).
    pub commit: &'static str,
    /// True if the bug can only show with two or more threads.
    pub needs_concurrency: bool,
    /// True if the variant must be caught (false for fixed and negative controls).
    pub expect_violation: bool,
    pub summary: &'static str,
}

/// What a model is built from.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub variant: &'static VariantInfo,
    pub threads: usize,
    /// Model-specific parameters from the scenario's `[params]` table.
    pub params: toml::Table,
}

/// A registered model.
pub struct ModelInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub variants: &'static [VariantInfo],
    /// The op table, available before a model is built (to validate `[mix]`).
    pub ops: fn() -> &'static [OpSpec],
    pub build: fn(&ModelConfig) -> Result<Arc<dyn Model>, String>,
}

impl std::fmt::Debug for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl ModelInfo {
    pub fn variant(&self, name: &str) -> Option<&'static VariantInfo> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// Every model kvmtorture knows.
pub fn registry() -> &'static [&'static ModelInfo] {
    static MODELS: &[&ModelInfo] = &[&hpt::INFO, &pfncache::INFO];
    MODELS
}

/// A model by name: the registry's, or the hidden scheduler self-test model
/// ([`testing`]), which `list` does not advertise.
pub fn find(name: &str) -> Option<&'static ModelInfo> {
    registry()
        .iter()
        .copied()
        .find(|m| m.name == name)
        .or_else(|| (name == testing::INFO.name).then_some(&testing::INFO))
}

/// Reads an integer parameter, rejecting a wrong type or an out-of-range value.
pub fn param_u64(
    p: &toml::Table,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    let v = match p.get(key) {
        None => default,
        Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
        Some(other) => {
            return Err(format!(
                "params.{key} must be a non-negative integer, got {other}"
            ))
        }
    };
    if !range.contains(&v) {
        return Err(format!(
            "params.{key} = {v} is out of range {}..={}",
            range.start(),
            range.end()
        ));
    }
    Ok(v)
}

/// Reads a boolean parameter.
pub fn param_bool(p: &toml::Table, key: &str, default: bool) -> Result<bool, String> {
    match p.get(key) {
        None => Ok(default),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(format!("params.{key} must be true or false, got {other}")),
    }
}

/// Rejects keys of `[params]` that the model does not know.
pub fn reject_unknown_params(p: &toml::Table, known: &[&str]) -> Result<(), String> {
    match p.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown key params.{k} (this model knows: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}
