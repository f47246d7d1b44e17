//! `kvmtorture bench`: the harness's own performance, every public model, one run.
//!
//! Everything is measured in this process, side by side, so that ratios hold on a
//! noisy machine even when absolute numbers do not: per model (fixed variant) stress
//! ops/s at 2 and 16 threads with injection off and the per-op checks on and off
//! (where the model has a `checks` param); the rarest race window's entries per
//! second under the default injection and a candidate; det scheduling
//! points/s and switches/s at 2 and 16 threads; time to detection of every race
//! variant (median and max over seeds, stress with both injections and det); and the
//! thread-count curve 2..1024 with peak RSS. The JSON goes to
//! `results/bench-<time>/bench.json`.

use super::run::load_scenario;
use crate::cli::{BenchArgs, BenchSize, Format};
use crate::engine::{self, DetRun, Observer, Outcome, RunConfig, Status};
use crate::error::{usage, Error};
use crate::interrupt;
use crate::model::{self, Expect, ModelDesc, VariantKind};
use crate::report;
use crate::scenario::{Overrides, Scenario};
use crate::sched::strategy::StrategySpec;
use crate::sched::stress::Injection;
use serde_json::{json, Value};
use std::time::Duration;

/// How long and how often each measurement runs.
struct Size {
    /// One stress throughput run.
    run: Duration,
    /// One coverage run (old vs new injection).
    coverage: Duration,
    /// Seeds per coverage measurement.
    coverage_seeds: u64,
    /// Seeds per race variant and mode.
    seeds: u64,
    /// Race variants measured per model.
    races: usize,
    /// Budget of one stress detection run.
    detect_cap: Duration,
    /// Ops per worker of a det run.
    det_ops: u64,
    /// The thread-count curve.
    curve: &'static [usize],
}

impl Size {
    fn of(s: BenchSize) -> Size {
        match s {
            BenchSize::Tiny => Size {
                run: Duration::from_millis(50),
                coverage: Duration::from_millis(50),
                coverage_seeds: 1,
                seeds: 1,
                races: 1,
                detect_cap: Duration::from_millis(200),
                det_ops: 5,
                curve: &[2],
            },
            BenchSize::Quick => Size {
                run: Duration::from_millis(250),
                coverage: Duration::from_millis(500),
                coverage_seeds: 1,
                seeds: 2,
                races: usize::MAX,
                detect_cap: Duration::from_millis(400),
                det_ops: 20,
                curve: &[2, 16, 64, 256, 1024],
            },
            BenchSize::Full => Size {
                run: Duration::from_secs(3),
                coverage: Duration::from_secs(6),
                coverage_seeds: 3,
                seeds: 9,
                races: usize::MAX,
                detect_cap: Duration::from_secs(10),
                det_ops: 300,
                curve: &[2, 16, 64, 256, 1024],
            },
        }
    }
}

struct Quiet;

impl Observer for Quiet {
    fn tick(&mut self, _: Duration, _: u64, _: usize) {}
}

/// One in-process run of the torture engine.
struct Spec<'a> {
    model: &'a ModelDesc,
    variant: &'a str,
    threads: usize,
    seed: u64,
    budget: Duration,
    injection: Injection,
    params: Vec<String>,
    det: Option<(StrategySpec, u64)>,
}

fn scenario(s: &Spec) -> Result<Scenario, Error> {
    let o = Overrides {
        model: Some(s.model.name.into()),
        variant: Some(s.variant.into()),
        threads: Some(s.threads),
        duration: Some(s.budget),
        seed: Some(s.seed),
        delay_prob: Some(s.injection.prob),
        window_boost: Some(s.injection.window_boost),
        param_flags: s.params.clone(),
        ..Overrides::default()
    };
    load_scenario(None, &o)
}

