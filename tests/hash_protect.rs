//! The hash-protect model through the CLI: the `--param hypervisor` cells, the n/a
//! cells refused, and det mode finding the phyp race.

mod common;
use common::{first_invariant, kt, outcome, run_dir, run_model, summary, words};
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

/// det seed 1, 8 threads: a CPU goes offline between `atomic_set(&cpu_counter,
/// num_online_cpus())` and stop_machine, so the first secondary's decrement finds 7
/// with 6 online (H5) and the participants are let go. The changer must not check its
/// half-changed range then: the kernel's caller would still be waiting in
/// `__stop_cpus()` for every `multi_cpu_stop()`. (It used to report H2 first.) The
/// report names every event field.
#[test]
fn an_abandoned_stop_machine_does_not_return_to_the_changer() {
    let (code, s, path, _dir) = run_model(
        "hash-protect",
        "--variant no-cpus-read-lock --mode det --seed 1 --threads 8 --ops 200",
    );
    assert_eq!(code, 1, "{s}");
    assert_eq!(first_invariant(&s), "H5", "{s}");
    let all = s["violations"].as_array().unwrap();
    assert!(all.iter().all(|v| v["invariant"] != "H2"), "{s}");

    let report = std::fs::read_to_string(path.join("report.txt")).unwrap();
    assert!(report.contains("stop_machine.abandoned caller_cpu=1"), "{report}");
    assert!(report.contains("stop.state RUN: threads="), "{report}");
    assert!(!report.contains(" a=0x"), "unnamed event fields in {report}");
}

/// A hang report names who holds every lock of the protocol, the CPUs' claims too: the
/// engine's STALL section has no per-worker wait sites, so the model's dump must say
/// what each stuck worker waits for. det seed 1, 8 threads, under kvm: the secondaries
/// never decrement, the master never leaves its call-in wait, and the changer (worker
/// 0) holds chmem_lock, cpus_read_lock, stop_cpus_mutex and the claims of the CPUs it
/// drives, while hotplug (worker 2) waits for the write lock.
#[test]
fn a_hang_report_names_the_lock_holders() {
    let (code, dir, err) = run(
        "run --model hash-protect --variant m-secondary-skips-dec --mode det --seed 1 --threads 8 --ops 200 --param hypervisor=kvm",
    );
    assert_eq!(code, 3, "{err}");
    let report = std::fs::read_to_string(run_dir(&dir).join("report.txt")).unwrap();
    assert!(
        report.contains(
            "chmem_lock held by worker 0, cpu_hotplug_lock held for read by worker 0, \
             stop_cpus_mutex held by worker 0"
        ),
        "{report}"
    );
    assert!(report.contains("cpu4: online real"), "{report}");
    assert!(report.contains("claim held by worker 0"), "{report}");
    assert!(
        report.contains("thread 2: blocked (waiting), last at rwlock.write.wait"),
        "{report}"
    );
}

/// The STALL of `fixed-87e65ad` under kvm (stress, 8 threads, on a machine with a load
/// average of ~160) is not a lock cycle of the protocol: det mode, which sees every
/// thread's wait site and reports any state where all of them wait, finds none with
/// the same mix, threads and hypervisor (2000 seeds were tried by hand, here a
/// sample), and neither does `fixed`.
#[test]
fn fixed_variants_under_kvm_never_hang_in_det() {
    for variant in ["fixed-87e65ad", "fixed"] {
        let (code, _, err) = run(&format!(
            "hunt --model hash-protect --variant {variant} --param hypervisor=kvm --mode det --seeds 1..40 --threads 8 --ops 200 --stop-on-first"
        ));
        assert_eq!(code, 0, "{variant}: {err}");
    }
}
