//! `kvmtorture hunt`: a seed sweep of one configuration. Det runs are independent
//! (one baton per run), so they go in parallel on a rayon pool; stress runs compete
//! for the cores they measure, so they go one at a time unless `--jobs` says.
//! `hunt.json` in the hunt directory records every seed tried, for `merge`.

use super::exec::{self, Executed, Plan};
use super::ktap;
use super::run;
use super::run_dir::RunDir;
use super::shrink::message_class;
use crate::cli::{Format, HuntArgs, ModeArg};
use crate::error::{exit, usage, Error};
use crate::report::{self, progress::Silent};
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Which seeds to run and how.
pub struct Sweep {
    pub seeds: Vec<u64>,
    /// Parallel runs; `None`: all cores for det, 1 for stress.
    pub jobs: Option<usize>,
    /// Skip seeds above the lowest failing one found so far.
    pub stop_on_first: bool,
}

/// Runs `plan` once per seed; for each run where `failed` holds, `keep` turns it into
/// what is returned (runs are dropped as they finish: a sweep's memory does not grow
/// with its failures). In seed order; with `stop_on_first`, only the lowest seed.
pub fn sweep<R: Send>(
    plan: &Plan,
    sw: &Sweep,
    failed: &(dyn Fn(&Executed) -> bool + Sync),
    keep: &(dyn Fn(u64, Executed) -> R + Sync),
) -> Vec<(u64, R)> {
    let jobs = sw
        .jobs
        .unwrap_or(if plan.det.is_some() {
            rayon::current_num_threads()
        } else {
            1
        })
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .expect("rayon pool");
    let first = AtomicU64::new(u64::MAX);
    let mut found: Vec<(u64, R)> = pool.install(|| {
        sw.seeds
            .par_iter()
            .with_max_len(1)
            .filter_map(|&seed| {
                if sw.stop_on_first && seed > first.load(Ordering::Relaxed) || crate::interrupt::requested() {
                    return None;
                }
                // A plan that validated once builds for every seed.
                let ex =
                    exec::execute(&plan.with_seed(seed), &crate::interrupt::requested, &mut Silent).ok()?;
                failed(&ex).then(|| {
                    first.fetch_min(seed, Ordering::Relaxed);
                    (seed, keep(seed, ex))
                })
            })
            .collect()
    });
    found.sort_by_key(|(s, _)| *s);
    if sw.stop_on_first {
        found.truncate(1);
    }
    found
}

/// What every run of a sweep added up to (hunt's `hunt.json`, validate's det cases).
#[derive(Default)]
pub(super) struct Totals {
    /// Seeds that ran to the end (not cut short by Ctrl-C).
    pub ran: Vec<u64>,
    pub ops: u64,
    pub duration_s: f64,
    pub coverage: BTreeMap<String, u64>,
}

impl Totals {
    pub fn add(&mut self, ex: &Executed) {
        if ex.code != exit::INTERRUPTED {
            self.ran.push(ex.summary.seed);
        }
        self.ops += ex.summary.ops_total;
        self.duration_s += ex.summary.duration_s;
        for (k, n) in &ex.summary.coverage {
            *self.coverage.entry(k.clone()).or_default() += n;
        }
    }
}

