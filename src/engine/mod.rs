//! The torture loop: workers, op mix, per-op checks, quiescent deep checks, flight
//! recorder, watchdog and counters. It knows nothing of KVM: everything
//! protocol-specific is behind [`Model`].

pub mod counters;
pub mod recorder;
mod stutter;
mod worker;

pub use worker::OpCtx;

use crate::model::{Model, ModelDesc, Violation};
use crate::sched::det::{Det, DetOutcome, Hang};
use crate::sched::strategy::StrategySpec;
use counters::Counters;
use recorder::Recorder;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stutter::Stutter;
use worker::Mix;

/// Most violations kept with `--keep-going`; later ones are only counted.
const MAX_KEPT: usize = 100;

/// How a run is driven (all validated by the scenario layer).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub threads: usize,
    /// Wall-clock budget; `None` runs until the op budget or an interrupt.
    pub duration: Option<Duration>,
    /// Ops per worker; `None` is unbounded.
    pub ops_per_worker: Option<u64>,
    /// Det shrinking: ops left out, as (worker, op number). The worker still draws
    /// the op from its stream but does not run it (see [`worker`]).
    pub skip_ops: Vec<(usize, u64)>,
    /// Det shrinking: rounds left out, as (worker, op number, round) (see
    /// [`crate::model::Ctx::round`]).
    pub skip_rounds: Vec<(usize, u64, u64)>,
    pub seed: u64,
    pub delay_prob: f64,
    pub window_boost: f64,
    /// Which delays go where ([`Policy`](crate::sched::stress::Policy)).
    pub injection_policy: crate::sched::stress::Policy,
    pub stall_timeout: Duration,
    pub keep_going: bool,
    /// Period of the stutter barrier's deep check.
    pub quiescent_every: Duration,
    /// Weight of each op (index = op id), after scenario overrides.
    pub weights: Vec<u32>,
    /// Test hook: this worker hangs after a few ops.
    pub test_stall_worker: Option<usize>,
    /// Deterministic mode; `None` is stress mode.
    pub det: Option<DetRun>,
}

/// The det-mode part of a run: the strategy and the budgets that replace the clock.
#[derive(Debug, Clone)]
pub struct DetRun {
    pub strategy: StrategySpec,
    /// Steps without any op completing before the run is a livelock.
    pub max_idle_steps: u64,
    /// Worker 0 asks for the stutter barrier's deep check every this many of its ops.
    pub quiescent_every_ops: u64,
}

/// One violation, as found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The worker that found it; `None` for quiescent and teardown checks.
    pub worker: Option<usize>,
    pub op: &'static str,
    pub at: Duration,
    /// The det step count when it was found (det mode only).
    pub step: Option<u64>,
    pub violation: Violation,
}

pub use crate::status::Status;

