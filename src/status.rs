//! How a run (or a command) ended, and the one place each ending maps to its exit
//! code (the README's table).

use crate::error::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Clean,
    Violation,
    /// Stress mode: the watchdog saw a worker make no progress.
    Stall,
    /// Det mode: every live thread waited for another.
    Deadlock,
    /// Det mode: steps went on but no op completed within the budget.
    Livelock,
    /// The harness itself failed (a model panicked, results not writable).
    Fault,
    /// Ctrl-C before anything was found.
    Interrupted,
    /// Bad command line or scenario: nothing ran.
    BadInput,
}

impl Status {
    /// The exit code of the command-line contract.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Clean => exit::CLEAN,
            Status::Violation => exit::VIOLATION,
            Status::Stall | Status::Deadlock | Status::Livelock => exit::STALL,
            Status::Fault => exit::FAULT,
            Status::Interrupted => exit::INTERRUPTED,
            Status::BadInput => exit::USAGE,
        }
    }

    /// The name written in `summary.json`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Clean => "clean",
            Status::Violation => "violation",
            Status::Stall => "stall",
            Status::Deadlock => "deadlock",
            Status::Livelock => "livelock",
            Status::Fault => "fault",
            Status::Interrupted => "interrupted",
            Status::BadInput => "bad-input",
        }
    }

    /// The status a summary names (`running` has none: the run never finished).
    pub fn parse(name: &str) -> Option<Status> {
        [
            Status::Clean,
            Status::Violation,
            Status::Stall,
            Status::Deadlock,
            Status::Livelock,
            Status::Fault,
            Status::Interrupted,
            Status::BadInput,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}
