//! Deterministic mode end to end: exact replay, distinct schedules per seed, hunts,
//! shrinking, hang detection and bad input.

mod common;
use common::{kt, outcome, run_dir, summary, words};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const BUGGY: &[&str] = &[
    "run",
    "hpt-buggy",
    "--mode",
    "det",
    "--strategy",
    "random",
    "--threads",
    "3",
];

fn det_run(dir: &TempDir, extra: &[&str]) -> (i32, PathBuf) {
    let mut args = BUGGY.to_vec();
    args.extend_from_slice(extra);
    let (code, _, err) = outcome(kt(dir, &args));
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    (code, run_dir(dir))
}

fn json(c: assert_cmd::Command) -> (i32, Value) {
    let (code, out, err) = outcome(c);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, v)
}

fn replay(run: &Path) -> (i32, Value) {
    let dir = TempDir::new().unwrap();
    json(kt(&dir, &["replay", run.to_str().unwrap(), "--format", "json"]))
}

#[test]
fn a_failing_det_run_replays_exactly_twice() {
    let dir = TempDir::new().unwrap();
    let (code, run) = det_run(&dir, &["--seed", "5"]);
    assert_eq!(code, 1, "buggy det run must fail");
    let s = summary(&run);
    assert!(run.join("schedule.json").is_file());
    let (c1, r1) = replay(&run);
    let (c2, r2) = replay(&run);
    for (c, r) in [(c1, &r1), (c2, &r2)] {
        assert_eq!(c, 1);
        assert_eq!(r["match"], true, "{r}");
        assert_eq!(r["schedule_hash"], s["schedule_hash"]);
        assert_eq!(r["trace_hash"], s["trace_hash"]);
    }
}

#[test]
fn same_seed_same_trace_other_seed_other_schedule() {
    let hashes = |seed: &str| {
        let dir = TempDir::new().unwrap();
        let (_, run) = det_run(&dir, &["--seed", seed, "--ops", "30"]);
        let s = summary(&run);
        (
            s["schedule_hash"].clone(),
            s["trace_hash"].clone(),
            s["steps"].clone(),
        )
    };
    let a = hashes("11");
    assert_eq!(a, hashes("11"), "same seed, same schedule and trace");
    let b = hashes("12");
    assert_ne!(a.0, b.0, "another seed, another schedule");
}

#[test]
fn shrink_reduces_the_schedule_and_the_result_reproduces() {
    let dir = TempDir::new().unwrap();
    let (code, run) = det_run(&dir, &["--seed", "5"]);
    assert_eq!(code, 1);
    let (code, out) = json(kt(&dir, &["shrink", run.to_str().unwrap(), "--format", "json"]));
    assert_eq!(code, 1, "{out}");
    let (b, a) = (&out["before"], &out["after"]);
    assert!(a["steps"].as_u64() < b["steps"].as_u64(), "{out}");
    assert!(a["preemptions"].as_u64() <= b["preemptions"].as_u64(), "{out}");
    // The shrunk run names the run it came from, whatever seed pass 1 kept.
    assert_eq!(b["seed"], 5, "{out}");
    let shrunk = run.join("shrunk");
    let text = std::fs::read_to_string(shrunk.join("interleaving.txt")).unwrap();
    assert!(text.contains("(shrunk from seed 5, "), "{text}");
    assert_eq!(summary(&shrunk)["seed"], a["seed"], "{out}");
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("step |"))
        .unwrap_or("");
    assert!(header.matches("| w").count() >= 2, "two racing columns: {text}");
    assert!(text.contains("<-- VIOLATION"), "{text}");
    let (c, r) = replay(&shrunk);
    assert_eq!((c, &r["match"]), (1, &Value::Bool(true)), "{r}");
}

#[test]
fn deadlock_and_livelock_models_exit_3() {
    for variant in ["deadlock", "livelock"] {
        let dir = TempDir::new().unwrap();
        let args = [
            "run",
            "--model",
            "testing",
            "--variant",
            variant,
            "--threads",
            "2",
            "--mode",
            "det",
            "--strategy",
            "random",
            "--ops",
            "50",
            "--max-idle-steps",
            "5000",
        ];
        let (code, _, err) = outcome(kt(&dir, &args));
        assert_eq!(code, 3, "{variant}: {err}");
        let run = run_dir(&dir);
        let s = summary(&run);
        assert_eq!(s["status"], variant);
        assert_eq!(s["threads_at_hang"].as_array().unwrap().len(), 2, "{s}");
        let report = std::fs::read_to_string(run.join("report.txt")).unwrap();
        assert!(report.contains(&variant.to_uppercase()), "{report}");
    }
}

#[test]
fn testing_model_is_not_listed() {
    let dir = TempDir::new().unwrap();
    let (_, out, _) = outcome(kt(&dir, &["list"]));
    assert!(!out.contains("testing"), "{out}");
}

