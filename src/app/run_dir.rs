//! One run directory's whole life: created with the resolved settings and a `running`
//! summary before the workers start, checkpointed while they run, finished with the
//! result. Every file is written atomically, and a second Ctrl-C (which exits at once)
//! still leaves a complete summary marked `interrupted` with the last checkpoint.

use super::exec::{self, Executed, Plan};
use crate::engine::Observer;
use crate::error::Error;
use crate::report::{self, Summary};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a running summary is rewritten with the counters so far.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// The summary on disk and whether the final one has been written.
struct Written {
    summary: Summary,
    finished: bool,
}

pub struct RunDir {
    path: PathBuf,
    state: Arc<Mutex<Written>>,
    /// Whether the forced-exit hook is this directory's.
    guarded: bool,
}

impl RunDir {
    /// Creates `<results>/<model>-<variant>-<UTC>-s<seed>` with `scenario.toml`,
    /// `config.json` (and the schedule's settings) and a `running` summary.
    pub fn create(results: &Path, plan: &Plan) -> Result<RunDir, Error> {
        let sc = &plan.sc;
        let path = report::create_run_dir(results, sc.model.name, sc.variant.name, sc.seed)?;
        exec::save_plan(&path, plan)?;
        let mut summary = exec::initial_summary(plan);
        summary.replay = exec::rerun_command(plan, &path);
        summary.run_dir = path.display().to_string();
        report::write(&path, "summary.json", &summary.to_json())?;
        let state = Arc::new(Mutex::new(Written {
            summary,
            finished: false,
        }));
        Ok(RunDir {
            path,
            state,
            guarded: false,
        })
    }

    /// Makes a second Ctrl-C (which exits at once) first mark this directory's
    /// summary `interrupted`, with the last checkpoint's counters.
    pub fn guard_forced_exit(&mut self) {
        let hook = Arc::clone(&self.state);
        let dir = self.path.clone();
        crate::interrupt::on_forced_exit(Box::new(move || {
            let w = hook.lock().unwrap_or_else(|e| e.into_inner());
            if !w.finished {
                let mut s = w.summary.clone();
                s.status = "interrupted".into();
                s.exit_code = Some(crate::error::exit::INTERRUPTED);
                let _ = report::write(&dir, "summary.json", &s.to_json());
            }
        }));
        self.guarded = true;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the running summary with the counters so far.
    fn checkpoint(&self, elapsed: Duration, ops: u64, violations: usize) {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.finished {
            return;
        }
        w.summary.duration_s = elapsed.as_secs_f64();
        w.summary.ops_total = ops;
        w.summary.ops_per_s = ops as f64 / elapsed.as_secs_f64().max(1e-9);
        w.summary.violations_total = violations;
        let _ = report::write(&self.path, "summary.json", &w.summary.to_json());
    }

    /// Wraps a progress display so that its ticks also checkpoint this directory.
    pub fn observer<'a>(&'a self, inner: &'a mut dyn Observer) -> impl Observer + 'a {
        Checkpointing {
            dir: self,
            inner,
            last: Instant::now(),
        }
    }

    /// Writes the result: summary, report, schedule.
    pub fn finish(&self, plan: &Plan, ex: &mut Executed) -> Result<(), Error> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        ex.summary.run_dir = self.path.display().to_string();
        exec::save_result(&self.path, plan, ex)?;
        w.summary = ex.summary.clone();
        w.finished = true;
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.guarded {
            crate::interrupt::clear_forced_exit();
        }
    }
}

struct Checkpointing<'a> {
    dir: &'a RunDir,
    inner: &'a mut dyn Observer,
    last: Instant,
}

impl Observer for Checkpointing<'_> {
    fn tick(&mut self, elapsed: Duration, ops: u64, violations: usize) {
        self.inner.tick(elapsed, ops, violations);
        if self.last.elapsed() >= CHECKPOINT_EVERY {
            self.last = Instant::now();
            self.dir.checkpoint(elapsed, ops, violations);
        }
    }
}
