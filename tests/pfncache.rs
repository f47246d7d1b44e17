//! The gfn_to_pfn_cache model through the CLI: a report shows the cache and page
//! history, the pinning-era scenarios pin, params are checked, and the mainline hole
//! the model found is pinned down. (Caught, clean-alone and coverage for every
//! variant are `tests/models.rs`'s, from the descriptor.)

mod common;
use common::{first_invariant, kt, outcome, run_dir, run_model, summary};
use kvmtorture::model::VariantKind;
use serde_json::Value;
use std::path::PathBuf;
use tempfile::TempDir;

/// `run --model pfncache <args>`.
fn run(args: &str) -> (i32, Value, PathBuf, TempDir) {
    run_model("pfncache", args)
}

#[test]
fn a_report_names_the_invariant_and_shows_cache_and_page_history() {
    let (code, _, path, _d) = run("--variant double-put --threads 1 --duration 10s --seed 1");
    assert_eq!(code, 1);
    let report = std::fs::read_to_string(path.join("report.txt")).unwrap();
    for needle in ["double-put", "gpc", "pfn", "history (oldest first)", "page pfn"] {
        assert!(report.contains(needle), "report lacks `{needle}`:\n{report}");
    }
    assert!(
        ["I3 at", "M1 at", "M2 at"].iter().any(|id| report.contains(id)),
        "{report}"
    );
}

#[test]
fn the_pinning_era_scenarios_pin() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let desc = kvmtorture::model::find("pfncache").unwrap();
    let public = desc.variants.iter().filter(|v| v.kind != VariantKind::Mutant);
    for v in public.map(|v| v.name) {
        let text = std::fs::read_to_string(dir.join(format!("pfncache-{v}.toml")))
            .unwrap_or_else(|e| panic!("scenarios/pfncache-{v}.toml: {e}"));
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["variant"].as_str(), Some(v));
        let pinned = t["params"].get("pin").and_then(|p| p.as_bool()) == Some(true);
        assert_eq!(
            pinned,
            v == "double-put" || v == "leaked-ref",
            "{v}: pin mode is the pinning-era bugs'"
        );
    }
}

#[test]
fn unknown_and_mistyped_params_are_rejected() {
    let dir = TempDir::new().unwrap();
    for (params, needle) in [
        ("bogus = 1", "bogus"),
        ("pin = 3", "pin"),
        ("caches = 99", "caches"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, format!("model = \"pfncache\"\n[params]\n{params}\n")).unwrap();
        let (code, _, err) = outcome(kt(&dir, &["run", file.to_str().unwrap(), "--duration", "1s"]));
        assert_eq!(code, 2, "{params}: {err}");
        assert!(err.contains(needle), "{params}: {err}");
    }
}

/// Not a harness bug: mainline pfncache.c misses an invalidation of an hva that no
/// memslot covers when the whole event falls inside hva_to_pfn_retry()'s unlocked
/// window (mn_active_invalidate_count is back to 0 and mmu_invalidate_seq only moves
/// for memslot ranges), then installs and keeps a page the host has freed. The default
/// workload keeps the host inside memslot 0; this configuration lets it out. If this
/// test starts failing, the kernel (or the model of it) has closed the hole.
#[test]
fn mainline_misses_an_invalidation_outside_every_memslot() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("hole.toml");
    std::fs::write(
        &file,
        "model = \"pfncache\"\nvariant = \"fixed\"\nthreads = 4\ndelay_prob = 0.03\n\
         [mix]\nmemslot_update = 0\nactivate = 0\nrecreate_vcpu = 0\n\
         [params]\ncaches = 2\nunbacked_invalidations = true\noutside_pages = 1\n",
    )
    .unwrap();
    let mut hits = 0;
    for seed in ["1", "2", "3"] {
        let out = TempDir::new().unwrap();
        let args = ["run", file.to_str().unwrap(), "--duration", "10s", "--seed", seed];
        let (code, _, err) = outcome(kt(&out, &args));
        assert!(code == 0 || code == 1, "exit {code}: {err}");
        if code == 1 {
            assert_eq!(first_invariant(&summary(&run_dir(&out))), "I4");
            hits += 1;
        }
    }
    assert!(hits >= 2, "the hole reproduced on only {hits} of 3 seeds");
}
