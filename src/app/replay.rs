//! `kvmtorture replay <run-dir>`: det runs replay exactly from `schedule.json`;
//! stress runs re-run with the same seed and report how often the failure comes back;
//! `--det` looks for a det seed that reproduces a stress failure exactly.

use super::exec::{self, ConfigFile, Executed, Plan, ScheduleFile};
use super::hunt::{self, Sweep};
use super::ktap;
use super::run_dir::RunDir;
use super::target;
use crate::cli::{Format, ModeArg, ReplayArgs, StrategyArg};
use crate::engine::Observer;
use crate::error::{exit, usage, Error};
use crate::report::{self, hex, progress::Silent};
use crate::scenario::Scenario;
use serde_json::json;
use std::path::Path;

pub fn replay(a: &ReplayArgs) -> Result<i32, Error> {
    let dir = &target::run_dir(&a.run_dir)?;
    if a.times == 0 {
        return Err(usage("--times must be at least 1"));
    }
    if dir.join("schedule.json").is_file() {
        if a.det {
            return Err(usage(
                "--det searches a det reproduction of a *stress* run; this run is already det",
            ));
        }
        return replay_det(dir, a.out.format, a.out.view);
    }
    let cfg: ConfigFile = exec::read_json(dir, "config.json")?;
    let target: serde_json::Value = exec::read_json(dir, "summary.json")?;
    let sig = (
        target["status"].as_str().unwrap_or("").to_string(),
        target["violations"][0]["invariant"].as_str().map(String::from),
    );
    let sc = Scenario::restore(&cfg.scenario)?;
    if a.det {
        return search_det(sc, &sig, a.budget, &a.out.results_dir, a.out.format);
    }
    replay_stress(sc, &sig, a.times, a.out.format)
}

/// Re-runs the saved schedule and compares exit code and hashes.
fn replay_det(dir: &Path, format: Format, view: report::View) -> Result<i32, Error> {
    let saved: ScheduleFile = exec::read_json(dir, "schedule.json")?;
    let this = env!("CARGO_PKG_VERSION");
    if saved.kvmtorture_version != this || saved.schedule_format != exec::SCHEDULE_FORMAT {
        eprintln!(
            "kvmtorture: warning: schedule written by kvmtorture {} (format {}), replaying with {this} (format {})",
            saved.kvmtorture_version,
            saved.schedule_format,
            exec::SCHEDULE_FORMAT
        );
    }
    let plan = saved.replay_plan()?;
    let ex = exec::execute(&plan, &|| false, &mut Silent)?;
    let d = ex.outcome.det.as_ref().expect("det run has a det outcome");
    let (sh, th) = (hex(d.schedule_hash), hex(d.trace_hash));
    let matched = ex.code == saved.exit_code && sh == saved.schedule_hash && th == saved.trace_hash;
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "run_dir": dir.display().to_string(),
                "match": matched,
                "exit_code": ex.code, "expected_exit_code": saved.exit_code,
                "schedule_hash": sh, "expected_schedule_hash": saved.schedule_hash,
                "trace_hash": th, "expected_trace_hash": saved.trace_hash,
                "steps": d.steps, "status": ex.summary.status,
            })
        ),
        Format::Ktap => {
            print!(
                "{}",
                ktap::document(&[ktap::Case {
                    ok: matched,
                    name: format!("replay {}", dir.display()),
                    skip: None,
                    diag: vec![format!(
                        "{} steps, {} (exit {}), schedule {sh}, trace {th}",
                        d.steps, ex.summary.status, ex.code
                    )],
                }])
            );
        }
        Format::Human => {
            println!(
                "{}: replayed {} steps → {} (exit {}), schedule {sh}, trace {th}",
                if matched { "MATCH" } else { "MISMATCH" },
                d.steps,
                ex.summary.status,
                ex.code
            );
            if !matched {
                println!(
                    "  expected exit {}, schedule {}, trace {}: the schedule no longer reproduces its run \
                     (another kvmtorture version, or a determinism bug: exit {})",
                    saved.exit_code,
                    saved.schedule_hash,
                    saved.trace_hash,
                    exit::FAULT
                );
            }
            if ex.code != exit::CLEAN {
                print!(
                    "{}",
                    report::interleaving(&ex.outcome, view, Some(report::REPORT_ROWS))
                );
            }
        }
    }
    // A replay that no longer reproduces its run is never a success.
    Ok(if matched { ex.code } else { exit::FAULT })
}

