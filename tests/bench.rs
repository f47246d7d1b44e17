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
    for inj in ["default", "candidate"] {
        assert!(v["injection"][inj]["delay_prob"].is_number(), "{v}");
    }
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
        for r in rows(m, "coverage") {
            for k in ["rarest_window", "default_per_s", "candidate_per_s"] {
                assert!(!r[k].is_null(), "{k}: {r}");
            }
        }
        for r in rows(m, "det") {
            assert!(r["points_per_s"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["switches_per_s_switch_prob_1"].as_f64().unwrap() > 0.0, "{r}");
        }
        for r in rows(m, "detection") {
            for mode in ["stress_default", "stress_candidate", "det"] {
                assert!(
                    r[mode]["median_s"].is_number() && r[mode]["max_s"].is_number(),
                    "{r}"
                );
            }
        }
        for r in rows(m, "threads_curve") {
            assert!(
                r["peak_rss_mib"].is_number() && r["every_window_entered"].is_boolean(),
                "{r}"
            );
        }
    }
}
