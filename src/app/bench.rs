//! `kvmtorture bench`: the harness's own performance, every public model, one run.
//!
//! Everything is measured in one bench, side by side (each run in a child process of
//! its own, see [`run`]), so that ratios hold on a noisy machine even when absolute
//! numbers do not: per model (fixed variant) stress ops/s at 2 and 16 threads with
//! injection off and the per-op checks on and off (where the model has a `checks`
//! param); the rarest race window's entries per second under the old default
//! injection ([`Injection::UNIFORM`]) and the model's own (or `--candidate`); det
//! scheduling points/s and switches/s at 2 and 16 threads; time to detection of every
//! race variant (median and max over seeds, stress with both injections and det); and
//! the thread-count curve 2..1024 with peak RSS. The JSON goes to
//! `results/bench-<time>/bench.json`.

use super::run::load_scenario;
use crate::cli::{BenchArgs, BenchSize, Format};
use crate::engine::{self, DetRun, Observer, Outcome, RunConfig, Status};
use crate::error::{usage, Error};
use crate::interrupt;
use crate::model::{self, Expect, ModelDesc, VariantKind};
use crate::report;
use crate::scenario::Overrides;
use crate::sched::strategy::StrategySpec;
use crate::sched::stress::{Injection, Policy};
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
                coverage: Duration::from_secs(1),
                coverage_seeds: 2,
                seeds: 2,
                races: usize::MAX,
                detect_cap: Duration::from_secs(1),
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

/// One run of the torture engine, measured in a process of its own (see [`run`]).
struct Spec<'a> {
    model: &'a ModelDesc,
    variant: &'a str,
    threads: usize,
    seed: u64,
    budget: Duration,
    injection: Injection,
    params: Vec<String>,
    /// Det mode: the random strategy's switch probability and the ops per worker.
    det: Option<(f64, u64)>,
}

impl Spec<'_> {
    fn to_json(&self) -> Value {
        json!({"model": self.model.name, "variant": self.variant, "threads": self.threads,
            "seed": self.seed, "budget_ms": self.budget.as_millis() as u64,
            "injection": inj_json(self.injection),
            "params": self.params, "det": self.det.map(|(p, ops)| json!([p, ops]))})
    }

    fn from_json(v: &Value) -> Result<Spec<'static>, Error> {
        let bad = || usage(format!("bench --one: malformed spec {v}"));
        let model = v["model"].as_str().and_then(model::find).ok_or_else(bad)?;
        let variant = v["variant"].as_str().ok_or_else(bad)?;
        let variant = model
            .variants
            .iter()
            .find(|x| x.name == variant)
            .ok_or_else(bad)?
            .name;
        let num = |k: &str| v[k].as_f64().ok_or_else(bad);
        Ok(Spec {
            model,
            variant,
            threads: num("threads")? as usize,
            seed: num("seed")? as u64,
            budget: Duration::from_millis(num("budget_ms")? as u64),
            injection: {
                let i = &v["injection"];
                let f = |k: &str| i[k].as_f64().ok_or_else(bad);
                Injection {
                    prob: f("delay_prob")?,
                    window_boost: f("window_boost")?,
                    policy: <Policy as clap::ValueEnum>::from_str(
                        i["policy"].as_str().ok_or_else(bad)?,
                        false,
                    )
                    .map_err(|_| bad())?,
                }
            },
            params: v["params"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|p| p.as_str().map(String::from).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            det: match &v["det"] {
                Value::Null => None,
                d => Some((d[0].as_f64().ok_or_else(bad)?, d[1].as_u64().ok_or_else(bad)?)),
            },
        })
    }
}

/// What the bench reads from one run.
struct Measured {
    caught: bool,
    elapsed_s: f64,
    ops_total: u64,
    coverage: Vec<(String, u64)>,
    det_steps: u64,
    det_switches: u64,
    peak_rss_mib: f64,
}

