//! `kvmtorture validate`: the harness tests itself. Every race variant must be
//! caught, every fixed variant and control must stay clean, and with `--mutants`
//! every mutant must be caught — each in every configuration its descriptor lists,
//! in the time a CI job can spare. A surprise keeps its run directory.

use super::exec::{self, Executed, Plan};
use super::hunt::{sweep, Sweep, Totals};
use super::ktap;
use super::list::expect_text;
use super::run::load_scenario;
use super::run_dir::RunDir;
use crate::cli::{Format, ModeArg, ValidateArgs};
use crate::error::{exit, Error};
use crate::model::{self, Cell, Expect, ModelDesc, VariantDesc, VariantKind};
use crate::report::{self, progress::Silent};
use crate::scenario::{self, Overrides};
use std::sync::Mutex;

/// One case's verdict.
struct Verdict {
    ok: bool,
    line: String,
    /// The first invariant the run saw.
    invariant: Option<String>,
    /// Kept only for a surprise.
    run_dir: Option<String>,
}

/// One case: a variant in one configuration.
pub struct Case {
    pub model: &'static ModelDesc,
    pub variant: &'static VariantDesc,
    pub cell: Cell,
}

impl Case {
    /// `hpt/buggy`, `hash-protect/buggy[hypervisor=kvm]`.
    pub fn label(&self) -> String {
        let ps: Vec<String> = self.cell.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let cell = if ps.is_empty() {
            String::new()
        } else {
            format!("[{}]", ps.join(","))
        };
        format!("{}/{}{cell}", self.model.name, self.variant.name)
    }
}

/// Every case of the public models' variants: mutants only when asked, unconfirmed
/// variants never (they promise nothing).
pub fn cases(only: Option<&'static ModelDesc>, mutants: bool) -> Vec<Case> {
    let models: Vec<&'static ModelDesc> = match only {
        Some(m) => vec![m],
        None => model::public().collect(),
    };
    let mut v = Vec::new();
    for m in models {
        for var in m.variants {
            let wanted = match var.kind {
                VariantKind::Mutant => mutants,
                VariantKind::Unconfirmed => false,
                _ => true,
            };
            if wanted {
                v.extend(var.configurations().into_iter().map(|cell| Case {
                    model: m,
                    variant: var,
                    cell,
                }));
            }
        }
    }
    v
}

pub fn validate(a: &ValidateArgs) -> Result<i32, Error> {
    let only = a.model.as_deref().map(scenario::find_model).transpose()?;
    let cases = cases(only, a.mutants);
    // KTAP streams a result per case as it finishes (the human form is KTAP too, as
    // kselftest's is); JSON comes whole at the end.
    let ktap_out = a.out.format != Format::Json;
    if ktap_out {
        print!("{}", ktap::header(cases.len()));
    }
    let mut results = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let v = check(a, case)?;
        let mut diag = vec![v.line.clone()];
        diag.extend(v.invariant.iter().map(|x| format!("invariant: {x}")));
        diag.extend(v.run_dir.iter().map(|d| format!("run dir: {d}")));
        let k = ktap::Case {
            ok: v.ok,
            name: case.label(),
            skip: None,
            diag,
        };
        if ktap_out {
            print!("{}", ktap::case_lines(i + 1, &k));
        }
        results.push((case.label(), v));
    }
    let failed = results.iter().filter(|(_, v)| !v.ok).count();
    let passed = results.len() - failed;
    match a.out.format {
        Format::Json => print!(
            "{}",
            exec::to_json(&serde_json::json!({
                "passed": passed, "failed": failed,
                "cases": results.iter().map(|(label, v)| serde_json::json!({
                    "case": label, "ok": v.ok, "detail": v.line,
                    "invariant": v.invariant, "run_dir": v.run_dir,
                })).collect::<Vec<_>>(),
            }))
        ),
        // The plain closing line CI tooling reads.
        _ => report::print_line(&format!("validate: {passed} passed, {failed} failed")),
    }
    Ok(if failed == 0 { exit::CLEAN } else { exit::VIOLATION })
}

