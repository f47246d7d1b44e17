//! `kvmtorture shrink <run-dir>`: minimise a failing det run while the same
//! invariant still fails. Three passes, each keeping only what still reproduces:
//! 1. a smaller configuration — fewer threads, then fewer ops per worker — found by
//!    trying a few random-strategy seeds per size, smallest first;
//! 2. fewer decisions (preemptions): delta debugging over the decision list, dropping
//!    chunks of halving size and replaying the rest;
//! 3. fewer ops again under the shrunk schedule.
//!
//! The result is a normal det run directory (`<run-dir>/shrunk/`) with the minimal
//! `schedule.json` and `interleaving.txt`, the steps one column per thread.

use super::exec::{self, Executed, Plan, ScheduleFile};
use crate::cli::{Format, ShrinkArgs};
use crate::engine::DetRun;
use crate::error::{exit, usage, Error};
use crate::report::{self, interleave, progress::Silent};
use crate::sched::strategy::{Decision, StrategySpec};
use serde_json::json;

/// Seeds tried per smaller configuration.
const SEEDS_PER_SIZE: u64 = 8;

struct Search {
    target: (String, Option<String>),
    runs: u32,
    budget: u32,
}

impl Search {
    /// Runs `plan`; the run's schedule if it fails the same way.
    fn attempt(&mut self, plan: &Plan) -> Result<Option<(ScheduleFile, Executed)>, Error> {
        if self.runs >= self.budget {
            return Ok(None);
        }
        self.runs += 1;
        let ex = exec::execute(plan, &crate::interrupt::requested, &mut Silent)?;
        if ex.signature() != self.target {
            return Ok(None);
        }
        Ok(exec::schedule_of(plan, &ex).map(|s| (s, ex)))
    }

    fn left(&self) -> bool {
        self.runs < self.budget && !crate::interrupt::requested()
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
    let orig: ScheduleFile = exec::read_json(&run_dir, "schedule.json")?;
    if orig.exit_code == exit::CLEAN {
        return Err(usage("nothing to shrink: the run was clean"));
    }
    crate::interrupt::install();
    let mut s = Search {
        target: (orig.status.clone(), orig.invariant.clone()),
        runs: 0,
        budget: a.budget.max(1),
    };
    let Some(mut best) = s.attempt(&orig.replay_plan()?)? else {
        return Err(Error::Fault(
            "the saved schedule does not reproduce its own failure".into(),
        ));
    };
    smaller_config(&mut s, &mut best)?;
    fewer_decisions(&mut s, &mut best)?;
    fewer_ops(&mut s, &mut best)?;

    let (sched, mut ex) = best;
    let dir = run_dir.join("shrunk");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Fault(format!("cannot create {}: {e}", dir.display())))?;
    let plan = sched.replay_plan()?;
    exec::save_plan(&dir, &plan)?;
    exec::save_result(&dir, &plan, &mut ex)?;
    let d = ex.outcome.det.as_ref().expect("det run");
    let mut text = format!(
        "{} / {}: {} {} — {} threads, {} ops per worker, {} steps, {} preemptions\n\
         (shrunk from {} threads, {} steps, {} preemptions; replay: kvmtorture replay {})\n\n",
        sched.scenario.model.as_deref().unwrap_or("?"),
        sched.scenario.variant.as_deref().unwrap_or("?"),
        sched.status,
        sched.invariant.as_deref().unwrap_or(""),
        sched.scenario.threads.unwrap_or(0),
        sched.scenario.ops.unwrap_or(0),
        d.steps,
        d.preemptions,
        orig.scenario.threads.unwrap_or(0),
        orig.steps,
        orig.preemptions,
        dir.display()
    );
    if d.tail.len() as u64 != d.steps {
        text += &format!("(only the last {} steps are shown)\n", d.tail.len());
    }
    text += &interleave::render(&d.tail, d.threads.len());
    report::write(&dir, "interleaving.txt", &text)?;
    let out = json!({
        "before": {"threads": orig.scenario.threads.unwrap_or(0), "ops": orig.scenario.ops, "steps": orig.steps, "preemptions": orig.preemptions, "decisions": orig.decisions.len()},
        "after": {"threads": sched.scenario.threads.unwrap_or(0), "ops": sched.scenario.ops, "steps": sched.steps, "preemptions": sched.preemptions, "decisions": sched.decisions.len()},
        "runs": s.runs, "invariant": sched.invariant, "status": sched.status, "shrunk_dir": dir.display().to_string(),
    });
    match a.out.format {
        Format::Json => print!("{}", exec::to_json(&out)),
        _ => println!(
            "shrunk {} {} in {} runs: steps {} → {}, preemptions {} → {}, threads {} → {}, ops {} → {}\n  {}/interleaving.txt",
            sched.status,
            sched.invariant.as_deref().unwrap_or(""),
            s.runs,
            orig.steps,
            sched.steps,
            orig.preemptions,
            sched.preemptions,
            orig.scenario.threads.unwrap_or(0),
            sched.scenario.threads.unwrap_or(0),
            orig.scenario.ops.unwrap_or(0),
            sched.scenario.ops.unwrap_or(0),
            dir.display()
        ),
    }
    Ok(ex.code)
}

/// Pass 1: the smallest (threads, ops) for which some random seed fails the same way.
fn smaller_config(s: &mut Search, best: &mut (ScheduleFile, Executed)) -> Result<(), Error> {
    let base = best.0.replay_plan()?;
    let (threads, ops) = (base.sc.threads, base.sc.ops.unwrap_or(1));
    let det = base.det.clone().expect("det plan");
    for t in 1..=threads {
        let mut o = 1;
        while o <= ops && (t, o) != (threads, ops) {
            for seed in 1..=SEEDS_PER_SIZE {
                if !s.left() {
                    return Ok(());
                }
                let mut p = base.clone();
                p.sc.threads = t;
                p.sc.ops = Some(o);
                p.sc.seed = seed;
                p.det = Some(DetRun {
                    strategy: StrategySpec::Random { switch_prob: 0.05 },
                    ..det.clone()
                });
                if let Some(r) = s.attempt(&p)? {
                    *best = r;
                    return Ok(());
                }
            }
            o *= 2;
        }
    }
    Ok(())
}

/// Pass 2: drop chunks of decisions (halving the chunk size) while it reproduces.
fn fewer_decisions(s: &mut Search, best: &mut (ScheduleFile, Executed)) -> Result<(), Error> {
    let mut chunk = best.0.decisions.len().div_ceil(2);
    while chunk >= 1 && s.left() {
        let mut i = 0;
        while i < best.0.decisions.len() && s.left() {
            let mut d = best.0.decisions.clone();
            d.drain(i..(i + chunk).min(d.len()));
            match s.attempt(&with_decisions(&best.0, d)?)? {
                // Decisions after the failure point vanish too; keep position.
                Some(r) if r.0.decisions.len() < best.0.decisions.len() => *best = r,
                _ => i += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    Ok(())
}

/// Pass 3: halve the ops budget under the current schedule while it reproduces.
fn fewer_ops(s: &mut Search, best: &mut (ScheduleFile, Executed)) -> Result<(), Error> {
    while let Some(ops) = best.0.scenario.ops.filter(|&o| o > 1) {
        let mut p = best.0.replay_plan()?;
        p.sc.ops = Some(ops / 2);
        match s.attempt(&p)? {
            Some(r) => *best = r,
            None => break,
        }
    }
    Ok(())
}
