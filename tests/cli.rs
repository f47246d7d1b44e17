//! The command-line contract: exit codes, results layout, bad input, Ctrl-C, the
//! watchdog and `list`.

mod common;
use common::{kt, outcome, run_dir, summary, words};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;

fn usage_error(cmd: &str, needle: &str) {
    let dir = TempDir::new().unwrap();
    let args = words(cmd);
    let (code, _, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 2, "{args:?} should be a usage error; stderr: {err}");
    assert!(err.contains(needle), "{args:?}: expected `{needle}` in: {err}");
}

#[test]
fn unknown_scenario_model_variant_and_values_are_usage_errors() {
    usage_error("run no-such-scenario", "unknown scenario `no-such-scenario`");
    usage_error("run --model nope", "unknown model `nope` (valid: hpt");
    usage_error("run --model hpt --variant nope", "valid: fixed, buggy");
    usage_error(
        "run --model hpt --threads 0",
        "threads must be between 1 and 1024, got 0",
    );
    usage_error("run --model hpt --duration 10x", "invalid duration `10x`");
    usage_error(
        "run --model hpt --delay-prob 2",
        "delay_prob must be within 0..=1",
    );
    usage_error(
        "run --model hpt --injection sometimes",
        "invalid value 'sometimes'",
    );
}

/// A run's injection policy is the model's default (its descriptor, shown by `list`)
/// unless the flag or the file names one, and the run directory records it, so
/// `again` injects the same way.
#[test]
fn the_injection_policy_defaults_per_model_and_is_recorded() {
    for (args, want) in [
        ("run --model hpt --threads 2 --ops 20", "targeted"),
        ("run --model pfncache --threads 2 --ops 20", "uniform"),
        ("run --model hash-protect --threads 2 --ops 20", "preempt"),
        (
            "run --model hpt --threads 2 --ops 20 --injection uniform",
            "uniform",
        ),
    ] {
        let dir = TempDir::new().unwrap();
        let (code, _, err) = outcome(kt(&dir, &words(args)));
        assert_eq!(code, 0, "{args}: {err}");
        let run = run_dir(&dir);
        assert_eq!(summary(&run)["injection"], want, "{args}");
        let saved = std::fs::read_to_string(run.join("scenario.toml")).unwrap();
        assert!(
            saved.contains(&format!("injection = \"{want}\"")),
            "{args}: {saved}"
        );
    }
}

#[test]
fn malformed_and_unknown_toml_keys_name_the_line_and_key() {
    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "model = \"hpt\"\nthreads = = 3\n").unwrap();
    usage_error(&format!("run {}", bad.display()), "line 2");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "model = \"hpt\"\nthreadz = 3\n").unwrap();
    usage_error(&format!("run {}", unknown.display()), "unknown field `threadz`");
    let param = dir.path().join("param.toml");
    std::fs::write(&param, "model = \"hpt\"\n[params]\norder_huge = 3\n").unwrap();
    usage_error(
        &format!("run {}", param.display()),
        "unknown key params.order_huge",
    );
    let mix = dir.path().join("mix.toml");
    std::fs::write(&mix, "model = \"hpt\"\n[mix]\nwarp = 3\n").unwrap();
    usage_error(&format!("run {}", mix.display()), "unknown op `warp`");
}

#[test]
fn unwritable_results_dir_is_a_harness_fault() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let target = file.join("sub");
    let mut c = assert_cmd::Command::cargo_bin("kvmtorture").unwrap();
    c.args(words("run --model hpt --duration 1s --results-dir"));
    c.arg(&target);
    let (code, _, err) = outcome(c);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is not writable"), "{err}");
}

