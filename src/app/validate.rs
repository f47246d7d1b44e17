//! `kvmtorture validate`: the harness tests itself. Every buggy variant must be
//! caught and every clean one (fixed, negative controls) must stay clean — in the
//! time a CI job can spare. A surprise keeps its run directory for investigation.

use super::exec::{self, Plan};
use super::run::load_scenario;
use crate::cli::{ModeArg, ValidateArgs};
use crate::error::{exit, Error};
use crate::model::{self, ModelInfo, VariantInfo};
use crate::report::{self, progress::Silent};
use crate::scenario::{self, Overrides};

/// One variant's verdict.
struct Verdict {
    ok: bool,
    line: String,
}

pub fn validate(a: &ValidateArgs) -> Result<i32, Error> {
    let models: Vec<&'static ModelInfo> = match &a.model {
        Some(m) => vec![scenario::find_model(m)?],
        None => model::registry().to_vec(),
    };
    let cases: Vec<(&ModelInfo, &VariantInfo)> = models
        .iter()
        .flat_map(|m| m.variants.iter().map(move |v| (*m, v)))
        .collect();
    println!("KTAP version 1\n1..{}", cases.len());
    let (mut passed, mut failed) = (0, 0);
    for (i, (m, v)) in cases.iter().enumerate() {
        let verdict = check(a, m, v)?;
        let ok = if verdict.ok { "ok" } else { "not ok" };
        println!("{ok} {} {}/{} # {}", i + 1, m.name, v.name, verdict.line);
        if verdict.ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("validate: {passed} passed, {failed} failed");
    Ok(if failed == 0 { exit::CLEAN } else { exit::VIOLATION })
}

/// Runs one variant from its shipped scenario (`<model>-<variant>.toml`) if there is
/// one, else from flags, and compares the outcome with what the variant promises.
fn check(a: &ValidateArgs, m: &ModelInfo, v: &VariantInfo) -> Result<Verdict, Error> {
    let o = Overrides {
        model: Some(m.name.into()),
        variant: Some(v.name.into()),
        duration: Some(a.duration),
        ops: a.ops,
        seed: Some(a.seed),
        ..Overrides::default()
    };
    let name = format!("{}-{}", m.name, v.name);
    let shipped = scenario::scenarios_dir().join(format!("{name}.toml")).is_file();
    let sc = load_scenario(shipped.then_some(name.as_str()), &o)?;
    let plan = Plan::new(sc, &a.det, ModeArg::Stress)?;
    let mut ex = exec::execute(&plan, &crate::interrupt::requested, &mut Silent)?;
    let s = &ex.summary;
    let first = s.violations.first().map_or("", |x| x.invariant.as_str());
    let uncovered: Vec<&str> = s
        .coverage
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| k.as_str())
        .collect();
    let (ok, line) = if v.expect_violation {
        (
            ex.code == exit::VIOLATION,
            format!("caught: exit {} {first} in {:.2}s", ex.code, s.duration_s),
        )
    } else if ex.code != exit::CLEAN {
        (false, format!("must be clean: exit {} {first}", ex.code))
    } else if a.coverage && !uncovered.is_empty() {
        (
            false,
            format!("clean, but never entered: {}", uncovered.join(", ")),
        )
    } else {
        (
            true,
            format!(
                "clean: {} ops in {:.2}s, {} windows",
                s.ops_total,
                s.duration_s,
                s.coverage.len()
            ),
        )
    };
    if !ok {
        let dir = report::create_run_dir(&a.results_dir, &plan.sc.name, v.name, plan.sc.seed)?;
        exec::save_plan(&dir, &plan)?;
        exec::save_result(&dir, &plan, &mut ex)?;
        return Ok(Verdict {
            ok,
            line: format!("{line} (see {})", dir.display()),
        });
    }
    Ok(Verdict { ok, line })
}
