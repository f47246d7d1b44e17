//! One run from a plan to its files: shared by `run`, `replay`, `hunt` and `shrink`.
//!
//! A [`Plan`] is a validated scenario plus, for det mode, the scheduler settings; it
//! is saved in every run directory (`config.json`, and `schedule.json` for det runs)
//! so that `replay` and `shrink` can rebuild it without the original TOML file.

use crate::engine::{self, DetRun, Observer, Outcome, RunConfig, Status};
use crate::error::{exit, usage, Error};
use crate::report::{self, hex, DetSummary, Summary, View};
use crate::scenario::{DetSettings, ModeArg, StrategyArg};
use crate::scenario::{Saved, Scenario};
use crate::sched::strategy::{Decision, StrategySpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Ops per worker of a det run when neither the scenario nor `--ops` says.
pub const DET_DEFAULT_OPS: u64 = 200;
/// Worker 0 requests the quiescent deep check every this many of its ops (det).
pub const DET_QUIESCENT_EVERY_OPS: u64 = 16;
/// PCT's step estimate per op when `--pct-steps` is not given (measured on hpt).
pub const PCT_STEPS_PER_OP: u64 = 64;
/// Version of the `schedule.json` format: bump when its meaning changes.
pub const SCHEDULE_FORMAT: u32 = 3;

/// A validated run: the scenario and, for det mode, the scheduler.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sc: Scenario,
    pub det: Option<DetRun>,
    pub keep_going: bool,
    pub test_stall_worker: Option<usize>,
    /// How report.txt shows a det failure's interleaving (not saved: a view choice).
    pub view: View,
    /// Ops `shrink` deleted, as (worker, op number); saved in `schedule.json`.
    pub skip_ops: Vec<(usize, u64)>,
    /// Rounds `shrink` left out, as (worker, op number, round); saved likewise.
    pub skip_rounds: Vec<(usize, u64, u64)>,
}

impl Plan {
    /// The plan of a scenario; `default_mode` applies when its settings name none.
    pub fn new(mut sc: Scenario, default_mode: ModeArg) -> Result<Plan, Error> {
        // A model's own checks of its params (hpt: order_small <= order_large; vpa:
        // pages not 1) are bad input like a range: refused here, by a build that is
        // thrown away, before any run directory exists (a failed build in `execute`
        // left one behind, `running` for ever).
        build(&sc)?;
        let det = match sc.det.mode.unwrap_or(default_mode) {
            ModeArg::Stress => None,
            ModeArg::Det => {
                // Det budgets are ops, never wall time.
                sc.duration = None;
                let ops = *sc.ops.get_or_insert(DET_DEFAULT_OPS);
                sc.det.mode = Some(ModeArg::Det);
                Some(det_run(&sc.det, sc.threads as u64 * ops * PCT_STEPS_PER_OP))
            }
        };
        if det.is_none() {
            sc.det.mode = Some(ModeArg::Stress);
        }
        Ok(Plan {
            keep_going: sc.keep_going,
            sc,
            det,
            test_stall_worker: None,
            // Replaced by the command's --view where it prints a failure.
            view: View::Protocol,
            skip_ops: Vec::new(),
            skip_rounds: Vec::new(),
        })
    }

    pub fn mode(&self) -> &'static str {
        if self.det.is_some() {
            "det"
        } else {
            "stress"
        }
    }

    /// The same plan with another seed.
    pub fn with_seed(&self, seed: u64) -> Plan {
        let mut p = self.clone();
        p.sc.seed = seed;
        p
    }
}

fn det_run(d: &DetSettings, estimate: u64) -> DetRun {
    let strategy = match d.strategy {
        StrategyArg::Random => StrategySpec::Random {
            switch_prob: d.switch_prob,
        },
        StrategyArg::Pct => StrategySpec::Pct {
            depth: d.pct_depth,
            steps: d.pct_steps.unwrap_or(estimate).max(1),
        },
    };
    DetRun {
        strategy,
        max_idle_steps: d.max_idle_steps,
        quiescent_every_ops: DET_QUIESCENT_EVERY_OPS,
    }
}