fn run(s: &Spec) -> Result<Outcome, Error> {
    let sc = scenario(s)?;
    let model = (sc.model.build)(&sc.model_config()?).map_err(|e| usage(format!("{}: {e}", s.model.name)))?;
    let det = s.det.clone().map(|(strategy, ops)| {
        (
            DetRun {
                strategy,
                max_idle_steps: 1_000_000,
                quiescent_every_ops: super::exec::DET_QUIESCENT_EVERY_OPS,
            },
            ops,
        )
    });
    let cfg = RunConfig {
        threads: sc.threads,
        duration: if det.is_some() { None } else { sc.duration },
        ops_per_worker: det.as_ref().map(|d| d.1),
        seed: sc.seed,
        delay_prob: s.injection.prob,
        window_boost: s.injection.window_boost,
        injection_policy: s.injection.policy,
        // A caught run that does not wind down is the model's stall, not a
        // measurement: do not wait the default 30 s for it.
        stall_timeout: Duration::from_secs(3),
        keep_going: false,
        quiescent_every: sc.quiescent_every,
        weights: sc.weights()?,
        test_stall_worker: None,
        skip_ops: Vec::new(),
        skip_rounds: Vec::new(),
        det: det.map(|d| d.0),
    };
    Ok(engine::run(
        sc.model,
        model,
        cfg,
        &interrupt::requested,
        &mut Quiet,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ops_per_s(o: &Outcome) -> f64 {
    o.ops_total as f64 / o.elapsed.as_secs_f64()
}

/// The rarest window's entries per second (the figure of merit of a fixed run).
fn rarest_per_s(o: &Outcome) -> (f64, &'static str) {
    let (name, n) = o
        .coverage
        .iter()
        .min_by_key(|(_, n)| *n)
        .copied()
        .unwrap_or(("-", 0));
    (n as f64 / o.elapsed.as_secs_f64(), name)
}

/// Peak RSS since the last [`reset_peak_rss`], in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts a new peak-RSS measurement (`echo 5 > /proc/self/clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn model_bench(m: &'static ModelDesc, z: &Size) -> Result<Value, Error> {
    let fixed = m
        .variants
        .iter()
        .find(|v| v.kind == VariantKind::Fixed)
        .map_or("fixed", |v| v.name);
    let base = |threads, injection| Spec {
        model: m,
        variant: fixed,
        threads,
        seed: 1,
        budget: z.run,
        injection,
        params: Vec::new(),
        det: None,
    };
    let off = Injection::DEFAULT.off();
    let has_checks = m.params.iter().any(|p| p.name == "checks");
    let mut throughput = Vec::new();
    for threads in [2, 16] {
        for checks in [true, false] {
            if !checks && !has_checks {
                continue;
            }
            let mut s = base(threads, off);
            if has_checks {
                s.params = vec![format!("checks={checks}")];
            }
            let o = run(&s)?;
            throughput.push(json!({"threads": threads, "checks": checks, "ops_per_s": ops_per_s(&o)}));
        }
    }
    // Rarest window: the default vs the candidate, alternating, same seeds.
    let mut coverage = Vec::new();
    for threads in [2, 16] {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        let mut rarest = "-";
        for seed in 1..=z.coverage_seeds {
            for (inj, out) in [(Injection::DEFAULT, &mut old), (Injection::CANDIDATE, &mut new)] {
                let o = run(&Spec {
                    seed,
                    budget: z.coverage,
                    ..base(threads, inj)
                })?;
                let (r, name) = rarest_per_s(&o);
                out.push(r);
                rarest = name;
            }
        }
        let (old, new) = (median(old), median(new));
        coverage.push(json!({"threads": threads, "rarest_window": rarest,
            "default_per_s": old, "candidate_per_s": new,
            "ratio": if old > 0.0 { new / old } else { f64::INFINITY }}));
    }
    let mut det = Vec::new();
    for threads in [2, 16] {
        let dspec = |p| Spec {
            det: Some((StrategySpec::Random { switch_prob: p }, z.det_ops)),
            ..base(threads, off)
        };
        let o = run(&dspec(0.05))?;
        let d = o.det.as_ref().expect("det outcome");
        let secs = o.elapsed.as_secs_f64();
        let sw = run(&dspec(1.0))?;
        let dsw = sw.det.as_ref().expect("det outcome");
        det.push(json!({"threads": threads, "points_per_s": d.steps as f64 / secs,
            "ops_per_s": ops_per_s(&o),
            "switches_per_s_switch_prob_1": dsw.switches as f64 / sw.elapsed.as_secs_f64()}));
    }
    let mut detection = Vec::new();
    let races = m
        .variants
        .iter()
        .filter(|v| v.kind == VariantKind::Race && matches!(v.expect, Expect::Caught(_)))
        .take(z.races);
    for v in races {
        let mut row = json!({"variant": v.name});
        for (label, inj, det) in [
            ("stress_default", Injection::DEFAULT, false),
            ("stress_candidate", Injection::CANDIDATE, false),
            ("det", off, true),
        ] {
            let mut times = Vec::new();
            let mut caught = 0;
            for seed in 1..=z.seeds {
                let o = run(&Spec {
                    variant: v.name,
                    seed,
                    budget: z.detect_cap,
                    det: det.then(|| (StrategySpec::Random { switch_prob: 0.05 }, z.det_ops * 4)),
                    ..base(if det { 4 } else { 16 }, inj)
                })?;
                if o.status == Status::Violation {
                    caught += 1;
                }
                times.push(o.elapsed.as_secs_f64());
            }
            let max = times.iter().copied().fold(0.0, f64::max);
            row[label] = json!({"median_s": median(times), "max_s": max, "caught": caught, "seeds": z.seeds});
        }
        detection.push(row);
    }
    let mut curve = Vec::new();
    for &threads in z.curve {
        reset_peak_rss();
        let o = run(&base(threads, Injection::DEFAULT))?;
        let entered = o.coverage.iter().all(|(_, n)| *n > 0);
        curve.push(json!({"threads": threads, "ops_per_s": ops_per_s(&o),
            "rarest_per_s": rarest_per_s(&o).0, "every_window_entered": entered,
            "peak_rss_mib": peak_rss_mib()}));
    }
    Ok(
        json!({"model": m.name, "variant": fixed, "throughput": throughput, "coverage": coverage,
        "det": det, "detection": detection, "threads_curve": curve}),
    )
}

pub fn bench(a: &BenchArgs) -> Result<i32, Error> {
    let size = if a.quick && a.size == BenchSize::Full {
        BenchSize::Quick
    } else {
        a.size
    };
    let z = Size::of(size);
    interrupt::install();
    let mut models = Vec::new();
    for m in model::public() {
        if a.format == Format::Human {
            eprintln!("bench: {} ...", m.name);
        }
        models.push(model_bench(m, &z)?);
    }
    let (old, new) = (Injection::DEFAULT, Injection::CANDIDATE);
    let v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "size": format!("{size:?}").to_lowercase(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "injection": {
            "default": {"delay_prob": old.prob, "window_boost": old.window_boost, "policy": format!("{:?}", old.policy)},
            "candidate": {"delay_prob": new.prob, "window_boost": new.window_boost, "policy": format!("{:?}", new.policy)},
        },
        "models": models,
    });
    let dir = a.results_dir.join(format!("bench-{}", report::utc_stamp()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Fault(format!("cannot create {}: {e}", dir.display())))?;
    report::write(
        &dir,
        "bench.json",
        &serde_json::to_string_pretty(&v).expect("json"),
    )?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&v).expect("json")),
        _ => print!("{}", human(&v, &dir.display().to_string())),
    }
    Ok(0)
}

