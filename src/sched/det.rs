//! Deterministic mode: real threads, one baton.
//!
//! Every worker is a real OS thread running the same model code as in stress mode,
//! but only the thread holding the baton runs. At each [`point`](super::point) the
//! holder records the step in the trace and asks the [`Strategy`] who runs next; if it
//! is another thread the baton moves ([`Baton`]: spin while a core is free, park
//! otherwise; that is harness, not model) and the holder waits until it comes back. Nothing here
//! reads a clock, a thread id or a hash map, so the same strategy and seed give the
//! same schedule and a byte-identical trace.
//!
//! A failed wait ([`Backoff::spin`](crate::sync::Backoff::spin)) marks its thread *blocked*:
//! it cannot make progress until another thread changes something — unless another
//! thread made progress since its previous failed wait: then the failure may come
//! from a stale read (switched out between the load and the CAS of a `try_lock`,
//! while the holder released), so it retries once more instead. Its own effects do
//! not count: a retry loop that unlocks, works and relocks each round (the gpc's
//! `hva_to_pfn_retry` waiting out an invalidation) would otherwise never block, and a
//! strict-priority strategy would never run the thread it waits for. A point comes
//! *before* the access it guards, so a thread's effects after a non-spin point are
//! only done when it reaches its next point (or exits): that is when every blocked
//! mark is cleared. A point before a read ([`Access::Read`]) changes nothing: it
//! does not count (else a waiter polling through the atomics facade between its
//! spins would look like progress and keep every other waiter busy re-checking).
//! All live threads blocked is a deadlock; no op
//! completed within `max_idle_steps` is a livelock. Either ends the run: every thread
//! is woken and unwinds out of its op with an [`Abort`] payload.

use super::baton::{Baton, Successor};
use super::strategy::{default_choice, Choice, Decision, Strategy, StrategySpec};
use super::{Access, Site};
use crate::rng::{Rng, Stream};
use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Steps kept for the interleaving (the full trace is only hashed).
pub const TRACE_TAIL: usize = 20_000;

/// Unwinding payload that ends every worker of a hung det run.
pub(crate) struct Abort;

/// Why a det run was stopped by its scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// Every live thread was waiting for another.
    Deadlock,
    /// Threads kept taking steps, but no op completed within the step budget.
    Livelock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStatus {
    Runnable,
    Blocked,
    Done,
}

/// One thread as the scheduler last saw it.
#[derive(Debug, Clone)]
pub struct ThreadState {
    pub status: ThreadStatus,
    pub last_site: Option<(&'static str, &'static Location<'static>)>,
    pub op: Option<&'static str>,
}

/// What a thread reports at a scheduling point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// Another thread may run here.
    Plain,
    /// A failed wait: the thread needs another thread to act first.
    Wait,
    /// `cond_resched()`: the thread waits for nothing in particular but lets every
    /// other runnable thread go first. Treating it as a [`Point::Wait`] would declare
    /// a false deadlock (its next attempt may well succeed); as a plain point, a
    /// strict-priority strategy would let a retry loop starve the very thread it waits
    /// out (the gpc refresh looping while an invalidation is in flight).
    Yield,
}

/// One recorded scheduling point.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub step: u64,
    pub thread: usize,
    pub site: &'static str,
    /// Source line of the point (shown, not hashed: the trace survives line moves).
    pub loc: &'static Location<'static>,
    pub op: Option<&'static str>,
    pub spin: bool,
}

/// What a det run's scheduler produced.
#[derive(Debug, Clone)]
pub struct DetOutcome {
    pub steps: u64,
    pub switches: u64,
    pub preemptions: u64,
    pub decisions: Vec<Decision>,
    pub schedule_hash: u64,
    pub trace_hash: u64,
    pub hang: Option<Hang>,
    pub threads: Vec<ThreadState>,
    /// The last [`TRACE_TAIL`] steps.
    pub tail: Vec<Step>,
}

/// FNV-1a, 64 bit: stable across platforms and versions (std's hasher is not).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// The hash of a decision list: what `schedule_hash` reports.
fn schedule_hash(d: &[Decision], steps: u64) -> u64 {
    let mut h = Fnv::default();
    for x in d {
        h.u64(x.choice);
        h.u64(x.thread as u64);
    }
    h.u64(steps);
    h.0
}

/// Everything the scheduler keeps about one thread.
struct Thread {
    /// What reports show.
    view: ThreadState,
    /// It may have changed shared state since its last point (its last point was not
    /// a spin or a read, or it has just started).
    effects: bool,
    /// How many of the run's completed effects ([`State::epoch`]) were its own.
    own_effects: u64,
    /// The other threads' effects (`epoch - own_effects`) at its last failed wait.
    spin_epoch: u64,
    /// It yielded, and no other thread has stepped since.
    yielding: bool,
}

impl Thread {
    fn new() -> Self {
        Thread {
            view: ThreadState {
                status: ThreadStatus::Runnable,
                last_site: None,
                op: None,
            },
            effects: true,
            own_effects: 0,
            spin_epoch: u64::MAX,
            yielding: false,
        }
    }

