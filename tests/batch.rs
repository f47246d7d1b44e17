//! `batch`, `soak --resume` and `merge`: KTAP that a parser accepts, batch.json that
//! records every run and resumes, and the union of two hunt shards. Budgets are ops
//! (det mode) so nothing depends on the machine's speed.

mod common;
use common::{kt, outcome, words};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A failing det entry (hpt's buggy variant is caught by every seed at this size)
/// and two clean ones.
const LIST: &str = "\
# a test list
2*hpt-fixed --mode det --threads 2 --ops 40
hpt-buggy --mode det --threads 4 --ops 100   # caught: R3
";

/// Checks a KTAP v1 document the way kselftest's parser reads one: the version line,
/// a plan `1..N`, then exactly N results numbered 1..N in order, each `ok`/`not ok`,
/// every other line a `# ` diagnostic. Returns the (ok, name, diagnostics) of each.
fn parse_ktap(doc: &str) -> Vec<(bool, String, Vec<String>)> {
    let mut lines = doc.lines();
    assert_eq!(lines.next(), Some("KTAP version 1"), "{doc}");
    let plan = lines.next().expect("plan line");
    let n: usize = plan
        .strip_prefix("1..")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad plan line `{plan}`"));
    let mut results: Vec<(bool, String, Vec<String>)> = Vec::new();
    for l in lines {
        if let Some(d) = l.strip_prefix("# ") {
            results
                .last_mut()
                .map(|r| r.2.push(d.to_string()))
                .unwrap_or_else(|| panic!("diagnostic before any result: {l}"));
            continue;
        }
        let (ok, rest) = if let Some(r) = l.strip_prefix("not ok ") {
            (false, r)
        } else if let Some(r) = l.strip_prefix("ok ") {
            (true, r)
        } else {
            panic!("not a KTAP line: `{l}`");
        };
        let (num, name) = rest.split_once(' ').expect("a test number and a name");
        assert_eq!(
            num.parse::<usize>().unwrap(),
            results.len() + 1,
            "results out of order: {l}"
        );
        assert!(!name.trim().is_empty(), "a result needs a name: {l}");
        results.push((ok, name.to_string(), Vec::new()));
    }
    assert_eq!(results.len(), n, "plan says {n}, got {} results", results.len());
    results
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The one directory `cmd` created under `dir`.
fn only_dir(dir: &Path) -> PathBuf {
    let v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].clone()
}

#[test]
fn batch_ktap_has_one_result_per_run_and_batch_json_records_them() {
    let dir = TempDir::new().unwrap();
    let list = dir.path().join("t.list");
    std::fs::write(&list, LIST).unwrap();
    let res = dir.path().join("res");
    let mut c = kt(
        &dir,
        &["batch", list.to_str().unwrap(), "--format", "ktap", "--quiet"],
    );
    c.args(["--results-dir", res.to_str().unwrap()]);
    let (code, out, err) = outcome(c);
    assert_eq!(code, 1, "a caught violation is exit 1; stderr: {err}");
    let r = parse_ktap(&out);
    assert_eq!(r.len(), 3);
    assert!(r[0].0 && r[1].0 && !r[2].0, "{out}");
    // The race of 38c53af85306: R3 at the fault, or Q1 when the commit's check sees it first.
    assert!(
        r[2].2
            .iter()
            .any(|d| d == "invariant: R3" || d == "invariant: Q1"),
        "{out}"
    );
    let run_dir = r[2]
        .2
        .iter()
        .find_map(|d| d.strip_prefix("run dir: "))
        .expect("run dir diagnostic");
    assert!(Path::new(run_dir).join("report.txt").is_file(), "{run_dir}");

    let b = json(&only_dir(&res).join("batch.json"));
    assert_eq!(b["state"], "done");
    assert_eq!(b["exit_code"], 1);
    let runs = b["runs"].as_array().unwrap();
    let seeds: Vec<u64> = runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, vec![1, 2, 3], "successive seeds from the base seed");
    assert!(runs[2]["invariant"] == "R3" || runs[2]["invariant"] == "Q1");
    assert!(runs
        .iter()
        .all(|r| r["ops"].as_u64().unwrap() > 0 && r["run_dir"].is_string()));
    assert!(runs[0]["models"][0]["coverage"].as_object().unwrap().len() > 1);
}

#[test]
fn a_stopped_batch_resumes_where_it_stopped() {
    let dir = TempDir::new().unwrap();
    let list = dir.path().join("t.list");
    std::fs::write(
        &list,
        "hpt-buggy --mode det --threads 4 --ops 100\nhpt-fixed --mode det --threads 2 --ops 40\n",
    )
    .unwrap();
    let res = dir.path().join("res");
    let mut c = kt(
        &dir,
        &["batch", list.to_str().unwrap(), "--stop-on-failure", "--quiet"],
    );
    c.args(["--results-dir", res.to_str().unwrap()]);
    assert_eq!(outcome(c).0, 1);
    let bdir = only_dir(&res);
    let b = json(&bdir.join("batch.json"));
    assert_eq!(b["state"], "stopped");
    assert_eq!(b["runs"][1]["status"], "pending");

    let mut c = kt(
        &dir,
        &[
            "batch",
            "--resume",
            bdir.to_str().unwrap(),
            "--quiet",
            "--format",
            "json",
        ],
    );
    let (code, out, err) = outcome({
        c.args(["--results-dir", res.to_str().unwrap()]);
        c
    });
    assert_eq!(code, 1, "the earlier violation still counts; stderr: {err}");
    let b: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(b["state"], "done");
    assert_eq!(b["runs"][0]["status"], "violation");
    assert_eq!(b["runs"][1]["status"], "clean");
    assert_eq!(json(&bdir.join("batch.json"))["runs"][1]["status"], "clean");
}

