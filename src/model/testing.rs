//! A hidden model for testing the det scheduler's hang detection, selected only by
//! name (`--model testing`); `list` does not show it because it models no kernel
//! protocol.
//!
//! - `deadlock`: two workers take two spin locks in opposite orders (AB-BA). Once
//!   each holds its first lock, both spin forever: every live thread is blocked.
//! - `livelock`: each op polls a flag that nobody sets with plain atomic loads,
//!   never telling the scheduler it waits (no `Backoff`): steps go on, no op ends.
//!
//! In stress mode both hang and the watchdog reports a stall.

use crate::model::{
    Ctx, Expect, Model, ModelConfig, ModelDesc, OpDesc, RoleDesc, VariantDesc, VariantKind, Violation,
};
use crate::sync::{AtomicBool, RawSpinLock};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The self-test model's facts (hidden from `list`).
pub static DESC: ModelDesc = ModelDesc {
    name: "testing",
    protocol: "scheduler self-test: deadlock and livelock (hidden)",
    kernel_files: &[],
    seed: "-",
    spec: "-",
    roles: &[RoleDesc {
        name: "worker",
        doc: "runs the one op",
    }],
    ops: &[OpDesc {
        name: "step",
        role: 0,
        weight: 1,
        doc: "take two locks in a worker-dependent order, or poll a flag nobody sets",
    }],
    params: &[],
    coverage: &[],
    variants: &[
        VariantDesc {
            name: "deadlock",
            commit: "-",
            kind: VariantKind::Race,
            expect: Expect::Stall,
            cells: &[],
            needs_concurrency: true,
            doc: "AB-BA lock order between two workers",
        },
        VariantDesc {
            name: "livelock",
            commit: "-",
            kind: VariantKind::Race,
            expect: Expect::Stall,
            cells: &[],
            needs_concurrency: false,
            doc: "a poll loop without Backoff on a flag nobody sets",
        },
    ],
    injection: crate::model::InjectionPolicy::Uniform,
    hidden: true,
    build,
};

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    Ok(Arc::new(Testing {
        livelock: cfg.variant.name == "livelock",
        a: RawSpinLock::new(),
        b: RawSpinLock::new(),
        never: AtomicBool::new(false),
    }))
}

struct Testing {
    livelock: bool,
    a: RawSpinLock,
    b: RawSpinLock,
    never: AtomicBool,
}

impl Model for Testing {
    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        vec![1; threads]
    }

    fn step(&self, cx: &mut dyn Ctx, _op: usize) -> Result<(), Violation> {
        if self.livelock {
            while !self.never.load(Ordering::Acquire) {}
            return Ok(());
        }
        let (first, second) = if cx.worker() % 2 == 0 {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        first.lock();
        crate::point!("testing.between_locks");
        second.lock();
        second.unlock();
        first.unlock();
        Ok(())
    }

    fn check_quiescent(&self) -> Result<(), Violation> {
        Ok(())
    }

    fn finish(&self) -> Result<(), Violation> {
        Ok(())
    }

    fn dump(&self) -> String {
        format!(
            "a locked: {}, b locked: {}",
            self.a.is_locked(),
            self.b.is_locked()
        )
    }
}
