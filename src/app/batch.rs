//! `kvmtorture batch`: scenarios one after the other under one batch directory.
//!
//! A list file (`scenarios/smoke.list`) holds one entry per line: a scenario name or
//! path (or `all-fixed`), optionally `N*` in front to run it N times with successive
//! seeds, and any of `run`'s scenario flags after it (`hpt-fixed --threads 32`,
//! `hpt-fixed --mode det --ops 100`). `#` starts a comment.
//!
//! The total duration is split evenly across the stress runs that have no budget of
//! their own. Every run gets a run directory (or a set directory, for several models)
//! under the batch directory, and `batch.json` records each run's seed, status, ops,
//! coverage, first invariant and directory. It is rewritten atomically (temporary file
//! and rename) before and after every run, so Ctrl-C, a second Ctrl-C or `kill` always
//! leave a complete file, and `--resume` re-runs what had not finished.

use super::ktap;
use super::set::{self, Finished};
use crate::cli::{BatchArgs, BatchOpts, Format, ModeArg, ScenarioArgs};
use crate::engine::Observer;
use crate::error::{exit, usage, Error};
use crate::report::{self, progress};
use crate::scenario::{self, Overrides};
use crate::scenario_set::{self, ScenarioSet};
use crate::{duration, interrupt};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Version of the `batch.json` format: bump when its meaning changes.
pub const BATCH_FORMAT: u32 = 1;
/// Most repetitions one `N*` may ask for.
const MAX_REPEAT: usize = 1000;

/// The flags a list line may carry after its scenario.
#[derive(Debug, Parser)]
#[command(no_binary_name = true, name = "list entry")]
pub struct LineArgs {
    /// The scenario and any setting flag (`--seed` fixes this entry's seed; otherwise
    /// each run gets its own from the base seed).
    #[command(flatten)]
    pub sc: ScenarioArgs,
}

impl LineArgs {
    pub fn parse(entry: &str) -> Result<LineArgs, Error> {
        LineArgs::try_parse_from(entry.split_whitespace())
            .map_err(|e| usage(format!("list entry `{entry}`: {}", e.to_string().trim())))
    }

    fn det(&self) -> bool {
        self.sc.settings.mode == Some(ModeArg::Det)
    }

    /// Whether the run takes a share of the batch's time.
    fn takes_share(&self) -> bool {
        !self.det() && self.sc.settings.duration.is_none() && self.sc.settings.ops.is_none()
    }
}

/// `batch.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchFile {
    pub kvmtorture_version: String,
    pub batch_format: u32,
    /// `batch` or `soak`.
    pub kind: String,
    /// The entries, one run each per round (`N*` expanded).
    pub entries: Vec<String>,
    pub seed: u64,
    /// Batch: the total budget. Soak: the deadline.
    pub duration_s: f64,
    /// Soak: the budget of one round.
    pub round_duration_s: Option<f64>,
    pub stop_on_failure: bool,
    /// `running`, `done`, `interrupted` or `stopped` (at a failure).
    pub state: String,
    /// Wall time spent so far, over every resume.
    pub elapsed_s: f64,
    pub rounds: u32,
    pub exit_code: Option<i32>,
    pub runs: Vec<RunRecord>,
}

/// One run of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub round: u32,
    pub index: usize,
    pub entry: String,
    pub scenario: String,
    pub seed: u64,
    /// The duration given to the run (`None`: its own budget).
    pub duration_limit_s: Option<f64>,
    /// `pending`, `running`, or the run's status (`clean`, `violation`, ...).
    pub status: String,
    pub exit_code: Option<i32>,
    pub duration_s: f64,
    pub ops: u64,
    pub windows_entered: usize,
    pub windows: usize,
    pub invariant: Option<String>,
    pub run_dir: Option<String>,
    pub models: Vec<ModelRecord>,
}

/// One model of a run (one for a plain scenario, several for a set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    pub model: String,
    pub variant: String,
    pub mode: String,
    pub threads: usize,
    pub status: String,
    pub ops: u64,
    pub coverage: BTreeMap<String, u64>,
    pub invariant: Option<String>,
    pub run_dir: String,
}

impl RunRecord {
    pub fn finished(&self) -> bool {
        !matches!(self.status.as_str(), "pending" | "running" | "interrupted")
    }

    pub fn failed(&self) -> bool {
        self.finished() && self.status != "clean"
    }

