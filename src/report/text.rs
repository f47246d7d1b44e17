//! Human-readable output: the failure report and the one-screen result.

use super::Summary;
use crate::engine::recorder::{Entry, Kind, Recorder};
use crate::engine::{Outcome, Status};
use std::fmt::Write;

/// `report.txt`: what failed, where, the model's state, and every worker's last ops.
pub fn failure_report(s: &Summary, o: &Outcome) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "kvmtorture {} — {} / {} (scenario {})",
        s.version, s.model, s.variant, s.scenario
    );
    let _ = writeln!(
        r,
        "status: {}   seed: {}   threads: {}   mode: {}",
        s.status, s.seed, s.threads, s.mode
    );
    let _ = writeln!(r, "replay: {}\n", s.replay);
    if let Some(f) = &o.fault {
        let _ = writeln!(r, "HARNESS FAULT: {f}\n");
    }
    if !o.stalled.is_empty() {
        let _ = writeln!(
            r,
            "STALL: worker(s) {:?} made no progress for the stall timeout; what every worker was doing:\n",
            o.stalled
        );
    }
    for (i, f) in o.found.iter().enumerate() {
        let who = f.worker.map_or_else(
            || format!("{} check", f.op),
            |w| format!("worker {w}, op {}", f.op),
        );
        let _ = writeln!(
            r,
            "VIOLATION {} of {}: {} at {:.6}s ({who})",
            i + 1,
            o.violations_total,
            f.violation.invariant,
            f.at.as_secs_f64()
        );
        let _ = writeln!(r, "  {}", f.violation.message);
        if !f.violation.state.is_empty() {
            let _ = writeln!(r, "\nstate at the violation:\n{}", indent(&f.violation.state));
        }
        r.push('\n');
    }
    let _ = writeln!(r, "model state at the end of the run:\n{}", indent(&o.model_dump));
    let _ = writeln!(
        r,
        "last operations of every worker (oldest first; events are indented):"
    );
    r.push_str(&flight_log(&o.recorder, &racing(o)));
    r
}

/// Workers named by a violation or a stall are listed first.
fn racing(o: &Outcome) -> Vec<usize> {
    let mut v: Vec<usize> = o
        .found
        .iter()
        .filter_map(|f| f.worker)
        .chain(o.stalled.iter().copied())
        .collect();
    v.dedup();
    v
}

fn flight_log(rec: &Recorder, first: &[usize]) -> String {
    let mut order: Vec<usize> = first.to_vec();
    order.extend((0..rec.workers()).filter(|w| !first.contains(w)));
    let mut r = String::new();
    for w in order {
        let (current, entries) = rec.snapshot(w);
        let _ = writeln!(
            r,
            "\n-- worker {w}{}",
            current.map_or(String::new(), |op| format!(" (inside {op})"))
        );
        for e in entries {
            r.push_str(&entry_line(&e));
        }
    }
    r
}

fn entry_line(e: &Entry) -> String {
    let t = e.t_ns as f64 / 1e9;
    match e.kind {
        Kind::Begin => format!("  [{t:12.6}] begin  {} (#{})\n", e.what, e.a),
        Kind::End => format!("  [{t:12.6}] end    {}\n", e.what),
        Kind::Failed => format!("  [{t:12.6}] FAILED {}\n", e.what),
        Kind::Event => format!("  [{t:12.6}]     {} a={:#x} b={:#x}\n", e.what, e.a, e.b),
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// The result block printed at the end of a human-format run.
pub fn human_result(s: &Summary, o: &Outcome, run_dir: &str) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "{}: {} / {} seed {} — {} ops in {:.2}s ({:.0} ops/s), {} thread(s)",
        s.status.to_uppercase(),
        s.model,
        s.variant,
        s.seed,
        s.ops_total,
        s.duration_s,
        s.ops_per_s,
        s.threads
    );
    for f in o.found.iter().take(5) {
        let _ = writeln!(r, "  {}: {}", f.violation.invariant, f.violation.message);
    }
    if let Some(f) = &o.fault {
        let _ = writeln!(r, "  harness fault: {f}");
    }
    if !o.stalled.is_empty() {
        let _ = writeln!(r, "  stalled workers: {:?}", o.stalled);
    }
    let cov: Vec<String> = o.coverage.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(r, "  coverage: {}", cov.join(" "));
    let _ = writeln!(r, "  results: {run_dir}");
    if o.status != Status::Clean {
        let _ = writeln!(r, "  replay: {}", s.replay);
    }
    r
}

/// A KTAP v1 document with one test (the run), for kernel CI tooling.
pub fn ktap_result(s: &Summary) -> String {
    let ok = if s.status == "clean" { "ok" } else { "not ok" };
    let mut r = String::from("KTAP version 1\n1..1\n");
    for v in &s.violations {
        let _ = writeln!(
            r,
            "# {} thread {} op {}: {}",
            v.invariant, v.thread, v.op, v.message
        );
    }
    let _ = writeln!(
        r,
        "{ok} 1 {}-{} seed {} # {}",
        s.model, s.variant, s.seed, s.status
    );
    r
}