/// Runs one case from its variant's shipped scenario (`<model>-<variant>.toml`) if
/// there is one, else from flags, with the cell's params on top, and compares the
/// outcome with what the descriptor promises.
///
/// Stress mode runs the case once for `--duration`. A det run is one schedule, and one
/// schedule proves little either way, so det mode sweeps `--seeds N` schedules from
/// `--seed` (as `hunt` does): a race or mutant must fail one of them, with an invariant
/// its descriptor names, and a clean variant must pass all of them (coverage summed).
fn check(a: &ValidateArgs, case: &Case) -> Result<Verdict, Error> {
    let (m, v) = (case.model, case.variant);
    let o = Overrides {
        model: Some(m.name.into()),
        variant: Some(v.name.into()),
        duration: Some(a.duration),
        ops: a.ops,
        seed: Some(a.seed),
        mode: a.mode,
        param_flags: case.cell.params.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ..Overrides::default()
    };
    let name = format!("{}-{}", m.name, v.name);
    let shipped = scenario::load_named(&name).is_ok();
    let sc = load_scenario(shipped.then_some(name.as_str()), &o)?;
    let plan = Plan::new(sc, ModeArg::Stress)?;
    let schedules = if plan.det.is_some() { a.seeds.max(1) } else { 1 };
    let sw = Sweep {
        seeds: (a.seed..a.seed.saturating_add(schedules)).collect(),
        jobs: None,
        stop_on_first: true,
    };
    // Every run adds its coverage and ops; the sweep keeps the lowest seed that did
    // not end clean, which decides the verdict.
    let sums = Mutex::new(Totals::default());
    let failed = |ex: &Executed| {
        sums.lock().expect("sums").add(ex);
        ex.code != exit::CLEAN
    };
    let first_bad = sweep(&plan, &sw, &failed, &|_, ex| ex).into_iter().next();
    let sums = sums.into_inner().expect("sums");
    let tried = match &first_bad {
        Some((seed, _)) => seed - a.seed + 1,
        None => schedules,
    };
    let at = if plan.det.is_some() {
        format!(" (det, {tried} of {schedules} schedules)")
    } else {
        String::new()
    };
    // Each worker reports the first violation it saw, and in stress mode which of them
    // comes first is up to the machine: a race is caught when any of them is one the
    // descriptor lists (a consequence the race also has may win the race to report).
    let (code, first, took) = match &first_bad {
        Some((_, ex)) => {
            let seen = &ex.summary.violations;
            let listed = seen
                .iter()
                .find(|x| case.cell.expect.caught_by().contains(&x.invariant.as_str()));
            (
                ex.code,
                listed.or(seen.first()).map_or("", |x| x.invariant.as_str()),
                ex.summary.duration_s,
            )
        }
        None => (exit::CLEAN, "", sums.duration_s),
    };
    let invariant = (!first.is_empty()).then(|| first.to_string());
    let uncovered: Vec<&str> = sums
        .coverage
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| k.as_str())
        .collect();
    let (ok, line) = match case.cell.expect {
        Expect::Caught(ids) => (
            code == exit::VIOLATION && ids.contains(&first),
            format!(
                "caught: exit {code} {first} in {took:.2}s{at} (expects {})",
                expect_text(case.cell.expect)
            ),
        ),
        Expect::Stall => (
            code == exit::STALL,
            format!("stall: exit {code} in {took:.2}s{at}"),
        ),
        Expect::Clean | Expect::Unknown if code != exit::CLEAN => {
            (false, format!("must be clean: exit {code} {first}{at}"))
        }
        _ if a.coverage && !uncovered.is_empty() => (
            false,
            format!("clean, but never entered: {}{at}", uncovered.join(", ")),
        ),
        _ => (
            true,
            format!(
                "clean: {} ops in {:.2}s{at}, {} windows",
                sums.ops,
                sums.duration_s,
                sums.coverage.len()
            ),
        ),
    };
    if ok {
        return Ok(Verdict {
            ok,
            line,
            invariant,
            run_dir: None,
        });
    }
    // A surprise keeps a run directory: the run that went wrong, or, when a race was
    // never caught, the first schedule again.
    let (plan, mut ex) = match first_bad {
        Some((seed, ex)) => (plan.with_seed(seed), ex),
        None => {
            let ex = exec::execute(&plan, &crate::interrupt::requested, &mut Silent)?;
            (plan, ex)
        }
    };
    let dir = RunDir::create(&a.out.results_dir, &plan)?;
    dir.finish(&plan, &mut ex)?;
    Ok(Verdict {
        ok,
        line,
        invariant,
        run_dir: Some(dir.path().display().to_string()),
    })
}
