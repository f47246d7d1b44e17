//! `kvmtorture soak`: rounds of a batch list, each with fresh seeds, until the
//! deadline; the last runs are cut short so the soak ends on time. The soak is one
//! batch directory whose `batch.json` grows by a round at a time, so the same
//! interruption and `--resume` rules hold; the summary adds up ops and coverage per
//! window over every round, and lists every failure with its run directory.

use super::batch::{self, BatchFile, Driver, BATCH_FORMAT};
use crate::cli::SoakArgs;
use crate::error::Error;
use crate::interrupt;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The list a soak repeats when given none.
pub const DEFAULT_LIST: &str = "soak";
/// Less time than this left before the deadline starts no new run.
const LAST_RUN_MIN: Duration = Duration::from_secs(1);

pub fn soak(a: &SoakArgs) -> Result<i32, Error> {
    interrupt::install();
    let o = &a.opts;
    let mut d = match &o.resume {
        Some(dir) => Driver::resume(dir, "soak", o.out.quiet)?,
        None => {
            let list = a.list.clone().unwrap_or_else(|| DEFAULT_LIST.into());
            let entries = batch::entries(std::slice::from_ref(&list))?;
            batch::check_entries(&entries)?;
            let file = BatchFile {
                kvmtorture_version: env!("CARGO_PKG_VERSION").into(),
                batch_format: BATCH_FORMAT,
                kind: "soak".into(),
                entries,
                seed: o.seed.unwrap_or_else(fresh_seed),
                duration_s: a.duration.as_secs_f64(),
                round_duration_s: Some(a.round_duration.as_secs_f64()),
                stop_on_failure: o.stop_on_failure,
                state: "running".into(),
                elapsed_s: 0.0,
                rounds: 0,
                exit_code: None,
                runs: Vec::new(),
            };
            Driver::create(&o.out.results_dir, &batch::label(&[list]), file, o.out.quiet)?
        }
    };
    let deadline = Duration::from_secs_f64(d.file.duration_s);
    let round = Duration::from_secs_f64(d.file.round_duration_s.unwrap_or(d.file.duration_s));
    while d.run_pending(Some(deadline))? && deadline.saturating_sub(d.elapsed()) >= LAST_RUN_MIN {
        let f = &mut d.file;
        f.runs
            .extend(batch::plan_round(&f.entries, f.seed, f.rounds, round)?);
        f.rounds += 1;
        d.save()?;
    }
    if d.file.state == "running" {
        // The deadline came: runs it left no time for were never started.
        d.file.runs.retain(|r| r.status != "pending");
    }
    let code = d.finish()?;
    print!("{}", batch::output(&d, o, true));
    Ok(code)
}

/// A base seed nobody chose: soaks on different nights try different schedules.
fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000_000
}

/// Coverage of every model over every run: model → window → times entered.
fn coverage(f: &BatchFile) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut c: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for m in f.runs.iter().flat_map(|r| &r.models) {
        let e = c.entry(format!("{}/{}", m.model, m.variant)).or_default();
        for (w, n) in &m.coverage {
            *e.entry(w.clone()).or_default() += n;
        }
    }
    c
}

/// Every model run of the soak that was not clean: (model/variant, seed, status,
/// invariant, run dir).
fn failures(f: &BatchFile) -> Vec<(String, u64, String, Option<String>, String)> {
    f.runs
        .iter()
        .filter(|r| r.failed())
        .flat_map(|r| {
            r.models.iter().filter(|m| m.status != "clean").map(move |m| {
                (
                    format!("{}/{}", m.model, m.variant),
                    r.seed,
                    m.status.clone(),
                    m.invariant.clone(),
                    m.run_dir.clone(),
                )
            })
        })
        .collect()
}

/// The soak summary after the table.
pub fn summary_text(f: &BatchFile) -> String {
    let runs = f.runs.iter().filter(|r| r.finished()).count();
    let ops: u64 = f.runs.iter().map(|r| r.ops).sum();
    let mut s = format!(
        "\nsoak: {} round(s), {runs} run(s), {ops} ops in {:.0}s (deadline {:.0}s)\n",
        f.rounds, f.elapsed_s, f.duration_s
    );
    s += "coverage per window (times entered, all rounds):\n";
    for (model, windows) in coverage(f) {
        let ws: Vec<String> = windows.iter().map(|(w, n)| format!("{w}={n}")).collect();
        let never: Vec<&str> = windows
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(w, _)| w.as_str())
            .collect();
        s += &format!("  {model}: {}\n", ws.join(" "));
        if !never.is_empty() {
            s += &format!("    never entered: {}\n", never.join(", "));
        }
    }
    let fl = failures(f);
    s += &format!("failures: {}\n", fl.len());
    for (m, seed, status, inv, dir) in fl {
        s += &format!(
            "  {m} seed {seed}: {status} {} → {dir}\n",
            inv.unwrap_or_default()
        );
    }
    s
}

/// The same totals for `--format json`.
pub fn totals_json(f: &BatchFile) -> serde_json::Value {
    json!({
        "rounds": f.rounds,
        "runs": f.runs.iter().filter(|r| r.finished()).count(),
        "ops": f.runs.iter().map(|r| r.ops).sum::<u64>(),
        "coverage": coverage(f),
        "failures": failures(f).into_iter().map(|(m, seed, status, inv, dir)| json!({
            "model": m, "seed": seed, "status": status, "invariant": inv, "run_dir": dir,
        })).collect::<Vec<_>>(),
    })
}
