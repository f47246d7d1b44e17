//! `kvmtorture shrink <run-dir>`: minimise a failing det run without ever making it
//! longer. A candidate replaces the current best only if it fails *the same way*
//! (status, invariant, the op that found it and the shape of its message — numbers
//! aside — see [`Failure`]) with no more steps and no more preemptions than the best,
//! and is smaller in something (steps, preemptions, ops, decisions). Passes:
//! 1. a smaller configuration — fewer threads, then fewer ops per worker — where
//!    several random-strategy seeds are tried at the first size that reproduces and
//!    the shortest is kept;
//! 2. fewer ops: halving the ops per worker under the current schedule;
//! 3. ops deleted, halves of them down to single ops, then single rounds of an op
//!    left out (a guest access of `KVM_RUN`): each op and round draws from its own
//!    stream, and the schedule's later decisions move back with the cut
//!    ([`super::cut`]), so the rest of the run stays as it was;
//! 4. fewer decisions: delta debugging over the decision list, down to removing
//!    single preemptions;
//! 5. merging adjacent context switches: two consecutive decisions become one (switch
//!    straight to the second's thread) or none (a switch away and back).
//!
//! Passes 3–5 go round again while a round improves the best.
//!
//! The result is a normal det run directory (`<run-dir>/shrunk/`) with the minimal
//! `schedule.json`, `report.txt` and `interleaving.txt` (the protocol view unless
//! `--view full`).

use super::cut::{self, Cut};
use super::exec::{self, Executed, Plan, ScheduleFile};
use crate::cli::{Format, ShrinkArgs};
use crate::engine::DetRun;
use crate::error::{exit, usage, Error};
use crate::report::{self, progress::Silent};
use crate::sched::strategy::{Decision, StrategySpec};
use serde_json::json;

/// Seeds that probe a smaller configuration.
const PROBE_SEEDS: u64 = 4;
/// Seeds tried at the first smaller configuration that reproduces, and the next few.
const SEEDS_PER_SIZE: u64 = 12;
/// Sizes tried with every seed after the first one that reproduces.
const FULL_SIZES_AFTER: u32 = 3;
/// Switch probabilities tried with each of those seeds.
const SWITCH_PROBS: [f64; 2] = [0.05, 0.2];

/// What makes two failures the same: status, invariant, the op (or whole-model
/// check) that found it, and its message with every number replaced by `#`, so that
/// "entry 16 of gen 1" and "entry 9 of gen 1" match but another message does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: String,
    pub invariant: Option<String>,
    pub site: Option<String>,
    pub message: Option<String>,
}

impl Failure {
    pub fn of(ex: &Executed) -> Failure {
        let v = ex.summary.violations.first();
        Failure {
            status: ex.summary.status.clone(),
            invariant: v.map(|v| v.invariant.clone()),
            site: v.map(|v| v.op.clone()),
            message: v.map(|v| message_class(&v.message)),
        }
    }
}

/// `msg` with each run of digits (and a `0x` hex number) replaced by `#`.
pub(super) fn message_class(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
            }
            while chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

/// The size of a det run, as the acceptance rule compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Size {
    pub steps: u64,
    pub preemptions: u64,
    pub threads: usize,
    pub ops: u64,
    pub decisions: usize,
    /// Ops and rounds left out by pass 3.
    pub skipped: usize,
}

impl Size {
    fn of(s: &ScheduleFile) -> Size {
        Size {
            steps: s.steps,
            preemptions: s.preemptions,
            threads: s.scenario.threads.unwrap_or(1),
            ops: s.scenario.ops.unwrap_or(0),
            decisions: s.decisions.len(),
            skipped: s.skip_ops.len() + s.skip_rounds.len(),
        }
    }

    /// No more steps and preemptions than `b`, and smaller in something.
    fn improves_on(&self, b: &Size) -> bool {
        let key = |s: &Size| {
            let ops = (s.threads as u64 * s.ops).saturating_sub(s.skipped as u64);
            (s.steps, s.preemptions, ops, s.decisions)
        };
        self.steps <= b.steps && self.preemptions <= b.preemptions && key(self) < key(b)
    }
}

/// The search: its target, its best run so far and its budget.
pub struct Search {
    target: Failure,
    pub best: (ScheduleFile, Executed),
    pub runs: u32,
    budget: u32,
}

