//! The commands behind the CLI. `main.rs` parses and maps the result to an exit code;
//! everything else happens here.

mod batch;
mod bench;
mod cut;
mod exec;
mod hunt;
mod ktap;
mod list;
mod merge;
mod replay;
mod report;
mod run;
mod run_dir;
mod set;
mod shrink;
mod soak;
mod target;
mod validate;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Runs a parsed command line; `Ok` carries the exit code.
pub fn dispatch(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Bench(a) => bench::bench(&a),
        Command::List(a) => list::list(&a),
        Command::Run(a) => run::run(&a),
        Command::Again(a) => run::again(&a),
        Command::Report(a) => report::report(&a),
        Command::Replay(a) => replay::replay(&a),
        Command::Hunt(a) => hunt::hunt(&a),
        Command::Shrink(a) => shrink::shrink(&a),
        Command::Validate(a) => validate::validate(&a),
        Command::Batch(a) => batch::batch(&a),
        Command::Soak(a) => soak::soak(&a),
        Command::Merge(a) => merge::merge(&a),
    }
}
