//! One torture worker: pick an op from the mix, run it, record it, repeat.

use super::{counters::WorkerCounters, recorder::Kind, Marks, Shared};
use crate::model::Ctx;
use crate::rng::{OpDraws, Rng, Stream};
use crate::sched::stress::{Injection, Injector};
use crate::sched::{self, det, Mode};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The engine's side of the model contract ([`Ctx`]) for one operation.
pub struct OpCtx<'a> {
    worker: usize,
    threads: usize,
    /// The op's number among the worker's ops (deleted ones included).
    op: u64,
    /// Rounds started so far (see [`Ctx::round`]).
    round: u64,
    /// The op's draws: its own stream, then each round's (see [`OpDraws`]).
    rng: Rng,
    draws: OpDraws,
    shared: &'a Shared,
    counters: &'a WorkerCounters,
    /// Det mode: where the worker's ops and rounds begin, for `shrink`.
    marks: Option<&'a mut Marks>,
}

impl Ctx for OpCtx<'_> {
    fn worker(&self) -> usize {
        self.worker
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn cover(&self, id: usize) {
        self.counters.cover(id);
    }

    fn event(&self, what: &'static str, a: u64, b: u64) {
        self.shared.recorder.record(self.worker, Kind::Event, what, a, b);
    }

    fn op_args(&self, what: &'static str, a: u64, b: u64) {
        self.shared.recorder.record(self.worker, Kind::Args, what, a, b);
    }

    fn round(&mut self) -> bool {
        self.round += 1;
        let cfg = &self.shared.cfg;
        self.rng = self.draws.stream(self.op, self.round);
        if let Some(m) = self.marks.as_deref_mut() {
            m.begin(self.shared.recorder.now(), self.op, self.round);
        }
        !cfg.skip_rounds.contains(&(self.worker, self.op, self.round))
    }
}

/// A weighted op table for one worker, built from its role mask.
pub struct Mix {
    ops: Vec<(usize, u64)>,
    total: u64,
}

impl Mix {
    pub fn new(weights: &[(usize, u32)]) -> Self {
        let mut total = 0;
        let ops = weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|&(op, w)| {
                total += w as u64;
                (op, total)
            })
            .collect();
        Mix { ops, total }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        let x = rng.below(self.total);
        self.ops
            .iter()
            .find(|(_, end)| x < *end)
            .map(|(op, _)| *op)
            .expect("x < total")
    }
}

/// Every this many ops a worker checks the run's wall-clock budget itself.
const DEADLINE_EVERY_OPS: u64 = 64;

/// The worker thread body. In det mode a hung run's scheduler unwinds every worker
/// with [`det::Abort`], from inside an op or between ops; that ends the worker quietly.
pub(super) fn run(shared: Arc<Shared>, idx: usize, mix: Mix) {
    let cfg = &shared.cfg;
    let _mode = match &shared.det {
        Some(d) => sched::enter(Mode::Det(det::Handle {
            det: Arc::clone(d),
            idx,
        })),
        None => sched::enter(Mode::Stress(Injector::new(
            Rng::stream(cfg.seed, Stream::Delays, idx as u64),
            Injection {
                prob: cfg.delay_prob,
                window_boost: cfg.window_boost,
                policy: cfg.injection_policy,
            },
            cfg.threads,
        ))),
    };
    let body = catch_unwind(AssertUnwindSafe(|| {
        crate::sync::holder::set_current(idx as u32);
        if let Some(d) = &shared.det {
            d.attach(idx);
        }
        ops_loop(&shared, idx, &mix)
    }));
    match body {
        Ok(Some(mut m)) => {
            // The worker's exit is a scheduling decision of its own.
            m.exit = Some(shared.recorder.now());
            *shared.marks[idx].lock().unwrap_or_else(|e| e.into_inner()) = m;
        }
        Ok(None) => {}
        Err(p) if p.is::<det::Abort>() => {}
        Err(p) => shared.fault(format!("worker {idx} panicked: {}", panic_message(&p))),
    }
    if let Some(d) = &shared.det {
        d.exit(idx);
    }
    if shared.finished.fetch_add(1, Ordering::AcqRel) + 1 == cfg.threads {
        shared.main.unpark();
    }
}

