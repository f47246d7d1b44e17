//! The model contract: what a model sees of the harness, and what it gives back.
//!
//! Like rcutorture's `struct rcu_torture_ops`, a model is a table of operations plus
//! its invariants. The engine drives it from worker threads through [`Model`] and
//! hands each operation a [`Ctx`]: random draws, coverage counters and the flight
//! recorder. A model never sees threads, clocks, schedulers or reports; it reaches
//! preemption points only through the [`crate::sync`] facade (every lock and atomic,
//! plus [`crate::point!`]/[`crate::window!`] at the race windows its spec names), so
//! the same model code runs under stress injection and under the det scheduler.

use crate::rng::Rng;

/// What one operation sees of the engine: implemented by the engine's worker.
pub trait Ctx {
    /// This worker's index (a model may map it to a vCPU or a CPU).
    fn worker(&self) -> usize;
    /// How many workers the run has.
    fn threads(&self) -> usize;
    /// The worker's op stream: the same draws for the same seed and worker index, so
    /// a det run and a replay make identical choices.
    fn rng(&mut self) -> &mut Rng;
    /// Counts one entry into race window `id` (an index into the descriptor's
    /// [`coverage`](super::desc::ModelDesc::coverage)).
    fn cover(&self, id: usize);
    /// Notes a protocol event in the flight recorder (shown in failure reports and
    /// the protocol view). `what` names the event; `a` and `b` are its arguments.
    /// `what` may place them: `{a}`/`{b}` print decimal, `{a:x}`/`{b:x}` hex
    /// (`"H_ENTER hpte {a} gfn {b}"`); a name without braces is shown with `a=… b=…`
    /// when they are not both zero.
    fn event(&self, what: &'static str, a: u64, b: u64);
    /// Names the running op's arguments, in the same format as [`event`](Self::event)
    /// (`"gpc{a} gpa={b:x}"`): the protocol view puts them in the op's header. Models
    /// call it at most once per op, before the first preemption point.
    fn op_args(&self, what: &'static str, a: u64, b: u64) {
        self.event(what, a, b);
    }
    /// Starts the next round of a repeated act inside one op (a guest access of
    /// `KVM_RUN`): returns whether to run it. Each round draws from its own stream,
    /// so a round left out changes no other round's draws; `shrink` leaves rounds
    /// out (a guest that made fewer accesses) the way it deletes whole ops. A model
    /// skips the round's work, draws included, when this returns false.
    fn round(&mut self) -> bool {
        true
    }
}

/// The text of an [`event`](Ctx::event) or [`op_args`](Ctx::op_args): `what` with its `{a}`, `{b}`
/// (decimal) and `{a:x}`, `{b:x}` (hex) placeholders filled in; a plain name gets
/// `a=… b=…` appended unless both are zero.
pub fn event_text(what: &str, a: u64, b: u64) -> String {
    if what.contains('{') {
        return what
            .replace("{a:x}", &format!("{a:#x}"))
            .replace("{b:x}", &format!("{b:#x}"))
            .replace("{a}", &a.to_string())
            .replace("{b}", &b.to_string());
    }
    if a == 0 && b == 0 {
        what.to_string()
    } else {
        format!("{what} a={a:#x} b={b:#x}")
    }
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

    /// Attaches a dump of the state the invariant read.
    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state = state.into();
        self
    }
}

/// A model instance under torture, built by its descriptor's
/// [`build`](super::desc::ModelDesc::build).
///
/// **Violation discipline.** When an operation finds a violation it still leaves every
/// protocol state it holds (locks, SRCU read side, in-guest flags, pins, counters)
/// before it returns the violation, as the kernel goes on after a `WARN`: other
/// workers must never stall on a run that was already caught (`--keep-going` runs
/// end at their duration).
pub trait Model: Send + Sync {
    /// Role mask of each of `threads` workers (bit `r` = role `r` of the descriptor).
    /// With one thread, that worker must be able to run every op: a race variant run
    /// alone must be clean, not idle.
    fn worker_roles(&self, threads: usize) -> Vec<u32>;
    /// Runs op `op` (an index into the descriptor's ops) on behalf of
    /// `cx.worker()`, checking the per-op invariants.
    fn step(&self, cx: &mut dyn Ctx, op: usize) -> Result<(), Violation>;
    /// Deep check while every worker is parked between operations.
    fn check_quiescent(&self) -> Result<(), Violation>;
    /// Teardown check after all workers have stopped: leaks, locks, counters at rest.
    fn finish(&self) -> Result<(), Violation>;
    /// A human-readable dump of the model's state for a failure report.
    fn dump(&self) -> String;
    /// Whether coverage counter `id` can be entered with this build's variant and
    /// params (a stop_machine window cannot be entered by a variant without
    /// stop_machine). Counters that do not apply are left out of the coverage report,
    /// so "every window entered" means every window that exists.
    fn coverage_applies(&self, id: usize) -> bool {
        let _ = id;
        true
    }
}