#[test]
fn bad_list_entries_are_usage_errors_before_anything_runs() {
    let dir = TempDir::new().unwrap();
    let list = dir.path().join("t.list");
    std::fs::write(&list, "hpt-fixed --ops 10\nno-such-scenario\n").unwrap();
    let res = dir.path().join("res");
    let mut c = kt(&dir, &["batch", list.to_str().unwrap()]);
    c.args(["--results-dir", res.to_str().unwrap()]);
    let (code, _, err) = outcome(c);
    assert_eq!(code, 2);
    assert!(err.contains("unknown scenario `no-such-scenario`"), "{err}");
    assert!(!res.exists(), "nothing ran");
}

#[test]
fn merge_reports_the_union_of_two_hunt_shards_and_their_failures() {
    let dir = TempDir::new().unwrap();
    let mut failing = 0;
    let mut hunts = Vec::new();
    for shard in ["0/2", "1/2"] {
        let res = dir.path().join(format!("host{}", &shard[..1]));
        let mut c = kt(&dir, &words("hunt --model hpt --variant buggy --mode det --threads 4 --ops 100 --seeds 1..6 --format json"));
        c.args(["--shard", shard, "--results-dir", res.to_str().unwrap()]);
        let (code, out, err) = outcome(c);
        assert_eq!(code, 1, "{err}");
        let h: Value = serde_json::from_str(&out).unwrap();
        failing += h["failing"].as_array().unwrap().len();
        hunts.push(res);
    }
    let mut c = kt(&dir, &["merge", "--format", "json"]);
    c.args(&hunts);
    let (code, out, err) = outcome(c);
    assert_eq!(code, 1, "failures make merge exit 1; stderr: {err}");
    let m: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["hunts"], 2);
    let conf = &m["configurations"][0];
    assert_eq!(
        (conf["model"].as_str(), conf["variant"].as_str()),
        (Some("hpt"), Some("buggy"))
    );
    assert_eq!(conf["seeds"], 6, "the union of both shards: {out}");
    assert_eq!(conf["seed_ranges"], "1..6");
    let fails = m["failures"].as_array().unwrap();
    assert_eq!(fails.len(), failing);
    assert!(fails.iter().all(|f| Path::new(f["run_dir"].as_str().unwrap())
        .join("summary.json")
        .is_file()));
    assert!(m["ops_total"].as_u64().unwrap() > 0);
}

#[test]
fn run_without_a_scenario_hammers_every_fixed_model_in_one_process() {
    let dir = TempDir::new().unwrap();
    let (code, out, err) = outcome(kt(&dir, &words("run --threads 4 --ops 50 --format json")));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let members = v["members"].as_array().unwrap();
    let (_, list, _) = outcome(kt(&dir, &words("list --format json")));
    let fixed = list.matches("\"kind\": \"fixed\"").count();
    assert!(members.len() >= 2, "{out}");
    assert_eq!(
        members.len(),
        fixed,
        "one member per fixed variant in the registry"
    );
    let threads: u64 = members.iter().map(|m| m["threads"].as_u64().unwrap()).sum();
    assert!(
        threads >= 4
            && members
                .iter()
                .all(|m| m["status"] == "clean" && m["ops_total"].as_u64().unwrap() > 0)
    );
    let set = Path::new(v["dir"].as_str().unwrap());
    assert_eq!(
        json(&set.join("set.json"))["members"].as_array().unwrap().len(),
        members.len()
    );
}

#[test]
fn a_scenario_with_model_tables_runs_them_together_and_splits_the_threads() {
    let dir = TempDir::new().unwrap();
    let sc = dir.path().join("pair.toml");
    std::fs::write(
        &sc,
        "threads = 6\nops = 40\n[[model]]\nmodel = \"hpt\"\n[model.params]\norder_small = 8\n\
         [[model]]\nmodel = \"pfncache\"\nthreads = 2\n",
    )
    .unwrap();
    let (code, out, err) = outcome(kt(&dir, &["run", sc.to_str().unwrap(), "--format", "ktap"]));
    assert_eq!(code, 0, "{err}");
    let r = parse_ktap(&out);
    assert_eq!(r.len(), 2);
    assert!(
        r[0].1.starts_with("hpt/fixed") && r[1].1.starts_with("pfncache/fixed"),
        "{out}"
    );
    let set = Path::new(r[0].2.iter().find_map(|d| d.strip_prefix("run dir: ")).unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let threads: Vec<u64> = json(&set.join("set.json"))["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, vec![4, 2]);
}