    fn runnable(&self) -> bool {
        self.view.status == ThreadStatus::Runnable
    }
}

/// The scheduler's state, touched only by the baton holder (under [`Det::state`]).
struct State {
    running: usize,
    threads: Vec<Thread>,
    /// How many threads are [`ThreadStatus::Blocked`].
    blocked: usize,
    /// How many threads are yielding.
    yielders: usize,
    /// Counts completed effects (any thread's): progress that a waiter may not have
    /// seen yet.
    epoch: u64,
    strategy: Strategy,
    step: u64,
    idle: u64,
    max_idle: u64,
    switches: u64,
    preemptions: u64,
    decisions: Vec<Decision>,
    /// Scheduling decisions taken so far (the key of [`Decision`]).
    choices: u64,
    trace: Fnv,
    tail: VecDeque<Step>,
    hang: Option<Hang>,
    /// Scratch for [`State::choose`].
    runnable: Vec<usize>,
}

impl State {
    fn new(threads: usize, strategy: Strategy, max_idle: u64) -> Self {
        let mut st = State {
            running: 0,
            threads: (0..threads).map(|_| Thread::new()).collect(),
            blocked: 0,
            yielders: 0,
            epoch: 0,
            strategy,
            step: 0,
            idle: 0,
            max_idle,
            switches: 0,
            preemptions: 0,
            decisions: Vec::new(),
            choices: 0,
            trace: Fnv::default(),
            tail: VecDeque::new(),
            hang: None,
            runnable: Vec::with_capacity(threads),
        };
        st.running = st.choose(None).unwrap_or(0);
        st
    }

    /// Picks who runs after step `self.step`; `None` if nobody can. A yielding
    /// thread runs only if nobody else can.
    fn choose(&mut self, current: Option<usize>) -> Option<usize> {
        self.runnable.clear();
        let live = self.threads.iter().enumerate().filter(|(_, t)| t.runnable());
        self.runnable.extend(live.map(|(i, _)| i));
        if self.runnable.is_empty() {
            return None;
        }
        if self.yielders > 0 && self.runnable.iter().any(|&t| !self.threads[t].yielding) {
            let threads = &self.threads;
            self.runnable.retain(|&t| !threads[t].yielding);
        }
        let c = Choice {
            index: self.choices,
            step: self.step,
            current,
            runnable: &self.runnable,
        };
        let next = self.strategy.choose(&c);
        if next != default_choice(&c) {
            self.decisions.push(Decision {
                choice: self.choices,
                thread: next,
            });
        }
        self.choices += 1;
        Some(next)
    }

    /// Appends thread `me`'s point at `site` to the trace.
    fn record(&mut self, me: usize, site: &Site, spin: bool) {
        self.step += 1;
        self.idle += 1;
        self.trace.u64(self.step);
        self.trace.u64(me as u64);
        self.trace.bytes(site.name.as_bytes());
        self.trace.bytes(&[u8::from(spin)]);
        if self.tail.len() == TRACE_TAIL {
            self.tail.pop_front();
        }
        let t = &mut self.threads[me].view;
        t.last_site = Some((site.name, site.loc));
        self.tail.push_back(Step {
            step: self.step,
            thread: me,
            site: site.name,
            loc: site.loc,
            op: t.op,
            spin,
        });
    }

    /// Thread `me` reached a point of `kind` before an access of `site`: its effects
    /// since its previous point are complete, and it announces whether the next
    /// stretch can have any.
    fn note_effects(&mut self, me: usize, site: &Site, kind: Point) {
        if self.threads[me].effects {
            self.progress(me);
        }
        self.threads[me].effects = kind == Point::Plain && site.access == Access::Effect;
    }

    /// Thread `by`'s effects are complete: every waiter may re-check.
    fn progress(&mut self, by: usize) {
        self.epoch += 1;
        self.threads[by].own_effects += 1;
        self.clear_blocked();
    }

    /// Thread `me` stepped: every other thread's yield has been honoured; a
    /// [`Point::Yield`] starts its own.
    fn note_yields(&mut self, me: usize, kind: Point) {
        if self.yielders > 0 {
            for (i, t) in self.threads.iter_mut().enumerate() {
                if t.yielding && i != me {
                    t.yielding = false;
                    self.yielders -= 1;
                }
            }
        }
        if kind == Point::Yield {
            self.threads[me].yielding = true;
            self.yielders += 1;
        }
    }

    /// A failed wait blocks thread `me` unless other threads made progress since
    /// its previous failed wait (see the module doc).
    fn note_wait(&mut self, me: usize) {
        let t = &mut self.threads[me];
        let others = self.epoch - t.own_effects;
        if t.spin_epoch == others {
            t.view.status = ThreadStatus::Blocked;
            self.blocked += 1;
        }
        t.spin_epoch = others;
    }

    fn clear_blocked(&mut self) {
        if self.blocked > 0 {
            for t in &mut self.threads {
                if t.view.status == ThreadStatus::Blocked {
                    t.view.status = ThreadStatus::Runnable;
                }
            }
            self.blocked = 0;
        }
    }

