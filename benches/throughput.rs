//! Throughput of the torture loop, measured on the real binary.
//!
//! `cargo bench --bench throughput` runs `kvmtorture run --format json` for hpt fixed
//! at 2 and 16 threads, with delay injection off (`--delay-prob 0`) and on (0.01),
//! and with the per-op invariant checks on and off (`[params] checks = false`), each
//! configuration `RUNS` times for `SECS` seconds, and prints the median ops/s and the
//! ratios. Then det mode: scheduling points/s without a switch (one worker), switches/s
//! (two workers switching at every point), and det vs stress ops/s at 8 workers for
//! the fixed variant of every model `list` reports. Medians, because these 2-core
//! machines are noisy.
//! Environment: `BENCH_SECS` (default 3), `BENCH_RUNS` (default 3).

use std::process::Command;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `kvmtorture run ARGS --quiet --format json` → its summary.
fn run_json(args: &[&str], scratch: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kvmtorture"))
        .args(["run", "--quiet", "--format", "json", "--results-dir"])
        .arg(scratch)
        .args(args)
        .output()
        .expect("run kvmtorture");
    assert!(
        out.status.success(),
        "bench run {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json summary")
}

/// Median of `runs` evaluations of `f`.
fn median_of(runs: u64, mut f: impl FnMut() -> f64) -> f64 {
    median((0..runs).map(|_| f()).collect())
}

/// The det-mode rows: scheduler cost, and det vs stress per model.
fn det_section(runs: u64, secs: u64, scratch: &std::path::Path) {
    let per_s =
        |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap() / v["duration_s"].as_f64().unwrap();
    let points = median_of(runs, || {
        let v = run_json(
            &[
                "--model",
                "hpt",
                "--mode",
                "det",
                "--threads",
                "1",
                "--ops",
                "20000",
            ],
            scratch,
        );
        per_s(&v, "steps")
    });
    let switches = median_of(runs, || {
        let args = [
            "--model",
            "hpt",
            "--mode",
            "det",
            "--threads",
            "2",
            "--ops",
            "2000",
        ];
        let v = run_json(
            &[&args[..], &["--strategy", "random", "--switch-prob", "1"]].concat(),
            scratch,
        );
        per_s(&v, "switches")
    });
    println!("\ndet scheduler (hpt fixed, median of {runs}):");
    println!("| measure | per second |\n|---|---:|");
    println!("| scheduling points, 1 worker (no switch) | {points:.0} |");
    println!("| switches, 2 workers, random --switch-prob 1 | {switches:.0} |");
    println!("\ndet vs stress, fixed variants, 8 workers (ops/s, median of {runs}):");
    println!("| model | stress | det random | det pct | stress / det random |\n|---|---:|---:|---:|---:|");
    let list = Command::new(env!("CARGO_BIN_EXE_kvmtorture"))
        .args(["list", "--format", "json"])
        .output()
        .expect("list");
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list json");
    for m in list["models"].as_array().unwrap() {
        let model = m["name"].as_str().unwrap();
        let base = ["--model", model, "--variant", "fixed", "--threads", "8"];
        let ops = |v: &serde_json::Value| v["ops_per_s"].as_f64().unwrap();
        let dur = format!("{secs}s");
        let stress = median_of(runs, || {
            ops(&run_json(&[&base[..], &["--duration", &dur]].concat(), scratch))
        });
        let det = |strategy: &str| {
            median_of(runs, || {
                let args = ["--mode", "det", "--strategy", strategy, "--ops", "500"];
                ops(&run_json(&[&base[..], &args].concat(), scratch))
            })
        };
        let (random, pct) = (det("random"), det("pct"));
        println!(
            "| {model} | {stress:.0} | {random:.0} | {pct:.0} | {:.1}x |",
            stress / random
        );
    }
}

/// One run's ops/s.
fn ops_per_s(threads: u32, delay: f64, checks: bool, secs: u64, scratch: &std::path::Path) -> f64 {
    let scenario = scratch.join(format!("bench-{threads}-{delay}-{checks}.toml"));
    let text = format!(
        "model = \"hpt\"\nvariant = \"fixed\"\nquiescent_every = \"1s\"\n[params]\nchecks = {checks}\n"
    );
    std::fs::write(&scenario, text).expect("write scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_kvmtorture"))
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--format", "json"])
        .args([
            "--threads",
            &threads.to_string(),
            "--duration",
            &format!("{secs}s"),
        ])
        .args([
            "--delay-prob",
            &delay.to_string(),
            "--results-dir",
            scratch.to_str().unwrap(),
        ])
        .output()
        .expect("run kvmtorture");
    assert!(
        out.status.success(),
        "bench run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    v["ops_per_s"].as_f64().expect("ops_per_s")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (secs, runs) = (env_or("BENCH_SECS", 3), env_or("BENCH_RUNS", 3));
    let scratch = tempfile::tempdir().expect("temp dir");
    println!("hpt fixed, {secs}s per run, median of {runs} runs (ops/s)");
    println!("| threads | injection | checks | ops/s (median) | min | max |");
    println!("|---:|---|---|---:|---:|---:|");
    let mut table = Vec::new();
    for threads in [2, 16] {
        for delay in [0.0, 0.01] {
            for checks in [true, false] {
                let v: Vec<f64> = (0..runs)
                    .map(|_| ops_per_s(threads, delay, checks, secs, scratch.path()))
                    .collect();
                let (lo, hi) = (
                    v.iter().copied().fold(f64::MAX, f64::min),
                    v.iter().copied().fold(0.0, f64::max),
                );
                let m = median(v);
                table.push(((threads, delay, checks), m));
                let inj = if delay > 0.0 { "on (0.01)" } else { "off" };
                println!(
                    "| {threads} | {inj} | {} | {m:.0} | {lo:.0} | {hi:.0} |",
                    if checks { "on" } else { "off" }
                );
            }
        }
    }
    let get = |k| table.iter().find(|(key, _)| *key == k).map(|(_, m)| *m).unwrap();
    println!("\nratios (median / median):");
    for threads in [2, 16] {
        println!(
            "  {threads} threads: checks cost {:.1}% (no injection), injection costs {:.1}% (checks on)",
            100.0 * (1.0 - get((threads, 0.0, true)) / get((threads, 0.0, false))),
            100.0 * (1.0 - get((threads, 0.01, true)) / get((threads, 0.0, true)))
        );
    }
    println!(
        "  16 vs 2 threads (no injection, checks on): {:.2}x",
        get((16, 0.0, true)) / get((2, 0.0, true))
    );
    det_section(runs, secs, scratch.path());
}
