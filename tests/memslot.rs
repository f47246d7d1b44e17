//! The memslot model through the CLI: a det failure of `buggy` replays exactly and its
//! report shows the delete against KSM. (Caught, clean-alone, coverage and mutants for
//! every variant are `tests/models.rs`'s, from the descriptor.)

mod common;
use common::{kt, outcome, run_model};
use serde_json::Value;
use std::path::PathBuf;
use tempfile::TempDir;

/// `run --model memslot <args>`.
fn run(args: &str) -> (i32, Value, PathBuf, TempDir) {
    run_model("memslot", args)
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
