//! The memslot model through the CLI: the historical race and the ablation are caught
//! at 8 threads and clean alone, the fixed handlers and the control run clean with
//! every applicable window entered, a det failure of `buggy` replays exactly, and
//! every mutant is caught.

mod common;
use common::{first_invariant, kt, outcome, run_model};
use serde_json::Value;
use std::path::PathBuf;
use tempfile::TempDir;

/// Race variants and the invariants that may catch them first (as in the descriptor).
const RACES: &[(&str, &[&str])] = &[
    ("buggy", &["S1", "S2", "S6", "S7"]),
    ("no-swap-block", &["Q1", "S5", "S7", "Q2"]),
];

/// `run --model memslot <args>`.
fn run(args: &str) -> (i32, Value, PathBuf, TempDir) {
    run_model("memslot", args)
}

#[test]
fn the_race_and_the_ablation_are_caught_at_eight_threads() {
    for (variant, ids) in RACES {
        for seed in [1, 2] {
            let (code, s, _, _d) = run(&format!(
                "--variant {variant} --threads 8 --duration 30s --seed {seed}"
            ));
            assert_eq!(code, 1, "{variant} seed {seed} must be caught: {s}");
            let id = first_invariant(&s);
            assert!(
                ids.contains(&id.as_str()),
                "{variant} seed {seed}: caught by {id}, expected {ids:?}"
            );
        }
    }
}

#[test]
fn the_race_and_the_ablation_are_clean_alone() {
    for (variant, _) in RACES {
        let (code, s, _, _d) = run(&format!(
            "--variant {variant} --threads 1 --ops 2000 --duration 120s --seed 11"
        ));
        assert_eq!(code, 0, "{variant} with one thread has no race to lose: {s}");
        assert!(
            s["ops_total"].as_u64().unwrap() == 2000,
            "{variant}: an ops budget, not a time one: the lone worker ran all 2000 ops"
        );
    }
}

#[test]
fn fixed_handlers_and_the_control_are_clean_with_every_window_entered() {
    for (variant, counters) in [("skip-invalid", 10), ("removed", 6), ("x86like", 8)] {
        // Every run clean; every window entered in at least one of up to three seeds
        // (a single short run on a loaded machine can miss the rarest one).
        let mut seen: std::collections::BTreeMap<String, u64> = Default::default();
        for seed in 3..=5 {
            let (code, s, _, _d) = run(&format!(
                "--variant {variant} --threads 16 --duration 6s --seed {seed}"
            ));
            assert_eq!(code, 0, "{variant} must run clean: {s}");
            let cov = s["coverage"].as_object().unwrap();
            assert_eq!(cov.len(), counters, "{variant}: the counters that apply");
            for (k, n) in cov {
                *seen.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
            if seen.values().all(|&n| n > 0) {
                break;
            }
        }
        let unentered: Vec<&String> = seen.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k).collect();
        assert!(
            unentered.is_empty(),
            "{variant}: race windows never entered: {unentered:?}"
        );
    }
}

#[test]
fn a_det_failure_of_buggy_replays_exactly_and_shows_delete_against_ksm() {
    let (code, s, run, _d) = run("--variant buggy --mode det --seed 1 --threads 4 --ops 400");
    assert_eq!(code, 1, "buggy det seed 1 must fail: {s}");
    let report = std::fs::read_to_string(run.join("report.txt")).unwrap();
    for step in [
        "U (A) kvm_swap_active_memslots",
        "U (B) kvm_arch_flush_shadow_memslot",
        "K change_pte",
    ] {
        assert!(report.contains(step), "the report shows `{step}`");
    }
    let dir = TempDir::new().unwrap();
    let (rc, out, err) = outcome(kt(&dir, &["replay", run.to_str().unwrap(), "--format", "json"]));
    assert_eq!(rc, 1, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["match"], true, "{r}");
    assert_eq!(r["trace_hash"], s["trace_hash"]);
}

#[test]
fn every_mutant_is_caught() {
    let dir = TempDir::new().unwrap();
    let (code, out, err) = outcome(kt(
        &dir,
        &["validate", "--model", "memslot", "--mutants", "--duration", "30s"],
    ));
    assert_eq!(code, 0, "validate --mutants: {out}{err}");
}