impl Search {
    /// Starts from `orig`, which must reproduce its own failure.
    pub fn new(orig: &ScheduleFile, budget: u32) -> Result<Search, Error> {
        let plan = orig.replay_plan()?;
        let ex = exec::execute(&plan, &crate::interrupt::requested, &mut Silent)?;
        let sched = exec::schedule_of(&plan, &ex).expect("det plan");
        if sched.status != orig.status || sched.invariant != orig.invariant {
            return Err(Error::Fault(
                "the saved schedule does not reproduce its own failure".into(),
            ));
        }
        Ok(Search {
            target: Failure::of(&ex),
            best: (sched, ex),
            runs: 1,
            budget: budget.max(1),
        })
    }

    /// Runs `plan`; keeps it as the best if it fails the same way and improves on
    /// the best. Returns whether it did.
    fn attempt(&mut self, plan: &Plan) -> Result<bool, Error> {
        Ok(self.attempt_sized(plan)? == Some(true))
    }

    /// [`attempt`](Self::attempt), telling apart a run that fails the same way but
    /// is no smaller (`Some(false)`) from one that does not reproduce (`None`).
    fn attempt_sized(&mut self, plan: &Plan) -> Result<Option<bool>, Error> {
        if !self.left() {
            return Ok(None);
        }
        self.runs += 1;
        let ex = exec::execute(plan, &crate::interrupt::requested, &mut Silent)?;
        if Failure::of(&ex) != self.target {
            return Ok(None);
        }
        let Some(s) = exec::schedule_of(plan, &ex) else {
            return Ok(None);
        };
        if !Size::of(&s).improves_on(&Size::of(&self.best.0)) {
            return Ok(Some(false));
        }
        self.best = (s, ex);
        Ok(Some(true))
    }

    fn left(&self) -> bool {
        self.runs < self.budget && !crate::interrupt::requested()
    }

    /// Every pass, in order.
    pub fn run_passes(&mut self) -> Result<(), Error> {
        self.smaller_config()?;
        self.fewer_ops()?;
        // Removing a switch can make a part removable and the other way round: the
        // later passes go round again while a round improves the best.
        loop {
            let before = Size::of(&self.best.0);
            self.cut_parts()?;
            self.fewer_decisions()?;
            self.merge_switches()?;
            if Size::of(&self.best.0) == before || !self.left() {
                return Ok(());
            }
        }
    }

    /// Pass 1: a smaller (threads, ops per worker), swept twice: fewest threads
    /// first (a two-CPU race), then fewest ops in all (a race that needs a third
    /// role). Each size is probed with a few random-strategy seeds; at the first size
    /// that reproduces, and the next few, every seed is tried and the shortest kept.
    fn smaller_config(&mut self) -> Result<(), Error> {
        let base = self.best.0.replay_plan()?;
        let (threads, ops) = (base.sc.threads, base.sc.ops.unwrap_or(1));
        let mut sizes: Vec<(usize, u64)> = (1..=threads)
            .flat_map(|t| {
                std::iter::successors(Some(1u64), |o| Some(o * 2))
                    .take_while(move |&o| o < ops || (o == ops && t < threads))
                    .map(move |o| (t, o))
            })
            .collect();
        self.sweep(&base, &sizes, false)?;
        // Only sizes with fewer ops in all than the best so far can be shorter.
        let total = |&(t, o): &(usize, u64)| t as u64 * o;
        let best = total(&(
            self.best.0.scenario.threads.unwrap_or(1),
            self.best.0.scenario.ops.unwrap_or(1),
        ));
        sizes.retain(|s| total(s) < best);
        sizes.sort_by_key(|s| (total(s), s.0));
        self.sweep(&base, &sizes, true)
    }

    /// Tries `sizes` in order until the first that reproduces and the few after it,
    /// or with `all`, every one (and the few after each that improved on the best).
    /// Leaves half the budget to the later passes.
    fn sweep(&mut self, base: &Plan, sizes: &[(usize, u64)], all: bool) -> Result<(), Error> {
        let mut full_left = 0;
        for &(t, o) in sizes {
            if !self.left() || self.runs > self.budget / 2 {
                break;
            }
            if full_left > 0 {
                self.try_size(base, t, o, 1..=SEEDS_PER_SIZE, all)?;
                full_left -= 1;
                if full_left == 0 && !all {
                    break;
                }
            } else if self.try_size(base, t, o, 1..=PROBE_SEEDS, all)? {
                // Probed only: the rest of this size's seeds, then the next sizes.
                self.try_size(base, t, o, PROBE_SEEDS + 1..=SEEDS_PER_SIZE, all)?;
                full_left = FULL_SIZES_AFTER;
            }
        }
        Ok(())
    }