fn f(v: &Value) -> String {
    let x = v.as_f64().unwrap_or(0.0);
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The README's tables.
fn human(v: &Value, dir: &str) -> String {
    let mut t = String::new();
    t += &format!(
        "kvmtorture bench ({} size, {} cores) -> {dir}/bench.json\n\n",
        v["size"].as_str().unwrap_or(""),
        v["cores"]
    );
    t += "Stress ops/s, fixed variant, injection off\n\n| model | threads | checks on | checks off |\n|---|---:|---:|---:|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for th in [2, 16] {
            let get = |c: bool| {
                m["throughput"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["threads"] == th && r["checks"] == c)
                    .map_or("-".into(), |r| f(&r["ops_per_s"]))
            };
            t += &format!(
                "| {} | {th} | {} | {} |\n",
                m["model"].as_str().unwrap_or(""),
                get(true),
                get(false)
            );
        }
    }
    t += "\nRarest race window, entries/s (default vs candidate injection, same run)\n\n| model | threads | window | default | candidate | ratio |\n|---|---:|---|---:|---:|---:|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for r in m["coverage"].as_array().into_iter().flatten() {
            t += &format!(
                "| {} | {} | {} | {} | {} | {}x |\n",
                m["model"].as_str().unwrap_or(""),
                r["threads"],
                r["rarest_window"].as_str().unwrap_or(""),
                f(&r["default_per_s"]),
                f(&r["candidate_per_s"]),
                f(&r["ratio"])
            );
        }
    }
    t += "\nDet mode (fixed variant)\n\n| model | threads | points/s | ops/s | switches/s (switch-prob 1) |\n|---|---:|---:|---:|---:|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for r in m["det"].as_array().into_iter().flatten() {
            t += &format!(
                "| {} | {} | {} | {} | {} |\n",
                m["model"].as_str().unwrap_or(""),
                r["threads"],
                f(&r["points_per_s"]),
                f(&r["ops_per_s"]),
                f(&r["switches_per_s_switch_prob_1"])
            );
        }
    }
    t += "\nTime to detection, seconds: median / max (caught/seeds)\n\n| model | variant | stress default | stress candidate | det |\n|---|---|---|---|---|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for r in m["detection"].as_array().into_iter().flatten() {
            let c = |k: &str| {
                let x = &r[k];
                format!(
                    "{} / {} ({}/{})",
                    f(&x["median_s"]),
                    f(&x["max_s"]),
                    x["caught"],
                    x["seeds"]
                )
            };
            t += &format!(
                "| {} | {} | {} | {} | {} |\n",
                m["model"].as_str().unwrap_or(""),
                r["variant"].as_str().unwrap_or(""),
                c("stress_default"),
                c("stress_candidate"),
                c("det")
            );
        }
    }
    t += "\nThreads curve, default injection\n\n| model | threads | ops/s | rarest window/s | every window | peak RSS MiB |\n|---|---:|---:|---:|---|---:|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for r in m["threads_curve"].as_array().into_iter().flatten() {
            t += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                m["model"].as_str().unwrap_or(""),
                r["threads"],
                f(&r["ops_per_s"]),
                f(&r["rarest_per_s"]),
                r["every_window_entered"],
                f(&r["peak_rss_mib"])
            );
        }
    }
    t
}
