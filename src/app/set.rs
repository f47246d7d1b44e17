//! Running a scenario set: every member is an ordinary run (its own engine, model,
//! threads and run directory), all started at once so the models compete for the
//! cores as they would in one busy host; their outcomes are combined at the end.
//!
//! One member runs in a run directory directly under the results directory, as
//! always; several run in a set directory (`set.json` lists them) holding one run
//! directory each, so `replay` and `shrink` work on any member unchanged.

use super::exec::{self, Executed, Plan};
use super::run_dir::RunDir;
use crate::engine::Observer;
use crate::error::{exit, Error};
use crate::report::{self, progress::Silent, Summary};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A set with its directories made and its plans saved, ready to run.
pub struct Prepared {
    pub name: String,
    /// The set directory (several members) or the one run directory.
    pub dir: PathBuf,
    pub multi: bool,
    pub members: Vec<(Plan, RunDir)>,
}

/// A finished member.
pub struct Member {
    pub plan: Plan,
    pub dir: PathBuf,
    pub ex: Executed,
}

/// A finished set.
pub struct Finished {
    pub name: String,
    pub dir: PathBuf,
    pub members: Vec<Member>,
    pub code: i32,
}

/// `set.json`: the members of a set directory and how each ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct SetFile {
    pub kvmtorture_version: String,
    pub set: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub members: Vec<SetMember>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SetMember {
    pub model: String,
    pub variant: String,
    pub threads: usize,
    pub seed: u64,
    pub status: String,
    pub ops_total: u64,
    pub run_dir: String,
}

/// Creates the directories under `parent` and writes every member's plan and
/// `running` summary, so a crash mid-run still leaves the seeds.
pub fn prepare(name: &str, plans: Vec<Plan>, parent: &Path) -> Result<Prepared, Error> {
    let multi = plans.len() > 1;
    let seed = plans[0].sc.seed;
    let mut members = Vec::new();
    let dir = if multi {
        let dir = report::create_run_dir(parent, name, "set", seed)?;
        for plan in plans {
            let d = RunDir::create(&dir, &plan)?;
            members.push((plan, d));
        }
        dir
    } else {
        let plan = plans.into_iter().next().expect("a set has a member");
        let d = RunDir::create(parent, &plan)?;
        let dir = d.path().to_path_buf();
        members.push((plan, d));
        dir
    };
    let p = Prepared {
        name: name.into(),
        dir,
        multi,
        members,
    };
    if multi {
        p.write_set_file(None)?;
    }
    Ok(p)
}

impl Prepared {
    fn write_set_file(&self, done: Option<&[Member]>) -> Result<(), Error> {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, (plan, d))| {
                let s = done.map(|m| &m[i].ex.summary);
                SetMember {
                    model: plan.sc.model.name.into(),
                    variant: plan.sc.variant.name.into(),
                    threads: plan.sc.threads,
                    seed: plan.sc.seed,
                    status: s.map_or("running".into(), |s| s.status.clone()),
                    ops_total: s.map_or(0, |s| s.ops_total),
                    run_dir: d.path().display().to_string(),
                }
            })
            .collect();
        let code = done.map(|m| worst(m.iter().map(|x| x.ex.code)));
        let f = SetFile {
            kvmtorture_version: env!("CARGO_PKG_VERSION").into(),
            set: self.name.clone(),
            status: code.map_or("running".into(), |c| status_of_code(c).into()),
            exit_code: code,
            members,
        };
        report::write(&self.dir, "set.json", &exec::to_json(&f))
    }

    /// Runs every member at once (the first on this thread, with `obs`), saves each
    /// result and combines the exit codes.
    pub fn run(
        self,
        interrupted: &(dyn Fn() -> bool + Sync),
        obs: &mut dyn Observer,
    ) -> Result<Finished, Error> {
        let results: Vec<Result<Executed, Error>> = std::thread::scope(|s| {
            let others: Vec<_> = self.members[1..]
                .iter()
                .map(|(plan, _)| s.spawn(move || exec::execute(plan, interrupted, &mut Silent)))
                .collect();
            let first = exec::execute(&self.members[0].0, interrupted, obs);
            std::iter::once(first)
                .chain(
                    others
                        .into_iter()
                        .map(|h| h.join().expect("a member's engine does not panic")),
                )
                .collect()
        });
        let mut members = Vec::new();
        for ((plan, dir), r) in self.members.iter().zip(results) {
            let mut ex = r?;
            dir.finish(plan, &mut ex)?;
            members.push(Member {
                plan: plan.clone(),
                dir: dir.path().to_path_buf(),
                ex,
            });
        }
        if self.multi {
            self.write_set_file(Some(&members))?;
        }
        Ok(Finished {
            code: worst(members.iter().map(|m| m.ex.code)),
            name: self.name,
            dir: self.dir,
            members,
        })
    }
}

impl Finished {
    pub fn ops_total(&self) -> u64 {
        self.members.iter().map(|m| m.ex.summary.ops_total).sum()
    }

    /// The first invariant any member saw.
    pub fn invariant(&self) -> Option<String> {
        self.members
            .iter()
            .find_map(|m| m.ex.summary.violations.first().map(|v| v.invariant.clone()))
    }

    pub fn summaries(&self) -> impl Iterator<Item = &Summary> {
        self.members.iter().map(|m| &m.ex.summary)
    }
}

/// The exit code of several runs: a harness fault, then a hang, then a violation,
/// then an interruption outranks a clean run.
pub fn worst(codes: impl IntoIterator<Item = i32>) -> i32 {
    let rank = |c: i32| match c {
        exit::FAULT => 4,
        exit::STALL => 3,
        exit::VIOLATION => 2,
        exit::INTERRUPTED => 1,
        _ => 0,
    };
    codes.into_iter().max_by_key(|&c| rank(c)).unwrap_or(exit::CLEAN)
}

/// The status word of a combined exit code.
pub fn status_of_code(c: i32) -> &'static str {
    match c {
        exit::CLEAN => "clean",
        exit::VIOLATION => "violation",
        exit::STALL => "stall",
        exit::INTERRUPTED => "interrupted",
        _ => "fault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_code_ranks_fault_stall_violation_interrupt() {
        assert_eq!(worst([0, 1, 130]), 1);
        assert_eq!(worst([1, 3, 0]), 3);
        assert_eq!(worst([3, 4]), 4);
        assert_eq!(worst([0, 130]), 130);
        assert_eq!(worst([]), 0);
    }
}