#[test]
fn hunt_finds_the_race_lists_seeds_and_shards() {
    let dir = TempDir::new().unwrap();
    let res = dir.path().to_str().unwrap();
    let args = [
        "hunt",
        "hpt-buggy",
        "--strategy",
        "random",
        "--threads",
        "3",
        "--ops",
        "50",
        "--seeds",
        "1..12",
        "--shard",
        "1/3",
        "--format",
        "json",
        "--results-dir",
        res,
    ];
    let (code, v) = json(kt(&dir, &args));
    assert_eq!(code, 1, "{v}");
    let tried: Vec<u64> = v["tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(tried, vec![2, 5, 8, 11]);
    let failing = v["failing"].as_array().unwrap();
    assert!(!failing.is_empty());
    for f in failing {
        assert!(Path::new(f["run_dir"].as_str().unwrap())
            .join("schedule.json")
            .is_file());
    }
    let clean = [
        "hunt",
        "hpt-fixed",
        "--threads",
        "1",
        "--ops",
        "20",
        "--seeds",
        "1..4",
        "--results-dir",
        res,
    ];
    let (code, _, err) = outcome(kt(&dir, &clean));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn stress_replay_reports_a_rate() {
    let dir = TempDir::new().unwrap();
    let args = [
        "run",
        "--model",
        "hpt",
        "--variant",
        "fixed",
        "--threads",
        "2",
        "--ops",
        "50",
        "--seed",
        "3",
    ];
    let (code, _, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 0, "{err}");
    let run = run_dir(&dir);
    let (code, v) = json(kt(
        &dir,
        &[
            "replay",
            run.to_str().unwrap(),
            "--times",
            "2",
            "--format",
            "json",
        ],
    ));
    assert_eq!(code, 0);
    assert_eq!(v["times"], 2);
    assert_eq!(v["reproduced"], 2, "{v}");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = TempDir::new().unwrap();
    let empty = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--mode", "det", "--strategy", "bogus"], "bogus"),
        (&["hunt", "hpt-buggy", "--seeds", "5..2"], "--seeds"),
        (
            &["hunt", "hpt-buggy", "--seeds", "1..4", "--shard", "3/2"],
            "--shard",
        ),
        (&["replay", empty], "summary.json"),
        (&["shrink", empty], "summary.json"),
        (
            &["run", "--mode", "det", "--strategy", "pct", "--pct-depth", "0"],
            "pct_depth must be within 1..=64",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = outcome(kt(&dir, args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A stress run cannot be shrunk.
    let (_, _, _) = outcome(kt(
        &dir,
        &["run", "--model", "hpt", "--threads", "1", "--ops", "5"],
    ));
    let run = run_dir(&dir);
    let (code, _, err) = outcome(kt(&dir, &["shrink", run.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a det run"), "{err}");
}

/// Regression: a decision taken at a thread's exit shares its step number with the
/// thread's last point; keyed by step, replay applied it one decision early and
/// diverged (this run: clean originally, a violation when replayed). Re-pinned from
/// seed 7 to 1 when pfncache's workload changed (seed 7 now ends in a PCT livelock
/// report, exit 3, as seeds 10 and 12 already did before the change).
#[test]
fn replay_is_exact_when_threads_exit_at_a_decision() {
    let dir = TempDir::new().unwrap();
    let args = common::words(
        "run --model pfncache --variant deactivate-race --mode det --strategy pct --threads 8 --ops 100 --seed 1",
    );
    let (code, _, err) = outcome(kt(&dir, &args));
    assert!(code == 0 || code == 1, "{err}");
    let run = run_dir(&dir);
    let s = summary(&run);
    let (c, r) = replay(&run);
    assert_eq!(c, code);
    assert_eq!(r["match"], true, "{r}");
    assert_eq!(r["trace_hash"], s["trace_hash"]);
}

/// Regression: `cond_resched()` in `hva_to_pfn_retry` is a yield, not a failed wait;
/// as a wait, the refresh holding `refresh_lock` was marked blocked although its next
/// round would succeed, and the run ended in a false deadlock.
#[test]
fn a_retry_loop_yield_is_not_a_deadlock() {
    let dir = TempDir::new().unwrap();
    let args = common::words(
        "run --model pfncache --variant fixed --mode det --strategy random --threads 4 --ops 100 --seed 3",
    );
    let (code, out, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 0, "{out}{err}");
}

/// Issue 11: the first failing seed of an hpt `buggy` hunt, default params, shrinks
/// to a protocol view a kernel developer can read at a glance — at most 40 rows, the
/// violating step marked — that replays exactly. The guest's accesses inside one
/// `KVM_RUN` are rounds, which the shrink leaves out one by one.
#[test]
fn hpt_shrinks_to_a_short_protocol_view_with_the_violation_marked() {
    let dir = TempDir::new().unwrap();
    let hunt = [
        "hunt",
        "--model",
        "hpt",
        "--variant",
        "buggy",
        "--mode",
        "det",
        "--seeds",
        "1..200",
        "--stop-on-first",
        "--jobs",
        "1",
        "--results-dir",
    ];
    let mut args = hunt.to_vec();
    args.push(dir.path().to_str().unwrap());
    let (code, _, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 1, "{err}");
    let hunt_dir = run_dir(&dir);
    let run = std::fs::read_dir(&hunt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("schedule.json").is_file())
        .expect("the failing seed's run directory");
    let (code, out) = json(kt(&dir, &["shrink", run.to_str().unwrap(), "--format", "json"]));
    assert_eq!(code, 1, "{out}");
    let (b, a) = (&out["before"], &out["after"]);
    assert!(a["steps"].as_u64() <= b["steps"].as_u64(), "{out}");
    assert!(a["preemptions"].as_u64() <= b["preemptions"].as_u64(), "{out}");
    let shrunk = run.join("shrunk");
    let text = std::fs::read_to_string(shrunk.join("interleaving.txt")).unwrap();
    // The shrunk run names the run it came from (pass 1 may keep another seed).
    let seed = &summary(&run)["seed"];
    assert_eq!(&b["seed"], seed, "{out}");
    assert!(text.contains(&format!("(shrunk from seed {seed}, ")), "{text}");
    let rows = text.lines().skip_while(|l| !l.starts_with("---")).skip(1).count();
    assert!(rows <= 40, "{rows} rows:\n{text}");
    assert!(text.contains("<-- VIOLATION R"), "{text}");
    assert!(
        !text.contains("atomic.load") && !text.contains("spin.trylock"),
        "{text}"
    );
    assert!(text.contains(" vCPU") && text.contains(" resizer"), "{text}");
    let (c, r) = replay(&shrunk);
    assert_eq!((c, &r["match"]), (1, &Value::Bool(true)), "{r}");
}

/// `hunt --failure TEXT` keeps only the failures whose first violation reads TEXT,
/// numbers aside: one race among the several a variant's seeds find.
#[test]
fn hunt_failure_keeps_only_the_failures_that_read_the_text() {
    let hunt = |failure: &str| {
        let dir = TempDir::new().unwrap();
        let args = [
            "hunt",
            "--model",
            "hpt",
            "--variant",
            "buggy",
            "--mode",
            "det",
            "--threads",
            "3",
            "--ops",
            "30",
            "--seeds",
            "1..6",
            "--format",
            "json",
            "--failure",
            failure,
            "--results-dir",
        ];
        let mut args = args.to_vec();
        args.push(dir.path().to_str().unwrap());
        json(kt(&dir, &args))
    };
    let seeds = |v: &Value| -> Vec<u64> {
        v["failing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["seed"].as_u64().unwrap())
            .collect()
    };
    let (code, all) = hunt("");
    assert_eq!(code, 1, "{all}");
    // "index 9" reads "index #": the entry number does not tell failures apart.
    let (code, r3) = hunt("R3 kvm_run: page fault made an entry VALID at index 9");
    assert_eq!(code, 1, "{r3}");
    assert!(
        r3["failing"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["invariant"] == "R3"),
        "{r3}"
    );
    assert!(seeds(&r3).iter().all(|s| seeds(&all).contains(s)), "{r3} {all}");
    let (code, none) = hunt("no violation reads this");
    assert_eq!((code, seeds(&none).len()), (0, 0), "{none}");
}

/// The human hunt summary lists ten failing seeds and says how many more there are
/// and where (it once listed ten of eleven under "11 failing" and said nothing).
#[test]
fn hunt_says_where_the_failing_seeds_it_does_not_list_are() {
    let dir = TempDir::new().unwrap();
    let mut args = words(
        "hunt --model pfncache --variant speculative-valid --seeds 1..14 --ops 50 --threads 4 --results-dir",
    );
    args.push(dir.path().to_str().unwrap());
    let (code, out, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 1, "{err}");
    // "hunt pfncache / speculative-valid (…): 14 seed(s) tried in 0.1s, 12 failing"
    let failing: usize = out
        .lines()
        .next()
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failing count in: {out}"));
    let listed = out
        .lines()
        .filter(|l| l.trim_start().starts_with("seed "))
        .count();
    assert_eq!(listed, failing.min(10), "{out}");
    if failing > 10 {
        let more = format!("… and {} more failing seed(s): ", failing - 10);
        assert!(out.contains(&more) && out.contains("hunt.json"), "{out}");
    } else {
        assert!(!out.contains("more failing"), "{out}");
    }
}
