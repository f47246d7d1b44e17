//! The hash-protect model through the CLI: the `--param hypervisor` cells, the n/a
//! cells refused, and det mode finding the phyp race.

mod common;
use common::{kt, outcome, run_dir, summary, words};
use tempfile::TempDir;

fn run(args: &str) -> (i32, TempDir, String) {
    let dir = TempDir::new().unwrap();
    let (code, _, err) = outcome(kt(&dir, &words(args)));
    (code, dir, err)
}

#[test]
fn buggy_is_caught_under_phyp_and_absorbed_under_kvm() {
    let (code, dir, err) = run(
        "run --model hash-protect --variant buggy --threads 6 --duration 20s --seed 2 --param hypervisor=phyp",
    );
    assert_eq!(code, 1, "{err}");
    let s = summary(&run_dir(&dir));
    assert_eq!(s["violations"][0]["invariant"], "H1");

    let (code, dir, err) = run(
        "run --model hash-protect --variant buggy --mode det --threads 6 --ops 200 --seed 2 --param hypervisor=kvm",
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&run_dir(&dir));
    assert!(s["coverage"]["kvm_absorbed"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["coverage"].get("master_spun").is_none(),
        "no stop_machine in buggy: {s}"
    );
}

#[test]
fn bare_metal_refuses_lpar_only_variants() {
    let (code, _, err) = run(
        "run --model hash-protect --variant early-dec --threads 4 --duration 1s --param hypervisor=bare-metal",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bare metal"), "{err}");
}

#[test]
fn det_finds_the_phyp_race_and_fixed_stays_clean() {
    let (code, _, err) =
        run("hunt --model hash-protect --variant buggy --mode det --seeds 1..200 --stop-on-first");
    assert_eq!(code, 1, "{err}");
    let (code, dir, err) =
        run("run --model hash-protect --variant fixed --mode det --seed 5 --threads 5 --ops 150");
    assert_eq!(code, 0, "{err}");
    let s = summary(&run_dir(&dir));
    assert!(
        s["coverage"]["secondaries_real_during_update"].as_u64().unwrap() > 0,
        "{s}"
    );
}

#[test]
fn a_secondary_that_never_decrements_is_a_stall() {
    let (code, _, err) = run(
        "run --model hash-protect --variant m-secondary-skips-dec --threads 4 --duration 10s --stall-timeout 2s",
    );
    assert_eq!(code, 3, "{err}");
}