    fn fill(&mut self, f: &Finished) {
        self.status = set::status_of_code(f.code).into();
        self.exit_code = Some(f.code);
        self.ops = f.ops_total();
        self.invariant = f.invariant();
        self.duration_s = f.summaries().map(|s| s.duration_s).fold(0.0, f64::max);
        self.models = f
            .members
            .iter()
            .map(|m| {
                let s = &m.ex.summary;
                ModelRecord {
                    model: s.model.clone(),
                    variant: s.variant.clone(),
                    mode: s.mode.clone(),
                    threads: s.threads,
                    status: s.status.clone(),
                    ops: s.ops_total,
                    coverage: s.coverage.clone(),
                    invariant: s.violations.first().map(|v| v.invariant.clone()),
                    run_dir: m.dir.display().to_string(),
                }
            })
            .collect();
        self.windows = self.models.iter().map(|m| m.coverage.len()).sum();
        self.windows_entered = self
            .models
            .iter()
            .map(|m| m.coverage.values().filter(|n| **n > 0).count())
            .sum();
    }
}

/// Reads list files and scenario names into entries (`N*` expanded).
pub fn entries(inputs: &[String]) -> Result<Vec<String>, Error> {
    let mut v = Vec::new();
    for input in inputs {
        match list_file(input) {
            Some(p) => {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| usage(format!("cannot read list {}: {e}", p.display())))?;
                v.extend(parse_list(&text, &p.display().to_string())?);
            }
            None => v.extend(parse_list(input, "the command line")?),
        }
    }
    if v.is_empty() {
        return Err(usage("nothing to run: give a list file or scenario names"));
    }
    Ok(v)
}

/// `smoke`, `smoke.list` or a path to a list file, if that is what `input` names.
fn list_file(input: &str) -> Option<PathBuf> {
    let p = PathBuf::from(input);
    if p.is_file() && p.extension().is_some_and(|e| e == "list") {
        return Some(p);
    }
    let dir = scenario::scenarios_dir();
    [dir.join(input), dir.join(format!("{input}.list"))]
        .into_iter()
        .find(|p| p.is_file() && p.extension().is_some_and(|e| e == "list"))
}

/// The entries of a list's text: comments and blank lines skipped, `N*` expanded.
pub fn parse_list(text: &str, origin: &str) -> Result<Vec<String>, Error> {
    let mut v = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (n, rest) = match line.split_once('*') {
            Some((n, rest)) if !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()) => {
                let n: usize = n
                    .trim()
                    .parse()
                    .map_err(|_| usage(format!("{origin} line {}: bad count", no + 1)))?;
                (n, rest.trim())
            }
            _ => (1, line),
        };
        if !(1..=MAX_REPEAT).contains(&n) || rest.is_empty() {
            return Err(usage(format!(
                "{origin} line {}: expected `[N*]SCENARIO [FLAGS]` with 1 <= N <= {MAX_REPEAT}, got `{line}`",
                no + 1
            )));
        }
        let entry = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        v.extend(std::iter::repeat(entry).take(n));
    }
    Ok(v)
}

/// Loads an entry's scenario set with the batch's seed and duration applied.
fn load_entry(line: &LineArgs, seed: u64, duration: Option<Duration>) -> Result<ScenarioSet, Error> {
    let mut o: Overrides = line.sc.settings.clone();
    o.seed = Some(line.sc.settings.seed.unwrap_or(seed));
    if line.takes_share() {
        o.duration = duration;
    }
    scenario_set::load(line.sc.scenario.as_deref(), &o)
}

/// Checks every entry before anything runs: a typo on the last line is exit 2 now,
/// not after an hour.
pub fn check_entries(entries: &[String]) -> Result<(), Error> {
    for e in entries {
        let line = LineArgs::parse(e)?;
        load_entry(&line, 1, Some(Duration::from_secs(1)))
            .map_err(|err| usage(format!("list entry `{e}`: {err}")))?;
    }
    Ok(())
}