/// Runs `s` in a child process (`bench --one`) and reads its figures.
///
/// Not in this process: a run whose workers do not wind down (a race variant that
/// corrupted a lock, a run stopped by the watchdog) leaves its threads behind, still
/// spinning and sleeping, and every later measurement of the bench would share the
/// cores with them (one 1024-thread curve point left behind made the next model's
/// 2-thread run 10,000x slower). A process per run also gives each run its own peak RSS.
fn run(s: &Spec) -> Result<Measured, Error> {
    run_bounded(s)?.ok_or_else(|| {
        Error::Fault(format!(
            "bench: {} {} at {} threads did not finish",
            s.model.name, s.variant, s.threads
        ))
    })
}

/// [`run`], or `None` if the child was still running a minute past its budget (and
/// was killed): a thread-curve point whose last op is a rendezvous of a thousand
/// threads on two cores (hash-protect's stop_machine) is a figure, not a fault.
fn run_bounded(s: &Spec) -> Result<Option<Measured>, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::Fault(format!("bench: own binary: {e}")))?;
    let mut child = std::process::Command::new(exe)
        .args(["bench", "--one", &s.to_json().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| Error::Fault(format!("bench: cannot start a run: {e}")))?;
    // The budget, the watchdog's wind-down and a det run's ops: past this the child
    // is killed and the run is a harness fault.
    let deadline = std::time::Instant::now() + s.budget + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| Error::Fault(e.to_string()))? {
            break st;
        }
        if interrupt::requested() || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            if interrupt::requested() {
                return Err(Error::Fault("bench: interrupted".into()));
            }
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let v: Value = serde_json::from_str(&out).map_err(|e| {
        Error::Fault(format!(
            "bench: {} {} at {} threads: {status}, no figures ({e})",
            s.model.name, s.variant, s.threads
        ))
    })?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Some(Measured {
        caught: v["caught"].as_bool().unwrap_or(false),
        elapsed_s: f("elapsed_s"),
        ops_total: f("ops_total") as u64,
        coverage: v["coverage"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c[0].as_str().unwrap_or("-").to_string(),
                    c[1].as_u64().unwrap_or(0),
                )
            })
            .collect(),
        det_steps: f("det_steps") as u64,
        det_switches: f("det_switches") as u64,
        peak_rss_mib: f("peak_rss_mib"),
    }))
}