fn ops_loop(shared: &Shared, idx: usize, mix: &Mix) -> Option<Marks> {
    let cfg = &shared.cfg;
    // The worker's choice of ops; each op draws its arguments from its own stream.
    let mut picks = Rng::stream(cfg.seed, Stream::Ops, idx as u64);
    let draws = OpDraws::new(cfg.seed, idx);
    let mut marks = shared.det.as_ref().map(|_| Marks::default());
    let counters = &shared.counters.workers[idx];
    let ops = shared.desc.ops;
    let mut done = 0u64;
    let mut asked = 0u64;
    let mut check = || shared.quiescent_check();
    // Det mode asks for the deep check by op count, not by the monitor's clock.
    let quiescent_every = cfg.det.as_ref().map(|d| d.quiescent_every_ops);
    while !mix.is_empty() && !shared.stop.load(Ordering::Relaxed) {
        if cfg.ops_per_worker.is_some_and(|n| done >= n) {
            break;
        }
        if shared.det.is_none()
            && done % DEADLINE_EVERY_OPS == DEADLINE_EVERY_OPS - 1
            && cfg.duration.is_some_and(|d| shared.start.elapsed() >= d)
        {
            // The monitor stops the run too, but with 1024 workers on 2 cores it
            // waited seconds for a core (a 2 s run took 9 s to notice its budget).
            shared.stop.store(true, Ordering::Release);
            break;
        }
        if shared.stutter.pending() {
            shared.stutter.park(&mut check);
            continue;
        }
        if cfg.test_stall_worker == Some(idx) && done == 16 {
            stall_forever(shared, idx);
        }
        if idx == 0 && done > asked && quiescent_every.is_some_and(|k| done % k == 0) {
            asked = done;
            shared.stutter.request();
            continue;
        }
        let op = mix.pick(&mut picks);
        if cfg.skip_ops.contains(&(idx, done)) {
            // Deleted by `shrink`: the pick is drawn and the op's own draws are its
            // own stream's, so every other op runs with the same arguments.
            done += 1;
            continue;
        }
        let name = ops[op].name;
        shared.recorder.record(idx, Kind::Begin, name, done, 0);
        if let Some(m) = marks.as_mut() {
            m.begin(shared.recorder.now(), done, 0);
        }
        sched::op(Some(name));
        let mut cx = OpCtx {
            worker: idx,
            threads: cfg.threads,
            op: done,
            round: 0,
            rng: draws.stream(done, 0),
            draws,
            shared,
            counters,
            marks: marks.as_mut(),
        };
        let result = catch_unwind(AssertUnwindSafe(|| shared.model.step(&mut cx, op)));
        if let Some(m) = marks.as_mut() {
            m.begin(shared.recorder.now(), done, Marks::BETWEEN);
        }
        done += 1;
        match result {
            Ok(Ok(())) => {
                shared.recorder.record(idx, Kind::End, name, done, 0);
                counters.op_done(op);
            }
            Ok(Err(v)) => {
                shared.recorder.record(idx, Kind::Failed, name, done, 0);
                counters.op_done(op);
                shared.violation(Some(idx), name, v);
            }
            Err(panic) if panic.is::<det::Abort>() => std::panic::resume_unwind(panic),
            Err(panic) => {
                shared.recorder.record(idx, Kind::Failed, name, done, 0);
                shared.fault(format!(
                    "worker {idx} panicked in op {name}: {}",
                    panic_message(&panic)
                ));
            }
        }
        sched::op(None);
    }
    shared.stutter.leave(&mut check);
    marks
}

/// The `--test-stall-worker` hook: this worker stops making progress inside an op,
/// as a model stuck in a lock would, so the watchdog path can be tested end to end.
fn stall_forever(shared: &Shared, idx: usize) -> ! {
    shared.recorder.record(idx, Kind::Begin, "test.stall", 0, 0);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub(super) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
