//! Human-readable output: the failure report and the one-screen result.

use super::columns::{event_text, table, Row};
use super::protocol::{self, Trace};
use super::{Summary, View};
use crate::engine::recorder::{Entry, Kind, Recorder};
use crate::engine::Outcome;
use crate::sched::det::{DetOutcome, Hang, ThreadStatus};
use std::fmt::Write;

/// Steps of the full interleaving shown at the end of a det failure report.
const REPORT_STEPS: usize = 80;
/// Rows of the protocol view shown in a det failure report and on the terminal.
pub const REPORT_ROWS: usize = 60;

/// One line per thread: its status, last site (with source line) and current op.
pub fn thread_states(d: &DetOutcome) -> Vec<String> {
    d.threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let status = match t.status {
                ThreadStatus::Runnable => "runnable",
                ThreadStatus::Blocked => "blocked (waiting)",
                ThreadStatus::Done => "done",
            };
            let site = t
                .last_site
                .map_or("no step yet".to_string(), |(n, l)| format!("last at {n} ({l})"));
            let op = t.op.map_or(String::new(), |o| format!(", inside {o}"));
            format!("thread {i}: {status}, {site}{op}")
        })
        .collect()
}

/// `report.txt`: what failed, where, the model's state, and every worker's last ops.
pub fn failure_report(s: &Summary, o: &Outcome, view: View) -> String {
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
    if let Some(d) = &o.det {
        if let Some(h) = d.hang {
            let what = match h {
                Hang::Deadlock => "DEADLOCK: every live thread is waiting for another",
                Hang::Livelock => {
                    "LIVELOCK: threads kept stepping but no op completed within the step budget"
                }
            };
            let _ = writeln!(r, "{what} (step {}):", d.steps);
            for l in thread_states(d) {
                let _ = writeln!(r, "  {l}");
            }
            r.push('\n');
        }
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
            "VIOLATION {} of {}: {} at {} ({who})",
            i + 1,
            o.violations_total,
            f.violation.invariant,
            f.step
                .map_or_else(|| format!("{:.6}s", f.at.as_secs_f64()), |s| format!("step {s}"))
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
    if o.det.is_some() {
        r.push('\n');
        r.push_str(&interleaving(o, view, Some(REPORT_ROWS)));
    }
    r
}

/// A det run's interleaving in `view`, with a heading; at most `max_rows` rows (the
/// last ones), or all of them. Empty for a stress run.
pub fn interleaving(o: &Outcome, view: View, max_rows: Option<usize>) -> String {
    let (Some(d), Some(t)) = (&o.det, Trace::of(o)) else {
        return String::new();
    };
    let mut r = String::new();
    match view {
        View::Protocol => {
            let from = t.events_from();
            let rows = protocol::rows(&t, from);
            let skip = max_rows.map_or(0, |m| rows.len().saturating_sub(m));
            let _ = writeln!(
                r,
                "protocol view, {} rows{}, of {} det steps ({} preemptions; `--view full` shows every step{}):",
                rows.len() - skip,
                if skip > 0 { format!(" (the last of {})", rows.len()) } else { String::new() },
                d.steps,
                d.preemptions,
                if d.steps > 500 { ", `kvmtorture shrink` minimises" } else { "" }
            );
            if from > d.tail.first().map_or(0, |s| s.step) {
                let _ = writeln!(r, "(from step {from}: the flight recorder keeps no older events)");
            }
            // Workers with nothing to show (no op of theirs ran) get no column.
            let rows = &rows[skip..];
            let used: Vec<usize> = (0..t.labels.len())
                .filter(|&w| rows.iter().any(|x| x.col == Some(w)))
                .collect();
            let labels: Vec<String> = used.iter().map(|&w| t.labels[w].clone()).collect();
            let rows: Vec<Row> = rows
                .iter()
                .map(|x| Row {
                    col: x.col.and_then(|c| used.iter().position(|&w| w == c)),
                    ..x.clone()
                })
                .collect();
            r.push_str(&table(&labels, &rows));
        }
        View::Full => {
            let n = max_rows.map_or(d.tail.len(), |_| REPORT_STEPS);
            let from = d.tail.len().saturating_sub(n);
            let _ = writeln!(
                r,
                "last {} of {} det steps ({} preemptions; `kvmtorture shrink` minimises):",
                d.tail.len() - from,
                d.steps,
                d.preemptions
            );
            r.push_str(&super::interleave::render(&d.tail[from..], &t.labels));
        }
    }
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
            r.push_str(&entry_line(&e, rec.steps()));
        }
    }
    r
}