/// The runs of round `round`: seeds from the base seed, `budget` split evenly across
/// the runs that take a share.
pub fn plan_round(
    entries: &[String],
    seed: u64,
    round: u32,
    budget: Duration,
) -> Result<Vec<RunRecord>, Error> {
    let lines = entries
        .iter()
        .map(|e| LineArgs::parse(e))
        .collect::<Result<Vec<_>, Error>>()?;
    let sharing = lines.iter().filter(|l| l.takes_share()).count().max(1);
    let share = budget / sharing as u32;
    let n = entries.len() as u64;
    Ok(entries
        .iter()
        .zip(&lines)
        .enumerate()
        .map(|(i, (e, l))| RunRecord {
            round,
            index: i,
            entry: e.clone(),
            scenario: l
                .sc
                .scenario
                .clone()
                .unwrap_or_else(|| scenario_set::ALL_FIXED.into()),
            seed: l
                .sc
                .settings
                .seed
                .unwrap_or_else(|| seed.wrapping_add(u64::from(round) * n + i as u64)),
            duration_limit_s: l.takes_share().then_some(share.as_secs_f64()),
            status: "pending".into(),
            exit_code: None,
            duration_s: 0.0,
            ops: 0,
            windows_entered: 0,
            windows: 0,
            invariant: None,
            run_dir: None,
            models: Vec::new(),
        })
        .collect())
}

/// A batch or soak in progress: its directory, its file, and the clock.
pub struct Driver {
    pub dir: PathBuf,
    pub file: BatchFile,
    started: Instant,
    elapsed_before: f64,
    quiet: bool,
}

impl Driver {
    /// A new batch directory `<results>/<kind>-<stamp>-<label>` with its file.
    pub fn create(results: &Path, label: &str, file: BatchFile, quiet: bool) -> Result<Driver, Error> {
        let dir = results.join(format!("{}-{}-{label}", file.kind, report::utc_stamp()));
        let mut unique = dir.clone();
        for n in 1.. {
            if !unique.exists() {
                break;
            }
            unique = PathBuf::from(format!("{}.{n}", dir.display()));
        }
        std::fs::create_dir_all(&unique)
            .map_err(|e| Error::Fault(format!("cannot create {}: {e}", unique.display())))?;
        let d = Driver {
            dir: unique,
            file,
            started: Instant::now(),
            elapsed_before: 0.0,
            quiet,
        };
        d.save()?;
        Ok(d)
    }

    /// Reopens `dir` to continue it: runs that had not finished go back to pending.
    pub fn resume(dir: &Path, kind: &str, quiet: bool) -> Result<Driver, Error> {
        let mut file: BatchFile = super::exec::read_json(dir, "batch.json")?;
        if file.kind != kind {
            return Err(usage(format!(
                "{} holds a {}, not a {kind}: resume it with `kvmtorture {} --resume`",
                dir.display(),
                file.kind,
                file.kind
            )));
        }
        for r in file.runs.iter_mut().filter(|r| !r.finished()) {
            r.status = "pending".into();
            r.run_dir = None;
        }
        file.state = "running".into();
        file.exit_code = None;
        Ok(Driver {
            dir: dir.to_path_buf(),
            elapsed_before: file.elapsed_s,
            file,
            started: Instant::now(),
            quiet,
        })
    }

    /// Wall time spent by this batch over all its resumes.
    pub fn elapsed(&self) -> Duration {
        Duration::from_secs_f64(self.elapsed_before) + self.started.elapsed()
    }

    /// Writes `batch.json` atomically: a reader (or a killed process) never sees half.
    pub fn save(&self) -> Result<(), Error> {
        let mut f = self.file.clone();
        f.elapsed_s = self.elapsed().as_secs_f64();
        let tmp = self.dir.join("batch.json.tmp");
        report::write(&self.dir, "batch.json.tmp", &super::exec::to_json(&f))?;
        std::fs::rename(&tmp, self.dir.join("batch.json"))
            .map_err(|e| Error::Fault(format!("cannot rename {}: {e}", tmp.display())))
    }

