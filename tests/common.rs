//! Helpers shared by the integration tests: run the binary with a results directory
//! in a temp dir, and read back what it wrote.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The `kvmtorture` binary with `--results-dir` pointing into `dir` for `run`.
pub fn kt(dir: &TempDir, args: &[&str]) -> Command {
    let mut c = Command::cargo_bin("kvmtorture").expect("binary built");
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.args(args);
    if args.first() == Some(&"run") {
        c.args(["--results-dir", dir.path().to_str().unwrap(), "--quiet"]);
    }
    c
}

/// `"run --model hpt --threads 4"` as an argument list: keeps each test's command on
/// one readable line.
pub fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// The single run directory created under `dir`.
pub fn run_dir(dir: &TempDir) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(v.len(), 1, "expected one run directory, got {v:?}");
    v.pop().unwrap()
}

pub fn summary(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Runs to completion and returns (exit code, stdout, stderr).
pub fn outcome(mut c: Command) -> (i32, String, String) {
    let o = c.output().expect("ran");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `run --model MODEL <args>` in a fresh results directory; a run must end clean
/// or caught. Returns the exit code, the summary, the run directory and its temp dir.
pub fn run_model(model: &str, args: &str) -> (i32, serde_json::Value, PathBuf, TempDir) {
    let dir = TempDir::new().unwrap();
    let cmd = format!("run --model {model} {args}");
    let (code, _, err) = outcome(kt(&dir, &words(&cmd)));
    assert!(code == 0 || code == 1, "`{cmd}`: unexpected exit {code}: {err}");
    let path = run_dir(&dir);
    (code, summary(&path), path, dir)
}

/// The invariant of a summary's first violation, or `none`.
pub fn first_invariant(s: &serde_json::Value) -> String {
    s["violations"][0]["invariant"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}
