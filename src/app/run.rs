//! `kvmtorture run` and `kvmtorture again`: resolve the settings, create the run
//! directory, torture, report.

use super::exec::{self, Plan};
use super::run_dir::RunDir;
use super::target;
use crate::cli::{AgainArgs, Format, ModeArg, OutputArgs, RunArgs, ScenarioArgs};
use crate::error::{usage, Error};
use crate::interrupt;
use crate::report::{self, progress};
use crate::scenario::{self, Overrides, Scenario};

pub fn run(a: &RunArgs) -> Result<i32, Error> {
    let mut plan = Plan::new(load(&a.sc)?, ModeArg::Stress)?;
    if plan.det.is_some() && a.test_stall_worker.is_some() {
        return Err(usage(
            "--test-stall-worker is a stress-mode hook (det mode finds hangs itself)",
        ));
    }
    plan.test_stall_worker = a.test_stall_worker;
    torture(&plan, &a.out)
}

/// `again RUN_DIR`: the run's resolved `scenario.toml`, with the given settings on top.
pub fn again(a: &AgainArgs) -> Result<i32, Error> {
    let dir = target::run_dir(&a.run_dir)?;
    let path = dir.join("scenario.toml");
    if !path.is_file() {
        return Err(usage(format!(
            "{} has no scenario.toml (written by every run since kvmtorture 0.1)",
            dir.display()
        )));
    }
    let file = scenario::parse_file(&path)?;
    let sc = scenario::resolve(Some((&path, file)), &a.settings)?;
    torture(&Plan::new(sc, ModeArg::Stress)?, &a.out)
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
    let text = match out.format {
        Format::Human => report::human_result(&ex.summary),
        Format::Json => ex.summary.to_json(),
        Format::Ktap => report::ktap_result(&ex.summary),
    };
    report::print_line(text.trim_end());
    Ok(ex.code)
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