fn entry_line(e: &Entry, steps: bool) -> String {
    let t = if steps {
        format!("step {:>9}", e.t_ns)
    } else {
        format!("{:12.6}", e.t_ns as f64 / 1e9)
    };
    match e.kind {
        Kind::Begin => format!("  [{t}] begin  {} (#{})\n", e.what, e.a),
        Kind::End => format!("  [{t}] end    {}\n", e.what),
        Kind::Failed => format!("  [{t}] FAILED {}\n", e.what),
        Kind::Event => format!("  [{t}]     {}\n", event_text(e.what, e.a, e.b)),
        Kind::Args => format!("  [{t}]     ({})\n", event_text(e.what, e.a, e.b)),
    }
}
fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// The terminal's summary of a run (also `kvmtorture report`'s human form): read
/// from the summary alone, so a finished run re-renders the same.
pub fn human_result(s: &Summary) -> String {
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
    for v in s.violations.iter().take(5) {
        let _ = writeln!(
            r,
            "  {} (worker {}, {}): {}",
            v.invariant, v.thread, v.op, v.message
        );
    }
    if let Some(f) = &s.fault {
        let _ = writeln!(r, "  harness fault: {f}");
    }
    if !s.stalled_threads.is_empty() {
        let _ = writeln!(r, "  stalled workers: {:?}", s.stalled_threads);
    }
    if let Some(d) = &s.det {
        let _ = writeln!(
            r,
            "  det {}: {} steps, {} switches, {} preemptions, schedule {} trace {}",
            d.strategy, d.steps, d.switches, d.preemptions, d.schedule_hash, d.trace_hash
        );
        for l in &d.threads_at_hang {
            let _ = writeln!(r, "  {l}");
        }
    }
    let n = s.coverage.len();
    let _ = writeln!(
        r,
        "  coverage: {}/{n} windows entered",
        n - s.windows_never_entered.len()
    );
    if !s.windows_never_entered.is_empty() && s.status == "clean" {
        let _ = writeln!(
            r,
            "  warning: never entered: {} (a clean run proves nothing about them)",
            s.windows_never_entered.join(", ")
        );
    }
    // The rarest windows bound what a clean run proves: by their share of the ops that
    // can enter them (a window under 1% is left to chance by the mix), with the count.
    let mut rare: Vec<(&String, f64)> = s.window_share_pct.iter().map(|(k, &p)| (k, p)).collect();
    rare.sort_by(|a, b| a.1.total_cmp(&b.1));
    if !rare.is_empty() {
        let rare: Vec<String> = rare
            .iter()
            .take(3)
            .map(|(k, p)| format!("{k} {p:.2}% ({})", s.coverage.get(*k).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(
            r,
            "  rarest windows (share of the ops that can enter them): {}",
            rare.join(", ")
        );
    }
    if !s.ops_by_kind.is_empty() {
        let ops: Vec<String> = s.ops_by_kind.iter().map(|(k, c)| format!("{k} {c}")).collect();
        let _ = writeln!(r, "  ops: {}", ops.join(", "));
    }
    if !s.run_dir.is_empty() {
        let _ = writeln!(r, "  results: {}", s.run_dir);
    }
    if s.status != "clean" {
        let _ = writeln!(r, "  rerun: {}", s.replay);
    }
    r
}

/// A one-test KTAP document for a run (kselftest's format), with the run directory.
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
    if !s.run_dir.is_empty() {
        let _ = writeln!(r, "# run_dir: {}", s.run_dir);
    }
    let _ = writeln!(
        r,
        "{ok} 1 {}-{} seed {} # {}",
        s.model, s.variant, s.seed, s.status
    );
    r
}
