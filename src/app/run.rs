//! `kvmtorture run` and `kvmtorture again`: resolve the settings (one scenario, or a
//! set of them: with no argument, every fixed model at once), create the run
//! directory, torture, report.

use super::exec::{self, Plan};
use super::run_dir::RunDir;
use super::{ktap, set, target};
use crate::cli::{AgainArgs, Format, ModeArg, OutputArgs, RunArgs, ScenarioArgs};
use crate::error::{exit, usage, Error};
use crate::interrupt;
use crate::report::{self, progress};
use crate::scenario::{self, Overrides, Scenario};
use crate::scenario_set::{self, ScenarioSet};

pub fn run(a: &RunArgs) -> Result<i32, Error> {
    let set = scenario_set::load(a.sc.scenario.as_deref(), &a.sc.settings)?;
    if set.is_multi() {
        return run_set(a, set);
    }
    let sc = set.members.into_iter().next().expect("one member");
    let mut plan = Plan::new(sc, ModeArg::Stress)?;
    if plan.det.is_some() && a.test_stall_worker.is_some() {
        return Err(usage(
            "--test-stall-worker is a stress-mode hook (det mode finds hangs itself)",
        ));
    }
    plan.test_stall_worker = a.test_stall_worker;
    plan.view = a.out.view;
    torture(&plan, &a.out)
}

/// `again RUN_DIR`: the run's resolved `scenario.toml`, with the given settings on top.
pub fn again(a: &AgainArgs) -> Result<i32, Error> {
    let dir = target::run_dir(&a.run_dir)?;
    let path = dir.join("scenario.toml");
    if !path.is_file() {
        return Err(usage(format!(
            "{} has no scenario.toml (every run directory of this version has one)",
            dir.display()
        )));
    }
    let file = scenario::parse_file(&path)?;
    let sc = scenario::resolve(Some((&path, file)), &a.settings)?;
    let mut plan = Plan::new(sc, ModeArg::Stress)?;
    plan.view = a.out.view;
    torture(&plan, &a.out)
}

/// Runs a plan in a new run directory and prints the result.
fn torture(plan: &Plan, out: &OutputArgs) -> Result<i32, Error> {
    let sc = &plan.sc;
    let mut dir = RunDir::create(&out.results_dir, plan)?;
    let dir_s = dir.path().display().to_string();
    if out.format == Format::Human && !out.quiet {
        eprintln!(
            "kvmtorture: {} / {} seed {} ({}) → {dir_s}",
            sc.model.name,
            sc.variant.name,
            sc.seed,
            plan.mode()
        );
    }
    interrupt::install();
    dir.guard_forced_exit();
    let mut display = progress::for_terminal(out.quiet, sc.duration, sc.seed);
    let mut obs = dir.observer(display.as_mut());
    let mut ex = exec::execute(plan, &interrupt::requested, &mut obs)?;
    drop(obs);
    drop(display);
    dir.finish(plan, &mut ex)?;
    let mut text = match out.format {
        Format::Human => report::human_result(&ex.summary),
        Format::Json => ex.summary.to_json(),
        Format::Ktap => report::ktap_result(&ex.summary),
    };
    if out.format == Format::Human && ex.code != exit::CLEAN && !out.quiet {
        text += &report::interleaving(&ex.outcome, plan.view, Some(report::REPORT_ROWS));
    }
    report::print_line(text.trim_end());
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
        .map(|sc| Plan::new(sc.clone(), ModeArg::Stress))
        .collect::<Result<Vec<_>, Error>>()?;
    let out = &a.out;
    let prepared = set::prepare(&set.name, plans, &out.results_dir)?;
    if out.format == Format::Human && !out.quiet {
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
    let mut obs = progress::for_terminal(out.quiet, first.duration, first.seed);
    let done = prepared.run(&interrupt::requested, obs.as_mut())?;
    drop(obs);
    match out.format {
        Format::Human => {
            let mut text = String::new();
            for m in &done.members {
                text += &format!("== {} / {}\n", m.plan.sc.model.name, m.plan.sc.variant.name);
                text += &report::human_result(&m.ex.summary);
            }
            let cov: Vec<u64> = done
                .summaries()
                .flat_map(|s| s.coverage.values().copied())
                .collect();
            let never: Vec<String> = done
                .summaries()
                .flat_map(|s| {
                    s.windows_never_entered
                        .iter()
                        .map(move |w| format!("{}.{w}", s.model))
                })
                .collect();
            text += &format!(
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
            report::print_line(&text);
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

/// The scenario from the positional argument, or the flags, or the default, with the
/// flags applied.
pub fn load(a: &ScenarioArgs) -> Result<Scenario, Error> {
    load_scenario(a.scenario.as_deref(), &a.settings)
}

/// A scenario by name/path, or from `--model` overrides, or the default scenario.
pub fn load_scenario(name: Option<&str>, o: &Overrides) -> Result<Scenario, Error> {
    let name = match (name, &o.model) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(scenario::DEFAULT_SCENARIO),
    };
    match name {
        Some(n) => {
            let (path, file) = scenario::load_named(n)?;
            scenario::resolve(Some((&path, file)), o)
        }
        None => scenario::resolve(None, o),
    }
}