/// Same seed, `times` times: how often does the original failure come back?
fn replay_stress(
    mut sc: Scenario,
    sig: &(String, Option<String>),
    times: u32,
    format: Format,
) -> Result<i32, Error> {
    sc.det.mode = Some(ModeArg::Stress);
    let plan = Plan::new(sc, ModeArg::Stress)?;
    crate::interrupt::install();
    let mut hits = 0;
    let mut last: Option<Executed> = None;
    for i in 0..times {
        let ex = exec::execute(
            &plan,
            &crate::interrupt::requested,
            &mut Silent as &mut dyn Observer,
        )?;
        if &ex.signature() == sig {
            hits += 1;
        }
        if format == Format::Human {
            eprintln!("  re-run {}/{times}: {}", i + 1, ex.summary.status);
        }
        let stop = ex.code == exit::INTERRUPTED;
        last = Some(ex);
        if stop {
            break;
        }
    }
    let rate = f64::from(hits) / f64::from(times);
    match format {
        Format::Json => println!(
            "{}",
            json!({"target_status": sig.0, "target_invariant": sig.1, "times": times, "reproduced": hits, "rate": rate})
        ),
        Format::Ktap => {
            print!(
                "{}",
                ktap::document(&[ktap::Case {
                    ok: hits > 0,
                    name: format!("replay {} seed {}", plan.sc.name, plan.sc.seed),
                    skip: None,
                    diag: vec![format!(
                        "reproduced {hits}/{times} of {} {}",
                        sig.0,
                        sig.1.as_deref().unwrap_or("")
                    )],
                }])
            );
        }
        Format::Human => println!(
            "reproduced {hits}/{times} ({:.0}%) of {}{} with seed {}",
            rate * 100.0,
            sig.0,
            sig.1.as_ref().map_or(String::new(), |i| format!(" ({i})")),
            plan.sc.seed
        ),
    }
    // The rerun's code tells whether the failure came back.
    Ok(if hits > 0 {
        exec::exit_code_of_status(&sig.0)
    } else {
        last.map_or(exit::CLEAN, |e| e.code)
    })
}

/// Tries det seeds 1..=budget of the same configuration (PCT, then random) for a run
/// that fails with the same status and invariant; saves the first one found.
fn search_det(
    sc: Scenario,
    sig: &(String, Option<String>),
    budget: u64,
    results: &Path,
    format: Format,
) -> Result<i32, Error> {
    for strategy in [StrategyArg::Random, StrategyArg::Pct] {
        let mut sc = sc.clone();
        sc.det.mode = Some(ModeArg::Det);
        sc.det.strategy = strategy;
        let plan = Plan::new(sc, ModeArg::Det)?;
        let sweep = Sweep {
            seeds: (1..=budget).collect(),
            jobs: None,
            stop_on_first: true,
        };
        let found = hunt::sweep(&plan, &sweep, &|ex| &ex.signature() == sig, &|_, ex| ex);
        if let Some((seed, mut ex)) = found.into_iter().next() {
            let p = plan.with_seed(seed);
            let dir = RunDir::create(results, &p)?;
            dir.finish(&p, &mut ex)?;
            let dir = dir.path();
            match format {
                Format::Json => println!(
                    "{}",
                    json!({"found": true, "seed": seed, "strategy": exec::strategy_label(&p.det.as_ref().expect("det").strategy), "run_dir": dir.display().to_string()})
                ),
                _ => println!(
                    "det reproduction: seed {seed} ({}) fails with {} → {}\n  replay: kvmtorture replay {}",
                    exec::strategy_label(&p.det.as_ref().expect("det").strategy),
                    sig.1.as_deref().unwrap_or(&sig.0),
                    dir.display(),
                    dir.display()
                ),
            }
            return Ok(ex.code);
        }
    }
    match format {
        Format::Json => println!("{}", json!({"found": false, "budget": budget})),
        _ => println!(
            "no det seed in 1..={budget} reproduces {}",
            sig.1.as_deref().unwrap_or(&sig.0)
        ),
    }
    Ok(exit::CLEAN)
}