/// Everything a run produced.
pub struct Outcome {
    pub status: Status,
    pub elapsed: Duration,
    pub ops_total: u64,
    pub ops_by_kind: Vec<(&'static str, u64)>,
    pub coverage: Vec<(&'static str, u64)>,
    /// Each window's entries per 100 runs of the ops that can enter it (the
    /// descriptor's `per`), for the windows of `coverage` whose ops ran.
    pub window_share_pct: Vec<(&'static str, f64)>,
    pub found: Vec<Found>,
    pub violations_total: usize,
    pub fault: Option<String>,
    /// Worker indices the watchdog saw without progress.
    pub stalled: Vec<usize>,
    pub recorder: Arc<Recorder>,
    /// Each worker's column label in reports: `w0 resizer`, `w2 vCPU` (its index
    /// and its roles from the descriptor).
    pub worker_labels: Vec<String>,
    pub model_dump: String,
    /// The scheduler's record of a det run.
    pub det: Option<DetOutcome>,
    /// Det mode: each worker's [`Marks`].
    pub marks: Vec<Marks>,
}

/// Where one det worker's ops and rounds began, in det steps: what `shrink` needs to
/// tell which scheduling decisions an op or a round took, to leave them out with it.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// (steps so far, op number, round) at each op's start (round 0), each round's
    /// and each op's end ([`Marks::BETWEEN`]). The steps after a mark, up to the
    /// next, are that op's or round's (or, after an end, between ops).
    pub starts: Vec<(u64, u64, u64)>,
    /// Steps so far when the worker left the scheduler (its last decision).
    pub exit: Option<u64>,
}

impl Marks {
    /// The round of a mark at an op's end.
    pub const BETWEEN: u64 = u64::MAX;

    fn begin(&mut self, step: u64, op: u64, round: u64) {
        self.starts.push((step, op, round));
    }
}

/// Progress sink (a bar, plain lines, or nothing).
pub trait Observer {
    fn tick(&mut self, elapsed: Duration, ops: u64, violations: usize);
}

/// State shared by the workers and the monitor.
pub(crate) struct Shared {
    cfg: RunConfig,
    desc: &'static ModelDesc,
    model: Arc<dyn Model>,
    stop: AtomicBool,
    finished: AtomicUsize,
    counters: Counters,
    recorder: Arc<Recorder>,
    stutter: Stutter,
    start: Instant,
    found: Mutex<(Vec<Found>, usize)>,
    fault: Mutex<Option<String>>,
    det: Option<Arc<Det>>,
    marks: Vec<Mutex<Marks>>,
    /// The monitor's thread, unparked by the last worker to finish so that short
    /// runs (hunts, shrinking) do not wait out the monitor's poll period.
    main: std::thread::Thread,
}

impl Shared {
    fn violation(&self, worker: Option<usize>, op: &'static str, violation: Violation) {
        let mut f = self.found.lock().unwrap_or_else(|e| e.into_inner());
        f.1 += 1;
        if f.0.len() < MAX_KEPT {
            f.0.push(Found {
                worker,
                op,
                at: self.start.elapsed(),
                step: self.det.as_ref().map(|d| d.clock().load(Ordering::Relaxed)),
                violation,
            });
        }
        if !self.cfg.keep_going {
            self.stop.store(true, Ordering::Release);
        }
    }

    fn violations(&self) -> usize {
        self.found.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn fault(&self, msg: String) {
        self.fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(msg);
        self.stop.store(true, Ordering::Release);
    }

    /// Runs a whole-model check, turning a panic into a harness fault.
    fn guarded_check(&self, what: &'static str, f: impl FnOnce() -> Result<(), Violation>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => {}
            Ok(Err(v)) => self.violation(None, what, v),
            Err(p) => self.fault(format!("model panicked in {what}: {}", worker::panic_message(&p))),
        }
    }

    fn quiescent_check(&self) {
        self.guarded_check("quiescent", || self.model.check_quiescent());
    }
}

/// Runs `model` under `cfg` until the budget, a violation (unless keep-going), a
/// stall, a fault or an interrupt.
pub fn run(
    desc: &'static ModelDesc,
    model: Arc<dyn Model>,
    cfg: RunConfig,
    interrupted: &dyn Fn() -> bool,
    obs: &mut dyn Observer,
) -> Outcome {
    let ops = desc.ops;
    let roles = model.worker_roles(cfg.threads);
    let det = cfg
        .det
        .as_ref()
        .map(|d| Arc::new(Det::new(cfg.threads, cfg.seed, &d.strategy, d.max_idle_steps)));
    let recorder = match &det {
        Some(d) => Recorder::with_step_clock(cfg.threads, d.clock()),
        None => Recorder::new(cfg.threads),
    };
    let shared = Arc::new(Shared {
        counters: Counters::new(cfg.threads, ops.len(), desc.coverage.len()),
        recorder: Arc::new(recorder),
        det,
        stutter: Stutter::new(cfg.threads, cfg.det.is_some()),
        stop: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
        start: Instant::now(),
        main: std::thread::current(),
        found: Mutex::new((Vec::new(), 0)),
        fault: Mutex::new(None),
        marks: (0..cfg.threads).map(|_| Mutex::default()).collect(),
        desc,
        model,
        cfg,
    });
    for (idx, mask) in roles.iter().enumerate() {
        let weights: Vec<(usize, u32)> = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| mask & (1 << o.role) != 0)
            .map(|(i, _)| (i, shared.cfg.weights[i]))
            .collect();
        let sh = Arc::clone(&shared);
        let mix = Mix::new(&weights);
        std::thread::Builder::new()
            .name(format!("torture-{idx}"))
            .spawn(move || worker::run(sh, idx, mix))
            .expect("spawn worker thread");
    }
    let (interrupt, stalled) = monitor(&shared, interrupted, obs);
    let labels = roles
        .iter()
        .enumerate()
        .map(|(w, &mask)| format!("w{w} {}", desc.roles_label(mask)))
        .collect();
    finish(shared, interrupt, stalled, labels)
}

/// The main thread's loop: deadlines, interrupts, periodic deep checks, progress and
/// the watchdog. Returns (interrupted, stalled workers).
fn monitor(sh: &Shared, interrupted: &dyn Fn() -> bool, obs: &mut dyn Observer) -> (bool, Vec<usize>) {
    let n = sh.cfg.threads;
    let mut last_ops = vec![u64::MAX; n];
    let mut last_change = vec![Instant::now(); n];
    let mut last_quiescent = Instant::now();
    let mut interrupt = false;
    let mut stopping_since: Option<Instant> = None;
    let tick = Duration::from_millis(20);
    let mut prev = Instant::now();
    loop {
        std::thread::park_timeout(tick);
        let now = Instant::now();
        let elapsed = now - sh.start;
        // A watchdog that itself woke seconds late saw a frozen process (a stopped
        // job, a host that paused the VM, an overloaded machine that ran nobody), not
        // hung workers: the time it missed counts for no worker's stall.
        let missed = (now - prev).saturating_sub(tick);
        prev = now;
        if missed >= Duration::from_secs(1) {
            for t in last_change.iter_mut().chain(stopping_since.iter_mut()) {
                *t += missed;
            }
        }
        if sh.finished.load(Ordering::Acquire) == n {
            return (interrupt, Vec::new());
        }
        if !interrupt && interrupted() {
            interrupt = true;
            sh.stop.store(true, Ordering::Release);
        }
        if sh.det.is_some() {
            // Det mode: budgets are ops and steps, hangs are the scheduler's to find.
            obs.tick(elapsed, sh.counters.ops_total(), sh.violations());
            continue;
        }
        if sh.cfg.duration.is_some_and(|d| elapsed >= d) {
            sh.stop.store(true, Ordering::Release);
        }
        if sh.stop.load(Ordering::Acquire) {
            stopping_since.get_or_insert(now);
        } else if now - last_quiescent >= sh.cfg.quiescent_every {
            sh.stutter.request();
            last_quiescent = now;
        }
        // Watchdog: a worker whose op count has not moved for stall_timeout while it
        // is inside an op (or the run is winding down) is hung.
        let mut stalled = Vec::new();
        for w in 0..n {
            let c = sh.counters.workers[w].ops_total.load(Ordering::Relaxed);
            if c != last_ops[w] {
                last_ops[w] = c;
                last_change[w] = now;
            } else if now - last_change[w] >= sh.cfg.stall_timeout && sh.recorder.snapshot(w).0.is_some() {
                stalled.push(w);
            }
        }
        if !stalled.is_empty() {
            sh.stop.store(true, Ordering::Release);
            return (interrupt, stalled);
        }
        if stopping_since.is_some_and(|t| now - t >= sh.cfg.stall_timeout) {
            // Stopping, but some worker never got back to an op boundary.
            let stuck = (0..n).filter(|&w| sh.recorder.snapshot(w).0.is_some()).collect();
            return (interrupt, stuck);
        }
        obs.tick(elapsed, sh.counters.ops_total(), sh.violations());
    }
}

fn finish(sh: Arc<Shared>, interrupt: bool, stalled: Vec<usize>, worker_labels: Vec<String>) -> Outcome {
    let det = sh.det.as_ref().map(|d| d.outcome());
    let hang = det.as_ref().and_then(|d| d.hang);
    let clean_stop = stalled.is_empty() && hang.is_none();
    if clean_stop {
        // Every worker is gone: teardown checks run with nothing in flight.
        if sh.violations() == 0 || sh.cfg.keep_going {
            sh.quiescent_check();
            sh.guarded_check("teardown", || sh.model.finish());
        }
    }
    let fault = sh.fault.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (found, total) = sh.found.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let status = if fault.is_some() {
        Status::Fault
    } else if total > 0 {
        Status::Violation
    } else if let Some(h) = hang {
        match h {
            Hang::Deadlock => Status::Deadlock,
            Hang::Livelock => Status::Livelock,
        }
    } else if !clean_stop {
        Status::Stall
    } else if interrupt {
        Status::Interrupted
    } else {
        Status::Clean
    };
    let ops = sh.desc.ops;
    let by_kind = sh.counters.ops_by_kind(ops.len());
    let windows = sh.desc.coverage;
    let cov = sh.counters.coverage(windows.len());
    let applies = || {
        windows
            .iter()
            .zip(cov.iter().copied())
            .enumerate()
            .filter(|(id, _)| sh.model.coverage_applies(*id))
            .map(|(_, wn)| wn)
    };
    Outcome {
        status,
        elapsed: sh.start.elapsed(),
        ops_total: sh.counters.ops_total(),
        ops_by_kind: ops.iter().map(|o| o.name).zip(by_kind.iter().copied()).collect(),
        // Only the windows this variant and these params can enter.
        coverage: applies().map(|(w, n)| (w.name, n)).collect(),
        window_share_pct: applies()
            .filter_map(|(w, n)| {
                let of = |op: &&str| ops.iter().position(|o| o.name == *op).map_or(0, |i| by_kind[i]);
                let runs: u64 = w.per.iter().map(of).sum();
                (runs > 0).then(|| (w.name, 100.0 * n as f64 / runs as f64))
            })
            .collect(),
        found,
        violations_total: total,
        fault,
        stalled,
        recorder: Arc::clone(&sh.recorder),
        worker_labels,
        model_dump: sh.model.dump(),
        det,
        marks: sh
            .marks
            .iter()
            .map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())))
            .collect(),
    }
}