/// A readable name of a strategy for summaries.
pub fn strategy_label(s: &StrategySpec) -> String {
    match s {
        StrategySpec::Random { switch_prob } => format!("random(p={switch_prob})"),
        StrategySpec::Pct { depth, steps } => format!("pct(d={depth},k={steps})"),
        StrategySpec::Replay { decisions } => format!("replay({} decisions)", decisions.len()),
    }
}

/// What one run produced.
pub struct Executed {
    pub outcome: Outcome,
    pub summary: Summary,
    pub code: i32,
}

impl Executed {
    /// The failure's identity for reproduction: status and first invariant.
    pub fn signature(&self) -> (String, Option<String>) {
        (
            self.summary.status.clone(),
            self.summary.violations.first().map(|v| v.invariant.clone()),
        )
    }
}

/// The scenario's model, built from its params.
fn build(sc: &Scenario) -> Result<std::sync::Arc<dyn crate::model::Model>, Error> {
    (sc.model.build)(&sc.model_config()?).map_err(|e| usage(format!("{} model: {e}", sc.model.name)))
}

/// Builds the model and runs the plan to the end.
pub fn execute(
    plan: &Plan,
    interrupted: &dyn Fn() -> bool,
    obs: &mut dyn Observer,
) -> Result<Executed, Error> {
    let sc = &plan.sc;
    let model = build(sc)?;
    let cfg = RunConfig {
        threads: sc.threads,
        duration: sc.duration,
        ops_per_worker: sc.ops,
        skip_ops: plan.skip_ops.clone(),
        skip_rounds: plan.skip_rounds.clone(),
        seed: sc.seed,
        delay_prob: sc.delay_prob,
        window_boost: sc.window_boost,
        injection_policy: sc.injection,
        stall_timeout: sc.stall_timeout,
        keep_going: plan.keep_going,
        quiescent_every: sc.quiescent_every,
        weights: sc.weights()?,
        test_stall_worker: plan.test_stall_worker,
        det: plan.det.clone(),
    };
    let outcome = engine::run(sc.model, model, cfg, interrupted, obs);
    let code = outcome.status.exit_code();
    let mut summary = initial_summary(plan);
    summary.complete(&outcome, code);
    Ok(Executed {
        outcome,
        summary,
        code,
    })
}

/// The summary before the run (status `running`).
pub fn initial_summary(plan: &Plan) -> Summary {
    let sc = &plan.sc;
    Summary {
        version: env!("CARGO_PKG_VERSION").into(),
        scenario: sc.name.clone(),
        model: sc.model.name.into(),
        variant: sc.variant.name.into(),
        mode: plan.mode().into(),
        seed: sc.seed,
        threads: sc.threads,
        duration_limit_s: sc.duration.map(|d| d.as_secs_f64()),
        ops_limit: sc.ops,
        delay_prob: sc.delay_prob,
        injection: Some(sc.injection),
        status: "running".into(),
        duration_s: 0.0,
        ops_total: 0,
        ops_per_s: 0.0,
        ops_by_kind: BTreeMap::new(),
        coverage: BTreeMap::new(),
        windows_never_entered: Vec::new(),
        window_share_pct: BTreeMap::new(),
        violations_total: 0,
        violations: Vec::new(),
        stalled_threads: Vec::new(),
        fault: None,
        exit_code: None,
        replay: String::new(),
        run_dir: String::new(),
        det: plan.det.as_ref().map(|d| DetSummary {
            strategy: strategy_label(&d.strategy),
            schedule_hash: String::new(),
            trace_hash: String::new(),
            steps: 0,
            switches: 0,
            preemptions: 0,
            threads_at_hang: Vec::new(),
        }),
    }
}

/// The command that re-runs a run directory: `again` with its resolved settings, or
/// `replay` for a det run's exact schedule.
pub fn rerun_command(plan: &Plan, dir: &Path) -> String {
    let verb = if plan.det.is_some() { "replay" } else { "again" };
    format!("kvmtorture {verb} {}", dir.display())
}

/// `config.json`: the plan of any run.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConfigFile {
    pub kvmtorture_version: String,
    pub mode: String,
    pub keep_going: bool,
    pub scenario: Saved,
}

