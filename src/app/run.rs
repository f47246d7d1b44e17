//! `kvmtorture run`: resolve the scenario, create the run directory, torture, report.

use super::exec::{self, Plan};
use crate::cli::{Format, ModeArg, RunArgs, ScenarioArgs};
use crate::error::{exit, usage, Error};
use crate::interrupt;
use crate::report::{self, progress};
use crate::scenario::{self, Overrides, Scenario};

pub fn run(a: &RunArgs) -> Result<i32, Error> {
    let mut plan = Plan::new(load(&a.sc, a.seed)?, &a.det, ModeArg::Stress)?;
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
        Format::Human => {
            print!("{}", report::human_result(&ex.summary, &ex.outcome, &dir_s));
            if ex.code != exit::CLEAN && !a.quiet {
                print!(
                    "{}",
                    report::interleaving(&ex.outcome, plan.view, Some(report::REPORT_ROWS))
                );
            }
        }
        Format::Json => print!("{}", ex.summary.to_json()),
        Format::Ktap => print!("{}", report::ktap_result(&ex.summary)),
    }
    Ok(ex.code)
}

/// The scenario from the positional argument, or the flags, or the default, with the
/// flags applied (`seed`: `run`'s; a sweep sets its own).
pub fn load(a: &ScenarioArgs, seed: Option<u64>) -> Result<Scenario, Error> {
    let o = Overrides {
        model: a.model.clone(),
        variant: a.variant.clone(),
        threads: a.threads,
        duration: a.duration,
        ops: a.ops,
        seed,
        delay_prob: a.delay_prob,
        stall_timeout: a.stall_timeout,
        params: a.params.clone(),
    };
    load_scenario(a.scenario.as_deref(), &o)
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
