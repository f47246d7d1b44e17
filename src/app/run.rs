//! `kvmtorture run`: resolve the scenario (or set of them), create the run directory,
//! torture, report. With no argument, every fixed model at once.

use super::exec::{self, Plan};
use super::{ktap, set};
use crate::cli::{Format, ModeArg, RunArgs, ScenarioArgs};
use crate::error::{usage, Error};
use crate::interrupt;
use crate::report::{self, progress};
use crate::scenario::{self, Overrides, Scenario};
use crate::scenario_set::{self, ScenarioSet};

pub fn run(a: &RunArgs) -> Result<i32, Error> {
    let set = load_set(&a.sc, a.seed)?;
    if set.is_multi() {
        return run_set(a, set);
    }
    let mut plan = Plan::new(
        set.members.into_iter().next().expect("one member"),
        &a.det,
        ModeArg::Stress,
    )?;
    if plan.det.is_some() && a.test_stall_worker.is_some() {
        return Err(usage(
            "--test-stall-worker is a stress-mode hook (det mode finds hangs itself)",
        ));
    }
    plan.keep_going = a.keep_going;
    plan.test_stall_worker = a.test_stall_worker;
    let sc = &plan.sc;
    let dir = report::create_run_dir(&a.results_dir, &sc.name, sc.variant.name, sc.seed)?;
    report::write(&dir, "summary.json", &exec::initial_summary(&plan).to_json())?;
    exec::save_plan(&dir, &plan)?;
    let dir_s = dir.display().to_string();
    if a.format == Format::Human && !a.quiet {
        eprintln!(
            "kvmtorture: {} / {} seed {} ({}) → {dir_s}",
            sc.model.name,
            sc.variant.name,
            sc.seed,
            plan.mode()
        );
    }

    interrupt::install();
    let mut obs = progress::for_terminal(a.quiet, sc.duration, sc.seed);
    let mut ex = exec::execute(&plan, &interrupt::requested, obs.as_mut())?;
    drop(obs);
    exec::save_result(&dir, &plan, &mut ex)?;
    match a.format {
        Format::Human => print!("{}", report::human_result(&ex.summary, &ex.outcome, &dir_s)),
        Format::Json => print!("{}", ex.summary.to_json()),
        Format::Ktap => print!("{}", report::ktap_result(&ex.summary)),
    }
    Ok(ex.code)
}

/// Several models at once (the default `run`, or a `[[model]]` scenario): one
/// process, one section per model, the worst exit code.
fn run_set(a: &RunArgs, set: ScenarioSet) -> Result<i32, Error> {
    if a.test_stall_worker.is_some() {
        return Err(usage("--test-stall-worker needs a single-model run"));
    }
    let plans = set
        .members
        .iter()
        .map(|sc| {
            let mut p = Plan::new(sc.clone(), &a.det, ModeArg::Stress)?;
            p.keep_going = a.keep_going;
            Ok(p)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let prepared = set::prepare(&set.name, plans, &a.results_dir)?;
    if a.format == Format::Human && !a.quiet {
        let models: Vec<String> = set
            .members
            .iter()
            .map(|m| format!("{}/{} ×{}", m.model.name, m.variant.name, m.threads))
            .collect();
        eprintln!(
            "kvmtorture: {} — {} model(s) at once, {} threads, {}: {} → {}",
            set.name,
            set.members.len(),
            set.threads(),
            scenario_set::budget_text(&set),
            models.join(", "),
            prepared.dir.display()
        );
    }
    interrupt::install();
    let first = &set.members[0];
    let mut obs = progress::for_terminal(a.quiet, first.duration, first.seed);
    let done = prepared.run(&interrupt::requested, obs.as_mut())?;
    drop(obs);
    match a.format {
        Format::Human => {
            for m in &done.members {
                println!("== {} / {}", m.plan.sc.model.name, m.plan.sc.variant.name);
                print!(
                    "{}",
                    report::human_result(&m.ex.summary, &m.ex.outcome, &m.dir.display().to_string())
                );
            }
            let cov: Vec<u64> = done
                .summaries()
                .flat_map(|s| s.coverage.values().copied())
                .collect();
            let never: Vec<String> = done
                .summaries()
                .flat_map(|s| {
                    s.coverage
                        .iter()
                        .filter(|(_, n)| **n == 0)
                        .map(move |(w, _)| format!("{}.{w}", s.model))
                })
                .collect();
            println!(
                "{}: {} — {} model(s), {} ops in one process, {}/{} windows entered{} → {}",
                set::status_of_code(done.code).to_uppercase(),
                done.name,
                done.members.len(),
                done.ops_total(),
                cov.iter().filter(|n| **n > 0).count(),
                cov.len(),
                if never.is_empty() {
                    String::new()
                } else {
                    format!(" (never: {})", never.join(", "))
                },
                done.dir.display()
            );
        }
        Format::Json => {
            let summaries: Vec<serde_json::Value> = done
                .summaries()
                .map(|s| serde_json::to_value(s).expect("summary serialises"))
                .collect();
            print!(
                "{}",
                exec::to_json(&serde_json::json!({
                    "set": done.name,
                    "status": set::status_of_code(done.code),
                    "exit_code": done.code,
                    "dir": done.dir.display().to_string(),
                    "ops_total": done.ops_total(),
                    "members": summaries,
                }))
            );
        }
        Format::Ktap => {
            let cases: Vec<ktap::Case> = done.members.iter().map(ktap::Case::of_member).collect();
            print!("{}", ktap::document(&cases));
        }
    }
    Ok(done.code)
}

/// The scenario set from the positional argument, or the flags, or every fixed model.
pub fn load_set(a: &ScenarioArgs, seed: Option<u64>) -> Result<ScenarioSet, Error> {
    scenario_set::load(a.scenario.as_deref(), &overrides(a, seed))
}

/// The scenario from the positional argument, or the flags, or the default, with the
/// flags applied (`seed`: `run`'s; a sweep sets its own).
pub fn load(a: &ScenarioArgs, seed: Option<u64>) -> Result<Scenario, Error> {
    load_scenario(a.scenario.as_deref(), &overrides(a, seed))
}

/// The flags that override a scenario's settings.
pub fn overrides(a: &ScenarioArgs, seed: Option<u64>) -> Overrides {
    Overrides {
        model: a.model.clone(),
        variant: a.variant.clone(),
        threads: a.threads,
        duration: a.duration,
        ops: a.ops,
        seed,
        delay_prob: a.delay_prob,
        stall_timeout: a.stall_timeout,
        params: a.params.clone(),
    }
}

/// A scenario by name/path, or from `--model` overrides, or the default scenario.
pub fn load_scenario(name: Option<&str>, o: &Overrides) -> Result<Scenario, Error> {
    let dir = scenario::scenarios_dir();
    let name = match (name, &o.model) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(scenario::DEFAULT_SCENARIO),
    };
    match name {
        Some(n) => {
            let path = scenario::locate(n, &dir)?;
            let file = scenario::parse_file(&path)?;
            scenario::resolve(Some((&path, file)), o)
        }
        None => scenario::resolve(None, o),
    }
}