    /// Thread `me` is done: it leaves the scheduler for good.
    fn retire(&mut self, me: usize) {
        let t = &mut self.threads[me];
        t.view.status = ThreadStatus::Done;
        if std::mem::take(&mut t.yielding) {
            self.yielders -= 1;
        }
        // What it did since its last point is done now.
        self.progress(me);
    }

    /// The baton goes from `me` to `next`.
    fn switch(&mut self, me: usize, next: usize) {
        self.switches += 1;
        if self.threads[me].runnable() {
            self.preemptions += 1;
        }
        self.running = next;
    }

    fn live(&self) -> bool {
        self.threads.iter().any(|t| t.view.status != ThreadStatus::Done)
    }
}

/// The scheduler shared by the workers of one det run.
///
/// Only the baton holder touches [`State`], so its mutex is never contended; the
/// baton itself is [`Baton`], an atomic the waiters watch.
pub(crate) struct Det {
    state: Mutex<State>,
    baton: Baton,
    /// The step counter, readable without the lock (flight-recorder timestamps).
    steps: Arc<AtomicU64>,
}

impl Det {
    pub(crate) fn new(threads: usize, seed: u64, spec: &StrategySpec, max_idle_steps: u64) -> Self {
        let strategy = Strategy::new(spec, threads, Rng::stream(seed, Stream::Schedule, 0));
        let st = State::new(threads, strategy, max_idle_steps);
        Det {
            baton: Baton::new(threads, st.running),
            state: Mutex::new(st),
            steps: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The step counter, for timestamps.
    pub(crate) fn clock(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.steps)
    }

    /// A worker's first act: wait for the baton.
    pub(crate) fn attach(&self, me: usize) {
        self.baton.register(me);
        self.wait_turn(me, Successor::Running);
    }

    /// A scheduling point of thread `me`: record it, update what the scheduler knows
    /// of `me`, and pass the baton to whoever the strategy picks.
    pub(crate) fn step(&self, me: usize, site: &Site, kind: Point) {
        let mut s = self.lock();
        if s.hang.is_some() {
            drop(s);
            return abort();
        }
        debug_assert_eq!(s.running, me, "only the baton holder runs");
        s.record(me, site, kind != Point::Plain);
        self.steps.store(s.step, Ordering::Relaxed);
        s.note_effects(me, site, kind);
        s.note_yields(me, kind);
        if kind == Point::Wait {
            s.note_wait(me);
        }
        if s.idle > s.max_idle {
            return self.hang(s, Hang::Livelock);
        }
        match s.choose(Some(me)) {
            None => self.hang(s, Hang::Deadlock),
            Some(next) if next == me => {}
            Some(next) => {
                s.switch(me, next);
                drop(s);
                let successor = self.baton.pass(next);
                self.wait_turn(me, successor);
            }
        }
    }

    /// Thread `me` is inside op `op` (or between ops with `None`); an op end resets
    /// the livelock budget.
    pub(crate) fn op(&self, me: usize, op: Option<&'static str>) {
        let mut s = self.lock();
        if op.is_none() {
            s.idle = 0;
        }
        s.threads[me].view.op = op;
    }

    /// Thread `me` is done for good: the baton moves on.
    pub(crate) fn exit(&self, me: usize) {
        let mut s = self.lock();
        if s.hang.is_some() {
            // Keep every thread's state as it was when the run hung.
            return;
        }
        s.retire(me);
        match s.choose(Some(me)) {
            Some(next) => {
                s.switch(me, next);
                drop(s);
                let _ = self.baton.pass(next);
            }
            None if s.live() => {
                s.hang = Some(Hang::Deadlock);
                drop(s);
                self.baton.hang();
            }
            None => {}
        }
    }

    fn wait_turn(&self, me: usize, successor: Successor) {
        if !self.baton.wait(me, successor) {
            abort();
        }
    }

    fn hang(&self, mut s: MutexGuard<'_, State>, why: Hang) {
        s.hang = Some(why);
        drop(s);
        self.baton.hang();
        abort();
    }

    /// The run's schedule, hashes and thread states (after the workers are gone).
    pub(crate) fn outcome(&self) -> DetOutcome {
        let s = self.lock();
        DetOutcome {
            steps: s.step,
            switches: s.switches,
            preemptions: s.preemptions,
            schedule_hash: schedule_hash(&s.decisions, s.step),
            decisions: s.decisions.clone(),
            trace_hash: s.trace.0,
            hang: s.hang,
            threads: s.threads.iter().map(|t| t.view.clone()).collect(),
            tail: s.tail.iter().copied().collect(),
        }
    }
}

/// Leaves the current op by unwinding, unless already unwinding (a guard's drop
/// reaching a point), where it returns and lets the unwind finish.
fn abort() {
    if !std::thread::panicking() {
        std::panic::resume_unwind(Box::new(Abort));
    }
}

/// A worker's link to its scheduler, installed as its [`Mode`](super::Mode).
pub struct Handle {
    pub(crate) det: Arc<Det>,
    pub(crate) idx: usize,
}
