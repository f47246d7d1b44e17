//! What the harness prints and leaves behind can be trusted: the printed command
//! reproduces its run, finished runs re-render, interrupts never lose a summary, bad
//! input leaves nothing behind, and output flags mean the same everywhere.

mod common;
use common::{outcome, run_dir, summary, words};
use kvmtorture::model;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

fn bin() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("kvmtorture").unwrap();
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `args` with `--results-dir dir`; returns (code, stdout, stderr).
fn kt(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut c = bin();
    c.args(args).arg("--results-dir").arg(dir);
    outcome(c)
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn toml_of(run: &Path) -> String {
    std::fs::read_to_string(run.join("scenario.toml")).expect("scenario.toml")
}

#[test]
fn the_printed_command_reproduces_the_run_for_every_variant_and_mode() {
    let res = TempDir::new().unwrap();
    for m in model::public() {
        for v in m.variants {
            for mode in ["stress", "det"] {
                let cmd = format!(
                    "run --model {} --variant {} --mode {mode} --threads 2 --ops 3 --seed 77 \
                     --stall-timeout 7s --keep-going --window-boost 5 --delay-prob 0.002 \
                     --switch-prob 0.1 --quiet --format json",
                    m.name, v.name
                );
                let (code, out, err) = kt(res.path(), &words(&cmd));
                assert!(code == 0 || code == 1 || code == 3, "{cmd}: {code} {err}");
                let s = json(&out);
                let first = PathBuf::from(s["run_dir"].as_str().unwrap());
                let printed = s["replay"].as_str().unwrap();
                let (verb, dir) = printed
                    .strip_prefix("kvmtorture ")
                    .unwrap()
                    .split_once(' ')
                    .unwrap();
                assert_eq!(verb, if mode == "det" { "replay" } else { "again" }, "{printed}");
                assert_eq!(Path::new(dir), first);
                // `again` of the run resolves to the very same settings.
                let (_, out2, err2) = kt(res.path(), &["again", dir, "--quiet", "--format", "json"]);
                let second = PathBuf::from(
                    json(&out2)["run_dir"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{err2}")),
                );
                assert_eq!(toml_of(&first), toml_of(&second), "{cmd}");
                let t = toml_of(&first);
                let params = if m.params.is_empty() { "[mix]" } else { "[params]" };
                for key in [
                    "variant = \"",
                    "stall_timeout = \"7s\"",
                    "keep_going = true",
                    "window_boost = 5",
                    params,
                    "[mix]",
                ] {
                    assert!(t.contains(key), "{cmd}: resolved settings lack {key}:\n{t}");
                }
            }
        }
    }
}

#[test]
fn again_takes_overrides_and_a_det_replay_matches() {
    let res = TempDir::new().unwrap();
    let (_, out, _) = kt(
        res.path(),
        &words("run hpt-buggy --mode det --threads 3 --ops 50 --seed 4 --quiet --format json"),
    );
    let dir = json(&out)["run_dir"].as_str().unwrap().to_string();
    let (code, out, _) = kt(res.path(), &["replay", &dir, "--format", "json"]);
    let r = json(&out);
    assert_eq!(r["match"], true);
    assert_eq!(Some(code as i64), r["exit_code"].as_i64());
    let (_, out, _) = kt(
        res.path(),
        &["again", &dir, "--seed", "9", "--quiet", "--format", "json"],
    );
    let s = json(&out);
    assert_eq!(s["seed"], 9);
    assert_eq!(s["variant"], "buggy");
}

#[test]
fn a_replay_that_no_longer_reproduces_its_run_fails() {
    let res = TempDir::new().unwrap();
    let (_, out, _) = kt(
        res.path(),
        &words("run hpt-buggy --mode det --threads 3 --ops 50 --seed 4 --quiet --format json"),
    );
    let dir = PathBuf::from(json(&out)["run_dir"].as_str().unwrap());
    let sched = dir.join("schedule.json");
    let mut s: Value = serde_json::from_str(&std::fs::read_to_string(&sched).unwrap()).unwrap();
    s["trace_hash"] = Value::String("0x0000000000000000".into());
    std::fs::write(&sched, s.to_string()).unwrap();
    let (code, out, _) = kt(res.path(), &["replay", dir.to_str().unwrap()]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("MISMATCH") && out.contains("no longer reproduces"),
        "{out}"
    );
}

#[test]
fn report_rerenders_a_finished_run_in_every_format() {
    let res = TempDir::new().unwrap();
    let (code, out, _) = kt(
        res.path(),
        &words("run hpt-buggy --threads 8 --duration 20s --seed 1 --quiet --format json"),
    );
    assert_eq!(code, 1);
    let dir = json(&out)["run_dir"].as_str().unwrap().to_string();
    let (c, human, _) = kt(res.path(), &["report", &dir]);
    assert_eq!(c, 1);
    assert!(human.starts_with("VIOLATION: hpt / buggy"), "{human}");
    assert!(
        human.contains("windows entered") && human.contains("report.txt") || human.contains("kvmtorture 0."),
        "{human}"
    );
    let (_, j, _) = kt(res.path(), &["report", &dir, "--format", "json"]);
    assert_eq!(json(&j)["status"], "violation");
    let (_, k, _) = kt(res.path(), &["report", &dir, "--format", "ktap"]);
    assert!(
        k.starts_with("KTAP version 1\n1..1\n")
            && k.contains("not ok 1 hpt-buggy")
            && k.contains("# run_dir: "),
        "{k}"
    );
}

#[test]
fn commands_given_a_hunt_directory_act_on_its_failing_run() {
    let res = TempDir::new().unwrap();
    // Several failing runs: the command lists them and asks which.
    let (code, out, _) = kt(
        res.path(),
        &words("hunt hpt-buggy --seeds 1..20 --threads 3 --ops 50 --format json"),
    );
    assert_eq!(code, 1);
    let many = json(&out)["results_dir"].as_str().unwrap().to_string();
    let (c, _, err) = kt(res.path(), &["report", &many]);
    assert_eq!(c, 2);
    assert!(err.contains("failing runs; pick one:"), "{err}");
    // One failing run: the command acts on it.
    let (code, out, err) = kt(
        res.path(),
        &words("hunt hpt-buggy --seeds 1..20 --stop-on-first --jobs 1 --threads 3 --ops 50 --format json"),
    );
    assert_eq!(code, 1, "{err}");
    let hunt_dir = json(&out)["results_dir"].as_str().unwrap().to_string();
    let (c, out, err) = kt(res.path(), &["replay", &hunt_dir, "--format", "json"]);
    assert_eq!(c, 1, "{err}");
    assert_eq!(json(&out)["match"], true);
    let (c, out, _) = kt(res.path(), &["report", &hunt_dir, "--format", "json"]);
    assert_eq!(c, 1);
    assert_eq!(json(&out)["status"], "violation");
}

#[test]
fn shipped_scenarios_run_from_any_directory() {
    let cwd = TempDir::new().unwrap();
    let mut c = assert_cmd::Command::cargo_bin("kvmtorture").unwrap();
    c.current_dir(cwd.path())
        .args(words("run hpt-buggy --threads 1 --ops 5 --quiet --results-dir r"));
    let (code, _, err) = outcome(c);
    assert_eq!(code, 0, "{err}");
    let mut c = assert_cmd::Command::cargo_bin("kvmtorture").unwrap();
    c.current_dir(cwd.path()).args(words("run r --quiet"));
    let (code, _, err) = outcome(c);
    assert_eq!(code, 2);
    assert!(err.contains("scenario `r` is a directory"), "{err}");
    assert!(!err.contains(".toml.toml"), "{err}");
}

#[test]
fn bad_input_is_refused_before_a_run_directory_exists() {
    let tmp = TempDir::new().unwrap();
    let zero_mix = tmp.path().join("zero.toml");
    std::fs::write(
        &zero_mix,
        "model = \"hpt\"\n[mix]\nkvm_run = 0\nresize_prepare = 0\nresize_commit = 0\nnotifier_unmap = 0\nage_rmap = 0\n",
    )
    .unwrap();
    let out_of_range = tmp.path().join("range.toml");
    std::fs::write(&out_of_range, "model = \"hpt\"\n[params]\npages = 0\n").unwrap();
    let w = |s: &str| words(s).iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), zero_mix.display().to_string()],
            "weight 0: nothing would run",
        ),
        (
            vec!["run".into(), out_of_range.display().to_string()],
            "params.pages = 0 is out of range",
        ),
        (w("run --model hpt --param pages=0"), "out of range"),
        (w("run --model hpt --param nope=1"), "unknown key nope"),
        (w("run --model hpt --duration 0s"), "greater than zero"),
        (
            w("run --model hpt --threads 0"),
            "threads must be between 1 and 1024",
        ),
        (
            w("run --model hpt --threads 1025"),
            "threads must be between 1 and 1024",
        ),
        (w("run --model hpt --ops 0"), "ops must be at least 1"),
        (
            w("run --model hpt --param order_small=12 --param order_large=10"),
            "order_small must not exceed params.order_large",
        ),
        (w("run --model vpa --param pages=1"), "params.pages must be 0"),
    ];
    for (args, needle) in cases {
        let res = tmp.path().join("results");
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = kt(&res, &a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected `{needle}` in {err}");
        assert!(
            !res.exists() || std::fs::read_dir(&res).unwrap().count() == 0,
            "{args:?} left a run directory"
        );
    }
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvmtorture"))
        .args(words("list --format json --all"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn coverage_is_summarised_and_unentered_windows_warned() {
    let res = TempDir::new().unwrap();
    let (code, out, _) = kt(res.path(), &words("run --model hpt --threads 1 --ops 3 --quiet"));
    assert_eq!(code, 0);
    assert!(out.contains("windows entered"), "{out}");
    assert!(out.contains("warning: never entered:"), "{out}");
    let s = summary(&run_dir(&res));
    assert!(!s["windows_never_entered"].as_array().unwrap().is_empty());
}

fn spawn_run(res: &Path, duration: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kvmtorture"))
        .args(words(&format!(
            "run --model hpt --threads 4 --duration {duration} --quiet"
        )))
        .arg("--results-dir")
        .arg(res)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The run directory, once its first summary exists.
fn wait_for_run(res: &TempDir) -> PathBuf {
    for _ in 0..200 {
        if let Ok(mut rd) = std::fs::read_dir(res.path()) {
            if let Some(Ok(e)) = rd.next() {
                if e.path().join("summary.json").is_file() {
                    return e.path();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no run directory appeared");
}

#[test]
fn a_second_ctrl_c_still_leaves_a_complete_summary() {
    let res = TempDir::new().unwrap();
    let mut child = spawn_run(res.path(), "60s");
    let run = wait_for_run(&res);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-INT");
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let s = summary(&run);
    assert_eq!(s["status"], "interrupted", "{s}");
    assert_eq!(s["exit_code"], 130);
}

#[test]
fn the_summary_is_checkpointed_and_survives_kill_9() {
    let res = TempDir::new().unwrap();
    let mut child = spawn_run(res.path(), "60s");
    let run = wait_for_run(&res);
    // Poll until a checkpoint with counters lands (every 2 s), then kill -9.
    let mut ops = 0;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        ops = summary(&run)["ops_total"].as_u64().unwrap_or(0);
        if ops > 0 {
            break;
        }
    }
    signal(&child, "-KILL");
    child.wait().unwrap();
    let s = summary(&run);
    assert_eq!(s["status"], "running");
    assert!(ops > 0 && s["ops_total"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["replay"].as_str().unwrap().starts_with("kvmtorture again "),
        "{s}"
    );
}

#[test]
fn output_flags_are_accepted_everywhere() {
    let res = TempDir::new().unwrap();
    let (_, out, _) = kt(
        res.path(),
        &words("run hpt-buggy --mode det --threads 3 --ops 50 --seed 4 --quiet --format json"),
    );
    let dir = json(&out)["run_dir"].as_str().unwrap().to_string();
    for cmd in [
        format!("replay {dir} --quiet --format ktap"),
        format!("report {dir} --quiet --format ktap"),
        format!("shrink {dir} --quiet --format json --budget 5"),
        "hunt hpt-buggy --seeds 1..2 --ops 20 --threads 2 --quiet --format ktap".into(),
        "validate --model hpt --duration 1s --quiet --format ktap".into(),
    ] {
        let (code, _, err) = kt(res.path(), &words(&cmd));
        assert_ne!(code, 2, "{cmd}: {err}");
    }
}
