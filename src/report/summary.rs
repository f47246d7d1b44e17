//! `summary.json`: the machine-readable record of a run.

use crate::engine::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViolationRecord {
    pub invariant: String,
    /// Worker index, or "quiescent"/"teardown" for whole-model checks.
    pub thread: String,
    pub op: String,
    pub message: String,
    pub at_s: f64,
    /// Det mode: the scheduling step at which it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_step: Option<u64>,
}

/// Written with `status: "running"` before the workers start, so a crash of the host
/// still leaves the seed and a replay command; rewritten when the run ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub version: String,
    pub scenario: String,
    pub model: String,
    pub variant: String,
    pub mode: String,
    pub seed: u64,
    pub threads: usize,
    pub duration_limit_s: Option<f64>,
    pub ops_limit: Option<u64>,
    pub delay_prob: f64,
    /// The stress injection policy (absent in summaries written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<crate::model::InjectionPolicy>,
    pub status: String,
    pub duration_s: f64,
    pub ops_total: u64,
    pub ops_per_s: f64,
    pub ops_by_kind: BTreeMap<String, u64>,
    pub coverage: BTreeMap<String, u64>,
    /// Race windows never entered (a clean run that never opened a window proves
    /// nothing about it).
    #[serde(default)]
    pub windows_never_entered: Vec<String>,
    /// Each window's entries per 100 runs of the ops that can enter it (the
    /// descriptor's `per`), for the windows whose ops ran.
    #[serde(default)]
    pub window_share_pct: BTreeMap<String, f64>,
    pub violations_total: usize,
    pub violations: Vec<ViolationRecord>,
    pub stalled_threads: Vec<usize>,
    pub fault: Option<String>,
    pub exit_code: Option<i32>,
    /// The command that reruns (`again`) or replays (det) this run.
    pub replay: String,
    /// The run's directory, when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_dir: String,
    /// Det mode only (absent from stress summaries).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub det: Option<DetSummary>,
}

/// The det-mode fields of `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetSummary {
    /// `random(p)` or `pct(d=.., k=..)` or `replay`.
    pub strategy: String,
    /// Hash of the decision list (the schedule), `0x` + 16 hex digits.
    pub schedule_hash: String,
    /// Hash of every step (number, thread, site).
    pub trace_hash: String,
    pub steps: u64,
    pub switches: u64,
    /// Switches away from a thread that could have gone on.
    pub preemptions: u64,
    /// Every thread's state when the scheduler stopped a hung run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threads_at_hang: Vec<String>,
}

/// A hash as written in summaries and schedules.
pub fn hex(h: u64) -> String {
    format!("{h:#018x}")
}

impl Summary {
    /// Fills in the results of a finished run.
    pub fn complete(&mut self, o: &Outcome, exit_code: i32) {
        self.status = o.status.name().into();
        self.duration_s = o.elapsed.as_secs_f64();
        self.ops_total = o.ops_total;
        self.ops_per_s = o.ops_total as f64 / self.duration_s.max(1e-9);
        self.ops_by_kind = o.ops_by_kind.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.coverage = o.coverage.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.windows_never_entered = o
            .coverage
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(k, _)| k.to_string())
            .collect();
        self.window_share_pct = o
            .window_share_pct
            .iter()
            .map(|(k, p)| (k.to_string(), *p))
            .collect();
        self.violations_total = o.violations_total;
        self.violations = o
            .found
            .iter()
            .map(|f| ViolationRecord {
                invariant: f.violation.invariant.into(),
                thread: f.worker.map_or_else(|| f.op.to_string(), |w| w.to_string()),
                op: f.op.into(),
                message: f.violation.message.clone(),
                at_s: f.at.as_secs_f64(),
                at_step: f.step,
            })
            .collect();
        self.stalled_threads = o.stalled.clone();
        self.fault = o.fault.clone();
        self.exit_code = Some(exit_code);
        if let (Some(d), Some(det)) = (&o.det, self.det.as_mut()) {
            det.schedule_hash = hex(d.schedule_hash);
            det.trace_hash = hex(d.trace_hash);
            det.steps = d.steps;
            det.switches = d.switches;
            det.preemptions = d.preemptions;
            if d.hang.is_some() {
                det.threads_at_hang = crate::report::thread_states(d);
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("summary serialises") + "\n"
    }
}
