//! Coverage counters count what their descriptor says: a det run with a known seed
//! (the same interleaving every time) drives each model through the windows below,
//! and the counters of those windows rise.

mod common;
use common::{kt, outcome, run_dir, summary, words};
use tempfile::TempDir;

/// Runs a fixed variant in det mode and returns its coverage counters.
fn det_coverage(model: &str, seed: u64) -> serde_json::Map<String, serde_json::Value> {
    let dir = TempDir::new().unwrap();
    let cmd = format!("run --model {model} --variant fixed --mode det --seed {seed} --threads 4 --ops 200");
    let (code, out, err) = outcome(kt(&dir, &words(&cmd)));
    assert_eq!(code, 0, "{out}{err}");
    summary(&run_dir(&dir))["coverage"].as_object().unwrap().clone()
}

fn assert_entered(cov: &serde_json::Map<String, serde_json::Value>, windows: &[&str]) {
    for w in windows {
        let n = cov.get(*w).and_then(|n| n.as_u64());
        assert!(n.is_some_and(|n| n > 0), "window {w} not entered: {cov:?}");
    }
}

/// HPT seed 2: faults and H_ENTERs meet invalidations (the retry under the rmap
/// lock), the notifier unlinks VALID entries, a fault's page is replaced while it is
/// pinned, and resizes IPI vCPUs out of the guest.
#[test]
fn hpt_det_seed_enters_the_notifier_and_resize_windows() {
    let cov = det_coverage("hpt", 2);
    assert_entered(
        &cov,
        &[
            "fault_retried_invalidation",
            "h_enter_absent_invalidation",
            "unmap_unlinked_valid",
            "fault_gup_raced_invalidation",
            "ipi_waited_for_guest_exit",
            "guest_entry_refused_mmu_not_ready",
            "guest_entered",
            "commit_rehashed",
        ],
    );
}

/// pfncache seed 1: refreshes see an invalidation count raised, a whole event run
/// while the lock was dropped, and the count raised between the gpc walk and
/// `mmu_invalidate_in_progress++` (58cd407c's window).
#[test]
fn pfncache_det_seed_enters_the_retry_windows() {
    let cov = det_coverage("pfncache", 1);
    assert_entered(
        &cov,
        &[
            "retry_saw_invalidate_count",
            "retry_saw_seq_change",
            "retry_count_before_in_progress",
            "walk_cleared_valid",
        ],
    );
}