/// `bench --one SPEC`: the child side of [`run`]. Prints the figures as one JSON
/// object and leaves at once (threads a stalled run left behind die with it).
pub fn one(spec: &str) -> Result<i32, Error> {
    let v: Value = serde_json::from_str(spec).map_err(|e| usage(format!("bench --one: {e}")))?;
    let s = Spec::from_json(&v)?;
    let o = run_here(&s)?;
    let det = o.det.as_ref();
    let out = json!({"caught": o.status == Status::Violation,
        "elapsed_s": o.elapsed.as_secs_f64(), "ops_total": o.ops_total,
        "coverage": o.coverage, "det_steps": det.map_or(0, |d| d.steps),
        "det_switches": det.map_or(0, |d| d.switches), "peak_rss_mib": peak_rss_mib()});
    println!("{out}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0)
}

fn run_here(s: &Spec) -> Result<Outcome, Error> {
    let o = Overrides {
        model: Some(s.model.name.into()),
        variant: Some(s.variant.into()),
        threads: Some(s.threads),
        duration: Some(s.budget),
        seed: Some(s.seed),
        delay_prob: Some(s.injection.prob),
        window_boost: Some(s.injection.window_boost),
        injection: Some(s.injection.policy),
        param_flags: s.params.clone(),
        ..Overrides::default()
    };
    let sc = load_scenario(None, &o)?;
    let model = (sc.model.build)(&sc.model_config()?).map_err(|e| usage(format!("{}: {e}", s.model.name)))?;
    let det = s.det.map(|(switch_prob, ops)| {
        (
            DetRun {
                strategy: StrategySpec::Random { switch_prob },
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
        injection_policy: sc.injection,
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

fn ops_per_s(o: &Measured) -> f64 {
    o.ops_total as f64 / o.elapsed_s
}

/// The rarest window's entries per second (the figure of merit of a fixed run).
fn rarest_per_s(o: &Measured) -> f64 {
    o.coverage.iter().map(|(_, n)| *n).min().unwrap_or(0) as f64 / o.elapsed_s
}

/// This process's peak RSS, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Benches model `m`; `new` is the injection compared with the old default
/// ([`Injection::UNIFORM`]): the model's default unless `bench --candidate` names one.
fn model_bench(m: &'static ModelDesc, z: &Size, new: Injection) -> Result<Value, Error> {
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
    let old = Injection::UNIFORM;
    let off = old.off();
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
    // Rarest window: the old default vs the new, alternating, same seeds. Rarest of
    // the windows either entered at this thread count: a window the roles of two
    // threads cannot reach (pfncache's reader of a cache being activated needs a third
    // party) is listed as never entered, not measured as 0/s.
    let mut coverage = Vec::new();
    for threads in [2, 16] {
        let mut runs = Vec::new();
        for seed in 1..=z.coverage_seeds {
            for (is_new, inj) in [(false, old), (true, new)] {
                let o = run(&Spec {
                    seed,
                    budget: z.coverage,
                    ..base(threads, inj)
                })?;
                runs.push((is_new, o));
            }
        }
        let reached = |w: &str| {
            runs.iter()
                .any(|(_, o)| o.coverage.iter().any(|(n, c)| n == w && *c > 0))
        };
        let never: Vec<&str> = m
            .coverage
            .iter()
            .map(|c| c.name)
            .filter(|w| !reached(w))
            .collect();
        let per_s = |o: &Measured, w: &str| {
            o.coverage
                .iter()
                .find(|(n, _)| n == w)
                .map_or(0.0, |(_, c)| *c as f64 / o.elapsed_s)
        };
        let median_of = |w: &str, new: bool| {
            median(
                runs.iter()
                    .filter(|r| r.0 == new)
                    .map(|r| per_s(&r.1, w))
                    .collect(),
            )
        };
        // The rarest reachable window under the old (`false`) or the new injection.
        let rarest_under = |new: bool| {
            m.coverage
                .iter()
                .map(|c| c.name)
                .filter(|w| reached(w))
                .min_by(|a, b| median_of(a, new).total_cmp(&median_of(b, new)))
        };
        let rarest = rarest_under(false);
        let (old_r, new_r) = rarest.map_or((0.0, 0.0), |w| (median_of(w, false), median_of(w, true)));
        // The new injection's own rarest window may be another one: report it too.
        let new_rarest = rarest_under(true);
        coverage.push(json!({"threads": threads, "rarest_window": rarest.unwrap_or("-"),
            "old_per_s": old_r, "new_per_s": new_r,
            "ratio": (old_r > 0.0).then(|| new_r / old_r),
            "new_rarest_window": new_rarest.unwrap_or("-"),
            "new_rarest_per_s": new_rarest.map_or(0.0, |w| median_of(w, true)),
            "never_entered": never}));
    }
    let mut det = Vec::new();
    for threads in [2, 16] {
        let dspec = |p, ops| Spec {
            det: Some((p, ops)),
            ..base(threads, off)
        };
        let o = run(&dspec(0.05, z.det_ops))?;
        // The handoff's own rate needs a run long enough that starting the threads is
        // not most of it: at 2 threads, 20 times the ops (at 16 each switch is slow).
        let sw = run(&dspec(1.0, if threads == 2 { z.det_ops * 20 } else { z.det_ops }))?;
        det.push(
            json!({"threads": threads, "points_per_s": o.det_steps as f64 / o.elapsed_s,
            "ops_per_s": ops_per_s(&o),
            "switches_per_s_switch_prob_1": sw.det_switches as f64 / sw.elapsed_s}),
        );
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
            ("stress_old", old, false),
            ("stress_new", new, false),
            ("det", off, true),
        ] {
            let mut times = Vec::new();
            let mut caught = 0;
            for seed in 1..=z.seeds {
                let o = run(&Spec {
                    variant: v.name,
                    seed,
                    budget: z.detect_cap,
                    det: det.then_some((0.05, z.det_ops * 4)),
                    ..base(if det { 4 } else { 16 }, inj)
                })?;
                if o.caught {
                    caught += 1;
                }
                times.push(o.elapsed_s);
            }
            let max = times.iter().copied().fold(0.0, f64::max);
            row[label] = json!({"median_s": median(times), "max_s": max, "caught": caught, "seeds": z.seeds});
        }
        detection.push(row);
    }
    let mut curve = Vec::new();
    for &threads in z.curve {
        curve.push(match run_bounded(&base(threads, new))? {
            Some(o) => json!({"threads": threads, "finished": true, "ops_per_s": ops_per_s(&o),
                "rarest_per_s": rarest_per_s(&o),
                "every_window_entered": o.coverage.iter().all(|(_, n)| *n > 0),
                "peak_rss_mib": o.peak_rss_mib}),
            None => json!({"threads": threads, "finished": false, "ops_per_s": null,
                "rarest_per_s": null, "every_window_entered": false, "peak_rss_mib": null}),
        });
    }
    Ok(
        json!({"model": m.name, "variant": fixed, "injection": inj_json(new),
        "throughput": throughput, "coverage": coverage,
        "det": det, "detection": detection, "threads_curve": curve}),
    )
}

pub fn bench(a: &BenchArgs) -> Result<i32, Error> {
    if let Some(spec) = &a.one {
        return one(spec);
    }
    let size = if a.quick && a.size == BenchSize::Full {
        BenchSize::Quick
    } else {
        a.size
    };
    let z = Size::of(size);
    let chosen = a
        .models
        .iter()
        .map(|n| model::find(n).ok_or_else(|| usage(format!("bench: unknown model '{n}'"))))
        .collect::<Result<Vec<_>, _>>()?;
    let candidate = match &a.candidate {
        Some(c) => Some(Injection::parse(c).map_err(|e| usage(format!("bench --candidate {e}")))?),
        None => None,
    };
    interrupt::install();
    let mut models = Vec::new();
    for m in model::public().filter(|m| chosen.is_empty() || chosen.iter().any(|c| c.name == m.name)) {
        if a.format == Format::Human {
            eprintln!("bench: {} ...", m.name);
        }
        let new = candidate.unwrap_or(Injection::default_with(m.injection));
        models.push(model_bench(m, &z, new)?);
    }
    let v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "size": format!("{size:?}").to_lowercase(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "old_injection": inj_json(Injection::UNIFORM),
        "candidate": candidate.map(inj_json),
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

/// An injection as the bench JSON and `bench --one`'s spec spell it.
fn inj_json(i: Injection) -> Value {
    json!({"delay_prob": i.prob, "window_boost": i.window_boost,
        "policy": i.policy.name()})
}

/// A figure for the tables: `-` where there is none (a ratio to 0).
fn f(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
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
    t += "\nRarest race window, entries/s: the old default injection (uniform) vs each model's new default, same run\n\n| model | threads | new policy | window (rarest, old) | old | new | ratio | never entered |\n|---|---:|---|---|---:|---:|---:|---|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for r in m["coverage"].as_array().into_iter().flatten() {
            let never: Vec<&str> = r["never_entered"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            t += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m["model"].as_str().unwrap_or(""),
                r["threads"],
                m["injection"]["policy"].as_str().unwrap_or(""),
                r["rarest_window"].as_str().unwrap_or(""),
                f(&r["old_per_s"]),
                f(&r["new_per_s"]),
                if r["ratio"].is_null() {
                    "-".into()
                } else {
                    format!("{}x", f(&r["ratio"]))
                },
                if never.is_empty() {
                    "-".into()
                } else {
                    never.join(", ")
                }
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
    t += "\nTime to detection, seconds: median / max (caught/seeds)\n\n| model | variant | stress, old default | stress, new default | det |\n|---|---|---|---|---|\n";
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
                c("stress_old"),
                c("stress_new"),
                c("det")
            );
        }
    }
    t += "\nThreads curve, new default injection\n\n| model | threads | ops/s | rarest window/s | every window | peak RSS MiB |\n|---|---:|---:|---:|---|---:|\n";
    for m in v["models"].as_array().into_iter().flatten() {
        for r in m["threads_curve"].as_array().into_iter().flatten() {
            if r["finished"] == false {
                t += &format!(
                    "| {} | {} | not over a minute past its budget (killed) | - | false | - |\n",
                    m["model"].as_str().unwrap_or(""),
                    r["threads"]
                );
                continue;
            }
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
