//! `kvmtorture bench` at its tiny (test) size: every public model appears with every
//! measurement, and the JSON it prints is the JSON it saves.

mod common;
use common::{kt, outcome, run_dir};
use serde_json::Value;
use tempfile::TempDir;

fn rows<'a>(m: &'a Value, key: &str) -> &'a Vec<Value> {
    m[key].as_array().unwrap_or_else(|| panic!("{key} missing: {m}"))
}

#[test]
fn tiny_bench_reports_every_model_and_saves_its_json() {
    let dir = TempDir::new().unwrap();
    let results = dir.path().to_str().unwrap();
    let args = [
        "bench",
        "--size",
        "tiny",
        "--format",
        "json",
        "--results-dir",
        results,
    ];
    let (code, out, err) = outcome(kt(&dir, &args));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let saved = std::fs::read_to_string(run_dir(&dir).join("bench.json")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&saved).unwrap(), v);
    assert_eq!(v["old_injection"]["policy"], "uniform", "{v}");
    assert!(v["old_injection"]["delay_prob"].is_number(), "{v}");
    let list: Value = serde_json::from_str(&outcome(kt(&dir, &["list", "--format", "json"])).1).unwrap();
    let models: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    for m in list["models"].as_array().unwrap() {
        assert!(
            models.contains(&m["name"].as_str().unwrap()),
            "{} not benched",
            m["name"]
        );
    }
    for m in v["models"].as_array().unwrap() {
        for r in rows(m, "throughput") {
            assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}");
        }
        let threads: Vec<u64> = rows(m, "throughput")
            .iter()
            .map(|r| r["threads"].as_u64().unwrap())
            .collect();
        assert!(threads.contains(&2) && threads.contains(&16), "{m}");
        // Each model is benched with its own default injection, the one `list` names.
        let listed = list["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == m["model"])
            .unwrap();
        assert_eq!(m["injection"]["policy"], listed["injection"], "{m}");
        for r in rows(m, "coverage") {
            for k in ["rarest_window", "old_per_s", "new_per_s", "new_rarest_window"] {
                assert!(!r[k].is_null(), "{k}: {r}");
            }
            // new / old, or null when the old injection never entered the window.
            assert_eq!(
                r["ratio"].is_number(),
                r["old_per_s"].as_f64().unwrap() > 0.0,
                "{r}"
            );
            assert!(r["never_entered"].is_array(), "{r}");
        }
        for r in rows(m, "det") {
            assert!(r["points_per_s"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["switches_per_s_switch_prob_1"].as_f64().unwrap() > 0.0, "{r}");
        }
        for r in rows(m, "detection") {
            for mode in ["stress_old", "stress_new", "det"] {
                assert!(
                    r[mode]["median_s"].is_number() && r[mode]["max_s"].is_number(),
                    "{r}"
                );
            }
        }
        for r in rows(m, "threads_curve") {
            assert!(
                r["finished"] == true
                    && r["peak_rss_mib"].is_number()
                    && r["every_window_entered"].is_boolean(),
                "{r}"
            );
        }
    }
}

/// `--candidate` replaces every model's new injection, and a malformed one is a usage
/// error (exit 2) that names what is wrong and leaves no bench directory.
#[test]
fn bench_candidate_is_used_and_checked() {
    // A tiny bench of `extra` into a fresh results directory: (exit code, stdout,
    // stderr, the directory).
    let tiny = |extra: &[&str]| {
        let dir = TempDir::new().unwrap();
        let results = dir.path().to_str().unwrap().to_string();
        let mut args = vec!["bench", "--size", "tiny", "--results-dir", &results];
        args.extend_from_slice(extra);
        let (code, out, err) = outcome(kt(&dir, &args));
        (code, out, err, dir)
    };
    let (code, out, err, _dir) = tiny(&[
        "--format",
        "json",
        "--model",
        "vpa",
        "--candidate",
        "0.002,50,uniform",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{v}");
    assert_eq!(models[0]["injection"]["policy"], "uniform");
    assert_eq!(models[0]["injection"]["delay_prob"], 0.002);
    for (bad, says) in [
        ("0.01,20", "expected PROB,BOOST,POLICY"),
        ("2,20,uniform", "probability '2'"),
        ("0.01,0.5,uniform", "window boost '0.5'"),
        ("0.01,20,sometimes", "policy 'sometimes'"),
    ] {
        let (code, _, err, empty) = tiny(&["--candidate", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
        assert_eq!(
            std::fs::read_dir(empty.path()).unwrap().count(),
            0,
            "{bad} left a directory"
        );
    }
    let (code, _, err, _) = tiny(&["--model", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown model 'nosuch'"), "{err}");
}
