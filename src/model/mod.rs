//! The protocol models and their registry.
//!
//! A model is a table of operations plus its invariants, in the manner of
//! rcutorture's `struct rcu_torture_ops`: the engine runs operations on worker
//! threads and never looks inside; a model never sees threads, clocks or reports.
//! [`contract`] is what the two sides agree on, [`desc`] the static facts of each
//! model, and [`registry`] the list of them.
//!
//! Adding a model touches only `src/model/<name>/` (its descriptor, registered
//! below), its scenarios and its README row; see the README's "Adding a model".

pub mod contract;
pub mod desc;
pub mod hash_protect;
pub mod hpt;
pub mod mem;
pub mod memslot;
pub mod notifier;
pub mod pfncache;
pub mod testing;
pub mod vpa;

pub use contract::{event_text, Ctx, Model, Violation};
pub use desc::{
    Cell, CoverDesc, Expect, InjectionPolicy, ModelConfig, ModelDesc, OpDesc, ParamDesc, ParamKind,
    ParamValue, Params, RoleDesc, VariantDesc, VariantKind,
};

/// Every model kvmtorture knows, the hidden self-test model last.
pub fn registry() -> &'static [&'static ModelDesc] {
    static MODELS: &[&ModelDesc] = &[
        &hpt::DESC,
        &pfncache::DESC,
        &vpa::DESC,
        &memslot::DESC,
        &hash_protect::DESC,
        &testing::DESC,
    ];
    MODELS
}

/// The models a user sees (`list`, `validate`, the default run).
pub fn public() -> impl Iterator<Item = &'static ModelDesc> {
    registry().iter().copied().filter(|m| !m.hidden)
}

/// A model by name.
pub fn find(name: &str) -> Option<&'static ModelDesc> {
    registry().iter().copied().find(|m| m.name == name)
}
