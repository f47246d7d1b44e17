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

use crate::engine::OpCtx;
use crate::model::{Model, ModelConfig, ModelInfo, OpSpec, VariantInfo, Violation};
use crate::sync::{AtomicBool, RawSpinLock};
use std::sync::atomic::Ordering;
use std::sync::Arc;

static VARIANTS: &[VariantInfo] = &[
    VariantInfo {
        name: "deadlock",
        commit: "-",
        needs_concurrency: true,
        expect_violation: false,
        summary: "AB-BA lock order between two workers",
    },
    VariantInfo {
        name: "livelock",
        commit: "-",
        needs_concurrency: false,
        expect_violation: false,
        summary: "a poll loop without Backoff on a flag nobody sets",
    },
];

static OPS: &[OpSpec] = &[OpSpec {
    name: "step",
    role: 0,
    weight: 1,
}];

pub static INFO: ModelInfo = ModelInfo {
    name: "testing",
    summary: "scheduler self-test: deadlock and livelock (hidden)",
    variants: VARIANTS,
    ops: || OPS,
    build,
};

fn build(cfg: &ModelConfig) -> Result<Arc<dyn Model>, String> {
    crate::model::reject_unknown_params(&cfg.params, &[])?;
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
    fn ops(&self) -> &'static [OpSpec] {
        OPS
    }

    fn worker_roles(&self, threads: usize) -> Vec<u32> {
        vec![1; threads]
    }

    fn coverage_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn step(&self, cx: &mut OpCtx, _op: usize) -> Result<(), Violation> {
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