    /// Runs every pending run, in order, each capped by `deadline` (soak). Returns
    /// false when the batch must stop: Ctrl-C, or a failure with `stop_on_failure`.
    pub fn run_pending(&mut self, deadline: Option<Duration>) -> Result<bool, Error> {
        let total = self.file.runs.len();
        for i in 0..total {
            if self.file.runs[i].status != "pending" {
                continue;
            }
            if interrupt::requested() {
                self.file.state = "interrupted".into();
                return Ok(false);
            }
            let left = deadline.map(|d| d.saturating_sub(self.elapsed()));
            if left.is_some_and(|l| l < Duration::from_secs(1)) {
                return Ok(true);
            }
            let rec = &self.file.runs[i];
            let line = LineArgs::parse(&rec.entry)?;
            let limit = rec.duration_limit_s.map(Duration::from_secs_f64);
            let limit = match (limit, left) {
                (Some(l), Some(left)) => Some(l.min(left)),
                (l, _) => l,
            };
            let set = load_entry(&line, rec.seed, limit)?;
            let plans = set
                .members
                .iter()
                .map(|sc| super::exec::Plan::new(sc.clone(), ModeArg::Stress))
                .collect::<Result<Vec<_>, Error>>()?;
            let prepared = set::prepare(&set.name, plans, &self.dir)?;
            let rec = &mut self.file.runs[i];
            rec.status = "running".into();
            rec.run_dir = Some(prepared.dir.display().to_string());
            if !self.quiet {
                eprintln!(
                    "{} [{}/{total}] round {} {} seed {} ({}) → {}",
                    self.file.kind,
                    i + 1,
                    rec.round + 1,
                    rec.entry,
                    rec.seed,
                    limit.map_or("own budget".into(), duration::format),
                    prepared.dir.display()
                );
            }
            self.save()?;
            let first = &set.members[0];
            let mut obs: Box<dyn Observer> = progress::for_terminal(self.quiet, first.duration, first.seed);
            let done = prepared.run(&interrupt::requested, obs.as_mut())?;
            drop(obs);
            let rec = &mut self.file.runs[i];
            rec.fill(&done);
            if !self.quiet {
                eprintln!(
                    "{}   {}: {} ops, {}/{} windows{}",
                    self.file.kind,
                    rec.status,
                    rec.ops,
                    rec.windows_entered,
                    rec.windows,
                    rec.invariant
                        .as_deref()
                        .map_or(String::new(), |v| format!(", {v}"))
                );
            }
            let failed = rec.failed();
            self.save()?;
            if interrupt::requested() {
                self.file.state = "interrupted".into();
                return Ok(false);
            }
            if failed && self.file.stop_on_failure {
                self.file.state = "stopped".into();
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records the end state and exit code; returns the code.
    pub fn finish(&mut self) -> Result<i32, Error> {
        if self.file.state == "running" {
            self.file.state = "done".into();
        }
        let mut code = set::worst(self.file.runs.iter().filter_map(|r| r.exit_code));
        if self.file.state == "interrupted" && code == exit::CLEAN {
            code = exit::INTERRUPTED;
        }
        self.file.exit_code = Some(code);
        self.file.elapsed_s = self.elapsed().as_secs_f64();
        self.save()?;
        Ok(code)
    }
}

pub fn batch(a: &BatchArgs) -> Result<i32, Error> {
    interrupt::install();
    let mut d = match &a.opts.resume {
        Some(dir) => Driver::resume(dir, "batch", a.opts.out.quiet)?,
        None => {
            let entries = entries(&a.inputs)?;
            check_entries(&entries)?;
            let seed = a.opts.seed.unwrap_or(1);
            let file = BatchFile {
                kvmtorture_version: env!("CARGO_PKG_VERSION").into(),
                batch_format: BATCH_FORMAT,
                kind: "batch".into(),
                runs: plan_round(&entries, seed, 0, a.duration)?,
                entries,
                seed,
                duration_s: a.duration.as_secs_f64(),
                round_duration_s: None,
                stop_on_failure: a.opts.stop_on_failure,
                state: "running".into(),
                elapsed_s: 0.0,
                rounds: 1,
                exit_code: None,
            };
            Driver::create(&a.opts.out.results_dir, &label(&a.inputs), file, a.opts.out.quiet)?
        }
    };
    d.run_pending(None)?;
    let code = d.finish()?;
    print!("{}", output(&d, &a.opts, false));
    Ok(code)
}

/// A directory label from the inputs: `smoke`, `hpt-fixed+2`, `3_hpt-fixed`.
pub fn label(inputs: &[String]) -> String {
    let stem = |s: &str| {
        Path::new(s)
            .file_stem()
            .and_then(|x| x.to_str())
            .unwrap_or("batch")
            .to_string()
    };
    let l = match inputs {
        [] => "batch".into(),
        [one] => stem(one),
        [first, rest @ ..] => format!("{}+{}", stem(first), rest.len()),
    };
    // `3*hpt-fixed` must not put a glob character in a directory name.
    l.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The final output in the requested format.
pub fn output(d: &Driver, o: &BatchOpts, soak: bool) -> String {
    match o.out.format {
        Format::Json => {
            let mut v = serde_json::to_value(&d.file).expect("batch file serialises");
            v["dir"] = d.dir.display().to_string().into();
            if soak {
                v["soak"] = super::soak::totals_json(&d.file);
            }
            super::exec::to_json(&v)
        }
        Format::Ktap => ktap::document(
            &d.file
                .runs
                .iter()
                .map(|r| ktap_case(r, &d.file.state))
                .collect::<Vec<_>>(),
        ),
        Format::Human => {
            let mut s = table(&d.file);
            if soak {
                s += &super::soak::summary_text(&d.file);
            }
            s += &format!(
                "{} {}: {} run(s), {} failing, {} → {}\n",
                d.file.kind,
                d.file.state,
                d.file.runs.iter().filter(|r| r.finished()).count(),
                d.file.runs.iter().filter(|r| r.failed()).count(),
                set::status_of_code(d.file.exit_code.unwrap_or(0)),
                d.dir.display()
            );
            s
        }
    }
}

fn ktap_case(r: &RunRecord, state: &str) -> ktap::Case {
    let name = format!("{} seed {}", r.entry.replace(' ', "_"), r.seed);
    if !r.finished() {
        return ktap::Case {
            ok: true,
            name,
            skip: Some(format!("{} (batch {state})", r.status)),
            diag: r.run_dir.iter().map(|d| format!("run dir: {d}")).collect(),
        };
    }
    let mut diag = vec![format!(
        "{}: {} ops in {:.2}s, {}/{} windows entered",
        r.status, r.ops, r.duration_s, r.windows_entered, r.windows
    )];
    diag.extend(r.invariant.as_ref().map(|v| format!("invariant: {v}")));
    diag.extend(r.run_dir.as_ref().map(|d| format!("run dir: {d}")));
    ktap::Case {
        ok: r.status == "clean",
        name,
        skip: None,
        diag,
    }
}

/// The table printed at the end of a batch.
pub fn table(f: &BatchFile) -> String {
    let w = f.runs.iter().map(|r| r.entry.len()).max().unwrap_or(0).max(5);
    let mut s = format!(
        "{:>4} {:>5}  {:<w$} {:>10}  {:<11} {:>7} {:>11} {:>7}  {}\n",
        "#", "round", "entry", "seed", "status", "secs", "ops", "windows", "invariant / run dir"
    );
    for (i, r) in f.runs.iter().enumerate() {
        let what = match (&r.invariant, &r.run_dir) {
            (Some(v), Some(d)) => format!("{v} → {d}"),
            (None, Some(d)) => d.clone(),
            (v, None) => v.clone().unwrap_or_default(),
        };
        s += &format!(
            "{:>4} {:>5}  {:<w$} {:>10}  {:<11} {:>7.1} {:>11} {:>7}  {what}\n",
            i + 1,
            r.round + 1,
            r.entry,
            r.seed,
            r.status,
            r.duration_s,
            r.ops,
            format!("{}/{}", r.windows_entered, r.windows)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_expand_counts_and_skip_comments() {
        let v = parse_list(
            "# smoke\n3*hpt-fixed --threads 4\n\nall-fixed  # every model\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            v,
            vec!["hpt-fixed --threads 4"; 3]
                .into_iter()
                .chain(["all-fixed"])
                .collect::<Vec<_>>()
        );
        assert!(parse_list("0*hpt-fixed", "t").is_err());
        assert!(parse_list("2*", "t").is_err());
    }

    #[test]
    fn a_round_splits_its_budget_and_gives_fresh_seeds() {
        let e: Vec<String> = [
            "hpt-fixed",
            "hpt-fixed --duration 5s",
            "hpt-fixed --mode det --ops 10",
            "hpt-fixed",
        ]
        .map(String::from)
        .into();
        let r0 = plan_round(&e, 100, 0, Duration::from_secs(60)).unwrap();
        let limits: Vec<Option<f64>> = r0.iter().map(|r| r.duration_limit_s).collect();
        assert_eq!(limits, vec![Some(30.0), None, None, Some(30.0)]);
        let r1 = plan_round(&e, 100, 1, Duration::from_secs(60)).unwrap();
        let seeds: std::collections::BTreeSet<u64> = r0.iter().chain(&r1).map(|r| r.seed).collect();
        assert_eq!(seeds.len(), 8);
    }
}