    /// Runs `base` at `threads` x `ops` with the random strategy for each of `seeds`
    /// and each switch probability; true if any run failed the same way (with
    /// `improved`: if any became the best).
    fn try_size(
        &mut self,
        base: &Plan,
        threads: usize,
        ops: u64,
        seeds: std::ops::RangeInclusive<u64>,
        improved: bool,
    ) -> Result<bool, Error> {
        let det = base.det.clone().expect("det plan");
        let mut found = false;
        for seed in seeds {
            for switch_prob in SWITCH_PROBS {
                let mut p = base.clone();
                p.sc.threads = threads;
                p.sc.ops = Some(ops);
                p.sc.seed = seed;
                p.det = Some(DetRun {
                    strategy: StrategySpec::Random { switch_prob },
                    ..det.clone()
                });
                let r = self.attempt_sized(&p)?;
                found |= if improved { r == Some(true) } else { r.is_some() };
            }
        }
        Ok(found)
    }

    /// Pass 2: halve the ops budget under the current schedule while it reproduces.
    fn fewer_ops(&mut self) -> Result<(), Error> {
        while let Some(ops) = self.best.0.scenario.ops.filter(|&o| o > 1) {
            let mut p = self.best.0.replay_plan()?;
            p.sc.ops = Some(ops / 2);
            if !self.attempt(&p)? {
                break;
            }
        }
        Ok(())
    }