/// Parses `A..B` (inclusive; `A` alone is one seed).
pub fn parse_seeds(s: &str) -> Result<(u64, u64), Error> {
    let bad = || usage(format!("--seeds must be A..B with A <= B (inclusive), got `{s}`"));
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let x = s.trim().parse().map_err(|_| bad())?;
            (x, x)
        }
    };
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses `I/N` with `I < N`.
pub fn parse_shard(s: &str) -> Result<(u64, u64), Error> {
    let bad = || usage(format!("--shard must be I/N with 0 <= I < N, got `{s}`"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Seeds-to-bug: for each failure, how many seeds were tried since the previous one.
fn gaps(start: u64, failing: &[u64]) -> Vec<u64> {
    let mut prev = start;
    failing
        .iter()
        .map(|&s| {
            let g = s - prev + 1;
            prev = s + 1;
            g
        })
        .collect()
}

/// Whether the first violation of `ex` reads `text`, as `INVARIANT op: message`,
/// numbers aside (`gpc0` matches `gpc3`, as `shrink` tells failures apart).
fn reads(ex: &Executed, text: &str) -> bool {
    ex.summary.violations.first().is_some_and(|v| {
        message_class(&format!("{} {}: {}", v.invariant, v.op, v.message)).contains(&message_class(text))
    })
}

pub fn hunt(a: &HuntArgs) -> Result<i32, Error> {
    let (lo, hi) = parse_seeds(&a.seeds)?;
    let (shard_i, shard_n) = a.shard.as_deref().map(parse_shard).transpose()?.unwrap_or((0, 1));
    if a.jobs == Some(0) {
        return Err(usage("--jobs must be at least 1"));
    }
    let plan = Plan::new(run::load(&a.sc)?, ModeArg::Det)?;
    let seeds: Vec<u64> = (lo..=hi).filter(|s| (s - lo) % shard_n == shard_i).collect();
    crate::interrupt::install();
    let started = std::time::Instant::now();
    let sw = Sweep {
        seeds: seeds.clone(),
        jobs: a.jobs,
        stop_on_first: a.stop_on_first,
    };
    let sc = &plan.sc;
    // `hunt-<model>-<variant>-<UTC>-s<first seed>`, made unique like a run directory
    // (two hunts in one second must not share one).
    let hunt_dir = report::create_run_dir(
        &a.out.results_dir,
        &format!("hunt-{}", sc.model.name),
        sc.variant.name,
        lo,
    )?;
    let save = |seed: u64, mut ex: Executed| -> Result<serde_json::Value, Error> {
        let p = plan.with_seed(seed);
        let dir = RunDir::create(&hunt_dir, &p)?;
        dir.finish(&p, &mut ex)?;
        let dir = dir.path();
        Ok(json!({
            "seed": seed,
            "status": ex.summary.status,
            "exit_code": ex.code,
            "invariant": ex.summary.violations.first().map(|v| v.invariant.clone()),
            "steps": ex.outcome.det.as_ref().map(|d| d.steps),
            "run_dir": dir.display().to_string(),
        }))
    };
    // Every run's totals, for hunt.json (and `merge`): the clean seeds leave no run
    // directory, so this is the only record that they were tried.
    let totals = Mutex::new(Totals::default());
    let failed = |ex: &Executed| {
        totals.lock().expect("totals lock").add(ex);
        ex.code != exit::CLEAN
            && ex.code != exit::INTERRUPTED
            && a.failure.as_deref().map_or(true, |f| reads(ex, f))
    };
    let found = sweep(&plan, &sw, &failed, &save);
    let mut totals = totals.into_inner().expect("totals lock");
    totals.ran.sort_unstable();
    let elapsed = started.elapsed().as_secs_f64();
    let failing = found
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>, Error>>()?;
    let fail_seeds: Vec<u64> = failing
        .iter()
        .map(|f| f["seed"].as_u64().expect("seed"))
        .collect();
    let tried_until = if a.stop_on_first {
        fail_seeds.first().copied().unwrap_or(hi)
    } else {
        hi
    };
    let tried: Vec<u64> = seeds.into_iter().filter(|&s| s <= tried_until).collect();
    let mut g = gaps(lo, &fail_seeds);
    g.sort_unstable();
    let median = g.get(g.len().saturating_sub(1) / 2).copied();
    let strategy = plan.det.as_ref().map(|d| exec::strategy_label(&d.strategy));
    let doc = json!({
        "kind": "hunt",
        "scenario": sc.name, "model": sc.model.name, "variant": sc.variant.name,
        "mode": plan.mode(), "strategy": strategy, "threads": sc.threads, "ops": sc.ops,
        "seeds": format!("{lo}..{hi}"), "shard": format!("{shard_i}/{shard_n}"), "failure": a.failure,
        "tried": tried, "ran": totals.ran, "failing": failing,
        "seeds_to_bug": {"median": median, "max": g.last()},
        "ops_total": totals.ops, "coverage": totals.coverage,
        "results_dir": hunt_dir.display().to_string(), "elapsed_s": elapsed,
    });
    std::fs::create_dir_all(&hunt_dir)
        .map_err(|e| Error::Fault(format!("cannot create {}: {e}", hunt_dir.display())))?;
    report::write(&hunt_dir, "hunt.json", &exec::to_json(&doc))?;
    match a.out.format {
        Format::Json => print!("{}", exec::to_json(&doc)),
        Format::Ktap => {
            // One result per seed tried: failing ones carry their status and run directory.
            let name = |seed: u64| format!("{}-{} seed {seed}", sc.model.name, sc.variant.name);
            let cases: Vec<ktap::Case> = tried
                .iter()
                .map(|&seed| match failing.iter().find(|f| f["seed"] == seed) {
                    Some(f) => ktap::Case {
                        ok: false,
                        name: name(seed),
                        skip: None,
                        diag: vec![
                            format!(
                                "{} {}",
                                f["status"].as_str().unwrap_or(""),
                                f["invariant"].as_str().unwrap_or("")
                            ),
                            format!("run dir: {}", f["run_dir"].as_str().unwrap_or("")),
                        ],
                    },
                    None => ktap::Case {
                        ok: true,
                        name: name(seed),
                        skip: None,
                        diag: Vec::new(),
                    },
                })
                .collect();
            print!("{}", ktap::document(&cases));
        }
        Format::Human => {
            println!(
                "hunt {} / {} ({}{}): {} seed(s) tried in {elapsed:.1}s, {} failing{}",
                sc.model.name,
                sc.variant.name,
                plan.mode(),
                strategy.map_or(String::new(), |s| format!(" {s}")),
                tried.len(),
                failing.len(),
                a.failure
                    .as_deref()
                    .map_or(String::new(), |f| format!(" with `{f}`"))
            );
            println!("  results: {}", hunt_dir.display());
            if let (Some(m), Some(x)) = (median, g.last()) {
                println!("  seeds to bug: median {m}, max {x}");
            }
            const SHOWN: usize = 10;
            for f in failing.iter().take(SHOWN) {
                println!(
                    "  seed {}: {} {} → {}",
                    f["seed"],
                    f["status"].as_str().unwrap_or(""),
                    f["invariant"].as_str().unwrap_or(""),
                    f["run_dir"].as_str().unwrap_or("")
                );
            }
            // The count above is every failing seed: say where the rest are listed.
            if failing.len() > SHOWN {
                println!(
                    "  … and {} more failing seed(s): {}",
                    failing.len() - SHOWN,
                    hunt_dir.join("hunt.json").display()
                );
            }
        }
    }
    Ok(if failing.is_empty() {
        exit::CLEAN
    } else {
        exit::VIOLATION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_shards_and_gaps() {
        assert_eq!(parse_seeds("1..1000").unwrap(), (1, 1000));
        assert_eq!(parse_seeds("7").unwrap(), (7, 7));
        assert!(parse_seeds("5..2").is_err());
        assert!(parse_seeds("a..b").is_err());
        assert_eq!(parse_shard("1/4").unwrap(), (1, 4));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("1/0").is_err());
        assert_eq!(gaps(1, &[3, 4, 10]), vec![3, 1, 6]);
    }
}
