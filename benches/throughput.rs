//! Throughput of the torture loop, measured on the real binary.
//!
//! `cargo bench --bench throughput` runs `kvmtorture run --format json` for hpt fixed
//! at 2 and 16 threads, with delay injection off (`--delay-prob 0`) and on (0.01),
//! and with the per-op invariant checks on and off (`[params] checks = false`), each
//! configuration `RUNS` times for `SECS` seconds, and prints the median ops/s and the
//! ratios. Medians, because these 2-core machines are noisy.
//! Environment: `BENCH_SECS` (default 3), `BENCH_RUNS` (default 3).

use std::process::Command;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
}