/// `schedule.json`: a det run's exact schedule, version-stamped, with the full config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleFile {
    pub kvmtorture_version: String,
    pub schedule_format: u32,
    pub scenario: Saved,
    pub keep_going: bool,
    /// The strategy that produced the run (the decisions replay it without it).
    pub strategy: StrategySpec,
    pub max_idle_steps: u64,
    pub quiescent_every_ops: u64,
    pub status: String,
    pub invariant: Option<String>,
    pub exit_code: i32,
    pub steps: u64,
    pub switches: u64,
    pub preemptions: u64,
    pub schedule_hash: String,
    pub trace_hash: String,
    /// Every choice that differs from "keep running, else round robin".
    pub decisions: Vec<Decision>,
    /// Ops deleted by `shrink`: (worker, op number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_ops: Vec<(usize, u64)>,
    /// Rounds left out by `shrink`: (worker, op number, round).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_rounds: Vec<(usize, u64, u64)>,
}

impl ScheduleFile {
    /// The plan that replays this schedule exactly.
    pub fn replay_plan(&self) -> Result<Plan, Error> {
        Ok(Plan {
            sc: Scenario::restore(&self.scenario)?,
            det: Some(DetRun {
                strategy: StrategySpec::Replay {
                    decisions: self.decisions.clone(),
                },
                max_idle_steps: self.max_idle_steps,
                quiescent_every_ops: self.quiescent_every_ops,
            }),
            keep_going: self.keep_going,
            test_stall_worker: None,
            view: View::default(),
            skip_ops: self.skip_ops.clone(),
            skip_rounds: self.skip_rounds.clone(),
        })
    }
}

/// The schedule of a finished det run (`None` for stress).
pub fn schedule_of(plan: &Plan, ex: &Executed) -> Option<ScheduleFile> {
    let (d, o) = (plan.det.as_ref()?, ex.outcome.det.as_ref()?);
    let (status, invariant) = ex.signature();
    Some(ScheduleFile {
        kvmtorture_version: env!("CARGO_PKG_VERSION").into(),
        schedule_format: SCHEDULE_FORMAT,
        scenario: plan.sc.save(),
        keep_going: plan.keep_going,
        strategy: d.strategy.clone(),
        max_idle_steps: d.max_idle_steps,
        quiescent_every_ops: d.quiescent_every_ops,
        status,
        invariant,
        exit_code: ex.code,
        steps: o.steps,
        switches: o.switches,
        preemptions: o.preemptions,
        schedule_hash: hex(o.schedule_hash),
        trace_hash: hex(o.trace_hash),
        decisions: o.decisions.clone(),
        skip_ops: plan.skip_ops.clone(),
        skip_rounds: plan.skip_rounds.clone(),
    })
}

/// Writes the config (and schedule) of a run into its directory.
pub fn save_plan(dir: &Path, plan: &Plan) -> Result<(), Error> {
    report::write(dir, "scenario.toml", &plan.sc.save().to_toml())?;
    let cfg = ConfigFile {
        kvmtorture_version: env!("CARGO_PKG_VERSION").into(),
        mode: plan.mode().into(),
        keep_going: plan.keep_going,
        scenario: plan.sc.save(),
    };
    report::write(dir, "config.json", &to_json(&cfg))
}

/// Writes everything a finished run leaves: summary, report, schedule.
pub fn save_result(dir: &Path, plan: &Plan, ex: &mut Executed) -> Result<(), Error> {
    ex.summary.replay = rerun_command(plan, dir);
    report::write(dir, "summary.json", &ex.summary.to_json())?;
    if !matches!(ex.outcome.status, Status::Clean | Status::Interrupted) {
        report::write(
            dir,
            "report.txt",
            &report::failure_report(&ex.summary, &ex.outcome, plan.view),
        )?;
    }
    if let Some(s) = schedule_of(plan, ex) {
        report::write(dir, "schedule.json", &to_json(&s))?;
    }
    Ok(())
}

pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serialises") + "\n"
}

/// Reads and parses `name` in a run directory; exit 2 naming the problem otherwise.
pub fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Result<T, Error> {
    let p = dir.join(name);
    let text = std::fs::read_to_string(&p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("malformed {}: {e}", p.display())))
}

/// The exit code a run with status `s` (as written in summaries) ended with; a
/// summary still `running` never finished (a crash or `kill -9`).
pub fn exit_code_of_status(s: &str) -> i32 {
    Status::parse(s).map_or(exit::INTERRUPTED, Status::exit_code)
}