#[test]
fn a_clean_run_writes_a_complete_summary() {
    let dir = TempDir::new().unwrap();
    let (code, out, _) = outcome(kt(&dir, &words("run hpt-fixed --threads 4 --ops 200 --seed 9")));
    assert_eq!(code, 0);
    let run = run_dir(&dir);
    let name = run.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("hpt-fixed-") && name.ends_with("-s9"), "{name}");
    assert!(out.contains(name), "the run directory is printed: {out}");
    let s = summary(&run);
    for key in [
        "version",
        "model",
        "variant",
        "mode",
        "seed",
        "threads",
        "duration_s",
        "ops_total",
        "ops_by_kind",
        "coverage",
        "violations",
        "exit_code",
        "replay",
    ] {
        assert!(s.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(s["ops_total"], 800, "4 workers x 200 ops");
    assert_eq!(s["status"], "clean");
    assert_eq!(
        s["replay"].as_str().unwrap(),
        format!("kvmtorture again {}", run.display())
    );
    assert!(run.join("scenario.toml").is_file(), "resolved settings saved");
    assert!(!run.join("report.txt").exists(), "no report for a clean run");
}

#[test]
fn json_and_ktap_formats() {
    let dir = TempDir::new().unwrap();
    let (code, out, _) = outcome(kt(
        &dir,
        &words("run --model hpt --threads 2 --ops 50 --format json"),
    ));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is the summary JSON");
    assert_eq!(v["exit_code"], 0);
    let (code, out, _) = outcome(kt(
        &dir,
        &words("run --model hpt --threads 2 --ops 50 --format ktap"),
    ));
    assert_eq!(code, 0);
    assert!(out.starts_with("KTAP version 1\n1..1\n"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok 1 hpt-fixed")), "{out}");
    assert!(out.contains("# run_dir: "), "{out}");
}

#[test]
fn sigint_stops_the_run_and_writes_everything() {
    let dir = TempDir::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvmtorture"))
        .args(words("run --model hpt --threads 4 --duration 60s --quiet"))
        .args(["--results-dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let s = summary(&run_dir(&dir));
    assert_eq!(s["status"], "interrupted");
    assert_eq!(s["exit_code"], 130);
    assert!(s["ops_total"].as_u64().unwrap() > 0);
}

#[test]
fn a_hung_worker_is_reported_as_a_stall() {
    let dir = TempDir::new().unwrap();
    let args = words("run --model hpt --threads 4 --duration 30s --stall-timeout 1s --test-stall-worker 2");
    let (code, _, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 3, "{err}");
    let run = run_dir(&dir);
    let s = summary(&run);
    assert_eq!(s["status"], "stall");
    assert_eq!(s["stalled_threads"], serde_json::json!([2]));
    let report = std::fs::read_to_string(run.join("report.txt")).unwrap();
    assert!(report.contains("STALL: worker(s) [2]"), "{report}");
    assert!(report.contains("-- worker 2 (inside test.stall)"), "{report}");
}

#[test]
fn list_names_models_variants_and_scenarios() {
    let dir = TempDir::new().unwrap();
    let (code, out, _) = outcome(kt(&dir, &words("list --format json")));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hpt = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "hpt")
        .expect("hpt listed");
    let buggy = hpt["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "buggy")
        .unwrap();
    assert_eq!(buggy["needs_concurrency"], true);
    assert_eq!(buggy["commit"], "5e9859699aba");
    let scenarios: Vec<&str> = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        scenarios.contains(&"hpt-fixed") && scenarios.contains(&"hpt-buggy"),
        "{scenarios:?}"
    );
}

#[test]
fn validate_checks_every_variant_against_its_promise() {
    let dir = TempDir::new().unwrap();
    let cmd = format!(
        "validate --model hpt --duration 1s --results-dir {}",
        dir.path().display()
    );
    let (code, out, err) = outcome(kt(&dir, &words(&cmd)));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("KTAP version 1\n1..2\n"), "{out}");
    assert!(out.contains("ok 1 hpt/fixed\n# clean"), "{out}");
    assert!(out.contains("ok 2 hpt/buggy\n# caught: exit 1"), "{out}");
    assert!(out.contains("# invariant: "), "{out}");
    assert!(out.ends_with("validate: 2 passed, 0 failed\n"), "{out}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no run directory when all is as promised"
    );
}