    /// Pass 3: leave out ops — halves of the ops that ran, then quarters, down to
    /// single ops — then single rounds of an op (a guest access), any worker's, last
    /// first: a cut op is still drawn but not run, a cut round is started but
    /// skipped. The schedule moves with the cut ([`cut::decisions_without`]); a cut
    /// is also tried under the schedule as it was.
    fn cut_parts(&mut self) -> Result<(), Error> {
        let ops = |s: &Self| -> Vec<Cut> {
            let mut v: Vec<Cut> = cut::parts(&s.best.1)
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| matches!(c, Cut::Op(..)))
                .collect();
            v.reverse();
            v
        };
        let mut chunk = ops(self).len().div_ceil(2).max(1);
        while chunk > 1 && self.left() {
            let mut i = 0;
            loop {
                let all = ops(self);
                if i >= all.len() || !self.left() {
                    break;
                }
                let part = &all[i..(i + chunk).min(all.len())];
                // On success the next chunk has moved into position `i`.
                if !self.try_cut(part)? {
                    i += chunk;
                }
            }
            chunk = chunk.div_ceil(2);
        }
        for rounds in [false, true] {
            let mut tried: Vec<Cut> = Vec::new();
            loop {
                let p = &self.best.0;
                let next = cut::parts(&self.best.1)
                    .into_iter()
                    .rev()
                    .map(|(_, c)| c)
                    .filter(|c| match *c {
                        Cut::Op(..) => !rounds,
                        Cut::Round(w, op, r) => rounds && !p.skip_rounds.contains(&(w, op, r)),
                    })
                    .find(|c| !tried.contains(c));
                let Some(c) = next else { break };
                if !self.left() {
                    return Ok(());
                }
                tried.push(c);
                self.try_cut(&[c])?;
            }
        }
        Ok(())
    }

    /// Runs the best without `cuts`, under the schedule moved with them and, for
    /// ops, as it was; whether either became the best.
    fn try_cut(&mut self, cuts: &[Cut]) -> Result<bool, Error> {
        let mut plan = self.best.0.replay_plan()?;
        for &c in cuts {
            match c {
                Cut::Op(w, op) => plan.skip_ops.push((w, op)),
                Cut::Round(w, op, r) => plan.skip_rounds.push((w, op, r)),
            }
        }
        let moved = cut::decisions_without(&self.best.1, &self.best.0.decisions, cuts);
        let as_was = plan.clone();
        if let Some(d) = moved.filter(|d| *d != self.best.0.decisions) {
            plan.det = Some(DetRun {
                strategy: StrategySpec::Replay { decisions: d },
                ..plan.det.clone().expect("det plan")
            });
            if self.attempt(&plan)? {
                return Ok(true);
            }
            if cuts.iter().all(|c| matches!(c, Cut::Round(..))) {
                return Ok(false);
            }
        }
        self.attempt(&as_was)
    }

    /// Pass 4: drop chunks of decisions (halving the chunk size down to single
    /// preemptions) while it reproduces.
    fn fewer_decisions(&mut self) -> Result<(), Error> {
        let mut chunk = self.best.0.decisions.len().div_ceil(2);
        while chunk >= 1 && self.left() {
            let mut i = 0;
            while i < self.best.0.decisions.len() && self.left() {
                let mut d = self.best.0.decisions.clone();
                d.drain(i..(i + chunk).min(d.len()));
                // On success the next chunk has moved into position `i`.
                if !self.attempt(&with_decisions(&self.best.0, d)?)? {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        Ok(())
    }

    /// Pass 5: each pair of adjacent decisions becomes one switch, straight to the
    /// second's thread at the first's point, or none (a switch away and back).
    fn merge_switches(&mut self) -> Result<(), Error> {
        let mut i = 0;
        while i + 1 < self.best.0.decisions.len() && self.left() {
            let d = &self.best.0.decisions;
            let merged = Decision {
                choice: d[i].choice,
                thread: d[i + 1].thread,
            };
            let mut one = d.clone();
            one.splice(i..i + 2, [merged]);
            let mut none = d.clone();
            none.drain(i..i + 2);
            if !self.attempt(&with_decisions(&self.best.0, one)?)?
                && !self.attempt(&with_decisions(&self.best.0, none)?)?
            {
                i += 1;
            }
        }
        Ok(())
    }
}

fn with_decisions(s: &ScheduleFile, decisions: Vec<Decision>) -> Result<Plan, Error> {
    let mut s = s.clone();
    s.decisions = decisions;
    s.replay_plan()
}

pub fn shrink(a: &ShrinkArgs) -> Result<i32, Error> {
    let run_dir = &super::target::run_dir(&a.run_dir)?;
    if !run_dir.join("schedule.json").is_file() {
        return Err(usage(format!(
            "{} is not a det run (no schedule.json); `replay --det` finds a det reproduction of a stress run",
            run_dir.display()
        )));
    }
    let orig: ScheduleFile = exec::read_json(run_dir, "schedule.json")?;
    if orig.exit_code == exit::CLEAN {
        return Err(usage("nothing to shrink: the run was clean"));
    }
    crate::interrupt::install();
    let mut s = Search::new(&orig, a.budget)?;
    let before = (Size::of(&s.best.0), s.best.1.outcome.ops_total);
    s.run_passes()?;
    let runs = s.runs;
    let (sched, mut ex) = s.best;
    let after = (Size::of(&sched), ex.outcome.ops_total);

    let dir = run_dir.join("shrunk");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Fault(format!("cannot create {}: {e}", dir.display())))?;
    let mut plan = sched.replay_plan()?;
    plan.view = a.out.view;
    exec::save_plan(&dir, &plan)?;
    exec::save_result(&dir, &plan, &mut ex)?;
    let view = report::interleaving(&ex.outcome, a.out.view, None);
    let text = format!(
        "{} / {}: {} {} — seed {}, {} threads, {} ops per worker ({} ops run), {} steps, {} preemptions\n\
         (shrunk from seed {}, {} threads, {} ops run, {} steps, {} preemptions; replay: kvmtorture replay {})\n\n{view}",
        sched.scenario.model.as_deref().unwrap_or("?"),
        sched.scenario.variant.as_deref().unwrap_or("?"),
        sched.status,
        sched.invariant.as_deref().unwrap_or(""),
        seed_of(&sched),
        after.0.threads,
        after.0.ops,
        after.1,
        after.0.steps,
        after.0.preemptions,
        seed_of(&orig),
        before.0.threads,
        before.1,
        before.0.steps,
        before.0.preemptions,
        dir.display()
    );
    report::write(&dir, "interleaving.txt", &text)?;
    // Pass 1 may keep a smaller configuration found with another seed: each side
    // names its own, so the shrunk run says which run it came from.
    let size = |seed: u64, (s, ops_run): (Size, u64)| json!({"seed": seed, "threads": s.threads, "ops": s.ops, "ops_deleted": s.skipped, "ops_run": ops_run, "steps": s.steps, "preemptions": s.preemptions, "decisions": s.decisions});
    let out = json!({
        "before": size(seed_of(&orig), before), "after": size(seed_of(&sched), after),
        "runs": runs, "invariant": sched.invariant, "status": sched.status, "shrunk_dir": dir.display().to_string(),
    });
    match a.out.format {
        Format::Json => print!("{}", exec::to_json(&out)),
        Format::Ktap => print!(
            "{}",
            super::ktap::document(&[super::ktap::Case {
                // The shrink succeeded: the same failure, no longer than before.
                ok: true,
                name: format!("shrink {}", run_dir.display()),
                skip: None,
                diag: vec![
                    format!(
                        "{} {}: steps {} -> {}, preemptions {} -> {}",
                        sched.status,
                        sched.invariant.as_deref().unwrap_or(""),
                        before.0.steps,
                        after.0.steps,
                        before.0.preemptions,
                        after.0.preemptions
                    ),
                    format!("run dir: {}", dir.display()),
                ],
            }])
        ),
        Format::Human => print!(
            "shrunk {} {} in {runs} runs: steps {} → {}, preemptions {} → {}, threads {} → {}, ops run {} → {}\n  {}/interleaving.txt\n\n{view}",
            sched.status,
            sched.invariant.as_deref().unwrap_or(""),
            before.0.steps,
            after.0.steps,
            before.0.preemptions,
            after.0.preemptions,
            before.0.threads,
            after.0.threads,
            before.1,
            after.1,
            dir.display()
        ),
    }
    Ok(ex.code)
}

/// The seed a schedule file's run used (saved resolved, so always present).
fn seed_of(s: &ScheduleFile) -> u64 {
    s.scenario.seed.unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::hex;
    use crate::scenario::{self, ModeArg, Overrides};

    #[test]
    fn message_class_ignores_numbers_only() {
        assert_eq!(
            message_class("entry 16 of gen 0x1f at 49"),
            message_class("entry 9 of gen 0x2 at 3")
        );
        assert_ne!(
            message_class("H_ENTER made 1"),
            message_class("page fault made 1")
        );
    }

    /// A shrink never returns more steps or preemptions than its input, over a few
    /// failing seeds of each race issue 11 names (with a small budget, as a
    /// cut-short search must keep the promise too), and its result replays exactly:
    /// the same failure, the same hashes, from its own `schedule.json`.
    #[test]
    fn shrink_never_grows_and_replays() {
        for (model, variant) in [
            ("hpt", "buggy"),
            ("pfncache", "speculative-valid"),
            ("pfncache", "deactivate-race"),
            ("pfncache", "no-refresh-lock"),
        ] {
            let mut checked = 0;
            for seed in 1..=40 {
                let o = Overrides {
                    model: Some(model.into()),
                    variant: Some(variant.into()),
                    threads: Some(4),
                    ops: Some(40),
                    seed: Some(seed),
                    mode: Some(ModeArg::Det),
                    ..Overrides::default()
                };
                let sc = scenario::resolve(None, &o).unwrap();
                let plan = Plan::new(sc, ModeArg::Det).unwrap();
                let ex = exec::execute(&plan, &|| false, &mut Silent).unwrap();
                if ex.code != exit::VIOLATION {
                    continue;
                }
                let orig = exec::schedule_of(&plan, &ex).unwrap();
                let mut s = Search::new(&orig, 60).unwrap();
                s.run_passes().unwrap();
                let (best, best_ex) = &s.best;
                let after = Size::of(best);
                assert!(
                    after.steps <= orig.steps && after.preemptions <= orig.preemptions,
                    "{model}/{variant} seed {seed}: {orig:?} → {after:?}"
                );
                assert_eq!(Failure::of(best_ex), Failure::of(&ex));
                let again = exec::execute(&best.replay_plan().unwrap(), &|| false, &mut Silent).unwrap();
                let d = again.outcome.det.as_ref().unwrap();
                assert_eq!(
                    (again.code, hex(d.schedule_hash), hex(d.trace_hash)),
                    (
                        best.exit_code,
                        best.schedule_hash.clone(),
                        best.trace_hash.clone()
                    ),
                    "{model}/{variant} seed {seed}: the shrunk schedule does not replay"
                );
                checked += 1;
                if checked == 3 {
                    break;
                }
            }
            assert_eq!(checked, 3, "{model}/{variant}: too few failing seeds");
        }
    }
}
