//! `kvmtorture run`: resolve the scenario, create the run directory, torture, report.

use crate::cli::{Format, RunArgs};
use crate::engine::{self, RunConfig, Status};
use crate::error::{exit, usage, Error};
use crate::report::{self, progress, Summary};
use crate::scenario::{self, Overrides, Scenario};
use crate::{duration, interrupt};
use std::collections::BTreeMap;

pub fn run(a: &RunArgs) -> Result<i32, Error> {
    let sc = load(a)?;
    let model =
        (sc.model.build)(&sc.model_config()).map_err(|e| usage(format!("{} model: {e}", sc.model.name)))?;
    let cfg = RunConfig {
        threads: sc.threads,
        duration: sc.duration,
        ops_per_worker: sc.ops,
        seed: sc.seed,
        delay_prob: sc.delay_prob,
        window_boost: sc.window_boost,
        stall_timeout: sc.stall_timeout,
        keep_going: a.keep_going,
        quiescent_every: sc.quiescent_every,
        weights: sc.weights()?,
        test_stall_worker: a.test_stall_worker,
    };
    let dir = report::create_run_dir(&a.results_dir, &sc.name, sc.variant.name, sc.seed)?;
    let mut summary = initial_summary(&sc);
    report::write(&dir, "summary.json", &summary.to_json())?;
    let dir_s = dir.display().to_string();
    if a.format == Format::Human && !a.quiet {
        eprintln!(
            "kvmtorture: {} / {} seed {} → {dir_s}",
            sc.model.name, sc.variant.name, sc.seed
        );
    }

    interrupt::install();
    let mut obs = progress::for_terminal(a.quiet, sc.duration, sc.seed);
    let outcome = engine::run(model, cfg, &interrupt::requested, obs.as_mut());
    drop(obs);

    let code = match outcome.status {
        Status::Clean => exit::CLEAN,
        Status::Violation => exit::VIOLATION,
        Status::Stall => exit::STALL,
        Status::Fault => exit::FAULT,
        Status::Interrupted => exit::INTERRUPTED,
    };
    summary.complete(&outcome, code);
    report::write(&dir, "summary.json", &summary.to_json())?;
    if !matches!(outcome.status, Status::Clean | Status::Interrupted) {
        report::write(&dir, "report.txt", &report::failure_report(&summary, &outcome))?;
    }
    match a.format {
        Format::Human => print!("{}", report::human_result(&summary, &outcome, &dir_s)),
        Format::Json => print!("{}", summary.to_json()),
        Format::Ktap => print!("{}", report::ktap_result(&summary)),
    }
    Ok(code)
}

/// The scenario from the positional argument, or the flags, or the default.
fn load(a: &RunArgs) -> Result<Scenario, Error> {
    let o = Overrides {
        model: a.model.clone(),
        variant: a.variant.clone(),
        threads: a.threads,
        duration: a.duration,
        ops: a.ops,
        seed: a.seed,
        delay_prob: a.delay_prob,
        stall_timeout: a.stall_timeout,
    };
    let dir = scenario::scenarios_dir();
    let name = match (&a.scenario, &a.model) {
        (Some(s), _) => Some(s.as_str()),
        (None, Some(_)) => None,
        (None, None) => Some(scenario::DEFAULT_SCENARIO),
    };
    match name {
        Some(n) => {
            let path = scenario::locate(n, &dir)?;
            let file = scenario::parse_file(&path)?;
            scenario::resolve(Some((&path, file)), &o)
        }
        None => scenario::resolve(None, &o),
    }
}

fn initial_summary(sc: &Scenario) -> Summary {
    Summary {
        version: env!("CARGO_PKG_VERSION").into(),
        scenario: sc.name.clone(),
        model: sc.model.name.into(),
        variant: sc.variant.name.into(),
        mode: "stress".into(),
        seed: sc.seed,
        threads: sc.threads,
        duration_limit_s: sc.duration.map(|d| d.as_secs_f64()),
        ops_limit: sc.ops,
        delay_prob: sc.delay_prob,
        status: "running".into(),
        duration_s: 0.0,
        ops_total: 0,
        ops_per_s: 0.0,
        ops_by_kind: BTreeMap::new(),
        coverage: BTreeMap::new(),
        violations_total: 0,
        violations: Vec::new(),
        stalled_threads: Vec::new(),
        fault: None,
        exit_code: None,
        replay: replay_command(sc),
    }
}

/// A command line that re-runs this configuration.
fn replay_command(sc: &Scenario) -> String {
    let mut c = String::from("kvmtorture run");
    match &sc.path {
        Some(p) => c += &format!(" {}", p.display()),
        None => c += &format!(" --model {} --variant {}", sc.model.name, sc.variant.name),
    }
    c += &format!(" --seed {} --threads {}", sc.seed, sc.threads);
    if let Some(d) = sc.duration {
        c += &format!(" --duration {}", duration::format(d));
    }
    if let Some(n) = sc.ops {
        c += &format!(" --ops {n}");
    }
    c += &format!(" --delay-prob {}", sc.delay_prob);
    c
}
